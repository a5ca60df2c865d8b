"""Gaussian blur, unsharp masking and minimum filtering, as deterministic filters and random ops.

The CheXpert PGGAN study enlarged its minority set with one copy of each image per filter:
`gaussian_blur`, `unsharp_mask` and `minimum_filter` make those copies, and `random_filter`
applies one of them per image as an on-the-fly augmentation. Filters act on the two spatial
axes of NHWC images and match `scipy.ndimage` with mode='reflect' (edge pixel repeated,
d c b a | a b c d | d c b a): `gaussian_filter(x, (0, s, s, 0), truncate=4.0)` and
`minimum_filter(x, (1, k, k, 1))`. Parameter conventions are those of `classic`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from medgan_jax.augment.classic import Range, _bounds, _check_images, _draw, _draw_int, _jit


def _gaussian_taps(sigma: jax.Array, radius: int, truncate: float) -> jax.Array:
    """Per-image normalised 1-D Gaussians (N, 2 * radius + 1), each cut at SciPy's own radius."""
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    s = jnp.maximum(sigma, 1e-6)[:, None]
    taps = jnp.exp(-0.5 * (x / s) ** 2)
    own_radius = jnp.floor(truncate * sigma + 0.5)[:, None]
    taps = jnp.where(jnp.abs(x) <= own_radius, taps, 0.0)
    return taps / jnp.sum(taps, axis=1, keepdims=True)


def _correlate_1d(images: jax.Array, taps: jax.Array, axis: int) -> jax.Array:
    """Correlates each image along `axis` (1 or 2) with its own odd-length taps (N, K)."""
    n, h, w, c = images.shape
    radius = (taps.shape[1] - 1) // 2
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = jnp.pad(images, pad, mode="symmetric")
    # One depthwise convolution over the images stacked as channels, each with its own taps.
    stacked = jnp.moveaxis(padded, 0, -2).reshape(1, *padded.shape[1:3], n * c)
    kernel = jnp.repeat(taps, c, axis=0).T  # (K, N * C)
    kernel = kernel[:, None, None, :] if axis == 1 else kernel[None, :, None, :]
    out = jax.lax.conv_general_dilated(
        stacked,
        kernel,
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=n * c,
        precision=jax.lax.Precision.HIGHEST,
    )
    return jnp.moveaxis(out.reshape(h, w, n, c), 2, 0)


def _blur(images: jax.Array, sigma: jax.Array, max_sigma: float, truncate: float) -> jax.Array:
    taps = _gaussian_taps(sigma, int(truncate * max_sigma + 0.5), truncate).astype(images.dtype)
    out = _correlate_1d(_correlate_1d(images, taps, 1), taps, 2)
    return jnp.clip(out, -1, 1)


def _unsharp(images: jax.Array, blurred: jax.Array, amount: jax.Array | float) -> jax.Array:
    amount = jnp.reshape(jnp.asarray(amount, images.dtype), (-1, 1, 1, 1))
    return jnp.clip(images + amount * (images - blurred), -1, 1)


def _check_truncate(truncate: float) -> None:
    if not truncate > 0:
        raise ValueError(f"truncate must be positive (in standard deviations), got {truncate}.")


@_jit("sigma", "truncate")
def gaussian_blur(images: jax.Array, sigma: float, truncate: float = 4.0) -> jax.Array:
    """Blurs every image with a Gaussian of standard deviation `sigma` pixels."""
    _check_images(images, "gaussian_blur")
    _bounds("sigma", sigma, 0.0)
    _check_truncate(truncate)
    return _blur(images, jnp.full((images.shape[0],), sigma, jnp.float32), sigma, truncate)


@_jit("sigma", "amount", "truncate")
def unsharp_mask(
    images: jax.Array, sigma: float, amount: float, truncate: float = 4.0
) -> jax.Array:
    """Sharpens every image as x + amount * (x - gaussian_blur(x, sigma)), clipped to [-1, 1]."""
    return _unsharp(images, gaussian_blur(images, sigma, truncate), amount)


