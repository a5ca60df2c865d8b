"""train_and_evaluate for GANs: data -> jit step on the mesh -> logs, grids, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from medgan_jax import checkpoint, parallel
from medgan_jax.data import DataError, Records, load_split, pipeline
from medgan_jax.data.records import select_classes
from medgan_jax.gan import bagan as bagan_stage
from medgan_jax.gan import filtered, progressive
from medgan_jax.gan.state import GANState, create_state, optimizers
from medgan_jax.gan.steps import calibration_latents, make_generate, make_train_step
from medgan_jax.images import save_image_grid
from medgan_jax.models import bagan, dcgan, pggan
from medgan_jax.writers import MetricWriter, Progress

FAMILIES = ("dcgan", "pggan", "bagan")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the step."""


def is_conditional(config: ml_collections.ConfigDict) -> bool:
    """Whether the generator takes class labels (BAGAN always does)."""
    return bool(config.gan.conditional) or config.gan.family == "bagan"


def build_models(config: ml_collections.ConfigDict, num_classes: int):
    """(generator, discriminator) of `config.gan.family`."""
    g, data = config.gan, config.data
    conditional_classes = num_classes if is_conditional(config) else 0
    if g.family not in FAMILIES:
        raise ValueError(f"config.gan.family='{g.family}'; expected one of {FAMILIES}.")
    if g.conditional not in ("", "projection", "acgan"):
        raise ValueError(
            f"config.gan.conditional='{g.conditional}'; expected '', 'projection' or 'acgan'."
        )
    if g.family == "bagan":
        b = config.bagan
        generator = bagan.Generator(
            resolution=data.image_size,
            channels=data.channels,
            width=b.width,
            latent_dim=g.latent_dim,
            num_classes=num_classes,
            latent_sampling=b.latent_sampling,
        )
        discriminator = bagan.Discriminator(
            resolution=data.image_size, width=b.width, num_classes=num_classes
        )
        return generator, discriminator
    if g.family == "pggan":
        p = config.pggan
        generator = pggan.Generator(
            resolution=data.image_size,
            channels=data.channels,
            fmap_base=p.fmap_base,
            fmap_max=p.fmap_max,
            num_classes=conditional_classes,
            normalize_latents=p.normalize_latents,
            pixelnorm=p.pixelnorm,
        )
        discriminator = pggan.Discriminator(
            resolution=data.image_size,
            fmap_base=p.fmap_base,
            fmap_max=p.fmap_max,
            num_classes=conditional_classes,
            conditioning=g.conditional,
            mbstd_group_size=p.mbstd_group_size,
            mbstd_num_features=p.mbstd_num_features,
        )
        return generator, discriminator
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


def initial_state(config, generator, discriminator, mesh) -> GANState:
    """The freshly initialised state, replicated over the mesh."""
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    replicated = parallel.replicated(mesh)
    return create_state(generator, discriminator, config.gan, image_shape, config.seed, replicated)


