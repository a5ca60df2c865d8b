"""DiffAugment (Zhao et al., 2020): differentiable colour, translation and cutout on NHWC batches.

Follows the official DiffAugment_pytorch.py op for op (same distributions, same integer
shifts, same cutout placement, zero fill) on float NHWC images in [-1, 1], where the zero
that translation and cutout write is mid-grey. Every op is a pure function of the images
and a PRNG key: jit-able, differentiable w.r.t. the images and batch-parallel, so it runs
unchanged on a batch sharded over a device mesh.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

POLICY_NAMES = ("color", "translation", "cutout")
DEFAULT_POLICY = "color,translation,cutout"


def _check_images(images: jax.Array) -> None:
    if images.ndim != 4:
        raise ValueError(f"DiffAugment expects NHWC images of rank 4, got shape {images.shape}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"DiffAugment expects floating-point images in [-1, 1], got dtype {images.dtype}."
        )


def _check_ratio(name: str, ratio: float) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (a fraction of the image size), got {ratio}.")


def _fraction_of(size: int, ratio: float) -> int:
    # int(x + 0.5) as in the official code: rounds halves up, unlike Python's round().
    return int(size * ratio + 0.5)


def color_params(
    key: jax.Array, num: int, dtype: jnp.dtype = jnp.float32
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-image brightness offset, saturation factor and contrast factor, each (N, 1, 1, 1)."""
    u = jax.random.uniform(key, (3, num, 1, 1, 1), dtype)
    return u[0] - 0.5, u[1] * 2, u[2] + 0.5


def color(images: jax.Array, key: jax.Array) -> jax.Array:
    """Random brightness, then saturation, then contrast, drawn per image."""
    _check_images(images)
    brightness, saturation, contrast = color_params(key, images.shape[0], images.dtype)
    x = images + brightness
    # On 1-channel images the channel mean is the pixel itself, so saturation is a no-op.
    mean_c = jnp.mean(x, axis=3, keepdims=True)
    x = (x - mean_c) * saturation + mean_c
    mean_chw = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean_chw) * contrast + mean_chw


def translation_offsets(
    key: jax.Array, num: int, height: int, width: int, ratio: float = 0.125
) -> tuple[jax.Array, jax.Array]:
    """Per-image integer shifts (rows, cols); `translation` gives out[i, j] = in[i + dr, j + dc]."""
    _check_ratio("translation_ratio", ratio)
    max_r, max_c = _fraction_of(height, ratio), _fraction_of(width, ratio)
    low = np.array([[-max_r], [-max_c]])
    shifts = jax.random.randint(key, (2, num), low, -low + 1)
    return shifts[0], shifts[1]


def translation(images: jax.Array, key: jax.Array, ratio: float = 0.125) -> jax.Array:
    """Shifts each image by a random whole number of pixels, filling the border with zeros."""
    _check_images(images)
    n, h, w, _ = images.shape
    d_rows, d_cols = translation_offsets(key, n, h, w, ratio)
    # The official indexing: one ring of zeros, and every out-of-image index clamped onto it.
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = jnp.clip(jnp.arange(h)[None, :] + d_rows[:, None] + 1, 0, h + 1)
    cols = jnp.clip(jnp.arange(w)[None, :] + d_cols[:, None] + 1, 0, w + 1)
    shifted = jnp.take_along_axis(padded, rows[:, :, None, None], axis=1)
    return jnp.take_along_axis(shifted, cols[:, None, :, None], axis=2)


def cutout_offsets(
    key: jax.Array, num: int, height: int, width: int, ratio: float = 0.5
) -> tuple[jax.Array, jax.Array]:
    """Per-image centre (row, col) of the cutout square, drawn as in the official code."""
    _check_ratio("cutout_ratio", ratio)
    size_r, size_c = _fraction_of(height, ratio), _fraction_of(width, ratio)
    upper = np.array([[height + (1 - size_r % 2)], [width + (1 - size_c % 2)]])
    centres = jax.random.randint(key, (2, num), 0, upper)
    return centres[0], centres[1]


def cutout_mask(
    key: jax.Array,
    num: int,
    height: int,
    width: int,
    ratio: float = 0.5,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """The (N, H, W, 1) multiplicative mask of `cutout`: 0 inside each image's square, else 1."""
    size_r, size_c = _fraction_of(height, ratio), _fraction_of(width, ratio)
    rows, cols = cutout_offsets(key, num, height, width, ratio)
    top = rows[:, None] - size_r // 2
    left = cols[:, None] - size_c // 2
    r = jnp.arange(height)[None, :]
    c = jnp.arange(width)[None, :]
    # The official code clamps the square's indices into the image: the same as clipping it.
    in_rows = (r >= top) & (r < top + size_r)
    in_cols = (c >= left) & (c < left + size_c)
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    return jnp.where(inside, 0, 1).astype(dtype)[..., None]


def cutout(images: jax.Array, key: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Sets a square of side `ratio` of the image size, at a random place per image, to zero."""
    _check_images(images)
    n, h, w, _ = images.shape
    return images * cutout_mask(key, n, h, w, ratio, images.dtype)


def parse_policy(policy: str) -> tuple[str, ...]:
    """Splits a comma-separated policy into op names, rejecting unknown ones."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    for name in names:
        if name not in POLICY_NAMES:
            raise ValueError(
                f"Unknown DiffAugment policy name {name!r} in policy {policy!r}; "
                f"valid names are {', '.join(POLICY_NAMES)} (comma-separated)."
            )
    return names


def diff_augment(
    images: jax.Array,
    key: jax.Array,
    policy: str = DEFAULT_POLICY,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
) -> jax.Array:
    """Applies the DiffAugment ops named in `policy`, in order, each with its own key."""
    names = parse_policy(policy)
    _check_images(images)
    _check_ratio("translation_ratio", translation_ratio)
    _check_ratio("cutout_ratio", cutout_ratio)
    ops: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
        "color": color,
        "translation": functools.partial(translation, ratio=translation_ratio),
        "cutout": functools.partial(cutout, ratio=cutout_ratio),
    }
    if not names:
        return images
    for name, op_key in zip(names, jax.random.split(key, len(names))):
        images = ops[name](images, op_key)
    return images
