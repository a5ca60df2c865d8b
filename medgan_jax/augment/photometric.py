"""Photometric augmentations after imgaug: superpixels, sharpen, emboss, dropout, brightness, hue.

Defaults are the values of imgaug's README example pipeline, with 0..255 quantities mapped to
[-1, 1] (x = v / 127.5 - 1): imgaug's black (0) is -1, so dropped pixels become -1; an offset
of 10 grey levels is about 0.08; contrast pivots on mid-grey, 0. Per-image parameters,
`per_channel` probabilities and parameter conventions are as in `classic`; Gaussian blur
lives in `filtering`.

`superpixels` is imgaug's Superpixels(p_replace, n_segments), which runs skimage's SLIC per
image; here SLIC is a batched k-means. Each image gets a gh x gw grid of about n_segments
cells (step S = sqrt(H * W / n_segments)); a pixel's features are its channels and its
(row, col) times compactness / S, so the squared distance is SLIC's
d_colour^2 + (m * d_space / S)^2. Starting from the grid cells, each iteration assigns every
pixel to the nearest of the 9 centres of its own and the neighbouring cells, then moves each
centre to the mean of its pixels (an empty segment keeps its centre), with one `segment_sum`
over (image, segment) ids. A segment therefore never leaves the 3 x 3 cells around its own.
Unlike skimage, connectivity is not enforced, and unlike imgaug, images are segmented at full
size (imgaug first shrinks those over max_size=128 px). Each segment is then replaced by its
mean colour with probability p_replace. compactness=0.2 is skimage's default of 10 on Lab
lightness (0..100) rescaled to our range of 2.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from medgan_jax.augment.classic import Range, _bounds, _check_images, _draw, _draw_int, _jit


def _per_channel(
    key: jax.Array, images: jax.Array, bounds: tuple[float, float], per_channel: float
) -> jax.Array:
    """Values (N, 1, 1, C) in bounds: one per channel with probability per_channel, else shared."""
    _bounds("per_channel", per_channel, 0.0, 1.0)
    n, c = images.shape[0], images.shape[-1]
    u = jax.random.uniform(key, (n, c + 1))
    values = bounds[0] + (bounds[1] - bounds[0]) * u[:, :c]
    values = jnp.where(u[:, c:] < per_channel, values, values[:, :1])
    return values[:, None, None, :].astype(images.dtype)


@_jit("value", "per_channel")
def add(
    images: jax.Array, key: jax.Array, value: Range = (-0.08, 0.08), per_channel: float = 0.5
) -> jax.Array:
    """Adds a random offset to each image (imgaug's Add((-10, 10), per_channel=0.5))."""
    _check_images(images, "add")
    offset = _per_channel(key, images, _bounds("value", value, -2.0, 2.0), per_channel)
    return jnp.clip(images + offset, -1, 1)


@_jit("factor", "per_channel")
def multiply(
    images: jax.Array, key: jax.Array, factor: Range = (0.5, 1.5), per_channel: float = 0.5
) -> jax.Array:
    """Multiplies each image's 0..255 intensities by a random factor (imgaug's Multiply)."""
    _check_images(images, "multiply")
    gain = _per_channel(key, images, _bounds("factor", factor, 0.0), per_channel)
    return jnp.clip((images + 1) * gain - 1, -1, 1)


@_jit("factor", "per_channel")
def contrast(
    images: jax.Array, key: jax.Array, factor: Range = (0.5, 2.0), per_channel: float = 0.5
) -> jax.Array:
    """Scales each image's deviation from mid-grey by a random factor (imgaug's LinearContrast)."""
    _check_images(images, "contrast")
    gain = _per_channel(key, images, _bounds("factor", factor, 0.0), per_channel)
    return jnp.clip(images * gain, -1, 1)


@_jit("rate", "per_channel")
def dropout(
    images: jax.Array, key: jax.Array, rate: Range = (0.01, 0.1), per_channel: float = 0.5
) -> jax.Array:
    """Sets a random fraction `rate` of each image's pixels to black, -1 (imgaug's Dropout)."""
    _check_images(images, "dropout")
    _bounds("per_channel", per_channel, 0.0, 1.0)
    lo, hi = _bounds("rate", rate, 0.0, 1.0)
    # One RNG call for everything: each call adds noticeably to a pipeline's compile time.
    u = jax.random.uniform(key, (images.shape[0], images[0].size + 2))
    rate_n = (lo + (hi - lo) * u[:, 0])[:, None, None, None]
    coin = u[:, 1, None, None, None]
    noise = u[:, 2:].reshape(images.shape)
    noise = jnp.where(coin < per_channel, noise, noise[..., :1])
    return jnp.where(noise < rate_n, -1.0, images).astype(images.dtype)


def _correlate_3x3(images: jax.Array, kernels: jax.Array) -> jax.Array:
    """Correlates each image with its own 3x3 kernel (N, 3, 3), borders as cv2's reflect-101."""
    _, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    kernels = kernels.astype(images.dtype)
    out = jnp.zeros_like(images)
    for i in range(3):
        for j in range(3):
            out = out + kernels[:, i, j, None, None, None] * padded[:, i : i + h, j : j + w]
    return out


def _blend_kernel(alpha: jax.Array, effect: jax.Array, images: jax.Array) -> jax.Array:
    """Filters 0..1 intensities with (1 - alpha) * identity + alpha * effect, as imgaug does."""
    identity = jnp.zeros((3, 3)).at[1, 1].set(1.0)
    a = alpha[:, None, None]
    kernels = (1 - a) * identity + a * effect
    out = _correlate_3x3((images + 1) / 2, kernels)
    return jnp.clip(2 * out - 1, -1, 1)


@_jit("alpha", "lightness")
def sharpen(
    images: jax.Array,
    key: jax.Array,
    alpha: Range = (0.0, 1.0),
    lightness: Range = (0.75, 1.5),
) -> jax.Array:
    """imgaug's Sharpen: blends in the kernel [[-1]*3, [-1, 8 + lightness, -1], [-1]*3]."""
    _check_images(images, "sharpen")
    bounds = (_bounds("alpha", alpha, 0.0, 1.0), _bounds("lightness", lightness))
    a, light = _draw(key, images.shape[0], *bounds)
    effect = jnp.broadcast_to(-jnp.ones((3, 3)), (images.shape[0], 3, 3))
    effect = effect.at[:, 1, 1].set(8 + light)
    return _blend_kernel(a, effect, images)


@_jit("alpha", "strength")
def emboss(
    images: jax.Array,
    key: jax.Array,
    alpha: Range = (0.0, 1.0),
    strength: Range = (0.0, 2.0),
) -> jax.Array:
    """imgaug's Emboss: blends in the kernel [[-1-s, -s, 0], [-s, 1, s], [0, s, 1+s]]."""
    _check_images(images, "emboss")
    bounds = (_bounds("alpha", alpha, 0.0, 1.0), _bounds("strength", strength))
    a, s = _draw(key, images.shape[0], *bounds)
    s = s[:, None, None]
    pattern = jnp.array([[-1.0, -1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    offset = jnp.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return _blend_kernel(a, offset + s * pattern, images)


@_jit("hue", "saturation")
def colour(
    images: jax.Array,
    key: jax.Array,
    hue: Range = (-28.0, 28.0),
    saturation: Range = (0.9, 1.1),
) -> jax.Array:
    """Rotates each RGB image's hue (degrees) and scales its saturation; 1 channel is unchanged.

    The rotation is about the grey axis (r = g = b), ADA's hue transform; the defaults
    approximate imgaug's AddToHueAndSaturation((-20, 20)). Grey images have no hue or
    saturation, so this op returns them as they are.
    """
    _check_images(images, "colour")
    num_channels = images.shape[-1]
    if num_channels == 1:
        return images
    if num_channels != 3:
        raise ValueError(f"colour expects 1 or 3 channels, got {num_channels}.")
    bounds = (_bounds("hue", hue), _bounds("saturation", saturation, 0.0))
    angle, sat = _draw(key, images.shape[0], *bounds)
    theta = angle[:, None, None, None] * np.float32(math.pi / 180)
    grey = jnp.mean(images, axis=-1, keepdims=True)
    chroma = images - grey
    # (1, 1, 1) / sqrt(3) x chroma: the chroma turned by 90 degrees about the grey axis.
    turned = (jnp.roll(chroma, 1, axis=-1) - jnp.roll(chroma, -1, axis=-1)) / np.sqrt(3)
    rotated = jnp.cos(theta) * chroma + jnp.sin(theta) * turned
    out = grey + sat[:, None, None, None] * rotated
    return jnp.clip(out, -1, 1).astype(images.dtype)


# ----------------------------------------------------------------------------------------
# Superpixels.


def _grid_shape(height: int, width: int, n_segments):
    """Rows and columns of the SLIC grid for about n_segments cells (NumPy or JAX values)."""
    xp = jnp if isinstance(n_segments, jax.Array) else np
    step = xp.sqrt(height * width / xp.asarray(n_segments, xp.float32))
    gh = xp.clip(xp.round(height / step), 1, height).astype(xp.int32)
    gw = xp.clip(xp.round(width / step), 1, width).astype(xp.int32)
    return gh, gw


def _slic(
    images: jax.Array,
    n_segments: jax.Array,
    max_segments: int,
    compactness: float,
    iterations: int,
) -> jax.Array:
    """Labels (N, H, W) in [0, gh_max * gw_max) and segment mean colours (N, gh_max * gw_max, C)."""
    n, h, w, c = images.shape
    gh_max, gw_max = (int(v) for v in _grid_shape(h, w, max_segments))
    num = gh_max * gw_max
    gh, gw = _grid_shape(h, w, n_segments)
    gh, gw = jnp.minimum(gh, gh_max), jnp.minimum(gw, gw_max)
    # Each pixel's own cell, exact integer arithmetic: floor((y + 0.5) * gh / h).
    cell_y = ((2 * jnp.arange(h) + 1)[None, :] * gh[:, None]) // (2 * h)  # (N, H)
    cell_x = ((2 * jnp.arange(w) + 1)[None, :] * gw[:, None]) // (2 * w)  # (N, W)

    spatial = compactness / jnp.sqrt(h * w / (gh * gw).astype(jnp.float32))
    ys = jnp.broadcast_to(jnp.arange(h, dtype=jnp.float32)[None, :, None], (n, h, w))
    xs = jnp.broadcast_to(jnp.arange(w, dtype=jnp.float32)[None, None, :], (n, h, w))
    position = jnp.stack([ys, xs], -1) * spatial[:, None, None, None]
    features = jnp.concatenate([images.astype(jnp.float32), position], -1)  # (N, H, W, F)
    # A ones column makes one segment_sum give both the sums and the counts.
    with_ones = jnp.concatenate([features, jnp.ones((n, h, w, 1))], -1).reshape(n * h * w, -1)
    offsets = (jnp.arange(n) * num)[:, None, None]

    # The 3 x 3 candidate cells of every pixel, (N, H, W, 9), and whether each is on the grid.
    ky = cell_y[:, :, None] + jnp.arange(-1, 2)  # (N, H, 3)
    kx = cell_x[:, :, None] + jnp.arange(-1, 2)  # (N, W, 3)
    ok_y = (ky >= 0) & (ky < gh[:, None, None])
    ok_x = (kx >= 0) & (kx < gw[:, None, None])
    ky, kx = jnp.clip(ky, 0, gh_max - 1), jnp.clip(kx, 0, gw_max - 1)
    candidates = (ky[:, :, None, :, None] * gw_max + kx[:, None, :, None, :]).reshape(n, h, w, 9)
    on_grid = (ok_y[:, :, None, :, None] & ok_x[:, None, :, None, :]).reshape(n, h, w, 9)

    def update(labels: jax.Array, centres: jax.Array) -> jax.Array:
        ids = (labels + offsets).reshape(-1)
        sums = jax.ops.segment_sum(with_ones, ids, num_segments=n * num)
        counts = sums[:, -1:]
        means = sums[:, :-1] / jnp.maximum(counts, 1)
        return jnp.where(counts > 0, means, centres.reshape(n * num, -1)).reshape(n, num, -1)

    def assign(centres: jax.Array) -> jax.Array:
        flat = candidates.reshape(n, h * w * 9, 1)
        centre = jnp.take_along_axis(centres, flat, axis=1).reshape(n, h, w, 9, -1)
        dist = jnp.sum((features[:, :, :, None] - centre) ** 2, axis=-1)
        best = jnp.argmin(jnp.where(on_grid, dist, jnp.inf), axis=-1)
        return jnp.take_along_axis(candidates, best[..., None], axis=-1)[..., 0]

    labels = cell_y[:, :, None] * gw_max + cell_x[:, None, :]
    centres = update(labels, jnp.zeros((n, num, features.shape[-1])))

    def step(_, state):
        labels = assign(state[1])
        return labels, update(labels, state[1])

    # The last update leaves every non-empty segment's centre at its pixels' mean colour.
    labels, centres = jax.lax.fori_loop(0, iterations, step, (labels, centres))
    return labels.astype(jnp.int32), centres[..., :c]


def _check_slic(compactness: float, iterations: int) -> None:
    if not compactness >= 0:
        raise ValueError(f"compactness must be non-negative, got {compactness}.")
    if not (isinstance(iterations, (int, np.integer)) and iterations >= 0):
        raise ValueError(f"iterations must be a non-negative whole number, got {iterations!r}.")


@_jit("n_segments", "compactness", "iterations")
def superpixel_labels(
    images: jax.Array, n_segments: int, compactness: float = 0.2, iterations: int = 10
) -> jax.Array:
    """SLIC-style superpixel labels (N, H, W), about n_segments distinct ones per image."""
    _check_images(images, "superpixel_labels")
    _check_slic(compactness, iterations)
    if not (isinstance(n_segments, (int, np.integer)) and n_segments >= 1):
        raise ValueError(f"n_segments must be a positive whole number, got {n_segments!r}.")
    per_image = jnp.full((images.shape[0],), n_segments, jnp.int32)
    return _slic(images, per_image, int(n_segments), compactness, iterations)[0]


@_jit("p_replace", "n_segments", "compactness", "iterations")
def superpixels(
    images: jax.Array,
    key: jax.Array,
    p_replace: Range = (0.0, 1.0),
    n_segments: Range = (20, 200),
    compactness: float = 0.2,
    iterations: int = 10,
) -> jax.Array:
    """Replaces each superpixel, with probability p_replace, by its mean colour (imgaug's)."""
    _check_images(images, "superpixels")
    _check_slic(compactness, iterations)
    n, h, w, c = images.shape
    p_bounds = _bounds("p_replace", p_replace, 0.0, 1.0)
    seg_bounds = _bounds("n_segments", n_segments, 1.0)
    if seg_bounds != tuple(round(v) for v in seg_bounds):
        raise ValueError(f"n_segments must be whole numbers, got {n_segments!r}.")
    num = int(np.prod(_grid_shape(h, w, int(seg_bounds[1]))))
    u = jax.random.uniform(key, (n, 2 + num))
    p = p_bounds[0] + (p_bounds[1] - p_bounds[0]) * u[:, :1]
    segments = _draw_int(u[:, 1], seg_bounds)
    labels, means = _slic(images, segments, int(seg_bounds[1]), compactness, iterations)
    replace = u[:, 2:] < p
    flat = labels.reshape(n, h * w)
    mean_colour = jnp.take_along_axis(means, flat[..., None], axis=1).reshape(images.shape)
    replaced = jnp.take_along_axis(replace, flat, axis=1).reshape(n, h, w, 1)
    return jnp.where(replaced, jnp.clip(mean_colour, -1, 1), images).astype(images.dtype)
