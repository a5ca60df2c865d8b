"""Writes N images from a trained GAN's EMA generator as PNGs plus a manifest.

  python -m medgan_jax.gan.sample --workdir=runs/dcgan --num=1000 --out=DIR \
      [--class_name=malignant] [--seed=0] [--step=-1]

Reads the run's config.json and latest (or --step) checkpoint. The same seed gives
the same images. A conditional PGGAN also takes label combinations ('Edema,Lung Lesion').
PGGAN images are at the final resolution (a checkpoint not yet grown to it is upscaled).
DIR/manifest.json records checkpoint step, seed, class and files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from PIL import Image

from medgan_jax import checkpoint, parallel
from medgan_jax.gan import progressive
from medgan_jax.gan.state import create_state
from medgan_jax.gan.steps import calibration_latents, make_generate
from medgan_jax.gan.train import build_models, is_conditional
from medgan_jax.images import to_uint8
from medgan_jax.models.layers import upsample_nearest


def load_run(workdir: str, step: int = -1):
    """(config, generator, EMA params, EMA batch stats, step) of a training run."""
    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    class_names = _class_names(workdir)
    generator, discriminator = build_models(config, len(class_names))
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    state = create_state(generator, discriminator, config.gan, image_shape, config.seed)
    step = resolve_step(workdir, step)
    state = checkpoint.restore(checkpoint.manager(workdir, 1, None), step, state)
    if config.gan.family == "pggan":
        generator = _grown_generator(config, generator, discriminator, step)
    return config, generator, state.ema_params, state.g_stats, int(step), class_names


def _grown_generator(config, generator, discriminator, step: int):
    """PGGAN: the generator as grown by `step` (sample_batches upscales its images)."""
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


def resolve_step(workdir: str, step: int = -1) -> int:
    """`step`, or the latest checkpoint step of the run when `step` < 0."""
    if step < 0:
        step = checkpoint.manager(workdir, 1, None).latest_step()
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints; train the GAN first.")
    return int(step)


def _class_names(workdir: str) -> list[str]:
    """Class names in label order, as written by the training run."""
    with open(os.path.join(workdir, "classes.json")) as f:
        return json.load(f)


def sample_batches(
    workdir: str,
    num: int,
    class_name: str = "",
    seed: int = 0,
    step: int = -1,
    batch_size: int = 256,
) -> Iterator[np.ndarray]:
    """Yields `num` images in [-1, 1] from a run's EMA generator, `batch_size` at a time.

    Image i's latent is drawn from fold_in(seed, i), so the images do not depend on the
    batch size.
    """
    config, generator, params, stats, _, class_names = load_run(workdir, step)
    labels = jnp.zeros((batch_size,), jnp.int32)
    if is_conditional(config):
        labels = _labels(class_name, class_names, config.gan.family, batch_size)
    calibrate, generate = map(jax.jit, make_generate(generator))
    calibration = calibration_latents(config.seed, config.gan.latent_dim, len(class_names))
    stats = calibrate(params, stats, *calibration)
    latents = jax.jit(_latents, static_argnums=(2, 3))
    key = jax.random.PRNGKey(seed)
    for start in range(0, num, batch_size):
        z = latents(key, start, batch_size, config.gan.latent_dim)
        images = generate(params, stats, z, labels)
        if images.shape[1] < config.data.image_size:  # a PGGAN not yet fully grown
            images = upsample_nearest(images, config.data.image_size // images.shape[1])
        yield np.asarray(images)[: min(batch_size, num - start)]


def _labels(class_name: str, class_names: list[str], family: str, batch_size: int):
    """Class ids for one class, or (PGGAN) a multi-hot vector for 'A,B' combinations."""
    names = [n.strip() for n in class_name.split(",")] if class_name else [class_name]
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise ValueError(f"class_name='{class_name}'; this GAN knows {class_names}.")
    if len(names) == 1:
        return jnp.full((batch_size,), class_names.index(names[0]), jnp.int32)
    if family != "pggan":
        raise ValueError(
            f"class_name='{class_name}' combines labels; only a conditional PGGAN (multi-hot "
            "labels) generates label combinations."
        )
    vector = np.zeros(len(class_names), np.float32)
    vector[[class_names.index(n) for n in names]] = 1.0
    return jnp.broadcast_to(jnp.asarray(vector), (batch_size, len(class_names)))


def _latents(key: jax.Array, start: int, batch_size: int, latent_dim: int) -> jax.Array:
    indices = start + jnp.arange(batch_size)
    draw = lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,))
    return jax.vmap(draw)(indices)


def generate_images(
    workdir: str,
    num: int,
    out: str,
    class_name: str = "",
    seed: int = 0,
    step: int = -1,
    batch_size: int = 256,
) -> dict:
    """Writes `num` PNGs and manifest.json to `out`; returns the manifest."""
    step, class_names = resolve_step(workdir, step), _class_names(workdir)
    os.makedirs(out, exist_ok=True)
    files = []
    batches = sample_batches(workdir, num, class_name, seed, step, batch_size)
    for images in batches:
        for image in to_uint8(images):
            name = f"{class_name or 'sample'}_{len(files):06d}.png"
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                os.path.join(out, name)
            )
            files.append(name)
    manifest = {
        "workdir": os.path.abspath(workdir),
        "checkpoint_step": step,
        "seed": seed,
        "class_name": class_name or (",".join(class_names)),
        "num": num,
        "files": files,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main() -> None:
    # Flags are defined only when run as a program, so importing this module is free.
    workdir = flags.DEFINE_string("workdir", None, "The GAN training run.", required=True)
    num = flags.DEFINE_integer("num", 1000, "How many images.")
    out = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/generated).")
    class_name = flags.DEFINE_string("class_name", "", "Class to generate (conditional GANs).")
    seed = flags.DEFINE_integer("seed", 0, "Latent seed.")
    step = flags.DEFINE_integer("step", -1, "Checkpoint step; -1 = latest.")
    batch_size = flags.DEFINE_integer("batch_size", 256, "Images generated per device call.")

    def run(argv):
        del argv
        parallel.initialize_distributed()
        folder = out.value or os.path.join(workdir.value, "generated")
        manifest = generate_images(
            workdir.value,
            num.value,
            folder,
            class_name.value,
            seed.value,
            step.value,
            batch_size.value,
        )
        print(f"Wrote {manifest['num']} images from step {manifest['checkpoint_step']} to {folder}")

    app.run(run)


if __name__ == "__main__":
    main()
