"""The hardened inspect: a learned scorer over inspect's per-class scores.

inspect holds each of its three scores (the mask's shrink, the universal perturbation's and the
warp's lift) to its own threshold. A backdoor the learning attacker shapes to pass each one a
little below its threshold can still stand out on several together. A class's features are the
three scores, the log-odds of each recovered trigger's success on held-out inputs, and the
largest score in units of its threshold; a logistic regression (data/ensemble.fit) fitted by
attacks/learning/harden_inspect.py on the redteam episodes against inspect (the target class of
a working attack positive, the model's other classes negative) and on clean models (every class
negative) turns them into a logit, with its threshold MARGIN above the highest negative class
seen. The hardened inspect names the default's target classes and the classes the scorer
reaches whose recovered trigger (any of the three) moves at least MIN_SUCCESS of held-out
inputs: it only adds.

The shipped scorer (hardened_inspect.json beside this module) is inspect's default only when
its `accepted` is true: benchmarks/bench_harden_inspect.py sets it when it flags no class of
held-out clean models, loses nothing on bench_inspect's zoo and names a held-out working attack
the default missed. The one shipped is not accepted: fitted on the attacker's episodes of seeds
0 and 1, it named nothing the default had not (docs/redteam.md, round six).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import ensemble
from ..data.ensemble import Scorer

FEATURES = ("mask_shrink", "perturbation_lift", "warp_lift", "trigger_logit",
            "perturbation_logit", "warp_logit", "max_score")
SHIPPED = Path(__file__).with_name("hardened_inspect.json")
SUCCESS = ("trigger_success", "perturbation_success", "warp_success")


def class_features(per_class: list[dict]) -> np.ndarray:
    """(classes, FEATURES) from inspect's per-class entries (or an episode's class_scores)."""
    from .inspect import NC_THRESHOLD, UAP_THRESHOLD, WARP_THRESHOLD

    scores = np.array([[float(c["mask_shrink"]), float(c["perturbation_lift"]),
                        float(c["warp_lift"])] for c in per_class]).reshape(-1, 3)
    scores = np.clip(scores, -10, 10)  # a mask of 0 pixels has an unbounded shrink
    success = np.clip(np.array([[float(c[k]) for k in SUCCESS] for c in per_class]
                               ).reshape(-1, 3), 0.01, 0.99)
    largest = (scores / [NC_THRESHOLD, UAP_THRESHOLD, WARP_THRESHOLD]).max(axis=1)
    return np.column_stack([scores, np.log(success / (1 - success)), largest])


def suspected(scorer: Scorer, per_class: list[dict]) -> list[tuple[int, float]]:
    """(class, logit) of each class the scorer names and whose recovered trigger works."""
    from .inspect import MIN_SUCCESS

    logits = scorer.logits(class_features(per_class))
    return [(int(c["class"]), float(v)) for c, v in zip(per_class, logits)
            if v >= scorer.threshold and max(float(c[k]) for k in SUCCESS) >= MIN_SUCCESS]


def load(path: Path) -> Scorer:
    return Scorer.load(path, FEATURES)


def shipped() -> Scorer | None:
    """The scorer this version ships, when it was accepted; else None."""
    return ensemble.shipped(SHIPPED, FEATURES)
