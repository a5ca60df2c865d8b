"""Filters against scipy.ndimage (mode='reflect') and their closed forms; the random versions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from medgan_jax.augment import filtering

_blur, _unsharp, _minimum = (
    filtering.gaussian_blur,
    filtering.unsharp_mask,
    filtering.minimum_filter,
)


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _scipy_blur(x, sigma, truncate=4.0):
    x = np.asarray(x, np.float64)
    return scipy.ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode="reflect", truncate=truncate)


_RANDOM = {
    "blur": filtering.random_gaussian_blur,
    "unsharp": filtering.random_unsharp_mask,
    "minimum": filtering.random_minimum_filter,
    "filter": filtering.random_filter,
}
# The random ops' tests share this batch's shape (with 1 channel), so they share compilations.
_SHAPE = (8, 16, 12)


@pytest.mark.parametrize("name", list(_RANDOM))
@pytest.mark.parametrize("channels", [1, 3])
def test_op_shape_range_determinism_and_jit(name, channels):
    x = _images((*_SHAPE, channels))
    fn = _RANDOM[name]  # jitted itself (parameters static); it also traces inside a jit
    jax.jit(lambda a, k: fn(a, k)).lower(x, jax.random.key(0))
    y = fn(x, jax.random.key(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    np.testing.assert_array_equal(np.asarray(y), np.asarray(fn(x, jax.random.key(0))))
    assert not np.array_equal(np.asarray(y), np.asarray(fn(x, jax.random.key(1))))


# sigma 3 has a radius of 12 on a 9 x 7 image: the reflection wraps more than once.
@pytest.mark.parametrize("sigma, truncate", [(0.0, 4.0), (0.7, 4.0), (1.5, 2.0), (3.0, 4.0)])
def test_gaussian_blur_matches_scipy(sigma, truncate):
    x = _images((2, 9, 7, 3))
    y = np.asarray(_blur(x, sigma=sigma, truncate=truncate))
    np.testing.assert_allclose(y, _scipy_blur(x, sigma, truncate), atol=1e-5)


def test_unsharp_mask_is_its_clipped_closed_form():
    x = _images((2, 12, 10, 1))
    y = np.asarray(_unsharp(x, sigma=1.2, amount=1.5))
    expected = np.clip(np.asarray(x) + 1.5 * (np.asarray(x) - _scipy_blur(x, 1.2)), -1, 1)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert np.mean(np.abs(y) == 1) > 0.05  # clipping is part of what was checked


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_minimum_filter_matches_scipy(size):
    x = np.asarray(_images((2, 9, 7, 3)))
    expected = scipy.ndimage.minimum_filter(x, (1, size, size, 1), mode="reflect")
    np.testing.assert_array_equal(np.asarray(_minimum(jnp.asarray(x), size=size)), expected)


def test_random_versions_with_fixed_parameters_equal_the_filters():
    x = _images((4, 9, 7, 3))
    key = jax.random.key(2)
    ops = jax.jit(
        lambda a, k: (
            filtering.random_gaussian_blur(a, k, sigma=1.5),
            filtering.random_unsharp_mask(a, k, sigma=1.5, amount=1.5),
            filtering.random_minimum_filter(a, k, size=3),
        )
    )
    blurred, sharpened, eroded = (np.asarray(y) for y in ops(x, key))
    np.testing.assert_allclose(blurred, _scipy_blur(x, 1.5), atol=1e-5)
    expected = np.clip(np.asarray(x) + 1.5 * (np.asarray(x) - _scipy_blur(x, 1.5)), -1, 1)
    np.testing.assert_allclose(sharpened, expected, atol=1e-5)
    np.testing.assert_array_equal(eroded, np.asarray(_minimum(x, size=3)))


def test_random_filter_applies_one_of_the_three_filters_per_image():
    x = _images((*_SHAPE, 1), seed=1)
    y = np.asarray(_RANDOM["filter"](x, jax.random.key(4)))
    copies = [_blur(x, sigma=1.0), _unsharp(x, sigma=1.0, amount=1.0), _minimum(x, size=3)]
    errors = np.stack([np.abs(y - np.asarray(c)).max(axis=(1, 2, 3)) for c in copies])
    assert np.all(errors.min(axis=0) < 1e-5)
    assert set(np.argmin(errors, axis=0)) == {0, 1, 2}


def test_random_sizes_and_sigmas_vary_per_image():
    x = jnp.broadcast_to(_images((1, *_SHAPE[1:], 1), seed=2), (*_SHAPE, 1))
    key = jax.random.key(6)
    y = np.asarray(_RANDOM["minimum"](x, key))
    candidates = np.stack([np.asarray(_minimum(x, size=k))[0] for k in (1, 2, 3)])
    sizes = [np.flatnonzero(np.all(c == candidates, axis=(1, 2, 3))) for c in y]
    assert all(len(s) == 1 for s in sizes) and len({int(s[0]) for s in sizes}) == 3
    # sigma in (0, 3): each image its own blur (below 0.125, SciPy's radius 0 keeps the image).
    blurred = np.asarray(_RANDOM["blur"](x, key))
    assert len(np.unique(blurred.std(axis=(1, 2, 3)).round(5))) >= 6


def test_bad_parameters_name_themselves():
    x = _images((2, 8, 8, 1))
    with pytest.raises(ValueError, match="sigma must satisfy"):
        filtering.gaussian_blur(x, -1.0)
    with pytest.raises(ValueError, match="size must be a positive whole number"):
        filtering.minimum_filter(x, 2.5)
    with pytest.raises(ValueError, match="size must be whole numbers"):
        filtering.random_minimum_filter(x, jax.random.key(0), size=(1.0, 2.5))
    with pytest.raises(ValueError, match="truncate must be positive"):
        functools.partial(filtering.gaussian_blur, truncate=0.0)(x, 1.0)
