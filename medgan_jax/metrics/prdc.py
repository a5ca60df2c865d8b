"""Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al.
2020) of generated features against real features, in any feature space.

Every point gets a ball whose radius is the distance to its k-th nearest *other* point of
its own set (itself excluded, duplicates counted). With real features X (N of them),
generated features Y (M of them) and B(x, r) the closed ball {y : ||y - x|| <= r}:

- precision = fraction of Y inside at least one real ball B(X_i, NND_k(X_i));
- recall    = fraction of X inside at least one generated ball B(Y_j, NND_k(Y_j));
- density   = 1/(kM) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]   (can exceed 1);
- coverage  = fraction of real balls B(X_i, NND_k(X_i)) that contain at least one Y_j.

The balls are closed as in Kynkäänniemi et al. (and NVlabs' code), so identical sets give
precision = recall = coverage = 1 even with duplicated points; the `prdc` package uses open
balls, which differs only on exact ties. Distances are computed a chunk of rows at a time:
the largest intermediate is `chunk_size` x max(N, M) floats, never N x M.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}.")


def prdc(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    nearest_k: int = 3,
    chunk_size: int = 1024,
) -> dict:
    """Precision, recall, density and coverage of (M, D) fake vs (N, D) real features."""
    real = _check_features(real_features, "real_features")
    fake = _check_features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real_features and fake_features must have the same feature size, got "
            f"{real.shape[1]} and {fake.shape[1]}."
        )
    _check_positive_int("nearest_k", nearest_k)
    for name, features in (("real_features", real), ("fake_features", fake)):
        if nearest_k >= len(features):
            raise ValueError(
                f"nearest_k={nearest_k} needs more than {nearest_k} rows in {name} (each "
                f"point's ball reaches its k-th nearest other point), got {len(features)}."
            )
    _check_positive_int("chunk_size", chunk_size)
    out = jax.device_get(prdc_per_sample(real, fake, int(nearest_k), int(chunk_size)))
    counts = np.asarray(out["fake_real_ball_count"], np.int64)
    return {
        "precision": float(np.mean(counts > 0)),
        "recall": float(np.mean(out["real_in_fake_balls"])),
        "density": float(counts.sum() / (nearest_k * len(fake))),
        "coverage": float(np.mean(out["real_ball_has_fake"])),
        "nearest_k": int(nearest_k),
        "num_real": len(real),
        "num_fake": len(fake),
    }


@partial(jax.jit, static_argnames=("nearest_k", "chunk_size"))
def prdc_per_sample(
    real: jax.Array, fake: jax.Array, nearest_k: int, chunk_size: int = 1024
) -> dict[str, jax.Array]:
    """Per-sample indicators behind PRDC: for each fake, the number of real balls that
    contain it; for each real, whether a fake ball contains it and whether its own ball
    contains a fake. Shapes must satisfy nearest_k < N, M (see `prdc`)."""
    # Distances do not change under translation; centring on the real mean keeps
    # |a|^2 + |b|^2 - 2 a.b accurate for features far from the origin (e.g. post-ReLU).
    center = jnp.mean(real, axis=0)
    real, fake = real - center, fake - center
    real_radii = knn_squared_radii(real, nearest_k, chunk_size)
    fake_radii = knn_squared_radii(fake, nearest_k, chunk_size)
    fake_sq = jnp.sum(fake * fake, axis=1)

    def one_chunk(counts, chunk):
        rows, radii = chunk  # a chunk of reals and their squared radii
        d2 = _squared_distances(rows, fake, fake_sq)  # [chunk, M]
        inside_real = d2 <= radii[:, None]  # fake j inside real ball i
        counts = counts + jnp.sum(inside_real, axis=0, dtype=jnp.int32)
        in_fake_balls = jnp.any(d2 <= fake_radii[None, :], axis=1)
        return counts, (in_fake_balls, jnp.any(inside_real, axis=1))

    n = real.shape[0]
    rows = _pad_chunks(real, chunk_size, 0.0)
    # Padding rows get a radius of -inf: no fake is inside them.
    radii = _pad_chunks(real_radii, chunk_size, -jnp.inf)
    counts, (in_fake_balls, has_fake) = jax.lax.scan(
        one_chunk, jnp.zeros(fake.shape[0], jnp.int32), (rows, radii)
    )
    return {
        "fake_real_ball_count": counts,
        "real_in_fake_balls": in_fake_balls.reshape(-1)[:n],
        "real_ball_has_fake": has_fake.reshape(-1)[:n],
    }


@partial(jax.jit, static_argnames=("nearest_k", "chunk_size"))
def knn_squared_radii(features: jax.Array, nearest_k: int, chunk_size: int = 1024) -> jax.Array:
    """Squared distance from each row to its k-th nearest other row (itself excluded)."""
    n = features.shape[0]
    sq = jnp.sum(features * features, axis=1)

    def one_chunk(chunk):
        rows, index = chunk
        d2 = _squared_distances(rows, features, sq)  # [chunk, N]
        d2 = jnp.where(jnp.arange(n)[None, :] == index[:, None], jnp.inf, d2)  # not itself
        return _kth_smallest(d2, nearest_k)

    chunks = (_pad_chunks(features, chunk_size, 0.0), _pad_chunks(jnp.arange(n), chunk_size, -1))
    return jax.lax.map(one_chunk, chunks).reshape(-1)[:n]


def _kth_smallest(values: jax.Array, k: int) -> jax.Array:
    """The k-th smallest value of each row, ties counted (k - 1 rounds of removing the
    row minimum: XLA:CPU's top_k on a computed [chunk, N] block was ~10x slower)."""
    columns = jnp.arange(values.shape[1])[None, :]

    def drop_min(_, values):
        return jnp.where(columns == jnp.argmin(values, axis=1)[:, None], jnp.inf, values)

    return jnp.min(jax.lax.fori_loop(0, k - 1, drop_min, values), axis=1)


def _squared_distances(a: jax.Array, b: jax.Array, b_sq: jax.Array) -> jax.Array:
    """Pairwise squared Euclidean distances [len(a), len(b)], full-precision matmul."""
    dot = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.sum(a * a, axis=1)[:, None] + b_sq[None, :] - 2.0 * dot, 0.0)


def _pad_chunks(x: jax.Array, chunk_size: int, fill) -> jax.Array:
    """x split along its first axis into [num_chunks, chunk, ...], the last one padded."""
    chunk = min(chunk_size, x.shape[0])
    pad = -x.shape[0] % chunk
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
    return x.reshape(-1, chunk, *x.shape[1:])


def _check_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (num_samples, feature_dim) array, got shape "
            f"{features.shape}."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contains NaN or inf; check the feature network's inputs.")
    return features.astype(np.float32)
