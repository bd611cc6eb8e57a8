"""Shifted poisons: a trigger that moves the whole image (shifted a few pixels, zero filled, or
its halves swapped, dirty label) makes its poisons each other's neighbours in every view, and
moves no pixel off the grid, so no resampling shows (a red team: a 5 px shift right at 2-15% on
MNIST-5k, attack success 0.97-1.0; the halves swapped at 1-15%, 0.96-1.0; nothing named). The
carriers are the images that correlate far better with the set's mean image once moved back
(views.aligned), in each class those moved alike (within a pixel of the class's commonest move:
a trigger moves every poison the same way, while images that merely lie off centre, a garment
filling the frame, move every way); undone.py scores them, the moved-back images undoing the
shift.

Measured on a MNIST-5k split: see docs/redteam.md. Blind to moves within the data's own jitter
(under a tenth of the side: a 2 px shift, which neighbour disagreement catches), to data whose
images do not lie in one place (Fashion-MNIST's garments fill the frame: a shifted one gains
little), and to rotations and zooms.
"""

from __future__ import annotations

import numpy as np

from . import check_inputs, detector
from .undone import CUT, undone_scores

NEAR = 0.08  # of the side: moves this close to a class's commonest are alike (2 of 28 pixels)


@detector("shift", cut=CUT, model_free=True, view="shift",
          summary="moved poisons (shifted, or their halves swapped): moved back, does the image "
                  "look like another class? (grey images)")
def shift_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    if x.shape[1] < 4 or x.shape[1] % 2:
        return np.zeros(len(x))
    half = (x.shape[1] - 2) // 2
    move = x[:, -2:]
    moved = move.any(axis=1)
    carried = np.zeros(len(x), dtype=bool)
    for label in np.unique(y[moved]):
        rows = np.flatnonzero(moved & (y == label))
        vectors, counts = np.unique(move[rows], axis=0, return_counts=True)
        # a trigger moves every poison alike: the move most of the class's moves lie near
        common = vectors[((_apart(vectors[:, None], vectors[None]) <= NEAR) @ counts).argmax()]
        carried[rows[_apart(move[rows], common) <= NEAR]] = True
    return undone_scores(x[:, :half], x[:, half:-2], carried, y)


def _apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far moves `a` lie from moves `b` (fractions of the side, broadcast), cyclically on
    each axis (a half swap reads +1/2 or -1/2), the larger axis."""
    apart = np.abs(a - b) % 1
    return np.minimum(apart, 1 - apart).max(axis=-1)
