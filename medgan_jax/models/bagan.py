"""BAGAN-GP networks (Huang & Jafari 2021, after Mariani et al. 2018's BAGAN).

A supervised autoencoder learns the data first: encoder(x) -> latent, multiplied by the
label's embedding, decoder -> reconstruction. Its decoder (and the embedding) become
the generator and its convolutional trunk the discriminator's, so adversarial training
starts from networks that already know every class, and the minority class borrows the
shapes the majority taught them. At 64x64 the layers are the published ones: encoder
convs 64-128-128-256 (4x4, stride 2, LeakyReLU 0.2, no normalisation), a dense latent;
decoder dense 4x4x256, transposed convs 128-128-64 with BatchNorm and LeakyReLU, tanh.

Latents: 'embedding' (BAGAN-GP) draws z ~ N(0, I) and feeds decoder(z * embed(y));
'class_gaussian' (BAGAN) feeds decoder(mean_y + L_y z), a Gaussian fitted per class to
the labelled latents of the training images (L_y the Cholesky factor of its covariance).
The fitted statistics ride along as parameters that never receive gradients.

`dtype` (Generator, Discriminator, Decoder) is the computation dtype (bfloat16: mixed
precision): parameters and BatchNorm statistics stay float32; images and logits come out
as float32.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from medgan_jax.models.layers import DownConv, UpConv

LATENT_SAMPLING = ("embedding", "class_gaussian")
_INIT = nn.initializers.normal(0.02)
_MULTIPLIERS = (1, 2, 2, 4, 4, 8, 8, 8)  # 64x64: 64, 128, 128, 256 feature maps


def encoder_widths(resolution: int, width: int) -> list[int]:
    """Feature maps of the encoder's stride-2 convs, from `resolution` down to 4x4."""
    stages = int(math.log2(resolution)) - 2
    if 2 ** (stages + 2) != resolution or not 1 <= stages <= len(_MULTIPLIERS):
        raise ValueError(f"BAGAN resolution must be a power of two in 8..1024, got {resolution}.")
    return [width * m for m in _MULTIPLIERS[:stages]]


def _act(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.2)


def encoder_features(x: jax.Array, width: int) -> jax.Array:
    """images [N, R, R, C] -> flattened 4x4 features. Call it inside a compact method: its
    layers (conv0, conv1, ...) belong to the caller, so the encoder, the discriminator and
    a classifier initialised from either share one parameter layout."""
    for i, features in enumerate(encoder_widths(x.shape[1], width)):
        x = _act(DownConv(features, use_bias=True, name=f"conv{i}")(x))
    return x.reshape(x.shape[0], -1)


class EncoderTrunk(nn.Module):
    """The stride-2 conv stack shared by the encoder and the discriminator."""

    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return encoder_features(x, self.width)


class Encoder(nn.Module):
    """images -> latents [N, latent_dim] (dense + LeakyReLU after the trunk)."""

    resolution: int = 64
    width: int = 64
    latent_dim: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = EncoderTrunk(self.width, name="trunk")(x)
        return _act(nn.Dense(self.latent_dim, name="latent")(features))


class Decoder(nn.Module):
    """latents [N, latent_dim] -> images [N, R, R, channels] in [-1, 1]."""

    resolution: int = 64
    channels: int = 3
    width: int = 64
    dtype: Any = jnp.float32  # computation dtype; parameters stay float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        widths = encoder_widths(self.resolution, self.width)[::-1]
        x = nn.Dense(4 * 4 * widths[0], dtype=self.dtype, name="dense")(z.astype(self.dtype))
        x = _act(x).reshape(-1, 4, 4, widths[0])
        for i, features in enumerate(widths[1:]):
            x = UpConv(features, name=f"upconv{i}")(x)
            bn = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, dtype=self.dtype, name=f"bn{i}"
            )
            x = _act(bn(x))
        image = jnp.tanh(UpConv(self.channels, use_bias=True, name="to_image")(x))
        return image.astype(jnp.float32)


def _embedding(num_classes: int, latent_dim: int, dtype: Any = jnp.float32) -> nn.Embed:
    # Keras' Embedding initialiser, as in the published code: uniform(-0.05, 0.05).
    init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -0.05, 0.05)
    return nn.Embed(num_classes, latent_dim, embedding_init=init, dtype=dtype, name="embedding")


class Autoencoder(nn.Module):
    """(images, class ids) -> (reconstructions, labelled latents z * embed(y))."""

    resolution: int = 64
    channels: int = 3
    width: int = 64
    latent_dim: int = 128
    num_classes: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool = True):
        latent = Encoder(self.resolution, self.width, self.latent_dim, name="encoder")(x)
        labelled = latent * _embedding(self.num_classes, self.latent_dim)(labels)
        decoder = Decoder(self.resolution, self.channels, self.width, name="decoder")
        return decoder(labelled, train), labelled


class Generator(nn.Module):
    """z [N, latent_dim] + class ids [N] -> images; the autoencoder's decoder."""

    resolution: int = 64
    channels: int = 3
    width: int = 64
    latent_dim: int = 128
    num_classes: int = 2
    latent_sampling: str = "embedding"  # 'embedding' (BAGAN-GP) | 'class_gaussian' (BAGAN)
    dtype: Any = jnp.float32  # computation dtype; parameters stay float32

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, train: bool = True) -> jax.Array:
        if self.latent_sampling == "embedding":
            embedding = _embedding(self.num_classes, self.latent_dim, self.dtype)
            latent = z.astype(self.dtype) * embedding(labels)
        elif self.latent_sampling == "class_gaussian":
            shape = (self.num_classes, self.latent_dim)
            mean = self.param("class_mean", nn.initializers.zeros, shape)
            eye = lambda key, s: jnp.broadcast_to(jnp.eye(s[-1]), s)
            tril = self.param("class_scale_tril", eye, (*shape, self.latent_dim))
            mean, tril = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(tril)
            latent = mean[labels] + jnp.einsum("nij,nj->ni", tril[labels], z)
        else:
            raise ValueError(
                f"config.bagan.latent_sampling='{self.latent_sampling}'; expected one of "
                f"{LATENT_SAMPLING}."
            )
        decoder = Decoder(self.resolution, self.channels, self.width, self.dtype, name="decoder")
        return decoder(latent, train)


class Discriminator(nn.Module):
    """(images, class ids) -> real/fake logits [N]: the encoder's trunk, its features
    multiplied by a dense projection of the label's embedding, dense 512, dense 1."""

    resolution: int = 64
    width: int = 64
    num_classes: int = 2
    hidden: int = 512
    dtype: Any = jnp.float32  # computation dtype; parameters stay float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool = True):
        features = EncoderTrunk(self.width, name="trunk")(x.astype(self.dtype))
        dt = self.dtype
        label = nn.Embed(self.num_classes, self.hidden, dtype=dt, name="label_embedding")(labels)
        label = _act(nn.Dense(features.shape[-1], dtype=dt, name="label_dense")(label))
        h = nn.Dense(self.hidden, dtype=dt, name="joint")(features * label)
        return nn.Dense(1, dtype=dt, name="out")(h)[:, 0].astype(jnp.float32), None
