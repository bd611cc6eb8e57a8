"""Hardening: vet's ensemble scorer learns from what the learning attacker made.

Every episode of a redteam report against vet is replayed (its configuration poisons the same
training split, the same samples) and each class of the poisoned set gets the ensemble's
features (data/ensemble.py): the target class of an attack that worked (`works`: attack
success at least WORKS, with a trigger that keeps its inputs) is a positive, every other class
a negative; the target class of an attack that
did not work is left out (poisoned, but no backdoor to find). The clean training splits are
negatives too. The fitted scorer's threshold sits above every negative class, so no class of
those clean sets is flagged; `check` then measures it on data it never saw: held-out clean
sets (no class may be flagged) and poisoned sets (is each target caught, before and after).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.datasets import Dataset
from ...data.ensemble import Scorer, class_features, fit, members
from ...findings import Location, Report
from ...results import HardenResults
from ..rules import EVASION
from .episode import KEPT, split
from .space import AttackConfig
from .text_space import KINDS as TEXT_KINDS

WORKS = 0.5  # attack success from which a poisoned class is a positive


def works(episode: dict) -> bool:
    """An episode's attack worked: attack success at least WORKS above its trigger's natural
    success (a clean model's), with a trigger that keeps its inputs (episode.KEPT). A report
    made before these were kept counts the trigger as keeping its inputs, with no natural
    success."""
    def number(key: str, missing: float, bad: float) -> float:
        value = episode.get(key, missing)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else bad

    lift = episode["attack_success"] - number("natural_success", 0.0, 1.0)
    return lift >= WORKS and number("input_kept", 1.0, 0.0) >= KEPT


@dataclass(frozen=True)
class Case:
    """A data set to check on: its name, the data, the poisoned class (None: clean)."""
    name: str
    data: Dataset
    target: int | None = None


def report_parts(report: dict, against: str) -> tuple[dict, list, set]:
    """(config, episodes, evasions as (search, episode) pairs) of a redteam report (as JSON)
    against `against`, its outer fields checked."""
    results, config = report.get("results"), report.get("config", {})
    if report.get("command") != "redteam" or not isinstance(results, dict) or \
            results.get("against") != against:
        found = results.get("against") if isinstance(results, dict) else None
        raise ValueError(f"hardening {against} learns from redteam reports against {against}, "
                         f"not {found!r}")
    if not isinstance(config, dict):
        raise ValueError("the report's config is not an object")
    if "seed" not in config:
        raise ValueError("the report's config has no seed (the split its episodes ran on)")
    seed = config["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"the report's seed must be an integer from 0 to 2**32 - 1, not {seed!r}")
    episodes, evasions = results.get("episodes"), results.get("evasions", [])
    if not isinstance(episodes, list):
        raise ValueError("the report has no list of episodes")
    if not isinstance(evasions, list) or not all(
            isinstance(e, dict) and named(e) for e in evasions):
        raise ValueError("the report's evasions are not a list of episodes (search, episode)")
    ran = {(e["search"], e["episode"]) for e in episodes if isinstance(e, dict) and named(e)}
    for e in evasions:
        if (e["search"], e["episode"]) not in ran:
            raise ValueError(f"the report's evasion {e['search']} #{e['episode']} is not one "
                             "of its episodes")
    return config, episodes, {(e["search"], e["episode"]) for e in evasions}


def named(episode: dict) -> bool:
    """An episode's search is a plain name (no control characters reach a terminal) and its
    number an integer."""
    search, number = episode.get("search"), episode.get("episode")
    return isinstance(search, str) and search.isidentifier() and len(search) <= 64 and \
        isinstance(number, int) and not isinstance(number, bool)


def replayed(report: dict, data: Dataset, only: set | None = None
             ) -> list[tuple[dict, Dataset]]:
    """(episode, poisoned training split) for each episode of a redteam report (as JSON), or
    for those of `only` ((search, episode) pairs); the report is checked whole either way."""
    config, episodes, _ = report_parts(report, "vet")
    seed = config["seed"]
    train, _ = split(data, seed)
    sets = []
    for k, episode in enumerate(episodes):
        success = episode.get("attack_success") if isinstance(episode, dict) else None
        if not isinstance(episode, dict) or not named(episode) or \
                isinstance(success, bool) or not isinstance(success, (int, float)) or \
                not 0 <= success <= 1:
            raise ValueError(f"episode {k} is not a redteam episode (search, episode, config, "
                             "attack_success from 0 to 1)")
        entry = episode.get("config")
        if isinstance(entry, dict) and entry.get("kind") in TEXT_KINDS:
            raise ValueError("a redteam report on texts: harden fits the scorer of image vet "
                             "(text vet's tests are not refitted; docs/redteam.md)")
        attack = AttackConfig.from_dict(entry)
        if only is not None and (episode["search"], episode.get("episode")) not in only:
            continue
        bad = attack.poison(train.x, train.y)
        sets.append((episode, Dataset(bad.x, bad.y, f"{data.name} {episode['search']} "
                                                    f"#{episode['episode']}")))
    return sets


def harden(reports: list[dict], data: Dataset, seed: int = 0,
           clean: tuple[Dataset, ...] = ()) -> tuple[Scorer, dict]:
    """A scorer fitted on the reports' episodes on `data` (the set the reports ran on), and
    what it was fitted on. `clean`: more clean sets whose classes are negatives (other data
    of the kind the scorer will meet: a threshold set on one data set's classes alone is set
    on too little)."""
    positive, negative = [], []
    counts = {"episodes": 0, "positive": 0, "left_out": 0, "clean_sets": 0}
    seeds = set()
    for report in reports:
        replays = replayed(report, data)  # checks the report first
        seeds.add(report["config"]["seed"])
        for episode, poisoned in replays:
            rows = class_features(members(poisoned.x, poisoned.y, seed))
            classes = np.unique(poisoned.y)
            target = episode["config"]["target"]
            worked = works(episode)
            counts["episodes"] += 1
            counts["positive" if worked else "left_out"] += 1
            for label, row in zip(classes, rows):
                if label != target:
                    negative.append(row)
                elif worked:
                    positive.append(row)
    for split_seed in sorted(seeds):
        train, _ = split(data, split_seed)
        negative.extend(class_features(members(train.x, train.y, seed)))
        counts["clean_sets"] += 1
    for other in clean:
        negative.extend(class_features(members(other.x, other.y, seed)))
        counts["clean_sets"] += 1
    if not positive:
        raise ValueError("no episode of these reports made a working attack: nothing to learn")
    provenance = {"fitted_on": f"{data.name}: {len(reports)} redteam report(s), split seeds "
                               f"{sorted(seeds)}" + "".join(f"; clean {c.name}" for c in clean),
                  **counts,
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
        rows.append(check_row(case.name, case.target, before.suspected_classes,
                              after.suspected_classes))
    return rows


def check_row(name: str, target: int | None, before, after) -> dict:
    """A case's row: the classes named before and after, whether the target (None: a clean
    case) is caught, and the classes named falsely."""
    row = {"case": name, "target": target}
    for when, named in (("before", before), ("after", after)):
        flagged = sorted({int(c) for c in named})
        row[when] = {"classes": flagged,
                     "caught": target in flagged if target is not None else None,
                     "false_classes": [c for c in flagged if c != target]}
    return row


def recall(rows: list[dict]) -> dict:
    """How many poisoned cases, and the share caught before and after."""
    poisoned = [r for r in rows if r["target"] is not None]
    out = {"cases": len(poisoned)}
    for when in ("before", "after"):
        out[when] = round(sum(r[when]["caught"] for r in poisoned) / len(poisoned), 4) \
            if poisoned else None
    return out


def evasion_cases(reports: list[dict], data: Dataset) -> list[Case]:
    """The reports' evasions, replayed on `data`, as cases to check."""
    cases = []
    for report in reports:
        wanted = report_parts(report, "vet")[2]
        for episode, poisoned in replayed(report, data, wanted):
            cases.append(Case(f"seed {report['config']['seed']} "
                              f"{episode['search']} #{episode['episode']}", poisoned,
                              episode["config"]["target"]))
    return cases


