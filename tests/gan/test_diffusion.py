"""The diffusion family: EDM's closed forms, the Heun sampler on datasets whose ideal
denoiser is known, and the training run's guarantees (loss falls, exact resume, 8 devices
match 1, NaN stop, deterministic sampling, guidance, memorisation of 4 images)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs.dcgan import get_config as get_dcgan_config
from configs.diffusion import get_config
from medgan_jax import checkpoint, runs, training
from medgan_jax.evaluation import gan_quality
from medgan_jax.gan import diffusion, families, sample, train
from medgan_jax.metrics import memorization
from medgan_jax.writers import read_metrics

SIGMA_DATA = 0.5


def smoke(**overrides):
    config = get_config("smoke")
    config.update(overrides)
    return config


def losses_by_step(workdir):
    return {row["step"]: row["loss"] for row in read_metrics(workdir)}


# ------------------------------------------------------------------ closed forms


def test_noise_levels_are_log_normal():
    sigma = diffusion.noise_levels(jax.random.PRNGKey(0), 200_000, -1.2, 1.2)
    log = np.log(np.asarray(sigma, np.float64))
    assert abs(log.mean() + 1.2) < 0.01 and abs(log.std() - 1.2) < 0.01


@pytest.mark.parametrize("sigma", [0.01, 0.5, 3.0, 40.0])
def test_forward_process_marginal_variance_and_unit_scaled_input_and_target(sigma):
    """Data of std sigma_data noised to sigma has variance sigma_data^2 + sigma^2; c_in
    scales it to 1, and the network's target (y - c_skip x) / c_out has variance 1."""
    y = SIGMA_DATA * jax.random.normal(jax.random.PRNGKey(1), (4000, 4, 4, 1))
    x = diffusion.add_noise(y, jnp.full((4000,), sigma), jax.random.PRNGKey(2))
    c_skip, c_out, c_in = diffusion.preconditioning(jnp.float32(sigma), SIGMA_DATA)
    np.testing.assert_allclose(np.var(x), SIGMA_DATA**2 + sigma**2, rtol=0.02)
    np.testing.assert_allclose(np.var(c_in * x), 1.0, rtol=0.02)
    np.testing.assert_allclose(np.var((y - c_skip * x) / c_out), 1.0, rtol=0.02)
    # lambda(sigma) c_out^2 = 1: every noise level weighs the same on the network's target.
    np.testing.assert_allclose(diffusion.loss_weight(sigma, SIGMA_DATA) * c_out**2, 1.0, rtol=1e-5)


def test_sampling_levels_follow_the_rho_schedule():
    levels = diffusion.Sampler(num_steps=18).sigmas()
    assert levels.shape == (19,) and levels[-1] == 0
    np.testing.assert_allclose([levels[0], levels[17]], [80.0, 0.002], rtol=1e-5)
    assert np.all(np.diff(levels) < 0)
    i = 5  # Karras et al. eq. 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(levels[i], expected, rtol=1e-5)


def test_the_sampler_lands_on_the_point_of_a_one_point_dataset():
    point = jnp.linspace(-0.8, 0.9, 12).reshape(1, 2, 2, 3)
    denoise = lambda x, sigma: jnp.broadcast_to(point, x.shape)
    noise = jax.random.normal(jax.random.PRNGKey(0), (5, 2, 2, 3))
    out = diffusion.heun_sample(denoise, noise, diffusion.Sampler(num_steps=7).sigmas())
    np.testing.assert_allclose(out, np.broadcast_to(point, out.shape), atol=1e-6)


def test_the_sampler_solves_the_probability_flow_of_a_gaussian_dataset():
    """Data N(mu, s^2): D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the ODE's
    exact solution from x = sigma_max z is mu + (sigma_max z - mu) s / sqrt(s^2 + sigma_max^2).
    Heun's method is second order: doubling the steps quarters the error."""
    mu, s = 0.3, 0.4
    denoise = lambda x, sigma: mu + s**2 / (s**2 + sigma**2) * (x - mu)
    z = jax.random.normal(jax.random.PRNGKey(3), (2000, 1, 1, 1))
    exact = mu + (80.0 * np.asarray(z) - mu) * s / np.sqrt(s**2 + 80.0**2)
    sample = lambda n: np.asarray(diffusion.heun_sample(denoise, z, diffusion.Sampler(n).sigmas()))
    error = {n: np.abs(sample(n) - exact).max() for n in (50, 100, 200)}
    assert error[200] < 1e-3
    assert 3.5 < error[50] / error[100] < 4.5 and 3.5 < error[100] / error[200] < 4.5
    assert abs(sample(200).std() - s) < 0.02 and abs(sample(200).mean() - mu) < 0.02


def ideal_denoiser(training_images: jax.Array):
    """The exact denoised mean of a finite dataset: a softmax-weighted average of its
    images (the model every diffusion loss is minimised by on that dataset)."""
    flat = training_images.reshape(len(training_images), -1)

    def denoise(x, sigma):
        d2 = jnp.sum((x.reshape(len(x), 1, -1) - flat[None]) ** 2, axis=-1)
        weights = jax.nn.softmax(-d2 / (2 * sigma**2), axis=-1)
        return (weights @ flat).reshape(x.shape)

    return denoise


