"""The study's pre-declared comparisons, each with one two-level bootstrap test.

Per size and metric, on the saved test predictions of every seed:
- every method against `base`;
- every method that is not a control or the ceiling against the better rebalancing control
  (the control with the higher seed-averaged metric at that size), and the ceiling
  against that control too;
- each such method's share of the ceiling gain = (method - control) / (ceiling - control).
All p-values of the report are Holm-adjusted together; "beats" needs the adjusted test.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from medgan_jax.evaluation.classifier_stats import load_predictions
from medgan_jax.evaluation.report import binary_view
from medgan_jax.metrics import study_stats
from medgan_jax.study import grid

ALPHA = 0.05


def testable(metric: str, task: str) -> str:
    """'' if the two-level bootstrap covers `metric` for `task`, else why not."""
    if metric.startswith("auc:") and task != "binary":
        return ""
    if task == "binary" and metric in study_stats.ROW_METRICS:
        return ""
    return (
        f"the two-level bootstrap covers binary tasks' {study_stats.ROW_METRICS} and "
        f"per-label AUCs ('auc:<label>'); this is a {task} task"
    )


def _predictions(root: str, size, seeds, name: str) -> list[dict] | None:
    """Each seed's saved test predictions of a method, or None if any is missing."""
    runs = []
    for seed in seeds:
        path = grid.method_workdir(grid.cell_root(root, size, seed), name)
        if not os.path.exists(os.path.join(path, "test_predictions.npz")):
            return None
        runs.append(load_predictions(path))
    return runs


def _column(metric: str, run: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """(bool labels, scores, threshold) of the binary problem a metric scores."""
    if metric.startswith("auc:"):
        k = list(run["class_names"]).index(metric[4:])
        labels, scores = binary_view(run, k)
        return np.asarray(labels) > 0.5, np.asarray(scores, np.float64), 0.5
    threshold = float(np.asarray(run["threshold"])) if "threshold" in run else 0.5
    return run["labels"] > 0.5, np.asarray(run["scores"], np.float64), threshold


def _rows_fn(metric: str, seed_runs: list[dict]):
    """case indices (B, N) -> the metric of every seed's run on each row (S, B)."""
    name = "roc_auc" if metric.startswith("auc:") else metric
    columns = [_column(metric, run) for run in seed_runs]

    def rows(cases: np.ndarray) -> np.ndarray:
        values = [study_stats.metric_rows(name, y[cases], s[cases], t) for y, s, t in columns]
        return np.stack(values)

    return rows


def _diff(replicates, estimates, method, reference, num_seeds) -> dict:
    return study_stats.summarise_difference(
        replicates[method] - replicates[reference],
        estimates[method] - estimates[reference],
        num_seeds,
    )


def size_comparisons(config, runs: dict, size, metric: str) -> tuple[list[dict], list[dict], str]:
    """(tests, ceiling shares, reason if none) for one size and metric, from each
    method's per-seed predictions at that size (None where any seed's are missing)."""
    missing = [m for m, r in runs.items() if r is None]
    runs = {m: r for m, r in runs.items() if r is not None}
    if "base" not in runs or len(runs) < 2:
        return [], [], "needs base and another method with predictions for every seed"
    first = runs["base"][0]
    reason = testable(metric, first["task"])
    if reason:
        return [], [], reason
    labels, _, _ = _column(metric, first)
    per_seed = {m: _rows_fn(metric, r) for m, r in runs.items()}
    num_seeds = len(config.seeds)
    replicates, estimates = study_stats.two_level_bootstrap(
        per_seed, labels, num_seeds, config.bootstrap.n_resamples, config.bootstrap.seed
    )
    controls = [c for c in grid.with_role(config.methods, "control") if c in runs]
    ceiling = next((c for c in grid.with_role(config.methods, "ceiling") if c in runs), None)
    controls = [c for c in controls if np.isfinite(estimates[c])]
    control = max(controls, key=lambda c: estimates[c]) if controls else None
    where = {"size": str(size), "metric": metric, "seeds": num_seeds}
    tests, shares = [], []
    for name in runs:
        if name == "base":
            continue
        diff = _diff(replicates, estimates, name, "base", num_seeds)
        tests.append({**where, "method": name, "reference": "base", **diff})
        if control is None or grid.method(name).role == "control":
            continue
        diff = _diff(replicates, estimates, name, control, num_seeds)
        tests.append({**where, "method": name, "reference": control, **diff})
        if ceiling is not None and name != ceiling:
            gain = estimates[ceiling] - estimates[control]
            share = study_stats.ratio_interval(
                replicates[name] - replicates[control],
                replicates[ceiling] - replicates[control],
                (estimates[name] - estimates[control]) / gain if gain > 0 else None,
            )
            shares.append(
                {**where, "method": name, "control": control, "ceiling": ceiling,
                 "ceiling_gain": gain, **share}
            )  # fmt: skip
    reason = f"no test predictions for every seed of {missing}" if missing else ""
    return tests, shares, reason


def all_comparisons(config: ml_collections.ConfigDict, root: str) -> dict:
    """Every comparison of the grid, p-values Holm-adjusted across all of them."""
    tests, shares, skipped = [], [], []
    for size in config.sizes:
        runs = {m: _predictions(root, size, config.seeds, m) for m in config.methods}
        for metric in config.metrics:  # the predictions are read once per size
            t, s, reason = size_comparisons(config, runs, size, metric)
            tests += t
            shares += s
            if reason:
                skipped.append({"size": str(size), "metric": metric, "reason": reason})
    tested = [t for t in tests if t["p_value"] is not None]
    if tested:
        for t, adjusted in zip(tested, study_stats.holm([t["p_value"] for t in tested])):
            t["p_holm"] = float(adjusted)
    for t in tests:
        t.setdefault("p_holm", None)
        t["beats"] = bool(t["p_holm"] is not None and t["p_holm"] < ALPHA and t["estimate"] > 0)
    for s in shares:  # the ceiling's own test against the control
        ceiling_test = find(tests, s["size"], s["metric"], s["ceiling"], s["control"]) or {}
        s["ceiling_above_control"] = s["ceiling_gain"] > 0
        s["ceiling_beats_control"] = bool(ceiling_test.get("beats"))
        s["ceiling_gain_ci"] = [ceiling_test.get("ci_low"), ceiling_test.get("ci_high")]
    return {
        "alpha": ALPHA,
        "n_resamples": config.bootstrap.n_resamples,
        "tests": tests,
        "ceiling_shares": shares,
        "skipped": skipped,
    }


def find(tests: list[dict], size: str, metric: str, method: str, reference: str) -> dict | None:
    """The test of `method` against `reference` at a size and metric, if there is one."""
    for t in tests:
        key = (t["size"], t["metric"], t["method"], t["reference"])
        if key == (str(size), metric, method, reference):
            return t
    return None
