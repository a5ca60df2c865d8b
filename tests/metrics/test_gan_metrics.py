"""Inception Score, FID/KID and the memorisation audit against closed forms and references."""

import numpy as np
import pytest
import scipy.linalg

from medgan_jax.metrics import fid as fid_lib
from medgan_jax.metrics import memorization
from medgan_jax.metrics.inception_score import inception_score

# --- Inception Score --------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 10, 1000])
def test_is_of_confident_uniform_predictions_is_num_classes(num_classes):
    probs = np.eye(num_classes)[np.arange(10 * num_classes) % num_classes]
    result = inception_score(probs, num_splits=10)
    assert result["mean"] == pytest.approx(num_classes, rel=1e-12)
    assert result["std"] == pytest.approx(0.0, abs=1e-9)


def test_is_of_identical_predictions_is_one():
    probs = np.tile(np.random.default_rng(0).dirichlet(np.ones(5)), (50, 1))
    assert inception_score(probs)["mean"] == pytest.approx(1.0, abs=1e-12)


def test_is_matches_reference_loop_and_logits_path():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(103, 6)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    # The reference: OpenAI's improved-GAN code, split by split, entropy form.
    scores = []
    for part in np.array_split(probs, 10):
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(p * (np.log(p) - np.log(py))) for p in part])))
    result = inception_score(probs)
    assert result["mean"] == pytest.approx(np.mean(scores), rel=1e-12)
    assert result["std"] == pytest.approx(np.std(scores), rel=1e-9)
    assert inception_score(logits=logits)["mean"] == pytest.approx(result["mean"], rel=1e-9)


def test_is_binary_single_logit():
    logits = np.array([[-50.0], [50.0]] * 10)
    assert inception_score(logits=logits, num_splits=1)["mean"] == pytest.approx(2.0)


def test_is_rejects_unnormalised_probs():
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.ones((10, 3)))


# --- FID / KID --------------------------------------------------------------------------


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fid_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(500, 16))
    assert fid_lib.fid(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_diagonal_gaussians_equals_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = fid_lib.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 12), _random_spd(rng, 12)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real  # pytorch-fid's formula
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert fid_lib.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal(0.0, 1.0, size=(20000, 3))
    b = rng.normal(0.5, 2.0, size=(20000, 3))
    expected = 3 * 0.5**2 + 3 * (1 - 2) ** 2
    assert fid_lib.fid(a, b) == pytest.approx(expected, rel=0.03)


def test_fid_with_fewer_images_than_dimensions_warns_and_stays_real():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 0.3
    with pytest.warns(UserWarning, match="singular"):
        value = fid_lib.fid(a, b)
    # pytorch-fid's fallback: offset the diagonals by 1e-6 and take sqrtm's real part.
    (m1, s1), (m2, s2) = fid_lib.feature_statistics(a), fid_lib.feature_statistics(b)
    offset = 1e-6 * np.eye(64)
    covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset)).real
    reference = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert np.isfinite(value)
    assert value == pytest.approx(reference, rel=1e-3)


def _brute_force_mmd2(x, y):
    k = lambda u, v: (u @ v / x.shape[1] + 1) ** 3
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_equals_brute_force_unbiased_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 0.2
    result = fid_lib.kid(x, y, num_subsets=1, subset_size=30)
    assert result["mean"] == pytest.approx(_brute_force_mmd2(x, y), rel=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(5)
    same = fid_lib.kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)), subset_size=200)
    shifted = fid_lib.kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 1.0)
    assert abs(same["mean"]) < 3 * same["std"] + 1e-3
    assert shifted["mean"] > 10 * shifted["std"] > 0
    assert shifted["subset_size"] == 400 and shifted["subset_size_reduced"]


# --- Memorisation -----------------------------------------------------------------------


def test_nearest_neighbours_equals_brute_force_across_blocks():
    rng = np.random.default_rng(6)
    queries, refs = rng.normal(size=(37, 20)), rng.normal(size=(53, 20))
    dist, index = memorization.nearest_neighbours(queries, refs, batch_size=8, reference_chunk=16)
    all_d = np.linalg.norm(queries[:, None] - refs[None], axis=-1)
    np.testing.assert_array_equal(index, all_d.argmin(1))
    np.testing.assert_allclose(dist, all_d.min(1), rtol=1e-10)


def test_nearest_neighbours_leave_one_out():
    refs = np.random.default_rng(7).normal(size=(25, 6))
    dist, index = memorization.nearest_neighbours(
        refs, refs, exclude_same_index=True, reference_chunk=10
    )
    all_d = np.linalg.norm(refs[:, None] - refs[None], axis=-1) + np.diag(np.full(25, np.inf))
    np.testing.assert_array_equal(index, all_d.argmin(1))
    assert np.all(dist > 0)


def test_audit_flags_a_planted_copy_of_a_training_image():
    rng = np.random.default_rng(8)
    training = np.tanh(rng.normal(size=(120, 16, 16, 1)))
    generated = np.tanh(rng.normal(size=(40, 16, 16, 1)))
    generated[13] = training[57]
    audit = memorization.audit_space(generated, training, rms=True)
    assert audit["num_copies"] == 1
    assert audit["closest_order"][0] == 13
    assert audit["nearest_index"][13] == 57
    assert audit["nearest_distance"][13] == 0.0
    assert audit["num_generated"] == 40


def test_audit_fraction_separates_fresh_samples_from_near_copies():
    rng = np.random.default_rng(9)
    training = rng.normal(size=(400, 32))
    fresh = rng.normal(size=(400, 32))
    near_copies = training[:400] + 0.05 * rng.normal(size=(400, 32))
    fresh_fraction = memorization.audit_space(fresh, training)["fraction_closer_than_threshold"]
    copied = memorization.audit_space(near_copies, training)
    assert 0.35 < fresh_fraction < 0.65
    assert copied["fraction_closer_than_threshold"] == 1.0 and copied["num_copies"] == 0
