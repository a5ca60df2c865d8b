"""The fast layers equal the flax ops and convolutions they replace."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medgan_jax.models import dcgan, layers


def transposed_conv_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """PyTorch ConvTranspose2d(k=4, s=2, p=1) by its definition: scatter-add, then crop."""
    n, h, wd, _ = x.shape
    y = np.zeros((n, 2 * h + 2, 2 * wd + 2, w.shape[-1]))
    for i in range(h):
        for j in range(wd):
            for ky in range(4):
                for kx in range(4):
                    y[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ w[ky, kx]
    return y[:, 1:-1, 1:-1]


@pytest.mark.parametrize("shape, c_out", [((2, 4, 4, 3), 5), ((1, 5, 7, 2), 24)])
def test_subpixel_equals_transposed_convolution(shape, c_out):
    # c_out 5 takes the one-combined-conv path, 24 the four-2x2-convs path.
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(4, 4, shape[-1], c_out)).astype(np.float32)
    out = np.asarray(layers.subpixel_conv_transpose(jnp.asarray(x), jnp.asarray(w)))
    np.testing.assert_allclose(out, transposed_conv_reference(x, w), atol=1e-4)

    # ...and equals XLA's own transposed convolution (PyTorch semantics: flipped kernel).
    def xla_transposed(x, w):
        return jax.lax.conv_transpose(
            x, w[::-1, ::-1], (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    np.testing.assert_allclose(out, np.asarray(xla_transposed(x, w)), atol=1e-4)
    # Gradients (both paths have their own rules: strided conv, phase kernel grads) too.
    weights = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))
    ours = lambda x, w: jnp.sum(jnp.sin(layers.subpixel_conv_transpose(x, w)) * weights)
    theirs = lambda x, w: jnp.sum(jnp.sin(xla_transposed(x, w)) * weights)
    for g, e in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(theirs, (0, 1))(x, w)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape, c_out", [((2, 8, 6, 3), 4), ((2, 7, 5, 3), 20)])
def test_strided_conv_equals_lax_convolution_and_gradients_match(shape, c_out):
    # Its input gradient is a sub-pixel transposed conv: c_out 4 takes the combined-conv path, 20
    # the four-phase path; odd sizes need one more row/column of the transposed conv.
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(4, 4, shape[-1], c_out)).astype(np.float32))

    def reference(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    np.testing.assert_allclose(layers.strided_conv4x4(x, w), reference(x, w), atol=1e-4)
    grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(layers.strided_conv4x4(x, w))), (0, 1))(x, w)
    expected = jax.grad(lambda x, w: jnp.sum(jnp.sin(reference(x, w))), (0, 1))(x, w)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, atol=1e-3)


def test_interleave_phases_puts_phase_a_b_at_pixels_2i_plus_a_2j_plus_b():
    phases = [jnp.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5) + 1000 * k for k in range(4)]
    y = np.asarray(layers.interleave_phases(phases))
    assert y.shape == (2, 6, 8, 5)
    for a in (0, 1):
        for b in (0, 1):
            np.testing.assert_array_equal(y[:, a::2, b::2], phases[2 * a + b])


@pytest.mark.parametrize("resolution, channels", [(32, 1), (64, 3), (128, 3)])
def test_dcgan_shapes(resolution, channels):
    g = dcgan.Generator(resolution=resolution, channels=channels, width=8)
    d = dcgan.Discriminator(resolution=resolution, width=8, num_classes=3, conditioning="acgan")
    z = jnp.zeros((2, 100))
    g_vars = g.init(jax.random.PRNGKey(0), z, None, train=False)
    images = g.apply(g_vars, z, None, train=False)
    assert images.shape == (2, resolution, resolution, channels)
    assert float(jnp.abs(images).max()) <= 1.0
    d_vars = d.init(jax.random.PRNGKey(1), images, jnp.zeros(2, jnp.int32), train=False)
    logits, classes = d.apply(d_vars, images, jnp.zeros(2, jnp.int32), train=False)
    assert logits.shape == (2,) and classes.shape == (2, 3)
    with pytest.raises(ValueError, match="power of two >= 8, got 48"):
        dcgan.Generator(resolution=48).init(jax.random.PRNGKey(0), z, None)


@pytest.mark.parametrize("shape", [(8, 5, 5, 16), (6, 3)])
def test_batch_norm_equals_flax_in_value_gradient_and_statistics(shape):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(2.0, 3.0, shape).astype(np.float32))
    weights = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    features = shape[-1]
    params = {"scale": jnp.linspace(0.5, 2.0, features), "bias": jnp.linspace(-1, 1, features)}
    stats = {"mean": jnp.linspace(-1, 1, features), "var": jnp.linspace(0.5, 3, features)}

    def run(module_cls, train):
        module = module_cls(use_running_average=not train, momentum=0.9, epsilon=1e-5)

        def loss(params, x):
            y, new = module.apply(
                {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
            )
            # The running statistics feed the loss too, so their gradient path is tested.
            extra = sum(jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(new)) if train else 0.0
            return jnp.sum(jnp.sin(y) * weights) + extra, (y, new)

        (value, (y, new)), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x)
        init = module.init(jax.random.PRNGKey(0), x)
        return value, y, new, grads, init

    for train in (True, False):
        ours, flax_ = run(layers.BatchNorm, train), run(nn.BatchNorm, train)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(flax_)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
        # Same parameter and statistic names as flax, so checkpoints stay compatible.
        assert jax.tree.structure(ours[-1]) == jax.tree.structure(flax_[-1])


def test_batch_norm_dtype_is_the_output_dtype_with_float32_statistics():
    x = jnp.asarray(np.random.default_rng(3).normal(1.0, 2.0, (4, 3, 3, 8)), jnp.bfloat16)
    for train in (True, False):
        outputs = []
        for module_cls in (layers.BatchNorm, nn.BatchNorm):
            module = module_cls(use_running_average=not train, dtype=jnp.bfloat16)
            variables = module.init(jax.random.PRNGKey(0), x)
            y, new = module.apply(variables, x, mutable=["batch_stats"])
            assert y.dtype == jnp.bfloat16
            assert all(v.dtype == jnp.float32 for v in jax.tree.leaves((variables, new)))
            outputs.append((y.astype(jnp.float32), new))
        for a, b in zip(*map(jax.tree.leaves, outputs)):
            np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-2)


def _value_and_grads(fn, *args):
    """fn's value and its gradients for a non-trivial cotangent (sin-weighted sum)."""
    return jax.value_and_grad(lambda *a: jnp.sum(jnp.sin(fn(*a))), range(len(args)))(*args)


