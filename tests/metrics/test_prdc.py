"""Precision, recall, density and coverage against a brute-force NumPy reference of the
papers' definitions (and the `prdc` package when it is installed)."""

from __future__ import annotations

import numpy as np
import pytest

from medgan_jax.metrics.prdc import knn_squared_radii, prdc


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """The definitions, literally: full distance matrices in float64, closed balls."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)

    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radii(x):
        d = distances(x, x)
        np.fill_diagonal(d, np.inf)  # the k-th nearest *other* point
        return np.sort(d, axis=1)[:, k - 1]

    real_r, fake_r = radii(real), radii(fake)
    d = distances(real, fake)  # [N, M]
    in_real_ball = d <= real_r[:, None]  # fake j in the ball of real i
    return {
        "precision": in_real_ball.any(axis=0).mean(),
        "recall": (d <= fake_r[None, :]).any(axis=1).mean(),
        "density": in_real_ball.sum() / (k * len(fake)),
        "coverage": in_real_ball.any(axis=1).mean(),
    }


KEYS = ("precision", "recall", "density", "coverage")


@pytest.mark.parametrize(
    "n, m, d, k, chunk",
    [(40, 30, 5, 3, 1024), (57, 81, 16, 1, 8), (100, 64, 32, 5, 7), (12, 200, 2, 3, 5)],
)
def test_matches_brute_force(n, m, d, k, chunk):
    rng = np.random.default_rng(n * m + d)
    real = rng.normal(size=(n, d)) + 3.0  # off the origin, like post-ReLU features
    fake = rng.normal(0.3, 1.2, size=(m, d)) + 3.0
    got = prdc(real, fake, nearest_k=k, chunk_size=chunk)
    want = brute_force_prdc(real, fake, k)
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert 0 < got["precision"] < 1 or 0 < got["recall"] < 1  # not a trivial 0/1 case
    assert (got["nearest_k"], got["num_real"], got["num_fake"]) == (k, n, m)


def test_radii_exclude_the_point_itself_but_count_duplicates():
    x = np.array([[0.0], [0.0], [1.0], [3.0], [7.0]], np.float32)
    radii = np.sqrt(np.asarray(knn_squared_radii(x, 1, 2)))
    np.testing.assert_allclose(radii, [0.0, 0.0, 1.0, 2.0, 4.0], atol=1e-6)
    radii = np.sqrt(np.asarray(knn_squared_radii(x, 2, 3)))
    np.testing.assert_allclose(radii, [1.0, 1.0, 1.0, 3.0, 6.0], atol=1e-6)


def test_identical_sets_give_one():
    features = np.random.default_rng(0).normal(size=(80, 10))
    features[5] = features[6]  # a duplicate: a zero-radius ball still holds its twin
    result = prdc(features, features.copy(), nearest_k=3, chunk_size=16)
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0
    # Every real ball holds its own centre and its k neighbours: density >= (k + 1) / k.
    assert result["density"] >= 4 / 3


def test_disjoint_sets_give_zero():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(60, 8))
    fake = rng.normal(size=(70, 8)) + 100.0
    result = prdc(real, fake)
    assert result["precision"] == result["recall"] == 0.0
    assert result["density"] == result["coverage"] == 0.0


def test_matches_the_prdc_package():
    reference = pytest.importorskip("prdc")
    rng = np.random.default_rng(2)
    real = rng.normal(size=(150, 12)).astype(np.float32)
    fake = rng.normal(0.2, 1.1, size=(120, 12)).astype(np.float32)
    for k in (3, 5):
        want = reference.compute_prdc(real, fake, nearest_k=k)
        got = prdc(real, fake, nearest_k=k, chunk_size=64)
        for key in KEYS:
            assert got[key] == pytest.approx(float(want[key]), abs=1e-12), (k, key)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(nearest_k=5), "nearest_k=5 needs more than 5 rows in real_features"),
        (dict(nearest_k=0), "nearest_k must be at least 1"),
        (dict(nearest_k=2.5), "nearest_k must be a positive integer"),
        (dict(chunk_size=0), "chunk_size must be at least 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    real, fake = np.zeros((5, 3)), np.ones((9, 3))
    with pytest.raises(ValueError, match=message):
        prdc(real, fake, **kwargs)


def test_bad_features_are_named():
    with pytest.raises(ValueError, match="nearest_k=3 needs more than 3 rows in fake_features"):
        prdc(np.zeros((10, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="same feature size, got 3 and 4"):
        prdc(np.zeros((10, 3)), np.ones((10, 4)))
    with pytest.raises(ValueError, match="fake_features contains NaN"):
        prdc(np.zeros((10, 3)), np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match=r"real_features must be a non-empty .* shape \(10,\)"):
        prdc(np.zeros(10), np.ones((10, 3)))
