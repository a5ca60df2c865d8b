"""Adaptive discriminator augmentation (Karras et al., 2020, StyleGAN2-ADA) in pure JAX.

`augment` is the paper's pipeline ('bgc' by default): pixel blitting and general geometric
transforms composed into one inverse affine matrix per image and executed by a single
bilinear resampling with reflection padding, then colour transforms composed into one 4x4
matrix per image. Parameters are drawn as in NVlabs' `training/augment.py`, in [-1, 1]
image space. With the same key, `augment(x, key, p, config)` equals
`apply_color_matrix(affine_sample(x, geometric_matrix(key, ...)), color_matrix(key, ...))`.
`AdaState`, `accumulate` and `maybe_update` implement the r_t heuristic that tunes p, as
pure functions usable inside a jit-compiled train step.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

_HIGHEST = jax.lax.Precision.HIGHEST

_BLIT = ("xflip", "rotate90", "xint")
_GEOM = ("scale", "rotate", "aniso", "xfrac")
_COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
PRESETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "blit": _BLIT,
    "geom": _GEOM,
    "color": _COLOR,
    "bg": _BLIT + _GEOM,
    "bgc": _BLIT + _GEOM + _COLOR,
}


@dataclasses.dataclass(frozen=True)
class AdaConfig:
    """Probability multipliers and strengths of the ADA transforms; default: the paper's bgc."""

    # Pixel blitting.
    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    xint_max: float = 0.125
    # General geometric transforms.
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    xfrac: float = 1.0
    scale_std: float = 0.2
    rotate_max: float = 1.0
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    # Colour transforms.
    brightness: float = 1.0
    contrast: float = 1.0
    lumaflip: float = 1.0
    hue: float = 1.0
    saturation: float = 1.0
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1.0
    saturation_std: float = 1.0
    # StyleGAN2-ADA also luma-flips 1-channel images, which negates them; off here because an
    # intensity-inverted radiograph or scan is not a plausible sample of the same class.
    lumaflip_gray: bool = False

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool):
                continue
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(
                    f"AdaConfig.{field.name} must be a non-negative number, got {value!r}."
                )

    @classmethod
    def preset(cls, name: str, **overrides: float | bool) -> AdaConfig:
        """A named StyleGAN2-ADA pipeline ('none', 'blit', 'geom', 'color', 'bg', 'bgc')."""
        if name not in PRESETS:
            raise ValueError(
                f"Unknown ADA preset {name!r}; available presets are {', '.join(PRESETS)}."
            )
        enabled = PRESETS[name]
        switches = {t: (1.0 if t in enabled else 0.0) for t in _BLIT + _GEOM + _COLOR}
        return cls(**{**switches, **overrides})

    @property
    def geometric_enabled(self) -> bool:
        """Whether any pixel-blitting or geometric transform can fire."""
        return any(getattr(self, t) > 0 for t in _BLIT + _GEOM)

    def color_enabled(self, num_channels: int) -> bool:
        """Whether any colour transform can fire on images with `num_channels` channels."""
        active = _COLOR if num_channels == 3 else ("brightness", "contrast")
        if num_channels == 1 and self.lumaflip_gray:
            active += ("lumaflip",)
        return any(getattr(self, t) > 0 for t in active)


BGC = AdaConfig()

# ----------------------------------------------------------------------------------------
# Batched homogeneous matrices, (N, 3, 3) for 2-D geometry and (N, 4, 4) for colour.


def _matrix(*rows: list) -> jax.Array:
    shape = jnp.broadcast_shapes(*(jnp.shape(e) for row in rows for e in row))
    return jnp.stack(
        [
            jnp.stack([jnp.broadcast_to(jnp.asarray(e, jnp.float32), shape) for e in row], -1)
            for row in rows
        ],
        -2,
    )


def translate2d(tx: jax.Array, ty: jax.Array) -> jax.Array:
    """Batched 3x3 translation by (tx, ty) pixels."""
    return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1])


def scale2d(sx: jax.Array, sy: jax.Array) -> jax.Array:
    """Batched 3x3 scaling."""
    return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1])


