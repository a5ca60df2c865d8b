"""End-to-end GAN training on the smoke preset: losses move, resume is exact, 8 devices
match 1, NaN stops the run cleanly, generation is deterministic."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image

from configs.classifier import get_config as get_classifier_config
from configs.dcgan import get_config
from medgan_jax import checkpoint, runs, training
from medgan_jax.classify import mixing
from medgan_jax.data import load_split
from medgan_jax.gan import sample, train
from medgan_jax.writers import read_metrics
from tests.conftest import all_closed
from tests.legacy_runs import as_legacy_run


def smoke(**overrides):
    config = get_config("smoke")
    config.update(overrides)
    return config


def losses_by_step(workdir):
    return {row["step"]: (row["d_loss"], row["g_loss"]) for row in read_metrics(workdir)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    train.train(smoke(), str(workdir))
    return workdir


def test_smoke_run_trains_logs_samples_and_checkpoints(uninterrupted):
    rows = read_metrics(uninterrupted)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert set(rows[0]) >= {
        "d_loss",
        "g_loss",
        "d_real",
        "d_fake",
        "d_grad_norm",
        "g_grad_norm",
        "ada_p",
    }
    assert len({r["d_loss"] for r in rows}) == 3 and len({r["g_loss"] for r in rows}) == 3
    assert all(np.isfinite(r["d_loss"]) and r["g_grad_norm"] > 0 for r in rows)
    assert (uninterrupted / "samples" / "step_000006.png").exists()
    assert list((uninterrupted / "tensorboard").iterdir())
    mngr = checkpoint.manager(uninterrupted, 1, None)
    assert sorted(mngr.all_steps()) == [3, 6]


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(uninterrupted, tmp_path):
    train.train(smoke(num_steps=3), str(tmp_path))  # "killed" after step 3
    train.train(smoke(), str(tmp_path))  # same command again: resumes at 3
    resumed, full = losses_by_step(tmp_path), losses_by_step(uninterrupted)
    for step in (4, 6):
        np.testing.assert_allclose(resumed[step], full[step], rtol=1e-6)


def test_eight_devices_match_one(uninterrupted, tmp_path):
    train.train(smoke(num_devices=1), str(tmp_path))
    one, eight = losses_by_step(tmp_path), losses_by_step(uninterrupted)
    for step in (2, 4, 6):
        np.testing.assert_allclose(one[step], eight[step], rtol=2e-4, atol=1e-5)


def test_the_run_closes_its_batch_iterators(tmp_path, batch_iterators):
    train.train(smoke(num_steps=2), str(tmp_path))
    assert all_closed(batch_iterators)


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    train.train(smoke(num_steps=3), str(tmp_path))
    config = smoke(log_every=1, checkpoint_every=1)
    config.gan.g_lr = float("nan")  # the resumed run's first update poisons G
    with pytest.raises(training.NonFiniteLossError, match="NaN or inf at step 4"):
        train.train(config, str(tmp_path))
    mngr = checkpoint.manager(tmp_path, 1, None)
    assert mngr.latest_step() == 3
    loaded = sample.load_generator(str(tmp_path))
    params, step = loaded.params, loaded.step
    assert step == 3 and all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))


def test_generation_is_deterministic(uninterrupted, tmp_path):
    first = sample.generate_images(str(uninterrupted), 5, str(tmp_path / "a"), seed=3, batch_size=4)
    sample.generate_images(str(uninterrupted), 5, str(tmp_path / "b"), seed=3, batch_size=4)
    other = sample.generate_images(str(uninterrupted), 5, str(tmp_path / "c"), seed=4, batch_size=4)
    assert first["checkpoint_step"] == 6 and len(first["files"]) == 5
    load = lambda d, f: np.asarray(Image.open(tmp_path / d / f))
    for f in first["files"]:
        np.testing.assert_array_equal(load("a", f), load("b", f))
    assert not np.array_equal(load("a", first["files"][0]), load("c", other["files"][0]))
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["files"] == first["files"]
    assert load("a", first["files"][0]).shape == (32, 32, 3)
    # Image i comes from latent i whatever the batch size.
    by_two = np.concatenate(
        list(sample.sample_batches(str(uninterrupted), 5, seed=3, batch_size=2))
    )
    by_eight = np.concatenate(
        list(sample.sample_batches(str(uninterrupted), 5, seed=3, batch_size=8))
    )
    np.testing.assert_allclose(by_two, by_eight, atol=1e-5)


def test_sampling_the_final_state_in_memory_equals_sampling_its_checkpoint(tmp_path):
    final = train.train(smoke(), str(tmp_path / "run"))  # the study samples this state
    run = str(tmp_path / "run")
    in_memory = sample.generate_images(run, 3, str(tmp_path / "a"), seed=1, state=final)
    restored = sample.generate_images(run, 3, str(tmp_path / "b"), seed=1)
    assert in_memory == {**restored, "files": in_memory["files"]}
    load = lambda d, f: np.asarray(Image.open(tmp_path / d / f))
    for f in restored["files"]:
        np.testing.assert_array_equal(load("a", f), load("b", f))


def test_wgan_gp_with_two_critic_steps_and_ada(tmp_path):
    config = smoke(num_steps=4, log_every=4, sample_every=4, checkpoint_every=4)
    config.gan.update(loss="wgan", gp_weight=10.0, drift=0.001, n_critic=2, augment="ada")
    # p rises by batch * n_critic * interval / (adjust_kimg * 1000) = 16*2*4/512 = 0.25
    # at step 4 when r_t > target (always, for target -2).
    config.gan.update(ada_target=-2.0, ada_interval=4, ada_adjust_kimg=0.512)
    train.train(config, str(tmp_path))
    (row,) = read_metrics(tmp_path)
    assert row["ada_p"] == pytest.approx(0.25)
    assert np.isfinite(row["d_loss"]) and np.isfinite(row["g_loss"])


@pytest.mark.parametrize("conditioning", ["projection", "acgan"])
def test_class_conditional_training_and_generation(conditioning, tmp_path):
    config = smoke(num_steps=2, log_every=2, sample_every=2, checkpoint_every=2)
    config.gan.update(classes=(), conditional=conditioning)
    train.train(config, str(tmp_path))
    assert list(runs.load(str(tmp_path)).class_names) == ["benign", "malignant"]
    benign = sample.generate_images(str(tmp_path), 2, str(tmp_path / "b"), "benign", batch_size=2)
    malignant = sample.generate_images(
        str(tmp_path), 2, str(tmp_path / "m"), "malignant", batch_size=2
    )
    first = lambda m, d: np.asarray(Image.open(tmp_path / d / m["files"][0]))
    assert not np.array_equal(first(benign, "b"), first(malignant, "m"))  # same z, other class
    with pytest.raises(ValueError, match="class_name='nevus'; this GAN knows"):
        sample.generate_images(str(tmp_path), 1, str(tmp_path / "x"), "nevus")


def test_a_run_written_before_run_json_still_samples_and_mixes(uninterrupted, tmp_path):
    legacy = as_legacy_run(uninterrupted, tmp_path / "legacy")
    run = runs.load(str(legacy))
    assert (run.kind, run.family, run.conditional) == ("gan", "dcgan", False)
    new = next(sample.sample_batches(str(uninterrupted), 4, seed=1))
    old = next(sample.sample_batches(str(legacy), 4, seed=1))
    np.testing.assert_array_equal(old, new)
    config = get_classifier_config("smoke")
    config.synthetic.update(gan_workdir=str(legacy), class_name="malignant", amount="4")
    real = load_split(config.data, "train")
    mixed = mixing.synthetic_records(config.synthetic, real, str(tmp_path / "clf"))
    assert len(mixed) == 4 and set(mixed.labels) == {real.class_names.index("malignant")}
