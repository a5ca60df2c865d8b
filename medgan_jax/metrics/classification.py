"""Classification metrics on label and score arrays, with bootstrap CIs and DeLong's test.

Three tasks, told apart by the shapes of the inputs (``classification_report`` also takes
the task by name and checks that the shapes fit it):

- binary: labels (N,) in {0, 1}; scores (N,) = P(positive), or any score that ranks.
- multiclass: labels (N,) int class ids in [0, K); scores (N, K) class probabilities.
  The hard prediction is the argmax (the first class on ties); one-vs-rest for per-class
  rates and AUCs.
- multilabel: labels (N, L) multi-hot; scores (N, L); optional mask (N, L) with
  0 = ignore that label for that sample (CheXpert uncertainty). Labels under a 0 mask are
  never read, so they may hold anything (-1, NaN).

A binary or multi-label prediction is positive when ``score >= threshold``. All arithmetic
is float64 NumPy. A metric with no value on the data (a rate whose denominator is empty,
an AUC with one class present) raises ``UndefinedMetricError`` from the scalar functions,
is NaN in ``per_class_metrics``, and is None with a reason in ``classification_report``;
macro averages are over the classes where the metric is defined (as scikit-learn's
``zero_division=np.nan``), and the report lists the ones left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

TASKS = ("binary", "multiclass", "multilabel")
_SHAPES = {
    "binary": "labels (N,) in {0, 1} and scores (N,) = P(positive)",
    "multiclass": "labels (N,) int class ids and scores (N, K) class probabilities",
    "multilabel": "labels (N, L) multi-hot and scores (N, L)",
}
_RATES = ("sensitivity", "specificity", "precision", "f1")
# Bootstrap index matrices are drawn in chunks of about this many entries (16 MiB of int64).
_CHUNK_ELEMENTS = 1 << 21


class UndefinedMetricError(ValueError):
    """A metric with no value on this data, e.g. ROC AUC when only one class is present."""


# ----------------------------------------------------------------------------- validation


def _float_array(x: ArrayLike, name: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric; could not read it as float64 ({e}).") from None


def _first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    where = np.argwhere(bad)
    found = np.unique(values[bad])
    shown = ", ".join(f"{v:g}" for v in found[:5]) + (", ..." if found.size > 5 else "")
    first = tuple(int(i) for i in where[0])
    return f"found {shown} ({int(bad.sum())} entries, first at index {first})"


def _prepare(
    labels: ArrayLike,
    scores: ArrayLike,
    mask: ArrayLike | None = None,
    task: str | None = None,
    allow: Sequence[str] = TASKS,
    fn: str = "this metric",
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """Checks inputs and returns (task, labels as int64 or bool, scores float64, mask bool)."""
    y = _float_array(labels, "labels")
    s = _float_array(scores, "scores")
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
            + "; or ".join(f"{t}: {d}" for t, d in _SHAPES.items())
            + "."
        )
    if task is not None and task != inferred:
        hint = ""
        if task == "binary" and inferred == "multiclass":
            hint = " For two-column probabilities pass scores[:, 1] or use task='multiclass'."
        raise ValueError(
            f"task={task!r} expects {_SHAPES[task]}; got labels of shape {y.shape} and scores "
            f"of shape {s.shape}, which is {inferred}.{hint}"
        )
    if inferred not in allow:
        raise ValueError(
            f"{fn} takes {' or '.join(allow)} data; got {inferred} ({_SHAPES[inferred]})."
        )
    if y.shape[0] == 0:
        raise ValueError("labels and scores are empty; need at least one sample.")
    if inferred == "multiclass" and s.shape[1] < 2:
        raise ValueError(f"scores must have K >= 2 columns for multiclass; got shape {s.shape}.")
    nan = np.isnan(s)
    if nan.any():
        raise ValueError(f"scores must not contain NaN; {_first_bad(s, nan)}.")

    if mask is not None and inferred != "multilabel":
        raise ValueError(f"mask is only supported for multilabel data; got {inferred} data.")
    w = None
    if inferred == "multilabel" and mask is not None:
        m = _float_array(mask, "mask")
        if m.shape != y.shape:
            raise ValueError(f"mask must have the shape of labels {y.shape}; got {m.shape}.")
        bad = ~np.isin(m, (0.0, 1.0))
        if bad.any():
            raise ValueError(f"mask must be 0 (ignore) or 1 (use); {_first_bad(m, bad)}.")
        w = m == 1.0
    elif inferred == "multilabel":
        w = np.ones(y.shape, bool)

    if inferred == "multiclass":
        k = s.shape[1]
        bad = ~((y == np.round(y)) & (y >= 0) & (y < k))
        if bad.any():
            raise ValueError(
                f"labels must be integer class ids in [0, {k}) (K = scores.shape[1]); "
                f"{_first_bad(y, bad)}."
            )
        return inferred, y.astype(np.int64), s, None
    bad = ~np.isin(y, (0.0, 1.0))
    if w is not None:
        bad &= w
    if bad.any():
        where = " where mask is 1" if mask is not None else ""
        raise ValueError(f"labels must be 0 or 1{where}; {_first_bad(y, bad)}.")
    if inferred == "binary":
        return inferred, y.astype(np.int64), s, None
    return inferred, (y == 1.0) & w, s, w


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number; got {threshold!r}.") from None
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite; got {threshold!r}.")
    return t


# ----------------------------------------------------------------------------- core maths


def _midranks(x: np.ndarray) -> np.ndarray:
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


def _auc_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC of each row of bool labels y and scores s (B, N); NaN if undefined."""
    n1 = y.sum(-1).astype(np.float64)
    n0 = y.shape[-1] - n1
    u = np.where(y, _midranks(s), 0.0).sum(-1) - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(np.shape(den), np.nan), where=den > 0)


