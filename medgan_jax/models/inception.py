"""Inception-v3 (Keras' ImageNet weights) for Inception Score and FID/KID features.

The network is `keras.applications.InceptionV3` layer for layer; weights come from a local
Keras HDF5 file, never from the internet. `load_keras_h5` reads two layouts:

- Keras 3 `.weights.h5` (`model.save_weights('x.weights.h5')`): groups `layers/<name>/vars/<i>`,
  where `<name>` is the class name numbered by position in `model.layers` (conv2d, conv2d_1,
  ...; the Dense head is `dense`);
- legacy HDF5 (`model.save('x.h5')`, Keras 2's `save_weights('x.h5')`, and Keras' released
  `inception_v3_weights_tf_dim_ordering_tf_kernels[_notop].h5`): a `layer_names` attribute in
  `model.layers` order (at the root or under `model_weights`), each group listing its
  `weight_names`.

Both list the layers in `model.layers` order, a topological order of the Keras graph that is
not the order the layers are built in. Keras' own legacy loader matches layers by that position,
and so does this one: each block below records its convolutions in that order
(`keras_order`), and every weight's shape is checked against the Flax layer it goes to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
FEATURE_DIM = 2048
WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + WEIGHTS_FILE
)

Precision = Any  # None, a jax.lax.Precision or its name ('highest')


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm (no scale, eps 1e-3, running stats) -> ReLU: Keras' conv2d_bn."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(
            self.features,
            self.kernel_size,
            self.strides,
            self.padding,
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _max_pool(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


def _avg_pool(x: jax.Array) -> jax.Array:
    # Keras/TF 'same' average pooling divides by the number of in-bounds pixels.
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block with 1x1, 5x5 and double-3x3 branches (Keras mixed0-2)."""

    pool_features: int
    precision: Precision = None
    keras_order: ClassVar[tuple[str, ...]] = (
        "branch3x3dbl_1", "branch5x5_1", "branch3x3dbl_2", "branch1x1",
        "branch5x5_2", "branch3x3dbl_3", "branch_pool",
    )  # fmt: skip

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda f, k, name: ConvBN(f, k, precision=self.precision, name=name)
        b1 = conv(64, (1, 1), "branch1x1")(x)
        b5 = conv(48, (1, 1), "branch5x5_1")(x)
        b5 = conv(64, (5, 5), "branch5x5_2")(b5)
        b3 = conv(64, (1, 1), "branch3x3dbl_1")(x)
        b3 = conv(96, (3, 3), "branch3x3dbl_2")(b3)
        b3 = conv(96, (3, 3), "branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, (1, 1), "branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Keras mixed3)."""

    precision: Precision = None
    keras_order: ClassVar[tuple[str, ...]] = (
        "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3", "branch3x3dbl_3",
    )  # fmt: skip

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = ConvBN(384, (3, 3), (2, 2), "VALID", self.precision, name="branch3x3")(x)
        bd = ConvBN(64, (1, 1), precision=self.precision, name="branch3x3dbl_1")(x)
        bd = ConvBN(96, (3, 3), precision=self.precision, name="branch3x3dbl_2")(bd)
        bd = ConvBN(96, (3, 3), (2, 2), "VALID", self.precision, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 branches (Keras mixed4-7)."""

    channels_7x7: int
    precision: Precision = None
    keras_order: ClassVar[tuple[str, ...]] = (
        "branch7x7dbl_1", "branch7x7dbl_2", "branch7x7_1", "branch7x7dbl_3", "branch7x7_2",
        "branch7x7dbl_4", "branch1x1", "branch7x7_3", "branch7x7dbl_5", "branch_pool",
    )  # fmt: skip

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda f, k, name: ConvBN(f, k, precision=self.precision, name=name)
        c = self.channels_7x7
        b1 = conv(192, (1, 1), "branch1x1")(x)
        b7 = conv(c, (1, 1), "branch7x7_1")(x)
        b7 = conv(c, (1, 7), "branch7x7_2")(b7)
        b7 = conv(192, (7, 1), "branch7x7_3")(b7)
        bd = conv(c, (1, 1), "branch7x7dbl_1")(x)
        bd = conv(c, (7, 1), "branch7x7dbl_2")(bd)
        bd = conv(c, (1, 7), "branch7x7dbl_3")(bd)
        bd = conv(c, (7, 1), "branch7x7dbl_4")(bd)
        bd = conv(192, (1, 7), "branch7x7dbl_5")(bd)
        bp = conv(192, (1, 1), "branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Keras mixed8)."""

    precision: Precision = None
    keras_order: ClassVar[tuple[str, ...]] = (
        "branch7x7x3_1", "branch7x7x3_2", "branch3x3_1", "branch7x7x3_3", "branch3x3_2",
        "branch7x7x3_4",
    )  # fmt: skip

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        b3 = ConvBN(192, (1, 1), precision=p, name="branch3x3_1")(x)
        b3 = ConvBN(320, (3, 3), (2, 2), "VALID", p, name="branch3x3_2")(b3)
        b7 = ConvBN(192, (1, 1), precision=p, name="branch7x7x3_1")(x)
        b7 = ConvBN(192, (1, 7), precision=p, name="branch7x7x3_2")(b7)
        b7 = ConvBN(192, (7, 1), precision=p, name="branch7x7x3_3")(b7)
        b7 = ConvBN(192, (3, 3), (2, 2), "VALID", p, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with expanded 1x3/3x1 branches (Keras mixed9-10)."""

    precision: Precision = None
    keras_order: ClassVar[tuple[str, ...]] = (
        "branch3x3dbl_1", "branch3x3_1", "branch3x3dbl_2", "branch3x3_2a", "branch3x3_2b",
        "branch3x3dbl_3a", "branch3x3dbl_3b", "branch1x1", "branch_pool",
    )  # fmt: skip

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda f, k, name: ConvBN(f, k, precision=self.precision, name=name)
        b1 = conv(320, (1, 1), "branch1x1")(x)
        b3 = conv(384, (1, 1), "branch3x3_1")(x)
        b3 = jnp.concatenate(
            [conv(384, (1, 3), "branch3x3_2a")(b3), conv(384, (3, 1), "branch3x3_2b")(b3)], -1
        )
        bd = conv(448, (1, 1), "branch3x3dbl_1")(x)
        bd = conv(384, (3, 3), "branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [conv(384, (1, 3), "branch3x3dbl_3a")(bd), conv(384, (3, 1), "branch3x3dbl_3b")(bd)],
            -1,
        )
        bp = conv(192, (1, 1), "branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


# (name, block, kwargs) in network order; names follow Keras' mixed0..mixed10 concatenations.
_BLOCKS: tuple[tuple[str, type[nn.Module], dict[str, int]], ...] = (
    ("mixed0", InceptionA, {"pool_features": 32}),
    ("mixed1", InceptionA, {"pool_features": 64}),
    ("mixed2", InceptionA, {"pool_features": 64}),
    ("mixed3", InceptionB, {}),
    ("mixed4", InceptionC, {"channels_7x7": 128}),
    ("mixed5", InceptionC, {"channels_7x7": 160}),
    ("mixed6", InceptionC, {"channels_7x7": 160}),
    ("mixed7", InceptionC, {"channels_7x7": 192}),
    ("mixed8", InceptionD, {}),
    ("mixed9", InceptionE, {}),
    ("mixed10", InceptionE, {}),
)
_STEM = ("conv1a_3x3", "conv2a_3x3", "conv2b_3x3", "conv3b_1x1", "conv4a_3x3")


class InceptionV3(nn.Module):
    """Inception-v3 as `keras.applications.InceptionV3`; returns pooled features and logits."""

    num_classes: int = 1000
    include_top: bool = True
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """[N, H, W, 3] in [-1, 1] (299x299 for ImageNet) -> {features [N, 2048], logits}."""
        p = self.precision
        x = ConvBN(32, (3, 3), (2, 2), "VALID", p, name=_STEM[0])(x)
        x = ConvBN(32, (3, 3), padding="VALID", precision=p, name=_STEM[1])(x)
        x = ConvBN(64, (3, 3), precision=p, name=_STEM[2])(x)
        x = _max_pool(x)
        x = ConvBN(80, (1, 1), padding="VALID", precision=p, name=_STEM[3])(x)
        x = ConvBN(192, (3, 3), padding="VALID", precision=p, name=_STEM[4])(x)
        x = _max_pool(x)
        for name, block, kwargs in _BLOCKS:
            x = block(**kwargs, precision=p, name=name)(x)
        out = {"features": jnp.mean(x, axis=(1, 2))}
        if self.include_top:
            out["logits"] = nn.Dense(self.num_classes, precision=p, name="predictions")(
                out["features"]
            )
        return out


def keras_order() -> list[str]:
    """Flax paths of the 94 ConvBN layers in Keras' `model.layers` order."""
    order = list(_STEM)
    for name, block, _ in _BLOCKS:
        order += [f"{name}/{child}" for child in block.keras_order]
    return order


def preprocess(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """[N, H, W, 1 or 3] in [-1, 1] -> [N, size, size, 3] in [-1, 1], Inception-v3's input.

    Resizing is bilinear with half-pixel centres and antialiasing when shrinking, i.e.
    TF2's `tf.image.resize(..., 'bilinear', antialias=True)`; upsampling is identical to
    `antialias=False`. TF-GAN and torch-fidelity instead use TF1's `resize_bilinear`
    (no half-pixel offset), so absolute FIDs differ slightly from theirs; comparisons made
    within this project are unaffected. Grayscale is repeated to 3 channels.
    """
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"preprocess expects images of shape [N, H, W, 1 or 3]; got {tuple(images.shape)}"
        )
    images = jnp.asarray(images, jnp.float32)
    n, h, w, c = images.shape
    if (h, w) != (size, size):
        images = jax.image.resize(images, (n, size, size, c), "bilinear", antialias=True)
    if c == 1:
        images = jnp.repeat(images, 3, axis=-1)
    return images


# --------------------------------------------------------------------------- weight loading

_LayerWeights = tuple[str, dict[str, np.ndarray]]  # (layer name in the file, weights by name)
# Variables of a `.weights.h5` layer are numbered, not named: their names by count, per class.
_VARS_BY_COUNT = {
    "conv2d": {1: ("kernel",), 2: ("kernel", "bias")},
    "batch_normalization": {
        3: ("beta", "moving_mean", "moving_variance"),
        4: ("gamma", "beta", "moving_mean", "moving_variance"),
    },
    "dense": {2: ("kernel", "bias")},
}


def _position(name: str) -> int:
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def _read_weights_h5(f: Any) -> list[_LayerWeights]:
    """Layers with weights from a Keras 3 `.weights.h5` file, in `model.layers` order."""
    layers = []
    for name, group in f["layers"].items():
        vars_ = group.get("vars")
        if vars_ is None or len(vars_) == 0:
            continue
        kind = re.sub(r"_\d+$", "", name)
        names = _VARS_BY_COUNT.get(kind, {}).get(len(vars_))
        if names is None:
            raise ValueError(
                f"layer 'layers/{name}' has {len(vars_)} variables; an Inception-v3 file holds "
                "only conv2d (1), batch_normalization (3) and dense (2) layers"
            )
        # Keras 3.x records the layer's own name here too; it helps the user find the layer.
        label = f"layers/{name} ({vars_.attrs['name']})" if "name" in vars_.attrs else name
        layers.append((label, {k: vars_[str(i)][()] for i, k in enumerate(names)}))
    # h5py lists groups alphabetically; the numeric suffix is the position in model.layers.
    return sorted(layers, key=lambda layer: _position(layer[0].split(" ")[0]))


def _read_legacy_h5(g: Any) -> list[_LayerWeights]:
    """Layers with weights from a legacy Keras HDF5 group, in its `layer_names` order."""
    layers = []
    for raw in g.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        weight_names = [
            w.decode() if isinstance(w, bytes) else str(w)
            for w in g[name].attrs.get("weight_names", [])
        ]
        if weight_names:
            # 'conv2d_1/kernel:0' (Keras 2) or 'conv2d/kernel' (Keras 3) -> 'kernel'.
            weights = {w.split("/")[-1].split(":")[0]: g[name][w][()] for w in weight_names}
            layers.append((name, weights))
    return layers


def _kind(weights: Mapping[str, np.ndarray]) -> str:
    if "moving_mean" in weights:
        return "bn"
    if "kernel" in weights:
        return {4: "conv", 2: "dense"}.get(weights["kernel"].ndim, "other")
    return "other"


def _check_shape(layer: str, flax_path: str, got: Sequence[int], want: Sequence[int]) -> None:
    if tuple(got) != tuple(want):
        raise ValueError(
            f"Keras layer '{layer}' has a weight of shape {tuple(got)} but the Flax layer "
            f"'{flax_path}' expects {tuple(want)}: the file does not hold Keras' InceptionV3"
        )


def _set(tree: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def load_keras_h5(path: str | os.PathLike) -> dict[str, Any]:
    """Flax variables {'params', 'batch_stats'} for `InceptionV3` from a Keras HDF5 file.

    Without the Dense head (a `_notop` file) the variables fit `InceptionV3(include_top=False)`.
    """
    import h5py  # only needed here

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Inception-v3 weights not found at '{path}'. Download {WEIGHTS_URL} (or save "
            "keras.applications.InceptionV3(weights='imagenet') with model.save_weights("
            "'x.weights.h5')) and place the file at that path; nothing is downloaded at run time."
        )
    with h5py.File(path, "r") as f:
        if "layers" in f and "layer_names" not in f.attrs:
            layers = _read_weights_h5(f)
        elif "layer_names" in f.attrs:
            layers = _read_legacy_h5(f)
        elif "model_weights" in f and "layer_names" in f["model_weights"].attrs:
            layers = _read_legacy_h5(f["model_weights"])
        else:
            raise ValueError(
                f"'{path}' is not a Keras weights file: expected a 'layers' group (.weights.h5) "
                f"or a 'layer_names' attribute (legacy .h5); found keys {sorted(f.keys())}"
            )

    by_kind: dict[str, list[_LayerWeights]] = {"conv": [], "bn": [], "dense": [], "other": []}
    for layer in layers:
        by_kind[_kind(layer[1])].append(layer)
    order = keras_order()
    problems = []
    if by_kind["other"]:
        problems.append(f"unexpected layers {[name for name, _ in by_kind['other']]}")
    if len(by_kind["dense"]) > 1:
        problems.append(f"{len(by_kind['dense'])} Dense layers, expected at most 1")
    for kind in ("conv", "bn"):
        if len(by_kind[kind]) != len(order):
            problems.append(f"{len(by_kind[kind])} {kind} layers, expected {len(order)}")
    if problems:
        raise ValueError(f"'{path}' does not hold Keras' InceptionV3: " + "; ".join(problems))

    dense = by_kind["dense"][0] if by_kind["dense"] else None
    model = InceptionV3(
        num_classes=dense[1]["kernel"].shape[-1] if dense else 1000, include_top=dense is not None
    )
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), "f4")
    )
    params: dict = {}
    stats: dict = {}
    for flax_path, (conv_name, conv), (bn_name, bn) in zip(order, by_kind["conv"], by_kind["bn"]):
        module = shapes["params"]
        for p in flax_path.split("/"):
            module = module[p]
        _check_shape(
            conv_name, f"{flax_path}/conv", conv["kernel"].shape, module["conv"]["kernel"].shape
        )
        if "bias" in conv or "gamma" in bn:
            raise ValueError(
                f"Keras layers '{conv_name}'/'{bn_name}' have a conv bias or BatchNorm scale; "
                "Keras' InceptionV3 has neither"
            )
        width = (module["bn"]["bias"].shape[0],)
        for key in ("beta", "moving_mean", "moving_variance"):
            _check_shape(bn_name, f"{flax_path}/bn", bn[key].shape, width)
        _set(params, f"{flax_path}/conv/kernel", conv["kernel"].astype(np.float32))
        _set(params, f"{flax_path}/bn/bias", bn["beta"].astype(np.float32))
        _set(stats, f"{flax_path}/bn/mean", bn["moving_mean"].astype(np.float32))
        _set(stats, f"{flax_path}/bn/var", bn["moving_variance"].astype(np.float32))
    if dense is not None:
        want = shapes["params"]["predictions"]
        _check_shape(dense[0], "predictions", dense[1]["kernel"].shape, want["kernel"].shape)
        _check_shape(dense[0], "predictions", dense[1]["bias"].shape, want["bias"].shape)
        params["predictions"] = {k: dense[1][k].astype(np.float32) for k in ("kernel", "bias")}
    return {"params": params, "batch_stats": stats}


def make_inception_fn(
    variables: Mapping[str, Any], precision: Precision = None
) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """Jitted images [N, H, W, 1|3] in [-1, 1] -> {features [N, 2048], logits [N, classes]}.

    `logits` (pre-softmax) is present only when `variables` hold the classifier head.
    """
    head = variables["params"].get("predictions")
    model = InceptionV3(
        num_classes=head["kernel"].shape[-1] if head is not None else 1000,
        include_top=head is not None,
        precision=precision,
    )
    # Variables are a jit argument, not a closure constant: 96 MB of constants in the HLO would
    # make compilation slow. device_put without a device keeps them uncommitted, so they follow
    # the (possibly sharded) images.
    variables = jax.device_put(dict(variables))
    apply = jax.jit(lambda v, images: model.apply(v, preprocess(images)))
    return lambda images: apply(variables, images)