@pytest.mark.parametrize(
    "shape, kernel, stride, padding",
    [
        ((2, 9, 7, 5), 1, 1, "VALID"),
        ((2, 9, 7, 5), 1, 2, "VALID"),
        ((2, 8, 8, 5), 1, 2, "SAME"),
        ((2, 9, 7, 5), 3, 1, "SAME"),
        ((2, 9, 7, 8), 3, 1, "SAME"),
        ((2, 9, 7, 5), 3, 1, ((1, 1), (1, 1))),
        ((2, 9, 7, 5), 3, 1, ((0, 2), (2, 1))),
        ((2, 9, 7, 5), 3, 1, "VALID"),
        ((2, 9, 8, 4), 5, 1, "SAME"),
        ((2, 9, 7, 1), 3, 1, "SAME"),
        ((2, 10, 11, 3), 7, 2, ((3, 3), (3, 3))),
    ],
)
def test_conv_equals_lax_convolution_in_value_and_gradients(shape, kernel, stride, padding):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(kernel, kernel, shape[-1], 6)).astype(np.float32))
    want = _value_and_grads(lambda x, w: layers._conv(x, w, (stride, stride), padding), x, w)
    got = _value_and_grads(lambda x, w: layers.conv(x, w, stride, padding), x, w)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kernel, padding", [(3, "SAME"), (3, ((0, 2), (2, 1))), (3, "VALID"), (5, "SAME")]
)
def test_swapped_kernel_gradient_equals_xla_kernel_gradient(kernel, padding):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.normal(size=(3, 9, 8, 7)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 7, 4)).astype(np.float32))
    y, pullback = jax.vjp(lambda w: layers._conv(x, w, padding=padding), w)
    dy = jnp.asarray(rng.normal(size=y.shape).astype(np.float32))
    pads = layers._swapped_kernel_grad_pads(x, w, 1, padding)
    assert pads is not None  # `conv` takes this path for these layers
    got = layers._swapped_kernel_grad(x, dy, w.shape[:2], pads)
    np.testing.assert_allclose(got, pullback(dy)[0], rtol=1e-4, atol=1e-4)
    # Strided, or no fewer output than input channels: XLA's own kernel gradient.
    assert layers._swapped_kernel_grad_pads(x, w, 2, padding) is None
    assert layers._swapped_kernel_grad_pads(x[..., :4], w[:, :, :4], 1, padding) is None


