"""A GAN run's training phases: spans of steps sharing one compiled step, batch size and
sample grid (one phase for DCGAN/BAGAN, one per resolution and fade-in for PGGAN)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from medgan_jax import parallel, training
from medgan_jax.gan import progressive
from medgan_jax.gan.state import GANState, optimizers
from medgan_jax.gan.steps import calibration_latents, make_generate, make_train_step
from medgan_jax.images import save_image_grid


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


def single_phase(config, generator, discriminator, mesh, num_classes) -> list[TrainPhase]:
    """All of config.num_steps with one compiled step."""
    step_fn = training.built_once(
        step_key("single", generator, discriminator, config.gan, mesh),
        lambda: training.jit_step(make_train_step(generator, discriminator, config.gan), mesh),
    )
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


def progressive_phases(config, generator, discriminator, mesh, num_classes) -> list[TrainPhase]:
    """PGGAN: the schedule's phases, each with the step compiled for its stage."""
    schedule = progressive.Schedule.from_config(config)
    replicated = parallel.replicated(mesh)
    g_tx, d_tx = optimizers(config.gan, per_module=True)
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
        step_fn = training.built_once(
            step_key("stage", generator, discriminator, config.gan, mesh, *key),
            lambda key=key: training.jit_step(
                progressive.make_stage_step(generator, discriminator, config.gan, *key),
                mesh,
                num_extra_args=1,
            ),
        )
        g_stage, _ = progressive.stage_models(generator, discriminator, *key)
        upscale = config.data.image_size // phase.resolution
        grid = SampleGrid(config, g_stage, num_classes, upscale=upscale)

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


def step_key(kind, generator, discriminator, gan_cfg, mesh, *extra) -> tuple:
    """What a GAN step closes over, for training.built_once: the networks, config.gan but
    for which images it trains on and where its weights started, and the mesh."""
    settings = gan_cfg.to_dict()
    settings.pop("classes", None)
    settings.get("init", {}).pop("from_run", None)
    devices = tuple(d.id for d in mesh.devices.flat)
    return (kind, generator, discriminator, training.config_key(settings, *extra), devices)


def generate_programs(generator) -> tuple:
    """(calibrate, generate) of make_generate, jitted once per process per generator."""
    return training.built_once(
        ("generate", generator), lambda: tuple(map(jax.jit, make_generate(generator)))
    )


class SampleGrid:
    """Images from a fixed latent (and cycling class ids) with the EMA generator.

    `programs`: (calibrate, generate) when not the GANs' (`generate_programs`), with
    latents of `latent_dim` values (default config.gan.latent_dim). `upscale` enlarges
    the images of a lower-resolution stage (PGGAN) to the final size.
    """

    def __init__(self, config, generator, num_classes: int, programs=None, latent_dim=0, upscale=1):
        n = config.grid_size**2
        latent_dim = latent_dim or config.gan.latent_dim
        self.z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (n, latent_dim))
        self.labels = jnp.arange(n, dtype=jnp.int32) % max(num_classes, 1)
        # Only the GANs' BatchNorm generators have statistics to recompute.
        self.calibration = (
            None if programs else calibration_latents(config.seed, latent_dim, num_classes)
        )
        self.columns = config.grid_size
        self.upscale = upscale
        self.scale = max(1, 256 // (config.data.image_size * config.grid_size))
        self.calibrate, self.generate = programs or generate_programs(generator)

    def save(self, state: GANState, path: str, **model_kwargs) -> None:
        if jax.process_index() != 0:
            return
        stats = state.g_stats
        if self.calibration is not None:
            stats = self.calibrate(state.ema_params, stats, *self.calibration)
        images = self.generate(state.ema_params, stats, self.z, self.labels, **model_kwargs)
        images = np.asarray(jax.device_get(images))
        if self.upscale > 1:
            images = images.repeat(self.upscale, axis=1).repeat(self.upscale, axis=2)
        save_image_grid(path, images, self.columns, scale=self.scale)