def test_the_ideal_denoiser_of_four_images_copies_them_and_the_audit_says_so():
    images = jax.random.uniform(jax.random.PRNGKey(4), (4, 8, 8, 1), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.PRNGKey(5), (32, 8, 8, 1))
    out = diffusion.heun_sample(ideal_denoiser(images), noise, diffusion.Sampler().sigmas())
    audit = memorization.audit_space(
        np.asarray(out).reshape(32, -1), np.asarray(images).reshape(4, -1), rms=True
    )
    assert audit["num_copies"] == 32 and audit["fraction_closer_than_threshold"] == 1.0


# ------------------------------------------------------------------ the U-Net and guidance


def conditional_smoke():
    config = smoke()
    config.gan.update(conditional="embedding", classes=())
    return config


def test_guidance_zero_is_unconditional_and_one_is_conditional():
    config = conditional_smoke()
    denoiser, _ = families.build_models(config, 2)
    params = families.create_state(config, denoiser, None).g_params
    # As if trained: a fresh U-Net's zero output layer would make every class alike.
    unet = params["unet"]
    unet["class_embed"]["embedding"] = jax.random.normal(jax.random.PRNGKey(0), (3, 32))
    kernel = unet["conv_out"]["kernel"]
    unet["conv_out"]["kernel"] = 0.1 * jax.random.normal(jax.random.PRNGKey(1), kernel.shape)
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 16, 16, 3))
    labels, none = jnp.array([0, 1, 0, 1]), jnp.full((4,), 2)
    apply = jax.jit(lambda y: denoiser.apply({"params": params}, x, jnp.full((4,), 0.7), y))
    guided = lambda w: jax.jit(diffusion.guided_denoiser(denoiser, params, labels, w))(x, 0.7)
    cond, uncond = apply(labels), apply(none)
    assert not np.allclose(cond, uncond, atol=1e-4)
    np.testing.assert_allclose(guided(0.0), uncond, atol=1e-6)
    np.testing.assert_allclose(guided(1.0), cond, atol=1e-6)
    np.testing.assert_allclose(guided(2.5), uncond + 2.5 * (cond - uncond), atol=1e-5)


@pytest.mark.parametrize("num_classes, diffusers_count", [(0, 702_499), (2, 702_883)])
def test_the_unet_has_diffusers_unet2dmodel_parameter_count(num_classes, diffusers_count):
    """sum(p.numel()) of diffusers 0.42's UNet2DModel(in/out_channels=3,
    block_out_channels=(32, 64), layers_per_block=1, down_block_types=('DownBlock2D',
    'AttnDownBlock2D'), up_block_types=('AttnUpBlock2D', 'UpBlock2D'), norm_num_groups=8,
    attention_head_dim=8, num_class_embeds=3 when conditional); the benchmark
    (benchmarks/diffusion_throughput.py) checks the same at its own size."""
    config = conditional_smoke() if num_classes else smoke()
    config.diffusion.update(width=32, channel_mult=(1, 2), num_groups=8, attention_resolutions=(8,))
    denoiser, _ = families.build_models(config, num_classes)
    params = jax.eval_shape(lambda: families.create_state(config, denoiser, None).g_params)
    assert sum(p.size for p in jax.tree.leaves(params)) == diffusers_count


# ------------------------------------------------------------------ training runs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("diffusion")
    train.train(smoke(), str(workdir))
    return workdir


def test_smoke_run_trains_logs_samples_and_checkpoints(uninterrupted):
    rows = read_metrics(uninterrupted)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in rows)
    assert (uninterrupted / "samples" / "step_000006.png").exists()
    assert sorted(checkpoint.manager(uninterrupted, 1, None).all_steps()) == [3, 6]
    run = runs.load(str(uninterrupted), kind="gan")
    assert run.family == "diffusion" and not run.conditional


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(uninterrupted, tmp_path):
    train.train(smoke(num_steps=3), str(tmp_path))
    train.train(smoke(), str(tmp_path))
    resumed, full = losses_by_step(tmp_path), losses_by_step(uninterrupted)
    for step in (4, 6):
        np.testing.assert_allclose(resumed[step], full[step], rtol=1e-6)


def test_eight_devices_match_one(uninterrupted, tmp_path):
    train.train(smoke(num_devices=1), str(tmp_path))
    one, eight = losses_by_step(tmp_path), losses_by_step(uninterrupted)
    for step in (2, 4, 6):
        np.testing.assert_allclose(one[step], eight[step], rtol=2e-4, atol=1e-6)


def test_nan_stops_with_the_step(tmp_path):
    train.train(smoke(num_steps=3), str(tmp_path))
    config = smoke(log_every=1, checkpoint_every=1)
    config.gan.g_lr = float("nan")
    with pytest.raises(training.NonFiniteLossError, match="NaN or inf at step 4"):
        train.train(config, str(tmp_path))
    assert checkpoint.manager(tmp_path, 1, None).latest_step() == 3