def _jit_step(config, generator, discriminator, mesh):
    replicated, batch = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    return jax.jit(
        make_train_step(generator, discriminator, config.gan),
        in_shardings=(replicated, batch),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def compiled_step(config, generator, discriminator, mesh):
    """(initial replicated state, jit-compiled step donating the state)."""
    state = initial_state(config, generator, discriminator, mesh)
    return state, _jit_step(config, generator, discriminator, mesh)


@dataclasses.dataclass(frozen=True)
class TrainPhase:
    """Steps first+1 .. last sharing one compiled step, batch size and sample grid."""

    first: int
    last: int
    images_per_step: int
    data: ml_collections.ConfigDict  # the input pipeline's config for this phase
    run: Callable[[GANState, dict, int], tuple[GANState, dict]]  # (state, batch, step)
    save_grid: Callable[[GANState, str, int], None]  # (state, path, step)
    enter: Callable[[GANState], GANState] | None = None  # applied before its first step


def training_phases(config, generator, discriminator, mesh, num_classes) -> list[TrainPhase]:
    """The run's phases: one for DCGAN, one per resolution and fade-in/stable for PGGAN."""
    if config.gan.family == "pggan":
        return _progressive_phases(config, generator, discriminator, mesh, num_classes)
    step_fn = _jit_step(config, generator, discriminator, mesh)
    grid = SampleGrid(config, generator, num_classes)
    return [
        TrainPhase(
            first=0,
            last=config.num_steps,
            images_per_step=config.batch_size * config.gan.n_critic,
            data=config.data,
            run=lambda state, batch, step: step_fn(state, batch),
            save_grid=lambda state, path, step: grid.save(state, path),
        )
    ]


def _progressive_phases(config, generator, discriminator, mesh, num_classes) -> list[TrainPhase]:
    """PGGAN: the schedule's phases, each with the step compiled for its stage."""
    schedule = progressive.Schedule.from_config(config)
    replicated, batch = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    g_tx, d_tx = optimizers(config.gan)
    # The official code resets Adam whenever the level of detail changes.
    reset = jax.jit(
        lambda s: s.replace(g_opt=g_tx.init(s.g_params), d_opt=d_tx.init(s.d_params)),
        in_shardings=replicated,
        out_shardings=replicated,
        donate_argnums=0,
    )
    group = config.pggan.mbstd_group_size
    phases = []
    for phase in schedule.phases:
        parallel.check_batch_size(phase.images_per_step, mesh, "pggan.batch_sizes")
        if group > 1 and phase.batch_size % min(group, phase.batch_size):
            raise ValueError(
                f"config.pggan.mbstd_group_size={group} must divide the batch size "
                f"{phase.batch_size} of resolution {phase.resolution} (config.pggan.batch_sizes)."
            )
        key = (phase.resolution, phase.fading)
        step_fn = jax.jit(
            progressive.make_stage_step(generator, discriminator, config.gan, *key),
            in_shardings=(replicated, batch, replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        g_stage, _ = progressive.stage_models(generator, discriminator, *key)
        grid = SampleGrid(config, g_stage, num_classes, config.data.image_size // phase.resolution)

        def run(state, batch, step, step_fn=step_fn):
            stage = schedule.stage(step)
            state, metrics = step_fn(state, batch, np.float32(stage.alpha))
            extra = {
                "resolution": stage.resolution,
                "alpha": stage.alpha,
                "kimg": (stage.images_shown + stage.phase.images_per_step) / 1000,
            }
            return state, {**metrics, **extra}

        def save_grid(state, path, step, grid=grid):
            grid.save(state, path, alpha=np.float32(schedule.stage(step).alpha))

        data = config.data.copy_and_resolve_references()
        data.seed += phase.index  # a fresh order per phase; phase 0 keeps the data seed
        reset_here = config.pggan.reset_optimizer and phase.index > 0
        phases.append(
            TrainPhase(
                first=phase.first_step,
                last=phase.last_step,
                images_per_step=phase.images_per_step,
                data=data,
                run=run,
                save_grid=save_grid,
                enter=reset if reset_here else None,
            )
        )
    return phases


def num_training_steps(config: ml_collections.ConfigDict) -> int:
    """config.num_steps, or for PGGAN with num_steps 0 the whole schedule."""
    if config.gan.family == "pggan" and config.num_steps <= 0:
        return progressive.Schedule.from_config(config).num_steps
    return config.num_steps


def _gan_labels(records: Records, config: ml_collections.ConfigDict) -> Records:
    """Class ids for conditional GANs, multi-hot vectors for conditional PGGAN on
    multi-label data, zeros otherwise."""
    if config.gan.family == "bagan" and records.multi_label:
        raise DataError(
            "BAGAN-GP needs one class per image; multi-label data (CheXpert) trains the "
            "conditional PGGAN (configs/pggan.py) instead."
        )
    keep = is_conditional(config) and (not records.multi_label or config.gan.family == "pggan")
    return records if keep else records.replace_labels(np.zeros(len(records), np.int32))


def _from_autoencoder(config, workdir, records: Records, mesh, state: GANState) -> GANState:
    """BAGAN: trains (or restores) the autoencoder, then initialises G and D from it."""
    autoencoder = bagan_stage.train_autoencoder(config, workdir, records, mesh)
    class_stats = None
    if config.bagan.latent_sampling == "class_gaussian":
        latents, labels = bagan_stage.labelled_latents(config, autoencoder, records, mesh)
        class_stats = bagan_stage.fit_class_gaussians(latents, labels, records.num_classes)
    state = bagan_stage.initialise_gan(
        state, autoencoder, class_stats, config.bagan.init_discriminator
    )
    return jax.device_put(state, parallel.replicated(mesh))


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
    records = _gan_labels(filtered.add_filtered_copies(records, config), config)
    generator, discriminator = build_models(config, records.num_classes)
    state = initial_state(config, generator, discriminator, mesh)
    ckpt = checkpoint.manager(workdir, config.checkpoint_every, config.keep_checkpoints)
    state, start = checkpoint.restore_latest(ckpt, state)
    if config.gan.family == "bagan" and start == 0:  # a fresh run starts from its autoencoder
        state = _from_autoencoder(config, workdir, records, mesh, state)
    num_steps = num_training_steps(config)
    writer = MetricWriter(workdir, enabled=is_main)
    metrics = {}
    for phase in training_phases(config, generator, discriminator, mesh, records.num_classes):
        first, last = max(start, phase.first), min(phase.last, num_steps)
        if first >= last:
            continue
        if phase.enter is not None and first == phase.first:
            state = phase.enter(state)
        batches = pipeline.global_batches(
            records,
            phase.data,
            mesh,
            global_batch_size=phase.images_per_step,
            train=True,
            start_step=first - phase.first,
        )
        progress = Progress(num_steps, phase.images_per_step, first)
        for step in range(first + 1, last + 1):
            state, metrics = phase.run(state, next(batches), step)
            if step % config.log_every == 0 or step == num_steps:
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
                _check_finite(state, scalars)
                writer.write(step, scalars)
                if is_main:
                    print(progress.line(step, scalars), flush=True)
            if step % config.sample_every == 0 or step == num_steps:
                phase.save_grid(
                    state, os.path.join(workdir, "samples", f"step_{step:06d}.png"), step
                )
            if step % config.checkpoint_every == 0 or step == num_steps:
                _check_finite(state, metrics)  # never checkpoint a diverged state
                checkpoint.save(ckpt, step, state, force=True)
    ckpt.wait_until_finished()
    ckpt.close()
    writer.close()
    return state


class SampleGrid:
    """Images from a fixed latent (and cycling class ids) with the EMA generator.

    `upscale` enlarges the images of a lower-resolution stage (PGGAN) to the final size.
    """

    def __init__(self, config, generator, num_classes: int, upscale: int = 1):
        n = config.grid_size**2
        self.z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (n, config.gan.latent_dim))
        self.labels = jnp.arange(n, dtype=jnp.int32) % max(num_classes, 1)
        self.calibration = calibration_latents(config.seed, config.gan.latent_dim, num_classes)
        self.columns = config.grid_size
        self.upscale = upscale
        self.scale = max(1, 256 // (config.data.image_size * config.grid_size))
        self.calibrate, self.generate = map(jax.jit, make_generate(generator))

    def save(self, state: GANState, path: str, **model_kwargs) -> None:
        if jax.process_index() != 0:
            return
        stats = self.calibrate(state.ema_params, state.g_stats, *self.calibration)
        images = self.generate(state.ema_params, stats, self.z, self.labels, **model_kwargs)
        images = np.asarray(jax.device_get(images))
        if self.upscale > 1:
            images = images.repeat(self.upscale, axis=1).repeat(self.upscale, axis=2)
        save_image_grid(path, images, self.columns, scale=self.scale)
