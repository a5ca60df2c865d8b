"""Adversarial losses and penalties against closed forms."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from medgan_jax.gan import losses

REAL = jnp.asarray([2.0, -1.0, 0.5])
FAKE = jnp.asarray([-3.0, 0.0, 1.5])


def bce(p, target):
    return -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))


def test_nonsaturating_equals_binary_cross_entropy():
    sigmoid = lambda x: 1 / (1 + np.exp(-np.asarray(x)))
    expected_d = bce(sigmoid(REAL), 1.0) + bce(sigmoid(FAKE), 0.0)
    np.testing.assert_allclose(
        losses.discriminator_loss("nonsaturating", REAL, FAKE), expected_d, rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.generator_loss("nonsaturating", FAKE), bce(sigmoid(FAKE), 1.0), rtol=1e-6
    )


def test_hinge_and_wgan():
    # hinge: mean(relu(1 - r)) + mean(relu(1 + f)) = (0 + 2 + 0.5)/3 + (0 + 1 + 2.5)/3
    np.testing.assert_allclose(
        losses.discriminator_loss("hinge", REAL, FAKE), 2.5 / 3 + 3.5 / 3, rtol=1e-6
    )
    np.testing.assert_allclose(losses.generator_loss("hinge", FAKE), 0.5, rtol=1e-6)
    np.testing.assert_allclose(losses.discriminator_loss("wgan", REAL, FAKE), -0.5 - 0.5, rtol=1e-6)
    np.testing.assert_allclose(losses.drift_penalty(REAL), (4 + 1 + 0.25) / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="config.gan.loss='lsgan'"):
        losses.generator_loss("lsgan", FAKE)


def test_gradient_penalty_and_r1_closed_forms():
    import jax

    real = jnp.ones((4, 2, 2, 1))
    fake = jnp.zeros((4, 2, 2, 1))
    w = jnp.arange(4.0).reshape(1, 2, 2, 1)  # linear critic: grad = w everywhere, |w| = sqrt(14)
    critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
    gp = losses.gradient_penalty(critic, real, fake, jax.random.PRNGKey(0))
    np.testing.assert_allclose(gp, (np.sqrt(14.0) - 1.0) ** 2, rtol=1e-5)
    np.testing.assert_allclose(losses.r1_penalty(critic, real), 14.0, rtol=1e-5)
    quadratic = lambda x: jnp.sum(x**2, axis=(1, 2, 3))  # grad 2x: at real=1, |g|^2 = 4 * 4
    np.testing.assert_allclose(losses.r1_penalty(quadratic, real), 16.0, rtol=1e-5)
