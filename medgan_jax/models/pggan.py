"""Progressive GAN generator and discriminator (Karras et al. 2018, the paper's networks).

Both hold the layers of every resolution from 4x4 to `resolution`; `stage_resolution`
picks the one trained now and `fading` blends in its newest block with weight `alpha`
(a call argument, so one compiled step serves a whole fade-in). Feature maps at stage s
(resolution 2^(s+1)) are min(fmap_base / 2^s, fmap_max). Equalised learning rate, pixel
norm after every G convolution, minibatch standard deviation before D's last block,
LeakyReLU 0.2, no output activation. Class conditioning as in the official code: the
label vector (one-hot of a class id, or a multi-hot vector) is joined to the latent, and
D optionally predicts it ('acgan') or projects it onto its features ('projection').
`dtype` is the computation dtype (bfloat16: mixed precision): parameters stay float32 and
the outputs (images, scores, class logits) are float32.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from medgan_jax.models.layers import (
    EqualizedConv,
    EqualizedDense,
    downsample_average,
    minibatch_stddev,
    pixel_norm,
    upsample_nearest,
)

CONDITIONINGS = ("", "acgan", "projection")


def num_features(stage: int, fmap_base: int = 8192, fmap_max: int = 512) -> int:
    """Feature maps at stage s (resolution 2^(s+1)): min(fmap_base / 2^s, fmap_max)."""
    return max(1, min(fmap_base // 2**stage, fmap_max))


def resolutions(final: int, initial: int = 4) -> list[int]:
    """[initial, 2 * initial, ..., final], checking both are powers of two in range."""
    for name, value in (("resolution", final), ("initial resolution", initial)):
        if value < 4 or value > 1024 or 2 ** int(math.log2(value)) != value:
            raise ValueError(f"PGGAN {name} must be a power of two in 4..1024, got {value}.")
    if initial > final:
        raise ValueError(f"PGGAN initial resolution {initial} exceeds the final {final}.")
    return [2**k for k in range(int(math.log2(initial)), int(math.log2(final)) + 1)]


def stage_modules(resolution: int, fading: bool) -> tuple[list[str], list[str]]:
    """Names of the generator's and discriminator's modules that a stage uses."""
    below = [r for r in resolutions(resolution) if r <= resolution]
    g = [f"block_{r}" for r in below] + [f"to_rgb_{resolution}"]
    d = [f"block_{r}" for r in below] + [f"from_rgb_{resolution}"]
    if fading:
        g.append(f"to_rgb_{resolution // 2}")
        d.append(f"from_rgb_{resolution // 2}")
    return g, d


def _stage(res: int) -> int:
    return int(math.log2(res)) - 1


def _act(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.2)


def label_vector(labels: jax.Array, num_classes: int) -> jax.Array:
    """Class ids [N] -> one-hot [N, C]; multi-hot [N, C] passes through as float."""
    if labels.ndim == 1:
        return jax.nn.one_hot(labels, num_classes)
    if labels.shape[-1] != num_classes:
        raise ValueError(f"Label vectors have {labels.shape[-1]} entries, expected {num_classes}.")
    return labels.astype(jnp.float32)


def _check_stage(stage: int, final: int, name: str) -> int:
    stage = stage or final
    if stage < 4 or stage > final or 2 ** int(math.log2(stage)) != stage:
        raise ValueError(
            f"{name} stage_resolution {stage} must be a power of two in 4..{final} (the final)."
        )
    return stage


class _GBlock(nn.Module):
    """2x nearest upsample, two 3x3 convs, each followed by LeakyReLU and pixel norm."""

    features: int
    pixelnorm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        norm = pixel_norm if self.pixelnorm else (lambda v: v)
        x = norm(_act(EqualizedConv(self.features, upsample=True, name="conv0_up")(x)))
        return norm(_act(EqualizedConv(self.features, name="conv1")(x)))


class _GFirstBlock(nn.Module):
    """Latent (+ labels) -> 4x4 features: dense as a 4x4 'conv', then a 3x3 conv."""

    features: int
    pixelnorm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        norm = pixel_norm if self.pixelnorm else (lambda v: v)
        # Official gain sqrt(2)/4 on the weights, i.e. gain 2/16 in sqrt(gain / fan_in).
        x = EqualizedDense(16 * self.features, gain=2.0 / 16, use_bias=False, name="dense")(x)
        x = x.reshape(x.shape[0], 4, 4, self.features)
        x = x + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
        x = norm(_act(x))
        return norm(_act(EqualizedConv(self.features, name="conv")(x)))


class Generator(nn.Module):
    """z [N, latent] (+ class ids [N] or multi-hot [N, C]) -> images [N, S, S, channels].

    S is `stage_resolution` (0 = `resolution`). With `fading`, the output is
    lerp(upsampled previous-resolution image, new block's image, alpha).
    """

    resolution: int = 256
    channels: int = 3
    fmap_base: int = 8192
    fmap_max: int = 512
    num_classes: int = 0
    normalize_latents: bool = True
    pixelnorm: bool = True
    stage_resolution: int = 0
    fading: bool = False
    alpha: float = 1.0  # default when the call passes none (sampling mid-fade)
    dtype: Any = jnp.float32  # computation dtype; parameters stay float32

    def nf(self, res: int) -> int:
        return num_features(_stage(res), self.fmap_base, self.fmap_max)

    @nn.compact
    def __call__(
        self,
        z: jax.Array,
        labels: jax.Array | None = None,
        train: bool = True,
        alpha: jax.Array | float | None = None,
    ) -> jax.Array:
        del train  # no BatchNorm or dropout
        all_res = resolutions(self.resolution)
        stage = _check_stage(self.stage_resolution, self.resolution, "Generator")
        alpha = self.alpha if alpha is None else alpha
        x = z.astype(self.dtype)
        if self.num_classes:
            x = jnp.concatenate([x, label_vector(labels, self.num_classes).astype(x.dtype)], -1)
        if self.normalize_latents:
            x = pixel_norm(x)
        # At init every block and toRGB is built, so checkpoints hold all resolutions.
        init = self.is_initializing()
        top = self.resolution if init else stage
        res_list = [r for r in all_res if r <= top]
        to_rgb = lambda h, r: EqualizedConv(self.channels, 1, gain=1.0, name=f"to_rgb_{r}")(h)
        h = _GFirstBlock(self.nf(4), self.pixelnorm, name="block_4")(x)
        previous = h
        for res in res_list[1:]:
            if init:
                to_rgb(h, res // 2)
            previous, h = h, _GBlock(self.nf(res), self.pixelnorm, name=f"block_{res}")(h)
        image = to_rgb(h, top)
        if self.fading and not init:
            if top == 4:
                raise ValueError("Generator: fading needs stage_resolution >= 8.")
            low = upsample_nearest(to_rgb(previous, top // 2), 2)
            image = low + (image - low) * jnp.asarray(alpha, image.dtype)
        return image.astype(jnp.float32)


class _DBlock(nn.Module):
    """Two 3x3 convs with LeakyReLU, then 2x2 average pooling."""

    features0: int
    features1: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _act(EqualizedConv(self.features0, name="conv0")(x))
        x = _act(EqualizedConv(self.features1, name="conv1")(x))
        return downsample_average(x, 2)


class _DLastBlock(nn.Module):
    """4x4 features -> outputs: minibatch stddev, 3x3 conv, dense, dense (gain 1)."""

    features: int
    dense_features: int
    num_classes: int
    conditioning: str
    mbstd_group_size: int
    mbstd_num_features: int

    @nn.compact
    def __call__(self, h: jax.Array, labels: jax.Array | None):
        if self.mbstd_group_size > 1:
            h = minibatch_stddev(h, self.mbstd_group_size, self.mbstd_num_features)
        h = _act(EqualizedConv(self.features, name="conv")(h))
        features = _act(EqualizedDense(self.dense_features, name="dense0")(h.reshape(len(h), -1)))
        extra = self.num_classes if self.conditioning == "acgan" else 0
        out = EqualizedDense(1 + extra, gain=1.0, name="dense1")(features)
        scores = out[:, 0]
        if self.conditioning == "projection":
            embed = EqualizedDense(features.shape[-1], gain=1.0, use_bias=False, name="embed")
            label = label_vector(labels, self.num_classes).astype(features.dtype)
            scores = scores + jnp.sum(embed(label) * features, -1, dtype=jnp.float32)
        scores = scores.astype(jnp.float32)
        if self.conditioning == "acgan":
            return scores, out[:, 1:].astype(jnp.float32)
        return scores, None


class Discriminator(nn.Module):
    """images [N, S, S, C] (+ labels) -> (real/fake scores [N], class logits or None).

    S must be `stage_resolution` (0 = `resolution`); with `fading`, the new block's
    features are lerped with fromRGB of the 2x-downscaled images by alpha.
    """

    resolution: int = 256
    fmap_base: int = 8192
    fmap_max: int = 512
    num_classes: int = 0
    conditioning: str = ""  # '' | 'acgan' | 'projection'
    mbstd_group_size: int = 4  # <= 1 disables the minibatch-stddev layer
    mbstd_num_features: int = 1
    stage_resolution: int = 0
    fading: bool = False
    alpha: float = 1.0
    dtype: Any = jnp.float32  # computation dtype; parameters stay float32

    def nf(self, res: int) -> int:
        return num_features(_stage(res), self.fmap_base, self.fmap_max)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        labels: jax.Array | None = None,
        train: bool = True,
        alpha: jax.Array | float | None = None,
    ):
        del train
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"Discriminator conditioning='{self.conditioning}'; expected one of "
                f"{CONDITIONINGS}."
            )
        all_res = resolutions(self.resolution)
        stage = _check_stage(self.stage_resolution, self.resolution, "Discriminator")
        alpha = self.alpha if alpha is None else alpha
        init = self.is_initializing()
        top = self.resolution if init else stage
        if x.shape[1] != top or x.shape[2] != top:
            raise ValueError(
                f"Discriminator at stage {top}x{top} got images of {x.shape[1]}x{x.shape[2]}."
            )
        x = x.astype(self.dtype)
        from_rgb = lambda v, r: _act(EqualizedConv(self.nf(r), 1, name=f"from_rgb_{r}")(v))
        if init:  # build every fromRGB
            for res in all_res[:-1]:
                from_rgb(downsample_average(x, top // res), res)
        if self.fading and top == 4 and not init:
            raise ValueError("Discriminator: fading needs stage_resolution >= 8.")
        h = from_rgb(x, top)
        res_list = [r for r in all_res if 8 <= r <= top]
        for res in reversed(res_list):
            h = _DBlock(self.nf(res), self.nf(res // 2), name=f"block_{res}")(h)
            if res == top and self.fading and not init:
                low = from_rgb(downsample_average(x, 2), top // 2)
                h = low + (h - low) * jnp.asarray(alpha, h.dtype)
        return _DLastBlock(
            self.nf(4),
            num_features(0, self.fmap_base, self.fmap_max),
            self.num_classes,
            self.conditioning,
            self.mbstd_group_size,
            self.mbstd_num_features,
            name="block_4",
        )(h, labels)
