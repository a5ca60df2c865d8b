"""Shared by classification, bootstrap and DeLong: checks on (labels, scores[, mask]) arrays
(the tasks of `classification`'s docstring), midrank ROC AUCs, and the cumulative counts behind
ROC and precision-recall curves. All arithmetic is float64."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

TASKS = ("binary", "multiclass", "multilabel")
SHAPES = {
    "binary": "labels (N,) in {0, 1} and scores (N,) = P(positive)",
    "multiclass": "labels (N,) int class ids and scores (N, K) class probabilities",
    "multilabel": "labels (N, L) multi-hot and scores (N, L)",
}


class UndefinedMetricError(ValueError):
    """A metric with no value on this data, e.g. ROC AUC when only one class is present."""


# ----------------------------------------------------------------------------- validation


def float_array(x: ArrayLike, name: str) -> np.ndarray:
    """`x` as float64, or a ValueError naming the argument."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric; could not read it as float64 ({e}).") from None


def first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    """What an error message says about the entries of `values` where `bad` is True."""
    where = np.argwhere(bad)
    found = np.unique(values[bad])
    shown = ", ".join(f"{v:g}" for v in found[:5]) + (", ..." if found.size > 5 else "")
    first = tuple(int(i) for i in where[0])
    return f"found {shown} ({int(bad.sum())} entries, first at index {first})"


def prepare(
    labels: ArrayLike,
    scores: ArrayLike,
    mask: ArrayLike | None = None,
    task: str | None = None,
    allow: Sequence[str] = TASKS,
    fn: str = "this metric",
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """Checks inputs and returns (task, labels as int64 or bool, scores float64, mask bool)."""
    y = float_array(labels, "labels")
    s = float_array(scores, "scores")
    if y.ndim == 0 or s.ndim == 0:
        raise ValueError(
            f"labels and scores must be arrays with one row per sample; got labels of shape "
            f"{y.shape} and scores of shape {s.shape}."
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(
            f"labels has {y.shape[0]} samples but scores has {s.shape[0]}; they must match."
        )
    if y.ndim == 1 and s.ndim == 1:
        inferred = "binary"
    elif y.ndim == 1 and s.ndim == 2:
        inferred = "multiclass"
    elif y.ndim == 2 and s.ndim == 2 and y.shape == s.shape:
        inferred = "multilabel"
    else:
        raise ValueError(
            f"labels of shape {y.shape} and scores of shape {s.shape} fit no task; expected "
            + "; or ".join(f"{t}: {d}" for t, d in SHAPES.items())
            + "."
        )
    if task is not None and task != inferred:
        hint = ""
        if task == "binary" and inferred == "multiclass":
            hint = " For two-column probabilities pass scores[:, 1] or use task='multiclass'."
        raise ValueError(
            f"task={task!r} expects {SHAPES[task]}; got labels of shape {y.shape} and scores "
            f"of shape {s.shape}, which is {inferred}.{hint}"
        )
    if inferred not in allow:
        raise ValueError(
            f"{fn} takes {' or '.join(allow)} data; got {inferred} ({SHAPES[inferred]})."
        )
    if y.shape[0] == 0:
        raise ValueError("labels and scores are empty; need at least one sample.")
    if inferred == "multiclass" and s.shape[1] < 2:
        raise ValueError(f"scores must have K >= 2 columns for multiclass; got shape {s.shape}.")
    nan = np.isnan(s)
    if nan.any():
        raise ValueError(f"scores must not contain NaN; {first_bad(s, nan)}.")

    if mask is not None and inferred != "multilabel":
        raise ValueError(f"mask is only supported for multilabel data; got {inferred} data.")
    w = None
    if inferred == "multilabel" and mask is not None:
        m = float_array(mask, "mask")
        if m.shape != y.shape:
            raise ValueError(f"mask must have the shape of labels {y.shape}; got {m.shape}.")
        bad = ~np.isin(m, (0.0, 1.0))
        if bad.any():
            raise ValueError(f"mask must be 0 (ignore) or 1 (use); {first_bad(m, bad)}.")
        w = m == 1.0
    elif inferred == "multilabel":
        w = np.ones(y.shape, bool)

    if inferred == "multiclass":
        k = s.shape[1]
        bad = ~((y == np.round(y)) & (y >= 0) & (y < k))
        if bad.any():
            raise ValueError(
                f"labels must be integer class ids in [0, {k}) (K = scores.shape[1]); "
                f"{first_bad(y, bad)}."
            )
        return inferred, y.astype(np.int64), s, None
    bad = ~np.isin(y, (0.0, 1.0))
    if w is not None:
        bad &= w
    if bad.any():
        where = " where mask is 1" if mask is not None else ""
        raise ValueError(f"labels must be 0 or 1{where}; {first_bad(y, bad)}.")
    if inferred == "binary":
        return inferred, y.astype(np.int64), s, None
    return inferred, (y == 1.0) & w, s, w


def check_threshold(threshold: float) -> float:
    """The threshold as a finite float, or a ValueError saying what was given."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number; got {threshold!r}.") from None
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite; got {threshold!r}.")
    return t


def check_label_thresholds(threshold: ArrayLike, n_labels: int) -> np.ndarray:
    """One finite threshold per label (L,), or a ValueError saying what was given."""
    t = float_array(threshold, "threshold")
    if t.shape != (n_labels,):
        raise ValueError(
            f"threshold must be a number or one number per label, shape ({n_labels},); "
            f"got shape {t.shape}."
        )
    bad = ~np.isfinite(t)
    if bad.any():
        raise ValueError(f"threshold must be finite; {first_bad(t, bad)}.")
    return t


def finite_or_none(x: Any) -> float | None:
    """A plain float for JSON, None for NaN or infinity."""
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------- midranks


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties sharing their mean rank (Sun & Xu's midranks)."""
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    idx = np.broadcast_to(np.arange(n), x.shape)
    starts = np.ones(x.shape, bool)
    starts[..., 1:] = xs[..., 1:] != xs[..., :-1]
    ends = np.ones(x.shape, bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, n - 1), -1), axis=-1), -1)
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def auc_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC of each row of bool labels y and scores s (B, N); NaN if undefined."""
    n1 = y.sum(-1).astype(np.float64)
    n0 = y.shape[-1] - n1
    u = np.where(y, midranks(s), 0.0).sum(-1) - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


# ----------------------------------------------------------------------------- curves


def binary_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores in decreasing order and the true and false positives of
    ``score >= each`` (scikit-learn's ``_binary_clf_curve``) for bool labels y (N,) >= 1."""
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ss.size - 1]  # the last sample of each tie group
    tps = np.cumsum(yy, dtype=np.int64)[last]
    return ss[last], tps, last + 1 - tps


def average_precision_column(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision of bool labels y (N,) and scores s: sum of (R_k - R_(k-1)) P_k over
    the distinct scores in decreasing order, no interpolation (as scikit-learn); NaN with no
    positive sample."""
    if not y.any():
        return math.nan
    _, tps, fps = binary_curve(y, s)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * (tps / (tps + fps))))
