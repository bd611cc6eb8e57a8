"""Spectral Signatures (Tran, Li and Madry, NeurIPS 2018), on centred features.

Within a class, poisoned samples shift the mean along one direction; the top singular vector of
the centred class features finds it, and a sample's squared projection on it is its score.
Centring matters: projecting un-centred features (as some toolkits do) ranks by distance from
the origin instead. Scores are divided by the class median, so classes compare.
"""

from __future__ import annotations

import numpy as np

from . import check_inputs, detector, per_class


@detector("spectral", modalities=("images", "text"),
          summary="the top singular direction of each class's centred features (Tran et al. "
                  "2018)")
def spectral_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    scores = np.zeros(len(x))
    for _, rows in per_class(y):
        if len(rows) < 2:
            continue
        centred = x[rows] - x[rows].mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = (centred @ vt[0]) ** 2
        scores[rows] = projection / max(np.median(projection), 1e-12)
    return scores
