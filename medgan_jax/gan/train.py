"""train_and_evaluate for GANs: data -> jit step on the mesh -> logs, grids, checkpoints."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from medgan_jax import checkpoint, parallel
from medgan_jax.data import DataError, Records, load_split, pipeline
from medgan_jax.gan.state import GANState, create_state
from medgan_jax.gan.steps import calibration_latents, make_generate, make_train_step
from medgan_jax.logging import MetricWriter, Progress, save_image_grid
from medgan_jax.models import dcgan


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the step."""


def build_models(config: ml_collections.ConfigDict, num_classes: int):
    """(generator, discriminator) of `config.gan.family`."""
    g, data = config.gan, config.data
    conditional_classes = num_classes if g.conditional else 0
    if g.family != "dcgan":
        raise ValueError(f"config.gan.family='{g.family}'; this build knows 'dcgan'.")
    if g.conditional not in ("", "projection", "acgan"):
        raise ValueError(
            f"config.gan.conditional='{g.conditional}'; expected '', 'projection' or 'acgan'."
        )
    generator = dcgan.Generator(
        resolution=data.image_size,
        channels=data.channels,
        width=g.g_width,
        max_width_mult=g.max_width_mult,
        num_classes=conditional_classes,
    )
    discriminator = dcgan.Discriminator(
        resolution=data.image_size,
        width=g.d_width,
        max_width_mult=g.max_width_mult,
        num_classes=conditional_classes,
        conditioning=g.conditional,
    )
    return generator, discriminator


def select_classes(records: Records, classes) -> Records:
    """The records of the GAN's training classes (multi-label: positive for any of them)."""
    if not classes:
        return records
    unknown = [c for c in classes if c not in records.class_names]
    if unknown:
        raise DataError(
            f"config.gan.classes names {unknown}; the data has classes {list(records.class_names)}."
        )
    ids = [records.class_names.index(c) for c in classes]
    if records.multi_label:
        keep = (records.labels[:, ids] > 0).any(axis=1)
    else:
        keep = np.isin(records.labels, ids)
    return records.take(np.flatnonzero(keep))


def compiled_step(config, generator, discriminator, mesh):
    """(initial replicated state, jit-compiled step donating the state)."""
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    replicated, batch = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    state = create_state(generator, discriminator, config.gan, image_shape, config.seed, replicated)
    step = jax.jit(
        make_train_step(generator, discriminator, config.gan),
        in_shardings=(replicated, batch),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    return state, step


def _check_finite(state: GANState, metrics: dict) -> None:
    bad_step = int(state.first_bad_step)
    if bad_step >= 0:
        raise NonFiniteLossError(
            f"A GAN loss became NaN or inf at step {bad_step} (metrics at the last logged step: "
            f"{metrics}). The run stopped; the last checkpoint was saved before that step. "
            "Lower the learning rates or check the data for NaNs."
        )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
    """Trains (resuming from workdir's latest checkpoint) and returns the final state."""
    parallel.initialize_distributed()
    mesh = parallel.make_mesh(config.num_devices or None)
    is_main = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=1))
    records = select_classes(
        load_split(config.data, "train", manifest_dir=workdir), config.gan.classes
    )
    logging.info("GAN training data: %s", records.summary())
    if is_main:
        with open(os.path.join(workdir, "classes.json"), "w") as f:
            json.dump(list(records.class_names), f)
    if records.multi_label or not config.gan.conditional:
        records = records.replace_labels(np.zeros(len(records), np.int32))
    generator, discriminator = build_models(config, records.num_classes)
    state, step_fn = compiled_step(config, generator, discriminator, mesh)
    ckpt = checkpoint.manager(workdir, config.checkpoint_every, config.keep_checkpoints)
    state, start = checkpoint.restore_latest(ckpt, state)
    images_per_step = config.batch_size * config.gan.n_critic
    batches = pipeline.global_batches(
        records, config.data, mesh, global_batch_size=images_per_step, train=True, start_step=start
    )
    writer = MetricWriter(workdir, enabled=is_main)
    progress = Progress(config.num_steps, images_per_step, start)
    grid = SampleGrid(config, generator, records.num_classes)
    metrics = {}
    for step in range(start + 1, config.num_steps + 1):
        state, metrics = step_fn(state, next(batches))
        if step % config.log_every == 0 or step == config.num_steps:
            scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
            _check_finite(state, scalars)
            writer.write(step, scalars)
            if is_main:
                print(progress.line(step, scalars), flush=True)
        if step % config.sample_every == 0 or step == config.num_steps:
            grid.save(state, os.path.join(workdir, "samples", f"step_{step:06d}.png"))
        if step % config.checkpoint_every == 0 or step == config.num_steps:
            _check_finite(state, metrics)  # never checkpoint a diverged state
            checkpoint.save(ckpt, step, state, force=True)
    ckpt.wait_until_finished()
    ckpt.close()
    writer.close()
    return state


class SampleGrid:
    """Images from a fixed latent (and cycling class ids) with the EMA generator."""

    def __init__(self, config, generator, num_classes: int):
        n = config.grid_size**2
        self.z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (n, config.gan.latent_dim))
        self.labels = jnp.arange(n, dtype=jnp.int32) % max(num_classes, 1)
        self.calibration = calibration_latents(config.seed, config.gan.latent_dim, num_classes)
        self.columns = config.grid_size
        self.scale = max(1, 256 // (config.data.image_size * config.grid_size))
        self.calibrate, self.generate = map(jax.jit, make_generate(generator))

    def save(self, state: GANState, path: str) -> None:
        if jax.process_index() != 0:
            return
        stats = self.calibrate(state.ema_params, state.g_stats, *self.calibration)
        images = self.generate(state.ema_params, stats, self.z, self.labels)
        save_image_grid(path, np.asarray(jax.device_get(images)), self.columns, scale=self.scale)
