"""DCGAN generator and discriminator (Radford et al. 2016; pytorch/examples layout),
for any power-of-two resolution from 32 up, optionally class-conditional."""

from __future__ import annotations

import math

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


def _batch_norm(train: bool) -> BatchNorm:
    # momentum 0.9 == PyTorch's BatchNorm2d(momentum=0.1).
    return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


class Generator(nn.Module):
    """z [N, nz] (+ class ids [N]) -> images [N, R, R, C] in [-1, 1]."""

    resolution: int = 64
    channels: int = 3
    width: int = 64  # ngf: feature maps of the last hidden layer
    max_width_mult: int = 8  # feature maps are width * min(2^k, max_width_mult)
    num_classes: int = 0  # > 0: class-conditional (label embedding joined to z)

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = True):
        stages = _num_stages(self.resolution)
        widths = [self.width * min(2**k, self.max_width_mult) for k in reversed(range(stages))]
        if self.num_classes:
            z = jnp.concatenate(
                [z, nn.Embed(self.num_classes, z.shape[-1], embedding_init=_INIT)(labels)], -1
            )
        # ConvTranspose(nz -> w, 4, 1, 0) on a 1x1 input is a dense layer to 4x4xw.
        x = nn.Dense(4 * 4 * widths[0], use_bias=False, kernel_init=_INIT)(z)
        x = nn.relu(_batch_norm(train)(x.reshape(z.shape[0], 4, 4, widths[0])))
        for width in widths[1:]:
            x = nn.relu(_batch_norm(train)(UpConv(width)(x)))
        return jnp.tanh(UpConv(self.channels)(x))


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

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = True):
        stages = _num_stages(self.resolution)
        for k in range(stages):
            x = DownConv(self.width * min(2**k, self.max_width_mult))(x)
            if k > 0:  # DCGAN: no BatchNorm on the first layer
                x = _batch_norm(train)(x)
            x = nn.leaky_relu(x, 0.2)
        # Conv(w, 1, 4, 1, 0) on the 4x4 map is a dense layer over the flattened map.
        features = x.reshape(x.shape[0], -1)
        logits = nn.Dense(1, use_bias=False, kernel_init=_INIT)(features)[:, 0]
        if self.conditioning == "projection":
            embed = nn.Embed(self.num_classes, features.shape[-1], embedding_init=_INIT)(labels)
            logits = logits + jnp.sum(embed * features, axis=-1)
        if self.conditioning == "acgan":
            return logits, nn.Dense(self.num_classes, kernel_init=_INIT)(features)
        return logits, None
