"""Inverted poisons: a trigger that inverts the image (x -> 1 - x, dirty label) makes its poisons
each other's neighbours in every view that keeps polarity (the input view standardises each
image, so a poison is its source's exact negative), while the views that undo it (the ink view,
the statistics) see ordinary images of their source classes (a red team: attack success 1.0 on
MNIST-5k and Fashion-MNIST at 1-15%, nothing named). Every poison carries the target's label,
so the carriers of the set's minority polarity (views.polarity_view) are a group of that class.
A carrier's score is its neighbour disagreement with polarity undone times its agreement as
given, as the stamp member scores a mark wiped out (stamp.py): a poison looks like its source
once inverted back (near 1), and like the other poisons as given.

A class whose own images lie on the other ground (one class inverted, or half of it: a scanner
of its own) is not poisoned by that: once undone, its carriers look like the rest of the class.
Its carriers count only when their share that disagrees, polarity undone, exceeds that of the
class's other samples by EXCESS; a class with no samples of the majority polarity is its own
look. A class needs MIN_CARRIERS carriers (a few natural light-ground images, a bag filling the
frame, are not a group).

Measured on a MNIST-5k split and 4,000 Fashion-MNIST images (targets 0, 3, 9; 0.5-15%): every
target named (class z 9-121), 95-100% of poisons at the cut. On 29 clean grey sets (MNIST
splits, 10k sets and gamma curves, Fashion-MNIST 1k-10k samples, whole sets inverted, half of
every class inverted, one class inverted wholly or half, frames and logos on a class) no class
named. Blind to a poison set diluted by inverted images of the target's own (when they are at
least as many as the poisons, a clean-label shortcut: see docs/redteam.md) and to inversions
of part of an image (a stamp: stamp.py).
"""

from __future__ import annotations

import numpy as np

from ..views import projected
from . import check_inputs, detector
from .neighbours import disagreement_in

CUT = 0.5
EXCESS = 0.25    # the carriers' share that disagrees, undone, above the rest of the class's
MIN_CARRIERS = 10


@detector("polarity", cut=CUT, model_free=True, view="polarity",
          summary="inverted poisons (a light ground where the set has a dark one): inverted "
                  "back, does the image look like another class? (grey images)")
def polarity_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    scores = np.zeros(len(x))
    if x.shape[1] < 2 or len(np.unique(y)) < 2:
        return scores
    ink, light = x[:, :-1], x[:, -1] > 0.5
    minority = ~light if light.sum() > len(x) / 2 else light
    classes, counts = np.unique(y[minority], return_counts=True)
    classes = classes[counts >= MIN_CARRIERS]
    if len(classes) == 0:
        return scores
    undone = projected(ink)
    rows = np.flatnonzero(np.isin(y, classes))
    wiped = np.zeros(len(x))
    wiped[rows] = disagreement_in(undone, y, rows)
    carriers = rows[minority[rows]]
    agree = np.zeros(len(x))
    agree[carriers] = 1 - disagreement_in(projected(np.where(light[:, None], -ink, ink)), y,
                                        carriers)
    for label in classes:
        own = y == label
        carried, rest = own & minority, own & ~minority
        if not rest.any() or (wiped[carried] >= CUT).mean() - (wiped[rest] >= CUT).mean() \
                < EXCESS:
            continue  # the class's own look
        scores[carried] = wiped[carried] * agree[carried]
    return scores

