"""`redteam`: searches of the attack space against a detector, each with the same budget of
episodes, and what they found: the evasions (attacks that work and that the detector misses),
the frontier of attack success against detection, and which search did better."""

from __future__ import annotations

import time

import numpy as np

from ...data.datasets import Dataset
from ...data.text import TextDataset
from ...findings import Location, Report
from ...results import RedteamResults
from ..rules import EVASION, TARGET_FLAGGED_CLEAN, WEAK_CLEAN_MODEL
from .episode import (
    DEFAULT,
    DROP,
    EVADES,
    KEPT,
    NATURAL,
    Budget,
    Episode,
    clean_flags,
    clean_model,
    model_name,
    split,
)
from .search import run_search
from .text_episode import inspect_ready

SEARCHES = ("ppo", "random")  # the learning attacker and its baseline, by default
LEARNT = 0.25  # a clean model this far from chance to all right has learnt something


def redteam(data: Dataset, against: str, episodes: int, seed: int = 0,
            searches: tuple[str, ...] = SEARCHES, target: int = 0,
            budget: Budget = DEFAULT) -> Report:
    """Each of `searches` runs `episodes` episodes against `against` ("vet" or "inspect") on
    `data` (split into training and held-out parts by `seed`)."""
    classes = sorted(set(data.y.tolist()))
    if len(classes) < 2 or classes != list(range(len(classes))):
        names = [data.names[k] for k in classes] if isinstance(data, TextDataset) else classes
        shown = ", ".join(map(str, names[:12])) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"{data.name}: labels {shown}; the loop needs at least two classes, "
                         f"numbered 0 to K-1 (the model's class indices)")
    if target not in classes:
        raise ValueError(f"{data.name}: no sample of the target class {target}")
    if isinstance(data, TextDataset) and against == "inspect":
        inspect_ready(data)
    started = time.perf_counter()
    train, test = split(data, seed)
    clean = clean_model(train, test, seed, budget, against=against)
    flagged = clean_flags(clean, train, test, against, seed, budget)
    found = {name: run_search(name, train, test, against, episodes, seed, target, budget,
                              clean) for name in searches}
    every = [_entry(name, k, e) for name, done in found.items() for k, e in enumerate(done)]
    evasions = sorted((entry for entry in every if entry["evades"]),
                      key=lambda entry: (-entry["attack_success"], entry["detection"]))
    per_search = {name: _summary(done) for name, done in found.items()}
    better = max(per_search, key=lambda n: (per_search[n]["evasions"],
                                            per_search[n]["best_reward"]))
    findings = tuple(EVASION.finding(
        f"{e['config']['kind']} attack ({e['config']['label']} label, "
        f"{e['config']['rate']:.1%} poisoned) reaches attack success {e['attack_success']:.2f} "
        f"and {against} misses it", Location(data.name, (f"{e['search']} episode {e['episode']}",)),
        {"search": e["search"], "attack_success": e["attack_success"],
         "detection": e["detection"]}) for e in evasions)
    model = model_name(data, against, budget)
    findings += _caveats(data.name, against, target, flagged, clean.accuracy, test.y, model)
    return Report(
        command="redteam", targets=(data.name,), findings=findings,
        results=RedteamResults(
            against=against, evasions=evasions,
            frontier=_frontier(every),
            searches=per_search, better=better,
            episodes=every,
            data_split={"train": int(len(train.y)), "held_out": int(len(test.y))},
            clean_accuracy=round(clean.accuracy, 4), clean_flagged=flagged),
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        config={"seed": seed, "episodes": episodes, "searches": list(searches),
                "target": target, "model": model,
                "epochs": budget.epochs, "width": budget.width,
                "evades_at": EVADES, "accuracy_drop_at_most": DROP,
                "input_kept_at_least": KEPT, "natural_success_below": NATURAL})


def _caveats(name: str, against: str, target: int, flagged: list[int], accuracy: float,
             held_out, model: str) -> tuple:
    """Findings where the run's figures say little: the detector names the target with no
    attack, or the clean model is little better than answering the most common class."""
    found = ()
    if target in flagged:
        found += (TARGET_FLAGGED_CLEAN.finding(
            f"with no attack, {against} names class {target}, the attacks' target: its catches "
            f"say nothing of the attacks (classes named with no attack: "
            f"{', '.join(map(str, flagged))})", Location(name, (f"class {target}",)),
            {"target": target, "clean_flagged": flagged}),)
    chance = float(np.bincount(held_out).max() / len(held_out))  # the most common class
    if accuracy < chance + LEARNT * (1 - chance):
        found += (WEAK_CLEAN_MODEL.finding(
            f"trained on the clean split, {model} gets {accuracy:.0%} of the held-out samples "
            f"right, and answering their most common class would get {chance:.0%}: the "
            f"episodes' attack success and the detector's verdicts say little",
            Location(name), {"clean_accuracy": round(accuracy, 4),
                             "chance": round(chance, 4)}),)
    return found


def _entry(search: str, k: int, episode: Episode) -> dict:
    return {"search": search, "episode": k, **episode.as_dict()}


def _summary(done: list[Episode]) -> dict:
    rewards = [e.reward for e in done]
    best = max(range(len(done)), key=lambda k: rewards[k])
    return {"episodes": len(done), "evasions": sum(e.evades for e in done),
            "best_reward": rewards[best], "first_evasion": next(
                (k for k, e in enumerate(done) if e.evades), None),
            "mean_reward": round(sum(rewards) / len(rewards), 4),
            "seconds": round(sum(e.seconds for e in done), 1)}


def _frontier(entries: list[dict]) -> list[dict]:
    """The episodes no other beats on both counts (higher attack success at no higher
    detection), by detection: what success an attacker buys at each level of detection. Only
    models that kept their task (clean accuracy within DROP of a clean model's) with triggers
    that keep their inputs (input_kept at least KEPT) and that a clean model does not already
    follow (natural_success below NATURAL) count."""
    kept = []
    working = [e for e in entries if e["accuracy_drop"] <= DROP and
               e.get("input_kept", 1.0) >= KEPT and e.get("natural_success", 0.0) < NATURAL]
    for entry in sorted(working, key=lambda e: (e["detection"], -e["attack_success"])):
        if not kept or entry["attack_success"] > kept[-1]["attack_success"]:
            kept.append({"search": entry["search"], "episode": entry["episode"],
                         "attack_success": entry["attack_success"],
                         "detection": entry["detection"]})
    return kept
