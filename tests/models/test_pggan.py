"""PGGAN layers and networks: equalised lr, pixel norm, minibatch stddev, fade-in, sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medgan_jax.models import layers, pggan

DIMS = ("NHWC", "HWIO", "NHWC")


def count(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@pytest.mark.parametrize("gain", [2.0, 1.0, 0.5])
def test_equalized_layers_scale_weights_by_sqrt_gain_over_fan_in(gain):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 6))
    conv = layers.EqualizedConv(4, 3, gain=gain)
    params = conv.init(jax.random.PRNGKey(1), x)["params"]
    params = {**params, "bias": jnp.arange(4.0)}
    scale = np.sqrt(gain / (3 * 3 * 6))
    assert layers.equalized_scale(54, gain) == pytest.approx(scale)
    expected = jax.lax.conv_general_dilated(
        x, params["kernel"] * scale, (1, 1), "SAME", dimension_numbers=DIMS
    )
    np.testing.assert_allclose(conv.apply({"params": params}, x), expected + jnp.arange(4.0), 1e-5)
    dense = layers.EqualizedDense(3, gain=gain)
    h = x.reshape(2, -1)
    dparams = dense.init(jax.random.PRNGKey(2), h)["params"]
    np.testing.assert_allclose(
        dense.apply({"params": dparams}, h),
        h @ dparams["kernel"] * np.sqrt(gain / h.shape[-1]),
        rtol=1e-5,
        atol=1e-5,
    )
    # The stored weights are N(0, 1): the scale lives in the forward pass, not the init.
    big = layers.EqualizedConv(64, 3).init(jax.random.PRNGKey(3), jnp.zeros((1, 4, 4, 64)))
    assert np.std(big["params"]["kernel"]) == pytest.approx(1.0, abs=0.02)


def test_pixel_norm_gives_unit_rms_features():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 8)) * 5.0
    rms = jnp.sqrt(jnp.mean(layers.pixel_norm(x) ** 2, axis=-1))
    np.testing.assert_allclose(rms, 1.0, rtol=1e-5)


def test_minibatch_stddev_adds_the_group_std_channel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 3, 4)).astype(np.float32)
    out = np.asarray(layers.minibatch_stddev(jnp.asarray(x), group_size=4))
    assert out.shape == (8, 2, 3, 5)
    np.testing.assert_array_equal(out[..., :4], x)
    for members, group in ((out[:4], x[:4]), (out[4:], x[4:])):  # consecutive examples
        value = np.sqrt(group.var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(members[..., 4], value, rtol=1e-5)
    # A known batch: two examples differing by 2 everywhere have std 1 in every feature.
    pair = jnp.stack([jnp.zeros((1, 1, 3)), 2.0 * jnp.ones((1, 1, 3))])
    np.testing.assert_allclose(layers.minibatch_stddev(pair, 2)[..., 3], 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="multiple of group size 4"):
        layers.minibatch_stddev(jnp.zeros((6, 2, 2, 1)), 4)


def test_fused_upsample_conv_equals_upsample_then_conv_with_gradients():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 4, 5, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 6)), jnp.float32)

    def reference(x, w):
        up = layers.upsample_nearest(x, 2)
        return jax.lax.conv_general_dilated(up, w, (1, 1), "SAME", dimension_numbers=DIMS)

    np.testing.assert_allclose(layers.upsample_conv3x3(x, w), reference(x, w), atol=1e-4)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
    got = jax.grad(loss(layers.upsample_conv3x3), (0, 1))(x, w)
    want = jax.grad(loss(reference), (0, 1))(x, w)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, atol=1e-3)


def nf(stage: int, fmap_base: int = 8192, fmap_max: int = 512) -> int:
    return min(fmap_base // 2**stage, fmap_max)


def published_generator_params(resolution: int, latent: int = 512, channels: int = 3) -> int:
    """Karras et al. 2018, Table 2 / networks.py G_paper, with a toRGB at every level."""
    top = int(np.log2(resolution))
    conv = lambda k, c_in, c_out: k * k * c_in * c_out + c_out
    total = latent * 16 * nf(1) + nf(1)  # latent -> 4x4 (dense, one bias per channel)
    total += conv(3, nf(1), nf(1))
    for res in range(3, top + 1):
        total += conv(3, nf(res - 2), nf(res - 1)) + conv(3, nf(res - 1), nf(res - 1))
    return total + sum(conv(1, nf(res - 1), channels) for res in range(2, top + 1))


def published_discriminator_params(resolution: int, channels: int = 3, labels: int = 0) -> int:
    """networks.py D_paper: fromRGB at every level, two convs per block, the 4x4 head."""
    top = int(np.log2(resolution))
    conv = lambda k, c_in, c_out: k * k * c_in * c_out + c_out
    total = sum(conv(1, channels, nf(res - 1)) for res in range(2, top + 1))
    for res in range(3, top + 1):
        total += conv(3, nf(res - 1), nf(res - 1)) + conv(3, nf(res - 1), nf(res - 2))
    total += conv(3, nf(1) + 1, nf(1))  # after minibatch stddev (+1 channel)
    total += 16 * nf(1) * nf(0) + nf(0) + nf(0) * (1 + labels) + 1 + labels
    return total


def test_parameter_counts_at_256_match_the_published_architecture():
    g = pggan.Generator(resolution=256)
    d = pggan.Discriminator(resolution=256)
    g_vars = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, 512))))
    d_vars = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((4, 256, 256, 3))))
    assert count(g_vars) == published_generator_params(256) == 23_044_309
    assert count(d_vars) == published_discriminator_params(256)
    # At 1024 the paper's table gives 23.1M for G (its final toRGB only).
    last_rgbs = sum(nf(r - 1) * 3 + 3 for r in range(2, 10))
    assert published_generator_params(1024) - last_rgbs == pytest.approx(23.1e6, rel=2e-3)
    acgan = pggan.Discriminator(resolution=256, num_classes=5, conditioning="acgan")
    a_vars = jax.eval_shape(lambda: acgan.init(jax.random.PRNGKey(0), jnp.zeros((4, 256, 256, 3))))
    assert count(a_vars) == published_discriminator_params(256, labels=5)
    assert [pggan.num_features(s) for s in range(1, 9)] == [512, 512, 512, 512, 256, 128, 64, 32]


def small(cls, **kw):
    return cls(resolution=16, fmap_base=64, fmap_max=16, **kw)


def test_fade_in_at_alpha_zero_is_the_upsampled_previous_resolution():
    g = small(pggan.Generator, channels=1)
    z = jax.random.normal(jax.random.PRNGKey(0), (4, 32))
    params = jax.jit(g.init)(jax.random.PRNGKey(1), z)

    @jax.jit  # one program for every variant: far quicker than op-by-op here
    def generate(params, z):
        at = lambda res, fading, alpha: g.clone(stage_resolution=res, fading=fading).apply(
            params, z, alpha=alpha
        )
        return (
            at(8, False, 1.0),
            at(16, True, 0.0),
            at(16, True, 0.25),
            at(16, True, 1.0),
            at(16, False, 1.0),
        )

    previous, alpha0, alpha_quarter, alpha1, stable = generate(params, z)
    assert previous.shape == (4, 8, 8, 1) and stable.shape == (4, 16, 16, 1)
    np.testing.assert_allclose(alpha0, layers.upsample_nearest(previous), atol=1e-6)
    np.testing.assert_allclose(alpha1, stable, atol=1e-6)
    expected = 0.75 * layers.upsample_nearest(previous) + 0.25 * stable
    np.testing.assert_allclose(alpha_quarter, expected, atol=1e-5)

    # The discriminator fades the same way: at alpha 0 it sees the 2x-downscaled image.
    d = small(pggan.Discriminator)
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 16, 16, 1))
    d_params = jax.jit(d.init)(jax.random.PRNGKey(3), x)

    @jax.jit
    def scores(params, x):
        at = lambda res, fading, images, alpha: d.clone(stage_resolution=res, fading=fading).apply(
            params, images, alpha=alpha
        )[0]
        low = layers.downsample_average(x)
        return (
            at(16, True, x, 0.0),
            at(8, False, low, 1.0),
            at(16, True, x, 1.0),
            at(16, False, x, 1.0),
        )

    faded, previous_d, full, stable_d = scores(d_params, x)
    np.testing.assert_allclose(faded, previous_d, rtol=1e-5)
    np.testing.assert_allclose(full, stable_d, rtol=1e-5)


def test_conditional_output_changes_with_the_label():
    g = small(pggan.Generator, num_classes=3)
    z = jnp.tile(jax.random.normal(jax.random.PRNGKey(0), (1, 32)), (3, 1))
    params = jax.jit(g.init)(jax.random.PRNGKey(1), z, jnp.zeros((3,), jnp.int32))
    # A class id is its one-hot vector; multi-hot vectors ask for label combinations.
    vectors = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    by_id, by_vector = jax.jit(lambda p: (g.apply(p, z, jnp.arange(3)), g.apply(p, z, vectors)))(
        params
    )
    assert by_id.shape == (3, 16, 16, 3)
    differ = lambda a, b: float(jnp.abs(a - b).mean()) > 1e-3
    assert differ(by_id[0], by_id[1]) and differ(by_id[1], by_id[2])
    np.testing.assert_allclose(by_vector[:2], by_id[:2], atol=1e-5)
    assert differ(by_vector[2], by_id[0]) and differ(by_vector[2], by_id[1])

    images = jnp.full((4, 16, 16, 3), 0.5)
    acgan = small(pggan.Discriminator, num_classes=3, conditioning="acgan")
    proj = small(pggan.Discriminator, num_classes=3, conditioning="projection")
    ids = jnp.zeros((4,), jnp.int32)

    @jax.jit
    def discriminate(key):
        a_params, p_params = acgan.init(key, images), proj.init(key, images, ids)
        return acgan.apply(a_params, images), [
            proj.apply(p_params, images, ids + k)[0] for k in (0, 1)
        ]

    (scores, logits), (s0, s1) = discriminate(jax.random.PRNGKey(2))
    assert scores.shape == (4,) and logits.shape == (4, 3)
    assert not np.allclose(s0, s1)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="power of two in 4..1024, got 48"):
        pggan.Generator(resolution=48).init(jax.random.PRNGKey(0), jnp.zeros((1, 8)))
    d = small(pggan.Discriminator)
    params = d.init(jax.random.PRNGKey(0), jnp.zeros((4, 16, 16, 3)))
    with pytest.raises(ValueError, match="stage 8x8 got images of 16x16"):
        d.clone(stage_resolution=8).apply(params, jnp.zeros((4, 16, 16, 3)))
    with pytest.raises(ValueError, match="stage_resolution 32 must be a power of two in 4..16"):
        d.clone(stage_resolution=32).apply(params, jnp.zeros((4, 32, 32, 3)))
