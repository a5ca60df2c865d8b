"""Device mesh, shardings, multi-host start-up and host batch -> global jax.Array."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None) -> None:
    """Starts JAX's multi-host runtime when running on several processes.

    On TPU pods and SLURM/Kubernetes clusters `jax.distributed.initialize()` finds
    its peers from the environment; a single process needs no set-up at all.
    """
    multi_host_env = any(
        key in os.environ
        for key in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES")
    )
    if coordinator_address or multi_host_env:
        jax.distributed.initialize(coordinator_address=coordinator_address)
        logging.info(
            "Process %d of %d, %d local / %d global devices.",
            jax.process_index(),
            jax.process_count(),
            jax.local_device_count(),
            jax.device_count(),
        )


def enable_compilation_cache(path: str | None = None) -> str:
    """Keeps compiled XLA programs on disk, so re-runs and the study's many cells (same
    networks, new jit objects) load them instead of compiling again.

    `path` defaults to $MEDGAN_JAX_XLA_CACHE or ~/.cache/medgan_jax/xla; '' disables it.
    """
    if path is None:
        default = os.path.join(os.path.expanduser("~"), ".cache", "medgan_jax", "xla")
        path = os.environ.get("MEDGAN_JAX_XLA_CACHE", default)
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (all by default) with a `data` axis."""
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(
                f"num_devices={num_devices} but this run sees {len(devices)} device(s)."
            )
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding for parameters and optimizer state: a full copy on every device."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding for batches: split along the leading axis over `data`."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str = "batch_size") -> int:
    """Returns the per-process batch size, or raises naming the config field."""
    num_devices = mesh.devices.size
    if global_batch_size <= 0 or global_batch_size % num_devices:
        raise ValueError(
            f"config.{field}={global_batch_size} must be a positive multiple of the "
            f"number of devices ({num_devices}) so every device gets the same share."
        )
    return global_batch_size // jax.process_count()


def host_to_global(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Turns this process's slice of a batch into global arrays sharded over `data`."""
    sharding = batch_sharding(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in batch.items()
    }


def device_batches(
    host_batches: Iterable[Mapping[str, Any]], mesh: Mesh, prefetch: int = 2
) -> Iterator[dict[str, jax.Array]]:
    """Yields global device batches, keeping `prefetch` transfers in flight."""
    queue: list[dict[str, jax.Array]] = []
    for batch in host_batches:
        queue.append(host_to_global(batch, mesh))
        if len(queue) > prefetch:
            yield queue.pop(0)
    yield from queue
