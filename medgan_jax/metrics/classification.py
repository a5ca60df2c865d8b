"""Classification metrics on label and score arrays (their CIs: `bootstrap`, `delong`).

Three tasks, told apart by the shapes of the inputs (``classification_report`` also takes
the task by name and checks that the shapes fit it):

- binary: labels (N,) in {0, 1}; scores (N,) = P(positive), or any score that ranks.
- multiclass: labels (N,) int class ids in [0, K); scores (N, K) class probabilities.
  The hard prediction is the argmax (the first class on ties); one-vs-rest for per-class
  rates and AUCs.
- multilabel: labels (N, L) multi-hot; scores (N, L); optional mask (N, L) with
  0 = ignore that label for that sample (CheXpert uncertainty). Labels under a 0 mask are
  never read, so they may hold anything (-1, NaN).

A binary or multi-label prediction is positive when ``score >= threshold`` (multi-label: one
threshold for all labels, or one per label). ``choose_threshold`` picks that cut-off on
validation data (Youden's J, a target sensitivity or specificity); apply it unchanged to test.
Average precision (AUPRC) is scikit-learn's step-wise sum, beside ROC AUC. All arithmetic
is float64 NumPy. A metric with no value on the data (a rate whose denominator is empty,
an AUC with one class present) raises ``UndefinedMetricError`` from the scalar functions,
is NaN in ``per_class_metrics``, and is None with a reason in ``classification_report``;
macro averages are over the classes where the metric is defined (as scikit-learn's
``zero_division=np.nan``), and the report lists the ones left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medgan_jax.metrics.core import (
    TASKS,
    UndefinedMetricError,
    auc_rows,
    average_precision_column,
    binary_curve,
    check_label_thresholds,
    check_threshold,
    finite_or_none,
    float_array,
    prepare,
)
from medgan_jax.metrics.delong import delong_auc_ci

_RATES = ("sensitivity", "specificity", "precision", "f1")


# ----------------------------------------------------------------------------- columns


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(np.shape(den), np.nan), where=den > 0)


def _columns(
    task: str, y: np.ndarray, s: np.ndarray, w: np.ndarray | None, threshold: float | np.ndarray
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
    return np.array([auc_rows(t[w[:, j], j], s[w[:, j], j])[()] for j in range(t.shape[1])])


def _column_ap(t: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.array(
        [average_precision_column(t[w[:, j], j], s[w[:, j], j]) for j in range(t.shape[1])]
    )


def _thresholds(task: str, threshold: Any, n_columns: int) -> float | np.ndarray:
    """A checked threshold: a float, or (L,) floats for multi-label; unused by multiclass
    (which also takes None, what `choose_threshold` gives it)."""
    if task == "multiclass" and threshold is None:
        return 0.5
    if task == "multilabel" and np.ndim(threshold) == 1:
        return check_label_thresholds(threshold, n_columns)
    return check_threshold(threshold)


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
    task, y, s, w = prepare(labels, scores, allow=("binary", "multiclass"), fn=name)
    t, p, _, cw = _columns(task, y, s, w, check_threshold(threshold))
    values = _column_stats(t, p, cw)[name]
    if task == "binary":
        values = values[1:]
    if np.isnan(values).all():
        raise UndefinedMetricError(f"{name} is undefined: {_UNDEFINED[name]}.")
    return float(np.nanmean(values))


# ----------------------------------------------------------------------------- public metrics


def predict(scores: ArrayLike, task: str, threshold: float | ArrayLike = 0.5) -> np.ndarray:
    """Hard predictions: score >= threshold (binary, multilabel: one or one per label) or
    argmax (multiclass)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
    s = float_array(scores, "scores")
    if task == "multiclass":
        if s.ndim != 2:
            raise ValueError(f"scores must have shape (N, K) for multiclass; got {s.shape}.")
        return np.argmax(s, axis=1)
    if task == "multilabel" and s.ndim == 2:
        return (s >= _thresholds(task, threshold, s.shape[1])).astype(np.int64)
    return (s >= check_threshold(threshold)).astype(np.int64)


