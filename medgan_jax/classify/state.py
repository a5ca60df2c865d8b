"""The classifier train state, optimizer and loss for binary, multi-class and multi-label tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import optax.losses
from flax import struct

from medgan_jax import training
from medgan_jax.models.classifiers import Classifier, build_classifier

TASKS = ("binary", "multiclass", "multilabel")


@struct.dataclass
class ClassifierState:
    step: jax.Array
    key: jax.Array  # root key; step keys are fold_in(key, step)
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    # Early stopping, checkpointed with the weights so a resumed run stops where it would have.
    best_metric: jax.Array
    best_epoch: jax.Array
    first_bad_step: jax.Array  # -1 until the loss turns NaN/inf


def task_of(multi_label: bool, num_classes: int, requested: str = "auto") -> str:
    """binary (one sigmoid logit) for 2 classes, multiclass (softmax), or multilabel."""
    task = requested
    if requested == "auto":
        task = "multilabel" if multi_label else ("binary" if num_classes == 2 else "multiclass")
    if task not in TASKS:
        raise ValueError(f"config.task='{requested}'; expected 'auto' or one of {TASKS}.")
    if (task == "multilabel") != multi_label:
        raise ValueError(
            f"config.task='{task}' does not fit {'multi' if multi_label else 'single'}-label data."
        )
    return task


def num_outputs(task: str, num_classes: int) -> int:
    return 1 if task == "binary" else num_classes


def build_model(config: ml_collections.ConfigDict, outputs: int) -> Classifier:
    """config.model (name, options) with `outputs` logits, computing in config.precision's
    dtype (bfloat16: mixed precision; parameters and BatchNorm statistics stay float32)."""
    options = dict(config.model.options)
    if "dtype" in options:
        raise ValueError(
            "config.model.options.dtype is set; the computation dtype is config.precision "
            "('float32' | 'bfloat16')."
        )
    return build_classifier(
        config.model.name, outputs, dtype=training.compute_dtype(config), **options
    )


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps) -> optax.GradientTransformation:
    """Adam or SGD with momentum, linear warm-up then cosine (or constant) learning rate.
    total_steps may be traced: the train step takes it as an argument, so that runs of
    every length share one compiled program."""
    lr = learning_rate(cfg, total_steps)
    if cfg.name == "adam":
        tx = optax.adam(lr, b1=cfg.betas[0], b2=cfg.betas[1])
    elif cfg.name == "sgd":
        tx = optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        raise ValueError(f"config.optimizer.name='{cfg.name}'; expected adam or sgd.")
    if cfg.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay), tx)
    return tx


def learning_rate(cfg: ml_collections.ConfigDict, total_steps) -> Callable[[jax.Array], jax.Array]:
    """step -> learning rate: a linear warm-up over min(cfg.warmup_steps, total_steps // 5)
    steps (short runs warm up less), then optax's warmup_cosine_decay_schedule or a
    constant, for a total_steps that may be traced. The divisions are written as
    products with reciprocals, as XLA rewrites optax's divisions by constants, so that
    the rates equal optax's bit for bit (tested)."""
    if cfg.schedule not in ("cosine", "constant"):
        raise ValueError(
            f"config.optimizer.schedule='{cfg.schedule}'; expected cosine or constant."
        )
    peak = cfg.lr
    end = cfg.lr * cfg.end_lr_factor
    alpha = 0.0 if peak == 0.0 else end / peak

    def schedule(step):  # traced in the train step (no eager ops when the optimizer is built)
        warmup = jnp.minimum(int(cfg.warmup_steps), total_steps // 5)
        ramp = jnp.maximum(warmup, 1) if cfg.schedule == "cosine" else warmup
        decay = (jnp.maximum(total_steps, warmup + 1) - ramp).astype(jnp.float32)
        up = jnp.clip(step, 0, ramp) * (1 / jnp.maximum(ramp, 1).astype(jnp.float32))
        warming = (0.0 - peak) * (1 - up) + peak
        if cfg.schedule == "constant":
            return jnp.where(step < ramp, warming, peak)
        t = jnp.minimum(step - ramp, decay)
        cosine = 0.5 * (1 + jnp.cos(t * (jnp.pi * (1 / decay))))
        return jnp.where(step < ramp, warming, peak * ((1 - alpha) * cosine + alpha))

    return schedule


def create_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    image_shape: tuple[int, int, int],
    seed: int,
    higher_is_better: bool,
    sharding: jax.sharding.Sharding | None = None,
) -> ClassifierState:
    """Initialises the model and optimizer from `seed` in one compiled program."""
    state = jax.jit(make_init(model, tx, image_shape, higher_is_better))(seed)
    return state if sharding is None else jax.device_put(state, sharding)


def make_init(
    model: nn.Module,
    tx: optax.GradientTransformation,
    image_shape: tuple[int, int, int],
    higher_is_better: bool,
) -> Callable[[int], ClassifierState]:
    """seed -> the initial state (the seed traced, so one compiled program serves all)."""

    def init(seed) -> ClassifierState:
        key = jax.random.PRNGKey(seed)
        variables = model.init(jax.random.fold_in(key, 2**31 - 1), jnp.zeros((2, *image_shape)))
        return ClassifierState(
            step=jnp.zeros((), jnp.int32),
            key=key,
            params=variables["params"],
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(variables["params"]),
            best_metric=jnp.full((), -jnp.inf if higher_is_better else jnp.inf, jnp.float32),
            best_epoch=jnp.full((), -1, jnp.int32),
            first_bad_step=jnp.full((), -1, jnp.int32),
        )

    return init


def loss_fn(task: str, logits: jax.Array, batch: dict, class_weights: jax.Array) -> jax.Array:
    """Weighted mean loss over the valid examples (and unmasked labels) of a batch."""
    labels = batch["label"]
    valid = batch.get("valid", jnp.ones(logits.shape[0], bool)).astype(jnp.float32)
    soft = batch.get("soft_label")  # class probabilities, when config.synthetic.labels='soft'
    if task == "multiclass":
        if soft is None:
            losses = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
        else:
            losses = optax.losses.softmax_cross_entropy(logits, soft)
        weights = class_weights[labels] * valid
    elif task == "binary":
        y = labels.astype(jnp.float32) if soft is None else soft[:, 1]
        losses = optax.losses.sigmoid_binary_cross_entropy(logits[:, 0], y)
        weights = class_weights[labels] * valid
    else:
        y = labels.astype(jnp.float32)
        mask = batch.get("label_mask", jnp.ones_like(y))
        losses = optax.losses.sigmoid_binary_cross_entropy(logits, y)
        # class_weights[l] weighs label l's positives (negatives weigh 1).
        weights = mask * jnp.where(y > 0, class_weights[None, :], 1.0) * valid[:, None]
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1e-8)


def scores_of(task: str, logits: jax.Array) -> jax.Array:
    """P(positive) [N] for binary, class probabilities [N, K], or label probabilities [N, L]."""
    if task == "binary":
        return jax.nn.sigmoid(logits[:, 0])
    return jax.nn.softmax(logits) if task == "multiclass" else jax.nn.sigmoid(logits)


def class_weights(mode: str, labels: np.ndarray, mask: np.ndarray | None, num_classes: int):
    """Per-class loss weights: ones, or 'balanced' (N / (K * count_k), as scikit-learn;
    for multi-label, negatives / positives per label)."""
    if not mode:
        return np.ones(num_classes, np.float32)
    if mode != "balanced":
        raise ValueError(f"config.class_weighting='{mode}'; expected '' or 'balanced'.")
    if labels.ndim == 2:
        mask = np.ones_like(labels) if mask is None else mask
        pos = (labels * mask).sum(0)
        neg = ((1 - labels) * mask).sum(0)
        return (neg / np.maximum(pos, 1)).astype(np.float32)
    counts = np.bincount(labels, minlength=num_classes)
    return (len(labels) / (num_classes * np.maximum(counts, 1))).astype(np.float32)
