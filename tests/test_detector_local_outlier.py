"""The local-outlier-factor detector: a new detector is its module and this test; the shared
invariants (determinism, row order, inputs untouched, edge shapes) run on it from
test_detectors.py, and vet offers it by its registered name."""

from __future__ import annotations

import numpy as np
import pytest

from trojanscope.bench.metrics import auroc
from trojanscope.data.detectors import DETECTORS, offered


def _tight_group(share: float, seed: int = 0, classes: int = 2):
    """Classes of 300; in class 0 a tight group (the poisons) far from the clean ones."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(300, 16)) + 8 * c for c in range(classes)])
    y = np.repeat(np.arange(classes), 300)
    rows = rng.choice(300, int(share * 300), replace=False)
    x[rows] = rng.normal(0, 0.3, size=(len(rows), 16)) + 10 * np.eye(16)[0]
    poisoned = np.zeros(len(y), bool)
    poisoned[rows] = True
    return x, y, poisoned


@pytest.mark.parametrize("share", [0.03, 0.1, 0.15])
def test_a_tight_group_of_poisons_scores_above_every_clean_sample(share):
    x, y, poisoned = _tight_group(share)
    scores = DETECTORS["local-outlier-factor"](x, y, seed=0)
    assert auroc(scores, poisoned) >= 0.99
    assert np.median(scores[~poisoned]) == pytest.approx(1.0, abs=0.1)  # typical is 1


def test_the_neighbourhood_reaches_past_the_group():
    """With 20 neighbours a group of 30 poisons is its own dense neighbourhood and hides; a
    fifth of the class (60) reaches the clean samples."""
    from sklearn.neighbors import LocalOutlierFactor

    x, y, poisoned = _tight_group(0.1)
    rows = np.flatnonzero(y == 0)
    narrow = -LocalOutlierFactor(n_neighbors=20).fit(x[rows]).negative_outlier_factor_
    assert auroc(narrow, poisoned[rows]) < 0.6
    assert auroc(DETECTORS["local-outlier-factor"](x, y)[rows], poisoned[rows]) == 1.0


def test_vet_offers_it_for_images_and_text_and_flags_the_poisoned_class():
    from trojanscope.data.datasets import Dataset
    from trojanscope.data.vet import vet

    assert "local-outlier-factor" in offered("images") and "local-outlier-factor" in \
        offered("text")
    x, y, poisoned = _tight_group(0.05, classes=5)
    data = Dataset(np.zeros((len(y), 1, 2, 2), np.float32), y, "features")
    report = vet(data, detector="local-outlier-factor", features=x)
    assert report.results.suspected_classes == [0]
    flagged = np.zeros(len(y), bool)
    flagged[report.results.suspicious_indices] = True
    assert (flagged & poisoned).sum() / flagged.sum() >= 0.9
    assert (flagged & poisoned).sum() / poisoned.sum() >= 0.9
