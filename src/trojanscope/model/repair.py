"""`repair`: take a backdoor out of a model with a little clean data.

The user's clean data is split once (seeded): a repair part, on which triggers are recovered and
every method trains, and a held-out part that decides. Candidates, each on its own copy:
- fine-tune: plain fine-tuning on the repair part (the baseline);
- unlearn: fine-tuning where a share of each batch carries a recovered trigger of a target
  class (its Neural Cleanse mask and pattern, its universal perturbation) with the true label
  (Neural Cleanse's unlearning), in rounds: after each, the targets are searched again on the
  model being repaired and what the search finds joins the stamps, as adversarial unlearning
  does (I-BAU); it stops at the last round that keeps held-out clean accuracy within the
  allowed loss. Clean rows also learn from the original model's outputs as well as the labels
  (distillation), which keeps a few hundred images from pulling clean accuracy down;
- fine-prune: channels that matter least on clean inputs are removed, then fine-tuning (Liu et
  al. 2018); importance is measured by ablation, which also works on TorchScript (no hooks);
- prune-trigger-neurons: channels whose ablation cuts the recovered trigger's success most for
  the least clean cost are removed (the neuron view of ANP and Neural Cleanse's pruning).
The chosen candidate has the lowest recovered-trigger success on the held-out part among those
losing at most `max_accuracy_drop` of held-out clean accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..data.datasets import Dataset, held_out_split
from ..findings import Location, Report
from ..ml.model import Model, as_tensor, device_of, frozen
from ..ml.ops import (
    accuracy,
    channel_tensors,
    check_model,
    layer_kind,
    predict,
    prunable_layers,
)
from ..plugins import Registry
from ..progress import track
from ..results import RepairResults
from .inspect import InspectConfig, Recovery, recover
from .reverse import neural_cleanse, universal_perturbation
from .rules import NOT_REPAIRED, REPAIRED


@dataclass(frozen=True)
class RepairConfig:
    seed: int = 0
    held_out: float = 0.3           # share of the user's clean data kept to decide
    epochs: int = 10
    learning_rate: float = 1e-3
    batch: int = 64
    unlearn_share: float = 0.5      # of each batch stamped with a recovered trigger
    unlearn_rounds: int = 3         # search the targets again and unlearn what is found
    temperature: float = 2.0        # of the distillation from the original model
    max_accuracy_drop: float = 0.02
    max_pruned: float = 0.8         # share of a layer's channels pruning may remove
    inspect: InspectConfig = InspectConfig()


@dataclass(frozen=True)
class RepairContext:
    """What every repair method may use: the repair part of the data, the settings, the
    recovered triggers (per chosen class), and the measures that decide."""
    train: Dataset
    config: RepairConfig
    classes: list[int]
    stamps: dict
    found_stamps: dict
    measure: Callable
    within: Callable
    copy_of: Callable


# method(module, context) -> details (a dict, or None); the module is a copy, changed in place.
METHODS: Registry[Callable] = Registry("repair method")
METHODS.add("fine-tune", lambda m, c: fine_tune(m, c.train, c.config, {}),
            summary="plain fine-tuning on the clean data (the baseline)")
METHODS.add("unlearn", lambda m, c: _unlearn(m, c.train, c.config, c.classes, c.found_stamps,
                                             c.measure, c.within, c.copy_of(m)),
            summary="learn the recovered triggers back to the true labels, with distillation")
METHODS.add("fine-prune", lambda m, c: _fine_prune(m, c.train, c.config),
            summary="prune the channels clean data leaves dormant, then fine-tune")
METHODS.add("prune-trigger-neurons",
            lambda m, c: _prune_trigger_neurons(m, c.train, c.stamps, c.config),
            summary="prune the channels the recovered trigger excites, then fine-tune")


def split_for_repair(data: Dataset, config: RepairConfig) -> tuple[Dataset, Dataset]:
    """The repair part and the held-out part of the user's clean data (seeded)."""
    return held_out_split(data, config.held_out, config.seed)


