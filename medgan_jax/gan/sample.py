"""Writes N images from a trained GAN's EMA generator as PNGs plus a manifest.

  python -m medgan_jax.gan.sample --workdir=runs/dcgan --num=1000 --out=DIR \
      [--class_name=malignant] [--seed=0] [--step=-1] [--sample_steps=18 --guidance=1]

Reads the run's metadata (runs.py) and latest (or --step) checkpoint. The same seed gives
the same images. A conditional PGGAN also takes label combinations ('Edema,Lung Lesion').
PGGAN images are at the final resolution (a checkpoint not yet grown to it is upscaled).
A diffusion run samples with its config's Heun steps and guidance scale unless
--sample_steps / --guidance say otherwise. DIR/manifest.json records checkpoint step,
seed, class, the sampler's settings (diffusion) and files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from PIL import Image

from medgan_jax import app as medgan_app
from medgan_jax import checkpoint, parallel, runs
from medgan_jax.gan import families
from medgan_jax.gan.state import GANState
from medgan_jax.gan.steps import calibration_latents
from medgan_jax.images import to_uint8
from medgan_jax.models.layers import upsample_nearest


@dataclasses.dataclass(frozen=True)
class Generator:
    """A GAN run's EMA generator at one checkpoint, ready to sample."""

    run: runs.Run
    model: nn.Module
    params: dict
    stats: dict  # its BatchNorm statistics (recalibrated before sampling)
    step: int


def load_generator(workdir: str, step: int = -1, state: GANState | None = None) -> Generator:
    """The EMA generator of a GAN run's latest (or `step`) checkpoint; or of `state`, the
    run's final state still in memory (its training job's return value)."""
    run = runs.load(workdir, kind="gan")
    config = run.config
    generator, discriminator = families.build_models(config, len(run.class_names))
    if state is None:
        state = families.create_state(config, generator, discriminator)
        step = resolve_step(workdir, step)
        state = checkpoint.restore(checkpoint.manager(workdir, 1, None), step, state)
    else:
        step = families.num_training_steps(config)
    generator = families.generator_at(config, generator, discriminator, step)
    params, stats = parallel.local_copy((state.ema_params, state.g_stats))
    return Generator(run, generator, params, stats, int(step))


def resolve_step(workdir: str, step: int = -1) -> int:
    """`step`, or the latest checkpoint step of the run when `step` < 0."""
    if step < 0:
        step = checkpoint.manager(workdir, 1, None).latest_step()
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints; train the GAN first.")
    return int(step)


