"""Device mesh, shardings and host batch -> global jax.Array."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


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


def local_mesh() -> Mesh:
    """A mesh over this process's devices only: for computations each process of a
    several-process run makes on its own (GAN quality on images every process holds)."""
    return Mesh(np.asarray(jax.local_devices()), (DATA_AXIS,))


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


def local_copy(tree: Any) -> Any:
    """A replicated tree, replicated over this process's devices only: what one process
    may compute on alone (a global array of a several-process run spans the other
    processes' devices too). Arrays already local are returned as they are."""
    sharding = replicated(local_mesh())

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(f"local_copy needs replicated arrays; got {x.sharding}.")
            return jax.device_put(x.addressable_data(0), sharding)
        return x

    return jax.tree.map(local, tree)


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
