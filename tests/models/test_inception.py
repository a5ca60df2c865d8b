"""The Flax Inception-v3 reproduces keras.applications.InceptionV3 on the same weights."""

from __future__ import annotations

import shutil

import h5py
import jax
import numpy as np
import pytest

from medgan_jax.models import inception


@pytest.fixture(scope="module")
def keras_reference(tmp_path_factory):
    """A random-weight Keras InceptionV3 saved in both layouts, with its outputs on one batch."""
    keras = pytest.importorskip("keras")
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(weights=None)
    rng = np.random.default_rng(0)
    # Non-trivial BatchNorm statistics (defaults are mean 0, var 1, beta 0), so they are tested.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.beta.shape[0]
            layer.beta.assign(rng.normal(0.0, 0.2, c).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.2, c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
    # A larger head, so the softmax is far from uniform and the probabilities are tested too.
    head = model.get_layer("predictions")
    head.kernel.assign(head.kernel * 20.0)
    head.bias.assign(rng.normal(0.0, 1.0, head.bias.shape).astype(np.float32))

    x = rng.uniform(-1.0, 1.0, (2, 299, 299, 3)).astype(np.float32)
    both = keras.Model(model.input, [model.get_layer("avg_pool").output, model.output])
    features, probs = (np.asarray(a) for a in both(x, training=False))
    kernel, bias = (np.asarray(v, np.float64) for v in head.weights)

    folder = tmp_path_factory.mktemp("inception")
    model.save_weights(folder / "inception.weights.h5")
    model.save(folder / "inception.h5")
    return {
        "folder": folder,
        "x": x,
        "features": features,
        "logits": features.astype(np.float64) @ kernel + bias,
        "probs": probs,
    }


def test_matches_keras(keras_reference):
    ref = keras_reference
    variables = inception.load_keras_h5(ref["folder"] / "inception.weights.h5")
    out = inception.make_inception_fn(variables)(ref["x"])
    assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 1000)
    assert ref["probs"].max() > 0.1  # the comparison of probabilities is not trivial
    assert ref["features"].std() > 0.1  # activations did not die out
    errors = {
        "features": np.abs(np.asarray(out["features"]) - ref["features"]).max(),
        "logits": np.abs(np.asarray(out["logits"]) - ref["logits"]).max(),
        "probs": np.abs(np.asarray(jax.nn.softmax(out["logits"])) - ref["probs"]).max(),
    }
    print("max abs differences to Keras:", errors)
    assert all(err < 1e-4 for err in errors.values()), errors


def test_legacy_h5_loads_identically(keras_reference):
    folder = keras_reference["folder"]
    new = inception.load_keras_h5(folder / "inception.weights.h5")
    legacy = inception.load_keras_h5(folder / "inception.h5")
    assert jax.tree.structure(new) == jax.tree.structure(legacy)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, new, legacy)))


def test_file_without_head_loads_features_only(keras_reference, tmp_path):
    path = tmp_path / "notop.h5"
    shutil.copy(keras_reference["folder"] / "inception.h5", path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]
        del group["predictions"]
        names = [n for n in group.attrs["layer_names"] if n not in ("predictions", b"predictions")]
        group.attrs["layer_names"] = names
    variables = inception.load_keras_h5(path)
    assert "predictions" not in variables["params"]
    assert len(variables["params"]) == 16  # 5 stem convolutions + 11 mixed blocks


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / inception.WEIGHTS_FILE
    with pytest.raises(FileNotFoundError, match="nothing is downloaded") as info:
        inception.load_keras_h5(path)
    assert str(path) in str(info.value)


def test_mismatched_shape_names_the_layer(keras_reference, tmp_path):
    path = tmp_path / "bad.weights.h5"
    shutil.copy(keras_reference["folder"] / "inception.weights.h5", path)
    with h5py.File(path, "r+") as f:
        # Position 7 in model.layers order is mixed0's second double-3x3 convolution.
        group = f["layers/conv2d_7/vars"]
        del group["0"]
        group["0"] = np.zeros((3, 3, 64, 95), np.float32)
    with pytest.raises(ValueError, match=r"conv2d_7") as info:
        inception.load_keras_h5(path)
    message = str(info.value)
    assert "mixed0/branch3x3dbl_2" in message
    assert "(3, 3, 64, 95)" in message and "(3, 3, 64, 96)" in message


@pytest.mark.parametrize("shape", [(2, 64, 64, 1), (1, 400, 512, 3)])
def test_preprocess_resizes_like_tf(shape):
    import tensorflow as tf

    x = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(np.float32)
    x[0, :2, :2] = np.array([[1.0, -1.0], [-1.0, 1.0]])[..., None]  # the range's ends
    y = np.asarray(inception.preprocess(x))
    assert y.shape == (shape[0], 299, 299, 3)
    assert y.min() >= -1.0 and y.max() <= 1.0
    ref = tf.image.resize(x, (299, 299), "bilinear", antialias=True).numpy()
    np.testing.assert_allclose(y, np.broadcast_to(ref, y.shape), atol=1e-5)


def test_preprocess_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\].*\(2, 64, 64, 2\)"):
        inception.preprocess(np.zeros((2, 64, 64, 2), np.float32))