def repair_model(module, data: Dataset, config: RepairConfig = RepairConfig(),
                 name: str = "model", only: str | None = None, found: Recovery | None = None):
    """Returns (repaired module, Report). The input module is not modified. `only` runs one
    method instead of choosing among all. `found`: the triggers already recovered from this
    module on the repair part of `data` (`split_for_repair`), so that an inspection is not
    done twice."""
    if only is not None and only not in METHODS:
        raise ValueError(f"unknown repair method {only!r}: one of {METHODS.choices()}")
    started = time.perf_counter()
    model = Model.of(module)
    module = model.module
    check_model(model, data)

    def copy_of(m):
        return replace(model, module=m).clone().module
    train, held = split_for_repair(data, config)
    held_x, held_y = held.x, held.y
    if found is None:
        found = recover(module, train, config.inspect)
    targets, triggers = found.targets, found.triggers
    # Without a detected target, the class inspect found most anomalous stands in, so the
    # numbers still say what each method does to the most trigger-like behaviour.
    chosen_classes = targets or [int(np.argmax(found.score))]
    stamps = {k: _stamp(triggers.mask[k], triggers.pattern[k]) for k in chosen_classes}
    found_stamps = {**{("trigger", k): stamps[k] for k in chosen_classes},
                    **{("perturbation", k): _shift(found.perturbations.delta[k])
                       for k in chosen_classes}}

    def measure(candidate) -> dict:
        return {"clean_accuracy": round(accuracy(candidate, held_x, held_y), 4),
                "attack_success": round(_attack_success(candidate, held_x, held_y, stamps), 4)}

    before = measure(module)

    def within(outcome: dict) -> bool:
        return outcome["clean_accuracy"] >= before["clean_accuracy"] - config.max_accuracy_drop

    def rank(outcome: dict) -> tuple:
        """Within the allowed accuracy loss first, then the least attack success, then accuracy."""
        return not within(outcome), outcome["attack_success"], -outcome["clean_accuracy"]

    context = RepairContext(train, config, chosen_classes, stamps, found_stamps, measure, within,
                            copy_of)
    candidates, outcomes = {}, {}
    for method, run in METHODS.items():
        if only is not None and method != only:
            continue
        candidate = copy_of(module)
        details = run(candidate, context) or {}
        candidate.eval()
        candidates[method] = candidate
        outcomes[method] = {**measure(candidate), **details}
    allowed = [m for m, o in outcomes.items() if within(o)]
    best = min(outcomes, key=lambda m: rank(outcomes[m]))
    after = outcomes[best]
    fixed = bool(allowed) and after["attack_success"] <= max(0.05, before["attack_success"] / 4)
    rule = REPAIRED if fixed else NOT_REPAIRED
    finding = rule.finding(
        f"{best}: recovered-trigger success {before['attack_success']:.1%} -> "
        f"{after['attack_success']:.1%}, clean accuracy {before['clean_accuracy']:.1%} -> "
        f"{after['clean_accuracy']:.1%} on {len(held_y)} held-out samples",
        Location(name), {"method": best, "before": before, "after": after})
    report = Report(
        command="repair", targets=(name, data.name), findings=(finding,),
        results=RepairResults(
            method=best, before=before, after=after, candidates=outcomes,
            target_classes=targets, classes_measured=chosen_classes,
            inspect_verdict="trojaned" if targets else "clean",
            data_split={"repair": len(train.y), "held_out": len(held_y)}),
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        config={"seed": config.seed, "epochs": config.epochs, "held_out": config.held_out,
                "max_accuracy_drop": config.max_accuracy_drop})
    return candidates[best], report


def _stamp(mask: np.ndarray, pattern: np.ndarray):
    return lambda x: ((1 - mask) * x + mask * pattern).astype(np.float32)


def _shift(delta: np.ndarray):
    return lambda x: np.clip(x + delta, 0, 1).astype(np.float32)


