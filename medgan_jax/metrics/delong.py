"""DeLong's ROC AUC variance, confidence interval and paired test (Sun & Xu's midranks)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from medgan_jax.metrics.core import UndefinedMetricError, first_bad, float_array, midranks, prepare


def _delong_components(
    labels: ArrayLike, scores: ArrayLike, arg: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs (k,) and structural components V10 (k, m) over positives, V01 (k, n) over negatives."""
    y = float_array(labels, "labels")
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must have shape (N,) with N >= 1; got {y.shape}.")
    s = np.atleast_2d(float_array(scores, arg))
    if s.ndim != 2 or s.shape[1] != y.size:
        raise ValueError(
            f"{arg} must have shape (N,) or (k, N) with N = len(labels) = {y.size}; got "
            f"{np.shape(scores)}."
        )
    prepare(y, s[0], fn="DeLong")  # label values and NaN checks with the usual messages
    for row in s[1:]:
        prepare(y, row, fn="DeLong")
    pos = y == 1.0
    m, n = int(pos.sum()), int((~pos).sum())
    if m < 2 or n < 2:
        raise UndefinedMetricError(
            f"DeLong's variance needs at least 2 positive and 2 negative samples; labels has "
            f"{m} positive and {n} negative."
        )
    x, z = s[:, pos], s[:, ~pos]
    tz = midranks(np.concatenate([x, z], axis=1))
    v10 = (tz[:, :m] - midranks(x)) / n
    v01 = 1.0 - (tz[:, m:] - midranks(z)) / m
    auc = (tz[:, :m].sum(1) - m * (m + 1) / 2) / (m * n)
    return auc, v10, v01


def delong_covariance(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUCs (k,) of k score vectors (k, N) on one test set and their DeLong covariance."""
    auc, v10, v01 = _delong_components(labels, scores, "scores")
    cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return auc, cov


def delong_auc_ci(
    labels: ArrayLike, scores: ArrayLike, confidence: float = 0.95
) -> dict[str, float]:
    """ROC AUC with DeLong's standard error and normal confidence interval, clipped to [0, 1]."""
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    auc, v10, v01 = _delong_components(labels, np.asarray(scores)[None], "scores")
    se = math.sqrt(np.var(v10[0], ddof=1) / v10.shape[1] + np.var(v01[0], ddof=1) / v01.shape[1])
    q = NormalDist().inv_cdf(0.5 + float(confidence) / 2)
    a = float(auc[0])
    return {
        "auc": a,
        "std_error": se,
        "ci_low": max(0.0, a - q * se),
        "ci_high": min(1.0, a + q * se),
        "confidence": float(confidence),
    }


def delong_test(
    labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, confidence: float = 0.95
) -> dict[str, float]:
    """DeLong's two-sided test of AUC(a) = AUC(b) for two models scored on the same samples.

    Uses the O(N log N) midrank algorithm of Sun & Xu (2014). When the difference has zero
    variance, z is 0 and p is 1 if the AUCs are equal, else z is +-inf and p is 0.
    """
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    a = float_array(scores_a, "scores_a")
    b = float_array(scores_b, "scores_b")
    if a.shape != b.shape:
        raise ValueError(
            f"scores_a and scores_b must have the same shape; got {a.shape} and {b.shape}."
        )
    for arr, arg in ((a, "scores_a"), (b, "scores_b")):
        if arr.ndim != 1:
            raise ValueError(f"{arg} must have shape (N,); got {arr.shape}.")
        if np.isnan(arr).any():
            raise ValueError(f"{arg} must not contain NaN; {first_bad(arr, np.isnan(arr))}.")
    auc, v10, v01 = _delong_components(labels, np.stack([a, b]), "scores_a/scores_b")
    # The variance of the difference straight from differenced components: exact 0 when equal.
    d10, d01 = v10[0] - v10[1], v01[0] - v01[1]
    var = max(0.0, np.var(d10, ddof=1) / d10.size + np.var(d01, ddof=1) / d01.size)
    diff = float(auc[0] - auc[1])
    se = math.sqrt(var)
    if se > 0:
        z = diff / se
    else:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    q = NormalDist().inv_cdf(0.5 + float(confidence) / 2)
    return {
        "auc_a": float(auc[0]),
        "auc_b": float(auc[1]),
        "difference": diff,
        "std_error": se,
        "z": z,
        "p_value": math.erfc(abs(z) / math.sqrt(2)),
        "ci_low": diff - q * se,
        "ci_high": diff + q * se,
        "confidence": float(confidence),
    }
