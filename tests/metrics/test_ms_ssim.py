"""MS-SSIM against tf.image.ssim_multiscale and a NumPy port of NVIDIA PGGAN's metric."""

import functools
import logging

import jax
import numpy as np
import pytest
from scipy import ndimage, signal

from medgan_jax.metrics.ms_ssim import (
    POWER_FACTORS,
    diversity,
    ms_ssim,
    ms_ssim_pairs,
    scale_filters,
)


@pytest.fixture(scope="module")
def tf():
    tf = pytest.importorskip("tensorflow")
    tf.config.set_visible_devices([], "GPU")
    return tf


def structured_pairs(shape, seed=0):
    """Pairs (a, b) in [-1, 1]: independent noise, gradients + noise, blurred, shifted, same."""
    n, h, w, c = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a, b = [], []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            x, y = rng.uniform(-1, 1, (2, h, w, c))
        else:
            angle = rng.uniform(0, 2 * np.pi, c)
            ramp = np.cos(angle) * xx[..., None] + np.sin(angle) * yy[..., None]
            field = ndimage.gaussian_filter(rng.normal(size=(h, w, c)), (6, 6, 0)) * 8
            x = np.clip(ramp - 0.3 + field + 0.1 * rng.normal(size=(h, w, c)), -1, 1)
            if kind == 1:
                y = np.clip(ramp * 0.8 + 0.2 * rng.normal(size=(h, w, c)), -1, 1)
            elif kind == 2:
                y = ndimage.gaussian_filter(x, (2, 2, 0))
            elif kind == 3:
                y = np.roll(x, (3, -2), axis=(0, 1))
            else:
                y = np.clip(x + 0.05 * rng.normal(size=(h, w, c)), -1, 1)
        a.append(x)
        b.append(y)
    return np.stack(a).astype(np.float32), np.stack(b).astype(np.float32)