def _unlearn(module, data: Dataset, config: RepairConfig, classes: list[int],
             stamps: dict, judge: Callable[[object], dict], allowed: Callable[[dict], bool],
             teacher) -> dict:
    """Rounds of distilled unlearning; between rounds the target classes are searched again on
    the model being repaired (their triggers and perturbations join the stamps). Each round
    makes the model robust to more triggers, so it stops at the last round whose `judge`
    outcome (held-out data) is `allowed`, or the first when none is. `teacher`: a copy of the
    model before repair, distilled from."""
    teacher.eval()
    stamps = dict(stamps)
    search = config.inspect
    states, outcomes = [], []
    for round_ in range(1, config.unlearn_rounds + 1):
        fine_tune(module, data, config, stamps, teacher=teacher)
        states.append({k: v.detach().clone() for k, v in module.state_dict().items()})
        outcomes.append(judge(module))
        if round_ == config.unlearn_rounds:
            break
        with frozen(module):
            seed = config.seed + round_
            triggers = neural_cleanse(module, data.x, data.y, classes, steps=search.steps,
                                      batch=search.batch, seed=seed)
            shifts = universal_perturbation(module, data.x, data.y, classes, eps=search.uap_eps,
                                            steps=search.uap_steps, batch=search.batch,
                                            seed=seed)
        for i, k in enumerate(classes):
            stamps[("trigger", k, round_)] = _stamp(triggers.mask[i], triggers.pattern[i])
            stamps[("perturbation", k, round_)] = _shift(shifts.delta[i])
    kept = max((i for i, o in enumerate(outcomes) if allowed(o)), default=0)
    module.load_state_dict(states[kept])
    module.eval()
    return {"rounds": kept + 1, "of_rounds": config.unlearn_rounds, "stamps": len(stamps),
            "by_round": outcomes}


def _attack_success(module, x, y, stamps: dict) -> float:
    rates = [float((predict(module, stamp(x[y != k])) == k).mean())
             for k, stamp in stamps.items() if np.any(y != k)]
    return max(rates) if rates else 0.0


def fine_tune(module, data: Dataset, config: RepairConfig, stamps: dict,
              keep_zero: list | None = None, teacher=None) -> dict:
    """Adam on `data`; a share of each batch stamped (with its true label) when `stamps` are
    given; unstamped rows also match `teacher`'s softened outputs when one is given."""
    import torch

    generator = np.random.default_rng(config.seed + 1)
    torch.manual_seed(config.seed)
    parameters = [p for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    device = device_of(module)
    module.train()
    targets = list(stamps)
    for _ in track(range(config.epochs), "repairing", config.epochs):
        order = generator.permutation(len(data.y))
        for start in range(0, len(order), config.batch):
            rows = order[start:start + config.batch]
            x, y = data.x[rows].copy(), data.y[rows]
            chosen = np.zeros(len(rows), dtype=bool)
            if targets:  # unlearning: stamp a share with a recovered trigger, keep true labels
                chosen = generator.random(len(rows)) < config.unlearn_share
                for i in np.flatnonzero(chosen):
                    x[i] = stamps[targets[i % len(targets)]](x[i:i + 1])[0]
            inputs = as_tensor(x, device)
            optimizer.zero_grad()
            logits = module(inputs)
            loss = torch.nn.functional.cross_entropy(
                logits, torch.from_numpy(y.astype(np.int64)).to(device), reduction="none")
            if teacher is not None:
                loss = loss + _distillation(torch, logits, teacher, inputs, config.temperature,
                                            torch.from_numpy(~chosen).to(device))
            loss.mean().backward()
            optimizer.step()
            for zero in keep_zero or ():
                zero()
    module.eval()
    return {}


def _distillation(torch, logits, teacher, inputs, temperature: float, rows):
    """Per row, KL(teacher || student) at `temperature` (scaled by its square), on `rows` only."""
    with torch.no_grad():
        soft = torch.softmax(teacher(inputs) / temperature, 1)
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / temperature, 1), soft,
                                    reduction="none").sum(1)
    return kl * temperature ** 2 * rows.float()


def _zero_channels(tensors: list, channels) -> Callable[[], None]:
    """Zero the `channels` rows of every tensor of a unit (see `ops.channel_tensors`); returns
    the function that does it again (after each optimiser step)."""
    import torch

    index = torch.as_tensor(sorted(channels), dtype=torch.long, device=tensors[0].device)

    def zero() -> None:
        with torch.no_grad():
            for tensor in tensors:
                tensor[index] = 0
    zero()
    return zero


def _ablation_effects(module, tensors: list, x: np.ndarray, score: Callable) -> np.ndarray:
    """score(module) after zeroing each output channel of a unit in turn."""
    import torch

    effects = np.zeros(tensors[0].shape[0])
    with torch.no_grad():
        for channel in range(len(effects)):
            saved = [tensor[channel].clone() for tensor in tensors]
            for tensor in tensors:
                tensor[channel] = 0
            effects[channel] = score(module)
            for tensor, value in zip(tensors, saved):
                tensor[channel] = value
    return effects