def harden_report(reports: list[dict], data: Dataset, out: Path, seed: int = 0) -> Report:
    """`trojanscope harden`: fit a scorer on the reports' episodes, write it to `out`, and
    check it on the reports' evasions and the clean training splits, before and after."""
    started = time.perf_counter()
    scorer, fitted_on = harden(reports, data, seed)
    seeds = sorted({r["config"]["seed"] for r in reports})
    cases = evasion_cases(reports, data) + [
        Case(f"clean split seed {s}", split(data, s)[0]) for s in seeds]
    rows = check(scorer, cases, seed)
    scorer.save(out)
    caught = recall(rows)
    missed = [r for r in rows if r["target"] is not None and not r["after"]["caught"]]
    findings = tuple(EVASION.finding(
        f"{r['case']}: still missed after hardening", Location(data.name, (r["case"],)),
        {"target": r["target"], "classes_after": r["after"]["classes"]}) for r in missed)
    return Report(
        command="harden", targets=(data.name,), findings=findings,
        results=HardenResults(
            scorer=scorer.as_dict(), written=str(out), fitted_on=fitted_on, checks=rows,
            recall={"evasions": caught["cases"], "before": caught["before"],
                    "after": caught["after"]},
            clean_classes_flagged=sum(len(r["after"]["classes"]) for r in rows
                                      if r["target"] is None)),
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        config={"seed": seed, "reports": len(reports), "works_at": WORKS})
