"""Poisons made by a transform of the whole image (an inversion, a shift): the transform makes
them each other's neighbours in every view that keeps it, while a view that undoes it sees
ordinary images of their source classes. Every poison carries the target's label, so the images
the transform marks (the carriers: the set's rarer polarity, an image moved from where and how
the others lie) are a group of that class. A carrier's score is its neighbour disagreement with the
transform undone times its agreement as given with the other carriers of its label, as the
stamp member scores a mark wiped out (stamp.py): a poison looks like its source undone (near
1), and like the other poisons as given.

A class whose own images carry the transform (one class scanned inverted, or half of it) is not
poisoned by that: undone, its carriers look like the rest of the class. Its carriers count only
when their share that disagrees, undone, exceeds that of the class's other samples by EXCESS
and, undone, they look like classes of every kind (SPREAD: poisons come from every source
class; garments that lie off centre in Fashion-MNIST look, moved back, like one or two
look-alike classes: 0.32-0.55 against 0.89-1.0 for shifted, swapped and inverted poisons at 1
and 15%); a class with no other samples is its own look. A class needs MIN_CARRIERS carriers
(a few natural images on a light ground, a bag filling the frame, are not a group). Not a
detector itself: the polarity and shift members (polarity.py, shift.py) score with it. Poisons
drawn from one or two source classes fail SPREAD: this misses them.
"""

from __future__ import annotations

import numpy as np

from ..views import projected
from .neighbours import NEIGHBOURS, disagreement, neighbour_labels, source_spread

CUT = 0.5        # the members' outlier cut
EXCESS = 0.25    # the carriers' share that disagrees, undone, above the rest of the class's
MIN_CARRIERS = 10
SPREAD = 0.75    # how evenly the carriers, undone, point at the other classes (source_spread)


def undone_scores(given: np.ndarray, undone: np.ndarray, carried: np.ndarray,
                  y: np.ndarray) -> np.ndarray:
    """Scores of the `carried` samples (the rest 0): disagreement in `undone` (flat images, the
    transform undone) times agreement in `given` (as given), class by class as above."""
    scores = np.zeros(len(y))
    classes, counts = np.unique(y[carried], return_counts=True)
    classes = classes[counts >= MIN_CARRIERS]
    if len(classes) == 0 or len(np.unique(y)) < 2:
        return scores
    rows = np.flatnonzero(np.isin(y, classes))
    votes = np.zeros((len(y), min(NEIGHBOURS, len(y) - 1)), dtype=y.dtype)
    votes[rows] = neighbour_labels(projected(undone), y, rows=rows)
    wiped = np.zeros(len(y))
    wiped[rows] = disagreement(votes[rows], y[rows], y)
    carriers = rows[carried[rows]]
    agree = np.zeros(len(y))
    # agreement with the other carriers of the label (plain votes): the transform makes the
    # poisons each other's neighbours, where an image that merely matches a transform undone
    # (a 2 that looks like something transposed) has its class's ordinary images around it
    among = np.where(carried, y, y.min() - 1)  # the others vote as one label no class has
    agree[carriers] = (neighbour_labels(projected(given), among, rows=carriers) ==
                       y[carriers, None]).mean(axis=1)
    for label in classes:
        own = y == label
        marked, rest = own & carried, own & ~carried
        if not rest.any() or (wiped[marked] >= CUT).mean() - (wiped[rest] >= CUT).mean() \
                < EXCESS or source_spread(votes, y, marked & (wiped >= CUT), label) < SPREAD:
            continue  # the class's own look
        scores[marked] = wiped[marked] * agree[marked]
    return scores
