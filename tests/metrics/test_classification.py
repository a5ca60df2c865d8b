"""Classification metrics against scikit-learn, DeLong against a brute-force O(N^2) definition."""

import json
import math

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from medgan_jax.metrics import bootstrap as B
from medgan_jax.metrics import classification as C
from medgan_jax.metrics import delong as D

TOL = 1e-9


def _binary(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # Coarse scores correlated with the label: many ties, AUC well away from 0.5.
    s = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, n), 1), 0, 1)
    return y, s


def _multiclass(n=400, k=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.integers(0, 4, (n, k)).astype(float)  # integer logits: ties everywhere
    logits[np.arange(n), y] += rng.integers(0, 2, n)
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def _multilabel(n=300, n_labels=5, seed=2):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=(n, n_labels)) < np.linspace(0.1, 0.5, n_labels)).astype(float)
    s = np.round(np.clip(0.4 * y + rng.uniform(0, 0.6, y.shape), 0, 1), 1)
    mask = (rng.uniform(size=y.shape) > 0.3).astype(float)
    return y, s, mask


@pytest.mark.parametrize("threshold", [0.5, 0.35])
def test_binary_metrics_match_sklearn(threshold):
    y, s = _binary()
    pred = (s >= threshold).astype(int)
    assert abs(C.accuracy(y, s, threshold) - skm.accuracy_score(y, pred)) < TOL
    assert abs(C.balanced_accuracy(y, s, threshold) - skm.balanced_accuracy_score(y, pred)) < TOL
    assert abs(C.roc_auc(y, s) - skm.roc_auc_score(y, s)) < TOL
    assert abs(C.sensitivity(y, s, threshold) - skm.recall_score(y, pred)) < TOL
    assert abs(C.specificity(y, s, threshold) - skm.recall_score(y, pred, pos_label=0)) < TOL
    assert abs(C.precision(y, s, threshold) - skm.precision_score(y, pred)) < TOL
    assert abs(C.f1(y, s, threshold) - skm.f1_score(y, pred)) < TOL
    np.testing.assert_array_equal(
        C.confusion_matrix(y, s, threshold), skm.confusion_matrix(y, pred)
    )
    np.testing.assert_array_equal(C.predict(s, "binary", threshold), pred)

    report = C.classification_report(
        y, s, "binary", class_names=["benign", "malignant"], threshold=threshold
    )
    json.dumps(report, allow_nan=False)
    assert report["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert abs(report["roc_auc"] - skm.roc_auc_score(y, s)) < TOL
    assert abs(report["f1"] - skm.f1_score(y, pred)) < TOL
    assert report["support"] == [int((y == 0).sum()), int((y == 1).sum())]
    assert report["undefined"] == {}
    delong = report["roc_auc_delong"]
    assert delong["ci_low"] < report["roc_auc"] < delong["ci_high"]


def test_multiclass_metrics_match_sklearn():
    y, p = _multiclass()
    k = p.shape[1]
    pred = p.argmax(1)
    assert abs(C.accuracy(y, p) - skm.accuracy_score(y, pred)) < TOL
    assert abs(C.balanced_accuracy(y, p) - skm.balanced_accuracy_score(y, pred)) < TOL
    auc_macro = skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert abs(C.roc_auc(y, p) - auc_macro) < TOL
    np.testing.assert_array_equal(C.confusion_matrix(y, p), skm.confusion_matrix(y, pred))
    for ours, theirs in [
        (C.sensitivity, skm.recall_score),
        (C.precision, skm.precision_score),
        (C.f1, skm.f1_score),
    ]:
        assert abs(ours(y, p) - theirs(y, pred, average="macro")) < TOL

    per = C.per_class_metrics(y, p)
    labels = list(range(k))
    np.testing.assert_allclose(
        per["sensitivity"], skm.recall_score(y, pred, average=None), atol=TOL
    )
    np.testing.assert_allclose(
        per["precision"], skm.precision_score(y, pred, average=None), atol=TOL
    )
    np.testing.assert_allclose(
        per["f1"], skm.f1_score(y, pred, average=None, labels=labels), atol=TOL
    )
    spec = [skm.recall_score(y == c, pred == c, pos_label=False) for c in labels]
    np.testing.assert_allclose(per["specificity"], spec, atol=TOL)
    assert abs(C.specificity(y, p) - np.mean(spec)) < TOL
    ovr = [skm.roc_auc_score(y == c, p[:, c]) for c in labels]
    np.testing.assert_allclose(per["roc_auc"], ovr, atol=TOL)

    report = C.classification_report(y, p, "multiclass", class_names=list("abcd"))
    json.dumps(report, allow_nan=False)
    assert abs(report["roc_auc_macro_ovr"] - auc_macro) < TOL
    assert abs(report["balanced_accuracy"] - skm.balanced_accuracy_score(y, pred)) < TOL
    assert abs(report["per_class"]["c"]["specificity"] - spec[2]) < TOL
    assert abs(report["macro"]["f1"] - skm.f1_score(y, pred, average="macro")) < TOL
    assert report["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert report["skipped"] == {}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_multiclass_absent_class_is_excluded_from_macro_and_reported():
    y, p = _multiclass(k=4)
    y = np.where(y == 3, 0, y)  # class 3 never occurs in labels, but is sometimes predicted
    pred = p.argmax(1)
    assert (pred == 3).any()
    labels = [0, 1, 2, 3]
    for ours, theirs in [
        (C.sensitivity, skm.recall_score),
        (C.precision, skm.precision_score),
        (C.f1, skm.f1_score),
    ]:
        ref = theirs(y, pred, labels=labels, average="macro", zero_division=np.nan)
        assert abs(ours(y, p) - ref) < TOL
    assert abs(C.balanced_accuracy(y, p) - skm.balanced_accuracy_score(y, pred)) < TOL
    with pytest.raises(C.UndefinedMetricError, match="3: 0 positive of 400"):
        C.roc_auc(y, p)

    report = C.classification_report(y, p, "multiclass")
    assert report["skipped"]["roc_auc"]["classes"] == ["3"]
    assert "0 positive of 400" in report["skipped"]["roc_auc"]["reason"]
    assert report["skipped"]["sensitivity"]["classes"] == ["3"]
    assert report["per_class"]["3"]["roc_auc"] is None
    ovr = [skm.roc_auc_score(y == c, p[:, c]) for c in range(3)]
    assert abs(report["roc_auc_macro_ovr"] - np.mean(ovr)) < TOL
    json.dumps(report, allow_nan=False)


def test_multilabel_masked_entries_are_ignored():
    y, s, mask = _multilabel()
    # Garbage under the mask (CheXpert's -1 "uncertain", NaN) must never be read.
    y_dirty = np.where(mask == 0, np.where(np.arange(y.shape[1]) % 2, -1.0, np.nan), y)
    names = [f"finding{j}" for j in range(y.shape[1])]
    report = C.classification_report(y_dirty, s, "multilabel", class_names=names, mask=mask)
    json.dumps(report, allow_nan=False)
    per = C.per_class_metrics(y_dirty, s, mask=mask)
    aucs = []
    for j, name in enumerate(names):
        used = mask[:, j] == 1
        yj, sj = y[used, j], s[used, j]
        pj = (sj >= 0.5).astype(int)
        aucs.append(skm.roc_auc_score(yj, sj))
        entry = report["per_label"][name]
        assert entry["n_used"] == used.sum() and entry["n_positive"] == yj.sum()
        assert abs(entry["roc_auc"] - aucs[-1]) < TOL
        assert abs(entry["sensitivity"] - skm.recall_score(yj, pj)) < TOL
        assert abs(entry["specificity"] - skm.recall_score(yj, pj, pos_label=0)) < TOL
        assert abs(per["precision"][j] - skm.precision_score(yj, pj)) < TOL
        assert abs(per["f1"][j] - skm.f1_score(yj, pj)) < TOL
    assert abs(report["roc_auc_macro"] - np.mean(aucs)) < TOL
    assert abs(C.roc_auc(y_dirty, s, mask=mask) - np.mean(aucs)) < TOL
    # Without a mask every entry counts, as sklearn's per-label AUC.
    np.testing.assert_allclose(
        C.roc_auc_per_class(y, s)["per_class"], skm.roc_auc_score(y, s, average=None), atol=TOL
    )


def test_multilabel_label_with_one_class_is_skipped_and_reported():
    y, s, mask = _multilabel()
    mask[:, 2] = np.where(y[:, 2] == 1, 0.0, mask[:, 2])  # only negatives of label 2 remain
    mask[:, 4] = 0.0  # label 4 entirely masked
    names = ["a", "b", "c", "d", "e"]
    result = C.roc_auc_per_class(y, s, mask=mask, class_names=names)
    assert result["skipped"] == [2, 4]
    assert result["per_class"][2] is None and result["per_class"][4] is None
    n_neg = int(mask[:, 2].sum())
    assert f"c: 0 positive of {n_neg} unmasked samples" in result["reason"]
    assert "e: no unmasked samples" in result["reason"]
    ref = [skm.roc_auc_score(y[mask[:, j] == 1, j], s[mask[:, j] == 1, j]) for j in (0, 1, 3)]
    assert abs(result["macro"] - np.mean(ref)) < TOL

    report = C.classification_report(y, s, "multilabel", class_names=names, mask=mask)
    assert report["skipped"]["roc_auc"]["labels"] == ["c", "e"]
    assert report["skipped"]["sensitivity"]["labels"] == ["c", "e"]
    assert report["per_label"]["e"]["n_used"] == 0
    assert abs(report["roc_auc_macro"] - np.mean(ref)) < TOL
    json.dumps(report, allow_nan=False)
    with pytest.raises(C.UndefinedMetricError, match="skipped 2"):
        C.roc_auc(y, s, mask=mask)


def test_binary_one_class_report_says_why():
    y = np.ones(10, int)
    s = np.linspace(0, 1, 10)
    report = C.classification_report(y, s, "binary")
    json.dumps(report, allow_nan=False)
    assert report["roc_auc"] is None and report["specificity"] is None
    assert "only one class" in report["undefined"]["roc_auc"]
    assert "no negative" in report["undefined"]["specificity"]
    with pytest.raises(C.UndefinedMetricError, match="only one class"):
        C.roc_auc(y, s)
    with pytest.raises(C.UndefinedMetricError, match="no negative"):
        C.specificity(y, s)


# ----------------------------------------------------------------------------- DeLong


def _brute_force_delong(y, scores):
    """AUCs and covariance straight from the Mann-Whitney kernel (DeLong et al. 1988)."""
    x, z = scores[:, y == 1], scores[:, y == 0]
    psi = (x[:, :, None] > z[:, None, :]) + 0.5 * (x[:, :, None] == z[:, None, :])
    v10, v01 = psi.mean(2), psi.mean(1)
    return psi.mean((1, 2)), np.cov(v10) / x.shape[1] + np.cov(v01) / z.shape[1]


def test_delong_matches_brute_force_definition():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    a = np.round(y * 0.5 + rng.normal(size=60), 1)  # rounded: ties within and across classes
    b = np.round(y * 0.2 + 0.5 * a + rng.normal(size=60), 1)
    c = rng.integers(0, 3, 60).astype(float)
    scores = np.stack([a, b, c])
    auc_ref, cov_ref = _brute_force_delong(y, scores)
    auc, cov = D.delong_covariance(y, scores)
    np.testing.assert_allclose(auc, auc_ref, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, atol=1e-14)
    np.testing.assert_allclose(auc, [skm.roc_auc_score(y, s) for s in scores], atol=1e-12)

    test = D.delong_test(y, a, b)
    contrast = np.array([1.0, -1.0])
    se_ref = math.sqrt(contrast @ cov_ref[:2, :2] @ contrast)
    z_ref = (auc_ref[0] - auc_ref[1]) / se_ref
    assert abs(test["difference"] - (auc_ref[0] - auc_ref[1])) < 1e-12
    assert abs(test["std_error"] - se_ref) < 1e-12
    assert abs(test["z"] - z_ref) < 1e-9
    assert abs(test["p_value"] - 2 * scipy.stats.norm.sf(abs(z_ref))) < 1e-12
    half = scipy.stats.norm.ppf(0.975) * se_ref
    assert abs(test["ci_low"] - (z_ref * se_ref - half)) < 1e-12
    assert abs(test["ci_high"] - (z_ref * se_ref + half)) < 1e-12

    single = D.delong_auc_ci(y, a)
    assert abs(single["std_error"] - math.sqrt(cov_ref[0, 0])) < 1e-12
    low_ref = auc_ref[0] - scipy.stats.norm.ppf(0.975) * math.sqrt(cov_ref[0, 0])
    assert abs(single["ci_low"] - max(0.0, low_ref)) < 1e-12


def test_delong_identical_scores_and_clear_winner():
    y, s = _binary()
    same = D.delong_test(y, s, s.copy())
    assert same["difference"] == 0.0 and same["std_error"] == 0.0
    assert same["z"] == 0.0 and same["p_value"] == 1.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in same.values())

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 3000)
    good = y + rng.normal(0, 0.7, y.size)
    weak = y + rng.normal(0, 2.5, y.size)
    test = D.delong_test(y, good, weak)
    assert test["difference"] > 0.15
    assert test["p_value"] < 1e-30
    assert test["ci_low"] > 0


