"""ADA: identities, the resampler against SciPy, closed-form colour checks, the p heuristic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from medgan_jax.augment import ada

# p is traced, so one compilation per (config, shape) serves every probability.
_augment = jax.jit(ada.augment, static_argnames="config")
_affine_sample = jax.jit(ada.affine_sample)


def _images(shape, seed=0):
    # NumPy, not jax.random: an eager draw compiles a fresh RNG kernel for every shape.
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _changed(x, y, tol=1e-4):
    return np.abs(np.asarray(y) - np.asarray(x)).max(axis=(1, 2, 3)) > tol


def _binomial_ok(fraction, p, n):
    return abs(fraction - p) < 4.5 * np.sqrt(p * (1 - p) / n)


def test_p_zero_is_identity_and_p_one_changes_every_image_rgb():
    x = _images((16, 16, 12, 3))
    key = jax.random.key(1)
    same = _augment(x, key, jnp.float32(0.0))
    np.testing.assert_allclose(np.asarray(same), np.asarray(x), atol=1e-6, rtol=0)
    changed = _augment(x, key, jnp.float32(1.0))
    assert changed.shape == x.shape and changed.dtype == x.dtype
    assert np.all(_changed(x, changed, tol=1e-2))

    # The pipeline is exactly its two public halves, drawn from the same key.
    @jax.jit
    def composed(a, p):
        g_inv = ada.geometric_matrix(key, 16, 16, 12, p)
        return ada.apply_color_matrix(ada.affine_sample(a, g_inv), ada.color_matrix(key, 16, 3, p))

    np.testing.assert_allclose(
        np.asarray(composed(x, jnp.float32(0.7))),
        np.asarray(_augment(x, key, jnp.float32(0.7))),
        atol=1e-6,
    )


def test_grey_identity_change_and_gradients():
    x = _images((16, 8, 8, 1))
    weights = _images((16, 8, 8, 1), seed=1)
    key = jax.random.key(4)

    @jax.jit
    def forward_and_grad(a, p):
        out, vjp = jax.vjp(lambda b: ada.augment(b, key, p), a)
        return out, vjp(weights)[0]  # the gradient of sum(augment(a) * weights)

    same, g0 = forward_and_grad(x, jnp.float32(0.0))
    np.testing.assert_allclose(np.asarray(same), x, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(g0), weights, atol=1e-6)
    changed, _ = forward_and_grad(x, jnp.float32(1.0))
    assert np.all(_changed(x, changed, tol=1e-2))
    _, g = forward_and_grad(x, jnp.float32(0.8))
    g = np.asarray(g)
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    assert not np.allclose(g, np.asarray(weights), atol=1e-3)


def test_xflip_only_at_p_one_flips_on_a_fair_coin():
    # StyleGAN2-ADA applies x-flip with probability p as i ~ U{0, 1}: half the draws keep x.
    config = ada.AdaConfig.preset("none", xflip=1.0)
    x = np.asarray(_images((128, 8, 6, 3)))
    y = np.asarray(_augment(jnp.asarray(x), jax.random.key(2), 1.0, config))
    flipped = np.all(np.abs(y - x[:, :, ::-1]) < 1e-6, axis=(1, 2, 3))
    kept = np.all(np.abs(y - x) < 1e-6, axis=(1, 2, 3))
    assert np.all(flipped | kept)
    assert _binomial_ok(flipped.mean(), 0.5, len(x))
    np.testing.assert_array_equal(y[flipped], x[flipped][:, :, ::-1])


def test_affine_sampler_identity_integer_shift_and_scipy_reference():
    n, h, w, c = 3, 12, 10, 2
    x = np.asarray(_images((n, h, w, c)))
    np.testing.assert_array_equal(
        np.asarray(_affine_sample(jnp.asarray(x), jnp.tile(jnp.eye(3), (n, 1, 1)))), x
    )

    # Content moved by (tx, ty) pixels: out[i, j] = in[i - ty, j - tx], mirrored at borders.
    shifts = np.array([[3, -2], [0, 0], [-1, 4]])
    g_inv = ada.translate2d(-jnp.asarray(shifts[:, 0]), -jnp.asarray(shifts[:, 1]))
    y = np.asarray(_affine_sample(jnp.asarray(x), g_inv))
    pad = 5
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    for b, (tx, ty) in enumerate(shifts):
        window = padded[b, pad - ty : pad - ty + h, pad - tx : pad - tx + w]
        np.testing.assert_array_equal(y[b], window)
        rolled = np.roll(x[b], (ty, tx), axis=(0, 1))
        rows = slice(max(ty, 0), h + min(ty, 0))
        cols = slice(max(tx, 0), w + min(tx, 0))
        np.testing.assert_array_equal(y[b][rows, cols], rolled[rows, cols])

    # A general affine map against SciPy's bilinear sampler with the same mirroring.
    compose = jax.jit(
        lambda theta, sx, sy, tx, ty: (
            ada.rotate2d(theta) @ ada.scale2d(sx, sy) @ ada.translate2d(tx, ty)
        )
    )
    g_inv = np.asarray(
        compose(
            np.array([0.7, -2.0, 3.0]),
            np.array([1.3, 0.6, 1.0]),
            np.array([0.8, 0.6, 2.5]),
            np.array([1.5, -7.25, 0.0]),
            np.array([-2.25, 0.5, 11.0]),
        )
    )
    y = np.asarray(_affine_sample(jnp.asarray(x), jnp.asarray(g_inv)))
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ys, xs = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    for b in range(n):
        src_x = g_inv[b, 0, 0] * xs + g_inv[b, 0, 1] * ys + g_inv[b, 0, 2] + cx
        src_y = g_inv[b, 1, 0] * xs + g_inv[b, 1, 1] * ys + g_inv[b, 1, 2] + cy
        for ch in range(c):
            ref = scipy.ndimage.map_coordinates(
                x[b, :, :, ch].astype(np.float64), [src_y, src_x], order=1, mode="mirror"
            )
            np.testing.assert_allclose(y[b, :, :, ch], ref, atol=2e-5)


def test_integer_translation_in_the_pipeline_is_a_whole_pixel_shift():
    config = ada.AdaConfig.preset("none", xint=1.0)
    n, h, w = 16, 16, 16
    x = np.asarray(_images((n, h, w, 1)))
    y = np.asarray(_augment(jnp.asarray(x), jax.random.key(3), 1.0, config))
    max_shift = round(0.125 * w)
    inner = slice(max_shift, h - max_shift)
    moved = 0
    for b in range(n):
        matches = [
            (tx, ty)
            for tx in range(-max_shift, max_shift + 1)
            for ty in range(-max_shift, max_shift + 1)
            if np.array_equal(
                y[b, inner, inner], np.roll(x[b], (ty, tx), axis=(0, 1))[inner, inner]
            )
        ]
        assert len(matches) == 1, f"image {b} is not a whole-pixel shift within ±{max_shift}"
        moved += matches[0] != (0, 0)
    assert moved > n // 2


@pytest.mark.parametrize(
    "transform, shape", [("brightness", (4000, 2, 2, 1)), ("rotate", (2000, 8, 8, 1))]
)
def test_fraction_of_images_changed_is_p(transform, shape):
    # Rotation fires as two independent rotations with 1 - sqrt(1 - p) each: P(either) = p.
    config = ada.AdaConfig.preset("none", **{transform: 1.0})
    x = _images(shape)
    p = 0.3
    fraction = _changed(x, _augment(x, jax.random.key(5), jnp.float32(p), config)).mean()
    assert _binomial_ok(fraction, p, shape[0]), fraction


def test_rgb_colour_transforms_have_their_closed_forms():
    x = np.asarray(_images((64, 6, 6, 3)), np.float64)
    key = jax.random.key(6)
    grey = x.mean(axis=-1, keepdims=True)

    # Luma flip is a Householder reflection about the grey axis: rgb - 2 * mean(rgb).
    y = np.asarray(
        _augment(jnp.asarray(x, jnp.float32), key, 1.0, ada.AdaConfig.preset("none", lumaflip=1.0))
    )
    flipped = np.all(np.abs(y - (x - 2 * grey)) < 1e-5, axis=(1, 2, 3))
    kept = np.all(np.abs(y - x) < 1e-6, axis=(1, 2, 3))
    assert np.all(flipped | kept) and _binomial_ok(flipped.mean(), 0.5, len(x))

    # Hue rotation and saturation keep every pixel's grey level and change the chroma.
    config = ada.AdaConfig.preset("none", hue=1.0, saturation=1.0)
    y = np.asarray(_augment(jnp.asarray(x, jnp.float32), key, 1.0, config))
    np.testing.assert_allclose(y.mean(axis=-1, keepdims=True), grey, atol=1e-5)
    assert np.all(_changed(x, y, tol=1e-3))


@pytest.mark.parametrize("lumaflip_gray", [False, True])
def test_grey_images_get_brightness_and_contrast_only(lumaflip_gray):
    config = ada.AdaConfig.preset("color", lumaflip_gray=lumaflip_gray)
    x = np.asarray(_images((64, 6, 6, 1)), np.float64)
    y = np.asarray(_augment(jnp.asarray(x, jnp.float32), jax.random.key(7), 1.0, config))
    # Each output must be gain * x + offset for one (gain, offset) per image.
    flat_x, flat_y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    gains, offsets = [], []
    for xb, yb in zip(flat_x, flat_y):
        gain, offset = np.polyfit(xb, yb, 1)
        np.testing.assert_allclose(gain * xb + offset, yb, atol=1e-4)
        gains.append(gain)
        offsets.append(offset)
    gains = np.asarray(gains)
    assert np.all(np.abs(np.abs(gains) - 1) > 1e-4)  # contrast always fires at p = 1
    if lumaflip_gray:
        assert _binomial_ok((gains < 0).mean(), 0.5, len(x))  # StyleGAN2-ADA's grey inversion
    else:
        assert np.all(gains > 0)


def test_sharded_batch_matches_unsharded():
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    x = _images((16, 16, 12, 3))
    key = jax.random.key(8)
    expected = _augment(x, key, jnp.float32(0.7))  # reuses the compilation of the rgb test
    step = jax.jit(lambda a, k, p: ada.augment(a, k, p), out_shardings=sharding)
    got = step(jax.device_put(x, sharding), key, jnp.float32(0.7))
    assert got.sharding.is_equivalent_to(sharding, got.ndim)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


def test_update_p_moves_by_exactly_one_step_and_clips():
    update = jax.jit(ada.update_p, static_argnums=(2, 3, 4, 5))
    step = np.float32(32 * 4 / (500 * 1000))
    up = update(jnp.float32(0.5), jnp.float32(0.9), 32, 0.6, 500.0, 4)
    down = update(jnp.float32(0.5), jnp.float32(0.1), 32, 0.6, 500.0, 4)
    assert float(up) == np.float32(0.5) + step
    assert float(down) == np.float32(0.5) - step
    assert float(update(jnp.float32(0.5), jnp.float32(0.6), 32, 0.6, 500.0, 4)) == 0.5
    assert float(update(jnp.float32(1e-4), jnp.float32(-1.0), 32, 0.6, 500.0, 4)) == 0.0
    assert float(update(jnp.float32(0.9999), jnp.float32(1.0), 32, 0.6, 500.0, 4)) == 1.0
    # Plain Python numbers work too, with the defaults of the paper.
    assert float(ada.update_p(0.2, 0.7, 64)) == pytest.approx(0.2 + 64 * 4 / 500_000, abs=1e-7)
    with pytest.raises(ValueError, match="adjust_kimg"):
        ada.update_p(0.2, 0.7, 64, adjust_kimg=0.0)


def test_maybe_update_changes_p_only_every_interval_steps():
    batch, interval = 64, 4
    step_size = np.float32(batch * interval / (500 * 1000))

    @jax.jit
    def train_step(state, step, logits):
        state = ada.accumulate(state, logits)
        return ada.maybe_update(state, step, batch, interval=interval)

    state = ada.AdaState.create(0.5)
    positive = jnp.ones((batch,))  # r_t = 1 > 0.6: D overfits, augment more
    history = []
    for step in range(1, 13):
        state = train_step(state, step, positive)
        history.append((float(state.p), int(state.count)))
    expected_p = np.float32(0.5)
    for step, (p, count) in enumerate(history, start=1):
        if step % interval == 0:
            expected_p = expected_p + step_size
            assert count == 0, f"accumulator not reset at step {step}"
        else:
            assert count == batch * (step % interval)
        assert p == expected_p, f"step {step}: p={p}, expected {expected_p}"

    # 70% positive logits over the interval: r_t = 0.4 < 0.6, so p goes down.
    mixed = jnp.where(jnp.arange(batch) < 0.7 * batch, 1.0, -1.0)
    p_before = float(state.p)
    for step in range(13, 17):
        state = train_step(state, step, mixed)
    assert float(state.p) == np.float32(p_before) - step_size
    # A due step with nothing accumulated leaves p alone.
    idle = jax.jit(ada.maybe_update, static_argnums=(2,))(state, jnp.int32(20), batch)
    assert float(idle.p) == float(state.p)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match=r"'bgcfnc'.*bgc"):
        ada.AdaConfig.preset("bgcfnc")
    with pytest.raises(ValueError, match="scale_std"):
        ada.AdaConfig(scale_std=-0.1)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ada.augment(jnp.zeros((2, 8, 8, 2)), jax.random.key(0), 0.5)
    assert ada.AdaConfig() == ada.AdaConfig.preset("bgc")
    assert not ada.AdaConfig.preset("color").geometric_enabled
