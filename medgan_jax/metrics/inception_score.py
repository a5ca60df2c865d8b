"""Inception Score: exp(E_x KL(p(y|x) || p(y))), mean and std over splits (Salimans et al. 2016).

The scoring network is pluggable: pass the class probabilities (or logits) that any
network produced — Inception-v3 with ImageNet weights, or a classifier of this project
trained on the medical classes (the domain "classifier score").
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, xlogy


def inception_score(
    probs: np.ndarray | None = None, *, logits: np.ndarray | None = None, num_splits: int = 10
) -> dict:
    """IS mean and std over `num_splits` consecutive splits, in float64, as published.

    For a binary network with one logit, pass `logits` of shape (N, 1): they are
    expanded to the two-class distribution [1 - sigmoid, sigmoid].
    """
    log_p = _log_probs(probs, logits)
    n = log_p.shape[0]
    if not 1 <= num_splits <= n:
        raise ValueError(f"num_splits={num_splits} must be between 1 and the {n} images.")
    scores = []
    for part in np.array_split(log_p, num_splits):
        p = np.exp(part)
        log_marginal = np.log(np.mean(p, axis=0))
        # KL(p(y|x) || p(y)) with 0 log 0 = 0 for classes the network never predicts.
        kl = np.sum(xlogy(p, p) - p * log_marginal, axis=1)
        scores.append(np.exp(np.mean(kl)))
    return {
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "num_splits": num_splits,
        "num_images": n,
    }


def _log_probs(probs: np.ndarray | None, logits: np.ndarray | None) -> np.ndarray:
    """log p(y|x) as float64 (N, K) from exactly one of `probs` or `logits`."""
    if (probs is None) == (logits is None):
        raise ValueError("Pass exactly one of probs= or logits=.")
    values = np.asarray(probs if logits is None else logits, np.float64)
    name = "probs" if logits is None else "logits"
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty (num_images, num_classes) array, got shape {values.shape}."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or inf.")
    if logits is not None:
        if values.shape[1] == 1:  # One sigmoid logit: P(positive) and its complement.
            values = np.concatenate([np.zeros_like(values), values], axis=1)
        return log_softmax(values, axis=1)
    if np.any(values < 0) or not np.allclose(values.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(
            "probs must be non-negative and each row must sum to 1; pass "
            "logits= for unnormalised network outputs."
        )
    with np.errstate(divide="ignore"):
        return np.log(values)
