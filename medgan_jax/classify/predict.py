"""A trained classifier as a function: predictions, and features for IS/FID/KID."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medgan_jax import checkpoint, parallel, runs
from medgan_jax.classify.state import build_model, num_outputs, scores_of
from medgan_jax.models.classifiers import HEAD, TRUNK


def load_variables(workdir: str) -> dict:
    """{'params', 'batch_stats'} of a classifier run's best checkpoint (else its latest)."""
    for subdir in ("best", "checkpoints"):
        if os.path.isdir(os.path.join(workdir, subdir)):
            mngr = checkpoint.manager(workdir, 1, None, subdir=subdir)
            step = mngr.latest_step()
            if step is not None:
                raw = checkpoint.restore_raw(mngr, step)
                mngr.close()
                variables = {"params": raw["params"], "batch_stats": raw.get("batch_stats", {})}
                # On this process's devices: each process predicts on its own.
                return jax.device_put(variables, parallel.replicated(parallel.local_mesh()))
    raise FileNotFoundError(f"No classifier checkpoint in {workdir}/best or /checkpoints.")


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained classifier run: its metadata, network and best weights."""

    run: runs.Run
    model: nn.Module
    variables: dict


def load_classifier(workdir: str) -> Classifier:
    """The network and best (else latest) weights of a train_classifier.py run."""
    run = runs.load(workdir, kind="classifier")
    config = run.config
    model = build_model(config, num_outputs(run.task, len(run.class_names)))
    return Classifier(run, model, load_variables(workdir))


def discriminator_trunk(gan_workdir: str) -> dict:
    """The trunk of a GAN run's discriminator (latest checkpoint) as classifier variables."""
    mngr = checkpoint.manager(gan_workdir, 1, None)
    step = mngr.latest_step()
    if step is None:
        raise FileNotFoundError(f"config.init.gan_discriminator: no checkpoint in {gan_workdir}.")
    d_params = checkpoint.restore_raw(mngr, step)["d_params"]
    mngr.close()
    if TRUNK not in d_params:
        raise ValueError(
            f"config.init.gan_discriminator: the discriminator in {gan_workdir} has no "
            f"'{TRUNK}' (only BAGAN's does; its modules are {list(d_params)})."
        )
    return {"params": {TRUNK: d_params[TRUNK]}, "batch_stats": {}}


def transfer(source: dict, target: dict, where: str) -> dict:
    """`target` variables with the trunk (and the head, if its shape fits) of `source`."""
    out = {"params": dict(target["params"]), "batch_stats": dict(target["batch_stats"])}
    for collection in ("params", "batch_stats"):
        if TRUNK in target[collection]:
            src, dst = source[collection].get(TRUNK), target[collection][TRUNK]
            if src is None or jax.tree.structure(src) != jax.tree.structure(dst):
                raise ValueError(f"The trunk in {where} has another architecture than this model.")
            shapes = [
                np.shape(a) != np.shape(b)
                for a, b in zip(jax.tree.leaves(src), jax.tree.leaves(dst))
            ]
            if any(shapes):
                raise ValueError(f"The trunk in {where} has other layer shapes than this model.")
            out[collection][TRUNK] = jax.tree.map(jnp.asarray, src)
    head_src, head_dst = source["params"].get(HEAD), target["params"].get(HEAD)
    if head_src is not None and jax.tree.map(np.shape, head_src) == jax.tree.map(
        np.shape, head_dst
    ):
        out["params"][HEAD] = jax.tree.map(jnp.asarray, head_src)
    return out


def make_feature_fn(workdir: str) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """A jit-compiled images in [-1, 1] (any size, 1 or 3 channels) -> {'features',
    'logits'} of the run's classifier, resized and channel-converted to its input."""
    classifier = load_classifier(workdir)
    model, data = classifier.model, classifier.run.config.data
    size, channels = data.image_size, data.channels

    @jax.jit  # weights are an argument, not constants baked into the program
    def features(variables: dict, images: jax.Array) -> dict[str, jax.Array]:
        images = _to_channels(images, channels)
        if images.shape[1:3] != (size, size):
            images = jax.image.resize(images, (images.shape[0], size, size, channels), "linear")
        logits, feats = model.apply(variables, images, train=False, return_features=True)
        return {"features": feats, "logits": logits}

    return functools.partial(features, classifier.variables)


def _to_channels(images: jax.Array, channels: int) -> jax.Array:
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return jnp.repeat(images, 3, axis=-1)
    # RGB -> luma with ITU-R 601 weights, as tf.image.rgb_to_grayscale.
    return images @ jnp.asarray([0.2989, 0.5870, 0.1140])[:, None]


def probabilities(workdir: str, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, K] of a classifier run (binary runs: [1 - p, p]; multi-label
    runs: per-label probabilities [N, L])."""
    task = runs.load(workdir, kind="classifier").task
    fn = make_feature_fn(workdir)
    probs = np.concatenate(
        [
            np.asarray(scores_of(task, fn(images[i : i + batch_size])["logits"]))
            for i in range(0, len(images), batch_size)
        ]
    ).astype(np.float32)
    return np.stack([1 - probs, probs], axis=1) if task == "binary" else probs