def rotate2d(theta: jax.Array) -> jax.Array:
    """Batched 3x3 rotation by `theta` radians."""
    return _rotate2d_cs(jnp.cos(theta), jnp.sin(theta))


def _rotate2d_cs(cos: jax.Array, sin: jax.Array) -> jax.Array:
    return _matrix([cos, -sin, 0], [sin, cos, 0], [0, 0, 1])


def _translate3d(tx: jax.Array, ty: jax.Array, tz: jax.Array) -> jax.Array:
    return _matrix([1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1])


def _scale3d(sx: jax.Array, sy: jax.Array, sz: jax.Array) -> jax.Array:
    return _matrix([sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1])


def _rotate3d(v: jax.Array, theta: jax.Array) -> jax.Array:
    vx, vy, vz = v[0], v[1], v[2]
    s, c = jnp.sin(theta), jnp.cos(theta)
    cc = 1 - c
    return _matrix(
        [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
        [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
        [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
        [0, 0, 0, 1],
    )


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    # Full fp32: default TPU/TF32 matmul precision would make identity and blits inexact.
    return jnp.matmul(a, b, precision=_HIGHEST)


# ----------------------------------------------------------------------------------------
# Parameter sampling.
#
# All random numbers of one `augment` call come from a single RNG call, a table with a fixed
# column per quantity: one call compiles far faster than two per transform on XLA:CPU,
# and switching a transform off leaves the draws of the others unchanged.


def _columns(*names: str) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


_UNIFORM = _columns(
    "xflip", "xflip_gate", "rotate90", "rotate90_gate", "xint_x", "xint_y", "xint_gate",
    "scale_gate", "rotate", "rotate_gate", "aniso_gate", "rotate_post", "rotate_post_gate",
    "xfrac_gate", "brightness_gate", "contrast_gate", "lumaflip", "lumaflip_gate", "hue",
    "hue_gate", "saturation_gate",
)  # fmt: skip
_NORMAL = _columns("scale", "aniso", "xfrac_x", "xfrac_y", "brightness", "contrast", "saturation")


@dataclasses.dataclass(frozen=True)
class _Draws:
    uniform: jax.Array
    normal: jax.Array

    def u(self, name: str) -> jax.Array:
        return self.uniform[:, _UNIFORM[name]]

    def z(self, name: str) -> jax.Array:
        return self.normal[:, _NORMAL[name]]


def _draw(key: jax.Array, num: int) -> _Draws:
    u = jax.random.uniform(key, (num, len(_UNIFORM) + len(_NORMAL)))
    # N(0, 1) by inverse CDF, as jax.random.normal itself does; clipped off erfinv(-1) = -inf.
    v = jnp.maximum(u[:, len(_UNIFORM) :] * 2 - 1, np.nextafter(np.float32(-1), np.float32(0)))
    z = np.float32(math.sqrt(2)) * jax.lax.erf_inv(v)
    return _Draws(u[:, : len(_UNIFORM)], z)


def geometric_matrix(
    key: jax.Array,
    num: int,
    height: int,
    width: int,
    p: float | jax.Array,
    config: AdaConfig = BGC,
) -> jax.Array:
    """Per-image inverse transform G_inv (N, 3, 3) mapping output to input pixel coordinates."""
    return _geometric_matrix(_draw(key, num), height, width, p, config)


def _geometric_matrix(
    draws: _Draws, height: int, width: int, p: float | jax.Array, config: AdaConfig
) -> jax.Array:
    num = draws.uniform.shape[0]
    u, z = draws.u, draws.z
    p = jnp.asarray(p, jnp.float32)
    g_inv = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (num, 3, 3))

    if config.xflip > 0:
        i = jnp.floor(u("xflip") * 2)
        i = jnp.where(u("xflip_gate") < config.xflip * p, i, 0.0)
        g_inv = _mm(g_inv, scale2d(1 / (1 - 2 * i), jnp.ones_like(i)))

    if config.rotate90 > 0:
        i = jnp.minimum(jnp.floor(u("rotate90") * 4), 3).astype(jnp.int32)
        i = jnp.where(u("rotate90_gate") < config.rotate90 * p, i, 0)
        # Exact cos/sin of the quarter turns keep blitted pixels bit-exact.
        cos = jnp.array([1.0, 0.0, -1.0, 0.0])[i]
        sin = jnp.array([0.0, 1.0, 0.0, -1.0])[i]
        g_inv = _mm(g_inv, _rotate2d_cs(cos, sin))

    if config.xint > 0:
        gate = u("xint_gate") < config.xint * p
        tx = jnp.where(gate, (u("xint_x") * 2 - 1) * config.xint_max, 0.0)
        ty = jnp.where(gate, (u("xint_y") * 2 - 1) * config.xint_max, 0.0)
        g_inv = _mm(g_inv, translate2d(-jnp.round(tx * width), -jnp.round(ty * height)))

    if config.scale > 0:
        s = jnp.exp2(z("scale") * config.scale_std)
        s = jnp.where(u("scale_gate") < config.scale * p, s, 1.0)
        g_inv = _mm(g_inv, scale2d(1 / s, 1 / s))

    # Two independent rotations, each with p_rot, so that P(pre or post) = rotate * p.
    p_rot = 1 - jnp.sqrt(jnp.clip(1 - config.rotate * p, 0, 1))
    if config.rotate > 0:
        theta = (u("rotate") * 2 - 1) * math.pi * config.rotate_max
        theta = jnp.where(u("rotate_gate") < p_rot, theta, 0.0)
        g_inv = _mm(g_inv, rotate2d(theta))

    if config.aniso > 0:
        s = jnp.exp2(z("aniso") * config.aniso_std)
        s = jnp.where(u("aniso_gate") < config.aniso * p, s, 1.0)
        g_inv = _mm(g_inv, scale2d(1 / s, s))

    if config.rotate > 0:
        theta = (u("rotate_post") * 2 - 1) * math.pi * config.rotate_max
        theta = jnp.where(u("rotate_post_gate") < p_rot, theta, 0.0)
        g_inv = _mm(g_inv, rotate2d(theta))

    if config.xfrac > 0:
        gate = u("xfrac_gate") < config.xfrac * p
        tx = jnp.where(gate, z("xfrac_x") * config.xfrac_std, 0.0)
        ty = jnp.where(gate, z("xfrac_y") * config.xfrac_std, 0.0)
        g_inv = _mm(g_inv, translate2d(-tx * width, -ty * height))

    return g_inv


_LUMA = np.asarray([1.0, 1.0, 1.0, 0.0], np.float32) / np.float32(math.sqrt(3))


def color_matrix(
    key: jax.Array,
    num: int,
    num_channels: int,
    p: float | jax.Array,
    config: AdaConfig = BGC,
) -> jax.Array:
    """Per-image colour transform C (N, 4, 4) acting on homogeneous RGB: C @ rgb_in = rgb_out."""
    return _color_matrix(_draw(key, num), num_channels, p, config)


def _color_matrix(
    draws: _Draws, num_channels: int, p: float | jax.Array, config: AdaConfig
) -> jax.Array:
    num = draws.uniform.shape[0]
    u, z = draws.u, draws.z
    p = jnp.asarray(p, jnp.float32)
    eye = np.eye(4, dtype=np.float32)
    c_mat = jnp.broadcast_to(eye, (num, 4, 4))
    vvt = np.outer(_LUMA, _LUMA)
    rgb = num_channels == 3

    if config.brightness > 0:
        b = z("brightness") * config.brightness_std
        b = jnp.where(u("brightness_gate") < config.brightness * p, b, 0.0)
        c_mat = _mm(_translate3d(b, b, b), c_mat)

    if config.contrast > 0:
        c = jnp.exp2(z("contrast") * config.contrast_std)
        c = jnp.where(u("contrast_gate") < config.contrast * p, c, 1.0)
        c_mat = _mm(_scale3d(c, c, c), c_mat)

    if config.lumaflip > 0 and (rgb or config.lumaflip_gray):
        i = jnp.floor(u("lumaflip") * 2)
        i = jnp.where(u("lumaflip_gate") < config.lumaflip * p, i, 0.0)
        c_mat = _mm(eye - 2 * vvt * i[:, None, None], c_mat)  # Householder reflection.

    if config.hue > 0 and rgb:
        theta = (u("hue") * 2 - 1) * math.pi * config.hue_max
        theta = jnp.where(u("hue_gate") < config.hue * p, theta, 0.0)
        c_mat = _mm(_rotate3d(_LUMA, theta), c_mat)

    if config.saturation > 0 and rgb:
        s = jnp.exp2(z("saturation") * config.saturation_std)
        s = jnp.where(u("saturation_gate") < config.saturation * p, s, 1.0)
        c_mat = _mm(vvt + (eye - vvt) * s[:, None, None], c_mat)

    return c_mat


# ----------------------------------------------------------------------------------------
# Execution.


def _reflect(index: jax.Array, size: int) -> jax.Array:
    """Mirrors integer indices about the first and last pixel centres (d c b | a b c d | c b a)."""
    if size == 1:
        return jnp.zeros_like(index)
    period = 2 * (size - 1)
    index = jnp.mod(index, period)
    return jnp.where(index >= size, period - index, index)


def bilinear_sample(images: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Samples NHWC images at fractional (rows, cols), each (N, H', W'), reflecting at borders."""
    n, h, w, c = images.shape
    r0f, c0f = jnp.floor(rows), jnp.floor(cols)
    wr = (rows - r0f)[..., None].astype(images.dtype)
    wc = (cols - c0f)[..., None].astype(images.dtype)
    r0, c0 = r0f.astype(jnp.int32), c0f.astype(jnp.int32)
    r0, r1 = _reflect(r0, h), _reflect(r0 + 1, h)
    c0, c1 = _reflect(c0, w), _reflect(c0 + 1, w)
    flat = images.reshape(n, h * w, c)
    out_shape = (n, *rows.shape[1:], c)

    def gather(r: jax.Array, col: jax.Array) -> jax.Array:
        index = (r * w + col).reshape(n, -1, 1)
        return jnp.take_along_axis(flat, index, axis=1).reshape(out_shape)

    top = gather(r0, c0) * (1 - wc) + gather(r0, c1) * wc
    bottom = gather(r1, c0) * (1 - wc) + gather(r1, c1) * wc
    return top * (1 - wr) + bottom * wr


def affine_coords(g_inv: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    """Input (rows, cols), each (N, H, W), that each output pixel reads through G_inv."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    ys, xs = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32) - cy,
        jnp.arange(width, dtype=jnp.float32) - cx,
        indexing="ij",
    )
    g = g_inv.astype(jnp.float32)[:, :, :, None, None]
    cols = g[:, 0, 0] * xs + g[:, 0, 1] * ys + g[:, 0, 2] + cx
    rows = g[:, 1, 0] * xs + g[:, 1, 1] * ys + g[:, 1, 2] + cy
    return rows, cols


def affine_sample(images: jax.Array, g_inv: jax.Array) -> jax.Array:
    """Resamples each image through its inverse affine matrix (pixels, origin at the centre)."""
    _, h, w, _ = images.shape
    rows, cols = affine_coords(g_inv, h, w)
    return bilinear_sample(images, rows, cols)


def apply_color_matrix(images: jax.Array, c_mat: jax.Array) -> jax.Array:
    """Applies per-image 4x4 colour matrices to RGB, or their grey-level reduction to 1 channel."""
    num_channels = images.shape[-1]
    c_mat = c_mat.astype(images.dtype)
    if num_channels == 3:
        rgb = jnp.einsum("nij,nhwj->nhwi", c_mat[:, :3, :3], images, precision=_HIGHEST)
        return rgb + c_mat[:, None, None, :3, 3]
    if num_channels == 1:
        # A grey pixel g is (g, g, g): the mean output channel is g * mean row sum + mean offset.
        gain = jnp.sum(c_mat[:, :3, :3], axis=(1, 2)) / 3
        offset = jnp.sum(c_mat[:, :3, 3], axis=1) / 3
        return images * gain[:, None, None, None] + offset[:, None, None, None]
    raise ValueError(f"ADA colour transforms need 1 or 3 channels, got {num_channels}.")


def augment(
    images: jax.Array,
    key: jax.Array,
    p: float | jax.Array,
    config: AdaConfig = BGC,
) -> jax.Array:
    """Augments each image with every enabled transform, each firing with probability p."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"ADA expects NHWC images with 1 or 3 channels, got {images.shape}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"ADA expects floating-point images in [-1, 1], got {images.dtype}.")
    n, h, w, c = images.shape
    draws = _draw(key, n)
    x = images
    if config.geometric_enabled:
        x = affine_sample(x, _geometric_matrix(draws, h, w, p, config))
    if config.color_enabled(c):
        x = apply_color_matrix(x, _color_matrix(draws, c, p, config))
    return x.astype(images.dtype)


# ----------------------------------------------------------------------------------------
# The p heuristic.


@struct.dataclass
class AdaState:
    """Augmentation probability p and the sum and count of sign(D(real)) since its last update."""

    p: jax.Array
    sign_sum: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, p: float = 0.0) -> AdaState:
        """A fresh state with probability `p` and an empty accumulator."""
        return cls(
            p=jnp.asarray(p, jnp.float32),
            sign_sum=jnp.zeros((), jnp.float32),
            count=jnp.zeros((), jnp.int32),
        )

    @property
    def rt(self) -> jax.Array:
        """r_t = E[sign(D(real))] over the logits accumulated so far (0 when none)."""
        return self.sign_sum / jnp.maximum(self.count, 1).astype(jnp.float32)


def accumulate(state: AdaState, d_real_logits: jax.Array) -> AdaState:
    """Adds the signs of a batch of discriminator logits on real images to the accumulator."""
    signs = jnp.sign(jax.lax.stop_gradient(d_real_logits).astype(jnp.float32))
    return state.replace(
        sign_sum=state.sign_sum + jnp.sum(signs),
        count=state.count + jnp.asarray(signs.size, jnp.int32),
    )


def update_p(
    p: float | jax.Array,
    rt_sign_mean: float | jax.Array,
    batch_images: int,
    target: float = 0.6,
    adjust_kimg: float = 500.0,
    interval: int = 4,
) -> jax.Array:
    """StyleGAN2-ADA's step: p += sign(r_t - target) * batch * interval / (adjust_kimg * 1000)."""
    if isinstance(adjust_kimg, (int, float)) and adjust_kimg <= 0:
        raise ValueError(f"adjust_kimg must be positive, got {adjust_kimg}.")
    step_size = batch_images * interval / (adjust_kimg * 1000.0)
    rt = jnp.asarray(rt_sign_mean, jnp.float32)
    new_p = jnp.asarray(p, jnp.float32) + jnp.sign(rt - target) * step_size
    return jnp.clip(new_p, 0.0, 1.0)


def maybe_update(
    state: AdaState,
    step: int | jax.Array,
    batch_size: int,
    target: float = 0.6,
    adjust_kimg: float = 500.0,
    interval: int = 4,
) -> AdaState:
    """Every `interval` steps, moves p by `update_p` from the accumulated r_t and resets the sums.

    `step` counts completed steps including the current one (StyleGAN2-ADA's batch_idx after
    its increment), so with interval 4 the updates land on steps 4, 8, 12, ...
    """
    if isinstance(interval, int) and interval < 1:
        raise ValueError(f"interval must be a positive number of steps, got {interval}.")
    due = (jnp.asarray(step) % interval == 0) & (state.count > 0)
    new_p = update_p(state.p, state.rt, batch_size, target, adjust_kimg, interval)
    return AdaState(
        p=jnp.where(due, new_p, state.p),
        sign_sum=jnp.where(due, 0.0, state.sign_sum),
        count=jnp.where(due, 0, state.count),
    )
