"""Orbax checkpoints: save every N steps, keep K, resume from the latest in a workdir."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


def manager(
    workdir: str | os.PathLike, save_every: int, keep: int, subdir: str = "checkpoints"
) -> ocp.CheckpointManager:
    """A CheckpointManager over `workdir/subdir`."""
    directory = os.path.abspath(os.path.join(workdir, subdir))
    # Orbax names its cross-process barriers after the step: two managers saving the same
    # step at once (a classifier's latest and best) would otherwise share them and hang.
    barrier_prefix = "_".join(directory.split(os.sep)[-2:])
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every,
        max_to_keep=keep,
        create=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=barrier_prefix
        ),
    )
    return ocp.CheckpointManager(
        directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
    )


def restore(mngr: ocp.CheckpointManager, step: int, state: Any) -> Any:
    """The checkpoint of `step`, restored into the structure, dtypes and shardings of `state`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract))


def restore_latest(mngr: ocp.CheckpointManager, state: Any) -> tuple[Any, int]:
    """(restored state, its step), or (`state`, 0) when there is no checkpoint yet."""
    step = mngr.latest_step()
    if step is None:
        return state, 0
    logging.info("Resumed from %s at step %d.", mngr.directory, step)
    return restore(mngr, step, state), int(step)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, force: bool = False) -> bool:
    """Saves if `step` is on the save interval (or `force`); returns whether it saved."""
    return mngr.save(step, args=ocp.args.StandardSave(state), force=force)


def restore_raw(mngr: ocp.CheckpointManager, step: int) -> Any:
    """The checkpoint of `step` as saved (nested dicts), without a target, as NumPy arrays:
    readable whatever devices and processes wrote it (a raw restore would put each array
    back on the writer's devices, which may not exist here)."""
    saved = mngr.item_metadata(step)
    on_host = jax.tree.map(lambda leaf: np.empty(leaf.shape, leaf.dtype), saved)
    return mngr.restore(step, args=ocp.args.StandardRestore(on_host))
