"""Image classifiers: SimpleCNN, ResNet-18, ResNet-50 and DenseNet-121 (Keras Applications).

Every model maps images [N, H, W, C] (any size the strides allow, any C) to `num_outputs`
logits; the caller picks the loss (1 logit: binary, K: softmax, L: per-label sigmoid).
Parameters live in two subtrees, 'trunk' (features) and 'head' (one Dense layer), so a
training loop can freeze or re-initialise the trunk; `return_features=True` also returns
the pooled trunk features (the feature network of FID/IS). Trunk layers carry the Keras
layer names ('conv2_block1_1_conv', ...), which is how `keras_weights` maps files to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from medgan_jax.models import layers
from medgan_jax.models.bagan import encoder_features

TRUNK, HEAD = "trunk", "head"
# torchvision's ResNet/DenseNet initialisation (He normal, fan_out) for training from scratch.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class _Trunk(nn.Module):
    """Shared conv/BN factories; subclasses map images to pooled features [N, F]."""

    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def conv(self, x, features, kernel, name, stride=1, padding="SAME", bias=False):
        return layers.Conv(
            features,
            kernel,
            stride,
            padding=padding,
            use_bias=bias,
            kernel_init=_CONV_INIT,
            dtype=self.dtype,
            name=name,
        )(x)

    def bn(self, x, name, train):
        return layers.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            name=name,
        )(x)

    def stem(self, x, train, bias):
        """7x7/2 conv (padding 3), BN, ReLU, 3x3/2 max-pool (padding 1): ResNet and DenseNet."""
        x = self.conv(x, 64, 7, "conv1_conv", stride=2, padding=((3, 3), (3, 3)), bias=bias)
        x = nn.relu(self.bn(x, "conv1_bn", train))
        # Keras zero-pads before the pool; after the ReLU that equals flax's -inf padding.
        return layers.max_pool(x, 3, 2, padding=(1, 1))


def _global_avg_pool(x: jax.Array) -> jax.Array:
    return layers.global_avg_pool(x).astype(jnp.float32)


class SimpleCNNTrunk(_Trunk):
    """Blocks of conv3x3-ReLU(-BN)-maxpool2, global average pool or flatten, dense ReLU."""

    widths: Sequence[int] = (32, 64, 128)
    batch_norm: bool = False
    pooling: str = "avg"  # 'avg' | 'flatten'
    hidden: int = 128  # 0: no hidden dense layer; features are the pooled maps

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i, width in enumerate(self.widths):
            x = nn.relu(self.conv(x, width, 3, f"block{i + 1}_conv", bias=True))
            if self.batch_norm:
                x = self.bn(x, f"block{i + 1}_bn", train)
            x = layers.max_pool(x, 2, 2)
        if self.pooling == "avg":
            x = _global_avg_pool(x)
        elif self.pooling == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            raise ValueError(f"SimpleCNN pooling must be 'avg' or 'flatten', got {self.pooling!r}.")
        if self.hidden:
            x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="hidden")(x))
        return x.astype(jnp.float32)


class GANEncoderTrunk(_Trunk):
    """BAGAN's encoder/discriminator conv stack (flattened 4x4 features), so a classifier
    can start from a trained discriminator (config.init.gan_discriminator)."""

    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return encoder_features(x, self.width).astype(jnp.float32)


class ResNet18Trunk(_Trunk):
    """He et al. (2016) ResNet-18: basic blocks, stride on the 3x3 conv, projection shortcuts."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.stem(x, train, bias=False)
        for stage, (width, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 2):
            for block in (1, 2):
                name = f"conv{stage}_block{block}"
                s = stride if block == 1 else 1
                shortcut = x
                if s != 1 or x.shape[-1] != width:
                    shortcut = self.conv(x, width, 1, f"{name}_0_conv", stride=s, padding="VALID")
                    shortcut = self.bn(shortcut, f"{name}_0_bn", train)
                y = nn.relu(
                    self.bn(self.conv(x, width, 3, f"{name}_1_conv", s), f"{name}_1_bn", train)
                )
                y = self.bn(self.conv(y, width, 3, f"{name}_2_conv"), f"{name}_2_bn", train)
                x = nn.relu(shortcut + y)
        return _global_avg_pool(x)


class ResNet50Trunk(_Trunk):
    """keras.applications.ResNet50 up to its global average pool (2048 features)."""

    bn_momentum: float = 0.99  # Keras' default
    bn_epsilon: float = 1.001e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.stem(x, train, bias=True)
        stages = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
        for stage, (width, blocks, stride) in enumerate(stages, 2):
            for block in range(1, blocks + 1):
                s = stride if block == 1 else 1
                x = self.bottleneck(x, width, s, block == 1, train, f"conv{stage}_block{block}")
        return _global_avg_pool(x)

    def bottleneck(self, x, width, stride, project, train, name):
        # Keras' v1 block: the stride sits on the first 1x1 conv; every conv has a bias.
        shortcut = x
        if project:
            shortcut = self.conv(x, 4 * width, 1, f"{name}_0_conv", stride, "VALID", bias=True)
            shortcut = self.bn(shortcut, f"{name}_0_bn", train)
        y = self.conv(x, width, 1, f"{name}_1_conv", stride, "VALID", bias=True)
        y = nn.relu(self.bn(y, f"{name}_1_bn", train))
        y = nn.relu(
            self.bn(self.conv(y, width, 3, f"{name}_2_conv", bias=True), f"{name}_2_bn", train)
        )
        y = self.bn(self.conv(y, 4 * width, 1, f"{name}_3_conv", bias=True), f"{name}_3_bn", train)
        return nn.relu(shortcut + y)


