"""Shared pattern: a trigger that is added to images (a patch, a blended pattern, a sinusoid)
leaves its mark in the mean of the class it is planted in, in clean-label attacks as in
dirty-label ones.

In a high-pass view of the images (each image minus its Gaussian blur, so that what natural
images share, smooth shapes and colours, mostly cancels), the mean of a class minus the mean of
the others is the class's *pattern*. Natural classes have faint patterns (each pixel's z-score
near noise); a trigger carried by a share of a class gives a strong one. Each sample's score is
its projection on its class's pattern, cross-fitted (the pattern from one half of the class
scores the other half, so that no sample is scored by a mean it is part of). A class's own
structure (what all its photos share) shifts every sample; a trigger carried by some of them
makes a mode of its own: a two-mode mixture whose modes lie `SEPARATION` apart names the
carriers, the upper mode.

Warping triggers (WaNet) and sample-specific ones add no fixed pattern: semantic contrast
(contrast.py) is the check for those.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

SIGMA = 1.5       # of the Gaussian blur taken away, in pixels
_KEY = np.random.default_rng(0).standard_normal(4096)  # orders a class's samples by content
SPARSE_Z = 4.0    # a patch's pixels: this many standard errors out in the class's pattern
SEPARATION = 4.0  # of the two modes of a class's projections, in pooled standard deviations


@dataclass
class Patterns:
    energy: np.ndarray        # per class: mean squared z-score of its pattern's pixels
    scores: np.ndarray        # per sample: projection on its class's pattern, in units of the
                              # class's bulk (robust), 0 at its median
    carries: np.ndarray       # per sample: in a separate upper mode
    per_class: list[dict] = field(default_factory=list)


def high_pass(x: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    x = np.asarray(x, dtype=np.float32)
    return (x - gaussian_filter(x, sigma=(0, 0, sigma, sigma))).reshape(len(x), -1)


def shared_patterns(x: np.ndarray, labels: np.ndarray, sigma: float = SIGMA) -> Patterns:
    view = high_pass(x, sigma)
    view -= view.mean(0)
    spread = view.std(0) + 1e-6
    classes = np.unique(labels)
    energy = np.zeros(len(classes))
    scores = np.zeros(len(labels))
    carries = np.zeros(len(labels), dtype=bool)
    per_class = []
    for i, c in enumerate(classes):
        inside = labels == c
        n, m = int(inside.sum()), int((~inside).sum())
        if m == 0:
            per_class.append({"class": int(c), "samples": n, "energy": 0.0, "carriers": 0})
            continue
        pattern = view[inside].mean(0) - view[~inside].mean(0)
        z = pattern / (spread * np.sqrt(1 / n + 1 / m))
        energy[i] = float(np.mean(z ** 2))
        own, marked, separation = max(
            ((p, *_carriers(p)) for p in (_cross_fitted(view, inside, spread, sparse)
                                          for sparse in (False, True))),
            key=lambda found: found[2])
        bulk = own[~marked] if (~marked).sum() > 1 else own
        scores[inside] = (own - np.median(bulk)) / (bulk.std() + 1e-12)
        carries[inside] = marked
        per_class.append({"class": int(c), "samples": n, "energy": round(energy[i], 3),
                          "separation": round(separation, 2), "carriers": int(marked.sum())})
    return Patterns(energy, scores, carries, per_class)


def _cross_fitted(view: np.ndarray, inside: np.ndarray, spread: np.ndarray,
                  sparse: bool) -> np.ndarray:
    """Each half of the class projected on the pattern of the other half; `sparse`: only the
    pixels where that pattern stands SPARSE_Z standard errors out (a patch: a few pixels)."""
    rows = np.flatnonzero(inside)
    # Halves by content, not by row: the same samples in any order get the same scores.
    ranked = np.argsort(view[rows] @ _KEY[:view.shape[1]] if view.shape[1] <= len(_KEY)
                        else view[rows, :len(_KEY)] @ _KEY)
    halves = (ranked[0::2], ranked[1::2]) if len(rows) > 1 else (ranked, ranked)
    rest = view[~inside].mean(0)
    m = int((~inside).sum())
    out = np.zeros(len(rows))
    for scored, fitted in (halves, halves[::-1]):
        scored, fitted = rows[scored], rows[fitted]
        pattern = view[fitted].mean(0) - rest
        if sparse:
            z = pattern / (spread * np.sqrt(1 / max(1, len(fitted)) + 1 / m))
            pattern = np.where(np.abs(z) >= SPARSE_Z, pattern, 0.0)
        direction = pattern / (np.linalg.norm(pattern) + 1e-12)
        out[np.searchsorted(rows, scored)] = view[scored] @ direction
    return out


def _carriers(projection: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """(the samples in the upper of two modes, the modes' separation in pooled standard
    deviations); none when the projections have one mode (SEPARATION not reached). A class's
    own structure shifts all its samples; a trigger makes a mode of its own."""
    from sklearn.mixture import GaussianMixture

    if len(projection) < 10:
        return np.zeros(len(projection), dtype=bool), 0.0
    values = np.sort(projection).reshape(-1, 1)  # the fit does not depend on row order
    with warnings.catch_warnings():  # a class with one mode converges slowly: that is the point
        warnings.simplefilter("ignore")
        mixture = GaussianMixture(2, random_state=seed).fit(values)
    means = mixture.means_.ravel()
    spreads = np.sqrt(mixture.covariances_.ravel())
    low, high = np.argsort(means)
    separation = float((means[high] - means[low]) / np.sqrt((spreads[0] ** 2 +
                                                             spreads[1] ** 2) / 2 + 1e-12))
    if separation < SEPARATION:
        return np.zeros(len(projection), dtype=bool), separation
    upper = mixture.predict_proba(projection.reshape(-1, 1))[:, high] > 0.5
    return upper & (projection > means[low]), separation
