"""SPECTRE (Hayase et al., ICML 2021): robust whitening, then quantum-entropy (QUE) scores.

Per class: project on the top directions, estimate mean and covariance robustly (iteratively
dropping the samples farthest in Mahalanobis distance), whiten with that estimate, and score
each sample by x^T Q x / tr(Q) with Q = exp(alpha * (Sigma_w - I) / ||Sigma_w - I||), which
weighs every direction in which the whitened data still has excess variance (the poisons).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

from . import check_inputs, detector, per_class

# Few directions: with many, the chi-square noise of the clean dimensions swamps the poisons'
# Mahalanobis distance and the robust estimate keeps them (measured on planted data).
DIMENSIONS = 4
TRIM = 0.15       # share dropped per robust-estimation round (an upper bound, not an oracle)
ROUNDS = 4
ALPHA = 4.0


@detector("spectre", modalities=("images", "text"),
          summary="robust whitening then quantum-entropy scores (Hayase et al. 2021)")
def spectre_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    scores = np.zeros(len(x))
    for _, rows in per_class(y):
        if len(rows) < 8:
            continue
        data = x[rows] - np.median(x[rows], axis=0)
        _, _, vt = np.linalg.svd(data, full_matrices=False)
        k = min(DIMENSIONS, len(rows) // 4, vt.shape[0])
        reduced = data @ vt[:k].T
        mean, cov = robust_estimate(reduced)
        values, vectors = np.linalg.eigh(cov)
        whitener = vectors / np.sqrt(np.maximum(values, 1e-9 * max(values.max(), 1e-12)))
        white = (reduced - mean) @ whitener
        scores[rows] = que_scores(white)
    return scores


def robust_estimate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.ones(len(x), dtype=bool)
    for _ in range(ROUNDS):
        mean = x[keep].mean(axis=0)
        cov = np.cov(x[keep], rowvar=False) + 1e-6 * np.eye(x.shape[1])
        diff = x - mean
        distance = np.einsum("ij,jk,ik->i", diff, np.linalg.pinv(cov), diff)
        keep = distance <= np.quantile(distance, 1 - TRIM)
    mean = x[keep].mean(axis=0)
    return mean, np.cov(x[keep], rowvar=False) + 1e-6 * np.eye(x.shape[1])


def que_scores(white: np.ndarray) -> np.ndarray:
    sigma = np.cov(white, rowvar=False) - np.eye(white.shape[1])
    norm = np.linalg.norm(sigma, 2)
    q = expm(ALPHA * sigma / norm) if norm > 0 else np.eye(white.shape[1])
    return np.einsum("ij,jk,ik->i", white, q, white) / np.trace(q)