def test_sampling_is_deterministic_per_seed_and_independent_of_batch_size(uninterrupted):
    draw = lambda seed, batch: np.concatenate(
        list(sample.sample_batches(str(uninterrupted), 5, seed=seed, batch_size=batch))
    )
    by_two, by_eight = draw(3, 2), draw(3, 8)
    assert by_two.shape == (5, 16, 16, 3) and np.abs(by_two).max() <= 1
    # XLA:CPU's convolutions sum in a batch-size-dependent order; 35 network evaluations
    # carry that float32 rounding to about 1e-5, far below a PNG's 1/255.
    np.testing.assert_allclose(by_two, by_eight, atol=1e-4)
    np.testing.assert_array_equal(by_two, draw(3, 2))
    assert not np.allclose(by_two, draw(4, 2))


@pytest.mark.slow
def test_a_model_overfit_on_four_images_is_flagged_as_copying_them(tmp_path):
    """600 steps on 4 malignant lesions: the samples sit far closer to a training image
    than the training images sit to each other; unseen real lesions do not."""
    config = smoke(num_steps=600, log_every=600, sample_every=0, checkpoint_every=600)
    config.update(batch_size=4, num_devices=1)
    config.data.subset.class_counts = "malignant=4"
    config.diffusion.update(width=16, warmup_steps=0, xflip=False, sample_steps=18)
    config.gan.update(g_lr=3e-3, ema_decay=0.99)
    train.train(config, str(tmp_path))
    generated = np.concatenate(list(sample.sample_batches(str(tmp_path), 16, batch_size=16)))
    training_images = gan_quality.real_images(str(tmp_path), "malignant", "train", 100)
    # The denoising loss at fixed noise levels and noise fell well below the start's.
    denoiser, _ = families.build_models(config, 1)
    sigma = jnp.repeat(jnp.array([0.1, 0.3, 1.0, 3.0]), 4)
    clean = jnp.tile(training_images, (4, 1, 1, 1))
    noisy = diffusion.add_noise(clean, sigma, jax.random.PRNGKey(9))
    loss = jax.jit(
        lambda params: diffusion.weighted_loss(
            denoiser.apply({"params": params}, noisy, sigma, jnp.zeros(16, jnp.int32)),
            clean,
            sigma,
            SIGMA_DATA,
        )
    )
    start = families.create_state(config, denoiser, None).ema_params
    assert loss(sample.load_generator(str(tmp_path)).params) < 0.5 * loss(start)
    unseen = gan_quality.real_images(str(tmp_path), "malignant", "test", 16)
    assert len(training_images) == 4
    rows = lambda images: images.reshape(len(images), -1)
    audit = memorization.audit_space(rows(generated), rows(training_images), rms=True)
    control = memorization.audit_space(rows(unseen), rows(training_images), rms=True)
    # A generator of fresh lesions would have about half its images flagged (the median).
    assert audit["fraction_closer_than_threshold"] >= 0.9
    assert np.median(audit["nearest_distance"]) < 0.7 * audit["threshold"]
    assert control["fraction_closer_than_threshold"] <= 0.5


def test_sampler_settings_are_flags_recorded_in_the_manifest(uninterrupted, tmp_path):
    default = sample.generate_images(str(uninterrupted), 2, str(tmp_path / "a"))
    fewer = sample.generate_images(str(uninterrupted), 2, str(tmp_path / "b"), sample_steps=2)
    assert (default["sample_steps"], default["guidance"]) == (3, 1.0)
    assert (fewer["sample_steps"], fewer["guidance"]) == (2, 1.0)
    images = lambda m, d: [np.asarray(Image.open(tmp_path / d / f)) for f in m["files"]]
    assert not np.array_equal(images(default, "a")[0], images(fewer, "b")[0])
    with pytest.raises(ValueError, match="diffusion sampler; this is a dcgan run"):
        sample.with_sampler(get_dcgan_config("smoke"), sample_steps=2)


@pytest.mark.parametrize(
    "preset",
    ["synthetic_lesions", "synthetic_cxr", "skin_cancer", "covid_xray", "chexpert",
     "nih_chestxray14", "siim_isic", "siim_isic_dicom", "rsna_pneumonia", "smoke"],
)  # fmt: skip
def test_every_preset_builds_its_unet(preset):
    config = get_config(preset)
    denoiser, _ = families.build_models(config, 2)
    size, channels = config.data.image_size, config.data.channels
    shapes = jax.eval_shape(
        lambda: denoiser.apply(
            denoiser.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, channels)),
                          jnp.ones(1), jnp.zeros(1, jnp.int32)),
            jnp.zeros((2, size, size, channels)), jnp.ones(2), jnp.zeros(2, jnp.int32),
        )
    )  # fmt: skip
    assert shapes.shape == (2, size, size, channels)