# ----------------------------------------------------------------------------- bootstrap


def test_stratified_bootstrap_preserves_class_counts():
    y, _ = _multiclass(n=200)
    idx = B.bootstrap_indices(y, n_resamples=50, seed=1)
    assert idx.shape == (50, 200)
    counts = np.stack([np.bincount(y[row], minlength=4) for row in idx])
    assert (counts == np.bincount(y, minlength=4)).all()
    plain = B.bootstrap_indices(y, n_resamples=50, seed=1, stratified=False)
    assert not (np.stack([np.bincount(y[row], minlength=4) for row in plain]) == counts).all()


def test_bootstrap_is_seeded_and_contains_estimate():
    y, s = _binary()
    first = B.bootstrap_ci(C.roc_auc, y, s, n_resamples=500, seed=7)
    again = B.bootstrap_ci(C.roc_auc, y, s, n_resamples=500, seed=7)
    other = B.bootstrap_ci(C.roc_auc, y, s, n_resamples=500, seed=8)
    assert first == again and first["ci_low"] != other["ci_low"]
    assert first["estimate"] == C.roc_auc(y, s)
    assert first["ci_low"] < first["estimate"] < first["ci_high"]
    assert first["n_valid"] == 500 and first["n_skipped"] == 0 and first["stratified"]
    # The vectorised AUC path gives the same resamples as calling the metric one by one.
    slow = B.bootstrap_ci(lambda a, b: C.roc_auc(a, b), y, s, n_resamples=500, seed=7)
    assert abs(slow["ci_low"] - first["ci_low"]) < 1e-12
    assert abs(slow["ci_high"] - first["ci_high"]) < 1e-12
    f1 = B.bootstrap_ci(C.f1, y, s, n_resamples=300)
    assert f1["ci_low"] < C.f1(y, s) < f1["ci_high"]


