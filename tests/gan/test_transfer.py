"""Transfer: a GAN started from another run's networks, FreezeD, shape errors, resume."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from configs.dcgan import get_config
from medgan_jax import checkpoint, parallel
from medgan_jax.gan import families, sample, train, transfer
from medgan_jax.gan.steps import calibration_latents, make_generate
from medgan_jax.writers import read_metrics


def smoke(**overrides):
    config = get_config("smoke")
    config.update(overrides)
    return config


def latest(workdir):
    mngr = checkpoint.manager(workdir, 1, None)
    return checkpoint.restore_raw(mngr, mngr.latest_step())


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("source")
    train.train(smoke(), str(workdir))
    return workdir


def transferred(source_run, **init):
    config = smoke(seed=7)  # another seed: only the weights come from the source run
    config.gan.init.update(from_run=str(source_run), **init)
    return config


def test_a_run_initialised_from_another_samples_its_images_before_fine_tuning(source_run):
    config = transferred(source_run)
    generator, discriminator = families.build_models(config, 2)
    fresh = train.initial_state(config, generator, discriminator, parallel.make_mesh())
    state = transfer.initialise_from_run(fresh, str(source_run))
    source = latest(source_run)
    for field in transfer.TRANSFERRED:
        for a, b in zip(jax.tree.leaves(getattr(state, field)), jax.tree.leaves(source[field])):
            np.testing.assert_array_equal(np.asarray(a), b)
    assert int(state.step) == 0 and int(state.first_bad_step) == -1
    calibrate, generate = map(jax.jit, make_generate(generator))
    stats = calibrate(state.ema_params, state.g_stats, *calibration_latents(0, 16, 0))
    z = jax.random.normal(jax.random.PRNGKey(1), (4, config.gan.latent_dim))
    labels = np.zeros(4, np.int32)
    ours = generate(state.ema_params, stats, z, labels)
    # the source run's own sampler (which recalibrates with its own seed 0 the same way)
    loaded = sample.load_generator(str(source_run))
    their_stats = calibrate(loaded.params, loaded.stats, *calibration_latents(0, 16, 0))
    theirs = generate(loaded.params, their_stats, z, labels)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_freeze_d_keeps_the_frozen_layers_bit_for_bit(source_run, tmp_path):
    train.train(transferred(source_run, freeze_d_layers=2), str(tmp_path))
    before, after = latest(source_run)["d_params"], latest(tmp_path)["d_params"]
    generator, discriminator = families.build_models(smoke(), 2)
    variables = {"params": before, "batch_stats": latest(source_run)["d_stats"]}
    example = (np.zeros((1, 32, 32, 3), np.float32), np.zeros(1, np.int32))
    order = transfer.call_order(discriminator, variables, *example, train=False)
    frozen = transfer.frozen_modules(order, 2)
    assert frozen == ["DownConv_0", "DownConv_1", "BatchNorm_0"]
    for name in before:
        same = all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(before[name]), jax.tree.leaves(after[name]))
        )
        assert same == (name in frozen), name


def test_a_shape_mismatch_names_the_parameter(source_run, tmp_path):
    config = transferred(source_run)
    config.gan.d_width = 16
    expected = r"parameter d_params\['BatchNorm_0'\]\['bias'\] has shape \(16,\) there and \(32,\)"
    with pytest.raises(ValueError, match=expected):
        train.train(config, str(tmp_path))
    with pytest.raises(ValueError, match="freeze_d_layers=9"):
        transfer.frozen_modules(["DownConv_0", "DownConv_1", "Dense_0"], 9)


def test_a_killed_fine_tuning_run_resumes_exactly(source_run, tmp_path):
    train.train(transferred(source_run), str(tmp_path / "full"))
    cut = transferred(source_run)
    cut.num_steps = 3
    train.train(cut, str(tmp_path / "cut"))  # killed after step 3
    train.train(transferred(source_run), str(tmp_path / "cut"))  # resumes its own checkpoint
    full = {r["step"]: r["g_loss"] for r in read_metrics(tmp_path / "full")}
    resumed = {r["step"]: r["g_loss"] for r in read_metrics(tmp_path / "cut")}
    for step in (4, 6):
        np.testing.assert_allclose(resumed[step], full[step], rtol=1e-6)
