"""Memorisation audit: is any generated image a copy of a training (patient's) image?

For every generated image we find the nearest training image, in pixel space and in
the feature space of a network, and compare that distance with how close training
images are to each other: the reference is the distribution of each training image's
distance to its nearest *other* training image (leave-one-out). A generated image
closer to a training image than the `quantile` (median by default) of that reference
is flagged; one closer than `copy_tolerance` is an exact copy.

With the median, a generator that draws fresh images from the training distribution
has about half its images flagged (they are as close to the training set as training
images are to each other); one that reproduces training images has nearly all of them
flagged. Pixel distances are root-mean-square differences in the [-1, 1] image range
(0 for a copy); feature distances are Euclidean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from medgan_jax import parallel


def nearest_neighbours(
    queries: np.ndarray,
    references: np.ndarray,
    *,
    exclude_same_index: bool = False,
    query_index: np.ndarray | None = None,
    batch_size: int = 256,
    reference_chunk: int = 4096,
    mesh: Mesh | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query row's nearest reference row, exact in float64.

    The search runs jit-compiled in fixed-size blocks (queries sharded over the mesh's
    `data` axis), so memory stays flat however many rows there are; the winning pair's
    distance is then recomputed exactly on the host. Leave-one-out: query i never matches
    reference `query_index[i]` (reference i with `exclude_same_index`).
    """
    queries = _as_rows(queries, "queries")
    references = _as_rows(references, "references")
    if queries.shape[1] != references.shape[1]:
        raise ValueError(
            f"queries have {queries.shape[1]} values per row, references {references.shape[1]}."
        )
    if query_index is None:
        query_index = np.arange(len(queries)) if exclude_same_index else np.full(len(queries), -1)
    own = np.asarray(query_index, np.int32)
    mesh = mesh or parallel.local_mesh()
    batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
    chunk = min(reference_chunk, len(references))
    ref_blocks = [
        _pad_rows(references[start : start + chunk], chunk)
        for start in range(0, len(references), chunk)
    ]
    ref_norms = [np.sum(block**2, axis=1) for block in ref_blocks]
    best_index = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), batch_size):
        q = _pad_rows(queries[start : start + batch_size], batch_size)
        q = jax.device_put(q, parallel.batch_sharding(mesh))
        q_own = np.full(batch_size, -1, np.int32)
        q_own[: len(own[start : start + batch_size])] = own[start : start + batch_size]
        q_own = jax.device_put(q_own, parallel.batch_sharding(mesh))
        best_d = jnp.full((batch_size,), jnp.inf)
        best_i = jnp.zeros((batch_size,), jnp.int32)
        for block_number, (block, norms) in enumerate(zip(ref_blocks, ref_norms)):
            offset = block_number * chunk
            best_d, best_i = _block_min(
                q, q_own, block, norms, best_d, best_i, offset, len(references) - offset
            )
        count = min(batch_size, len(queries) - start)
        best_index[start : start + count] = np.asarray(best_i)[:count]
    diff = queries.astype(np.float64) - references[best_index].astype(np.float64)
    return np.sqrt(np.sum(diff**2, axis=1)), best_index


@jax.jit
def _block_min(q, q_own, block, block_norms, best_d, best_i, r_offset, r_valid):
    """Updates the running nearest neighbour with one block of references (never the
    reference `q_own` of a query; -1 excludes none)."""
    q = q.astype(jnp.float32)
    d2 = (
        jnp.sum(q * q, axis=1, keepdims=True)
        + block_norms[None, :]
        - 2 * jnp.dot(q, block.astype(jnp.float32).T, precision="highest")
    )
    r_index = r_offset + jnp.arange(block.shape[0])
    invalid = (jnp.arange(block.shape[0]) >= r_valid)[None, :] | (
        q_own[:, None] == r_index[None, :]
    )
    d2 = jnp.where(invalid, jnp.inf, d2)
    block_best = jnp.argmin(d2, axis=1)
    block_d = jnp.take_along_axis(d2, block_best[:, None], axis=1)[:, 0]
    better = block_d < best_d
    return jnp.where(better, block_d, best_d), jnp.where(better, r_index[block_best], best_i)


def training_reference_distances(
    training: np.ndarray,
    *,
    reference_sample: int = 2000,
    seed: int = 0,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Leave-one-out nearest-neighbour distances of up to `reference_sample` random
    training rows (against all training rows): how close training images are to each
    other, the yardstick for generated images."""
    training = _as_rows(training, "training")
    if len(training) < 2:
        raise ValueError("The memorisation audit needs at least 2 training images.")
    sample = np.random.default_rng(seed).permutation(len(training))[:reference_sample]
    distances, _ = nearest_neighbours(training[sample], training, query_index=sample, mesh=mesh)
    return distances


def audit_summary(
    nearest_distance: np.ndarray,
    training_nn_distance: np.ndarray,
    *,
    quantile: float = 0.5,
    copy_tolerance: float = 1e-3,
) -> dict:
    """Fraction of generated images closer to the training set than the `quantile` of
    training images' own nearest-neighbour distances, exact copies, and quantiles."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile} must be in (0, 1).")
    threshold = float(np.quantile(training_nn_distance, quantile))
    qs = (0.0, 0.01, 0.05, 0.25, 0.5)
    return {
        "threshold": threshold,
        "threshold_quantile": quantile,
        "fraction_closer_than_threshold": float(np.mean(nearest_distance < threshold)),
        "num_copies": int(np.sum(nearest_distance <= copy_tolerance)),
        "num_generated": int(len(nearest_distance)),
        "generated_nn_distance_quantiles": {
            str(q): float(np.quantile(nearest_distance, q)) for q in qs
        },
        "training_nn_distance_quantiles": {
            str(q): float(np.quantile(training_nn_distance, q)) for q in qs
        },
    }


def audit_space(
    generated: np.ndarray,
    training: np.ndarray,
    *,
    quantile: float = 0.5,
    copy_tolerance: float = 1e-3,
    reference_sample: int = 2000,
    seed: int = 0,
    rms: bool = False,
    mesh: Mesh | None = None,
) -> dict:
    """The whole audit for sets held in memory: summary plus per-image nearest
    training index and distance, and generated indices from closest to farthest."""
    generated = _as_rows(generated, "generated")
    scale = 1 / np.sqrt(generated.shape[1]) if rms else 1.0
    distance, index = nearest_neighbours(generated, training, mesh=mesh)
    reference = training_reference_distances(
        training, reference_sample=reference_sample, seed=seed, mesh=mesh
    )
    summary = audit_summary(
        distance * scale, reference * scale, quantile=quantile, copy_tolerance=copy_tolerance
    )
    return {
        **summary,
        "nearest_distance": distance * scale,
        "nearest_index": index,
        "closest_order": np.argsort(distance, kind="stable"),
    }


def _as_rows(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim < 2 or len(values) == 0:
        raise ValueError(
            f"{name} must be a non-empty batch of images or features, got shape {values.shape}."
        )
    return values.reshape(len(values), -1)


def _pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """float32 rows zero-padded to `size`, so every block has one compiled shape."""
    rows = rows.astype(np.float32, copy=False)
    return np.pad(rows, ((0, size - len(rows)), (0, 0))) if len(rows) < size else rows
