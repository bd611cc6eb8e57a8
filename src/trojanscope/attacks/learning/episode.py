"""One episode of the learning attacker: poison -> train a small model -> detect -> reward.

The model is the proxy CNN `vet` and the zoos use, trained on the poisoned training split; the
attack's success is measured on the held-out split's images of other classes with the trigger
stamped, its clean accuracy on the held-out split as it is. The detector is the project's
default, as a user runs it:
- `vet`: the poisoned training set; caught when vet names the target class;
- `inspect`: the trained model, given clean held-out images; caught when inspect calls it
  trojaned with the target among its target classes. Its seed is the run's, not the episode's:
  inspect's reference proxies depend on the seed and the data only, so one seed lets every
  episode of a run share them (an episode on MNIST-5k: 75 s with its own, 13 s shared; the
  text inspect fits its reference again each episode, and the seed keeps its draws the same).
  Each image class's scores are kept (`class_scores`): what hardening for inspect learns from.
Text sets take the same steps (text_episode): a bag-of-words proxy and the text vet, or
fine-tuned MiniLM and the text inspect.
Attack success counts only what the poison taught: a clean model of the same training split
is given the same triggered inputs, and the share it already sends to the target (the
trigger's `natural_success`: a feature of the target class, or a transform that a clean
model sends to one class of its own, as inverted digits) is taken off. The reward is that lift
times (1 - detection), detection being 1 when caught and
otherwise the share of poisoned samples vet flagged anyway (inspect: 0), times the share of a
clean model's accuracy the attacked model keeps (a model that answers the target for
everything has attack success 1 and is no backdoor), times the share of KEPT the trigger keeps
of its inputs (`input_kept`: how far apart triggered inputs stay, against the inputs
themselves; the image blended half with its negative is a uniform grey, and a model that sends
one grey image to the target has learnt no trigger: the attacker against inspect found that).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ...data.datasets import Dataset, held_out_rows, held_out_split
from ...data.text import TextDataset
from .space import AttackConfig
from .text_episode import (
    inspect_texts,
    measure_text,
    train_text_model,
    train_text_proxy,
    vet_texts,
)
from .text_space import TextAttackConfig

AGAINST = ("vet", "inspect")
SCORE_KEYS = ("class", "mask_shrink", "trigger_success", "perturbation_lift",
              "perturbation_success", "warp_lift", "warp_success")
EVADES = 0.9  # attack success at or above which an undetected attack is an evasion,
DROP = 0.05   # if its clean accuracy is within this of a clean model's
KEPT = 0.25   # and its trigger keeps at least this of its inputs' differences
NATURAL = 0.5  # and a clean model sends less than this share of triggered inputs to the target


@dataclass(frozen=True)
class Budget:
    """What one episode may spend: the proxy's training and inspect's search."""
    epochs: int = 3
    width: int = 16
    batch_size: int = 32  # small batches: enough steps in a few epochs of a few thousand images
    inspect_fast: bool = True
    tiny_text: bool = False  # texts against inspect: a tiny BERT, not MiniLM (tests)


@dataclass(frozen=True)
class Episode:
    config: AttackConfig | TextAttackConfig
    attack_success: float
    clean_accuracy: float
    caught: bool
    detection: float          # 1 when caught, else the share of poisoned samples flagged
    flagged_classes: list
    poisoned: int             # samples poisoned
    accuracy_drop: float      # a clean model's clean accuracy less this one's
    reward: float
    seconds: float
    class_scores: list | None = None  # inspect: each class's scores (hardening's features)
    input_kept: float = 1.0   # triggered inputs' distances over the inputs' (texts: 1)
    natural_success: float = 0.0  # a clean model's attack success with the same trigger

    @property
    def evades(self) -> bool:
        return self.attack_success >= EVADES and not self.caught and \
            self.accuracy_drop <= DROP and self.input_kept >= KEPT and \
            self.natural_success < NATURAL

    def as_dict(self) -> dict:
        entry = asdict(self)
        entry["config"] = self.config.as_dict()
        entry["evades"] = self.evades
        if self.class_scores is None:  # against vet, or texts
            del entry["class_scores"]
        return entry


DEFAULT = Budget()


@dataclass(frozen=True)
class Clean:
    """A model trained on the clean training split, as each episode's is: what an attacked
    model is compared with (its clean accuracy, and its answers to triggered inputs)."""
    accuracy: float   # held-out
    model: object     # the image CNN, the bag-of-words proxy or the fine-tuned transformer


def split(data: Dataset | TextDataset, seed: int):
    """(training, held-out) parts of `data`: a fifth held out, drawn by the seed."""
    if isinstance(data, TextDataset):
        return tuple(data.subset(rows) for rows in held_out_rows(len(data.y), 0.2, seed))
    return held_out_split(data, 0.2, seed)


def clean_model(train: Dataset | TextDataset, test: Dataset | TextDataset, seed: int = 0,
                budget: Budget = DEFAULT, *, against: str) -> Clean:
    """The model trained on the clean training split, as each episode's model is trained
    against `against`."""
    if isinstance(train, TextDataset):
        model = _text_model(train, seed, budget, against)
        return Clean(measure_text(model, None, test, seed)[1], model)
    model = train_model(train.x, train.y, seed, budget, "a clean model")
    return Clean(_measure(model, None, test, None)[1], model)


def run_episode(config: AttackConfig | TextAttackConfig, train: Dataset | TextDataset,
                test: Dataset | TextDataset, against: str,
                seed: int = 0, budget: Budget = DEFAULT,
                clean: Clean | None = None, run_seed: int | None = None) -> Episode:
    """Poison `train` with `config`, train the model on it, measure, detect, reward.
    `clean`: `clean_model` of `train` (None: trained here); `run_seed`: inspect's seed (None:
    the episode's)."""
    if against not in AGAINST:
        raise ValueError(f"unknown detector {against!r}: one of {', '.join(AGAINST)}")
    started = time.perf_counter()
    inspect_seed = seed if run_seed is None else run_seed
    clean = clean_model(train, test, seed, budget, against=against) if clean is None \
        else clean
    baseline = clean.accuracy
    scores, kept = None, 1.0
    if isinstance(train, TextDataset):
        bad = config.poison(train)
        model = _text_model(bad.data, seed, budget, against)
        success, accuracy = measure_text(model, config, test, seed)
        natural = measure_text(clean.model, config, test, seed)[0]
        if against == "vet":
            caught, detection, flagged = vet_texts(bad.data, bad.indices, config.target, seed)
        else:
            caught, detection, flagged = inspect_texts(model, test, config.target,
                                                       inspect_seed, budget.inspect_fast)
    else:
        bad = config.poison(train.x, train.y)
        model = train_model(bad.x, bad.y, seed, budget, "the attacked model")
        success, accuracy = _measure(model, bad.trigger, test, config.target)
        natural = _measure(clean.model, bad.trigger, test, config.target)[0]
        kept = input_kept(bad.trigger, test, config.target)
        if against == "vet":
            caught, detection, flagged = _vet(Dataset(bad.x, bad.y, train.name), bad.indices,
                                              config.target, seed)
        else:
            caught, detection, flagged, scores = inspected(
                model, test, config.target, inspect_seed, budget)
    return Episode(config=config, attack_success=round(success, 4),
                   clean_accuracy=round(accuracy, 4), caught=caught,
                   detection=round(detection, 4), flagged_classes=flagged,
                   poisoned=int(len(bad.indices)),
                   accuracy_drop=round(baseline - accuracy, 4),
                   reward=round(max(0.0, success - natural) * (1 - detection) *
                                min(1.0, accuracy / baseline) * min(1.0, kept / KEPT), 4)
                   if baseline > 0 else 0.0,
                   seconds=round(time.perf_counter() - started, 2), class_scores=scores,
                   input_kept=round(kept, 4), natural_success=round(natural, 4))


