"""Hardening inspect: its scorer (model/inspect_scorer.py) learns from what the learning
attacker made.

An episode against inspect keeps every class's scores (`class_scores`), so nothing is replayed:
the target class of an attack that worked (harden.works: attack success at least WORKS, with a
trigger that keeps its inputs) is a positive, the
model's other classes are negatives, and the target of an attack that did not work is left out
(poisoned, but no backdoor to find). Clean models give negatives too: the episodes' proxy
trained on each report's clean training split with CLEAN_MODELS other seeds, inspected as the
episodes were. The scorer's threshold sits above every negative class; `checks` then read, for
each case (an episode's model or a clean model), the classes inspect named as it ran (`before`)
and with the scorer's classes added (`after`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...data.datasets import Dataset
from ...data.ensemble import Scorer, fit
from ...findings import Location, Report
from ...model import inspect_scorer
from ...results import HardenResults
from ..rules import EVASION
from .episode import DEFAULT, SCORE_KEYS, Budget, inspected, split, train_model
from .harden import WORKS, check_row, named, recall, report_parts, works

CLEAN_MODELS = 4     # clean models per split seed, their classes negatives
CLEAN_SEED = 10_000  # their training seeds start here (the episodes' are the run's seed + k)
MAX_EPOCHS, MAX_WIDTH = 30, 64  # a report's training budget (redteam's default: 3 epochs,
                                # width 16): the clean models cost what its episodes cost


def episodes_of(report: dict) -> tuple[int, Budget, list[dict], set]:
    """(split seed, the episodes' training budget, episodes, evasions as (search, episode)
    pairs) of a redteam report against inspect, checked field by field."""
    config, episodes, evasions = report_parts(report, "inspect")
    epochs, width = config.get("epochs", DEFAULT.epochs), config.get("width", DEFAULT.width)
    if not all(not isinstance(v, bool) and isinstance(v, int) and 1 <= v <= most
               for v, most in ((epochs, MAX_EPOCHS), (width, MAX_WIDTH))):
        raise ValueError(f"the report's epochs and width must be integers from 1 to "
                         f"{MAX_EPOCHS} and {MAX_WIDTH} (its clean models are trained so), not "
                         f"{epochs!r} and {width!r}")
    for k, episode in enumerate(episodes):
        if not _is_episode(episode):
            raise ValueError(f"episode {k} is not a redteam episode against inspect (search, "
                             "episode, config with a target class, attack_success from 0 to "
                             "1, flagged_classes, and class_scores: a report made before "
                             "episodes kept class scores must be made again)")
    return config["seed"], Budget(epochs=epochs, width=width), episodes, evasions


def _is_episode(episode) -> bool:
    def number(value, low, high):
        return not isinstance(value, bool) and isinstance(value, (int, float)) and \
            low <= value <= high

    if not isinstance(episode, dict) or not named(episode):
        return False
    config, scores = episode.get("config"), episode.get("class_scores")
    flagged = episode.get("flagged_classes")
    if not isinstance(scores, list) or len(scores) < 2 or not isinstance(config, dict):
        return False
    target = config.get("target")
    return number(episode.get("attack_success"), 0, 1) and \
        isinstance(target, int) and not isinstance(target, bool) and \
        0 <= target < len(scores) and isinstance(flagged, list) and \
        all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(scores)
            for c in flagged) and all(
            isinstance(entry, dict) and entry.get("class") == k and
            all(number(entry.get(key), -1e6, 1e6) for key in SCORE_KEYS)
            for k, entry in enumerate(scores))


def clean_models(data: Dataset, split_seed: int, count: int | None = None,
                 budget: Budget = DEFAULT) -> list[dict]:
    """`count` (None: CLEAN_MODELS) clean models of `data`'s training split (by
    `split_seed`), each inspected on the held-out split as the report's episodes were: a case
    with its class scores."""
    train, test = split(data, split_seed)
    cases = []
    for k in range(CLEAN_MODELS if count is None else count):
        seed = CLEAN_SEED + split_seed * 100 + k
        model = train_model(train.x, train.y, seed, budget, "a clean model")
        _, _, flagged, scores = inspected(model, test, -1, split_seed, budget)
        cases.append({"case": f"clean model, split seed {split_seed}, training seed {seed}",
                      "target": None, "flagged_classes": flagged, "class_scores": scores})
    return cases


def harden(reports: list[dict], data: Dataset, seed: int = 0,
           clean: list[dict] | None = None) -> tuple[Scorer, dict, list[dict]]:
    """A scorer fitted on the reports' episodes and clean models of `data` (the set the
    reports ran on, trained with each report's budget), what it was fitted on, and the clean
    models (cases). `clean`: those cases when already made (clean_models)."""
    read = [episodes_of(report) for report in reports]  # every report checked first
    positive, negative = [], []
    counts = {"episodes": 0, "positive": 0, "left_out": 0}
    for _, _, episodes, _ in read:
        for episode in episodes:
            rows = inspect_scorer.class_features(episode["class_scores"])
            target = episode["config"]["target"]
            worked = works(episode)
            counts["episodes"] += 1
            counts["positive" if worked else "left_out"] += 1
            positive.extend(rows[[target]] if worked else [])
            negative.extend(np.delete(rows, target, axis=0))
    if not positive:  # before minutes of clean models
        raise ValueError("no episode of these reports made a working attack: nothing to learn")
    runs = sorted({(s, b.epochs, b.width) for s, b, _, _ in read})
    if clean is None:
        clean = [case for s, epochs, width in runs
                 for case in clean_models(data, s, budget=Budget(epochs=epochs, width=width))]
    for case in clean:
        negative.extend(inspect_scorer.class_features(case["class_scores"]))
    provenance = {"fitted_on": f"{data.name}: {len(reports)} redteam report(s) against "
                               f"inspect, split seeds {sorted({r[0] for r in runs})}; "
                               f"{len(clean)} clean models",
                  **counts, "clean_models": len(clean), "negative_classes": len(negative),
                  "works_at": WORKS}
    scorer = fit(np.array(positive), np.array(negative), provenance, seed,
                 inspect_scorer.FEATURES)
    return scorer, provenance, clean


def check(scorer: Scorer, cases: list[dict]) -> list[dict]:
    """Per case (`case`, `target` or None, `flagged_classes` as inspect ran, `class_scores`),
    the classes named before and after the scorer's are added (harden.check_row)."""
    return [check_row(case["case"], case["target"], case["flagged_classes"],
                      set(case["flagged_classes"]) |
                      {c for c, _ in inspect_scorer.suspected(scorer, case["class_scores"])})
            for case in cases]


