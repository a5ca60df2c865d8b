"""Classifiers: shapes, trunk/head split, ResNet-50 and DenseNet-121 equal to Keras Applications."""

from __future__ import annotations

import functools

import h5py
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from medgan_jax.models import keras_weights
from medgan_jax.models.classifiers import build_classifier
from medgan_jax.models.keras_weights import load_keras_weights

FEATURES = {"simple_cnn": 128, "resnet18": 512, "resnet50": 2048, "densenet121": 1024}
KERAS_MODELS = ("resnet50", "densenet121")
CLASSES = 3
RES = 32


def _size(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@functools.cache
def _shapes(name: str, num_outputs: int, channels: int) -> dict:
    model = build_classifier(name, num_outputs)
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, RES, RES, channels)))


def _zeros(name: str, num_outputs: int = CLASSES, channels: int = 3) -> dict:
    """Variables of the named model as host zeros (no init compile; the loader fills them)."""
    shapes = _shapes(name, num_outputs, channels)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """name -> (Keras model with logits output, its random weights as .weights.h5, legacy .h5)."""
    from keras.src.legacy.saving import legacy_h5_format

    rng = np.random.default_rng(0)
    out = {}
    for name, ctor in (
        ("resnet50", keras.applications.ResNet50),
        ("densenet121", keras.applications.DenseNet121),
    ):
        model = ctor(
            weights=None,
            include_top=True,
            classes=CLASSES,
            input_shape=(RES, RES, 3),
            classifier_activation=None,
        )
        # Keras initialises biases, BN betas and moving stats to constants: randomise them all
        # so a swapped or dropped array shows.
        for w in model.weights:
            kind = w.path.rsplit("/", 1)[-1]
            if kind in ("gamma", "moving_variance"):
                w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
            elif kind in ("beta", "moving_mean", "bias"):
                w.assign(rng.normal(0.0, 0.1, w.shape).astype(np.float32))
        path = tmp_path_factory.mktemp(name) / f"{name}.weights.h5"
        model.save_weights(path)
        legacy = path.with_name(f"{name}_legacy.h5")
        with h5py.File(legacy, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        out[name] = model, path, legacy
    return out


@pytest.mark.parametrize("name", list(FEATURES))
@pytest.mark.parametrize("channels, num_outputs", [(1, 1), (3, 5)])
def test_output_shapes_and_trunk_head_split(name, channels, num_outputs):
    model = build_classifier(name, num_outputs)
    x = jnp.zeros((2, RES, RES, channels))
    (logits, feats), variables = jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), x, return_features=True)
    )
    assert logits.shape == (2, num_outputs) and feats.shape == (2, FEATURES[name])
    assert set(variables["params"]) == {"trunk", "head"}
    assert set(variables.get("batch_stats", {"trunk": 0})) == {"trunk"}
    # Another (non-square) resolution with the same parameters.
    x = jnp.zeros((3, 64, 48, channels))
    logits = jax.eval_shape(model.apply, variables, x)
    assert logits.shape == (3, num_outputs) and logits.dtype == jnp.float32


def test_simple_cnn_flatten_and_bfloat16_compute():
    model = build_classifier(
        "simple_cnn", 2, pooling="flatten", batch_norm=True, dtype=jnp.bfloat16
    )
    x = jnp.zeros((2, 64, 64, 1))
    logits, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x))
    # Three 2x pools: 8 x 8 x 128 flattened into the hidden layer; parameters stay float32.
    assert variables["params"]["trunk"]["hidden"]["kernel"].shape == (8 * 8 * 128, 128)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert logits.shape == (2, 2) and logits.dtype == jnp.float32


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18"])
def test_train_mode_updates_batch_stats_and_eval_is_deterministic(name):
    kwargs = (
        {"batch_norm": True} if name == "simple_cnn" else {"dropout_rate": 0.5, "bn_momentum": 0.5}
    )
    model = build_classifier(name, 4, **kwargs)
    x = jax.random.normal(jax.random.key(1), (4, RES, RES, 1))
    variables = jax.jit(model.init)(jax.random.key(0), x)

    @jax.jit
    def run(variables, key):
        train_out, updates = model.apply(
            variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )
        return train_out, updates, model.apply(variables, x)

    train_out, updates, eval_out = run(variables, jax.random.key(2))
    assert train_out.shape == eval_out.shape == (4, 4)
    moved = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"]
    )
    assert all(jax.tree.leaves(moved))
    np.testing.assert_array_equal(eval_out, run(variables, jax.random.key(3))[2])
    assert not np.allclose(train_out, run(variables, jax.random.key(3))[0])  # dropout / batch BN


