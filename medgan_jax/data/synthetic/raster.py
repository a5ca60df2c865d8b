"""Shared helpers of the synthetic renderers: argument checks, pixel grids, smooth fields,
soft shapes and chunked (threaded) rendering; every image is float32 numpy."""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Sequence

import numpy as np

_SIZE_RANGE = (32, 256)
# Pixels rendered per vectorised chunk: large enough to amortise numpy call
# overhead, small enough to stay in cache.
_CHUNK_PIXELS = 1 << 18


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or not (_SIZE_RANGE[0] <= size <= _SIZE_RANGE[1]):
        raise ValueError(
            f"size must be an int in [{_SIZE_RANGE[0]}, {_SIZE_RANGE[1]}], got {size!r}"
        )


def _check_count(name: str, value: int, minimum: int = 0) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_unit(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a float in [0, 1], got {value!r}")


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: (x [1,1,W], y [1,H,1]) for broadcasting."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    return c[None, None, :], c[None, :, None]


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _line(dist: np.ndarray, half_width: float | np.ndarray, soft: float | np.ndarray) -> np.ndarray:
    """Antialiased band of given half width around dist == 0."""
    return 1.0 - _smoothstep(half_width, half_width + soft, np.abs(dist))


_FIELD_GRID = 7


def _field_matrix(size: int, grid: int = _FIELD_GRID) -> np.ndarray:
    """Gaussian interpolation weights [size, grid] turning a coarse grid into a smooth field."""
    x = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    g = np.linspace(-1.25, 1.25, grid)
    w = np.exp(-0.5 * ((x[:, None] - g[None, :]) / (0.65 * (g[1] - g[0]))) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))  # unit variance for iid N(0,1) grids
    return w.astype(np.float32)


def _smooth_fields(rng: np.random.Generator, mat: np.ndarray, count: int) -> np.ndarray:
    """`count` smooth unit-variance random fields [count, H, W] for one image."""
    z = rng.standard_normal((count, mat.shape[1], mat.shape[1]), dtype=np.float32)
    return mat @ z @ mat.T


def _chunks(num: int, size: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_PIXELS // (size * size))
    return [(s, min(num, s + step)) for s in range(0, num, step)]


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _run_chunks(work: Callable[[int, int], None], chunks: list[tuple[int, int]]) -> None:
    """Run work(start, stop) over chunks; threads overlap since numpy releases the GIL."""
    workers = min(_workers(), len(chunks))
    if workers <= 1:
        for start, stop in chunks:
            work(start, stop)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for fut in [pool.submit(work, start, stop) for start, stop in chunks]:
            fut.result()


def _stack(params: Sequence[dict[str, object]]) -> dict[str, np.ndarray]:
    """List of per-image parameter dicts -> dict of stacked float32 arrays [B, ...]."""
    out = {}
    for key in params[0]:
        arr = np.stack([np.asarray(p[key]) for p in params])
        out[key] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    return out


def _col(a: np.ndarray) -> np.ndarray:
    """Per-image scalar [B] -> [B, 1, 1] for broadcasting against images."""
    return a.reshape(-1, 1, 1)


def _select(cond: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """np.where for finite values; arithmetic is much faster than np.where on float32."""
    return b + cond * (np.float32(a) - b) if np.isscalar(a) else b + cond * (a - b)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def _seg_dist(x: np.ndarray, y: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance from points to segments p0-p1 ([B, 2] endpoints)."""
    p0, p1 = p0.astype(np.float32), p1.astype(np.float32)
    x0, y0 = _col(p0[:, 0]), _col(p0[:, 1])
    dx, dy = _col(p1[:, 0] - p0[:, 0]), _col(p1[:, 1] - p0[:, 1])
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    ex, ey = x - x0 - t * dx, y - y0 - t * dy
    return np.sqrt(ex * ex + ey * ey)


def _polyline_dist(x: np.ndarray, y: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance to polylines given as points [B, P, 2]."""
    d = _seg_dist(x, y, pts[:, 0], pts[:, 1])
    for j in range(1, pts.shape[1] - 1):
        d = np.minimum(d, _seg_dist(x, y, pts[:, j], pts[:, j + 1]))
    return d


def _lookup(table: np.ndarray, t: np.ndarray, offset: np.ndarray | int, bins: int) -> np.ndarray:
    """Linear interpolation in per-image periodic tables (flattened [B * k * bins])."""
    i0f = np.minimum(np.floor(t), bins - 1)
    fr = t - i0f
    i0 = i0f.astype(np.int32)
    i1 = (i0 + 1) * (i0 < bins - 1)
    return table[offset + i0] * (1 - fr) + table[offset + i1] * fr


def _blur3(img: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Per-image mix with a [1, 2, 1]/4 separable blur (edges replicated)."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    b = 0.25 * (p[:, :-2] + p[:, 2:]) + 0.5 * p[:, 1:-1]
    b = 0.25 * (b[:, :, :-2] + b[:, :, 2:]) + 0.5 * b[:, :, 1:-1]
    return img + amount * (b - img)