def confusion_matrix(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Counts (K, K): rows = true class, columns = predicted (binary: [[TN, FP], [FN, TP]])."""
    task, y, s, _ = prepare(labels, scores, allow=("binary", "multiclass"), fn="confusion_matrix")
    k = 2 if task == "binary" else s.shape[1]
    return _confusion(y, _hard(task, s, check_threshold(threshold)), k)


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of samples whose hard prediction equals the label (binary or multiclass)."""
    task, y, s, _ = prepare(labels, scores, allow=("binary", "multiclass"), fn="accuracy")
    return float(np.mean(_hard(task, s, check_threshold(threshold)) == y))


def balanced_accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Mean recall over the classes present in labels (binary or multiclass)."""
    task, y, s, _ = prepare(labels, scores, allow=("binary", "multiclass"), fn="balanced_accuracy")
    k = 2 if task == "binary" else s.shape[1]
    cm = _confusion(y, _hard(task, s, check_threshold(threshold)), k)
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
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float | ArrayLike = 0.5,
    mask: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """One-vs-rest counts and rates per class or label, NaN where undefined (any task).

    Keys: n_used, n_positive, tp, fp, fn, tn, sensitivity, specificity, precision, f1, roc_auc,
    average_precision. Binary data gives two entries (class 0 as positive, class 1 as positive).
    """
    task, y, s, w = prepare(labels, scores, mask, fn="per_class_metrics")
    n_columns = s.shape[1] if s.ndim == 2 else 2
    t, p, cs, cw = _columns(task, y, s, w, _thresholds(task, threshold, n_columns))
    return {
        **_column_stats(t, p, cw),
        "roc_auc": _column_auc(t, cs, cw),
        "average_precision": _column_ap(t, cs, cw),
    }


def roc_auc(labels: ArrayLike, scores: ArrayLike, mask: ArrayLike | None = None) -> float:
    """ROC AUC: binary; macro one-vs-rest (multiclass); macro over labels (multilabel, masked).

    Raises UndefinedMetricError if any class or label has only one class present; use
    ``roc_auc_per_class`` to skip those and report them instead.
    """
    task, y, s, w = prepare(labels, scores, mask, fn="roc_auc")
    if task == "binary":
        auc = auc_rows(y == 1, s)[()]
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
    task, y, s, w = prepare(
        labels, scores, mask, allow=("multiclass", "multilabel"), fn="roc_auc_per_class"
    )
    t, _, cs, cw = _columns(task, y, s, w, 0.5)
    names = _names(class_names, t.shape[1], "class_names")
    aucs = _column_auc(t, cs, cw)
    skipped = [int(j) for j in np.flatnonzero(np.isnan(aucs))]
    n_pos, n_used = (t & cw).sum(0), cw.sum(0)
    return {
        "per_class": [finite_or_none(a) for a in aucs],
        "macro": finite_or_none(np.mean(aucs[~np.isnan(aucs)]))
        if len(skipped) < aucs.size
        else None,
        "skipped": skipped,
        "reason": _auc_skip_reason(
            task, [names[j] for j in skipped], n_pos[skipped], n_used[skipped]
        ),
    }


def average_precision(labels: ArrayLike, scores: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Average precision (AUPRC), as scikit-learn's ``average_precision_score``: binary; macro
    one-vs-rest (multiclass); macro over labels (multilabel, masked).

    The macro means are over the classes or labels with at least one positive (used) sample;
    raises UndefinedMetricError when there is none.
    """
    task, y, s, w = prepare(labels, scores, mask, fn="average_precision")
    if task == "binary":
        ap = average_precision_column(y == 1, s)
        if np.isnan(ap):
            raise UndefinedMetricError(
                f"average_precision is undefined: no positive samples in labels (0 of {y.size})."
            )
        return ap
    t, _, cs, cw = _columns(task, y, s, w, 0.5)
    aps = _column_ap(t, cs, cw)
    if np.isnan(aps).all():
        raise UndefinedMetricError(  # only multi-label: every sample is some class's positive
            "average_precision macro is undefined: no label has a positive among its unmasked "
            "samples."
        )
    return float(np.nanmean(aps))


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


# ----------------------------------------------------------------------------- thresholds

THRESHOLD_RULES = ("youden", "target_sensitivity", "target_specificity", "fixed", "0.5")
_TARGET_RULES = ("target_sensitivity", "target_specificity")


def choose_threshold(
    labels: ArrayLike,
    scores: ArrayLike,
    rule: str = "youden",
    target: float = 0.0,
    mask: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
    fallback: float | None = None,
) -> float | np.ndarray | None:
    """The cut-off for ``score >= threshold`` chosen on (validation) data by a rule.

    Binary: a float; multilabel: one per label (L,), each on its unmasked samples;
    multiclass: None (argmax needs no threshold). The candidates are the rows of
    scikit-learn's ``roc_curve``: every distinct score, and just above the highest one (where
    roc_curve lists inf: nothing predicted positive), so the metrics at the returned threshold
    on the same data are exactly what the rule promises.

    - 'youden': the maximum of Youden's J = sensitivity + specificity - 1 (= tpr - fpr,
      compared exactly in integer counts); on ties the highest threshold, the first one
      roc_curve lists (``thresholds[argmax(tpr - fpr)]``).
    - 'target_sensitivity': the largest threshold whose sensitivity is >= target.
    - 'target_specificity': the smallest threshold whose specificity is >= target.
    - 'fixed' or '0.5': 0.5 (the default threshold), whatever the data.

    Where a rule is undefined (Youden: both classes needed; target_sensitivity: positives;
    target_specificity: negatives) it raises UndefinedMetricError naming the labels, or,
    given ``fallback``, uses that threshold there.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"rule must be one of {list(THRESHOLD_RULES)}; got {rule!r}.")
    if rule in _TARGET_RULES:
        try:
            value = float(target)
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"target must be a number in [0, 1] for rule {rule!r}; got {target!r}."
            )
        target = value
    if fallback is not None:
        fallback = check_threshold(fallback)
    task, y, s, w = prepare(labels, scores, mask, fn="choose_threshold")
    if task == "multiclass":
        return None
    if task == "binary":
        value, why = (0.5, None) if rule in ("fixed", "0.5") else _pick(y == 1, s, rule, target)
        if why is None:
            return value
        if fallback is None:
            raise UndefinedMetricError(f"choose_threshold(rule={rule!r}) is undefined: {why}.")
        return fallback
    names = _names(class_names, s.shape[1], "class_names")
    out, undefined = np.full(s.shape[1], 0.5), []
    if rule in ("fixed", "0.5"):
        return out
    for j in range(s.shape[1]):
        value, why = _pick(y[w[:, j], j], s[w[:, j], j], rule, target)
        if why is None:
            out[j] = value
        else:
            undefined.append(f"{names[j]}: {why}")
            out[j] = math.nan if fallback is None else fallback
    if undefined and fallback is None:
        raise UndefinedMetricError(
            f"choose_threshold(rule={rule!r}) is undefined for {len(undefined)} of "
            f"{s.shape[1]} labels ({'; '.join(undefined)})."
        )
    return out


def _pick(t: np.ndarray, s: np.ndarray, rule: str, target: float) -> tuple[float, str | None]:
    """(threshold, None) by `rule` for bool labels t and scores s, or (nan, why undefined)."""
    n1 = int(t.sum())
    n0 = t.size - n1
    need = {"youden": n1 and n0, "target_sensitivity": n1, "target_specificity": n0}[rule]
    if not need:
        needs = {
            "youden": "positive and negative samples",
            "target_sensitivity": "positive samples",
            "target_specificity": "negative samples",
        }[rule]
        return math.nan, f"needs {needs}; got {n1} positive of {t.size}"
    values, tps, fps = binary_curve(t, s)
    # Decreasing thresholds, first one above every score (roc_curve's inf): nothing positive.
    candidates = np.r_[np.nextafter(values[0], np.inf), values]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    if rule == "youden":
        k = int(np.argmax(tps * n0 - fps * n1))  # J * n1 * n0, exact
    elif rule == "target_sensitivity":
        k = int(np.flatnonzero(tps / n1 >= target)[0])  # the last candidate has 1
    else:
        k = int(np.flatnonzero((n0 - fps) / n0 >= target)[-1])  # the first has 1
    return float(candidates[k]), None


# ----------------------------------------------------------------------------- report


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
    threshold: float | ArrayLike | None = 0.5,
) -> dict[str, Any]:
    """All metrics for a task as JSON-serialisable nested dicts (plain floats, ints, lists).

    ``threshold``: a float (binary, multilabel), or one per label (multilabel, e.g. from
    ``choose_threshold``); multiclass ignores it (argmax) and also takes None.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
    task, y, s, w = prepare(labels, scores, mask, task=task, fn="classification_report")
    threshold = _thresholds(task, threshold, s.shape[1] if s.ndim == 2 else 2)
    t, p, cs, cw = _columns(task, y, s, w, threshold)
    stats = {
        **_column_stats(t, p, cw),
        "roc_auc": _column_auc(t, cs, cw),
        "average_precision": _column_ap(t, cs, cw),
    }
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
        "average_precision": f"no positive {used}",
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
    keys = ("roc_auc", "average_precision", *_RATES)
    per = {
        name: {
            "n_used": int(stats["n_used"][j]),
            "n_positive": int(stats["n_positive"][j]),
            **{k: finite_or_none(stats[k][j]) for k in keys},
        }
        for j, name in enumerate(names)
    }
    macro = {
        k: finite_or_none(np.mean(stats[k][~np.isnan(stats[k])]))
        if (~np.isnan(stats[k])).any()
        else None
        for k in keys
    }
    if task == "multilabel":
        # Per-label "classes" read as labels in this task.
        for v in skipped.values():
            v["labels"] = v.pop("classes")
        return {
            **report,
            "label_names": names,
            "threshold": threshold.tolist() if isinstance(threshold, np.ndarray) else threshold,
            "roc_auc_macro": macro["roc_auc"],
            "average_precision_macro": macro["average_precision"],
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
        "average_precision_macro_ovr": macro["average_precision"],
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
    auc = finite_or_none(stats["roc_auc"][1])
    if auc is None:
        undefined["roc_auc"] = f"only one class present in labels ({n1} positive of {n1 + n0})"
    delong = None
    if n1 >= 2 and n0 >= 2:
        delong = delong_auc_ci(y, s)
        delong.pop("auc")
    elif auc is not None:
        undefined["roc_auc_delong"] = "DeLong's variance needs at least 2 samples of each class"
    ap = finite_or_none(stats["average_precision"][1])
    if ap is None:
        undefined["average_precision"] = f"no positive samples in labels (0 of {n1 + n0})"
    return {
        "class_names": names,
        "support": [n0, n1],
        "threshold": threshold,
        "accuracy": float(np.trace(cm) / cm.sum()),
        "balanced_accuracy": float(np.nanmean(_ratio(np.diag(cm), cm.sum(1)))),
        "roc_auc": auc,
        "roc_auc_delong": delong,
        "average_precision": ap,
        **{k: finite_or_none(stats[k][1]) for k in _RATES},
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_layout": "rows = true, columns = predicted: [[TN, FP], [FN, TP]]",
        "undefined": undefined,
    }


HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "sensitivity",
    "specificity",
    "f1",
    "average_precision",
)


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The same few numbers from any task's `classification_report` (macro for
    multi-class and multi-label; None where the task has no such metric, or an older report
    lacks it)."""
    if report["task"] == "binary":
        return {k: report.get(k) for k in HEADLINE}
    macro = report["macro"]
    auc = report.get("roc_auc_macro_ovr", report.get("roc_auc_macro"))
    return {
        "accuracy": report.get("accuracy"),
        "balanced_accuracy": report.get("balanced_accuracy"),
        "roc_auc": auc,
        **{k: macro.get(k) for k in ("sensitivity", "specificity", "f1", "average_precision")},
    }
