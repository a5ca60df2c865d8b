"""Adversarial losses and regularisers, on logits (pure functions).

Non-saturating (Goodfellow et al. 2014, DCGAN), hinge (Lim & Ye 2017, Miyato et al.
2018), Wasserstein with gradient penalty (Gulrajani et al. 2017) and the drift term of
Karras et al. 2018, and R1 (Mescheder et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

LOSSES = ("nonsaturating", "hinge", "wgan")


def discriminator_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """D's adversarial loss, a mean over the batch."""
    return real_term(kind, real_logits) + fake_term(kind, fake_logits)


def real_term(kind: str, logits: jax.Array) -> jax.Array:
    """D's loss on images it should call real: BCE(D, 1), hinge, or -D (WGAN)."""
    if kind == "nonsaturating":
        return jnp.mean(jax.nn.softplus(-logits))
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - logits))
    if kind == "wgan":
        return -jnp.mean(logits)
    raise ValueError(f"config.gan.loss='{kind}'; expected one of {LOSSES}.")


def fake_term(kind: str, logits: jax.Array) -> jax.Array:
    """D's loss on images it should call fake: BCE(D, 0), hinge, or D (WGAN)."""
    if kind == "nonsaturating":
        return jnp.mean(jax.nn.softplus(logits))
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 + logits))
    if kind == "wgan":
        return jnp.mean(logits)
    raise ValueError(f"config.gan.loss='{kind}'; expected one of {LOSSES}.")


def generator_loss(kind: str, fake_logits: jax.Array) -> jax.Array:
    """G's adversarial loss, a mean over the batch."""
    if kind == "nonsaturating":  # BCE(D(G(z)), 1)
        return jnp.mean(jax.nn.softplus(-fake_logits))
    if kind in ("hinge", "wgan"):
        return -jnp.mean(fake_logits)
    raise ValueError(f"config.gan.loss='{kind}'; expected one of {LOSSES}.")


def drift_penalty(real_logits: jax.Array) -> jax.Array:
    """E[D(x)^2], keeps WGAN critic outputs near zero (PGGAN's epsilon_drift)."""
    return jnp.mean(jnp.square(real_logits))


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array, key: jax.Array
) -> jax.Array:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at random interpolates x_hat of real and fake."""
    alpha = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    mixed = alpha * real + (1.0 - alpha) * fake
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(mixed)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
    """E[||grad_x D(x)||_2^2] on real images (multiply by gamma / 2)."""
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(real)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))