def test_resnet18_parameter_count_equals_torchvision():
    variables = _zeros("resnet18", num_outputs=1000)
    # torchvision.models.resnet18(): 11,689,512 parameters, plus 2 x 4,800 BN running stats.
    assert _size(variables["params"]) == 11_689_512
    assert _size(variables["batch_stats"]) == 2 * 4_800


@pytest.mark.parametrize("name", KERAS_MODELS)
def test_parameter_counts_equal_keras(name, keras_files):
    keras_model = keras_files[name][0]
    variables = _zeros(name)
    assert _size(variables) == keras_model.count_params()
    ctor = {"resnet50": keras.applications.ResNet50, "densenet121": keras.applications.DenseNet121}
    notop = ctor[name](weights=None, include_top=False, input_shape=(RES, RES, 3))
    assert _size(variables["params"]["trunk"]) + _size(variables["batch_stats"]["trunk"]) == (
        notop.count_params()
    )


@pytest.mark.parametrize("name", KERAS_MODELS)
def test_keras_weights_give_keras_features_and_logits(name, keras_files):
    keras_model, path, _ = keras_files[name]
    x = np.random.default_rng(1).uniform(-1, 1, (2, RES, RES, 3)).astype(np.float32)
    pooled = keras.Model(keras_model.input, keras_model.get_layer("avg_pool").output)
    want_features, want_logits = np.asarray(pooled(x)), np.asarray(keras_model(x))

    model = build_classifier(name, CLASSES)
    variables = load_keras_weights(name, path, _zeros(name))
    logits, features = jax.jit(lambda v, x: model.apply(v, x, return_features=True))(variables, x)
    assert np.abs(want_features).max() > 0.1  # the comparison is not of near-zero numbers
    np.testing.assert_allclose(features, want_features, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits, want_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        jax.nn.softmax(logits), keras.ops.softmax(want_logits), atol=1e-5, rtol=0
    )


def test_one_channel_model_equals_keras_on_tiled_grey_image(keras_files):
    keras_model, path, _ = keras_files["resnet50"]
    grey = np.random.default_rng(2).uniform(-1, 1, (2, RES, RES, 1)).astype(np.float32)
    model = build_classifier("resnet50", CLASSES)
    variables = load_keras_weights("resnet50", path, _zeros("resnet50", channels=1))
    logits = jax.jit(model.apply)(variables, grey)
    want = np.asarray(keras_model(np.repeat(grey, 3, axis=-1)))
    np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)


def _write_keras2_h5(path, layers: dict[str, list[np.ndarray]], rename) -> None:
    """A legacy weights file as Keras 2 wrote it, under the layers' old names."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [rename(n).encode() for n in layers]
        for name, arrays in layers.items():
            group = f.create_group(rename(name))
            names = [f"{rename(name)}/w{i}:0" for i in range(len(arrays))]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, a in zip(names, arrays):
                group.create_dataset(n, data=a)


def _old_resnet_name(name: str) -> str:
    """Keras 3's ResNet-50 layer names as the original (2016) release spelled them."""
    if name.startswith("conv1_"):
        return {"conv1_conv": "conv1", "conv1_bn": "bn_conv1"}[name]
    if name == "predictions":
        return "fc1000"
    stage, block, branch, kind = name[4], int(name[11]), name[13], name[15:]
    suffix = {"0": "1", "1": "2a", "2": "2b", "3": "2c"}[branch]
    return f"{'res' if kind == 'conv' else 'bn'}{stage}{chr(96 + block)}_branch{suffix}"


@pytest.mark.parametrize("name", KERAS_MODELS)
def test_legacy_h5_files_load_the_same_weights(name, keras_files, tmp_path):
    _, path, legacy = keras_files[name]
    want = load_keras_weights(name, path, _zeros(name))
    layers = keras_weights.read_keras_h5(path)
    old = tmp_path / "keras2.h5"
    if name == "resnet50":
        _write_keras2_h5(old, layers, _old_resnet_name)
    else:  # Keras 2's DenseNet: 'conv1/conv', 'conv1/bn'
        _write_keras2_h5(old, layers, lambda n: n.replace("conv1_", "conv1/"))
    for file in (legacy, old):
        got = load_keras_weights(name, file, _zeros(name))
        jax.tree.map(np.testing.assert_array_equal, got, want)


