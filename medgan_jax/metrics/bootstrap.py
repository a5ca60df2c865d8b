"""Percentile bootstrap confidence intervals of a classification metric, stratified by class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medgan_jax.metrics.classification import roc_auc
from medgan_jax.metrics.core import auc_rows, finite_or_none, float_array, prepare

# Bootstrap index matrices are drawn in chunks of about this many entries (16 MiB of int64).
_CHUNK_ELEMENTS = 1 << 21


def _index_chunks(strata: np.ndarray | None, n: int, n_resamples: int, rng: np.random.Generator):
    groups = (
        [np.arange(n)]
        if strata is None
        else [np.flatnonzero(strata == c) for c in np.unique(strata)]
    )
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        yield np.concatenate([g[rng.integers(0, g.size, size=(b, g.size))] for g in groups], axis=1)


def _strata(labels: ArrayLike, stratified: bool) -> tuple[np.ndarray | None, int]:
    y = float_array(labels, "labels")
    if y.ndim not in (1, 2) or y.shape[0] == 0:
        raise ValueError(f"labels must have shape (N,) or (N, L) with N >= 1; got {y.shape}.")
    return (y if stratified and y.ndim == 1 else None), y.shape[0]


def bootstrap_indices(
    labels: ArrayLike, n_resamples: int = 1000, seed: int = 0, stratified: bool = True
) -> np.ndarray:
    """The (n_resamples, N) sample indices that ``bootstrap_ci`` draws for these arguments.

    Stratified (1-D labels only): each resample draws, with replacement, as many samples of
    each class as the data has, so class counts are preserved. Rows list class by class.
    """
    strata, n = _strata(labels, stratified)
    return np.concatenate(list(_index_chunks(strata, n, n_resamples, np.random.default_rng(seed))))


def bootstrap_ci(
    metric_fn: Callable[..., float],
    labels: ArrayLike,
    scores: ArrayLike,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratified: bool = True,
    mask: ArrayLike | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap confidence interval of ``metric_fn(labels, scores)``.

    Resampling is stratified by class for 1-D labels (binary, multiclass) and plain for
    multi-label data (2-D labels: label combinations are too many to stratify on); the
    returned ``stratified`` says which was used. A resample where the metric is undefined
    (``metric_fn`` raises ValueError, e.g. UndefinedMetricError, or returns NaN) is skipped
    and counted in ``n_skipped``. With ``mask``, ``metric_fn`` is called with ``mask=``.
    ``roc_auc`` on binary data is computed for all resamples at once from midranks.
    """
    if (
        isinstance(n_resamples, bool)
        or not isinstance(n_resamples, int | np.integer)
        or n_resamples < 1
    ):
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples!r}.")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    task, y, s, _ = prepare(labels, scores, mask, fn="bootstrap_ci")
    labels_np, scores_np = np.asarray(labels), np.asarray(scores)
    mask_np = None if mask is None else np.asarray(mask)

    def call(idx: np.ndarray) -> float:
        if mask_np is None:
            value = metric_fn(labels_np[idx], scores_np[idx])
        else:
            value = metric_fn(labels_np[idx], scores_np[idx], mask=mask_np[idx])
        if np.ndim(value) != 0:
            raise ValueError(f"metric_fn must return a scalar; got shape {np.shape(value)}.")
        return float(value)

    n = s.shape[0]
    estimate = call(np.arange(n))
    strata, _ = _strata(labels, stratified)
    values = np.empty(int(n_resamples))
    fast = metric_fn is roc_auc and task == "binary"
    done = 0
    for idx in _index_chunks(strata, n, int(n_resamples), np.random.default_rng(seed)):
        if fast:
            values[done : done + len(idx)] = auc_rows(y[idx] == 1, s[idx])
        else:
            for i, row in enumerate(idx):
                try:
                    values[done + i] = call(row)
                except ValueError:
                    values[done + i] = np.nan
        done += len(idx)
    valid = values[~np.isnan(values)]
    alpha = 1.0 - float(confidence)
    low, high = (
        np.percentile(valid, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        if valid.size
        else (None, None)
    )
    return {
        "estimate": estimate,
        "ci_low": finite_or_none(low) if low is not None else None,
        "ci_high": finite_or_none(high) if high is not None else None,
        "std_error": float(np.std(valid, ddof=1)) if valid.size > 1 else None,
        "confidence": float(confidence),
        "n_resamples": int(n_resamples),
        "n_valid": int(valid.size),
        "n_skipped": int(n_resamples - valid.size),
        "stratified": strata is not None,
        "seed": int(seed),
        "method": "percentile",
    }
