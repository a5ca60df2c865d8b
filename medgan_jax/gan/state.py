"""The GAN train state: both networks, their BatchNorm statistics and optimizer states,
the EMA generator, ADA's state, the RNG key and the step, in one pytree."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from medgan_jax import training
from medgan_jax.augment import ada


@struct.dataclass
class GANState:
    step: jax.Array
    key: jax.Array  # root key; step keys are fold_in(key, step)
    g_params: Any
    g_stats: Any
    d_params: Any
    d_stats: Any
    g_opt: optax.OptState
    d_opt: optax.OptState
    ema_params: Any  # its BatchNorm statistics are recomputed when sampling
    ada: ada.AdaState
    first_bad_step: jax.Array  # -1 until a loss turns NaN/inf


def optimizers(
    cfg: ml_collections.ConfigDict, per_module: bool = False
) -> tuple[optax.GradientTransformation, ...]:
    """Adam for G and D with separate learning rates and betas; `per_module` (progressive
    growing: a stage updates only the blocks it uses) keeps a state per top-level module."""
    g = optax.adam(cfg.g_lr, b1=cfg.g_betas[0], b2=cfg.g_betas[1], eps=cfg.adam_eps)
    d = optax.adam(cfg.d_lr, b1=cfg.d_betas[0], b2=cfg.d_betas[1], eps=cfg.adam_eps)
    if per_module:
        return per_module_state(g), per_module_state(d)
    return g, d


def per_module_state(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with its own state per top-level module of the parameters, so that an update
    of some modules (a sub-dict of params and state) leaves the others untouched."""

    def init(params):
        return {name: tx.init(p) for name, p in params.items()}

    def update(updates, state, params=None):
        out = {
            name: tx.update(u, state[name], None if params is None else params[name])
            for name, u in updates.items()
        }
        return {k: u for k, (u, _) in out.items()}, {k: s for k, (_, s) in out.items()}

    return optax.GradientTransformation(init, update)


def create_state(
    generator: nn.Module,
    discriminator: nn.Module,
    cfg: ml_collections.ConfigDict,
    image_shape: tuple[int, int, int],
    seed: int,
    sharding: jax.sharding.Sharding | None = None,
    per_module: bool = False,
) -> GANState:
    """Initialises both networks and their optimizers from `seed` (one compiled program,
    built once per process for these networks, optimizer settings and shapes)."""
    key = (
        generator,
        discriminator,
        training.config_key(cfg.latent_dim, cfg.ada_initial_p, optimizer_settings(cfg)),
        image_shape,
        per_module,
    )
    # Eager flax init dispatches hundreds of tiny programs; one jit is far faster.
    build = lambda: jax.jit(make_init(generator, discriminator, cfg, image_shape, per_module))
    state = training.built_once(key, build)(seed)
    return state if sharding is None else jax.device_put(state, sharding)


def optimizer_settings(cfg: ml_collections.ConfigDict) -> dict:
    """The config values `optimizers` reads."""
    names = ("g_lr", "d_lr", "g_betas", "d_betas", "adam_eps")
    return {name: cfg[name] for name in names}


def make_init(generator, discriminator, cfg, image_shape, per_module: bool):
    """seed -> the initial GANState (the seed traced: one program serves every seed)."""
    g_tx, d_tx = optimizers(cfg, per_module)

    def init(seed) -> GANState:
        key = jax.random.PRNGKey(seed)  # raw uint32 key: a plain array, checkpoints as is
        g_key, d_key = jax.random.split(jax.random.fold_in(key, 2**31 - 1))  # not a step key
        z = jnp.zeros((2, cfg.latent_dim))
        labels = jnp.zeros((2,), jnp.int32)
        g_vars = generator.init(g_key, z, labels, train=False)
        d_vars = discriminator.init(d_key, jnp.zeros((2, *image_shape)), labels, train=False)
        g_stats = g_vars.get("batch_stats", {})
        return GANState(
            step=jnp.zeros((), jnp.int32),
            key=key,
            g_params=g_vars["params"],
            g_stats=g_stats,
            d_params=d_vars["params"],
            d_stats=d_vars.get("batch_stats", {}),
            g_opt=g_tx.init(g_vars["params"]),
            d_opt=d_tx.init(d_vars["params"]),
            # A copy: donated state leaves must not share buffers.
            ema_params=jax.tree.map(jnp.copy, g_vars["params"]),
            ada=ada.AdaState.create(cfg.ada_initial_p),
            first_bad_step=jnp.full((), -1, jnp.int32),
        )

    return init
