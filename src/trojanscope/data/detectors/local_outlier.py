"""Local Outlier Factor (Breunig, Kriegel, Ng and Sander, SIGMOD 2000), within each class.

A poisoned sample sits where its class's clean samples are sparse: its local reachability
density is low against that of its neighbours, and its LOF is well above 1. Poisons come in a
tight group of their own, so the neighbourhood is a fifth of the class (at least 20): wider than
any group a poison rate below 20% makes, it reaches past the group to the clean samples. The
factors come from scikit-learn's LocalOutlierFactor; within a class they read alike (1 is
typical), so classes compare without rescaling, and a sample is an outlier from 1.5 up (the
usual reading of LOF: half again as sparse as its neighbourhood).
"""

from __future__ import annotations

import numpy as np

from . import check_inputs, detector, per_class

NEIGHBOURHOOD = 0.2  # of the class
MIN_NEIGHBOURS = 20


@detector("local-outlier-factor", modalities=("images", "text"), cut=1.5,
          summary="samples far less dense than their neighbours within their class (Breunig et "
                  "al. 2000)")
def local_outlier_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    from sklearn.neighbors import LocalOutlierFactor

    x, y = check_inputs(features, labels)
    scores = np.ones(len(x))
    for _, rows in per_class(y):
        if len(rows) < 3:
            continue
        k = min(len(rows) - 1, max(MIN_NEIGHBOURS, int(NEIGHBOURHOOD * len(rows))))
        model = LocalOutlierFactor(n_neighbors=k, algorithm="brute").fit(x[rows])
        scores[rows] = -model.negative_outlier_factor_
    return scores
