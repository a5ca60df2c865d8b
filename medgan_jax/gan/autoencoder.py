"""BAGAN-GP's first stage and the hand-over to adversarial training.

1. `train_autoencoder`: the supervised autoencoder (mean absolute reconstruction error,
   Adam) on every class, jit-compiled over the mesh, checkpointed in
   workdir/autoencoder/ and resumed like any run; its progress lines, scalars
   (autoencoder/metrics.jsonl) and a reconstruction grid (samples/autoencoder.png).
2. `fit_class_gaussians`: mean and Cholesky factor of the covariance of the labelled
   latents of each class's training images (BAGAN's class-conditional latents).
3. `initialise_gan`: G <- decoder (+ embedding, or the fitted Gaussians), D's trunk <-
   encoder's trunk. Only a fresh GAN run does this; a resumed one restores its own.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct
from jax.experimental import multihost_utils

from medgan_jax import parallel, training
from medgan_jax.data import Records, pipeline
from medgan_jax.gan.state import GANState
from medgan_jax.images import save_image_grid
from medgan_jax.models import bagan
from medgan_jax.writers import Progress


@struct.dataclass
class AutoencoderState:
    step: jax.Array
    params: dict
    stats: dict  # the decoder's BatchNorm statistics
    opt: optax.OptState
    first_bad_step: jax.Array  # -1 until the loss turns NaN/inf


def build_autoencoder(config: ml_collections.ConfigDict, num_classes: int) -> bagan.Autoencoder:
    data, b = config.data, config.bagan
    return bagan.Autoencoder(
        resolution=data.image_size,
        channels=data.channels,
        width=b.width,
        latent_dim=config.gan.latent_dim,
        num_classes=num_classes,
    )


def _optimizer(b: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.adam(b.autoencoder_lr, b1=b.autoencoder_betas[0], b2=b.autoencoder_betas[1])


def make_autoencoder_step(model: bagan.Autoencoder, tx: optax.GradientTransformation):
    """(state, batch) -> (state, {'loss'}): one Adam step on the mean absolute error."""

    def step(state: AutoencoderState, batch: dict):
        def loss_fn(params):
            (reconstruction, _), new = model.apply(
                {"params": params, "batch_stats": state.stats},
                batch["image"],
                batch["label"],
                train=True,
                mutable=["batch_stats"],
            )
            return jnp.mean(jnp.abs(reconstruction - batch["image"])), new["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(
            step=state.step + 1,
            params=params,
            stats=stats,
            opt=opt,
            # As the GAN step: the step whose loss or update is not finite.
            first_bad_step=training.first_bad_step(
                state.first_bad_step, state.step, loss, optax.global_norm(params)
            ),
        )
        return new, {"loss": loss}

    return step


def _initial_state(model, tx, config, mesh) -> AutoencoderState:
    size, channels = config.data.image_size, config.data.channels

    def init():
        images = jnp.zeros((2, size, size, channels))
        variables = model.init(jax.random.PRNGKey(config.seed), images, jnp.zeros(2, jnp.int32))
        params = variables["params"]
        return AutoencoderState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            stats=variables["batch_stats"],
            opt=tx.init(params),
            first_bad_step=jnp.full((), -1, jnp.int32),
        )

    return jax.device_put(jax.jit(init)(), parallel.replicated(mesh))


def train_autoencoder(
    config: ml_collections.ConfigDict, workdir: str, records: Records, mesh
) -> AutoencoderState:
    """Trains (or resumes, or just restores) the autoencoder for `bagan.autoencoder_steps`."""
    b = config.bagan
    model, tx = build_autoencoder(config, records.num_classes), _optimizer(b)
    run = training.open_run(
        workdir, mesh, save_every=config.checkpoint_every, keep=1, subdir="autoencoder"
    )
    state, start = run.restore(_initial_state(model, tx, config, mesh))
    if start >= b.autoencoder_steps:
        run.close()
        return state
    step_fn = training.jit_step(make_autoencoder_step(model, tx), mesh)
    batches = pipeline.global_batches(
        records,
        config.data,
        mesh,
        global_batch_size=b.autoencoder_batch_size,
        train=True,
        start_step=start,
    )
    progress = Progress(b.autoencoder_steps, b.autoencoder_batch_size, start)
    last = b.autoencoder_steps
    for step in range(start + 1, last + 1):
        batch = next(batches)
        state, metrics = step_fn(state, batch)
        if training.every(step, config.log_every, last):
            _check_finite(state)
            loss = float(metrics["loss"])
            run.writer.write(step, {"reconstruction_mae": loss})
            if run.is_main:
                print("autoencoder " + progress.line(step, {"mae": loss}), flush=True)
        if training.every(step, config.checkpoint_every, last):
            _check_finite(state)  # never checkpoint a diverged state
            run.save(step, state)
    batches.close()  # see pipeline.global_batches
    run.close()
    _save_reconstructions(model, state, batch, os.path.join(workdir, "samples", "autoencoder.png"))
    return state


def _check_finite(state: AutoencoderState) -> None:
    training.check_finite(
        state.first_bad_step,
        "The BAGAN autoencoder's reconstruction loss",
        "Lower config.bagan.autoencoder_lr or check the data.",
    )


def _save_reconstructions(model, state, batch, path: str, num: int = 8) -> None:
    """Real images (top row) over their reconstructions (bottom row)."""
    images = multihost_utils.process_allgather(batch["image"], tiled=True)[:num]
    labels = multihost_utils.process_allgather(batch["label"], tiled=True)[:num]
    variables = {"params": state.params, "batch_stats": state.stats}
    reconstruction, _ = jax.jit(lambda v, x, y: model.apply(v, x, y, train=False))(
        variables, images, labels
    )
    if jax.process_index() == 0:
        grid = np.concatenate([np.asarray(images), np.asarray(reconstruction)])
        save_image_grid(path, grid, columns=len(images), scale=max(1, 128 // images.shape[1]))


def labelled_latents(
    config: ml_collections.ConfigDict, state: AutoencoderState, records: Records, mesh
) -> tuple[np.ndarray, np.ndarray]:
    """(encoder(x) * embed(y) for every training image [N, D], their class ids [N])."""
    model = build_autoencoder(config, records.num_classes)
    variables = {"params": state.params, "batch_stats": state.stats}
    encode = jax.jit(lambda v, x, y: model.apply(v, x, y, train=False)[1])
    batches = pipeline.global_batches(
        records, config.data, mesh, global_batch_size=config.batch_size, train=False
    )
    return training.map_split(
        lambda batch: (encode(variables, batch["image"], batch["label"]), batch["label"]),
        batches,
        records,
    )


def fit_class_gaussians(
    latents: np.ndarray, labels: np.ndarray, num_classes: int, ridge: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Per class: mean [C, D] and lower Cholesky factor of the covariance [C, D, D].

    A minority class has fewer images than latent dimensions, so its sample covariance
    is singular; `ridge` times the mean variance is added to its diagonal.
    """
    latents = np.asarray(latents, np.float64)
    dim = latents.shape[1]
    means, trils = np.zeros((num_classes, dim)), np.zeros((num_classes, dim, dim))
    for c in range(num_classes):
        members = latents[labels == c]
        if len(members) < 2:
            raise ValueError(
                f"BAGAN's class Gaussians need at least 2 training images of class {c}; "
                f"it has {len(members)}."
            )
        cov = np.cov(members, rowvar=False)
        cov += ridge * max(np.trace(cov) / dim, 1e-12) * np.eye(dim)
        means[c], trils[c] = members.mean(0), np.linalg.cholesky(cov)
    return means.astype(np.float32), trils.astype(np.float32)


