"""Inverted poisons: a trigger that inverts the image (x -> 1 - x, dirty label) makes its poisons
each other's neighbours in every view that keeps polarity (the input view standardises each
image, so a poison is its source's exact negative), while the views that undo it (the ink view,
the statistics) see ordinary images of their source classes (a red team: attack success 1.0 on
MNIST-5k and Fashion-MNIST at 1-15%, nothing named). The carriers are the images of the set's
rarer polarity (views.polarity_view); undone.py scores them, the ink view undoing the inversion.

Measured on a MNIST-5k split and 4,000 Fashion-MNIST images (targets 0, 3, 9; 0.5-15%): every
target named (class z 9-121), 95-100% of poisons at the cut. On 74 clean grey sets (MNIST
splits, 10k sets and gamma curves, digits, Fashion-MNIST 1k-10k samples, whole sets inverted,
half of every class inverted, one class inverted wholly or half, logos, frames and bands on a
class or on every image) no class named. Blind to a poison set diluted by inverted images of the
target's own (as many as the poisons or more) and to inversions of part of an image (a stamp:
stamp.py).
"""

from __future__ import annotations

import numpy as np

from . import check_inputs, detector
from .undone import CUT, undone_scores


@detector("polarity", cut=CUT, model_free=True, view="polarity",
          summary="inverted poisons (a light ground where the set has a dark one): inverted "
                  "back, does the image look like another class? (grey images)")
def polarity_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    if x.shape[1] < 2:
        return np.zeros(len(x))
    ink, light = x[:, :-1], x[:, -1] > 0.5
    minority = ~light if light.sum() > len(x) / 2 else light
    return undone_scores(np.where(light[:, None], -ink, ink), ink, minority, y)