@_jit("size")
def minimum_filter(images: jax.Array, size: int) -> jax.Array:
    """Replaces each pixel by the minimum over the size x size window around it, per channel."""
    _check_images(images, "minimum_filter")
    if not (isinstance(size, (int, np.integer)) and size >= 1):
        raise ValueError(f"size must be a positive whole number of pixels, got {size!r}.")
    # SciPy's window for size k spans offsets -(k // 2) .. k - 1 - k // 2.
    before, after = size // 2, size - 1 - size // 2
    pad = ((0, 0), (before, after), (before, after), (0, 0))
    padded = jnp.pad(images, pad, mode="symmetric")
    init = jnp.array(jnp.inf, images.dtype)
    return jax.lax.reduce_window(padded, init, jax.lax.min, (1, size, size, 1), (1,) * 4, "VALID")


@_jit("sigma", "truncate")
def random_gaussian_blur(
    images: jax.Array, key: jax.Array, sigma: Range = (0.0, 3.0), truncate: float = 4.0
) -> jax.Array:
    """Blurs each image with its own sigma (imgaug's GaussianBlur((0, 3)) by default)."""
    _check_images(images, "random_gaussian_blur")
    _check_truncate(truncate)
    bounds = _bounds("sigma", sigma, 0.0)
    (s,) = _draw(key, images.shape[0], bounds)
    return _blur(images, s, bounds[1], truncate)


@_jit("sigma", "amount", "truncate")
def random_unsharp_mask(
    images: jax.Array,
    key: jax.Array,
    sigma: Range = (0.5, 2.0),
    amount: Range = (0.5, 1.5),
    truncate: float = 4.0,
) -> jax.Array:
    """Unsharp-masks each image with its own sigma and amount."""
    _check_images(images, "random_unsharp_mask")
    _check_truncate(truncate)
    sigma_bounds = _bounds("sigma", sigma, 0.0)
    s, a = _draw(key, images.shape[0], sigma_bounds, _bounds("amount", amount))
    return _unsharp(images, _blur(images, s, sigma_bounds[1], truncate), a)


def _size_bounds(size: Range) -> tuple[int, int]:
    lo, hi = _bounds("size", size, 1.0)
    if lo != int(lo) or hi != int(hi):
        raise ValueError(f"size must be whole numbers of pixels, got {size!r}.")
    return int(lo), int(hi)


def _minimum_per_image(images: jax.Array, u: jax.Array, bounds: tuple[int, int]) -> jax.Array:
    """Minimum filter with a size per image, drawn in bounds from uniforms u (N,)."""
    pick = _draw_int(u, bounds) - bounds[0]
    candidates = jnp.stack([minimum_filter(images, k) for k in range(bounds[0], bounds[1] + 1)])
    return jnp.take_along_axis(candidates, pick[None, :, None, None, None], axis=0)[0]


@_jit("size")
def random_minimum_filter(images: jax.Array, key: jax.Array, size: Range = (1, 3)) -> jax.Array:
    """Minimum-filters each image with its own window size (1 leaves it unchanged)."""
    _check_images(images, "random_minimum_filter")
    bounds = _size_bounds(size)
    return _minimum_per_image(images, jax.random.uniform(key, (images.shape[0],)), bounds)


@_jit("sigma", "amount", "size", "truncate")
def random_filter(
    images: jax.Array,
    key: jax.Array,
    sigma: Range = 1.0,
    amount: Range = 1.0,
    size: Range = 3,
    truncate: float = 4.0,
) -> jax.Array:
    """Applies one of Gaussian blur, unsharp mask and minimum filter, chosen uniformly per image."""
    _check_images(images, "random_filter")
    _check_truncate(truncate)
    sigma_bounds, size_bounds = _bounds("sigma", sigma, 0.0), _size_bounds(size)
    bounds = (sigma_bounds, _bounds("amount", amount), (0.0, 1.0), (0.0, 1.0))
    s, a, u_choice, u_size = _draw(key, images.shape[0], *bounds)
    blurred = _blur(images, s, sigma_bounds[1], truncate)
    sharpened = _unsharp(images, blurred, a)
    eroded = _minimum_per_image(images, u_size, size_bounds)
    choice = _draw_int(u_choice, (0, 2))[:, None, None, None]
    return jnp.where(choice == 0, blurred, jnp.where(choice == 1, sharpened, eroded))
