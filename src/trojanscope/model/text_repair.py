"""`repair` for text classifiers: unlearn the triggers inspect recovers.

A held-out share of the user's texts judges; the rest repairs. Rounds of: recover each class's
trigger on the model being repaired (text_inspect), then fine-tune on the repair texts plus
copies of them with the recovered triggers inserted at random places, keeping their true
labels, so that the model learns that the trigger means nothing. The next round searches the
repaired model again: a backdoor often answers to more than one word. Attack success is
measured on the held-out texts with the triggers found on the model as given (the ones an
attacker is known to have), and again with a fresh search on the repaired model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..data.text import TextDataset, insert_at_random
from ..findings import Location, Report
from ..ml.text_model import TextClassifier, fine_tune
from ..results import RepairResults
from .rules import NOT_REPAIRED, REPAIRED
from .text_inspect import (
    TextInspectConfig,
    model_labels,
    recover_text_triggers,
)


@dataclass(frozen=True)
class TextRepairConfig:
    seed: int = 0
    epochs: int = 2
    rounds: int = 2
    held_out: float = 0.3
    learning_rate: float = 3e-5
    batch: int = 16
    max_tokens: int = 64
    max_accuracy_drop: float = 0.01
    inspect: TextInspectConfig = field(default_factory=TextInspectConfig)


def repair_text_model(model: TextClassifier, data: TextDataset,
                      config: TextRepairConfig = TextRepairConfig(),
                      name: str = "model") -> tuple[TextClassifier, Report]:
    started = time.perf_counter()
    y = model_labels(model, data)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(y))
    cut = int(round(config.held_out * len(y)))
    held = [data.texts[i] for i in order[:cut]], y[order[:cut]]
    repair_rows = np.sort(order[cut:])
    train = data.subset(repair_rows, f"{data.name} (repair part)")
    train_y = y[repair_rows]

    found, _ = recover_text_triggers(model, train, config.inspect)
    targets = [t.target for t in found if t.is_target]
    chosen = targets or [max(found, key=lambda t: t.score).target]
    known = {k: found[k].text for k in chosen if found[k].text}

    def measure(candidate: TextClassifier, triggers: dict[int, str]) -> dict:
        return {"clean_accuracy": round(float(np.mean(candidate.predict(held[0]) == held[1])),
                                        4),
                "attack_success": round(_success(candidate, held, triggers, config.seed), 4)}

    before = measure(model, known)
    repaired = model.clone()
    triggers = list(known.values())
    rounds = []
    for number in range(config.rounds):
        if number:  # search the model being repaired again
            again, _ = recover_text_triggers(repaired, train, config.inspect)
            fresh = [t.text for t in again if t.text and t.text not in triggers and
                     t.is_target]
            if not fresh:
                break
            triggers += fresh
        texts, labels = _with_triggers(list(train.texts), train_y, triggers,
                                       config.seed + number)
        fine_tune(repaired, texts, labels, epochs=config.epochs, seed=config.seed + number,
                  batch=config.batch, learning_rate=config.learning_rate,
                  max_tokens=config.max_tokens)
        rounds.append(list(triggers))
    after = measure(repaired, known)
    residual, _ = recover_text_triggers(repaired, train, config.inspect)
    after["fresh_trigger_success"] = round(max(t.check_success for t in residual), 4)
    after["fresh_trigger"] = max(residual, key=lambda t: t.check_success).text
    within = after["clean_accuracy"] >= before["clean_accuracy"] - config.max_accuracy_drop
    fixed = within and after["attack_success"] <= max(0.05, before["attack_success"] / 4)
    finding = (REPAIRED if fixed else NOT_REPAIRED).finding(
        f"unlearning {', '.join(repr(t) for t in known.values()) or 'no trigger'}: attack "
        f"success {before['attack_success']:.1%} -> {after['attack_success']:.1%}, clean "
        f"accuracy {before['clean_accuracy']:.1%} -> {after['clean_accuracy']:.1%} on "
        f"{len(held[1])} held-out texts", Location(name),
        {"method": "unlearn", "before": before, "after": after})
    outcome = {**after, "triggers_unlearned": rounds[-1] if rounds else []}
    report = Report(
        command="repair", targets=(name, data.name), findings=(finding,),
        results=RepairResults(
            method="unlearn", before=before, after=after, candidates={"unlearn": outcome},
            target_classes=targets, classes_measured=sorted(known),
            inspect_verdict="trojaned" if targets else "clean",
            data_split={"repair": len(train_y), "held_out": len(held[1])}),
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        config={"seed": config.seed, "epochs": config.epochs, "rounds": config.rounds,
                "held_out": config.held_out, "learning_rate": config.learning_rate,
                "max_accuracy_drop": config.max_accuracy_drop})
    return repaired, report


def _with_triggers(texts: list[str], labels: np.ndarray, triggers: list[str], seed: int):
    """The texts, and a copy of each with one of the triggers inserted, labels kept."""
    if not triggers:
        return texts, labels
    rng = np.random.default_rng(seed)
    stamped = [insert_at_random(t, triggers[int(rng.integers(len(triggers)))], rng)
               for t in texts]
    return texts + stamped, np.concatenate([labels, labels])


def _success(model: TextClassifier, held, triggers: dict[int, str], seed: int) -> float:
    """The share of held-out texts of other classes that a class's trigger sends to it (the
    mean over the classes whose trigger is known)."""
    rng = np.random.default_rng(seed)
    rates = []
    for k, trigger in triggers.items():
        others = [t for t, label in zip(*held) if label != k]
        if others:
            stamped = [insert_at_random(t, trigger, rng) for t in others]
            rates.append(float(np.mean(model.predict(stamped) == k)))
    return float(np.mean(rates)) if rates else 0.0
