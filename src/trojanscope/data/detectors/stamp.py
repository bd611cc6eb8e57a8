"""Stamped triggers: a mark (a patch, a bar, scattered pixels, a square on the digits' middle)
stamped on poisons makes them each other's nearest neighbours, and neighbour disagreement sees
a coherent class (red teams on the hardened vet: a white 5x5 square or the bottom rows set
white at 5-15%; a white or black 10-12 px square in the image's middle at 2-15%). Every poison
carries the target's label, so the mark sets a group of that class apart. Per class, in the
ink view (views.py), the mark's region is found two ways:
- rare ink: pixels the other classes almost never ink (under RARE of them). Samples with at
  least MIN_RARE such pixels are candidates; the region grows by the pixels the candidates,
  weighted by their rare ink, ink far more often (GROW) than both the rest of the class and the
  other classes (a bar that crosses where digits have some ink);
- a flat region: a group of the class (2-means in the projection, rows in content order) whose
  pixels lie within FLAT of one level in FLAT_SHARE of the group, at least MIN_FLAT of them,
  that level DIFF from the other classes' mean (a square where every class has ink). The
  candidates are the group's samples flat over 90% of the region.
A pixel marked in nearly every sample of a class (WHOLE) is the class's look, a source's
watermark, and is left out of both. The region is set to one level in every image, and a
candidate's score is its neighbour disagreement on what is left (the input view's
projection) times its agreement as given: a poison the mark made agree with its label looks,
without it, like its source class (near 1); a clean object whose own shape reaches an unusual
place (a bag's handle) or a group defined by its class's own shape still looks like its
class, and a sample already confused as given is neighbour disagreement's to judge (near 0).
Others score 0.

Measured on a MNIST-5k split (dirty label; benchmarks/bench_harden.py's "stamped" group runs
such cases): squares of 5-6 px in a corner or on an edge at 5-15%, class z 44-120, 66-99% of
the poisons at the cut; the bottom four rows at 5-15%, every poison; 8-12 px squares in the
middle, white or black, at 2-15%: 8 of a red team's 10 cases (z 13-119). On 35 clean grey sets
(digits, MNIST splits, 10k sets and gamma curves, Fashion-MNIST 1k-10k samples, inverted ones)
no class above z 2.1. It is the complement of neighbour disagreement, which catches the small
stamps (2-3 px) and the low rates this misses; blind to thin shapes in the middle (a plus of
2 px strokes: no pooled pixel is flat), to marks on too few poisons for a 2-means group (a
14 px square at 1%), to warps and sinusoids.
"""

from __future__ import annotations

import numpy as np

from ..views import INKED, projected
from . import check_inputs, detector, per_class
from .neighbours import disagreement_in

RARE = 0.01       # a pixel is rare ink for a class when the other classes ink it less often
MIN_RARE = 1      # rare inked pixels (of the ink view, at most 14 x 14) that make a candidate
GROW = 0.5        # the candidates' ink share above the rest of the class's and the others'
FLAT = 0.05       # a pixel is flat in a group when its values lie this close to their median
FLAT_SHARE = 0.8  # in this share of the group,
DIFF = 0.3        # and that median this far from the other classes' mean
MIN_FLAT = 4      # flat pixels that make a shared region
WHOLE = 0.9       # a pixel marked in this share of a class or more is its look (a source's
                  # watermark), not poisons': dirty-label poisons at 15% are about 60% of their
                  # target class
_KEY = np.random.default_rng(0).standard_normal(64)  # orders a class's rows by content


@detector("stamp", cut=0.5, model_free=True, view="ink",
          summary="a mark stamped on poisons (ink where no other class has any, or a region "
                  "flat across a group of a class): wiped out, does the image look like "
                  "another class? (grey images)")
def stamp_scores(features, labels, *, seed: int = 0) -> np.ndarray:
    x, y = check_inputs(features, labels)
    if len(x) < 3 or len(np.unique(y)) < 2:
        return np.zeros(len(x))
    inked = (x > INKED).astype(np.float64)
    total = inked.sum(axis=0)
    as_given = projected(x)
    agree = 1 - disagreement_in(as_given, y, np.arange(len(x)))  # each sample's, as given
    scores = np.zeros(len(x))
    for _, rows in per_class(y):
        others = (total - inked[rows].sum(axis=0)) / (len(x) - len(rows))
        region = (others < RARE) & (inked[rows].mean(axis=0) < WHOLE)  # a class-wide mark
        rare = inked[rows] @ region
        marked = rows[rare >= MIN_RARE]
        if len(marked):
            rest = np.setdiff1d(rows, marked)
            if len(rest):  # weighted by rare ink: a stamp's carriers outweigh a class's strays
                weight = rare[rare >= MIN_RARE]
                region |= weight @ inked[marked] / weight.sum() - np.maximum(
                    inked[rest].mean(axis=0), others) > GROW
            _wipe_test(x, y, agree, region, np.zeros(x.shape[1]), marked, scores)
        for carriers, region, level in _flat_regions(x, y, inked, others, as_given, rows, seed):
            _wipe_test(x, y, agree, region, level, carriers, scores)
    return scores


def _flat_regions(x, y, inked, others, as_given, rows, seed):
    """(carriers, region, level) of each group of the class (2-means in the projection) that
    shares a region of at least MIN_FLAT pixels flat at a level far from the other classes':
    a stamp where every class has ink (a block on the digits' middle). `inked`: every sample's
    inked pixels; `others`: the other classes' ink share per pixel."""
    from sklearn.cluster import KMeans

    if len(rows) < 20:
        return
    rows = rows[np.argsort(as_given[rows] @ _KEY[:as_given.shape[1]], kind="stable")]
    groups = KMeans(2, n_init=4, random_state=seed).fit_predict(as_given[rows])
    elsewhere = x[y != y[rows[0]]].mean(axis=0)
    inside = inked[rows].mean(axis=0)
    for group in (0, 1):
        members = rows[groups == group]
        if len(members) < 10:
            continue
        level = np.median(x[members], axis=0)
        near = np.abs(x[members] - level) <= FLAT
        # a pixel inked (or blank, at a dark level) across the whole class and hardly anywhere
        # else, or one at the group's bright level across the whole class (a logo on every
        # dress, where other classes ink that corner too), is the class's own mark; each image
        # is scaled to its brightest pixel, so a fixed mark's level varies a little
        dark = level <= INKED
        whole = (np.abs(x[rows] - level) <= FLAT).mean(axis=0) >= WHOLE
        common = np.where(dark, (1 - inside >= WHOLE) & (1 - others <= 1 - WHOLE),
                          (inside >= WHOLE) & (others <= 1 - WHOLE) | whole)
        region = (near.mean(axis=0) >= FLAT_SHARE) & (np.abs(level - elsewhere) > DIFF) & ~common
        if region.sum() < MIN_FLAT:
            continue
        carriers = members[near[:, region].mean(axis=1) >= 0.9]
        if len(carriers) >= 10:
            yield carriers, region, level


def _wipe_test(x, y, agree, region, level, rows, scores) -> None:
    """Scores `rows`: the region set to `level` in every image, their neighbour disagreement,
    times their agreement as given (`agree`; the higher score kept)."""
    wiped = x.copy()
    wiped[:, region] = level[region]  # in every image: the mark counts for none
    found = disagreement_in(projected(wiped), y, rows) * agree[rows]
    scores[rows] = np.maximum(scores[rows], found)

