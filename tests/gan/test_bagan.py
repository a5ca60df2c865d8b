"""BAGAN-GP: the autoencoder stage, the hand-over to G and D, class Gaussians, conditional
samples, resume, and a classifier started from the discriminator."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import classifier as classifier_config
from configs.bagan import get_config
from medgan_jax import checkpoint, parallel, training
from medgan_jax.classify import train as classify_train
from medgan_jax.data import load_split, pipeline
from medgan_jax.gan import autoencoder, families, train
from medgan_jax.models import bagan
from medgan_jax.writers import read_metrics
from tests.conftest import all_closed


def smoke(**overrides):
    config = get_config("smoke")
    config.update(overrides)
    return config


def records_of(config):
    return families.training_labels(load_split(config.data, "train"), config)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bagan")
    train.train(smoke(), str(workdir))
    return workdir


def test_imbalance_and_published_settings():
    config = get_config("synthetic_lesions")
    records = records_of(config)
    counts = records.class_counts()
    assert counts["malignant"] == round(counts["benign"] / 20)  # 5% of the majority
    g = config.gan
    assert (g.gp_weight, g.n_critic, g.g_lr, tuple(g.g_betas)) == (10.0, 5, 2e-4, (0.5, 0.9))
    assert g.fake_labels == "uniform" and g.wrong_label_weight == 1.0
    assert bagan.encoder_widths(64, 64) == [64, 128, 128, 256]


def test_autoencoder_stage_reduces_reconstruction_loss(tmp_path, batch_iterators):
    config = smoke(log_every=1)
    config.bagan.update(autoencoder_steps=40, autoencoder_lr=2e-3)
    mesh = parallel.make_mesh()
    autoencoder.train_autoencoder(config, str(tmp_path), records_of(config), mesh)
    assert all_closed(batch_iterators)
    mae = [row["reconstruction_mae"] for row in read_metrics(tmp_path / "autoencoder")]
    assert len(mae) == 40 and np.mean(mae[-5:]) < 0.8 * np.mean(mae[:5])
    assert (tmp_path / "samples" / "autoencoder.png").exists()


def _autoencoder(workdir):
    config = smoke()
    return autoencoder.train_autoencoder(
        config, str(workdir), records_of(config), parallel.make_mesh()
    )


def test_generator_and_discriminator_start_as_decoder_and_encoder(full_run):
    config = smoke()
    records = records_of(config)
    ae = _autoencoder(full_run)  # finished: restored, not retrained
    generator, discriminator = families.build_models(config, records.num_classes)
    fresh = train.initial_state(config, generator, discriminator, parallel.make_mesh())
    state = autoencoder.initialise_gan(fresh, ae)
    equal = lambda a, b: jax.tree.all(jax.tree.map(np.array_equal, a, b))
    assert equal(state.g_params["decoder"], ae.params["decoder"])
    assert equal(state.g_params["embedding"], ae.params["embedding"])
    assert equal(state.g_stats["decoder"], ae.stats["decoder"])
    assert equal(state.ema_params, state.g_params)
    assert equal(state.d_params["trunk"], ae.params["encoder"]["trunk"])
    assert not equal(fresh.d_params["trunk"], state.d_params["trunk"])
    untouched = autoencoder.initialise_gan(fresh, ae, init_discriminator=False)
    assert equal(untouched.d_params, fresh.d_params)


def test_class_gaussians_are_fitted_from_the_encodings(full_run):
    config = smoke()
    records = records_of(config)
    ae = _autoencoder(full_run)
    latents, labels = autoencoder.labelled_latents(config, ae, records, parallel.make_mesh())
    np.testing.assert_array_equal(labels, records.labels)
    model = autoencoder.build_autoencoder(config, records.num_classes)
    images = jnp.asarray(pipeline.decode_all(records.take(np.arange(3)), config.data))
    direct = model.apply(
        {"params": ae.params, "batch_stats": ae.stats}, images, labels[:3], train=False
    )[1]
    np.testing.assert_allclose(latents[:3], direct, atol=1e-4)
    means, trils = autoencoder.fit_class_gaussians(latents, labels, records.num_classes, 0.0)
    for c in range(records.num_classes):
        members = latents[labels == c].astype(np.float64)
        np.testing.assert_allclose(means[c], members.mean(0), atol=1e-5)
        cov = trils[c].astype(np.float64) @ trils[c].T.astype(np.float64)
        np.testing.assert_allclose(cov, np.cov(members, rowvar=False), atol=1e-4)
    with pytest.raises(ValueError, match="at least 2 training images of class 1"):
        autoencoder.fit_class_gaussians(latents[:3], np.array([0, 0, 1]), 2)


def test_class_gaussian_generator_samples_from_the_fitted_gaussian():
    generator = bagan.Generator(
        resolution=8, width=4, latent_dim=3, num_classes=2, latent_sampling="class_gaussian"
    )
    z, labels = jnp.ones((2, 3)), jnp.array([0, 1])
    params = generator.init(jax.random.PRNGKey(0), z, labels)["params"]
    params["class_mean"] = jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]])
    params["class_scale_tril"] = jnp.stack([jnp.eye(3) * 2, jnp.eye(3)])
    captured = []
    decoder_apply = bagan.Decoder.__call__

    def spy(self, latent, train=True):
        captured.append(latent)
        return decoder_apply(self, latent, train)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bagan.Decoder, "__call__", spy)
        generator.apply(
            {"params": params, "batch_stats": {}}, z, labels, train=False, mutable=["batch_stats"]
        )
    np.testing.assert_allclose(captured[0], [[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]])
    grads = jax.grad(
        lambda p: generator.apply({"params": p}, z, labels, train=True, mutable=["batch_stats"])[
            0
        ].sum()
    )(params)
    assert not np.any(grads["class_mean"]) and not np.any(grads["class_scale_tril"])


def test_conditional_samples_differ_by_class(full_run):
    from medgan_jax.gan import sample

    benign = next(sample.sample_batches(str(full_run), 4, "benign", batch_size=4))
    malignant = next(sample.sample_batches(str(full_run), 4, "malignant", batch_size=4))
    assert benign.shape == malignant.shape == (4, 32, 32, 3)
    assert np.abs(benign - malignant).mean() > 1e-3


def test_smoke_run_resumes_without_retraining_the_autoencoder(full_run, tmp_path):
    train.train(smoke(num_steps=2), str(tmp_path))
    ae_rows = read_metrics(tmp_path / "autoencoder")
    train.train(smoke(), str(tmp_path))  # resumes at GAN step 2
    assert read_metrics(tmp_path / "autoencoder") == ae_rows
    losses = lambda w: {r["step"]: (r["d_loss"], r["g_loss"]) for r in read_metrics(w)}
    resumed, full = losses(tmp_path), losses(full_run)
    np.testing.assert_allclose(resumed[4], full[4], rtol=1e-5)
    assert sorted(checkpoint.manager(tmp_path, 1, None).all_steps())[-1] == 4


def test_a_classifier_starts_from_the_discriminator_trunk(full_run, tmp_path):
    config = classifier_config.get_config("smoke")
    config.data.image_size = 32
    config.model.name, config.model.options = "gan_encoder", dict(width=8)
    config.init.gan_discriminator = str(full_run)
    config.update(num_epochs=1, steps_per_epoch=2)
    from medgan_jax.classify.predict import discriminator_trunk

    trunk = discriminator_trunk(str(full_run))["params"]["trunk"]
    classify_train.train_and_evaluate(config, str(tmp_path))
    # The run starts from the trunk: one fine-tuning step moves it only a little.
    from medgan_jax.classify.predict import load_variables

    tuned = load_variables(str(tmp_path))["params"]["trunk"]
    assert jax.tree.structure(tuned) == jax.tree.structure(trunk)
    change = max(
        float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(tuned), jax.tree.leaves(trunk))
    )
    assert 0 < change < 0.05
    config.model.options = dict(width=16)
    with pytest.raises(ValueError, match="other layer shapes"):
        classify_train.train_and_evaluate(config, str(tmp_path / "wrong_width"))


def test_a_classifier_mixes_in_images_sampled_from_a_bagan_run(full_run, tmp_path):
    # BAGAN is conditional whatever config.gan.conditional says: the images must be
    # sampled for the asked class, not unconditionally.
    config = classifier_config.get_config("smoke")
    config.update(num_epochs=1, steps_per_epoch=2)
    config.synthetic.update(gan_workdir=str(full_run), class_name="malignant", amount="8")
    results = classify_train.train_and_evaluate(config, str(tmp_path))
    assert results["synthetic_images"] == 8
    manifest = json.loads((tmp_path / "synthetic" / "manifest.json").read_text())
    assert (manifest["class_name"], manifest["num"]) == ("malignant", 8)


def test_autoencoder_stops_on_nan_like_the_gan_loop(tmp_path):
    config = smoke(log_every=1, checkpoint_every=1)
    config.bagan.autoencoder_steps = 3
    mesh = parallel.make_mesh()
    autoencoder.train_autoencoder(config, str(tmp_path), records_of(config), mesh)
    config.bagan.update(autoencoder_steps=6, autoencoder_lr=float("nan"))
    with pytest.raises(training.NonFiniteLossError, match="NaN or inf at step 4"):
        autoencoder.train_autoencoder(config, str(tmp_path), records_of(config), mesh)
    saved = checkpoint.manager(tmp_path, 1, None, subdir="autoencoder/checkpoints")
    assert saved.latest_step() == 3
