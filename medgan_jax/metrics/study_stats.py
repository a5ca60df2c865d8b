"""The study's tests: one two-level bootstrap per comparison, Holm's adjustment across them.

A study compares classifier runs that differ in method, trained with several seeds and
tested on one shared test set. Its uncertainty has two sources: seed to seed (subset,
initialisation, GAN) and the test set itself (a finite sample of patients). The two-level
bootstrap resamples both: per replicate, the seeds with replacement, then the test cases
(stratified by class, one draw shared by every seed and method, since they all saw the same
test set). Every method's metric is computed on the same resampled cases, so differences
and ratios between methods are paired.

Metrics are computed for many resamples at once ("rows"): ROC AUC (midranks), average
precision (AUPRC, as scikit-learn) and thresholded rates at a fixed per-run threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from medgan_jax.metrics.core import auc_rows

THRESHOLDED = ("sensitivity", "specificity", "balanced_accuracy", "accuracy", "f1", "precision")
ROW_METRICS = ("roc_auc", "average_precision", *THRESHOLDED)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (as statsmodels' multipletests(method='holm'))."""
    p = np.asarray(p_values, np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError(f"p_values must be a 1-D sequence of numbers in [0, 1]; got {p}.")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def average_precision_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Average precision of each row of bool labels y and scores s (B, N), scikit-learn's
    definition (precision at each distinct threshold, weighted by the recall it adds);
    NaN for a row without positives."""
    order = np.argsort(-s, axis=-1, kind="stable")
    ys = np.take_along_axis(y, order, axis=-1)
    ss = np.take_along_axis(s, order, axis=-1)
    n = s.shape[-1]
    true_positives = np.cumsum(ys, axis=-1)
    # Tied scores form one threshold: every member takes the counts at the tie's last index.
    ends = np.ones(s.shape, bool)
    ends[..., :-1] = ss[..., 1:] != ss[..., :-1]
    idx = np.broadcast_to(np.arange(n), s.shape)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, n - 1), -1), axis=-1), -1)
    precision = np.take_along_axis(true_positives, last, axis=-1) / (last + 1.0)
    positives = ys.sum(-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, (ys * precision).sum(-1) / positives, np.nan)


def thresholded_rows(name: str, y: np.ndarray, s: np.ndarray, threshold: float) -> np.ndarray:
    """A rate at `score >= threshold` for each row (B, N); NaN where undefined."""
    predicted = s >= threshold
    tp = (predicted & y).sum(-1).astype(np.float64)
    fp = (predicted & ~y).sum(-1)
    fn = (~predicted & y).sum(-1)
    tn = (~predicted & ~y).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity, specificity = tp / (tp + fn), tn / (tn + fp)
        values = {
            "sensitivity": sensitivity,
            "specificity": specificity,
            "balanced_accuracy": (sensitivity + specificity) / 2,
            "accuracy": (tp + tn) / y.shape[-1],
            "precision": tp / (tp + fp),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }
    if name not in values:
        raise ValueError(f"metric '{name}'; thresholded metrics are {THRESHOLDED}.")
    return values[name]


def metric_rows(name: str, y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Metric `name` (one of ROW_METRICS) of each row of binary labels y and scores s."""
    if name == "roc_auc":
        return auc_rows(y, s)
    if name == "average_precision":
        return average_precision_rows(y, s)
    return thresholded_rows(name, y, s, threshold)


def stratified_case_indices(
    y: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_resamples, N) indices drawn with replacement within each class of bool y."""
    groups = [np.flatnonzero(y == c) for c in (False, True) if np.any(y == c)]
    return np.concatenate([g[rng.integers(0, g.size, (n_resamples, g.size))] for g in groups], 1)


def two_level_bootstrap(
    per_seed_rows: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    labels: np.ndarray,
    num_seeds: int,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Replicates of each method's seed-averaged metric, and its full-data estimate.

    `per_seed_rows[method](case_indices)` returns that method's metric per seed on each
    row of case indices: shape (num_seeds, B). Every method sees the same resampled
    seeds and cases. A bootstrap over S seeds understates their variance by (S - 1) / S;
    the seed-level deviation of each replicate is scaled back up by sqrt(S / (S - 1)).
    Returns ({method: (n_resamples,) replicates}, {method: estimate}).
    """
    y = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    cases = stratified_case_indices(y, n_resamples, rng)
    seeds = rng.integers(0, num_seeds, (n_resamples, num_seeds))
    everything = np.arange(y.size)[None]
    replicates, estimates = {}, {}
    for method, rows in per_seed_rows.items():
        values = rows(cases)  # (S, B)
        if values.shape != (num_seeds, n_resamples):
            raise ValueError(
                f"per_seed_rows['{method}'] returned shape {values.shape}; expected "
                f"({num_seeds}, {n_resamples})."
            )
        drawn = values[seeds, np.arange(n_resamples)[:, None]].mean(axis=1)
        all_seeds = values.mean(axis=0)
        scale = np.sqrt(num_seeds / (num_seeds - 1)) if num_seeds > 1 else 1.0
        replicates[method] = all_seeds + scale * (drawn - all_seeds)
        estimates[method] = float(np.mean(rows(everything)[:, 0]))
    return replicates, estimates


def summarise_difference(
    replicates: np.ndarray, estimate: float, num_seeds: int, confidence: float = 0.95
) -> dict:
    """CI and two-sided p-value (H0: no difference) of a difference between methods.

    The two-level bootstrap gives the standard error; the reference distribution is
    Student's t with seeds - 1 degrees of freedom, because with few seeds their variance is
    itself uncertain (a percentile interval from 3 seeds is far too narrow)."""
    valid = replicates[np.isfinite(replicates)]
    out = {"estimate": estimate, "ci_low": None, "ci_high": None, "p_value": None}
    if valid.size < 2 or num_seeds < 2 or not np.isfinite(estimate):
        return {**out, "reason": "needs 2+ seeds and defined metrics"}
    se = float(np.std(valid, ddof=1))
    t = stats.t(df=num_seeds - 1)
    half = float(t.ppf(0.5 + confidence / 2)) * se
    p = 1.0 if se == 0 and estimate == 0 else float(2 * t.sf(abs(estimate) / max(se, 1e-300)))
    return {
        **out,
        "ci_low": estimate - half,
        "ci_high": estimate + half,
        "p_value": min(1.0, p),
        "std_error": se,
        "df": num_seeds - 1,
        "n_valid": int(valid.size),
    }


def ratio_interval(
    numerator: np.ndarray, denominator: np.ndarray, estimate: float, confidence: float = 0.95
) -> dict:
    """Percentile CI of a ratio of paired replicates (replicates with a non-positive
    denominator are undefined and counted)."""
    ok = np.isfinite(numerator) & np.isfinite(denominator) & (denominator > 0)
    out = {"estimate": estimate, "ci_low": None, "ci_high": None, "n_undefined": int((~ok).sum())}
    if ok.sum() >= 2:
        alpha = 1.0 - confidence
        ratios = numerator[ok] / denominator[ok]
        out["ci_low"], out["ci_high"] = (
            float(v) for v in np.percentile(ratios, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        )
    return out