def test_head_of_another_size_is_kept(keras_files):
    variables = _zeros("densenet121", num_outputs=2)
    variables["params"]["head"]["kernel"] += 0.5
    loaded = load_keras_weights("densenet121", keras_files["densenet121"][1], variables)
    np.testing.assert_array_equal(loaded["params"]["head"]["kernel"], 0.5)
    assert np.abs(loaded["params"]["trunk"]["conv1_conv"]["kernel"]).sum() > 0


def test_errors_name_the_offender(keras_files, tmp_path):
    with pytest.raises(ValueError, match="'vgg16'.*simple_cnn, resnet18, resnet50, densenet121"):
        build_classifier("vgg16", 2)
    with pytest.raises(ValueError, match="'resnet18'.*resnet50, densenet121"):
        load_keras_weights("resnet18", tmp_path / "x.h5", {})
    missing = tmp_path / "resnet50_notop.h5"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*nothing is downloaded"):
        load_keras_weights("resnet50", missing, _zeros("resnet50"))
    resnet_file = keras_files["resnet50"][1]
    # A 2-channel model cannot take the RGB first-conv kernel.
    with pytest.raises(ValueError, match=r"conv1_conv.*\(7, 7, 3, 64\).*\(7, 7, 2, 64\)"):
        load_keras_weights("resnet50", resnet_file, _zeros("resnet50", channels=2))
    with pytest.raises(ValueError, match="conv1_conv.*1 arrays.*needs 2"):
        load_keras_weights("resnet50", keras_files["densenet121"][1], _zeros("resnet50"))
    layers = keras_weights.read_keras_h5(keras_files["densenet121"][1])
    layers["conv6_block1_1_conv"] = [np.zeros((1, 1, 8, 8), np.float32)]
    _write_keras2_h5(tmp_path / "plus.h5", layers, lambda n: n)
    with pytest.raises(ValueError, match=r"1 layers with weights that densenet121 lacks.*conv6"):
        load_keras_weights("densenet121", tmp_path / "plus.h5", _zeros("densenet121"))
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(ValueError, match=f"{empty} is not a Keras weights file"):
        keras_weights.read_keras_h5(empty)


@pytest.mark.parametrize(
    "window,stride,padding,size", [(2, 2, (0, 0), 8), (2, 2, (0, 0), 9), (3, 2, (1, 1), 9)]
)
def test_max_pool_equals_flax_in_value_and_gradient(window, stride, padding, size):
    import flax.linen as nn

    from medgan_jax.models.layers import max_pool

    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))  # ties have measure 0
    flax_pool = lambda v: nn.max_pool(v, (window, window), (stride, stride), (padding, padding))
    ours = lambda v: max_pool(v, window, stride, padding)
    np.testing.assert_array_equal(ours(x), flax_pool(x))
    weights = jax.random.normal(jax.random.PRNGKey(1), flax_pool(x).shape)
    grad = lambda f: jax.grad(lambda v: jnp.sum(f(v) * weights))(x)
    np.testing.assert_allclose(grad(ours), grad(flax_pool), atol=1e-6)


def test_overlapping_max_pool_gives_ties_to_the_first_maximum_as_flax():
    import flax.linen as nn

    from medgan_jax.models.layers import max_pool

    # ReLU'd maps: windows of zeros are ties, which select-and-scatter gives to the first.
    x = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(2), (2, 10, 9, 3)))
    flax_pool = lambda v: nn.max_pool(v, (3, 3), (2, 2), ((1, 1), (1, 1)))
    weights = jax.random.normal(jax.random.PRNGKey(3), flax_pool(x).shape)
    grad = lambda f: jax.grad(lambda v: jnp.sum(f(v) * weights))(x)
    np.testing.assert_array_equal(max_pool(x, 3, 2, (1, 1)), flax_pool(x))
    np.testing.assert_allclose(
        grad(lambda v: max_pool(v, 3, 2, (1, 1))), grad(flax_pool), atol=1e-6
    )