@pytest.mark.parametrize("first", [1.5, -0.0, np.inf, -np.inf, np.nan])
def test_materialize_is_the_identity_in_value_and_gradient(first):
    x = np.random.default_rng(9).normal(size=(2, 3, 4)).astype(np.float32)
    x[0, 0, 0] = first
    x = jnp.asarray(x)
    for fn in (layers.materialize, jax.jit(layers.materialize)):
        np.testing.assert_array_equal(np.signbit(fn(x)), np.signbit(x))
        np.testing.assert_array_equal(fn(x), x)
    got = _value_and_grads(layers.materialize, jnp.where(jnp.isfinite(x), x, 0.0))
    want = _value_and_grads(lambda v: v, jnp.where(jnp.isfinite(x), x, 0.0))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)


def test_concat_channels_equals_concatenate_in_value_and_gradient():
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.normal(size=(2, 3, 4, 5)).astype(np.float32))
    y = jnp.asarray(rng.normal(size=(2, 3, 4, 2)).astype(np.float32))
    got = _value_and_grads(layers.concat_channels, x, y)
    want = _value_and_grads(lambda x, y: jnp.concatenate([x, y], axis=-1), x, y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("use_bias", [True, False])
def test_conv_module_equals_flax_conv(use_bias):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 4)).astype(np.float32))
    ours = layers.Conv(6, 3, 2, use_bias=use_bias)
    flax_ = nn.Conv(6, (3, 3), (2, 2), use_bias=use_bias)
    params = flax_.init(jax.random.PRNGKey(0), x)["params"]
    if use_bias:
        params = {**params, "bias": jnp.linspace(-1, 1, 6)}
    # Same parameter names and shapes, so checkpoints and Keras weights map unchanged.
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(0), x)["params"]) == (
        jax.tree.map(jnp.shape, params)
    )
    got = _value_and_grads(lambda p, x: ours.apply({"params": p}, x), params, x)
    want = _value_and_grads(lambda p, x: flax_.apply({"params": p}, x), params, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    bf16 = layers.Conv(6, 3, 2, use_bias=use_bias, dtype=jnp.bfloat16).apply({"params": params}, x)
    assert bf16.dtype == jnp.bfloat16


@pytest.mark.parametrize("shape, c_out", [((2, 4, 5, 3), 6), ((1, 3, 3, 8), 2)])
def test_upsample_conv_as_one_equals_upsample_then_conv_in_value_and_gradient(shape, c_out):
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(3, 3, shape[-1], c_out)).astype(np.float32))

    def reference(x, kernel):
        up = layers.upsample_nearest(x, 2)
        return jax.lax.conv_general_dilated(
            up, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    upsampled = layers.upsample_conv3x3_as_one(x, kernel)
    assert upsampled.shape == (shape[0], 2 * shape[1], 2 * shape[2], c_out)
    np.testing.assert_allclose(upsampled, reference(x, kernel), rtol=1e-5, atol=1e-4)
    got = _value_and_grads(jax.jit(layers.upsample_conv3x3_as_one), x, kernel)
    want = _value_and_grads(reference, x, kernel)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_conv_module_with_upsample_is_nearest_upsampling_then_the_conv():
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 5)).astype(np.float32))
    plain, upsampling = layers.Conv(3, 3), layers.Conv(3, 3, upsample=True)
    params = plain.init(jax.random.PRNGKey(0), x)["params"]
    params = {**params, "bias": jnp.linspace(-1, 1, 3)}
    # the same parameters (names and shapes): a checkpoint of either loads in the other
    assert jax.tree.map(jnp.shape, upsampling.init(jax.random.PRNGKey(0), x)["params"]) == (
        jax.tree.map(jnp.shape, params)
    )
    got = _value_and_grads(lambda p, x: upsampling.apply({"params": p}, x), params, x)
    want = _value_and_grads(
        lambda p, x: plain.apply({"params": p}, layers.upsample_nearest(x, 2)), params, x
    )
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    for wrong in ({"kernel_size": 1}, {"strides": 2}, {"padding": "VALID"}):
        module = layers.Conv(3, **{"kernel_size": 3, **wrong}, upsample=True)
        with pytest.raises(ValueError, match="Conv\\(upsample=True\\) is a 3x3"):
            module.init(jax.random.PRNGKey(0), x)


