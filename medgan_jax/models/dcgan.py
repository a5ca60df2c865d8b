"""DCGAN generator and discriminator (Radford et al. 2016; pytorch/examples layout),
for any power-of-two resolution from 32 up, optionally class-conditional.

`dtype` is the computation dtype (bfloat16: mixed precision): parameters and BatchNorm
statistics stay float32, BatchNorm normalises in float32, and the outputs (images, logits)
are float32.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from medgan_jax.models.layers import BatchNorm, DownConv, UpConv

_INIT = nn.initializers.normal(0.02)


def _num_stages(resolution: int) -> int:
    stages = int(math.log2(resolution)) - 2
    if 2 ** (stages + 2) != resolution or stages < 1:
        raise ValueError(f"DCGAN resolution must be a power of two >= 8, got {resolution}.")
    return stages


def _batch_norm(x: jax.Array, train: bool) -> jax.Array:
    """BatchNorm (in float32) of x, returned in x's dtype."""
    # momentum 0.9 == PyTorch's BatchNorm2d(momentum=0.1).
    bn = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    return bn(x.astype(jnp.float32)).astype(x.dtype)


class Generator(nn.Module):
    """z [N, nz] (+ class ids [N]) -> images [N, R, R, C] in [-1, 1]."""

    resolution: int = 64
    channels: int = 3
    width: int = 64  # ngf: feature maps of the last hidden layer
    max_width_mult: int = 8  # feature maps are width * min(2^k, max_width_mult)
    num_classes: int = 0  # > 0: class-conditional (label embedding joined to z)
    dtype: Any = jnp.float32  # computation dtype; parameters stay float32

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = True):
        stages = _num_stages(self.resolution)
        widths = [self.width * min(2**k, self.max_width_mult) for k in reversed(range(stages))]
        z = z.astype(self.dtype)
        if self.num_classes:
            embed = nn.Embed(self.num_classes, z.shape[-1], embedding_init=_INIT, dtype=self.dtype)
            z = jnp.concatenate([z, embed(labels)], -1)
        # ConvTranspose(nz -> w, 4, 1, 0) on a 1x1 input is a dense layer to 4x4xw.
        x = nn.Dense(4 * 4 * widths[0], use_bias=False, kernel_init=_INIT, dtype=self.dtype)(z)
        x = nn.relu(_batch_norm(x.reshape(z.shape[0], 4, 4, widths[0]), train))
        for width in widths[1:]:
            x = nn.relu(_batch_norm(UpConv(width)(x), train))
        return jnp.tanh(UpConv(self.channels)(x)).astype(jnp.float32)


class Discriminator(nn.Module):
    """images [N, R, R, C] (+ class ids) -> real/fake logits [N] (and class logits).

    Conditioning: 'projection' (Miyato & Koyama 2018) adds <embed(y), phi(x)> to the
    logit; 'acgan' (Odena et al. 2017) adds a class head trained with cross-entropy.
    """

    resolution: int = 64
    width: int = 64  # ndf
    max_width_mult: int = 8
    num_classes: int = 0
    conditioning: str = ""  # '' | 'projection' | 'acgan'
    dtype: Any = jnp.float32  # computation dtype; parameters stay float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = True):
        stages = _num_stages(self.resolution)
        x = x.astype(self.dtype)
        for k in range(stages):
            x = DownConv(self.width * min(2**k, self.max_width_mult))(x)
            if k > 0:  # DCGAN: no BatchNorm on the first layer
                x = _batch_norm(x, train)
            x = nn.leaky_relu(x, 0.2)
        # Conv(w, 1, 4, 1, 0) on the 4x4 map is a dense layer over the flattened map.
        features = x.reshape(x.shape[0], -1)
        dense = lambda n, **kw: nn.Dense(n, kernel_init=_INIT, dtype=self.dtype, **kw)
        logits = dense(1, use_bias=False)(features)[:, 0]
        if self.conditioning == "projection":
            embed = nn.Embed(
                self.num_classes, features.shape[-1], embedding_init=_INIT, dtype=self.dtype
            )(labels)
            logits = logits + jnp.sum(embed * features, axis=-1, dtype=jnp.float32)
        logits = logits.astype(jnp.float32)
        if self.conditioning == "acgan":
            return logits, dense(self.num_classes)(features).astype(jnp.float32)
        return logits, None
