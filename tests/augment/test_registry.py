"""Named pipelines: properties on 1- and 3-channel batches, overrides, and errors naming the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medgan_jax.augment import registry


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


@pytest.mark.parametrize("name", list(registry.AUGMENTATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_pipeline_shape_range_determinism_and_jit(name, channels):
    x = _images((8, 16, 12, channels))
    # Eager calls run the jitted ops, reusing the compilations of the ops' own tests.
    fn = registry.make_augment(name)
    y = np.asarray(fn(x, jax.random.key(0)))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1
    np.testing.assert_array_equal(y, np.asarray(fn(x, jax.random.key(0))))
    if name == "none":
        np.testing.assert_array_equal(y, x)
    else:
        assert not np.array_equal(y, np.asarray(fn(x, jax.random.key(1))))
    # The whole pipeline traces as one program; test_jit_equals_eager also compiles one.
    lowered = jax.jit(fn).lower(x, jax.random.key(0))
    assert lowered.out_info.shape == x.shape


def test_jit_equals_eager():
    x = _images((8, 16, 12, 3))
    fn = registry.make_augment("filtering")
    key = jax.random.key(2)
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(x, key)), np.asarray(fn(x, key)), atol=1e-5)


def test_each_step_fires_on_a_fraction_p_of_the_images():
    x = _images((256, 8, 8, 1))
    fn = registry.make_augment("filtering", {"p": 0.3})
    changed = np.abs(np.asarray(fn(x, jax.random.key(3))) - np.asarray(x)).max(axis=(1, 2, 3))
    # A filter can leave an image unchanged only by chance; none does on noise.
    assert abs(np.mean(changed > 0) - 0.3) < 4.5 * np.sqrt(0.3 * 0.7 / 256)


def test_overrides_reach_the_ops():
    x = _images((4, 16, 16, 3))
    params = {
        "flip": {"horizontal": 0.0},
        "crop_and_pad": {"p": 0.0},
        "affine": {"p": 1.0, "scale": 1.0, "translate": 0.0},
        "rotate": 90.0,  # a bare key, set on the one step that has it
    }
    y = np.asarray(registry.make_augment("classic", params)(x, jax.random.key(0)))
    expected = np.rot90(np.asarray(x), -1, axes=(1, 2))
    np.testing.assert_allclose(y[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)
    # Every step off is the identity, for any key.
    off = {step: {"p": 0.0} for step in registry.default_params("classic+photometric")}
    y = registry.make_augment("classic+photometric", off)(x, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


def test_default_params_document_every_step():
    params = registry.default_params("classic")
    assert list(params) == ["flip", "affine", "crop_and_pad", "random_crop"]
    assert params["affine"] == {
        "p": 0.5,
        "rotate": (-20.0, 20.0),
        "scale": (0.9, 1.1),
        "translate": (-0.1, 0.1),
        "mode": "constant",
        "cval": -1.0,
    }
    assert params["flip"]["horizontal"] == 0.5 and params["random_crop"]["p"] == 0.0
    both = registry.default_params("classic+photometric")
    assert list(both) == list(params) + list(registry.default_params("photometric"))
    assert registry.default_params("photometric")["superpixels"]["n_segments"] == (20, 200)
    assert registry.default_params("none") == {}


def test_errors_name_the_bad_key():
    with pytest.raises(ValueError, match=r"Unknown augmentation 'clasic'.*'classic'.*'filtering'"):
        registry.make_augment("clasic")
    with pytest.raises(ValueError, match=r"Unknown parameter 'rotation' for augmentation.*rotate"):
        registry.make_augment("classic", {"rotation": 10})
    with pytest.raises(ValueError, match=r"Unknown parameter 'sigma' for step 'affine'"):
        registry.make_augment("classic", {"affine": {"sigma": 1.0}})
    with pytest.raises(ValueError, match=r"'alpha' of augmentation 'photometric' is ambiguous"):
        registry.make_augment("photometric", {"alpha": 0.5})
    with pytest.raises(ValueError, match=r"'affine' names a step"):
        registry.make_augment("classic", {"affine": 0.5})
    with pytest.raises(ValueError, match=r"Probability p of step 'blur' must be in \[0, 1\]"):
        registry.make_augment("photometric", {"blur": {"p": 1.5}})
    # Values are checked by the ops when the pipeline is first traced.
    bad = registry.make_augment("classic", {"rotate": (1, 2, 3)})
    with pytest.raises(ValueError, match="rotate must be a number or a"):
        jax.eval_shape(bad, _images((2, 8, 8, 1)), jax.random.key(0))
