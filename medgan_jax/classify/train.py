"""train_classifier.py's job: train on real (+ synthetic) images with early stopping,
then choose the decision threshold on the validation set with the best checkpoint and
evaluate that checkpoint, at that threshold, on the test set."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from medgan_jax import checkpoint, parallel, runs, training
from medgan_jax.augment import registry as augment_registry
from medgan_jax.classify import mixing, predict
from medgan_jax.classify.state import (
    ClassifierState,
    build_model,
    class_weights,
    make_init,
    make_optimizer,
    num_outputs,
    task_of,
)
from medgan_jax.classify.steps import make_augment_batch, make_predict, make_train_step
from medgan_jax.data import load_split, pipeline, subsets
from medgan_jax.data.records import DataError, Records
from medgan_jax.metrics import classification
from medgan_jax.models.keras_weights import load_keras_weights
from medgan_jax.parallel import DATA_AXIS
from medgan_jax.writers import Progress

CHECKPOINT_POLICIES = ("every_epoch", "at_end")
RESIDENT_SPLITS = training.BuiltOnce(capacity=4)  # evaluation splits held on device
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "average_precision": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "loss": False,
}


@jax.jit
def _device_copy(tree):
    """A copy of `tree` in new device buffers, as one program: jnp.copy leaf by leaf
    compiles and dispatches one program per leaf shape (nine for the demo's SimpleCNN)."""
    return jax.tree.map(jnp.copy, tree)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (resuming from workdir) and returns the test metrics written to metrics.json."""
    started = time.perf_counter()
    mesh = training.mesh_of(config)
    is_main = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if config.early_stopping.metric not in HIGHER_IS_BETTER:
        raise ValueError(
            f"config.early_stopping.metric='{config.early_stopping.metric}'; expected one of "
            f"{list(HIGHER_IS_BETTER)}."
        )
    check_threshold_config(config.threshold)
    if config.checkpoints not in CHECKPOINT_POLICIES:
        raise ValueError(
            f"config.checkpoints={config.checkpoints!r}; expected one of {CHECKPOINT_POLICIES}."
        )
    splits = load_splits(config, workdir)
    train = splits["train"]
    task = task_of(train.multi_label, train.num_classes, config.task)
    runs.write(workdir, "classifier", config, train.class_names, task=task)
    steps_per_epoch = config.steps_per_epoch or max(
        -(-len(train) // config.batch_size), -(-config.min_train_steps // config.num_epochs)
    )
    total_steps = steps_per_epoch * config.num_epochs
    weights = class_weights(
        config.class_weighting, train.labels, train.label_mask, train.num_classes
    )
    weights = jax.device_put(weights, parallel.replicated(mesh))
    programs = classifier_programs(config, task, train.num_classes, steps_per_epoch, mesh)
    total_steps_arg = jax.device_put(np.int32(total_steps), parallel.replicated(mesh))
    higher = HIGHER_IS_BETTER[config.early_stopping.metric]
    every_epoch = config.checkpoints == "every_epoch"
    run = training.open_run(workdir, mesh, save_every=1, keep=config.keep_checkpoints)
    best_checkpoint = checkpoint.manager(workdir, 1, 1, subdir="best")
    state, start = run.restore(programs.init(config.seed))
    if start == 0:
        state = jax.device_put(
            initialise_weights(config, programs.model, state), parallel.replicated(mesh)
        )
    parallel.check_batch_size(config.batch_size, mesh)
    batches = pipeline.global_batches(
        train, config.data, mesh, global_batch_size=config.batch_size, train=True, start_step=start
    )
    progress = Progress(total_steps, config.batch_size, start)
    patience = config.early_stopping.patience
    best = None  # the best epoch's weights, kept on device
    step = start  # counted on the host: reading state.step would wait for every step
    for epoch in range(start // steps_per_epoch, config.num_epochs):
        if patience and epoch - int(state.best_epoch) > patience:
            break  # resumed after the run had already stopped early
        for _ in range(steps_per_epoch):
            batch = augmented(programs.augment, next(batches), state)
            state, metrics = programs.train_step(state, batch, weights, total_steps_arg)
            step += 1
            if step % config.log_every == 0:
                scalars = _finite_scalars(state, metrics)
                run.writer.write(step, {f"train/{k}": v for k, v in scalars.items()})
                if is_main:
                    print(progress.line(step, scalars), flush=True)
        _finite_scalars(state, metrics)
        val = evaluate_split(programs, state, splits["val"], task, config, mesh)
        value = val["summary"][config.early_stopping.metric]
        value = None if value is None else float(np.float32(value))  # as stored in the state
        improved = value is not None and (
            value > float(state.best_metric) + config.early_stopping.min_delta
            if higher
            else value < float(state.best_metric) - config.early_stopping.min_delta
        )
        if improved:
            # Replicated over the mesh like the rest of the state: a several-process run
            # saves only global arrays.
            best_fields = (np.float32(value), np.int32(epoch))
            best_metric, best_epoch = jax.device_put(best_fields, parallel.replicated(mesh))
            state = state.replace(best_metric=best_metric, best_epoch=best_epoch)
            best = _device_copy((state.params, state.batch_stats))
            if every_epoch:
                checkpoint.save(best_checkpoint, step, state, force=True)
        if every_epoch:
            run.save(step, state)
        scalars = {f"val/{k}": v for k, v in val["summary"].items() if v is not None}
        run.writer.write(step, {"epoch": epoch + 1, **scalars})
        if is_main:
            marks = "  (best)" if improved else ""
            print(
                f"epoch {epoch + 1}/{config.num_epochs}  "
                + "  ".join(f"{k} {v:.4f}" for k, v in scalars.items())
                + marks,
                flush=True,
            )
        if patience and epoch - int(state.best_epoch) >= patience:
            logging.warning(
                "Early stopping after epoch %d (best: %d).", epoch + 1, int(state.best_epoch) + 1
            )
            break
    batches.close()  # see pipeline.global_batches
    run.checkpoints.wait_until_finished()
    best_checkpoint.wait_until_finished()
    if best is not None:
        state = state.replace(params=best[0], batch_stats=best[1])
    elif best_checkpoint.latest_step() is not None:  # resumed after its best epoch
        state = checkpoint.restore(best_checkpoint, best_checkpoint.latest_step(), state)
    if not every_epoch:  # the best weights, for predict.py and evaluate.py
        checkpoint.save(best_checkpoint, step, state, force=True)
    val = evaluate_split(programs, state, splits["val"], task, config, mesh)
    threshold = choose_threshold(config.threshold, task, val["arrays"], train.class_names)
    val = summarise_split(splits["val"], val["arrays"]["scores"], task, threshold["value"])
    test = evaluate_split(programs, state, splits["test"], task, config, mesh, threshold["value"])
    results = {
        "wall_seconds": time.perf_counter() - started,
        "task": task,
        "steps": step,
        "epochs": step // steps_per_epoch,
        "best_epoch": int(state.best_epoch) + 1,
        "early_stopping_metric": config.early_stopping.metric,
        "best_val": float(state.best_metric),
        "train_images": len(train),
        "synthetic_images": int(mixing.is_synthetic(train).sum()),
        "threshold": threshold,
        "val_summary": val["summary"],
        "test": test["report"],
        "test_summary": test["summary"],
    }
    if is_main:
        # The threshold travels with the predictions, so that thresholded metrics on
        # resampled test sets use the one chosen on validation.
        saved = {"task": task, "class_names": np.asarray(train.class_names)}
        if threshold["value"] is not None:
            saved["threshold"] = np.asarray(threshold["value"], np.float64)
        for split, result in (("val", val), ("test", test)):
            path = os.path.join(workdir, f"{split}_predictions.npz")
            np.savez(path, **saved, **result["arrays"])
        # Written last: metrics.json marks the run done (the study skips such cells).
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(results, f, indent=1)
        print(
            f"test  {threshold_text(threshold)}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in test["summary"].items() if v is not None),
            flush=True,
        )
    run.close()
    best_checkpoint.close()
    return results


def load_splits(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Records]:
    """train (+ added images, optionally rebalanced), val and test; manifests of each."""
    train = load_split(config.data, "train")
    if config.synthetic.amount not in ("", "0"):
        added = mixing.added_records(config.synthetic, train, config.data, workdir, config.seed)
        train = mixing.mix(train, added)
        if config.synthetic.labels == "soft":
            train = mixing.with_soft_labels(train, config.synthetic.prior_classifier, config.data)
        elif config.synthetic.labels != "hard":
            raise ValueError(
                f"config.synthetic.labels='{config.synthetic.labels}'; expected hard or soft."
            )
    if config.sampling == "balanced":
        train = oversample(train, config.seed)
    elif config.sampling:
        raise ValueError(f"config.sampling='{config.sampling}'; expected '' or 'balanced'.")
    splits = {"train": train}
    for split in ("val", "test"):
        splits[split] = load_split(config.data, split)
    if jax.process_index() == 0:
        for split, records in splits.items():
            subsets.write_manifest(records, os.path.join(workdir, f"manifest_{split}.csv"))
    logging.info("Classifier training data: %s", train.summary())
    return splits


def oversample(records: Records, seed: int) -> Records:
    """Repeats every class's images (seeded) up to the largest class's count."""
    if records.multi_label:
        raise DataError(
            "config.sampling='balanced' needs single-label data; use "
            "config.class_weighting='balanced' for multi-label data."
        )
    counts = np.bincount(records.labels, minlength=records.num_classes)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(records.num_classes):
        own = np.flatnonzero(records.labels == k)
        if len(own):
            extra = rng.choice(own, counts.max() - len(own), replace=True)
            rows.append(np.concatenate([own, extra]))
    return records.take(np.sort(np.concatenate(rows)))


def initialise_weights(config, model, state: ClassifierState) -> ClassifierState:
    """Starting weights from another run's checkpoint or a local Keras .h5 file."""
    init = config.init
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    if init.keras_weights:
        variables = load_keras_weights(config.model.name, init.keras_weights, variables)
    if init.checkpoint:
        variables = predict.transfer(
            predict.load_variables(init.checkpoint), variables, init.checkpoint
        )
    if init.gan_discriminator:
        trunk = predict.discriminator_trunk(init.gan_discriminator)
        where = f"{init.gan_discriminator} (its discriminator)"
        variables = predict.transfer(trunk, variables, where)
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


@dataclasses.dataclass(frozen=True)
class Programs:
    """A classifier's compiled programs (see classifier_programs)."""

    model: nn.Module
    init: Callable  # seed -> replicated ClassifierState
    train_step: Callable  # (state, batch, class weights, total steps) -> (state, metrics)
    predict: Callable  # (params, batch_stats, images) -> (scores, logits, features)
    predict_batches: Callable  # (params, batch_stats, images [S, B, ...]) -> scores [S, B, ...]
    augment: Callable | None = None  # (images, state.key, state.step) -> images; None: none


def augmented(augment: Callable | None, batch: dict, state) -> dict:
    """The batch with its images augmented for the state's step by Programs.augment."""
    if augment is None:
        return batch
    return {**batch, "image": augment(batch["image"], state.key, state.step)}


def classifier_programs(config, task, num_classes, steps_per_epoch, mesh) -> Programs:
    """The model and its jitted init, train step (the state donated), predictions and
    augmentation, built once per process: the init and step for each network, optimizer,
    task and mesh (a study's runs of one shape share them, whatever their lengths and
    augmentations; see training.built_once), the predictions for each network, task and
    mesh, the augmentation for each pipeline and mesh."""
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    freeze_steps = config.freeze_trunk_epochs * steps_per_epoch
    key = training.config_key(
        "classifier",
        config.model,
        config.get("precision", "float32"),
        config.optimizer,
        config.early_stopping.metric,
        [task, num_classes, freeze_steps, image_shape],
        [d.id for d in mesh.devices.flat],
    )

    def build() -> Programs:
        model = build_model(config, num_outputs(task, num_classes))
        optimizer = functools.partial(make_optimizer, config.optimizer)
        higher = HIGHER_IS_BETTER[config.early_stopping.metric]
        replicated = parallel.replicated(mesh)
        step = make_train_step(model, optimizer, task, freeze_steps)
        predict, predict_batches = prediction_programs(config, task, num_classes, mesh)
        return Programs(
            model=model,
            # The optimizer state's structure does not depend on the schedule's length.
            init=jax.jit(
                make_init(model, optimizer(1), image_shape, higher), out_shardings=replicated
            ),
            train_step=training.jit_step(step, mesh, num_extra_args=2),
            predict=predict,
            predict_batches=predict_batches,
        )

    programs = training.built_once(key, build)
    return dataclasses.replace(programs, augment=augment_program(config, mesh))


def augment_program(config, mesh) -> Callable | None:
    """config.augment as a jitted (images, key, step) -> images (make_augment_batch),
    built once per process for each pipeline and mesh; None for 'none'."""
    if config.augment == "none":
        return None
    key = training.config_key(
        "classifier augmentation",
        config.augment,
        config.augment_params,
        [d.id for d in mesh.devices.flat],
    )

    def build() -> Callable:
        augment = augment_registry.make_augment(
            config.augment, config.augment_params.to_dict() or None
        )
        replicated, batches = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        return jax.jit(
            make_augment_batch(augment),
            in_shardings=(batches, replicated, replicated),
            out_shardings=batches,
        )

    return training.built_once(key, build)


def prediction_programs(config, task, num_classes, mesh) -> tuple[Callable, Callable]:
    """Programs.predict and .predict_batches, built once per process for each network,
    task and mesh."""
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    key = training.config_key(
        "classifier predictions",
        config.model,
        config.get("precision", "float32"),
        [task, num_classes, image_shape],
        [d.id for d in mesh.devices.flat],
    )

    def build() -> tuple[Callable, Callable]:
        predict = make_predict(build_model(config, num_outputs(task, num_classes)), task)

        def predict_batches(params, batch_stats, images):
            return jax.lax.map(lambda x: predict(params, batch_stats, x)[0], images)

        replicated = parallel.replicated(mesh)
        split_sharding = NamedSharding(mesh, P(None, DATA_AXIS))
        return jax.jit(predict), jax.jit(
            predict_batches, in_shardings=(replicated, replicated, split_sharding)
        )

    return training.built_once(key, build)


def evaluate_split(
    programs: Programs, state, records: Records, task: str, config, mesh, threshold=0.5
) -> dict:
    """Scores for every image of a split, its classification report and headline numbers."""
    images = resident_split(records, config, mesh)
    if images is not None:  # one compiled pass over the split held on device
        scores = programs.predict_batches(state.params, state.batch_stats, images)
        scores = np.asarray(scores).reshape(-1, *scores.shape[2:])[: len(records)]
        return summarise_split(records, scores, task, threshold)
    batches = pipeline.global_batches(
        records, config.data, mesh, global_batch_size=config.eval_batch_size, train=False
    )
    scores = training.map_split(
        lambda batch: programs.predict(state.params, state.batch_stats, batch["image"])[0],
        batches,
        records,
    )
    return summarise_split(records, scores, task, threshold)


def resident_split(records: Records, config, mesh) -> jax.Array | None:
    """A split's preprocessed images on device as [batches, eval_batch_size, H, W, C] (the
    last batch padded), read once per process and kept for later epochs and runs; None
    where it would take more than config.eval_resident_mb or there are several processes
    (each reads only its share: the streamed path)."""
    size, channels = config.data.image_size, config.data.channels
    megabytes = len(records) * size * size * channels * 4 / 2**20
    if jax.process_count() > 1 or megabytes > config.eval_resident_mb:
        return None
    batch = config.eval_batch_size
    parallel.check_batch_size(batch, mesh, "eval_batch_size")
    ids = hashlib.sha1("\n".join(map(str, records.ids)).encode()).hexdigest()
    reading = config.data.to_dict()
    reading.pop("subset")  # narrows the training split only: a study's cells share val/test
    key = training.config_key(
        "resident split",
        records.description,
        ids,
        reading,
        batch,
        [d.id for d in mesh.devices.flat],
    )

    def build() -> jax.Array:
        images = pipeline.decode_all(records, config.data, batch)
        padded = -(-len(images) // batch) * batch
        images = np.concatenate([images, np.repeat(images[-1:], padded - len(images), 0)])
        images = images.reshape(padded // batch, batch, *images.shape[1:])
        return jax.device_put(images, NamedSharding(mesh, P(None, DATA_AXIS)))

    return RESIDENT_SPLITS(key, build)


def summarise_split(records: Records, scores: np.ndarray, task: str, threshold=0.5) -> dict:
    """A split's classification report and headline numbers at a threshold (a float, one per
    label, or None for multiclass), and its arrays (labels, scores, mask if any)."""
    arrays = {"labels": records.labels, "scores": scores}
    if records.label_mask is not None:
        arrays["mask"] = records.label_mask
    report = classification.classification_report(
        records.labels, scores, task, records.class_names, arrays.get("mask"), threshold
    )
    summary = classification.headline_metrics(report)
    summary["loss"] = _cross_entropy(task, records.labels, scores, arrays.get("mask"))
    return {"report": report, "summary": summary, "arrays": arrays}


FIXED_RULES = ("fixed", "0.5")


def check_threshold_config(cfg: ml_collections.ConfigDict) -> None:
    """config.threshold names a known rule and, for a target rule, a target in [0, 1]."""
    rules = list(classification.THRESHOLD_RULES)
    if cfg.rule not in rules:
        raise ValueError(f"config.threshold.rule={cfg.rule!r}; expected one of {rules}.")
    if cfg.rule.startswith("target_"):
        target = cfg.target
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 <= target <= 1:
            raise ValueError(
                f"config.threshold.target={target!r}; expected a number in [0, 1] for "
                f"rule '{cfg.rule}'."
            )


def choose_threshold(cfg: ml_collections.ConfigDict, task: str, val: dict, class_names) -> dict:
    """The threshold of config.threshold's rule on the validation predictions: rule, target and
    value (a float; one per label; None for multiclass, which takes the argmax). Where the
    rule is undefined (e.g. a label with no positive in val) 0.5 is used there, with the
    reason recorded under "fallback" and logged."""
    info = {"rule": cfg.rule, "target": float(cfg.target), "value": None}
    if task == "multiclass":
        return info
    args = (val["labels"], val["scores"], cfg.rule, cfg.target, val.get("mask"), class_names)
    try:
        value = classification.choose_threshold(*args)
    except classification.UndefinedMetricError as e:
        logging.warning("%s Using 0.5 there instead.", e)
        value = classification.choose_threshold(*args, fallback=0.5)
        info["fallback"] = {"value": 0.5, "reason": str(e)}
    info["value"] = value.tolist() if isinstance(value, np.ndarray) else float(value)
    return info


def threshold_text(info: dict) -> str:
    """How the test line says which threshold was used."""
    value = info["value"]
    if value is None:
        return "argmax"
    if info["rule"] in FIXED_RULES:
        how = "fixed"
    elif info["rule"].startswith("target_"):
        how = f"{info['rule']} {info['target']:g} on val"
    else:
        how = f"{info['rule']} on val"
    if "fallback" in info:
        how += ", 0.5 where undefined"
    if isinstance(value, list):
        return "thresholds " + "/".join(f"{v:.3g}" for v in value) + f" ({how})"
    return f"threshold {value:.3g} ({how})"


def _cross_entropy(task, labels, scores, mask) -> float:
    eps = 1e-7
    if task == "multiclass":
        return float(-np.mean(np.log(np.clip(scores[np.arange(len(labels)), labels], eps, 1))))
    y, p = labels.astype(np.float64), np.clip(scores, eps, 1 - eps)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    w = np.ones_like(losses) if mask is None else mask
    return float(np.sum(losses * w) / max(np.sum(w), 1))


def _finite_scalars(state: ClassifierState, metrics: dict) -> dict[str, float]:
    training.check_finite(
        state.first_bad_step,
        "The classifier loss",
        "Lower config.optimizer.lr or check the data.",
    )
    return {k: float(v) for k, v in jax.device_get(metrics).items()}
