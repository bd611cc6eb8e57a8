"""vet's polarity check on colour images (`vet.negative_check`, negatives.py), alone: which
classes it names on clean CIFAR-10 training splits, on the learnt attacker's partial inversion
(docs/redteam.md, round nine), on inversions it was not built on, and on benign changes to half
of one class.

The check's thresholds are decide.py's (a class z of 8) and P(negative) 0.5, not fitted on
these sets; its training recipe (shares 0.55-1.0, contrast and brightness jitter) was chosen on
split 4 with the evasion and split 0 with four benign changes. The rows:
- learnt: the evasion (split 4, target 5, share 0.685, 11.8% dirty label) and the same at 5%,
  2%, 5% clean label and 5% full negatives;
- clean: the loop's 4,000-image training splits of `cifar10-5k` (split seeds 0-5);
- held out: split 0, target 3, shares 0.6, 0.8 and 1.0 at 3% and 8% dirty label;
- benign: split 0, half of class 4 changed (bench_warp_check.py's nine changes, and lower
  contrast, haze, brighter).

Run: python benchmarks/bench_polarity_check.py   (about 25 minutes on two cores; needs
../shared/datasets' CIFAR-10 JPEG archive, or any cifar10-5k the loader finds)
"""

from __future__ import annotations

import numpy as np
from bench_warp_check import HEADER, Tally, benign_changes, row

from trojanscope.attacks.learning.episode import split
from trojanscope.attacks.learning.space import AttackConfig
from trojanscope.data.datasets import load
from trojanscope.data.vet import negative_check

EVASION = {"kind": "invert", "size": 8, "row": 0.4305, "col": 0.7889, "value": 0.9842,
           "strength": 0.6849, "frequency": 16, "rate": 0.1178, "label": "dirty", "target": 5,
           "seed": 5, "shape": "ring"}


def more_changes() -> dict:
    return {"lower contrast (half)": lambda im: 0.5 * im + 0.25,
            "haze (30% white)": lambda im: 0.7 * im + 0.3,
            "brighter by 0.2": lambda im: np.clip(im + 0.2, 0, 1)}


def main() -> None:
    data = load("cifar10-5k")
    print(HEADER)
    tally = Tally()
    none = np.zeros(0, int)
    train, _ = split(data, 4)
    for change in ({}, {"rate": 0.05}, {"rate": 0.02}, {"rate": 0.05, "label": "clean"},
                   {"rate": 0.05, "strength": 1.0}):
        bad = AttackConfig(**{**EVASION, **change}).poison(train.x, train.y)
        share = change.get("strength", EVASION["strength"])
        name = f"share {share}, {bad.indices.size / len(train.y):.1%} " \
               f"{change.get('label', 'dirty')}"
        tally.add("learnt", row("learnt", name, bad.x, bad.y, bad.indices, 5, negative_check))
    for seed in range(6):
        train, _ = split(data, seed)
        tally.add("clean", row("clean", f"split {seed}", train.x, train.y, none, None,
                               negative_check))
    train, _ = split(data, 0)
    for share in (0.6, 0.8, 1.0):
        for rate in (0.03, 0.08):
            bad = AttackConfig("invert", 8, 0.5, 0.5, 0.5, share, 16, rate, "dirty", 3,
                               seed=21).poison(train.x, train.y)
            tally.add("held out", row("held out", f"share {share}, {rate:.0%} dirty", bad.x,
                                      bad.y, bad.indices, 3, negative_check))
    rng = np.random.default_rng(0)
    for name, change in {**benign_changes(rng), **more_changes()}.items():
        x = train.x.copy()
        rows = np.flatnonzero(train.y == 4)
        rows = rng.choice(rows, len(rows) // 2, replace=False)
        x[rows] = np.stack([change(image) for image in x[rows]]).astype(np.float32)
        tally.add("benign", row("benign", f"{name}, half of class 4", x, train.y, none, None,
                                negative_check))
    tally.show()


if __name__ == "__main__":
    main()