class DenseNet121Trunk(_Trunk):
    """keras.applications.DenseNet121 up to its global average pool (1024 features)."""

    bn_momentum: float = 0.99  # Keras' default
    bn_epsilon: float = 1.001e-5
    growth: int = 32
    blocks: Sequence[int] = (6, 12, 24, 16)
    compression: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.stem(x, train, bias=False)
        for stage, blocks in enumerate(self.blocks, 2):
            for block in range(1, blocks + 1):
                name = f"conv{stage}_block{block}"
                y = nn.relu(self.bn(x, f"{name}_0_bn", train))
                y = nn.relu(
                    self.bn(
                        self.conv(y, 4 * self.growth, 1, f"{name}_1_conv"), f"{name}_1_bn", train
                    )
                )
                x = layers.concat_channels(x, self.conv(y, self.growth, 3, f"{name}_2_conv"))
            if stage < len(self.blocks) + 1:  # transition layer
                name = f"pool{stage}"
                y = nn.relu(self.bn(x, f"{name}_bn", train))
                y = self.conv(y, int(x.shape[-1] * self.compression), 1, f"{name}_conv")
                x = layers.avg_pool2(y)
        return _global_avg_pool(nn.relu(self.bn(x, "bn", train)))


class Classifier(nn.Module):
    """Trunk features -> dropout -> Dense head; subclasses choose the trunk."""

    num_outputs: int = 1
    dropout_rate: float = 0.0  # on the features, before the head
    bn_momentum: float | None = None  # None: the trunk's default (Keras ports 0.99, else 0.9)
    dtype: Any = jnp.float32  # computation dtype (e.g. bfloat16); parameters stay float32
    trunk_cls: ClassVar[type[_Trunk]]

    def trunk_fields(self) -> dict[str, Any]:
        """Extra fields passed on to the trunk."""
        return {}

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """images [N, H, W, C] -> logits [N, num_outputs] (and features [N, F])."""
        fields = self.trunk_fields()
        if self.bn_momentum is not None:
            fields["bn_momentum"] = self.bn_momentum
        features = self.trunk_cls(dtype=self.dtype, name=TRUNK, **fields)(x, train)
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        logits = nn.Dense(self.num_outputs, dtype=self.dtype, name=HEAD)(h).astype(jnp.float32)
        return (logits, features) if return_features else logits


class SimpleCNN(Classifier):
    """Small chest-X-ray CNN: conv-pool blocks, pooling, dense hidden layer with dropout."""

    widths: Sequence[int] = (32, 64, 128)
    batch_norm: bool = False
    pooling: str = "avg"  # 'avg' | 'flatten'
    hidden: int = 128
    dropout_rate: float = 0.5
    trunk_cls = SimpleCNNTrunk

    def trunk_fields(self) -> dict[str, Any]:
        """Extra fields passed on to the trunk."""
        names = ("widths", "batch_norm", "pooling", "hidden")
        return {name: getattr(self, name) for name in names}


class ResNet18(Classifier):
    """ResNet-18 (He et al. 2016) with PyTorch's BN settings; 512 features."""

    trunk_cls = ResNet18Trunk


class ResNet50(Classifier):
    """keras.applications.ResNet50 (v1, 2048 features); Keras weights: see keras_weights."""

    trunk_cls = ResNet50Trunk


class DenseNet121(Classifier):
    """keras.applications.DenseNet121 (1024 features); Keras weights: see keras_weights."""

    trunk_cls = DenseNet121Trunk


class GANEncoder(Classifier):
    """A BAGAN discriminator's trunk with a fresh head (semi-supervised start)."""

    width: int = 64
    dropout_rate: float = 0.5
    trunk_cls = GANEncoderTrunk

    def trunk_fields(self) -> dict[str, Any]:
        return {"width": self.width}


CLASSIFIERS: dict[str, type[Classifier]] = {
    "simple_cnn": SimpleCNN,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "densenet121": DenseNet121,
    "gan_encoder": GANEncoder,
}


def build_classifier(name: str, num_outputs: int, **kwargs: Any) -> Classifier:
    """The classifier registered as `name` with `num_outputs` logits (kwargs: its fields)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"Unknown classifier {name!r}; valid names: {', '.join(CLASSIFIERS)}.")
    return CLASSIFIERS[name](num_outputs=num_outputs, **kwargs)
