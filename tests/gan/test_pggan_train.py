"""PGGAN training: the growth schedule, real images per stage, smoke growth 4 -> 16 on 8
devices (one compile per phase, exact resume mid-fade, 8 devices = 1), generation at the
final resolution, conditional multi-hot training on filtering-augmented data with ADA."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs.pggan import get_config
from medgan_jax import runs
from medgan_jax.augment import filtering
from medgan_jax.data import Records
from medgan_jax.gan import filtered, progressive, sample, train
from medgan_jax.models import layers
from medgan_jax.writers import read_metrics

# Smoke: phases of 32 images at batch 16 = 2 steps each.
RESOLUTIONS = [4, 4, 8, 8, 8, 8, 16, 16, 16, 16]
ALPHAS = [1, 1, 0, 0.5, 1, 1, 0, 0.5, 1, 1]


def smoke(**overrides):
    config = get_config("smoke")
    config.update(overrides)
    return config


def by_step(workdir, *keys):
    return {row["step"]: tuple(row[k] for k in keys) for row in read_metrics(workdir)}


def test_schedule_alpha_batch_sizes_and_images_shown():
    schedule = progressive.Schedule(
        final_resolution=32,
        initial_resolution=4,
        stable_images=100,
        fade_images=60,
        final_images=40,
        batch_sizes=(20, 20, 10, 10),
        n_critic=1,
    )
    phases = [(p.resolution, p.fading, p.batch_size, p.first_step) for p in schedule.phases]
    assert phases == [
        (4, False, 20, 0),  # 5 steps
        (8, True, 20, 5),  # 3 steps
        (8, False, 20, 8),  # 5 steps
        (16, True, 10, 13),  # 6 steps
        (16, False, 10, 19),  # 10 steps
        (32, True, 10, 29),  # 6 steps
        (32, False, 10, 35),  # 4 steps (final_images), then open-ended
    ]
    assert schedule.num_steps == 39
    stages = [schedule.stage(s) for s in range(1, 45)]
    alphas = [s.alpha for s in stages]
    assert alphas[5:8] == pytest.approx([0, 20 / 60, 40 / 60])  # fade to 8 at batch 20
    assert alphas[13:19] == pytest.approx([k / 6 for k in range(6)])  # fade to 16 at batch 10
    assert all(a == 1.0 for a in alphas[:5] + alphas[8:13] + alphas[35:])
    assert [s.resolution for s in stages][::6] == [4, 8, 8, 16, 16, 32, 32, 32]
    assert schedule.images_shown(13) == 100 + 60 + 100 == stages[13].images_shown
    assert schedule.images_shown(39) == 100 + 60 + 100 + 60 + 100 + 60 + 40
    with pytest.raises(ValueError, match="batch_sizes has 2 entries"):
        progressive.Schedule(32, 4, 10, 10, 10, (8, 8), 1)


def test_real_images_are_box_downscaled_and_faded_as_published():
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1), minval=-1, maxval=1)
    at8 = progressive.real_images(x, 8, False, 1.0)
    np.testing.assert_allclose(at8[:, 0, 0], x[:, :2, :2].mean(axis=(1, 2)), rtol=1e-6)
    low = layers.upsample_nearest(layers.downsample_average(at8))
    np.testing.assert_allclose(progressive.real_images(x, 8, True, 0.0), low, atol=1e-6)
    np.testing.assert_allclose(progressive.real_images(x, 8, True, 1.0), at8, atol=1e-6)
    np.testing.assert_allclose(
        progressive.real_images(x, 8, True, 0.3), 0.7 * low + 0.3 * at8, atol=1e-6
    )


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """The whole smoke schedule on 8 devices, counting how often each stage is traced."""
    workdir = tmp_path_factory.mktemp("grown")
    traces = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration" and kwargs.get("fun_name") == (
            "stage_step"
        ):
            traces.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        train.train(smoke(), str(workdir))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return workdir, len(traces)


def test_smoke_grows_4_to_16_compiling_once_per_phase(grown):
    workdir, num_traces = grown
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert [r["resolution"] for r in rows] == RESOLUTIONS
    assert [r["alpha"] for r in rows] == pytest.approx(ALPHAS)
    assert [r["kimg"] for r in rows] == pytest.approx([0.016 * s for s in range(1, 11)])
    assert all(np.isfinite(r["d_loss"]) and r["g_grad_norm"] > 0 for r in rows)
    assert num_traces == 5  # stable 4, fade 8, stable 8, fade 16, stable 16
    # Grids at 8x8 (step 5) and 16x16 (step 10) are both upscaled to the final size.
    sizes = {Image.open(workdir / "samples" / f"step_{s:06d}.png").size for s in (5, 10)}
    assert len(sizes) == 1


def test_resume_mid_fade_gives_the_same_alpha_and_losses(grown, tmp_path):
    workdir, _ = grown
    train.train(smoke(num_steps=7), str(tmp_path))  # killed in the fade to 16
    train.train(smoke(), str(tmp_path))  # resumes at step 7 (checkpoint)
    keys = ("resolution", "alpha", "kimg", "d_loss", "g_loss")
    resumed, full = by_step(tmp_path, *keys), by_step(workdir, *keys)
    assert resumed[8][:3] == full[8][:3] == (16, 0.5, 0.128)
    for step in (8, 9, 10):
        np.testing.assert_allclose(resumed[step], full[step], rtol=1e-5)


def test_eight_devices_match_one(grown, tmp_path):
    workdir, _ = grown
    train.train(smoke(num_devices=1, num_steps=2), str(tmp_path))
    one, eight = by_step(tmp_path, "d_loss", "g_loss"), by_step(workdir, "d_loss", "g_loss")
    for step in (1, 2):
        np.testing.assert_allclose(one[step], eight[step], rtol=2e-4, atol=1e-5)


def test_generation_at_the_final_resolution(grown, tmp_path):
    workdir, _ = grown
    manifest = sample.generate_images(str(workdir), 3, str(tmp_path / "a"), seed=1, batch_size=2)
    assert manifest["checkpoint_step"] == 10
    first = np.asarray(Image.open(tmp_path / "a" / manifest["files"][0]))
    assert first.shape == (16, 16, 3)
    again = np.concatenate(list(sample.sample_batches(str(workdir), 3, seed=1, batch_size=4)))
    by_two = np.concatenate(list(sample.sample_batches(str(workdir), 3, seed=1, batch_size=2)))
    np.testing.assert_allclose(again, by_two, atol=1e-5)
    # A checkpoint of an earlier stage (8x8 at step 5) comes out upscaled to 16x16.
    (early,) = sample.sample_batches(str(workdir), 2, seed=1, step=5, batch_size=2)
    assert early.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(early[:, ::2, ::2], early[:, 1::2, 1::2])


def test_filtered_copies_enlarge_the_training_set():
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1), np.uint8)
    records = Records(
        ids=np.array(["a", "b", "c"]),
        labels=np.array([0, 1, 1], np.int32),
        class_names=("x", "y"),
        images=images,
    )
    config = get_config("smoke")
    config.data.update(image_size=8, channels=1)
    config.gan.filter_copies.update(gaussian_blur=True, minimum_filter=True, minimum_size=2)
    enlarged = filtered.add_filtered_copies(records, config)
    assert list(enlarged.ids) == ["a", "b", "c"] + [f"{i}#gaussian_blur" for i in "abc"] + [
        f"{i}#minimum_filter" for i in "abc"
    ]
    assert list(enlarged.labels) == [0, 1, 1] * 3
    x = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
    got = enlarged.images.astype(np.float32) * 2 - 1
    np.testing.assert_allclose(got[:3], x, atol=2e-3)
    np.testing.assert_allclose(got[3:6], filtering.gaussian_blur(x, 1.0), atol=2e-3)
    np.testing.assert_allclose(got[6:], filtering.minimum_filter(x, 2), atol=2e-3)
    config.gan.filter_copies.update(gaussian_blur=False, minimum_filter=False)
    assert filtered.add_filtered_copies(records, config) is records


def test_conditional_multi_hot_pggan_with_filtered_data_and_ada(tmp_path):
    config = smoke(num_steps=2, sample_every=2, checkpoint_every=2)
    config.data = get_config("synthetic_cxr").data
    config.data.update(image_size=16, channels=1)
    config.data.synthetic.update(size=32, num_train=64, num_val=8, num_test=8)
    config.gan.update(classes=(), conditional="acgan", augment="ada")
    config.gan.filter_copies.update(gaussian_blur=True, unsharp_mask=True)
    train.train(config, str(tmp_path))
    rows = read_metrics(tmp_path)
    assert [r["resolution"] for r in rows] == [4, 4]
    assert all(np.isfinite(r["d_loss"]) for r in rows)
    names = list(runs.load(str(tmp_path)).class_names)
    assert len(names) == 14  # the CheXpert label vector
    gen = lambda name: next(sample.sample_batches(str(tmp_path), 2, name, seed=0, batch_size=2))
    one, combo = gen(names[0]), gen(f"{names[0]},{names[3]}")
    assert one.shape == combo.shape == (2, 16, 16, 1)  # 4x4 stage, upscaled
    assert not np.allclose(one, combo)
