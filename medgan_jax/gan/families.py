"""The one table of generator families: every "which family is this" question is answered
here. Adding a family means one entry below plus its model (models/) and config (configs/).

Each entry says how to build the generator and discriminator from the config, how the
run is split into phases, how many steps it has, which labels it trains on, whether it
is conditional, whether its optimizers keep a state per module, what runs before
adversarial training, which generator a checkpoint of a given step samples with, and,
for a family that is not a GAN (diffusion: a denoiser and no discriminator), how its
state starts and how it turns latents into images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import ml_collections
import numpy as np
from absl import logging

from medgan_jax import training
from medgan_jax.data.records import DataError, Records
from medgan_jax.gan import diffusion, phases, progressive, state
from medgan_jax.models import bagan, dcgan, pggan

CONDITIONING = ("", "projection", "acgan")


@dataclasses.dataclass(frozen=True)
class Family:
    """How one generator family trains and samples."""

    # (config, number of conditioning classes, 0 = unconditional) -> (generator, discriminator)
    build: Callable[[ml_collections.ConfigDict, int], tuple[nn.Module, nn.Module]]
    phases: Callable[..., list[phases.TrainPhase]] = phases.single_phase
    # config -> number of training steps
    num_steps: Callable[[ml_collections.ConfigDict], int] = lambda config: config.num_steps
    always_conditional: bool = False
    # Multi-label data: 'unconditional' (train on images, labels dropped), 'multi_hot'
    # (condition on the label vector) or 'error' (the family needs one class per image).
    multi_label: str = "unconditional"
    multi_label_error: str = ""
    per_module_optimizers: bool = False
    # (config, workdir, records, mesh, fresh state) -> state, before a fresh run's step 1
    pre_stage: Callable | None = None
    # (config, generator, discriminator, checkpoint step) -> the generator to sample with
    generator_at: Callable | None = None
    # config.gan.conditional values it accepts ('' = unconditional)
    conditioning: tuple[str, ...] = CONDITIONING
    # Families that are not GANs: (config, generator, sharding) -> the initial GANState;
    # (config, generator) -> jitted (calibrate, generate) of steps.make_generate's
    # contract; config -> values per latent.
    create_state: Callable | None = None
    generate_programs: Callable | None = None
    latent_dim: Callable[[ml_collections.ConfigDict], int] = lambda config: config.gan.latent_dim


def _dcgan(config, num_classes):
    g, data = config.gan, config.data
    generator = dcgan.Generator(
        resolution=data.image_size,
        channels=data.channels,
        width=g.g_width,
        max_width_mult=g.max_width_mult,
        num_classes=num_classes,
        dtype=training.compute_dtype(config),
    )
    discriminator = dcgan.Discriminator(
        resolution=data.image_size,
        width=g.d_width,
        max_width_mult=g.max_width_mult,
        num_classes=num_classes,
        conditioning=g.conditional,
        dtype=training.compute_dtype(config),
    )
    return generator, discriminator


def _pggan(config, num_classes):
    p, data = config.pggan, config.data
    generator = pggan.Generator(
        resolution=data.image_size,
        channels=data.channels,
        fmap_base=p.fmap_base,
        fmap_max=p.fmap_max,
        num_classes=num_classes,
        normalize_latents=p.normalize_latents,
        pixelnorm=p.pixelnorm,
        dtype=training.compute_dtype(config),
    )
    discriminator = pggan.Discriminator(
        resolution=data.image_size,
        fmap_base=p.fmap_base,
        fmap_max=p.fmap_max,
        num_classes=num_classes,
        conditioning=config.gan.conditional,
        mbstd_group_size=p.mbstd_group_size,
        mbstd_num_features=p.mbstd_num_features,
        dtype=training.compute_dtype(config),
    )
    return generator, discriminator


def _pggan_steps(config) -> int:
    """config.num_steps, or with num_steps 0 the whole growth schedule."""
    if config.num_steps <= 0:
        return progressive.Schedule.from_config(config).num_steps
    return config.num_steps


def _pggan_grown(config, generator, discriminator, step: int):
    """The generator as grown by `step` (samplers upscale its images to the final size)."""
    stage = progressive.Schedule.from_config(config).stage(max(step, 1))
    if stage.resolution == generator.resolution and not stage.fading:
        return generator
    logging.warning(
        "Checkpoint step %d has grown to %dx%d (alpha %.3f), not yet to the final %dx%d: "
        "its images are upscaled (nearest neighbour).",
        step,
        stage.resolution,
        stage.resolution,
        stage.alpha,
        generator.resolution,
        generator.resolution,
    )
    g, _ = progressive.stage_models(generator, discriminator, stage.resolution, stage.fading)
    return g.clone(alpha=stage.alpha)


def _bagan(config, num_classes):
    b, data = config.bagan, config.data
    generator = bagan.Generator(
        resolution=data.image_size,
        channels=data.channels,
        width=b.width,
        latent_dim=config.gan.latent_dim,
        num_classes=num_classes,
        latent_sampling=b.latent_sampling,
        dtype=training.compute_dtype(config),
    )
    discriminator = bagan.Discriminator(
        resolution=data.image_size,
        width=b.width,
        num_classes=num_classes,
        dtype=training.compute_dtype(config),
    )
    return generator, discriminator


def _bagan_autoencoder(*args, **kwargs):
    """autoencoder.pre_stage, imported when it runs: it reads the data with tf.data, and
    building the models (benchmarks/gpu_check.py) must not need TensorFlow."""
    from medgan_jax.gan import autoencoder

    return autoencoder.pre_stage(*args, **kwargs)


FAMILIES: dict[str, Family] = {
    "dcgan": Family(build=_dcgan),
    "pggan": Family(
        build=_pggan,
        phases=phases.progressive_phases,
        num_steps=_pggan_steps,
        multi_label="multi_hot",
        per_module_optimizers=True,
        generator_at=_pggan_grown,
    ),
    "bagan": Family(
        build=_bagan,
        always_conditional=True,
        multi_label="error",
        multi_label_error=(
            "BAGAN-GP needs one class per image; multi-label data (CheXpert) trains the "
            "conditional PGGAN (configs/pggan.py) instead."
        ),
        pre_stage=_bagan_autoencoder,
    ),
    "diffusion": Family(
        build=diffusion.build,
        phases=diffusion.training_phases,
        conditioning=("", "embedding"),
        create_state=diffusion.create_state,
        generate_programs=lambda config, denoiser: diffusion.generate_programs(
            denoiser, diffusion.Sampler.from_config(config)
        ),
        latent_dim=diffusion.latent_dim,
    ),
}


def family_of(config: ml_collections.ConfigDict) -> Family:
    """The table entry of config.gan.family, after checking the conditioning mode."""
    name = config.gan.family
    if name not in FAMILIES:
        raise ValueError(f"config.gan.family='{name}'; expected one of {sorted(FAMILIES)}.")
    family = FAMILIES[name]
    if config.gan.conditional not in family.conditioning:
        expected = " or ".join(f"'{mode}'" for mode in family.conditioning)
        raise ValueError(
            f"config.gan.conditional='{config.gan.conditional}'; the {name} family expects "
            f"{expected}."
        )
    return family


def is_conditional(config: ml_collections.ConfigDict) -> bool:
    """Whether the generator takes class labels."""
    return bool(config.gan.conditional) or family_of(config).always_conditional


def build_models(config: ml_collections.ConfigDict, num_classes: int):
    """(generator, discriminator) of the config's family for data with `num_classes`."""
    family = family_of(config)
    return family.build(config, num_classes if is_conditional(config) else 0)


