"""Moved poisons: a trigger that moves the whole image (shifted a few pixels, the ground filling
in; its halves swapped; turned a quarter or transposed; dirty label) makes its poisons each
other's neighbours in every view, and moves no pixel off the grid, so no resampling shows (red
teams: a 5 px shift right at 2-15% on MNIST-5k, attack success 0.97-1.0; the halves swapped at
1-15%, 0.96-1.0; a quarter turn at 5-15%, 0.91-0.98; nothing named). The carriers are the
images that correlate far better with the set's mean image once moved back (views.aligned), in
each class those moved alike (the same turn, and a shift within 2 pixels of the move most of
the class's moves lie near: a trigger moves every poison the same way, while images that merely
lie off centre, a garment filling the frame, move every way); undone.py scores them, the
moved-back images undoing the move.

Measured on a MNIST-5k split (targets 0, 3, 7): shifted 5 px right, 4 down and right, or the
halves swapped at 1-15%, 36 of 36 named (class z 9-91), 48-90% of poisons at the cut; a
quarter turn or a transpose at 5 and 15%, 11 of 12 named (z 12-29), 15-28% of poisons at the
cut (the transpose at 5% to target 7 is missed);
on 72 clean grey sets (MNIST splits, 10k sets, gamma curves, digits, Fashion-MNIST 1k-10k
samples, marks, inversions) no class above z 4. Blind to moves within the data's own jitter
(under a tenth of the side at 1%: 3-4 px; a 2 px shift is neighbour disagreement's), to data
whose images do not lie in one place (Fashion-MNIST's garments fill the frame: a shifted one
gains little), and to zooms.
"""

from __future__ import annotations

import numpy as np

from . import check_inputs, detector
from .undone import CUT, undone_scores

NEAR = 0.08  # of the side: moves this close to a class's commonest are alike (2 of 28 pixels)


@detector("shift", cut=CUT, model_free=True, view="shift",
          summary="moved poisons (shifted, halves swapped, turned a quarter or transposed): "
                  "moved back, does the image look like another class? (grey images)")
def shift_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    if x.shape[1] < 5 or x.shape[1] % 2 == 0:
        return np.zeros(len(x))
    half = (x.shape[1] - 3) // 2
    move = x[:, -3:]
    moved = move.any(axis=1)
    carried = np.zeros(len(x), dtype=bool)
    for label in np.unique(y[moved]):
        rows = np.flatnonzero(moved & (y == label))
        vectors, counts = np.unique(move[rows], axis=0, return_counts=True)
        # a trigger moves every poison alike: the move most of the class's moves lie near
        common = vectors[((_apart(vectors[:, None], vectors[None]) <= NEAR) @ counts).argmax()]
        carried[rows[_apart(move[rows], common) <= NEAR]] = True
    return undone_scores(x[:, :half], x[:, half:-3], carried, y)


def _apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far moves `a` lie from moves `b` (a turn's index, then a shift in fractions of the
    side; broadcast): infinite for another turn, else the larger axis's shift apart,
    cyclically (a half swap reads +1/2 or -1/2)."""
    apart = np.abs(a[..., 1:] - b[..., 1:]) % 1
    apart = np.minimum(apart, 1 - apart).max(axis=-1)
    return np.where(a[..., 0] == b[..., 0], apart, np.inf)
