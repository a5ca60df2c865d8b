"""Multi-scale SSIM (Wang et al. 2003) and the MS-SSIM diversity of a set of images.

`ms_ssim` reproduces `tf.image.ssim_multiscale` (TF 2.x) step by step: 5 scales with
power factors (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); an 11-tap Gaussian of sigma 1.5
applied with VALID borders; k1 = 0.01, k2 = 0.03 and no covariance compensation; 2x2
average pooling between scales, after repeating the last row/column of an odd-sized
image (TF's SYMMETRIC pad); relu of the contrast-structure term at the first four scales
and of the full SSIM at the last; the product of their powers per channel, then the
mean over channels. Whenever every scale is at least `filter_size` pixels per side
(161 pixels or more per side for the defaults), the result equals TF's to float32
rounding.

Smaller images. TF refuses a scale smaller than the filter (its own assertion fails), so
64x64 images have no TF value. Here the filter then shrinks as in the original Matlab
code and NVIDIA's PGGAN metric (progressive_growing_of_gans/metrics/ms_ssim.py): at a
scale of h x w pixels the filter is s x s with s = min(filter_size, h, w) and sigma
filter_sigma * s / filter_size. This one rule covers both cases, as it changes nothing
where TF is defined. One difference from PGGAN remains for colour images: PGGAN averages
the per-scale terms over channels before combining the scales, TF (and this module)
combines the scales per channel and averages the channel values; for grayscale they agree.

Value range. SSIM's luminance term is not shift-invariant, and TF and PGGAN assume pixels
in [0, max_val] (PGGAN: uint8 in [0, 255]). Images are therefore shifted by -min_val
first: with the project's [-1, 1] images and the defaults (max_val 2, min_val -1) a value
equals PGGAN's on the same images stored as uint8, and TF's on images + 1. Pass
min_val=0.0 to feed the arrays to the formula unchanged, as TF does.

Diversity follows PGGAN: the MS-SSIM of images[0] vs images[1], images[2] vs images[3],
... (disjoint consecutive pairs). On images of one class a value well above that of real
images of the class flags mode collapse (Odena et al. 2017, ACGAN).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# On XLA:CPU the per-scale intermediates of a whole batch (4 moment maps, float32) spill
# out of the caches; a loop over ~2^18-pixel chunks is faster
# (benchmarks/ms_ssim_throughput.py).
_CPU_CHUNK_PIXELS = 2**18


def scale_filters(
    height: int,
    width: int,
    num_scales: int = len(POWER_FACTORS),
    filter_size: int = 11,
    filter_sigma: float = 1.5,
) -> list[tuple[int, int, int, float]]:
    """(height, width, filter size, filter sigma) at each scale, the filter shrunk as PGGAN does."""
    out = []
    for _ in range(num_scales):
        size = min(filter_size, height, width)
        out.append((height, width, size, filter_sigma * size / filter_size))
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    return out


def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    # TF's kernel is softmax(-(x^2 + y^2) / (2 sigma^2)), the outer product of these.
    coords = np.arange(size) - (size - 1) / 2
    taps = np.exp(-0.5 * coords**2 / sigma**2)
    return (taps / taps.sum()).astype(np.float32)


def _valid_filter(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    # A sum of shifted slices fuses into one memory-bound loop. On XLA:CPU, depthwise
    # convolutions (11x11 or separable) and banded matmuls are much slower
    # (benchmarks/ms_ssim_throughput.py --alternatives).
    n = x.shape[axis] - len(taps) + 1
    out = None
    for k, tap in enumerate(taps):
        term = tap * jax.lax.slice_in_dim(x, k, k + n, axis=axis)
        out = term if out is None else out + term
    return out


def _downsample(x: jax.Array) -> jax.Array:
    m, h, w = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2)), mode="symmetric")
    return x.reshape(m, x.shape[1] // 2, 2, x.shape[2] // 2, 2).mean(axis=(2, 4))


def _filtered_moments(a: jax.Array, b: jax.Array, taps: np.ndarray) -> jax.Array:
    # Filters the rows of a, b, a*b and a^2+b^2 forming the products from slices of a and
    # b, so XLA writes only the four row-filtered maps (stacking the products first cost
    # one more pass over memory), then the columns. Returns (4, M, H', W').
    n = a.shape[1] - len(taps) + 1
    sums = [None] * 4
    for k, tap in enumerate(taps):
        x, y = (jax.lax.slice_in_dim(z, k, k + n, axis=1) for z in (a, b))
        for i, term in enumerate((x, y, x * y, x * x + y * y)):
            sums[i] = tap * term if sums[i] is None else sums[i] + tap * term
    return _valid_filter(jnp.stack(sums), taps, axis=3)


def _ms_ssim_planes(
    a: jax.Array,
    b: jax.Array,
    max_val: jax.Array,
    power_factors: tuple[float, ...],
    filter_size: int,
    filter_sigma: float,
    k1: float,
    k2: float,
) -> jax.Array:
    """MS-SSIM of (M, H, W) single-channel planes, (M,)."""
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    filters = scale_filters(*a.shape[1:], len(power_factors), filter_size, filter_sigma)
    terms = []
    for scale, (_, _, size, sigma) in enumerate(filters):
        if scale:
            a, b = _downsample(a), _downsample(b)
        taps = _gaussian_taps(size, sigma)
        mu_a, mu_b, e_ab, e_aabb = _filtered_moments(a, b, taps)
        # TF's _ssim_helper, term for term.
        num0 = mu_a * mu_b * 2.0
        den0 = mu_a * mu_a + mu_b * mu_b
        luminance = (num0 + c1) / (den0 + c1)
        cs = (e_ab * 2.0 - num0 + c2) / (e_aabb - den0 + c2)
        if scale < len(filters) - 1:
            terms.append(jax.nn.relu(cs.mean(axis=(1, 2))))
        else:
            terms.append(jax.nn.relu((luminance * cs).mean(axis=(1, 2))))
    return jnp.prod(jnp.stack(terms, -1) ** jnp.asarray(power_factors, jnp.float32), axis=-1)


def _check_pair(images_a, images_b) -> None:
    for name, x in (("images_a", images_a), ("images_b", images_b)):
        if np.ndim(x) != 4:
            raise ValueError(f"ms_ssim expects NHWC images of rank 4, got {name} {np.shape(x)}.")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(
                f"ms_ssim expects float images (project convention [-1, 1]), got {name} "
                f"of dtype {x.dtype}; convert uint8 with x / 127.5 - 1."
            )
    if np.shape(images_a) != np.shape(images_b):
        raise ValueError(
            f"ms_ssim compares images pairwise: shapes {np.shape(images_a)} and "
            f"{np.shape(images_b)} differ."
        )


def ms_ssim(
    images_a: jax.Array | np.ndarray,
    images_b: jax.Array | np.ndarray,
    max_val: float = 2.0,
    min_val: float = -1.0,
    *,
    power_factors: Sequence[float] = POWER_FACTORS,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    chunk_pixels: int | None = None,
) -> jax.Array:
    """MS-SSIM of each pair (images_a[i], images_b[i]) of NHWC float images, shape (N,).

    max_val is the dynamic range (TF's name), min_val the lowest pixel value: images are
    shifted to [0, max_val]. chunk_pixels bounds the pixels processed at once (None: 2^18
    on CPU, the whole batch on accelerators; 0: the whole batch). Compiled once per input
    shape and set of keyword options.
    """
    _check_pair(images_a, images_b)
    if chunk_pixels is None:
        chunk_pixels = _CPU_CHUNK_PIXELS if jax.default_backend() == "cpu" else 0
    return _ms_ssim(
        images_a,
        images_b,
        max_val,
        min_val,
        power_factors=tuple(float(p) for p in power_factors),
        filter_size=int(filter_size),
        filter_sigma=float(filter_sigma),
        k1=float(k1),
        k2=float(k2),
        chunk_pixels=int(chunk_pixels),
    )


@functools.partial(
    jax.jit,
    static_argnames=("power_factors", "filter_size", "filter_sigma", "k1", "k2", "chunk_pixels"),
)
def _ms_ssim(images_a, images_b, max_val, min_val, *, chunk_pixels, **options) -> jax.Array:
    n, h, w, c = images_a.shape
    max_val = jnp.asarray(max_val, jnp.float32)

    def planes(x):
        x = x.astype(jnp.float32) - jnp.asarray(min_val, jnp.float32)
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w)

    a, b = planes(images_a), planes(images_b)
    fn = functools.partial(_ms_ssim_planes, max_val=max_val, **options)
    chunk = max(1, min(n * c, chunk_pixels // (h * w))) if chunk_pixels else n * c
    if chunk == n * c:
        values = fn(a, b)
    else:
        pad = -(n * c) % chunk
        a, b = (jnp.pad(x, ((0, pad), (0, 0), (0, 0))).reshape(-1, chunk, h, w) for x in (a, b))
        values = jax.lax.map(lambda ab: fn(*ab), (a, b)).reshape(-1)[: n * c]
    return values.reshape(n, c).mean(axis=1)


def ms_ssim_pairs(
    images_a: np.ndarray | jax.Array,
    images_b: np.ndarray | jax.Array,
    *,
    batch_size: int = 64,
    max_val: float = 2.0,
    min_val: float = -1.0,
    **options: Any,
) -> np.ndarray:
    """`ms_ssim` over many pairs in fixed-size batches (one compiled shape), as float32 (N,)."""
    _check_pair(images_a, images_b)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of pairs, got {batch_size}.")
    num = np.shape(images_a)[0]
    if num == 0:
        return np.zeros((0,), np.float32)
    batch_size = min(batch_size, num)
    results, pending = [], None
    for start in range(0, num, batch_size):
        a, b = (np.asarray(x[start : start + batch_size]) for x in (images_a, images_b))
        if len(a) < batch_size:  # repeat the last pair so the batch keeps the compiled shape
            a, b = (np.concatenate([x, np.repeat(x[-1:], batch_size - len(x), 0)]) for x in (a, b))
        out = ms_ssim(a, b, max_val, min_val, **options)
        # One batch in flight: asynchronous dispatch would otherwise queue every batch.
        if pending is not None:
            results.append(np.asarray(pending))
        pending = out
    results.append(np.asarray(pending))
    return np.concatenate(results)[:num]


def diversity(
    images: np.ndarray | jax.Array,
    *,
    batch_size: int = 64,
    max_val: float = 2.0,
    min_val: float = -1.0,
    **options: Any,
) -> dict[str, float | int]:
    """PGGAN's MS-SSIM diversity: mean and std over pairs (images[2i], images[2i+1]).

    An odd last image is left out; std is NumPy's (ddof 0) over the pair values. Higher
    means less diverse (1.0: all pairs identical).
    """
    if np.ndim(images) != 4 or np.shape(images)[0] < 2:
        raise ValueError(
            f"diversity needs at least 2 NHWC images (pairs 0-1, 2-3, ...), got shape "
            f"{np.shape(images)}."
        )
    num_pairs = np.shape(images)[0] // 2
    values = ms_ssim_pairs(
        images[0 : 2 * num_pairs : 2],
        images[1 : 2 * num_pairs : 2],
        batch_size=batch_size,
        max_val=max_val,
        min_val=min_val,
        **options,
    )
    values = values.astype(np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()), "num_pairs": num_pairs}
