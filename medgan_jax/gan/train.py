"""The GAN job: data -> (pre-stage) -> phases of a jit step on the mesh -> logs, grids,
checkpoints. Which family trains, and how, comes from gan/families.py."""

from __future__ import annotations

import os

import jax
import ml_collections
from absl import logging

from medgan_jax import parallel, runs, training
from medgan_jax.data import load_split, pipeline, subsets
from medgan_jax.data.records import select_classes
from medgan_jax.gan import families, filtered, transfer
from medgan_jax.gan.state import GANState
from medgan_jax.writers import Progress


def initial_state(config, generator, discriminator, mesh) -> GANState:
    """The freshly initialised state, replicated over the mesh."""
    return families.create_state(config, generator, discriminator, parallel.replicated(mesh))


def train(config: ml_collections.ConfigDict, workdir: str) -> GANState:
    """Trains (resuming from workdir's latest checkpoint) and returns the final state."""
    family = families.family_of(config)
    mesh = training.mesh_of(config)
    os.makedirs(workdir, exist_ok=True)
    records = select_classes(
        load_split(config.data, "train", manifest_dir=workdir), config.gan.classes
    )
    logging.info("GAN training data: %s", records.summary())
    if jax.process_index() == 0:  # the images it trains on (manifest_train.csv: the split's)
        subsets.write_manifest(records, os.path.join(workdir, "manifest_gan_train.csv"))
    runs.write(
        workdir,
        "gan",
        config,
        records.class_names,
        family=config.gan.family,
        conditional=families.is_conditional(config),
    )
    records = families.training_labels(filtered.add_filtered_copies(records, config), config)
    generator, discriminator = families.build_models(config, records.num_classes)
    run = training.open_run(
        workdir, mesh, save_every=config.checkpoint_every, keep=config.keep_checkpoints
    )
    state, start = run.restore(initial_state(config, generator, discriminator, mesh))
    from_run, _ = transfer.init_config(config.gan)
    if from_run and start == 0:  # a fresh run starts from another run's networks
        state = transfer.initialise_from_run(state, from_run)
        state = jax.device_put(state, parallel.replicated(mesh))
    elif family.pre_stage is not None and start == 0:
        state = family.pre_stage(config, workdir, records, mesh, state)
    num_steps = families.num_training_steps(config)
    for phase in family.phases(config, generator, discriminator, mesh, records.num_classes):
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
            if training.every(step, config.log_every, num_steps):
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
                _check_finite(state)
                run.writer.write(step, scalars)
                if run.is_main:
                    print(progress.line(step, scalars), flush=True)
            if training.every(step, config.sample_every, num_steps):
                path = os.path.join(workdir, "samples", f"step_{step:06d}.png")
                phase.save_grid(state, path, step)
            if training.every(step, config.checkpoint_every, num_steps):
                _check_finite(state)  # never checkpoint a diverged state
                run.save(step, state)
        batches.close()  # see pipeline.global_batches
    run.close()
    return state


def _check_finite(state: GANState) -> None:
    training.check_finite(
        state.first_bad_step, "A GAN loss", "Lower the learning rates or check the data for NaNs."
    )
