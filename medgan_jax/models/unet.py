"""The diffusion family's U-Net (Ho et al. 2020; Dhariwal & Nichol 2021), laid out block
for block as `diffusers`' UNet2DModel, so that a PyTorch reference with the same parameter
count exists (benchmarks/diffusion_throughput.py).

Residual blocks (GroupNorm, SiLU, 3x3 convs, the noise embedding added between them,
dropout), self-attention after every residual block of the levels whose resolution is in
`attention_resolutions` and in the middle, strided-conv downsampling, nearest + conv
upsampling, skip connections concatenated on the way up. The noise level enters as a
sinusoidal embedding through a two-layer MLP; class ids (`num_classes` > 0) add a learned
embedding, with id `num_classes` the "no class" of classifier-free guidance.

`dtype` is the computation dtype; parameters stay float32, GroupNorm (with the SiLU
after it) and the softmax run in float32 and the output is float32. GroupNorm and the
convolutions are layers.py's (reductions as products with ones, GroupNorm and SiLU as
one op, convolution gradients XLA:CPU runs fast, the upsampling convolutions computed at
their input's size).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from medgan_jax.models import layers
from medgan_jax.models.layers import Conv


def noise_embedding(c_noise: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """[N] -> [N, dim] sinusoidal features, cosines first (diffusers' Timesteps with
    flip_sin_to_cos=True, downscale_freq_shift=0)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = c_noise.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


EPSILON = 1e-5  # GroupNorm's, as diffusers'


class ResBlock(nn.Module):
    """x + conv(drop(silu(norm(conv(silu(norm(x))) + proj(silu(emb)))))), with a 1x1
    conv on the skip path when the width changes."""

    features: int
    num_groups: int
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
        h = layers.GroupNorm(self.num_groups, EPSILON, silu=True, name="norm1")(x)
        h = Conv(self.features, 3, dtype=self.dtype, name="conv1")(h)
        e = nn.Dense(self.features, dtype=self.dtype, name="emb_proj")(nn.silu(emb))
        h = layers.add_per_sample(h, e)
        h = layers.GroupNorm(self.num_groups, EPSILON, silu=True, name="norm2")(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = Conv(self.features, 3, dtype=self.dtype, name="conv2")(h)
        if x.shape[-1] != self.features:
            x = Conv(self.features, 1, dtype=self.dtype, name="skip")(x)
        return x + h


class AttentionBlock(nn.Module):
    """x + out(softmax(q k^T / sqrt(d)) v) over the pixels of each image, heads of
    `head_dim` channels (diffusers' Attention with residual_connection=True)."""

    num_groups: int
    head_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, height, width, c = x.shape
        heads = max(c // self.head_dim, 1)
        h = layers.GroupNorm(self.num_groups, EPSILON, name="norm")(x).reshape(n, height * width, c)
        dense = lambda name: layers.Dense(c, dtype=self.dtype, name=name)
        split = lambda t: t.reshape(n, height * width, heads, c // heads)
        q, k, v = (split(dense(name)(h)) for name in ("query", "key", "value"))
        out = layers.attention(q, k, v).reshape(n, height * width, c)
        return x + dense("out")(out).reshape(n, height, width, c)


class UNet(nn.Module):
    """(images [N, R, R, C], noise conditioning [N], class ids [N]) -> [N, R, R, C].

    Level i works at resolution R / 2^i with width * channel_mult[i] feature maps and
    `num_res_blocks` residual blocks going down (num_res_blocks + 1 coming up).
    """

    channels: int = 3
    width: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    head_dim: int = 8
    num_groups: int = 32
    dropout: float = 0.0
    num_classes: int = 0  # > 0: class-conditional, id num_classes = no class
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array, labels: jax.Array, train: bool):
        widths = [self.width * m for m in self.channel_mult]
        groups = self.num_groups
        res_block = lambda f, name: ResBlock(f, groups, self.dropout, self.dtype, name=name)
        attention = lambda name: AttentionBlock(groups, self.head_dim, self.dtype, name=name)
        emb_dim = 4 * self.width
        emb = nn.Dense(emb_dim, name="emb_dense0")(noise_embedding(c_noise, self.width))
        emb = nn.Dense(emb_dim, name="emb_dense1")(nn.silu(emb))
        if self.num_classes:
            emb = emb + nn.Embed(self.num_classes + 1, emb_dim, name="class_embed")(labels)
        emb = emb.astype(self.dtype)

        h = Conv(widths[0], 3, dtype=self.dtype, name="conv_in")(x.astype(self.dtype))
        skips = [h]
        resolution = x.shape[1]
        for level, features in enumerate(widths):
            attend = resolution in self.attention_resolutions
            for i in range(self.num_res_blocks):
                h = res_block(features, f"down{level}_res{i}")(h, emb, train)
                if attend:
                    h = attention(f"down{level}_attn{i}")(h)
                skips.append(h)
            if level < len(widths) - 1:
                down = Conv(
                    features, 3, 2, ((1, 1), (1, 1)), dtype=self.dtype, name=f"down{level}_sample"
                )
                h = down(h)
                skips.append(h)
                resolution //= 2

        h = res_block(widths[-1], "mid_res0")(h, emb, train)
        h = attention("mid_attn")(h)
        h = res_block(widths[-1], "mid_res1")(h, emb, train)

        for level in reversed(range(len(widths))):
            attend = resolution in self.attention_resolutions
            for i in range(self.num_res_blocks + 1):
                h = layers.concat_channels(h, skips.pop())
                h = res_block(widths[level], f"up{level}_res{i}")(h, emb, train)
                if attend:
                    h = attention(f"up{level}_attn{i}")(h)
            if level > 0:
                upsample = Conv(
                    widths[level], 3, dtype=self.dtype, upsample=True, name=f"up{level}_sample"
                )
                h = upsample(h)
                resolution *= 2

        h = layers.GroupNorm(groups, EPSILON, silu=True, name="norm_out")(h)
        zeros = nn.initializers.zeros  # the network starts as D(x) = c_skip x
        out = Conv(self.channels, 3, kernel_init=zeros, dtype=self.dtype, name="conv_out")(h)
        return out.astype(jnp.float32)
