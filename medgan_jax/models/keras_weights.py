"""Keras .h5 weight files -> Flax variables (DenseNet-121, ResNet-50; helpers for others).

Supported files (nothing is downloaded at run time; the user places them locally):
- Keras 3 `model.save_weights("x.weights.h5")` files (layers named in each `vars` attribute);
- legacy HDF5 weight files with a `layer_names` attribute: the Keras Applications downloads
  (`resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5`,
  `densenet121_weights_tf_dim_ordering_tf_kernels[_notop].h5`), Keras 2 `save_weights`
  and full-model `.h5` saves (`model_weights` group). Keras 2's DenseNet names ('conv1/conv')
  and the original ResNet-50 release's names ('res2a_branch2a', 'bn_conv1') are translated
  to Keras 3's.

Layers are matched by name and every array's shape is checked. A 1-channel model gets the
file's RGB first-conv kernel summed over its input channels, which equals feeding the grey
image tiled to three channels. Inputs are not preprocessed: Keras' ImageNet weights were
trained on `keras.applications.{resnet50,densenet}.preprocess_input` images.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import jax.numpy as jnp
import numpy as np
from absl import logging

from medgan_jax.models.classifiers import HEAD, TRUNK

KERAS_FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
# Names the Keras Applications top layer had over the years.
_HEAD_NAMES = ("predictions", "fc1000", "probs")
_OLD_RESNET = re.compile(r"(res|bn)(\d)([a-z])_branch(1|2a|2b|2c)")
_OLD_BRANCH = {"1": 0, "2a": 1, "2b": 2, "2c": 3}


def _keras3_name(name: str) -> str:
    """Keras 3's name for a layer saved by Keras 2 or by the original ResNet-50 release."""
    name = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn"}.get(name, name)
    match = _OLD_RESNET.fullmatch(name)
    if match:
        kind, stage, block, branch = match.groups()
        name = f"conv{stage}_block{ord(block) - 96}_{_OLD_BRANCH[branch]}_"
        name += "conv" if kind == "res" else "bn"
    return name.replace("/", "_")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str | os.PathLike, expected: str = "the Keras .h5") -> dict[str, list]:
    """Layer name -> its weight arrays in Keras order (kernel, bias / gamma, beta, mean, var)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No Keras weights file at {path}: place {expected} file there (keras.applications "
            "keeps its downloads in ~/.keras/models/; a model.save_weights('x.weights.h5') file "
            "works too); nothing is downloaded at run time."
        )
    layers: dict[str, list] = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:  # legacy HDF5 (Keras 1/2, Applications downloads)
            for name in map(_text, root.attrs["layer_names"]):
                group = root[name]
                names = [_text(w) for w in group.attrs.get("weight_names", [])]
                if names:
                    layers[_keras3_name(name)] = [np.asarray(group[w]) for w in names]
        elif "layers" in root:  # Keras 3 .weights.h5
            for key, group in root["layers"].items():
                variables = group.get("vars", {})
                if len(variables):
                    name = _text(variables.attrs.get("name", key))
                    layers[name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
        else:
            raise ValueError(
                f"{path} is not a Keras weights file: expected a 'layer_names' attribute "
                f"(legacy .h5) or a 'layers' group (Keras 3 .weights.h5), found {list(root)}."
            )
    return layers


def _layer_slots(params: Mapping) -> list[tuple[str, str]]:
    """The Flax (collection, name) slots a Keras layer's arrays fill, in Keras order."""
    if "scale" in params:  # BatchNorm: gamma, beta, moving mean, moving variance
        return [
            ("params", "scale"),
            ("params", "bias"),
            ("batch_stats", "mean"),
            ("batch_stats", "var"),
        ]
    return [("params", "kernel")] + ([("params", "bias")] if "bias" in params else [])


def load_layer(
    params: Mapping, stats: Mapping | None, arrays: list, where: str
) -> tuple[dict, dict | None]:
    """One Flax layer's (params, batch_stats) filled from a Keras layer's arrays."""
    slots = _layer_slots(params)
    if len(arrays) != len(slots):
        raise ValueError(
            f"{where}: the file has {len(arrays)} arrays, the model's layer needs "
            f"{len(slots)} ({', '.join(n for _, n in slots)})."
        )
    out = {"params": dict(params), "batch_stats": dict(stats or {})}
    for (collection, name), array in zip(slots, arrays):
        target = out[collection][name]
        if name == "kernel" and array.ndim == 4 and target.shape[2] == 1 < array.shape[2]:
            array = array.sum(axis=2, keepdims=True)  # RGB kernel on a 1-channel input
        if array.shape != target.shape:
            raise ValueError(
                f"{where}: '{name}' has shape {array.shape} in the file but "
                f"{tuple(target.shape)} in the model."
            )
        out[collection][name] = jnp.asarray(array, dtype=target.dtype)
    return out["params"], (out["batch_stats"] if stats is not None else None)


def assign_layers(
    params: Mapping,
    stats: Mapping,
    layers: Mapping[str, list],
    source: str,
    keras_name: Callable[[str], str] = lambda name: name,
) -> tuple[dict, dict]:
    """A Flax subtree (params, batch_stats) with every layer filled from `layers`.

    `keras_name` maps a Flax layer name to the file's; a layer the file lacks is an error.
    """
    new_params, new_stats = dict(params), dict(stats)
    for name, layer_params in params.items():
        key = keras_name(name)
        if key not in layers:
            raise ValueError(
                f"{source} has no layer '{key}' (Flax layer '{name}'); it has "
                f"{len(layers)} layers with weights, e.g. {sorted(layers)[:5]}."
            )
        layer_params, layer_stats = load_layer(
            layer_params, stats.get(name), layers[key], f"{source}, layer '{key}'"
        )
        new_params[name] = layer_params
        if layer_stats is not None:
            new_stats[name] = layer_stats
    return new_params, new_stats


def load_keras_weights(
    name: str, path: str | os.PathLike, variables: Mapping[str, Any]
) -> dict[str, Any]:
    """`build_classifier(name, ...)` variables with trunk and same-shape head from a Keras file."""
    if name not in KERAS_FILES:
        raise ValueError(f"No Keras weights for {name!r}; supported: {', '.join(KERAS_FILES)}.")
    path = os.fspath(path)
    layers = read_keras_h5(path, f"the Keras Applications {KERAS_FILES[name]}")
    params, stats = dict(variables["params"]), dict(variables.get("batch_stats", {}))
    params[TRUNK], stats[TRUNK] = assign_layers(params[TRUNK], stats.get(TRUNK, {}), layers, path)
    heads = [n for n in _HEAD_NAMES if n in layers]
    extra = set(layers) - set(params[TRUNK]) - set(heads)
    if extra:
        raise ValueError(
            f"{path} has {len(extra)} layers with weights that {name} lacks, e.g. "
            f"{sorted(extra)[:5]}: is it the {KERAS_FILES[name]} file?"
        )
    head = layers[heads[0]] if heads else None
    if head is not None and [a.shape for a in head] == [
        params[HEAD][k].shape for k in ("kernel", "bias")
    ]:
        params[HEAD], _ = load_layer(params[HEAD], None, head, f"{path}, layer '{heads[0]}'")
        logging.info("Loaded %s trunk and head from %s.", name, path)
    else:
        found = [a.shape for a in head] if head else "no top layer"
        logging.info("Loaded %s trunk from %s; head kept (file: %s).", name, path, found)
    out = dict(variables)
    out["params"] = params
    if "batch_stats" in variables:
        out["batch_stats"] = stats
    return out