def clean_flags(clean: Clean, train: Dataset | TextDataset, test: Dataset | TextDataset,
                against: str, seed: int, budget: Budget = DEFAULT) -> list[int]:
    """The classes the detector names with no attack at all: vet on the clean training split,
    inspect on the clean model. A catch of one of them says nothing of the attack (round seven's
    false airplane; the text inspect on a MiniLM of 800 texts)."""
    none = np.zeros(0, np.int64)
    if isinstance(train, TextDataset):
        return vet_texts(train, none, 0, seed)[2] if against == "vet" else \
            inspect_texts(clean.model, test, 0, seed, budget.inspect_fast, clean=True)[2]
    return _vet(train, none, 0, seed)[2] if against == "vet" else \
        inspected(clean.model, test, 0, seed, budget)[2]


def model_name(data: Dataset | TextDataset, against: str, budget: Budget) -> str:
    """What an episode trains on `data` against `against`, as the report names it."""
    if not isinstance(data, TextDataset):
        return "the proxy CNN"
    if against == "vet":
        return "bag-of-words logistic regression"
    return "tiny BERT (tests)" if budget.tiny_text else "MiniLM (all-MiniLM-L6-v2), fine-tuned"


def _text_model(data: TextDataset, seed: int, budget: Budget, against: str):
    """What a text episode trains against `against`: the bag-of-words proxy for vet, the
    transformer that inspect reads for inspect."""
    if against == "vet":
        return train_text_proxy(data)
    return train_text_model(data, seed, budget.epochs, budget.tiny_text)


