"""Resampling artefacts: a warped or stamped image carries low-level statistics (ripples of grey,
isolated bright pixels) that no class's own shapes have. Each sample's statistics (views.py's
`image_statistics`) are standardised against the whole data set (median and deviation over all
classes: a poisoned class can be mostly poison), and its score is the largest upward deviation.
A class is suspected, as for every detector, when its share of outlying samples stands out
(decide.py). Added after the learning attacker's evasion (a strong fine-grid warp that neighbour
disagreement misses, docs/redteam.md); grey images only: natural photographs are full of
intermediate intensities.
"""

from __future__ import annotations

import numpy as np

from . import check_inputs, detector

CUT = 3.5  # robust z over the data set at which a sample is an outlier


@detector("resampling", cut=CUT, model_free=True, view="statistics",
          summary="images whose low-level statistics (grey ripples, lone bright pixels) stand "
                  "out from the whole set's, as warped or stamped poisons' do (grey images)")
def resampling_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, _ = check_inputs(features, labels)
    if len(x) == 0:
        return np.zeros(0)
    median = np.median(x, axis=0)
    spread = 1.4826 * np.median(np.abs(x - median), axis=0)
    spread = np.maximum(spread, 1e-6 + 1e-3 * np.abs(median))
    return ((x - median) / spread).max(axis=1)