def test_bootstrap_width_shrinks_with_n():
    widths = []
    for n in (100, 1600):
        y, s = _binary(n=n, seed=5)
        ci = B.bootstrap_ci(C.roc_auc, y, s, n_resamples=400)
        widths.append(ci["ci_high"] - ci["ci_low"])
    # Width ~ 1/sqrt(N): 16x the data should give roughly a quarter of the width.
    assert widths[1] < 0.4 * widths[0]


def test_bootstrap_counts_undefined_resamples():
    y = np.zeros(40, int)
    y[:2] = 1
    s = np.linspace(0, 1, 40)
    ci = B.bootstrap_ci(C.roc_auc, y, s, n_resamples=300, stratified=False)
    assert not ci["stratified"]
    # P(no positive drawn) = (38/40)^40 ~ 0.13.
    assert 15 < ci["n_skipped"] < 75 and ci["n_valid"] + ci["n_skipped"] == 300
    y2, s2, mask = _multilabel(n=80)
    ci = B.bootstrap_ci(C.roc_auc, y2, s2, n_resamples=100, mask=mask)
    assert not ci["stratified"] and ci["n_valid"] + ci["n_skipped"] == 100
    assert ci["ci_low"] <= ci["estimate"] <= ci["ci_high"]


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: C.roc_auc([0, 1, 2], [0.1, 0.2, 0.3]), r"labels must be 0 or 1.*found 2"),
        (lambda: C.roc_auc([0, 1, 1], [0.1, np.nan, 0.3]), r"scores must not contain NaN"),
        (lambda: C.accuracy([0, 1, 1], [0.1, 0.3]), r"labels has 3 samples but scores has 2"),
        (
            lambda: C.accuracy([0, 1, 3], np.full((3, 3), 1 / 3)),
            r"labels must be integer.*\[0, 3\)",
        ),
        (lambda: C.accuracy([0, 1.5], np.full((2, 3), 1 / 3)), r"labels must be integer"),
        (lambda: C.accuracy([[0, 1]], [[0.1, 0.2]]), r"accuracy takes binary or multiclass"),
        (lambda: C.roc_auc([[0, 1]], [[0.1, 0.2, 0.3]]), r"labels of shape \(1, 2\) and scores"),
        (lambda: C.roc_auc(["a", "b"], [0.1, 0.2]), r"labels must be numeric"),
        (lambda: C.roc_auc([[0, 1]], [[0.1, 0.2]], mask=[[1, 0.5]]), r"mask must be 0 .* or 1"),
        (lambda: C.roc_auc([[0, 1]], [[0.1, 0.2]], mask=[[1, 1, 1]]), r"mask must have the shape"),
        (lambda: C.roc_auc([0, 1], [0.1, 0.2], mask=[1, 1]), r"mask is only supported"),
        (lambda: C.classification_report([0, 1], [0.1, 0.2], "binar"), r"task must be one of"),
        (
            lambda: C.classification_report([0, 1], [[0.9, 0.1], [0.2, 0.8]], "binary"),
            r"task='binary' expects .*scores\[:, 1\]",
        ),
        (
            lambda: C.classification_report([0, 1], [0.1, 0.2], "binary", class_names=["x"]),
            r"class_names must have 2 entries",
        ),
        (lambda: C.accuracy([0, 1], [0.1, 0.2], threshold="high"), r"threshold must be a number"),
        (lambda: B.bootstrap_ci(C.roc_auc, [0, 1], [0.1, 0.2], n_resamples=0), r"n_resamples"),
        (lambda: B.bootstrap_ci(C.roc_auc, [0, 1], [0.1, 0.2], confidence=95), r"confidence"),
        (lambda: D.delong_test([0, 0, 1, 1], [1, 2, 3, 4], [1, 2, 3]), r"scores_a and scores_b"),
        (
            lambda: D.delong_test([0, 0, 1, 1], [1, 2, 3, np.nan], [1, 2, 3, 4]),
            r"scores_a must not",
        ),
        (lambda: D.delong_test([0, 0, 1, 2], [1, 2, 3, 4], [1, 2, 3, 4]), r"labels must be 0 or 1"),
        (lambda: D.delong_test([0, 0, 1, 0], [1, 2, 3, 4], [1, 2, 3, 4]), r"at least 2 positive"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- AUPRC


def test_average_precision_matches_sklearn_with_ties():
    for seed in range(5):
        y, s = _binary(n=200, seed=seed)  # scores rounded to 0.1: ties within and across classes
        assert abs(C.average_precision(y, s) - skm.average_precision_score(y, s)) < TOL
        rng = np.random.default_rng(seed)
        continuous = y + rng.normal(size=y.size)
        ref = skm.average_precision_score(y, continuous)
        assert abs(C.average_precision(y, continuous) - ref) < TOL
    y, s = _binary()
    report = C.classification_report(y, s, "binary")
    assert abs(report["average_precision"] - skm.average_precision_score(y, s)) < TOL
    assert C.headline_metrics(report)["average_precision"] == report["average_precision"]
    assert "average_precision" not in report["undefined"]

    y, p = _multiclass()
    ref = skm.average_precision_score(y, p, average="macro")
    assert abs(C.average_precision(y, p) - ref) < TOL
    per = skm.average_precision_score(np.eye(4)[y], p, average=None)
    np.testing.assert_allclose(C.per_class_metrics(y, p)["average_precision"], per, atol=TOL)
    report = C.classification_report(y, p, "multiclass", class_names=list("abcd"))
    assert abs(report["average_precision_macro_ovr"] - ref) < TOL
    assert abs(report["per_class"]["b"]["average_precision"] - per[1]) < TOL
    assert C.headline_metrics(report)["average_precision"] == report["macro"]["average_precision"]


def test_average_precision_multilabel_masked_and_undefined_labels():
    y, s, mask = _multilabel()
    ref = skm.average_precision_score(y, s, average="macro")
    assert abs(C.average_precision(y, s) - ref) < TOL
    mask[:, 2] = np.where(y[:, 2] == 1, 0.0, mask[:, 2])  # label c: no positive left
    y_dirty = np.where(mask == 0, -1.0, y)
    names = list("abcde")
    per = [
        skm.average_precision_score(y[mask[:, j] == 1, j], s[mask[:, j] == 1, j])
        for j in (0, 1, 3, 4)
    ]
    assert abs(C.average_precision(y_dirty, s, mask=mask) - np.mean(per)) < TOL
    report = C.classification_report(y_dirty, s, "multilabel", class_names=names, mask=mask)
    json.dumps(report, allow_nan=False)
    assert abs(report["average_precision_macro"] - np.mean(per)) < TOL
    assert report["macro"]["average_precision"] == report["average_precision_macro"]
    assert abs(report["per_label"]["d"]["average_precision"] - per[2]) < TOL
    assert report["per_label"]["c"]["average_precision"] is None
    assert report["skipped"]["average_precision"]["labels"] == ["c"]
    assert C.headline_metrics(report)["average_precision"] == report["average_precision_macro"]
    with pytest.raises(C.UndefinedMetricError, match="no label has a positive"):
        C.average_precision(y, s, mask=np.where(y == 1, 0.0, 1.0))

    binary = C.classification_report(np.zeros(6), np.linspace(0, 1, 6), "binary")
    assert binary["average_precision"] is None
    assert "no positive" in binary["undefined"]["average_precision"]
    with pytest.raises(C.UndefinedMetricError, match="no positive samples"):
        C.average_precision(np.zeros(6), np.linspace(0, 1, 6))


# ----------------------------------------------------------------------------- thresholds


def _candidates(s):
    """Every distinct cut-off of `score >= t`, and one above every score."""
    return np.r_[np.unique(s), np.nextafter(s.max(), np.inf)]


def _youden_counts(y, s, t):
    """Youden's J * n1 * n0 at cut-off t, in integers (exact ties)."""
    (tn, fp), (fn, tp) = C.confusion_matrix(y, s, t)
    return tp * (tn + fp) - fp * (tp + fn)


def _roc_pick(y, s, pick, drop_intermediate):
    fpr, tpr, thresholds = skm.roc_curve(y, s, drop_intermediate=drop_intermediate)
    t = thresholds[pick(tpr, fpr)]
    return np.nextafter(s.max(), np.inf) if np.isinf(t) else t


def test_youden_threshold_matches_brute_force_and_roc_curve():
    for seed in range(8):
        y, s = _binary(n=150, seed=seed)
        if seed % 2:
            s = np.random.default_rng(seed).normal(size=y.size) + y  # no ties
        t = C.choose_threshold(y, s)
        # Brute force over all cut-offs, J * n1 * n0 in integers: the highest of the best.
        j = {c: _youden_counts(y, s, c) for c in _candidates(s)}
        best = max(j.values())
        assert t == max(c for c, v in j.items() if v == best)
        youden = C.sensitivity(y, s, t) + C.specificity(y, s, t) - 1
        fpr, tpr, _ = skm.roc_curve(y, s)
        assert abs(youden - np.max(tpr - fpr)) < TOL
        for drop in (True, False):
            argmax = lambda tpr, fpr: np.argmax(tpr - fpr)
            assert t == _roc_pick(y, s, argmax, drop)
    # Scores that carry no information: J = 0 everywhere, the first row (nothing positive).
    y = np.array([0, 1, 0, 1])
    s = np.full(4, 0.3)
    t = C.choose_threshold(y, s)
    assert t > 0.3 and t == _roc_pick(y, s, lambda tpr, fpr: np.argmax(tpr - fpr), True)
    assert C.sensitivity(y, s, t) == 0 and C.specificity(y, s, t) == 1


@pytest.mark.parametrize("target", [0.0, 0.3, 0.77, 0.9, 1.0])
def test_target_rules_keep_their_promise_on_the_same_data(target):
    y, s = _binary(n=200, seed=3)
    cands = _candidates(s)
    t = C.choose_threshold(y, s, "target_sensitivity", target)
    assert C.sensitivity(y, s, t) >= target  # with the module's own `score >= t`
    assert all(C.sensitivity(y, s, c) < target for c in cands[cands > t])
    first = lambda tpr, fpr: np.flatnonzero(tpr >= target)[0]
    assert t == _roc_pick(y, s, first, False)
    t = C.choose_threshold(y, s, "target_specificity", target)
    assert C.specificity(y, s, t) >= target
    assert all(C.specificity(y, s, c) < target for c in cands[cands < t])
    last = lambda tpr, fpr: np.flatnonzero(1 - fpr >= target)[-1]
    assert t == _roc_pick(y, s, last, False)


def test_choose_threshold_per_label_multiclass_fixed_and_undefined():
    y, s, mask = _multilabel()
    names = list("abcde")
    got = C.choose_threshold(y, s, mask=mask, class_names=names)
    assert got.shape == (5,)
    for j in range(5):
        used = mask[:, j] == 1
        assert got[j] == C.choose_threshold(y[used, j], s[used, j])
    # The report applies one threshold per label.
    report = C.classification_report(
        y, s, "multilabel", class_names=names, mask=mask, threshold=got
    )
    json.dumps(report, allow_nan=False)
    assert report["threshold"] == got.tolist()
    for j, name in enumerate(names):
        used = mask[:, j] == 1
        pred = (s[used, j] >= got[j]).astype(int)
        assert (
            abs(report["per_label"][name]["sensitivity"] - skm.recall_score(y[used, j], pred)) < TOL
        )
        assert (
            abs(
                report["per_label"][name]["specificity"]
                - skm.recall_score(y[used, j], pred, pos_label=0)
            )
            < TOL
        )
    np.testing.assert_array_equal(C.predict(s, "multilabel", got), (s >= got).astype(int))
    # A scalar 0.5 and a per-label 0.5 give the same report but for how the threshold is written.
    half = C.classification_report(y, s, "multilabel", mask=mask, threshold=np.full(5, 0.5))
    plain = C.classification_report(y, s, "multilabel", mask=mask)
    assert half.pop("threshold") == [0.5] * 5 and plain.pop("threshold") == 0.5
    assert half == plain

    mask[:, 3] = np.where(y[:, 3] == 1, 0.0, mask[:, 3])  # label d: negatives only
    with pytest.raises(C.UndefinedMetricError, match=r"1 of 5 labels \(d: needs positive and neg"):
        C.choose_threshold(y, s, mask=mask, class_names=names)
    fell_back = C.choose_threshold(y, s, mask=mask, class_names=names, fallback=0.5)
    assert fell_back[3] == 0.5 and np.array_equal(np.delete(fell_back, 3), np.delete(got, 3))
    spec = C.choose_threshold(y, s, "target_specificity", 0.9, mask=mask)  # needs negatives only
    assert np.isfinite(spec).all()

    yc, p = _multiclass()
    assert C.choose_threshold(yc, p) is None
    assert C.classification_report(yc, p, "multiclass", threshold=None)["decision"] == "argmax"
    y1, s1 = _binary()
    assert C.choose_threshold(y1, s1, "fixed") == 0.5 == C.choose_threshold(y1, s1, "0.5")
    np.testing.assert_array_equal(C.choose_threshold(y, s, "fixed"), np.full(5, 0.5))
    with pytest.raises(
        C.UndefinedMetricError, match="needs positive and negative.*0 positive of 4"
    ):
        C.choose_threshold([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4])
    assert C.choose_threshold([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], fallback=0.5) == 0.5


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: C.choose_threshold([0, 1], [0.1, 0.2], rule="youdens"),
            r"rule must be one of \['youden', 'target_sensitivity', 'target_specificity', "
            r"'fixed', '0.5'\]; got 'youdens'",
        ),
        (
            lambda: C.choose_threshold([0, 1], [0.1, 0.2], "target_sensitivity", 1.5),
            r"target must be a number in \[0, 1\] for rule 'target_sensitivity'; got 1.5",
        ),
        (
            lambda: C.choose_threshold([0, 1], [0.1, 0.2], "target_specificity", "high"),
            r"target must be a number .* got 'high'",
        ),
        (lambda: C.choose_threshold([0, 1], [0.1, 0.2], fallback="x"), r"threshold must be a"),
        (
            lambda: C.classification_report([[0, 1]], [[0.1, 0.2]], "multilabel", threshold=[0.5]),
            r"one number per label, shape \(2,\); got shape \(1,\)",
        ),
        (
            lambda: C.classification_report(
                [[0, 1]], [[0.1, 0.2]], "multilabel", threshold=[0.5, np.nan]
            ),
            r"threshold must be finite; found nan",
        ),
        (
            lambda: C.classification_report([0, 1], [0.1, 0.2], "binary", threshold=[0.5, 0.5]),
            r"threshold must be a number",
        ),
        (lambda: C.average_precision([0, 2], [0.1, 0.2]), r"labels must be 0 or 1"),
    ],
)
def test_bad_threshold_inputs_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