def _columns(
    task: str, y: np.ndarray, s: np.ndarray, w: np.ndarray | None, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One-vs-rest columns (N, C): true bool, predicted bool, scores, and use-mask."""
    if task == "multilabel":
        return y, s >= threshold, s, w
    if task == "binary":
        pred = (s >= threshold).astype(np.int64)
        scores = np.stack([-s, s], axis=1)  # column 0 ranks class 0 as positive
    else:
        pred = np.argmax(s, axis=1)
        scores = s
    k = scores.shape[1]
    classes = np.arange(k)
    return y[:, None] == classes, pred[:, None] == classes, scores, np.ones((y.size, k), bool)


def _column_stats(t: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    tp = (w & t & p).sum(0)
    fp = (w & ~t & p).sum(0)
    fn = (w & t & ~p).sum(0)
    tn = (w & ~t & ~p).sum(0)
    return {
        "n_used": w.sum(0),
        "n_positive": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _column_auc(t: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.array([_auc_rows(t[w[:, j], j], s[w[:, j], j])[()] for j in range(t.shape[1])])


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _hard(task: str, s: np.ndarray, threshold: float) -> np.ndarray:
    return (s >= threshold).astype(np.int64) if task == "binary" else np.argmax(s, axis=1)


_UNDEFINED = {
    "sensitivity": "no positive samples in labels",
    "specificity": "no negative samples in labels",
    "precision": "no samples predicted positive",
    "f1": "no positive samples in labels and none predicted positive",
}


def _binary_or_macro(name: str, labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    task, y, s, w = _prepare(labels, scores, allow=("binary", "multiclass"), fn=name)
    t, p, _, cw = _columns(task, y, s, w, _check_threshold(threshold))
    values = _column_stats(t, p, cw)[name]
    if task == "binary":
        values = values[1:]
    if np.isnan(values).all():
        raise UndefinedMetricError(f"{name} is undefined: {_UNDEFINED[name]}.")
    return float(np.nanmean(values))


# ----------------------------------------------------------------------------- public metrics


def predict(scores: ArrayLike, task: str, threshold: float = 0.5) -> np.ndarray:
    """Hard predictions: score >= threshold (binary, multilabel) or argmax (multiclass)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
    s = _float_array(scores, "scores")
    if task == "multiclass":
        if s.ndim != 2:
            raise ValueError(f"scores must have shape (N, K) for multiclass; got {s.shape}.")
        return np.argmax(s, axis=1)
    return (s >= _check_threshold(threshold)).astype(np.int64)


def confusion_matrix(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Counts (K, K): rows = true class, columns = predicted (binary: [[TN, FP], [FN, TP]])."""
    task, y, s, _ = _prepare(labels, scores, allow=("binary", "multiclass"), fn="confusion_matrix")
    k = 2 if task == "binary" else s.shape[1]
    return _confusion(y, _hard(task, s, _check_threshold(threshold)), k)


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of samples whose hard prediction equals the label (binary or multiclass)."""
    task, y, s, _ = _prepare(labels, scores, allow=("binary", "multiclass"), fn="accuracy")
    return float(np.mean(_hard(task, s, _check_threshold(threshold)) == y))


def balanced_accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Mean recall over the classes present in labels (binary or multiclass)."""
    task, y, s, _ = _prepare(labels, scores, allow=("binary", "multiclass"), fn="balanced_accuracy")
    k = 2 if task == "binary" else s.shape[1]
    cm = _confusion(y, _hard(task, s, _check_threshold(threshold)), k)
    return float(np.nanmean(_ratio(np.diag(cm), cm.sum(1))))


def sensitivity(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Recall TP / (TP + FN): of the positive class (binary) or the macro mean (multiclass)."""
    return _binary_or_macro("sensitivity", labels, scores, threshold)


recall = sensitivity


def specificity(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """TN / (TN + FP): of the positive class (binary) or the one-vs-rest macro mean (multiclass)."""
    return _binary_or_macro("specificity", labels, scores, threshold)


def precision(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """TP / (TP + FP): of the positive class (binary) or the macro mean (multiclass)."""
    return _binary_or_macro("precision", labels, scores, threshold)


def f1(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """2 TP / (2 TP + FP + FN): of the positive class (binary) or the macro mean (multiclass)."""
    return _binary_or_macro("f1", labels, scores, threshold)


def per_class_metrics(
    labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5, mask: ArrayLike | None = None
) -> dict[str, np.ndarray]:
    """One-vs-rest counts and rates per class or label, NaN where undefined (any task).

    Keys: n_used, n_positive, tp, fp, fn, tn, sensitivity, specificity, precision, f1, roc_auc.
    Binary data gives two entries (class 0 as positive, class 1 as positive).
    """
    task, y, s, w = _prepare(labels, scores, mask, fn="per_class_metrics")
    t, p, cs, cw = _columns(task, y, s, w, _check_threshold(threshold))
    return {**_column_stats(t, p, cw), "roc_auc": _column_auc(t, cs, cw)}


def roc_auc(labels: ArrayLike, scores: ArrayLike, mask: ArrayLike | None = None) -> float:
    """ROC AUC: binary; macro one-vs-rest (multiclass); macro over labels (multilabel, masked).

    Raises UndefinedMetricError if any class or label has only one class present; use
    ``roc_auc_per_class`` to skip those and report them instead.
    """
    task, y, s, w = _prepare(labels, scores, mask, fn="roc_auc")
    if task == "binary":
        auc = _auc_rows(y == 1, s)[()]
        if np.isnan(auc):
            raise UndefinedMetricError(
                f"roc_auc is undefined: only one class present in labels "
                f"({int(y.sum())} positive of {y.size})."
            )
        return float(auc)
    result = roc_auc_per_class(labels, scores, mask)
    if result["skipped"]:
        raise UndefinedMetricError(f"roc_auc macro is undefined: {result['reason']}")
    return float(result["macro"])


def roc_auc_per_class(
    labels: ArrayLike,
    scores: ArrayLike,
    mask: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-class one-vs-rest (multiclass) or per-label (multilabel) ROC AUC and their macro mean.

    Returns per_class (float or None), macro (mean over defined entries, or None), skipped
    (indices with only one class present among the used samples) and reason (None or text).
    """
    task, y, s, w = _prepare(
        labels, scores, mask, allow=("multiclass", "multilabel"), fn="roc_auc_per_class"
    )
    t, _, cs, cw = _columns(task, y, s, w, 0.5)
    names = _names(class_names, t.shape[1], "class_names")
    aucs = _column_auc(t, cs, cw)
    skipped = [int(j) for j in np.flatnonzero(np.isnan(aucs))]
    n_pos, n_used = (t & cw).sum(0), cw.sum(0)
    return {
        "per_class": [_num(a) for a in aucs],
        "macro": _num(np.mean(aucs[~np.isnan(aucs)])) if len(skipped) < aucs.size else None,
        "skipped": skipped,
        "reason": _auc_skip_reason(
            task, [names[j] for j in skipped], n_pos[skipped], n_used[skipped]
        ),
    }


def _auc_skip_reason(
    task: str, names: list[str], n_pos: np.ndarray, n_used: np.ndarray
) -> str | None:
    if not names:
        return None
    used = "unmasked samples" if task == "multilabel" else "samples"
    details = "; ".join(
        f"{name}: no {used}" if n == 0 else f"{name}: {p} positive of {n} {used}"
        for name, p, n in zip(names, n_pos.tolist(), n_used.tolist())
    )
    return f"ROC AUC needs both classes present, skipped {len(names)} ({details})."


# ----------------------------------------------------------------------------- report


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _names(class_names: Sequence[str] | None, k: int, arg: str) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"{arg} must have {k} entries (one per class or label); got {len(names)}.")
    if len(set(names)) != k:
        raise ValueError(f"{arg} must be unique; got {names}.")
    return names


def _skips(
    stats: dict[str, np.ndarray], names: list[str], reasons: dict[str, str]
) -> dict[str, Any]:
    out = {}
    for key, reason in reasons.items():
        bad = [names[j] for j in np.flatnonzero(np.isnan(stats[key]))]
        if bad:
            out[key] = {"classes": bad, "reason": reason}
    return out


def classification_report(
    labels: ArrayLike,
    scores: ArrayLike,
    task: str,
    class_names: Sequence[str] | None = None,
    mask: ArrayLike | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """All metrics for a task as JSON-serialisable nested dicts (plain floats, ints, lists)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
    task, y, s, w = _prepare(labels, scores, mask, task=task, fn="classification_report")
    threshold = _check_threshold(threshold)
    t, p, cs, cw = _columns(task, y, s, w, threshold)
    stats = {**_column_stats(t, p, cw), "roc_auc": _column_auc(t, cs, cw)}
    names = _names(class_names, t.shape[1], "class_names")
    report: dict[str, Any] = {"task": task, "n_samples": int(s.shape[0])}
    if task == "binary":
        return {**report, **_binary_report(y, s, stats, names, threshold)}

    used = "unmasked samples" if task == "multilabel" else "samples"
    reasons = {
        "sensitivity": f"no positive {used}",
        "specificity": f"no negative {used}",
        "precision": "no samples predicted positive"
        if task == "multilabel"
        else "no samples predicted as this class",
        "f1": f"no positive {used} and none predicted positive",
    }
    skipped = _skips(stats, names, reasons)
    auc_skip = np.flatnonzero(np.isnan(stats["roc_auc"]))
    if auc_skip.size:
        skipped["roc_auc"] = {
            "classes": [names[j] for j in auc_skip],
            "reason": _auc_skip_reason(
                task,
                [names[j] for j in auc_skip],
                stats["n_positive"][auc_skip],
                stats["n_used"][auc_skip],
            ),
        }
    keys = ("roc_auc", *_RATES)
    per = {
        name: {
            "n_used": int(stats["n_used"][j]),
            "n_positive": int(stats["n_positive"][j]),
            **{k: _num(stats[k][j]) for k in keys},
        }
        for j, name in enumerate(names)
    }
    macro = {
        k: _num(np.mean(stats[k][~np.isnan(stats[k])])) if (~np.isnan(stats[k])).any() else None
        for k in keys
    }
    if task == "multilabel":
        # Per-label "classes" read as labels in this task.
        for v in skipped.values():
            v["labels"] = v.pop("classes")
        return {
            **report,
            "label_names": names,
            "threshold": threshold,
            "roc_auc_macro": macro["roc_auc"],
            "per_label": per,
            "macro": macro,
            "skipped": skipped,
        }
    cm = _confusion(y, np.argmax(s, axis=1), s.shape[1])
    return {
        **report,
        "class_names": names,
        "decision": "argmax",
        "support": cm.sum(1).tolist(),
        "accuracy": float(np.trace(cm) / cm.sum()),
        "balanced_accuracy": float(np.nanmean(_ratio(np.diag(cm), cm.sum(1)))),
        "roc_auc_macro_ovr": macro["roc_auc"],
        "per_class": per,
        "macro": macro,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_layout": "rows = true class, columns = predicted class",
        "skipped": skipped,
    }


def _binary_report(
    y: np.ndarray, s: np.ndarray, stats: dict[str, np.ndarray], names: list[str], threshold: float
) -> dict[str, Any]:
    cm = _confusion(y, (s >= threshold).astype(np.int64), 2)
    n1, n0 = int(cm[1].sum()), int(cm[0].sum())
    undefined = {}
    for key in _RATES:
        if np.isnan(stats[key][1]):
            undefined[key] = _UNDEFINED[key] + (
                f" at threshold {threshold}" if key == "precision" else ""
            )
    auc = _num(stats["roc_auc"][1])
    if auc is None:
        undefined["roc_auc"] = f"only one class present in labels ({n1} positive of {n1 + n0})"
    delong = None
    if n1 >= 2 and n0 >= 2:
        delong = delong_auc_ci(y, s)
        delong.pop("auc")
    elif auc is not None:
        undefined["roc_auc_delong"] = "DeLong's variance needs at least 2 samples of each class"
    return {
        "class_names": names,
        "support": [n0, n1],
        "threshold": threshold,
        "accuracy": float(np.trace(cm) / cm.sum()),
        "balanced_accuracy": float(np.nanmean(_ratio(np.diag(cm), cm.sum(1)))),
        "roc_auc": auc,
        "roc_auc_delong": delong,
        **{k: _num(stats[k][1]) for k in _RATES},
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_layout": "rows = true, columns = predicted: [[TN, FP], [FN, TP]]",
        "undefined": undefined,
    }


# ----------------------------------------------------------------------------- bootstrap


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
    y = _float_array(labels, "labels")
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
    task, y, s, _ = _prepare(labels, scores, mask, fn="bootstrap_ci")
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
            values[done : done + len(idx)] = _auc_rows(y[idx] == 1, s[idx])
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
        "ci_low": _num(low) if low is not None else None,
        "ci_high": _num(high) if high is not None else None,
        "std_error": float(np.std(valid, ddof=1)) if valid.size > 1 else None,
        "confidence": float(confidence),
        "n_resamples": int(n_resamples),
        "n_valid": int(valid.size),
        "n_skipped": int(n_resamples - valid.size),
        "stratified": strata is not None,
        "seed": int(seed),
        "method": "percentile",
    }


# ----------------------------------------------------------------------------- DeLong


def _delong_components(
    labels: ArrayLike, scores: ArrayLike, arg: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs (k,) and structural components V10 (k, m) over positives, V01 (k, n) over negatives."""
    y = _float_array(labels, "labels")
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must have shape (N,) with N >= 1; got {y.shape}.")
    s = np.atleast_2d(_float_array(scores, arg))
    if s.ndim != 2 or s.shape[1] != y.size:
        raise ValueError(
            f"{arg} must have shape (N,) or (k, N) with N = len(labels) = {y.size}; got "
            f"{np.shape(scores)}."
        )
    _prepare(y, s[0], fn="DeLong")  # label values and NaN checks with the usual messages
    for row in s[1:]:
        _prepare(y, row, fn="DeLong")
    pos = y == 1.0
    m, n = int(pos.sum()), int((~pos).sum())
    if m < 2 or n < 2:
        raise UndefinedMetricError(
            f"DeLong's variance needs at least 2 positive and 2 negative samples; labels has "
            f"{m} positive and {n} negative."
        )
    x, z = s[:, pos], s[:, ~pos]
    tz = _midranks(np.concatenate([x, z], axis=1))
    v10 = (tz[:, :m] - _midranks(x)) / n
    v01 = 1.0 - (tz[:, m:] - _midranks(z)) / m
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
    a = _float_array(scores_a, "scores_a")
    b = _float_array(scores_b, "scores_b")
    if a.shape != b.shape:
        raise ValueError(
            f"scores_a and scores_b must have the same shape; got {a.shape} and {b.shape}."
        )
    for arr, arg in ((a, "scores_a"), (b, "scores_b")):
        if arr.ndim != 1:
            raise ValueError(f"{arg} must have shape (N,); got {arr.shape}.")
        if np.isnan(arr).any():
            raise ValueError(f"{arg} must not contain NaN; {_first_bad(arr, np.isnan(arr))}.")
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


HEADLINE = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity", "f1")


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The same few numbers from any task's `classification_report` (macro for
    multi-class and multi-label; None where the task has no such metric)."""
    if report["task"] == "binary":
        return {k: report.get(k) for k in HEADLINE}
    macro = report["macro"]
    auc = report.get("roc_auc_macro_ovr", report.get("roc_auc_macro"))
    return {
        "accuracy": report.get("accuracy"),
        "balanced_accuracy": report.get("balanced_accuracy"),
        "roc_auc": auc,
        **{k: macro.get(k) for k in ("sensitivity", "specificity", "f1")},
    }