def test_add_bias_add_per_sample_and_global_avg_pool_equal_the_plain_ops():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(3, 5, 4, 7)).astype(np.float32))
    bias = jnp.asarray(rng.normal(size=(7,)).astype(np.float32))
    per_sample = jnp.asarray(rng.normal(size=(3, 7)).astype(np.float32))
    pairs = [
        (_value_and_grads(layers.add_bias, x, bias), _value_and_grads(jnp.add, x, bias)),
        (
            _value_and_grads(jax.jit(layers.add_per_sample), x, per_sample),
            _value_and_grads(lambda x, e: x + e[:, None, None, :], x, per_sample),
        ),
        (
            _value_and_grads(layers.global_avg_pool, x),
            _value_and_grads(lambda x: jnp.mean(x, axis=(1, 2)), x),
        ),
    ]
    for got, want in pairs:
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (2, 7, 5, 3)])
def test_avg_pool2_equals_flax_avg_pool(shape):
    x = jnp.asarray(np.random.default_rng(7).normal(size=shape).astype(np.float32))
    got = _value_and_grads(layers.avg_pool2, x)
    want = _value_and_grads(lambda x: nn.avg_pool(x, (2, 2), (2, 2)), x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("silu", [False, True], ids=["plain", "silu"])
@pytest.mark.parametrize("shape, groups", [((3, 5, 4, 16), 4), ((2, 7, 6, 8), 8), ((4, 9), 3)])
def test_group_norm_equals_flax_in_value_and_gradient(shape, groups, silu):
    """layers.GroupNorm, and with silu=True (group_norm_silu's own backward pass) against
    nn.silu of flax's GroupNorm."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(1.0, 2.0, shape).astype(np.float32))
    weights = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    features = shape[-1]
    params = {"scale": jnp.linspace(0.5, 2.0, features), "bias": jnp.linspace(-1, 1, features)}

    def run(module, activation=lambda y: y):
        apply = lambda params, x: activation(module.apply({"params": params}, x))
        loss = lambda params, x: jnp.sum(jnp.sin(apply(params, x)) * weights)
        value, grads = jax.jit(jax.value_and_grad(loss, (0, 1)))(params, x)
        return value, apply(params, x), grads, module.init(jax.random.PRNGKey(0), x)

    ours = run(layers.GroupNorm(groups, epsilon=1e-5, silu=silu))
    flax_ = run(nn.GroupNorm(num_groups=groups, epsilon=1e-5), nn.silu if silu else lambda y: y)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(flax_)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    assert jax.tree.structure(ours[-1]) == jax.tree.structure(flax_[-1])  # same names


def test_dense_module_equals_flax_dense():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(3, 5, 4)).astype(np.float32))
    ours, flax_ = layers.Dense(6), nn.Dense(6)
    params = {**flax_.init(jax.random.PRNGKey(0), x)["params"], "bias": jnp.linspace(-1, 1, 6)}
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(0), x)["params"]) == (
        jax.tree.map(jnp.shape, params)
    )
    got = _value_and_grads(lambda p, x: ours.apply({"params": p}, x), params, x)
    want = _value_and_grads(lambda p, x: flax_.apply({"params": p}, x), params, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("std, diagonal", [(2.0, True), (4.0, False)], ids=["diagonal", "row-max"])
@pytest.mark.parametrize("shape", [(2, 16, 4, 8), (3, 9, 1, 5)])
def test_attention_equals_jax_dot_product_attention_in_value_and_gradient(shape, std, diagonal):
    """With either softmax shift (the diagonal logit; the row maxima where the logits may
    exceed it by more than SHIFT_LIMIT) as jax's attention."""
    rng = np.random.default_rng(7)
    q, k, v = (jnp.asarray(rng.normal(0, std, shape).astype(np.float32)) for _ in range(3))
    heads_major = [t.transpose(0, 2, 1, 3) for t in (q / np.sqrt(shape[-1]), k)]
    logits = jnp.einsum("nhqd,nhkd->nhqk", *heads_major)
    shift = layers._softmax_shift(*heads_major, logits, q.dtype)
    assert np.array_equal(shift, logits.max(-1)) != diagonal
    got = _value_and_grads(layers.attention, q, k, v)
    want = _value_and_grads(jax.nn.dot_product_attention, q, k, v)
    tolerance = 2e-5 * (std / 2) ** 4  # float32 rounding of exp grows with the logits' spread
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_softmax_shift_is_the_diagonal_logit_only_where_no_logit_can_exceed_it_much():
    rng = np.random.default_rng(9)
    q, k = (jnp.asarray(rng.normal(size=(2, 3, 16, 8)).astype(np.float32)) for _ in range(2))
    shift = lambda q, k: layers._softmax_shift(q, k, jnp.einsum("nhqd,nhkd->nhqk", q, k), q.dtype)
    np.testing.assert_allclose(shift(q, k), jnp.sum(q * k, -1), rtol=1e-6)
    spread = 10 * layers.SHIFT_LIMIT / float(jnp.linalg.norm(q, axis=-1).max())
    big_q = q * spread  # a Cauchy-Schwarz bound above SHIFT_LIMIT: the row maxima
    np.testing.assert_array_equal(shift(big_q, k), jnp.einsum("nhqd,nhkd->nhqk", big_q, k).max(-1))
    short_k = k[:, :, :5]  # different sequences: no diagonal
    np.testing.assert_array_equal(
        shift(q, short_k), jnp.einsum("nhqd,nhkd->nhqk", q, short_k).max(-1)
    )


@pytest.mark.parametrize("lengths", [(16, 5), (5, 16)])
def test_attention_between_sequences_of_different_lengths_equals_jax(lengths):
    rng = np.random.default_rng(10)
    (tq, tk), normal = lengths, lambda t: rng.normal(0, 2, (2, t, 2, 8)).astype(np.float32)
    q, k, v = jnp.asarray(normal(tq)), jnp.asarray(normal(tk)), jnp.asarray(normal(tk))
    np.testing.assert_allclose(
        layers.attention(q, k, v), jax.nn.dot_product_attention(q, k, v), rtol=2e-5, atol=2e-5
    )


def test_attention_in_bfloat16_keeps_the_dtype_and_stays_close_to_float32():
    rng = np.random.default_rng(8)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 16, 2, 8)).astype(np.float32)) for _ in range(3))
    half = layers.attention(*(t.astype(jnp.bfloat16) for t in (q, k, v)))
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(half.astype(np.float32), layers.attention(q, k, v), atol=0.05)