def create_state(config, generator, discriminator, sharding=None) -> state.GANState:
    """The fresh training state of the config's family, from config.seed."""
    family = family_of(config)
    if family.create_state is not None:
        return family.create_state(config, generator, sharding)
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    return state.create_state(
        generator,
        discriminator,
        config.gan,
        image_shape,
        config.seed,
        sharding,
        per_module=family.per_module_optimizers,
    )


def generate_programs(config, generator) -> tuple:
    """Jitted (calibrate, generate) for the family's generator (steps.make_generate)."""
    family = family_of(config)
    if family.generate_programs is not None:
        return family.generate_programs(config, generator)
    return phases.generate_programs(generator)


def latent_dim(config: ml_collections.ConfigDict) -> int:
    """Values per latent vector of the family's generator."""
    return family_of(config).latent_dim(config)


def num_training_steps(config: ml_collections.ConfigDict) -> int:
    return family_of(config).num_steps(config)


def training_labels(records: Records, config: ml_collections.ConfigDict) -> Records:
    """The labels the GAN trains on: class ids (conditional), multi-hot vectors (a family
    that conditions on them, multi-label data), zeros otherwise."""
    family = family_of(config)
    if records.multi_label and family.multi_label == "error":
        raise DataError(family.multi_label_error)
    keep = is_conditional(config) and (not records.multi_label or family.multi_label == "multi_hot")
    return records if keep else records.replace_labels(np.zeros(len(records), np.int32))


def generator_at(config, generator, discriminator, step: int):
    """The generator a checkpoint of `step` samples with."""
    grown = family_of(config).generator_at
    return generator if grown is None else grown(config, generator, discriminator, step)


def combines_labels(config: ml_collections.ConfigDict) -> bool:
    """Whether the generator takes label combinations (multi-hot vectors)."""
    return family_of(config).multi_label == "multi_hot"