def _clean_margin(x, y):
    import torch

    inputs, labels = as_tensor(x), torch.from_numpy(y)

    def score(module) -> float:
        logits = module(inputs.to(device_of(module))).cpu()
        return float(logits.gather(1, labels[:, None].long()).mean() - logits.mean())
    return score


def _layers_or_error(module) -> list:
    layers = prunable_layers(module)
    if not layers:
        raise ValueError("the model has no convolution or hidden linear layer to prune")
    return layers


def _greedy_prune(module, tensors: list, order, keeps_accuracy, patience: int,
                  done=None) -> list[int]:
    """Zero a unit's channels in `order`, undoing any after which `keeps_accuracy()` fails;
    stop after `patience` such failures or once `done()` holds. Returns the pruned channels."""
    import torch

    pruned: list[int] = []
    failures = 0
    for channel in (int(c) for c in order):
        saved = [tensor[channel].clone() for tensor in tensors]
        _zero_channels(tensors, [channel])
        if not keeps_accuracy():
            with torch.no_grad():
                for tensor, value in zip(tensors, saved):
                    tensor[channel] = value
            failures += 1
            if failures >= patience:
                break
            continue
        pruned.append(channel)
        if done is not None and done():
            break
    return pruned


def _last_layer(module):
    layers = _layers_or_error(module)
    convs = [layer for layer in layers if layer_kind(layer[1]) == "Conv2d"]
    return (convs or layers)[-1]


def _fine_prune(module, data: Dataset, config: RepairConfig) -> dict:
    """Prune the last convolution's least useful channels while clean accuracy on the repair
    data holds (within half the allowed drop), then fine-tune with them held at zero."""
    name, layer = _last_layer(module)
    sample = np.random.default_rng(config.seed).permutation(len(data.y))[:500]
    x, y = data.x[sample], data.y[sample]
    with frozen(module):
        unit = channel_tensors(module, name)
        effects = _ablation_effects(module, unit, x, _clean_margin(x, y))
        base = accuracy(module, x, y)
        order = np.argsort(-effects)  # highest margin left after removal = least useful
        pruned = _greedy_prune(module, unit, order[:int(config.max_pruned * len(order))],
                               lambda: accuracy(module, x, y) >=
                               base - config.max_accuracy_drop / 2, patience=1)
    zero = _zero_channels(unit, pruned) if pruned else None
    fine_tune(module, data, config, {}, keep_zero=[zero] if zero else None)
    return {"layer": name, "pruned_channels": len(pruned)}


def _prune_trigger_neurons(module, data: Dataset, stamps: dict, config: RepairConfig) -> dict:
    """Remove the last hidden layer's neurons the recovered triggers rely on, most reliant
    first (skipping any whose removal costs too much clean accuracy), until the triggers' success
    on the repair data is under 5%; then fine-tune with them held at zero."""
    name, layer = _layers_or_error(module)[-1]
    sample = np.random.default_rng(config.seed).permutation(len(data.y))[:500]
    x, y = data.x[sample], data.y[sample]
    clean = _clean_margin(x, y)

    def trigger_margin(m) -> float:

        total = 0.0
        for k, stamp in stamps.items():
            logits = m(as_tensor(stamp(x[y != k]), device_of(m))).cpu()
            total += float((logits[:, k] - logits.mean(1)).mean())
        return total
    with frozen(module):
        unit = channel_tensors(module, name)
        trigger_drop = trigger_margin(module) - _ablation_effects(module, unit, x,
                                                                  trigger_margin)
        clean_drop = clean(module) - _ablation_effects(module, unit, x, clean)
        order = np.argsort(-(trigger_drop - np.clip(clean_drop, 0, None)))
        base = accuracy(module, x, y)
        pruned = _greedy_prune(module, unit, order[:int(config.max_pruned * len(order))],
                               lambda: accuracy(module, x, y) >=
                               base - config.max_accuracy_drop, patience=5,
                               done=lambda: _attack_success(module, x, y, stamps) < 0.05)
    zero = _zero_channels(unit, pruned) if pruned else None
    fine_tune(module, data, config, {}, keep_zero=[zero] if zero else None)
    return {"layer": name, "pruned_channels": len(pruned)}