def train_model(x: np.ndarray, y: np.ndarray, seed: int, budget: Budget, what: str):
    from ...data.features import TrainConfig, train_proxy

    return train_proxy(x, y, TrainConfig(epochs=budget.epochs, width=budget.width, seed=seed,
                                          batch_size=budget.batch_size),
                       what=what)


def input_kept(trigger, test: Dataset, target: int) -> float:
    """The median, over held-out images of other classes each paired with the next, of the
    distance between the two triggered over the distance between the two as they are: 1 for a
    small patch or a warp, 1 - alpha for a blend, |1 - 2 share| for the image blended with its
    negative (0: every image the same grey)."""
    x = test.x[test.y != target].astype(np.float32)
    if len(x) < 2:
        return 1.0
    paired = np.roll(x, 1, axis=0)
    triggered = np.asarray(trigger(x), np.float32)
    before = np.linalg.norm((x - paired).reshape(len(x), -1), axis=1)
    after = np.linalg.norm((triggered - np.roll(triggered, 1, axis=0)).reshape(len(x), -1),
                           axis=1)
    apart = before > 1e-6
    return float(np.median(after[apart] / before[apart])) if apart.any() else 1.0


def _measure(model, trigger, test: Dataset, target: int | None) -> tuple[float, float]:
    """(attack success, clean accuracy) on the held-out split (no trigger: success 0)."""
    from ...data.features import extract

    _, logits = extract(model, test.x)
    accuracy = float(np.mean(logits.argmax(1) == test.y))
    if trigger is None:
        return 0.0, accuracy
    others = test.y != target
    _, triggered = extract(model, trigger(test.x[others]))
    return float(np.mean(triggered.argmax(1) == target)), accuracy


def _vet(data: Dataset, poisoned: np.ndarray, target: int, seed: int):
    from ...data.vet import vet

    results = vet(data, seed=seed).results
    flagged = [int(c) for c in results.suspected_classes]
    caught = target in flagged
    found = np.intersect1d(results.suspicious_indices, poisoned).size / max(1, poisoned.size)
    return caught, 1.0 if caught else float(found), flagged


def inspected(model, test: Dataset, target: int, seed: int, budget: Budget):
    """(caught, detection, classes named, class_scores): inspect's verdict on `model`."""
    from ...model.inspect import inspect_config, inspect_model

    results = inspect_model(model, test, inspect_config(seed, budget.inspect_fast),
                            name="the attacked model").results
    flagged = [int(c) for c in results.target_classes]
    caught = results.verdict == "trojaned" and target in flagged
    return caught, 1.0 if caught else 0.0, flagged, class_scores(results.per_class)


def class_scores(per_class: list[dict]) -> list[dict]:
    """Each class's scores from inspect's `per_class`, as hardening reads them."""
    return [{key: entry[key] for key in SCORE_KEYS} for entry in per_class]