def episode_cases(reports: list[dict], which: str = "evasions") -> list[dict]:
    """The reports' evasions (`which` "evasions") or every working attack ("working"), as
    cases to check."""
    cases = []
    for report in reports:
        seed, _, episodes, evasions = episodes_of(report)
        for episode in episodes:
            chosen = (episode["search"], episode.get("episode")) in evasions \
                if which == "evasions" else works(episode)
            if chosen:
                cases.append({"case": f"seed {seed} {episode['search']} "
                                      f"#{episode.get('episode')}",
                              "target": episode["config"]["target"],
                              "flagged_classes": episode["flagged_classes"],
                              "class_scores": episode["class_scores"]})
    return cases


def harden_report(reports: list[dict], data: Dataset, out: Path, seed: int = 0) -> Report:
    """`trojanscope harden` on reports against inspect: fit the scorer, write it to `out`, and
    check it on the reports' evasions and working attacks and the clean models."""
    started = time.perf_counter()
    scorer, fitted_on, clean = harden(reports, data, seed)
    evasions = check(scorer, episode_cases(reports, "evasions"))
    rows = evasions + check(scorer, clean)
    scorer.save(out)
    missed = [r for r in evasions if not r["after"]["caught"]]
    findings = tuple(EVASION.finding(
        f"{r['case']}: still missed after hardening", Location(data.name, (r["case"],)),
        {"target": r["target"], "classes_after": r["after"]["classes"]}) for r in missed)
    caught, working = recall(evasions), recall(check(scorer, episode_cases(reports, "working")))
    summary = {"evasions": caught["cases"], "before": caught["before"], "after": caught["after"]}
    summary.update({"working_attacks": working["cases"], "working_before": working["before"],
                    "working_after": working["after"]})
    return Report(
        command="harden", targets=(data.name,), findings=findings,
        results=HardenResults(
            scorer=scorer.as_dict(), written=str(out), fitted_on=fitted_on, checks=rows,
            recall=summary,
            clean_classes_flagged=sum(len(r["after"]["classes"]) for r in rows
                                      if r["target"] is None)),
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        config={"seed": seed, "reports": len(reports), "works_at": WORKS,
                "against": "inspect"})
