"""The study's tests against independent references: statsmodels' Holm, scikit-learn's
metrics, and a simulation with a known effect for the two-level bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from medgan_jax.metrics import study_stats


def test_holm_equals_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 40):
        p = rng.uniform(0, 0.2, m) ** 2
        p[: m // 3] = p[0]  # ties
        expected = multitest.multipletests(p, method="holm")[1]
        np.testing.assert_allclose(study_stats.holm(p), expected, rtol=1e-12)
    # A hand-checked table: sorted p 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), 0.04.
    np.testing.assert_allclose(study_stats.holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
    with pytest.raises(ValueError, match="p_values must be"):
        study_stats.holm([0.5, 1.5])


def test_row_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.random((6, 80)) < 0.2
    s = np.round(rng.random((6, 80)) + 0.5 * y, 1)  # coarse: many ties
    ap = study_stats.metric_rows("average_precision", y, s)
    auc = study_stats.metric_rows("roc_auc", y, s)
    for row in range(6):
        assert ap[row] == pytest.approx(skm.average_precision_score(y[row], s[row]), abs=1e-12)
        assert auc[row] == pytest.approx(skm.roc_auc_score(y[row], s[row]), abs=1e-12)
        predicted = s[row] >= 0.7
        expected = {
            "sensitivity": skm.recall_score(y[row], predicted),
            "specificity": skm.recall_score(~y[row], ~predicted),
            "balanced_accuracy": skm.balanced_accuracy_score(y[row], predicted),
            "accuracy": skm.accuracy_score(y[row], predicted),
            "f1": skm.f1_score(y[row], predicted),
            "precision": skm.precision_score(y[row], predicted, zero_division=np.nan),
        }
        for name, value in expected.items():
            got = study_stats.metric_rows(name, y, s, threshold=0.7)[row]
            assert got == pytest.approx(value, abs=1e-12, nan_ok=True), name
    assert np.isnan(study_stats.metric_rows("average_precision", np.zeros((1, 5), bool), s[:1, :5]))


def _simulated_study(rng, effect, num_seeds=6, num_cases=150):
    """Scores whose mean over cases and seeds differs by exactly `effect` in expectation:
    a shared case effect (the test set), a per-seed effect (training) and noise."""
    labels = rng.random(num_cases) < 0.3
    case = rng.normal(0, 1, num_cases)
    a = case + rng.normal(0, 0.4, (num_seeds, 1)) + rng.normal(0, 0.5, (num_seeds, num_cases))
    b = case + effect + rng.normal(0, 0.4, (num_seeds, 1))
    b = b + rng.normal(0, 0.5, (num_seeds, num_cases))
    mean_rows = lambda scores: lambda cases: scores[:, cases].mean(axis=-1)  # noqa: E731
    return labels, {"a": mean_rows(a), "b": mean_rows(b)}


def test_two_level_bootstrap_covers_a_known_effect_at_close_to_the_nominal_rate():
    rng = np.random.default_rng(2)
    effect, covered, rejected, trials = 0.6, 0, 0, 200
    for trial in range(trials):
        labels, rows = _simulated_study(rng, effect)
        reps, est = study_stats.two_level_bootstrap(rows, labels, 6, n_resamples=400, seed=trial)
        diff = study_stats.summarise_difference(reps["b"] - reps["a"], est["b"] - est["a"], 6)
        covered += diff["ci_low"] <= effect <= diff["ci_high"]
        rejected += diff["p_value"] < 0.05
    assert 0.91 <= covered / trials <= 0.99
    assert rejected / trials > 0.5  # the effect is found most of the time


def test_two_level_bootstrap_keeps_its_false_positive_rate_without_an_effect():
    rng = np.random.default_rng(3)
    rejected, trials = 0, 200
    for trial in range(trials):
        labels, rows = _simulated_study(rng, 0.0)
        reps, est = study_stats.two_level_bootstrap(rows, labels, 6, n_resamples=400, seed=trial)
        diff = study_stats.summarise_difference(reps["b"] - reps["a"], est["b"] - est["a"], 6)
        rejected += diff["p_value"] < 0.05
    assert rejected / trials <= 0.08


def test_ratio_interval_counts_undefined_replicates():
    num = np.array([0.1, 0.2, 0.3, 0.4])
    den = np.array([0.2, 0.4, -0.1, 0.8])
    out = study_stats.ratio_interval(num, den, 0.5)
    assert out["n_undefined"] == 1 and out["ci_low"] == pytest.approx(0.5)
