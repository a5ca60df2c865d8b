"""Classifier statistics on saved test predictions: metrics with bootstrap CIs, and
DeLong's test of each run's AUC against the first run's."""

from __future__ import annotations

import functools
import os

import ml_collections
import numpy as np

from medgan_jax.evaluation import report
from medgan_jax.metrics import classification
from medgan_jax.metrics.bootstrap import bootstrap_ci
from medgan_jax.metrics.delong import delong_test


def evaluate_classifiers(
    classifiers: dict[str, str], bootstrap_cfg: ml_collections.ConfigDict, workdir: str
) -> dict:
    """Metrics with bootstrap CIs per classifier run, and DeLong against the first."""
    runs = {name: load_predictions(path) for name, path in classifiers.items()}
    baseline_name = next(iter(runs))
    results = {}
    for name, run in runs.items():
        threshold = _threshold(run)
        metrics = classification.classification_report(
            run["labels"],
            run["scores"],
            run["task"],
            run["class_names"],
            run.get("mask"),
            threshold=threshold,
        )
        metrics["bootstrap"] = bootstrap(run, bootstrap_cfg)
        if name != baseline_name:
            metrics["delong_vs_" + baseline_name] = delong(runs[baseline_name], run)
        results[name] = metrics
    report.roc_plot(os.path.join(workdir, "roc.png"), runs)
    return results


def load_predictions(path: str) -> dict:
    """A classifier run's test predictions (workdir/test_predictions.npz, or the file)."""
    file = os.path.join(path, "test_predictions.npz") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise FileNotFoundError(
            f"{file} does not exist: config.classifiers entries name a train_classifier.py "
            "workdir (which writes test_predictions.npz) or such a file."
        )
    with np.load(file, allow_pickle=False) as data:
        run = {k: data[k] for k in data.files}
    run["task"] = str(run["task"])
    run["class_names"] = [str(name) for name in run["class_names"]]
    return run


def _threshold(run: dict):
    """The run's validation-chosen threshold (saved with its predictions), else 0.5;
    multiclass predicts by argmax."""
    if run["task"] == "multiclass":
        return None
    return np.asarray(run["threshold"]) if "threshold" in run else 0.5


def bootstrap(run: dict, cfg: ml_collections.ConfigDict) -> dict:
    """95% bootstrap CIs of accuracy, balanced accuracy (at the run's threshold) and AUC
    (stratified, seeded)."""
    at = {} if run["task"] != "binary" else {"threshold": float(_threshold(run))}
    metric_fns = {
        "accuracy": functools.partial(classification.accuracy, **at),
        "balanced_accuracy": functools.partial(classification.balanced_accuracy, **at),
        "roc_auc": classification.roc_auc,
    }
    out = {}
    for metric, fn in metric_fns.items():
        kwargs = {"mask": run["mask"]} if "mask" in run and metric == "roc_auc" else {}
        try:
            out[metric] = bootstrap_ci(
                fn,
                run["labels"],
                run["scores"],
                n_resamples=cfg.n_resamples,
                confidence=cfg.confidence,
                seed=cfg.seed,
                **kwargs,
            )
        except ValueError as error:
            out[metric] = {"undefined": str(error)}
    return out


def delong(baseline: dict, other: dict) -> dict:
    """DeLong's test of AUC(other) - AUC(baseline) on the same test images (per class)."""
    if not np.array_equal(baseline["labels"], other["labels"]):
        raise ValueError("DeLong's test needs both classifiers evaluated on the same test set.")
    # delong_test's difference is AUC(a) - AUC(b): a = the new run, b = the baseline.
    if baseline["task"] == "binary":
        return delong_test(baseline["labels"], other["scores"], baseline["scores"])
    per_class = {}
    for k, name in enumerate(baseline["class_names"]):
        labels, scores_base = report.binary_view(baseline, k)
        _, scores_new = report.binary_view(other, k)
        try:
            per_class[name] = delong_test(labels, scores_new, scores_base)
        except ValueError as error:
            per_class[name] = {"undefined": str(error)}
    return per_class
