"""DiffAugment against a NumPy transcription of the official PyTorch indexing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from medgan_jax.augment import diffaugment as da

# Jitted once per module: eager op-by-op dispatch would compile every primitive separately.
_jit_augment = jax.jit(
    da.diff_augment, static_argnames=("policy", "translation_ratio", "cutout_ratio")
)


@jax.jit
def _translation(x, key):
    n, h, w, _ = x.shape
    return da.translation(x, key), da.translation_offsets(key, n, h, w)


@jax.jit
def _cutout(x, key):
    n, h, w, _ = x.shape
    return da.cutout(x, key), da.cutout_offsets(key, n, h, w)


@jax.jit
def _color(x, key):
    return da.color(x, key), da.color_params(key, x.shape[0])


def _images(shape, seed=0, dtype=jnp.float32):
    # NumPy, not jax.random: an eager draw compiles a fresh RNG kernel for every shape.
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), dtype)


@pytest.mark.parametrize("channels, dtype", [(3, jnp.float32), (1, jnp.bfloat16)])
def test_shape_and_dtype_kept(channels, dtype):
    x = _images((16, 16, 16, channels), dtype=dtype)
    y = _jit_augment(x, jax.random.key(1))
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert bool(jnp.all(jnp.isfinite(y.astype(jnp.float32))))


def test_translation_matches_official_indexing():
    n, h, w, c = 32, 16, 12, 3
    x = np.asarray(_images((n, h, w, c)))
    key = jax.random.key(7)
    y, (d_rows, d_cols) = jax.tree.map(np.asarray, _translation(jnp.asarray(x), key))
    # int(16 * 0.125 + 0.5) = 2 and int(12 * 0.125 + 0.5) = 2.
    assert d_rows.min() >= -2 and d_rows.max() <= 2
    assert d_cols.min() >= -2 and d_cols.max() <= 2
    assert len(set(zip(d_rows.tolist(), d_cols.tolist()))) > 5

    expected = np.zeros_like(x)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                src_i, src_j = i + d_rows[b], j + d_cols[b]
                if 0 <= src_i < h and 0 <= src_j < w:
                    expected[b, i, j] = x[b, src_i, src_j]
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("shape", [(64, 16, 16, 1), (64, 14, 10, 3)])
def test_cutout_zeroes_exactly_the_official_square(shape):
    n, h, w, c = shape
    x = np.asarray(_images(shape)) + 3.0  # no pixel is zero before cutout
    key = jax.random.key(3)
    y, (rows, cols) = jax.tree.map(np.asarray, _cutout(jnp.asarray(x), key))
    size_r, size_c = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)

    # Official: mask[b, clamp(grid_x + offset_x - size // 2), clamp(...)] = 0.
    grid_r = np.clip(np.arange(size_r)[None, :] + rows[:, None] - size_r // 2, 0, h - 1)
    grid_c = np.clip(np.arange(size_c)[None, :] + cols[:, None] - size_c // 2, 0, w - 1)
    mask = np.ones((n, h, w), np.float32)
    mask[np.arange(n)[:, None, None], grid_r[:, :, None], grid_c[:, None, :]] = 0
    np.testing.assert_array_equal(y, x * mask[..., None])

    zeroed = np.all(y == 0, axis=-1)
    inside = (
        (rows - size_r // 2 >= 0)
        & (rows - size_r // 2 + size_r <= h)
        & (cols - size_c // 2 >= 0)
        & (cols - size_c // 2 + size_c <= w)
    )
    assert inside.sum() > 5
    assert np.all(zeroed[inside].sum(axis=(1, 2)) == size_r * size_c)
    # Squares that overhang a border are clipped, never shifted inwards.
    assert np.all(zeroed.sum(axis=(1, 2)) <= size_r * size_c)
    assert np.any(zeroed[~inside].sum(axis=(1, 2)) < size_r * size_c)


@pytest.mark.parametrize("channels", [1, 3])
def test_color_matches_closed_form(channels):
    n = 8
    x = _images((n, 8, 8, channels))
    key = jax.random.key(5)
    y, (b, s, c) = jax.tree.map(lambda a: np.asarray(a, np.float64), _color(x, key))
    xs = np.asarray(x, np.float64)

    assert np.all(np.abs(b) <= 0.5) and np.all((s >= 0) & (s <= 2))
    assert np.all((c >= 0.5) & (c <= 1.5))
    # Saturation and contrast keep the per-image mean, so the mean moves by the brightness.
    shift = y.mean(axis=(1, 2, 3)) - xs.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(shift, b.reshape(n), atol=1e-5)

    ref = xs + b
    mean_c = ref.mean(axis=3, keepdims=True)
    if channels == 3:
        ref = (ref - mean_c) * s + mean_c
    mean_chw = ref.mean(axis=(1, 2, 3), keepdims=True)
    ref = (ref - mean_chw) * c + mean_chw
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_gradients_flow_and_cutout_gradient_is_the_mask():
    x = _images((8, 16, 16, 3))
    key = jax.random.key(11)

    @jax.jit
    def grads(a):
        def total(op):
            return jax.grad(lambda b: jnp.sum(op(b, key)))(a)

        return (
            total(da.diff_augment),
            total(da.cutout),
            total(da.translation),
            da.cutout_mask(key, 8, 16, 16),
            da.translation_offsets(key, 8, 16, 16),
        )

    grad, grad_cut, grad_tr, mask, (d_rows, d_cols) = jax.tree.map(np.asarray, grads(x))
    assert np.all(np.isfinite(grad))
    assert np.abs(grad).sum() > 0
    np.testing.assert_array_equal(grad_cut, np.broadcast_to(mask, x.shape))
    # Translation moves each input pixel to at most one output pixel.
    assert set(np.unique(grad_tr).tolist()) <= {0.0, 1.0}
    kept = (16 - np.abs(d_rows)) * (16 - np.abs(d_cols)) * 3
    np.testing.assert_array_equal(grad_tr.sum(axis=(1, 2, 3)), kept)


def test_deterministic_per_key():
    x = _images((16, 16, 16, 3))
    a = _jit_augment(x, jax.random.key(1))
    b = _jit_augment(x, jax.random.key(1))
    c = _jit_augment(x, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.abs(a - c).max()) > 0.1


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_sharded_batch_matches_unsharded(axis_type):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    sharding = NamedSharding(mesh, P("data"))
    x = _images((16, 16, 16, 3))
    key = jax.random.key(9)
    expected = _jit_augment(x, key)
    step = jax.jit(lambda a, k: da.diff_augment(a, k), out_shardings=sharding)
    got = step(jax.device_put(x, sharding), key)
    assert got.sharding.is_equivalent_to(sharding, got.ndim)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


def test_policy_parsing():
    x = _images((2, 8, 8, 1))
    np.testing.assert_array_equal(
        np.asarray(da.diff_augment(x, jax.random.key(0), policy="")), np.asarray(x)
    )
    assert da.parse_policy(" color , cutout ") == ("color", "cutout")
    with pytest.raises(ValueError, match=r"'blur'.*color, translation, cutout"):
        da.diff_augment(x, jax.random.key(0), policy="color,blur")
    with pytest.raises(ValueError, match="cutout_ratio"):
        da.diff_augment(x, jax.random.key(0), cutout_ratio=1.5)
