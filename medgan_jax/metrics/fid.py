"""Fréchet Inception Distance (Heusel et al. 2017) and Kernel Inception Distance
(Bińkowski et al. 2018) on features from any pluggable network.

FID's matrix square root: Tr(sqrtm(S1 S2)) is computed as the sum of square roots of
the eigenvalues of S1^1/2 S2 S1^1/2, a symmetric positive semi-definite matrix similar
to S1 S2. It stays real where `scipy.linalg.sqrtm(S1 @ S2)` (pytorch-fid, TF-GAN's
older code) turns complex or non-finite — the known failure when there are fewer
images than feature dimensions and the covariances are singular. pytorch-fid then adds
1e-6 to the diagonals and warns; here the value needs no offset, but the warning stays,
because FID from too few images is strongly biased upwards whichever way it is computed.
"""

from __future__ import annotations

import warnings

import numpy as np


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (N-1)-normalised covariance of (N, D) features, in float64."""
    features = _check_features(features, "features", min_rows=2)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) for two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"Mismatched statistics: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}."
        )
    sqrt_sigma1 = _psd_sqrt(sigma1)
    middle = sqrt_sigma1 @ sigma2.astype(np.float64) @ sqrt_sigma1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.clip(eigenvalues, 0, None)))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return float(max(value, 0.0))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two (N, D) feature sets; warns when a set has fewer images than D."""
    for name, feats in (("features_a", features_a), ("features_b", features_b)):
        n, d = np.shape(feats)
        if n <= d:
            warnings.warn(
                f"FID from {n} images of {d}-d features ({name}): the covariance is "
                "singular and FID is biased upwards; compare FIDs only at equal N, "
                f"ideally N > {d}, or use KID, which is unbiased.",
                stacklevel=2,
            )
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def kid(
    features_a: np.ndarray,
    features_b: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> dict:
    """Unbiased MMD^2 with the kernel (x.y / D + 1)^degree, mean and std over subsets.

    Subsets are drawn without replacement; `subset_size` shrinks to the smaller set's
    size when there are fewer images (as torch-fidelity and TF-GAN do), and the result
    says so.
    """
    a = _check_features(features_a, "features_a", min_rows=2)
    b = _check_features(features_b, "features_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Feature sizes differ: {a.shape[1]} vs {b.shape[1]}.")
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _unbiased_mmd2(
                a[rng.choice(len(a), size, replace=False)],
                b[rng.choice(len(b), size, replace=False)],
                degree,
            )
            for _ in range(num_subsets)
        ]
    )
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "num_subsets": num_subsets,
        "subset_size": size,
        "subset_size_reduced": size < subset_size,
    }


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray, degree: int) -> float:
    """MMD^2_u with the polynomial kernel; x and y have the same number of rows m."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** degree
    k_yy = (y @ y.T / d + 1) ** degree
    k_xy = (x @ y.T / d + 1) ** degree
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix, clipping round-off negative eigenvalues."""
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def _check_features(features: np.ndarray, name: str, min_rows: int) -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < min_rows:
        raise ValueError(
            f"{name} must be a (num_images, feature_dim) array with at least {min_rows} "
            f"rows, got shape {features.shape}."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contains NaN or inf; check the feature network's inputs.")
    return features
