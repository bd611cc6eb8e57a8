"""The three decisions vet reports, from any detector's scores: is anything poisoned, which
classes, which samples. No poison rate is asked for: a class is suspected when its share of
outlying samples stands far above the other classes' shares (robust z across classes), and only
outliers inside suspected classes are flagged, so natural label noise elsewhere is not."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASS_Z = 8.0          # robust z of a class's outlier share against the other classes
MIN_EXCESS = 0.02      # and at least this much above twice the median share
MAD_FLOOR = 0.005


@dataclass
class Decision:
    poisoned: bool
    classes: list[int]
    indices: np.ndarray
    per_class: list[dict] = field(default_factory=list)


def decide(scores: np.ndarray, labels: np.ndarray, cut: float) -> Decision:
    outlier = np.asarray(scores) >= cut
    classes = np.unique(labels)
    shares = np.array([outlier[labels == c].mean() for c in classes])
    median = float(np.median(shares))
    mad = max(float(np.median(np.abs(shares - median))), MAD_FLOOR)
    per_class, suspected = [], []
    for c, share in zip(classes, shares):
        z = (share - median) / mad
        flagged = (z > CLASS_Z and share > 2 * median + MIN_EXCESS) if len(classes) >= 3 \
            else share > 0.25
        if flagged:
            suspected.append(int(c))
        per_class.append({"class": int(c), "samples": int((labels == c).sum()),
                          "outliers": int(outlier[labels == c].sum()),
                          "outlier_share": round(float(share), 4), "z": round(float(z), 2),
                          "suspected": bool(flagged)})
    indices = np.flatnonzero(outlier & np.isin(labels, suspected))
    return Decision(bool(suspected), suspected, indices, per_class)
