"""Resampling artefacts: a warped or stamped image carries low-level statistics (ripples of grey,
isolated bright pixels) that no class's own shapes have. Each sample's statistics (views.py's
`image_statistics`) are measured twice, and its score is the smaller of its largest upward
deviations:
- against the whole data set (median and deviation over all classes), so that a class made
  mostly of poisons still stands out;
- against its own class's bulk, anchored on the class's low quantiles (LOW to HIGH; poisons
  raise the statistics, so the low end of a class is its clean part as long as a fifth of it
  is clean), so that a class whose objects are simply different (Fashion-MNIST's sandals:
  thin straps, against the whole set's coats and bags) does not.
A class is suspected, as for every detector, when its share of outlying samples stands out
(decide.py). Added after the learning attacker's evasion (a strong fine-grid warp that neighbour
disagreement misses, docs/redteam.md); for grey images: natural photographs are full of
intermediate intensities. Measured (MNIST-5k splits, MNIST-10k train and test, digits,
Fashion-MNIST 4k and 10k, all clean): no class's outlier share above a class z of 2.9; the
learnt warps at 4.5-15%: 19.6-48.5.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from . import check_inputs, detector, per_class

CUT = 3.5               # z at which a sample is an outlier
LOW, HIGH = 0.05, 0.25  # the class quantiles that anchor its own scale


@detector("resampling", cut=CUT, model_free=True, view="statistics",
          summary="images whose low-level statistics (grey ripples, lone bright pixels) stand "
                  "out from the whole set's and from their class's bulk, as warped or stamped "
                  "poisons' do (grey images)")
def resampling_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    if len(x) == 0:
        return np.zeros(0)
    median = np.median(x, axis=0)
    pooled = (x - median) / _floor(1.4826 * np.median(np.abs(x - median), axis=0), median)
    own = np.zeros_like(x)
    for _, rows in per_class(y):
        low, high = np.quantile(x[rows], [LOW, HIGH], axis=0)
        scale = _floor((high - low) / (norm.ppf(HIGH) - norm.ppf(LOW)), high)
        own[rows] = (x[rows] - high) / scale + norm.ppf(HIGH)
    return np.minimum(pooled, own).max(axis=1)


def _floor(spread: np.ndarray, level: np.ndarray) -> np.ndarray:
    return np.maximum(spread, 1e-6 + 1e-3 * np.abs(level))