@pytest.mark.parametrize("shape", [(5, 176, 176, 1), (5, 192, 192, 3), (5, 177, 183, 1)])
def test_equals_tf_ssim_multiscale(tf, shape):
    a, b = structured_pairs(shape)
    got = np.asarray(ms_ssim(a, b))
    # Shifted to [0, 2], the non-negative range TF documents; min_val=0 skips the shift.
    want = tf.image.ssim_multiscale(a + 1, b + 1, 2.0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(
        ms_ssim(a, b, 2.0, 0.0), tf.image.ssim_multiscale(a, b, 2.0).numpy(), atol=1e-4
    )
    # Spread from independent noise up to the near-copy, so the comparison has teeth.
    assert want[0] < 0.2 and want[4] > 0.9 and np.ptp(want) > 0.7


def test_identical_images_give_one_and_order_does_not_matter():
    a, b = structured_pairs((5, 176, 176, 1), seed=1)
    np.testing.assert_allclose(ms_ssim(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(ms_ssim(a, b), ms_ssim(b, a), atol=1e-6)


def test_scale_filters_shrink_only_below_filter_size():
    assert [s[2] for s in scale_filters(176, 176)] == [11] * 5
    assert scale_filters(161, 170)[-1][:3] == (11, 11, 11)
    assert [s[:3] for s in scale_filters(64, 64)] == [
        (64, 64, 11),
        (32, 32, 11),
        (16, 16, 11),
        (8, 8, 8),
        (4, 4, 4),
    ]
    assert scale_filters(64, 64)[4][3] == pytest.approx(1.5 * 4 / 11)


def pggan_msssim(img1, img2, max_val=255.0):
    """progressive_growing_of_gans/metrics/ms_ssim.py (msssim), per image and in float64."""
    weights = np.array(POWER_FACTORS)
    im1, im2 = img1.astype(np.float64), img2.astype(np.float64)
    mssim, mcs = [], []
    for _ in range(len(weights)):
        size = min(11, im1.shape[1], im1.shape[2])
        sigma = size * 1.5 / 11
        radius, offset, stop = size // 2, 0.0, size // 2 + 1
        if size % 2 == 0:
            offset, stop = 0.5, stop - 1
        x, y = np.mgrid[offset - radius : stop, offset - radius : stop]
        g = np.exp(-((x**2 + y**2) / (2.0 * sigma**2)))
        window = (g / g.sum())[None, :, :, None]
        conv = functools.partial(signal.fftconvolve, in2=window, mode="valid")
        mu1, mu2 = conv(im1), conv(im2)
        s11, s22, s12 = conv(im1 * im1) - mu1**2, conv(im2 * im2) - mu2**2, conv(im1 * im2)
        s12 -= mu1 * mu2
        c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
        v1, v2 = 2.0 * s12 + c2, s11 + s22 + c2
        ssim_map = (2.0 * mu1 * mu2 + c1) * v1 / ((mu1**2 + mu2**2 + c1) * v2)
        mssim.append(ssim_map.mean(axis=(1, 2, 3)))
        mcs.append((v1 / v2).mean(axis=(1, 2, 3)))
        im1, im2 = [
            (z[:, 0::2, 0::2] + z[:, 1::2, 0::2] + z[:, 0::2, 1::2] + z[:, 1::2, 1::2]) / 4
            for z in (im1, im2)
        ]
    mssim, mcs = np.clip(mssim, 0, None), np.clip(mcs, 0, None)
    return np.prod(mcs[:-1] ** weights[:-1, None], axis=0) * mssim[-1] ** weights[-1]


@pytest.mark.parametrize("channels", [1, 3])
def test_small_images_match_pggan_shrunk_filter(channels):
    a, b = structured_pairs((10, 64, 64, channels), seed=2)
    got = np.asarray(ms_ssim(a, b))
    # PGGAN's uint8 range [0, 255], per channel (PGGAN pools colour channels per scale).
    to_255 = lambda z: (z + 1) * 127.5
    want = np.mean(
        [pggan_msssim(to_255(a[..., [k]]), to_255(b[..., [k]])) for k in range(channels)], 0
    )
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.all((got >= 0) & (got <= 1)) and got[0] < 0.2 and got[4] > 0.9
    np.testing.assert_allclose(ms_ssim(a, a), 1.0, atol=1e-6)


def test_diversity_of_copies_is_one_and_of_noise_is_near_zero():
    rng = np.random.default_rng(3)
    copies = np.repeat(rng.uniform(-1, 1, (1, 64, 64, 1)), 21, axis=0).astype(np.float32)
    same = diversity(copies, batch_size=10)
    assert same["num_pairs"] == 10  # the odd last image is left out
    assert same["mean"] == pytest.approx(1.0, abs=1e-6) and same["std"] < 1e-6
    noise = diversity(rng.uniform(-1, 1, (40, 64, 64, 1)).astype(np.float32), batch_size=10)
    assert noise["num_pairs"] == 20
    # Not exactly 0: c2 keeps cs > 0 where a coarse scale's local variance is small.
    assert 0.0 < noise["mean"] < 0.1 and noise["std"] < 0.1


def test_streaming_pairs_equal_one_batch_and_compile_once(caplog):
    a, b = structured_pairs((10, 64, 64, 1), seed=4)
    whole = np.asarray(ms_ssim(a, b))
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        # A batch shape no other test uses: 4 + 4 + 2 padded to 4, then 4 + 4.
        streamed = ms_ssim_pairs(a, b, batch_size=4)
        ms_ssim_pairs(a[:8], b[:8], batch_size=4, max_val=1.0)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    assert streamed.shape == (10,)
    compiles = [r for r in caplog.records if "Compiling jit(_ms_ssim)" in r.getMessage()]
    assert len(compiles) == 1


@pytest.mark.parametrize(
    "a_shape, b_shape, dtype, match",
    [
        ((2, 64, 64), (2, 64, 64), np.float32, "rank 4"),
        ((2, 64, 64, 1), (2, 64, 32, 1), np.float32, "differ"),
        ((2, 64, 64, 1), (2, 64, 64, 1), np.uint8, "float images"),
    ],
)
def test_bad_inputs_raise_clear_errors(a_shape, b_shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        ms_ssim(np.zeros(a_shape, dtype), np.zeros(b_shape, dtype))


def test_diversity_needs_two_images():
    with pytest.raises(ValueError, match="at least 2"):
        diversity(np.zeros((1, 64, 64, 1), np.float32))
