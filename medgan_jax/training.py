"""The pieces every training loop shares; each job keeps its own short, visible loop.

- `open_run`: the mesh, the run's metadata (runs.py), its checkpoint manager, metric
  writer and restored state.
- `compute_dtype`: the models' computation dtype from `config.precision`.
- `jit_step`: a (state, batch, *extra) -> (state, metrics) step compiled over the mesh,
  the state replicated and donated, the batch sharded over `data`.
- `every`: whether a periodic action falls on a step.
- `first_bad_step` / `check_finite`: one on-device record of the first non-finite loss
  and one `NonFiniteLossError` naming it.
- `map_split`: a function over every image of a split, gathered, padding dropped.
- `built_once`: one set of compiled programs per process for each key (a study's many
  runs of the same shapes and settings trace, lower and compile them once).

Nothing here imports TensorFlow, so steps that use these pieces run where it is absent.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from medgan_jax import checkpoint, parallel
from medgan_jax.data.records import DataError, Records
from medgan_jax.writers import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the step and what to change."""


@dataclasses.dataclass
class OpenRun:
    """A training run's handles: where it writes, its mesh, checkpoints and metrics."""

    workdir: str
    mesh: Mesh
    checkpoints: ocp.CheckpointManager
    writer: MetricWriter

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0

    def restore(self, state: Any) -> tuple[Any, int]:
        """(state restored from the latest checkpoint, its step), or (state, 0)."""
        return checkpoint.restore_latest(self.checkpoints, state)

    def save(self, step: int, state: Any) -> None:
        checkpoint.save(self.checkpoints, step, state, force=True)

    def close(self) -> None:
        self.checkpoints.wait_until_finished()
        self.checkpoints.close()
        self.writer.close()


def open_run(
    workdir: str,
    mesh: Mesh,
    *,
    save_every: int,
    keep: int | None,
    subdir: str = "",
) -> OpenRun:
    """Checkpoints in workdir/subdir/checkpoints, metrics in workdir/subdir."""
    root = os.path.join(workdir, subdir) if subdir else workdir
    os.makedirs(root, exist_ok=True)
    return OpenRun(
        workdir=root,
        mesh=mesh,
        checkpoints=checkpoint.manager(root, save_every, keep),
        writer=MetricWriter(root, enabled=jax.process_index() == 0),
    )


def mesh_of(config: ml_collections.ConfigDict) -> Mesh:
    """The mesh over config.num_devices devices (0 = all)."""
    return parallel.make_mesh(config.num_devices or None)


PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """The computation dtype of `config.precision` ('float32' | 'bfloat16': mixed precision,
    with parameters, optimizer states, BatchNorm statistics and losses in float32).

    Configs without the field (runs written before it existed) compute in float32."""
    precision = config.get("precision", "float32")
    if precision not in PRECISIONS:
        raise ValueError(
            f"config.precision='{precision}'; expected one of {sorted(PRECISIONS)} "
            "('bfloat16': bfloat16 compute, float32 parameters; for GPUs and TPUs)."
        )
    return PRECISIONS[precision]


def jit_step(step: Callable, mesh: Mesh, num_extra_args: int = 0) -> Callable:
    """`step(state, batch, *extra)` jit-compiled: state (donated) and extras replicated,
    the batch sharded over the mesh's data axis."""
    replicated = parallel.replicated(mesh)
    return jax.jit(
        step,
        in_shardings=(replicated, parallel.batch_sharding(mesh), *[replicated] * num_extra_args),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def every(step: int, interval: int, last_step: int) -> bool:
    """Whether a periodic action (log, save, sample) falls on `step`; always on the last."""
    return step == last_step or (interval > 0 and step % interval == 0)


def first_bad_step(recorded: jax.Array, step: jax.Array, *losses: jax.Array) -> jax.Array:
    """Inside a step: `recorded`, or `step` + 1 if it is still -1 and a loss is not finite.

    Kept on the device, so the loop checks it only when it syncs anyway."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(loss)) for loss in losses]))
    return jnp.where((recorded < 0) & ~finite, step + 1, recorded)


def check_finite(recorded: jax.Array, what: str, advice: str) -> None:
    """Raises NonFiniteLossError if `first_bad_step` recorded a step."""
    bad = int(recorded)
    if bad >= 0:
        raise NonFiniteLossError(
            f"{what} became NaN or inf at step {bad}. The run stopped; its last checkpoint "
            f"is from before that step. {advice}"
        )


def map_split(fn: Callable[[dict], Any], batches: Iterable[dict], records: Records) -> Any:
    """`fn(batch)` (a pytree of [B, ...] arrays) over the evaluation batches of `records`
    (pipeline.global_batches(..., train=False)), gathered from all processes as NumPy, one
    row per record in order (padding dropped)."""
    gather = lambda x: multihost_utils.process_allgather(x, tiled=True)
    outputs, valid = [], []
    for batch in batches:
        outputs.append(jax.tree.map(gather, fn(batch)))
        valid.append(gather(batch["valid"]))
    if not outputs:
        raise DataError(f"{records.description} has no images.")
    # Eval batches pad by repeating the last image and mark unreadable files invalid.
    keep = np.concatenate(valid)
    if keep.sum() < len(records):
        raise DataError(
            f"{len(records) - int(keep.sum())} image(s) of {records.description} could not be read."
        )
    return jax.tree.map(lambda *parts: np.concatenate(parts)[keep][: len(records)], *outputs)


T = TypeVar("T")


class BuiltOnce:
    """`built(key, build)`: build()'s result, made once per process for each key and reused
    after, keeping the `capacity` most recently used.

    jax.jit caches compiled programs on the function object, so a run that rebuilds its
    step closure traces, lowers and compiles it again (the persistent cache saves only
    the last part). Keying the built functions by everything they close over (see
    `config_key`) lets every run of the same shapes and settings reuse them.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._built: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

    def __call__(self, key: Hashable, build: Callable[[], T]) -> T:
        if key in self._built:
            self._built.move_to_end(key)
            return self._built[key]
        self._built[key] = built = build()
        while len(self._built) > self.capacity:
            self._built.popitem(last=False)
        return built

    def __len__(self) -> int:
        return len(self._built)

    def clear(self) -> None:
        self._built.clear()


built_once = BuiltOnce(capacity=32)  # compiled programs


def config_key(*parts: Any) -> str:
    """A hashable text of config values (ConfigDicts, dicts, numbers, strings) for
    `built_once`."""
    plain = [p.to_dict() if isinstance(p, ml_collections.ConfigDict) else p for p in parts]
    return json.dumps(plain, sort_keys=True, default=repr)