def sample_batches(
    workdir: str,
    num: int,
    class_name: str = "",
    seed: int = 0,
    step: int = -1,
    batch_size: int = 256,
    state: GANState | None = None,
    sample_steps: int = 0,
    guidance: float | None = None,
    part: tuple[int, int] = (0, 1),
) -> Iterator[np.ndarray]:
    """Yields `num` images in [-1, 1] from a run's EMA generator, `batch_size` at a time.

    Image i's latent is drawn from fold_in(seed, i), so the images do not depend on the
    batch size; a batch that divides over this process's devices is sharded over them.
    `sample_steps` / `guidance`: a diffusion run's sampler (0 / None: its config's).
    `part` = (k, n): only batches k, k + n, k + 2n, ... (one process's share).
    """
    g = load_generator(workdir, step, state)
    config = with_sampler(g.run.config, sample_steps, guidance)
    class_names, params = list(g.run.class_names), g.params
    labels = jnp.zeros((batch_size,), jnp.int32)
    if g.run.conditional:
        labels = _labels(class_name, class_names, families.combines_labels(config), batch_size)
    calibrate, generate = families.generate_programs(config, g.model)
    latent_dim = families.latent_dim(config)
    stats = g.stats
    if jax.tree.leaves(stats):  # BatchNorm statistics recomputed for the EMA weights
        stats = calibrate(
            params, stats, *calibration_latents(config.seed, latent_dim, len(class_names))
        )
    latents = jax.jit(_latents, static_argnums=(2, 3))
    key = jax.random.PRNGKey(seed)
    mesh = _sampling_mesh(batch_size)
    if mesh is not None:
        params, stats = jax.device_put((params, stats), parallel.replicated(mesh))
        labels = jax.device_put(labels, parallel.batch_sharding(mesh))
    index, count = part
    for start in range(index * batch_size, num, count * batch_size):
        z = latents(key, start, batch_size, latent_dim)
        if mesh is not None:
            z = jax.device_put(z, parallel.batch_sharding(mesh))
        images = generate(params, stats, z, labels)
        if images.shape[1] < config.data.image_size:  # a PGGAN not yet fully grown
            images = upsample_nearest(images, config.data.image_size // images.shape[1])
        yield np.asarray(images)[: min(batch_size, num - start)]


def _sampling_mesh(batch_size: int) -> Mesh | None:
    """A mesh over this process's devices (each process of a multi-host run samples on
    its own), or None when the batch does not divide over them."""
    mesh = parallel.local_mesh()
    if mesh.devices.size < 2 or batch_size % mesh.devices.size:
        return None
    return mesh


def with_sampler(config, sample_steps: int = 0, guidance: float | None = None):
    """A diffusion run's config with other sampler settings (0 / None: keep its own)."""
    if not sample_steps and guidance is None:
        return config
    if config.gan.family != "diffusion":
        raise ValueError(
            f"sample_steps / guidance set the diffusion sampler; this is a {config.gan.family} run."
        )
    config = config.copy_and_resolve_references()
    if sample_steps:
        config.diffusion.sample_steps = sample_steps
    if guidance is not None:
        config.diffusion.guidance = float(guidance)
    return config


def sampler_settings(config) -> dict:
    """What the manifest records about how a diffusion run's images were sampled."""
    if config.gan.family != "diffusion":
        return {}
    return {"sample_steps": config.diffusion.sample_steps, "guidance": config.diffusion.guidance}


def _labels(class_name: str, class_names: list[str], combinations: bool, batch_size: int):
    """Class ids for one class, or (PGGAN) a multi-hot vector for 'A,B' combinations."""
    names = [n.strip() for n in class_name.split(",")] if class_name else [class_name]
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise ValueError(f"class_name='{class_name}'; this GAN knows {class_names}.")
    if len(names) == 1:
        return jnp.full((batch_size,), class_names.index(names[0]), jnp.int32)
    if not combinations:
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
    state: GANState | None = None,
    sample_steps: int = 0,
    guidance: float | None = None,
) -> dict:
    """Writes `num` PNGs and manifest.json to `out`; returns the manifest. `state`: the
    run's final state, when its training job just returned it; `sample_steps` /
    `guidance` as in sample_batches. Several processes split the batches between them
    (each writes its own files; process 0 the manifest) and all return when every file
    is written."""
    run = runs.load(workdir)
    class_names = run.class_names
    if state is None:
        step = resolve_step(workdir, step)
    else:
        step = families.num_training_steps(run.config)
    os.makedirs(out, exist_ok=True)
    files = [f"{class_name or 'sample'}_{i:06d}.png" for i in range(num)]
    part = (jax.process_index(), jax.process_count())
    batches = sample_batches(
        workdir, num, class_name, seed, step, batch_size, state, sample_steps, guidance, part
    )
    starts = range(part[0] * batch_size, num, part[1] * batch_size)
    for start, images in zip(starts, batches):
        for name, image in zip(files[start:], to_uint8(images)):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                os.path.join(out, name)
            )
    manifest = {
        "workdir": os.path.abspath(workdir),
        "checkpoint_step": step,
        "seed": seed,
        "class_name": class_name or (",".join(class_names)),
        "num": num,
        **sampler_settings(with_sampler(run.config, sample_steps, guidance)),
        "files": files,
    }
    if part[0] == 0:
        with open(os.path.join(out, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
    if part[1] > 1:  # callers read the folder next
        multihost_utils.sync_global_devices(f"generate_images {out}")
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
    sample_steps = flags.DEFINE_integer("sample_steps", 0, "Diffusion: Heun steps (0 = config's).")
    guidance = flags.DEFINE_float(
        "guidance", None, "Diffusion: guidance scale (0 unconditional, 1 conditional)."
    )

    def run(argv):
        del argv
        medgan_app.configure()
        folder = out.value or os.path.join(workdir.value, "generated")
        manifest = generate_images(
            workdir.value,
            num.value,
            folder,
            class_name.value,
            seed.value,
            step.value,
            batch_size.value,
            sample_steps=sample_steps.value,
            guidance=guidance.value,
        )
        print(f"Wrote {manifest['num']} images from step {manifest['checkpoint_step']} to {folder}")

    app.run(run)


if __name__ == "__main__":
    main()