def initialise_gan(
    state: GANState,
    autoencoder: AutoencoderState,
    class_stats: tuple[np.ndarray, np.ndarray] | None = None,
    init_discriminator: bool = True,
) -> GANState:
    """G from the decoder (and embedding or class Gaussians), D's trunk from the encoder's
    (unless `init_discriminator` is off); the EMA generator starts as G. Optimizer states
    stay fresh."""
    ae = autoencoder.params
    g_params = {**state.g_params, "decoder": ae["decoder"]}
    if "embedding" in state.g_params:
        g_params["embedding"] = ae["embedding"]
    if class_stats is not None:
        g_params["class_mean"], g_params["class_scale_tril"] = map(jnp.asarray, class_stats)
    g_params = jax.tree.map(jnp.array, g_params)  # copies: donated leaves must not alias
    g_stats = {**state.g_stats, "decoder": jax.tree.map(jnp.array, autoencoder.stats["decoder"])}
    d_params = state.d_params
    if init_discriminator:
        d_params = {**d_params, "trunk": jax.tree.map(jnp.array, ae["encoder"]["trunk"])}
    return state.replace(
        g_params=g_params,
        g_stats=g_stats,
        d_params=d_params,
        ema_params=jax.tree.map(jnp.array, g_params),
    )


def pre_stage(config, workdir: str, records: Records, mesh, state: GANState) -> GANState:
    """BAGAN's stage before adversarial training: trains (or restores) the autoencoder,
    then initialises G and D from it."""
    autoencoder = train_autoencoder(config, workdir, records, mesh)
    class_stats = None
    if config.bagan.latent_sampling == "class_gaussian":
        latents, labels = labelled_latents(config, autoencoder, records, mesh)
        class_stats = fit_class_gaussians(latents, labels, records.num_classes)
    state = initialise_gan(state, autoencoder, class_stats, config.bagan.init_discriminator)
    return jax.device_put(state, parallel.replicated(mesh))
