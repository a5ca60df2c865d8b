"""Transfer: start a GAN from another run's weights, optionally freezing D's lower layers.

`config.gan.init.from_run` names a GAN run of the same family and shapes; a fresh run
takes its generator, discriminator, their BatchNorm statistics and the EMA generator, with
fresh optimiser states, step 0 and its own seed. A resumed run restores its own checkpoint
instead. `config.gan.init.freeze_d_layers` = N keeps D's first N layers (from the input,
with the normalisations between them) fixed during training (FreezeD, Mo et al. 2020).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from medgan_jax import checkpoint
from medgan_jax.gan.state import GANState

TRANSFERRED = ("g_params", "g_stats", "d_params", "d_stats", "ema_params")
_NORMS = ("BatchNorm", "LayerNorm", "GroupNorm")


def init_config(gan_cfg) -> tuple[str, int]:
    """(from_run, freeze_d_layers) of config.gan.init; runs made before it have neither."""
    init = gan_cfg.get("init") or {}
    return str(init.get("from_run", "") or ""), int(init.get("freeze_d_layers", 0) or 0)


def _leaves(tree, prefix: str) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(path): np.shape(leaf) for path, leaf in flat}


def check_same_shapes(source, target, source_name: str, field: str) -> None:
    """Raises ValueError naming the first parameter whose presence or shape differs."""
    have, want = _leaves(source, field), _leaves(target, field)
    for name in sorted(set(have) | set(want)):
        if have.get(name) != want.get(name):
            raise ValueError(
                f"config.gan.init.from_run={source_name}: parameter {name} has shape "
                f"{have.get(name, 'missing')} there and {want.get(name, 'missing')} in this "
                "run's networks; the two runs must use the same family, widths, resolution "
                "and number of classes."
            )


def initialise_from_run(state: GANState, from_run: str) -> GANState:
    """`state` with the latest checkpoint of `from_run`'s networks and EMA generator (as
    NumPy arrays, whatever devices wrote them: the caller puts them on its mesh)."""
    mngr = checkpoint.manager(from_run, 1, None)
    step = mngr.latest_step()
    if step is None:
        raise FileNotFoundError(f"config.gan.init.from_run={from_run}: it has no checkpoint.")
    source = checkpoint.restore_raw(mngr, step)
    mngr.close()
    copied = {}
    for field in TRANSFERRED:
        target = getattr(state, field)
        check_same_shapes(source[field], target, from_run, field)
        copied[field] = jax.tree.map(
            lambda s, t: np.asarray(s, dtype=t.dtype), source[field], target
        )
    return state.replace(**copied)


def call_order(module: nn.Module, variables: dict, *args, **kwargs) -> list[str]:
    """The names of `module`'s top-level submodules in the order its forward pass with
    `variables` calls them (parameter dicts come back sorted by name, which loses it; a
    progressive D's stage calls only its own input layer)."""
    order: list[str] = []

    def record(next_fun, call_args, call_kwargs, context):
        child = context.module
        top_level = child.scope is not None and len(child.scope.path) == 1
        if context.method_name == "__call__" and top_level and child.name not in order:
            order.append(child.name)
        return next_fun(*call_args, **call_kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: module.apply(variables, *args, **kwargs))
    return order


def frozen_modules(d_modules, num_layers: int) -> list[str]:
    """D's top-level modules that FreezeD keeps fixed: its first `num_layers` layers in
    call order (`call_order`: input side first), with the normalisations between them.
    A family whose D is one top-level module (BAGAN's `trunk`) freezes it whole."""
    if num_layers <= 0:
        return []
    frozen, layers = [], 0
    for name in d_modules:
        if not name.startswith(_NORMS):
            if layers == num_layers:
                return frozen
            layers += 1
        frozen.append(name)
    raise ValueError(
        f"config.gan.init.freeze_d_layers={num_layers}, but the discriminator has {layers} "
        f"layers ({list(d_modules)}); its last layer must train, so freeze fewer."
    )


def keep_frozen(updated: dict, before: dict, frozen: list[str]) -> dict:
    """`updated` parameters with the frozen modules' exact previous arrays."""
    return {name: before[name] if name in frozen else value for name, value in updated.items()}
