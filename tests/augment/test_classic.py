"""Classic geometry: flips, affine identities and rot90, SciPy-referenced resampling, crop/pad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from medgan_jax.augment import classic


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _map_coordinates(x, rows, cols, cval=-1.0):
    """Bilinear reference: SciPy with a cval that blends across the border ('grid-constant')."""
    out = np.empty(x.shape[:1] + rows.shape + x.shape[3:])
    for i in range(x.shape[0]):
        for c in range(x.shape[3]):
            out[i, ..., c] = scipy.ndimage.map_coordinates(
                x[i, ..., c], [rows, cols], order=1, mode="grid-constant", cval=cval
            )
    return out


@pytest.mark.parametrize(
    "op",
    [classic.random_flip, classic.affine, classic.crop_and_pad, classic.random_crop],
    ids=["flip", "affine", "crop_and_pad", "random_crop"],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_op_shape_range_determinism_and_jit(op, channels):
    # Ops are jitted themselves (parameters static); they also trace inside an outer jit.
    x = _images((8, 16, 12, channels))
    jax.jit(lambda a, k: op(a, k)).lower(x, jax.random.key(0))
    fn = op
    y = fn(x, jax.random.key(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    np.testing.assert_array_equal(np.asarray(y), np.asarray(fn(x, jax.random.key(0))))
    assert not np.array_equal(np.asarray(y), np.asarray(fn(x, jax.random.key(1))))


def test_flips_are_involutions_and_random_flip_extremes():
    x = _images((64, 6, 5, 3))
    np.testing.assert_array_equal(classic.hflip(classic.hflip(x)), x)
    np.testing.assert_array_equal(classic.vflip(classic.vflip(x)), x)
    np.testing.assert_array_equal(classic.hflip(x), np.asarray(x)[:, :, ::-1])
    np.testing.assert_array_equal(classic.vflip(x), np.asarray(x)[:, ::-1])

    @jax.jit
    def variants(a, key):
        probs = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.5, 0.0))
        return [classic.random_flip(a, key, h, v) for h, v in probs]

    none, left_right, up_down, half = (np.asarray(y) for y in variants(x, jax.random.key(3)))
    np.testing.assert_array_equal(none, x)
    np.testing.assert_array_equal(left_right, classic.hflip(x))
    np.testing.assert_array_equal(up_down, classic.vflip(x))
    flipped = np.all(half == np.asarray(classic.hflip(x)), axis=(1, 2, 3))
    kept = np.all(half == np.asarray(x), axis=(1, 2, 3))
    assert np.all(flipped | kept) and 16 <= flipped.sum() <= 48


# One (4, 16, 16, 3) batch, so the geometry tests share compilations.
_X = _images((4, 16, 16, 3))


@pytest.mark.parametrize("mode", classic.MODES)
def test_identity_transform_in_every_mode(mode):
    np.testing.assert_allclose(
        np.asarray(classic.affine_transform(_X, mode=mode)), _X, atol=1e-6, rtol=0
    )


def test_random_affine_with_identity_parameters_is_the_identity():
    same = classic.affine(_X, jax.random.key(0), rotate=0.0, scale=1.0, translate=0.0)
    np.testing.assert_allclose(np.asarray(same), _X, atol=1e-6, rtol=0)


def test_quarter_turns_match_rot90_clockwise_positive():
    x = np.asarray(_X)
    for degrees, k in ((90.0, -1), (-90.0, 1), (180.0, 2)):
        y = np.asarray(classic.affine_transform(_X, rotate=degrees))
        expected = np.rot90(x, k=k, axes=(1, 2))
        np.testing.assert_allclose(y[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)


def test_whole_pixel_translation_shifts_and_fills_with_cval():
    x = np.asarray(_X)
    y = np.asarray(classic.affine_transform(_X, translate_x=2 / 16, translate_y=-3 / 16))
    np.testing.assert_allclose(y[:, :-3, 2:], x[:, 3:, :-2], atol=1e-6)
    assert np.all(y[:, :, :2] == -1) and np.all(y[:, -3:] == -1)


def test_affine_matches_scipy_bilinear_resampling():
    x = np.asarray(_X)
    angle, zoom, tx, ty = 30.0, 1.3, 0.1, -0.05
    y = np.asarray(classic.affine_transform(_X, angle, zoom, tx, ty))
    # imgaug's order about the centre: out = T(R(S(in))), so in = S^-1 R^-1 (out - t).
    c = (16 - 1) / 2
    rows, cols = np.mgrid[:16, :16].astype(np.float64)
    u, v = cols - c - tx * 16, rows - c - ty * 16
    t = np.deg2rad(angle)
    in_cols = (np.cos(t) * u + np.sin(t) * v) / zoom + c
    in_rows = (-np.sin(t) * u + np.cos(t) * v) / zoom + c
    np.testing.assert_allclose(y, _map_coordinates(x, in_rows, in_cols), atol=1e-5)
    assert np.any(y == -1)  # some corners come from outside the image


def test_crop_and_pad_resize_the_kept_box():
    x = np.asarray(_X)
    key = jax.random.key(0)
    out = np.arange(16.0)
    for percent, first, size in ((-0.25, 4, 8), (0.25, -4, 24)):  # crop 4 / pad 4 per side
        y = np.asarray(classic.crop_and_pad(_X, key, percent=percent))
        coords = first + (out + 0.5) * size / 16 - 0.5  # half-pixel-centre resize of the box
        rows, cols = np.meshgrid(coords, coords, indexing="ij")
        np.testing.assert_allclose(y, _map_coordinates(x, rows, cols), atol=1e-5)


def test_random_crop_is_a_whole_pixel_shift_within_padding():
    x = np.asarray(_images((8, 16, 12, 1)))
    y = np.asarray(classic.random_crop(jnp.asarray(x), jax.random.key(5)))
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1)
    shifts = set()
    for i in range(8):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(y[i], padded[i, 2 + dy : 18 + dy, 2 + dx : 14 + dx])
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 3


def test_bad_parameters_name_themselves():
    x = _images((2, 8, 8, 1))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="mode must be one of constant, reflect, edge"):
        classic.affine(x, key, mode="wrap")
    with pytest.raises(ValueError, match="rotate must be a number or a"):
        classic.affine(x, key, rotate=(1, 2, 3))
    with pytest.raises(ValueError, match="scale must satisfy"):
        classic.affine(x, key, scale=(-1.0, 1.0))
    with pytest.raises(ValueError, match="percent must satisfy"):
        classic.crop_and_pad(x, key, percent=(-0.6, 0.0))
    with pytest.raises(ValueError, match="NHWC"):
        classic.affine(x[0], key)
