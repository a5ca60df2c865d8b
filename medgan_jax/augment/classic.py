"""Classic geometric augmentations, imgaug's 'aug1': flips, affine, crop/pad, crop from padded.

Conventions shared with `photometric` and `filtering`: images are float NHWC in [-1, 1] with
any number of channels; a random op is `op(images, key, **params)`, drawing its values per
image from `key`, and keeps shape, dtype and range. Ops are jitted with their parameters
static (hashable: give ranges as tuples), and trace as usual inside an outer jit. A range
parameter takes a number, which is used as is (imgaug's convention: `rotate=10` turns every
image by 10 degrees), or a (low, high) pair drawn uniformly per image (inclusive integers
for integer parameters).

Geometry goes through ADA's resampler: one inverse affine matrix per image in pixel
coordinates about the image centre, read bilinearly. As in imgaug, positive angles turn the
image clockwise and positive translations move it right and down. `mode` says what fills
pixels that come from outside the image: 'constant' (`cval`; -1 is black, imgaug's cval=0),
'reflect' (mirrored about the edge pixels) or 'edge' (the nearest edge pixel).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from medgan_jax.augment import ada

Range = float | Sequence[float]
MODES = ("constant", "reflect", "edge")


def _jit(*static: str) -> Callable[[Callable], Callable]:
    # Ops are jitted with their parameters static: eager calls (e.g. filtering a whole data
    # set) run compiled, and callers with the same parameters share one compilation.
    return functools.partial(jax.jit, static_argnames=static)


def _check_images(images: jax.Array, op: str) -> None:
    if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"{op} expects float NHWC images in [-1, 1], got shape {images.shape} "
            f"and dtype {images.dtype}."
        )


def _bounds(
    name: str, value: Range, low: float = -math.inf, high: float = math.inf
) -> tuple[float, float]:
    """(low, high) of a number-or-pair parameter, checked against the allowed interval."""
    if np.ndim(value) == 0:
        lo = hi = float(value)
    elif np.shape(value) == (2,):
        lo, hi = (float(v) for v in value)
    else:
        raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}.")
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got {value!r}.")
    return lo, hi


def _draw(key: jax.Array, num: int, *bounds: tuple[float, float]) -> list[jax.Array]:
    """One uniform (num,) draw per (low, high) pair, from a single RNG call."""
    u = jax.random.uniform(key, (len(bounds), num))
    return [lo + (hi - lo) * u[i] for i, (lo, hi) in enumerate(bounds)]


def _draw_int(u: jax.Array, bounds: tuple[float, float]) -> jax.Array:
    """Inclusive integers in bounds from uniforms u in [0, 1)."""
    lo, hi = bounds
    return jnp.minimum(jnp.floor(lo + (hi - lo + 1) * u), hi).astype(jnp.int32)


def _check_fill(mode: str, cval: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if not -1.0 <= cval <= 1.0:
        raise ValueError(f"cval must be in [-1, 1], got {cval}.")


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def hflip(images: jax.Array) -> jax.Array:
    """Mirrors every image left-right."""
    return images[:, :, ::-1]


def vflip(images: jax.Array) -> jax.Array:
    """Mirrors every image top-bottom."""
    return images[:, ::-1]


@_jit("horizontal", "vertical")
def random_flip(
    images: jax.Array, key: jax.Array, horizontal: float = 0.5, vertical: float = 0.0
) -> jax.Array:
    """Flips each image left-right with probability `horizontal`, top-bottom with `vertical`."""
    _check_images(images, "random_flip")
    for name, p in (("horizontal", horizontal), ("vertical", vertical)):
        _bounds(name, p, 0.0, 1.0)
    u = jax.random.uniform(key, (2, images.shape[0]))[:, :, None, None, None]
    x = jnp.where(u[0] < horizontal, hflip(images), images)
    return jnp.where(u[1] < vertical, vflip(x), x)


@_jit("mode", "cval")
def warp(
    images: jax.Array, g_inv: jax.Array, mode: str = "constant", cval: float = -1.0
) -> jax.Array:
    """Resamples each image through its inverse affine matrix (N, 3, 3), filling as `mode` says."""
    _check_fill(mode, cval)
    _, h, w, _ = images.shape
    rows, cols = ada.affine_coords(g_inv, h, w)
    if mode == "reflect":
        out = ada.bilinear_sample(images, rows, cols)
    elif mode == "edge":
        out = ada.bilinear_sample(images, jnp.clip(rows, 0, h - 1), jnp.clip(cols, 0, w - 1))
    else:
        # A one-pixel ring of cval, with every outside coordinate clamped onto it, gives a
        # bilinear blend into cval across the border and cval beyond.
        padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=cval)
        out = ada.bilinear_sample(
            padded, jnp.clip(rows + 1, 0, h + 1), jnp.clip(cols + 1, 0, w + 1)
        )
    return jnp.clip(out, -1, 1).astype(images.dtype)


@_jit("mode", "cval")
def affine_transform(
    images: jax.Array,
    rotate: jax.Array | float = 0.0,
    scale: jax.Array | float = 1.0,
    translate_x: jax.Array | float = 0.0,
    translate_y: jax.Array | float = 0.0,
    mode: str = "constant",
    cval: float = -1.0,
) -> jax.Array:
    """Scales, rotates (degrees, clockwise) and translates (fractions of the size) each image.

    Each value is a number or a per-image (N,) array; the order about the centre is imgaug's.
    """
    _check_images(images, "affine_transform")
    _check_fill(mode, cval)
    n, h, w, _ = images.shape

    def per_image(v: jax.Array | float) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(v, jnp.float32), (n,))

    s = per_image(scale)
    theta = per_image(rotate) * np.float32(math.pi / 180)
    # Forward T @ R @ S, so the inverse that the resampler needs is S^-1 @ R^-1 @ T^-1.
    shift = ada.translate2d(-per_image(translate_x) * w, -per_image(translate_y) * h)
    g_inv = _mm(_mm(ada.scale2d(1 / s, 1 / s), ada.rotate2d(-theta)), shift)
    return warp(images, g_inv, mode, cval)


@_jit("rotate", "scale", "translate", "mode", "cval")
def affine(
    images: jax.Array,
    key: jax.Array,
    rotate: Range = (-20.0, 20.0),
    scale: Range = (0.9, 1.1),
    translate: Range = (-0.1, 0.1),
    mode: str = "constant",
    cval: float = -1.0,
) -> jax.Array:
    """Random `affine_transform`: angle in degrees, zoom factor, x and y shifts drawn per image."""
    _check_images(images, "affine")
    _check_fill(mode, cval)
    shift = _bounds("translate", translate)
    bounds = (_bounds("rotate", rotate), _bounds("scale", scale, 1e-3), shift, shift)
    angle, zoom, tx, ty = _draw(key, images.shape[0], *bounds)
    return affine_transform(images, angle, zoom, tx, ty, mode, cval)


@_jit("percent", "mode", "cval")
def crop_and_pad(
    images: jax.Array,
    key: jax.Array,
    percent: Range = (-0.05, 0.1),
    mode: str = "constant",
    cval: float = -1.0,
) -> jax.Array:
    """Pads (positive) or crops (negative) each side by its own fraction, then resizes back.

    imgaug's CropAndPad(percent, keep_size=True): whole pixels per side, drawn independently.
    """
    _check_images(images, "crop_and_pad")
    _check_fill(mode, cval)
    n, h, w, _ = images.shape
    side = _bounds("percent", percent, low=-0.499)
    top, right, bottom, left = _draw(key, n, side, side, side, side)
    # Pixels cropped per side; padding is a negative crop.
    top, bottom = -jnp.round(top * h), -jnp.round(bottom * h)
    left, right = -jnp.round(left * w), -jnp.round(right * w)
    # The kept box, (h - top - bottom) x (w - left - right), resized to h x w about its centre.
    g_inv = _mm(
        ada.translate2d((left - right) / 2, (top - bottom) / 2),
        ada.scale2d((w - left - right) / w, (h - top - bottom) / h),
    )
    return warp(images, g_inv, mode, cval)


@_jit("padding", "mode", "cval")
def random_crop(
    images: jax.Array,
    key: jax.Array,
    padding: float = 0.125,
    mode: str = "constant",
    cval: float = -1.0,
) -> jax.Array:
    """Crops an H x W window at a random whole-pixel offset from the image padded on each side.

    `padding` is a fraction of the size (0.125 of 32 is CIFAR's pad-4-and-crop).
    """
    _check_images(images, "random_crop")
    _check_fill(mode, cval)
    _bounds("padding", padding, 0.0, 1.0)
    n, h, w, _ = images.shape
    pad_r, pad_c = round(padding * h), round(padding * w)
    u = jax.random.uniform(key, (2, n))
    dy = _draw_int(u[0], (-pad_r, pad_r)).astype(jnp.float32)
    dx = _draw_int(u[1], (-pad_c, pad_c)).astype(jnp.float32)
    return warp(images, ada.translate2d(dx, dy), mode, cval)
