"""jit-compiled classifier programs: augment on device; forward, weighted loss, update."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from medgan_jax import training
from medgan_jax.classify.state import ClassifierState, loss_fn, scores_of
from medgan_jax.models.classifiers import TRUNK


def step_keys(root_key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(augmentation key, dropout key) of a step."""
    aug_key, dropout_key = jax.random.split(jax.random.fold_in(root_key, step))
    return aug_key, dropout_key


def make_augment_batch(augment: Callable):
    """(images, state.key, state.step) -> images augmented with the step's key: the
    augmentation as a program of its own, run before the train step, so that one compiled
    train step serves runs with every augmentation (a study's methods)."""

    def augment_batch(images: jax.Array, root_key: jax.Array, step: jax.Array) -> jax.Array:
        return augment(images, step_keys(root_key, step)[0])

    return augment_batch


def make_train_step(
    model: nn.Module,
    optimizer: Callable[[jax.Array], optax.GradientTransformation],
    task: str,
    freeze_trunk_steps: int = 0,
):
    """state, batch, class_weights, total_steps -> (state, metrics), with the optimizer
    `optimizer(total_steps)` (its learning-rate schedule's length), on the batch's images
    as given (augmented by make_augment_batch's program). The trunk is frozen for the
    first N steps. The class weights and the schedule's length are arguments, not
    constants, so that runs with other weights or lengths (a study's cells) share one
    compiled program."""

    def train_step(
        state: ClassifierState, batch: dict, class_weights: jax.Array, total_steps: jax.Array
    ):
        tx = optimizer(total_steps)
        _, dropout_key = step_keys(state.key, state.step)
        images = batch["image"]

        def compute_loss(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                images,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            return loss_fn(task, logits, batch, class_weights), (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
            state.params
        )
        deltas, opt_state = tx.update(grads, state.opt_state, state.params)
        if freeze_trunk_steps and TRUNK in deltas:
            frozen = state.step < freeze_trunk_steps
            deltas = {
                **deltas,
                TRUNK: jax.tree.map(lambda d: jnp.where(frozen, 0.0, d), deltas[TRUNK]),
            }
        params = optax.apply_updates(state.params, deltas)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=updates.get("batch_stats", state.batch_stats),
            opt_state=opt_state,
            first_bad_step=training.first_bad_step(state.first_bad_step, state.step, loss),
        )
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads)}
        if task != "multilabel":
            predicted = (
                jnp.argmax(logits, -1) if task == "multiclass" else (logits[:, 0] > 0).astype(int)
            )
            metrics["accuracy"] = jnp.mean(predicted == batch["label"])
        return new_state, metrics

    return train_step


def make_predict(model: nn.Module, task: str):
    """(params, batch_stats, images) -> (scores, logits, features) in inference mode."""

    def predict(params, batch_stats, images):
        logits, features = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=False,
            return_features=True,
        )
        return scores_of(task, logits), logits, features

    return predict
