"""Photometric ops: closed forms, SciPy-referenced kernels, dropout rates, superpixel structure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from medgan_jax.augment import photometric

_OPS = {
    name: getattr(photometric, name)
    for name in ("superpixels", "sharpen", "emboss", "dropout", "add", "multiply", "contrast")
}
_OPS["colour"] = photometric.colour
_SHAPE = (8, 16, 12)


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _smooth_images(num, h, w, channels, seed=0):
    """Blobs and gradients plus a little noise: images with regions for SLIC to find."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:h, :w] / max(h, w)
    out = []
    for _ in range(num):
        a, b, c = rng.uniform(2, 8, 3)
        base = [np.sin(a * ys + c * k) * np.cos(b * xs - k) for k in range(channels)]
        out.append(np.stack(base, -1) * 0.9 + rng.normal(0, 0.03, (h, w, channels)))
    return jnp.asarray(np.clip(out, -1, 1), jnp.float32)


@pytest.mark.parametrize("name", list(_OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_op_shape_range_determinism_and_jit(name, channels):
    x = _images((*_SHAPE, channels))
    fn = _OPS[name]  # jitted itself (parameters static); it also traces inside a jit
    jax.jit(lambda a, k: fn(a, k)).lower(x, jax.random.key(0))
    y = fn(x, jax.random.key(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    np.testing.assert_array_equal(np.asarray(y), np.asarray(fn(x, jax.random.key(0))))
    changed = not np.array_equal(np.asarray(y), np.asarray(fn(x, jax.random.key(1))))
    # Grey images have no hue or saturation: colour returns them as they are.
    assert changed == (name != "colour" or channels == 3)
    if name == "colour" and channels == 1:
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


def _correlate(u, kernel):
    """cv2.filter2D's correlation with BORDER_REFLECT_101 (SciPy's 'mirror'), per image/channel."""
    return scipy.ndimage.correlate(u, kernel[None, :, :, None], mode="mirror")


def test_sharpen_and_emboss_match_their_kernels():
    x = np.asarray(_images((4, 9, 7, 3)))
    u = (x.astype(np.float64) + 1) / 2
    ops = jax.jit(
        lambda a, k: (
            photometric.sharpen(a, k, alpha=1.0, lightness=1.25),
            photometric.emboss(a, k, alpha=1.0, strength=0.8),
            photometric.sharpen(a, k, alpha=0.0),
            photometric.emboss(a, k, alpha=0.0),
        )
    )
    sharp, embossed, *unchanged = (np.asarray(y) for y in ops(jnp.asarray(x), jax.random.key(0)))
    kernel = -np.ones((3, 3))
    kernel[1, 1] = 8 + 1.25
    np.testing.assert_allclose(sharp, np.clip(2 * _correlate(u, kernel) - 1, -1, 1), atol=1e-5)
    s = 0.8
    kernel = np.array([[-1 - s, -s, 0], [-s, 1, s], [0, s, 1 + s]])
    np.testing.assert_allclose(embossed, np.clip(2 * _correlate(u, kernel) - 1, -1, 1), atol=1e-5)
    for y in unchanged:
        np.testing.assert_allclose(y, x, atol=1e-6)


def test_brightness_and_contrast_closed_forms():
    x = np.asarray(_images((*_SHAPE, 3)))
    ops = jax.jit(
        lambda a, k: (
            photometric.add(a, k, value=0.3),
            photometric.multiply(a, k, factor=1.4),
            photometric.contrast(a, k, factor=1.7),
            photometric.add(a, k, value=(-0.5, 0.5), per_channel=0.0),
            photometric.add(a, k, value=(-0.5, 0.5), per_channel=1.0),
        )
    )
    added, multiplied, contrasted, shared, per_channel = (
        np.asarray(y) for y in ops(jnp.asarray(x), jax.random.key(0))
    )
    np.testing.assert_allclose(added, np.clip(x + 0.3, -1, 1), atol=1e-6)
    np.testing.assert_allclose(multiplied, np.clip((x + 1) * 1.4 - 1, -1, 1), atol=1e-6)
    np.testing.assert_allclose(contrasted, np.clip(x * 1.7, -1, 1), atol=1e-6)
    # Offsets read back where nothing was clipped: one per image, or one per channel.
    interior = np.abs(x) < 0.5
    for y, per_image in ((shared, True), (per_channel, False)):
        offsets = np.where(interior, y - x, np.nan)
        spread = np.nanmax(offsets, axis=(1, 2)) - np.nanmin(offsets, axis=(1, 2))  # (N, C)
        assert spread.max() < 1e-5
        channel_spread = np.ptp(np.nanmean(offsets, axis=(1, 2)), axis=1)
        assert (channel_spread.max() < 1e-5) == per_image


def test_colour_identity_desaturation_and_hue_turns():
    x = np.asarray(_images((*_SHAPE, 3)))
    ops = jax.jit(
        lambda a, k: (
            photometric.colour(a, k, hue=0.0, saturation=1.0),
            photometric.colour(a, k, hue=0.0, saturation=0.0),
            photometric.colour(a, k, hue=120.0, saturation=1.0),
        )
    )
    same, grey, turned = (np.asarray(y) for y in ops(jnp.asarray(x), jax.random.key(0)))
    np.testing.assert_allclose(same, x, atol=1e-6)
    np.testing.assert_allclose(grey, np.repeat(x.mean(-1, keepdims=True), 3, -1), atol=1e-6)
    # A third of a turn about the grey axis permutes R, G and B cyclically.
    np.testing.assert_allclose(turned, np.roll(x, 1, axis=-1), atol=1e-5)


def test_dropout_rates_and_black_pixels():
    x = np.asarray(_images((16, 32, 32, 3)))
    ops = jax.jit(
        lambda a, k: (
            photometric.dropout(a, k, rate=0.0),
            photometric.dropout(a, k, rate=0.5, per_channel=0.0),
            photometric.dropout(a, k, rate=0.5, per_channel=1.0),
        )
    )
    none, whole, per_channel = (np.asarray(y) for y in ops(jnp.asarray(x), jax.random.key(0)))
    np.testing.assert_array_equal(none, x)
    for y in (whole, per_channel):
        dropped = y != x
        assert np.all(y[dropped] == -1)
        n = dropped.size
        assert abs(dropped.mean() - 0.5) < 4.5 * np.sqrt(0.25 / (n / 3))
    # Without per-channel draws a pixel loses all its channels or none.
    assert np.all(np.all(whole == -1, -1) == np.any(whole != x, -1))
    mixed = np.any(per_channel != x, -1) & ~np.all(per_channel == -1, -1)
    assert mixed.mean() > 0.5  # P(some but not all of 3 channels dropped) = 0.75


def test_superpixel_labels_are_bounded_segments_of_about_n():
    x = _smooth_images(4, 32, 24, 3)
    labels = np.asarray(photometric.superpixel_labels(x, 24))
    # 24 segments on 32 x 24: a 6 x 4 grid of 5.3 x 6 cells; a label stays in its 3 x 3 cells.
    assert labels.shape == (4, 32, 24) and labels.dtype == np.int32
    for image_labels in labels:
        ids = np.unique(image_labels)
        assert 12 <= len(ids) <= 24
        for i in ids:
            rows, cols = np.nonzero(image_labels == i)
            cy, cx = divmod(int(i), 4)
            assert rows.min() >= np.floor((cy - 1) * 32 / 6) and rows.max() < (cy + 2) * 32 / 6
            assert cols.min() >= (cx - 1) * 6 and cols.max() < (cx + 2) * 6


def test_superpixels_replace_segments_by_their_mean():
    x = _smooth_images(4, 32, 24, 3, seed=1)
    key = jax.random.key(3)

    @jax.jit
    def run(a):
        labels = photometric.superpixel_labels(a, 24)
        full = photometric.superpixels(a, key, p_replace=1.0, n_segments=24)
        half = photometric.superpixels(a, key, p_replace=0.5, n_segments=24)
        none = photometric.superpixels(a, key, p_replace=0.0, n_segments=24)
        return labels, full, half, none

    labels, full, half, none = (np.asarray(y) for y in run(x))
    x = np.asarray(x)
    np.testing.assert_array_equal(none, x)
    replaced = []
    for i in range(4):
        ids = np.unique(labels[i])
        distinct = np.unique(full[i].reshape(-1, 3), axis=0)
        assert len(distinct) == len(ids) and 12 <= len(ids) <= 24
        for j in ids:
            mask = labels[i] == j
            mean = np.broadcast_to(x[i][mask].mean(0), full[i][mask].shape)
            np.testing.assert_allclose(full[i][mask], mean, atol=1e-5)
            kept = np.array_equal(half[i][mask], x[i][mask])
            assert kept or np.array_equal(half[i][mask], full[i][mask])
            replaced.append(not kept)
    assert 0.3 < np.mean(replaced) < 0.7


def test_superpixel_counts_follow_n_segments_per_image():
    x = _smooth_images(16, 32, 32, 3)
    y = np.asarray(photometric.superpixels(x, jax.random.key(1), p_replace=1.0))
    counts = [len(np.unique(image.reshape(-1, 3), axis=0)) for image in y]
    assert min(counts) >= 10 and max(counts) <= 200 and max(counts) > 3 * min(counts)


def test_bad_parameters_name_themselves():
    x = _images((2, 8, 8, 3))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="n_segments must be whole numbers"):
        photometric.superpixels(x, key, n_segments=(10.5, 20))
    with pytest.raises(ValueError, match="p_replace must satisfy"):
        photometric.superpixels(x, key, p_replace=1.5)
    with pytest.raises(ValueError, match="rate must satisfy"):
        photometric.dropout(x, key, rate=(0.2, 0.1))
    with pytest.raises(ValueError, match="colour expects 1 or 3 channels"):
        photometric.colour(x[..., :2], key)
