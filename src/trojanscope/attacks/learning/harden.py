"""Hardening: vet's ensemble scorer learns from what the learning attacker made.

Every episode of a redteam report against vet is replayed (its configuration poisons the same
training split, the same samples) and each class of the poisoned set gets the ensemble's
features (data/ensemble.py): the target class of an attack that worked (attack success at
least WORKS) is a positive, every other class a negative; the target class of an attack that
did not work is left out (poisoned, but no backdoor to find). The clean training splits are
negatives too. The fitted scorer's threshold sits above every negative class, so no class of
those clean sets is flagged; `check` then measures it on data it never saw: held-out clean
sets (no class may be flagged) and poisoned sets (is each target caught, before and after).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...data.datasets import Dataset
from ...data.ensemble import Scorer, class_features, fit, members
from .episode import split
from .space import AttackConfig

WORKS = 0.5  # attack success from which a poisoned class is a positive


@dataclass(frozen=True)
class Case:
    """A data set to check on: its name, the data, the poisoned class (None: clean)."""
    name: str
    data: Dataset
    target: int | None = None


def replayed(report: dict, data: Dataset) -> list[tuple[dict, Dataset]]:
    """(episode, poisoned training split) for each episode of a redteam report (as JSON)."""
    results, config = report.get("results", {}), report.get("config", {})
    if report.get("command") != "redteam" or results.get("against") != "vet":
        raise ValueError("hardening learns from redteam reports against vet")
    train, _ = split(data, int(config.get("seed", 0)))
    sets = []
    for episode in results.get("episodes", []):
        attack = AttackConfig.from_dict(episode["config"])
        bad = attack.poison(train.x, train.y)
        sets.append((episode, Dataset(bad.x, bad.y, f"{data.name} {episode['search']} "
                                                    f"#{episode['episode']}")))
    return sets


def harden(reports: list[dict], data: Dataset, seed: int = 0) -> tuple[Scorer, dict]:
    """A scorer fitted on the reports' episodes on `data` (the set the reports ran on), and
    what it was fitted on."""
    positive, negative = [], []
    counts = {"episodes": 0, "positive": 0, "left_out": 0, "clean_sets": 0}
    seeds = set()
    for report in reports:
        seeds.add(int(report.get("config", {}).get("seed", 0)))
        for episode, poisoned in replayed(report, data):
            rows = class_features(members(poisoned.x, poisoned.y, seed))
            classes = np.unique(poisoned.y)
            target = episode["config"]["target"]
            works = episode["attack_success"] >= WORKS
            counts["episodes"] += 1
            counts["positive" if works else "left_out"] += 1
            for label, row in zip(classes, rows):
                if label != target:
                    negative.append(row)
                elif works:
                    positive.append(row)
    for split_seed in sorted(seeds):
        train, _ = split(data, split_seed)
        negative.extend(class_features(members(train.x, train.y, seed)))
        counts["clean_sets"] += 1
    if not positive:
        raise ValueError("no episode of these reports made a working attack: nothing to learn")
    provenance = {"fitted_on": f"{data.name}: {len(reports)} redteam report(s), split seeds "
                               f"{sorted(seeds)}", **counts,
                  "negative_classes": len(negative), "works_at": WORKS}
    return fit(np.array(positive), np.array(negative), provenance, seed), provenance


def check(scorer: Scorer, cases: list[Case], seed: int = 0) -> list[dict]:
    """Per case, the classes the default detector and the hardened vet suspect, and whether
    the poisoned class (if any) is caught and a clean class flagged, before and after."""
    from ...data.vet import DEFAULT_DETECTOR, vet, vet_hardened

    rows = []
    for case in cases:
        before = vet(case.data, detector=DEFAULT_DETECTOR, seed=seed).results
        after = vet_hardened(case.data, seed, scorer).results
        row = {"case": case.name, "target": case.target}
        for when, results in (("before", before), ("after", after)):
            flagged = sorted(int(c) for c in results.suspected_classes)
            row[when] = {"classes": flagged,
                         "caught": case.target in flagged if case.target is not None else None,
                         "false_classes": [c for c in flagged if c != case.target]}
        rows.append(row)
    return rows
