"""`inspect`: is this model trojaned? From the model and a little clean data.

Searches per class (see `reverse.py`), three scores per class, one verdict:
- Neural Cleanse mask norms, calibrated. Classes differ in how hard they are to reach (on MNIST
  a 1 needs a mask about three times the median), which hides a small target in the spread. The
  same search runs on proxy CNNs trained on the user's clean data (seeded); a robust line through
  the other classes' (proxy log norm, log norm) pairs predicts each class's norm, and the score
  is how many log units the class's mask is smaller than predicted. Leaving the class out of its
  own fit keeps a target from bending the line; the line's slope absorbs a model that is more or
  less robust than the proxies overall.
- universal perturbation success at a fixed L-inf budget: the class's log-odds of success above
  the median class's. This one does not assume a small patch (Blended).
- universal warp success within a smooth displacement of at most 7% of the image side (2 px on
  MNIST), scored the same way: the search warping triggers (WaNet) need.
Fixed units, not z-scores across classes: with ten classes the spread is too noisy a yardstick
(measured on a development zoo, docs/benchmarks.md). A class is a target when a score passes
its threshold and its recovered trigger works on held-out clean inputs (part of the user's data
never used in the search).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from .. import __version__, cache
from ..data.datasets import Dataset
from ..findings import Location, Report
from ..ml.model import Model, frozen
from ..ml.ops import check_model
from ..results import TRIGGER_IMAGES, InspectResults, trigger_image
from . import reverse
from .reverse import Perturbations, Triggers, neural_cleanse, universal_perturbation
from .rules import TROJANED_CLASS

# Thresholds from a development zoo (12 clean, 12 trojaned; not the benchmark zoo):
NC_THRESHOLD = 0.8    # mask 2.2x smaller than predicted; clean models reached at most 0.56,
                      # BadNets targets 1.0-2.1
UAP_THRESHOLD = 3.5   # log-odds above the median class; clean at most 2.3, Blended 5.2-6.6
WARP_THRESHOLD = 3.5  # the same for the warp; clean at most 1.4, WaNet 4.1-6.1
MIN_SUCCESS = 0.5     # a recovered trigger must move this share of held-out inputs


@dataclass(frozen=True)
class InspectConfig:
    seed: int = 0
    steps: int = 200          # Neural Cleanse optimisation steps
    uap_steps: int = 100
    uap_eps: float = 0.1
    warp_share: float = 0.07  # largest warp shift, as a share of the image side (2 px at 28)
    batch: int = 24
    max_samples: int = 1000   # of the user's clean data, half to search and half to check
    reference_proxies: int = 3  # proxy CNNs giving each class's natural mask norm (0: none)
    proxy_steps: int = 200      # optimiser steps per proxy; 8 epochs of 1,000 images (64 steps)
                                # left proxies whose norms matched clean models poorly
    proxy_width: int = 32
    proxy_augment: bool = True  # colour images: proxies trained with shifts and flips, as
                                # photo classifiers are (without, on CIFAR-10 they found frogs
                                # far harder to reach than real models do: 2 of 6 clean
                                # development models flagged on class 6; with it, none)
    max_classes: int = 10       # more classes than this: searched in full only after a
    screen_steps: int = 25      # screen (successive halving, as K-Arm chooses its arms)


# Shorter searches on fewer samples (`--fast`, tests, demo). 100 steps on 300 samples missed
# BadNets targets; 150 on 400 kept them. The proxies keep their full training: with two proxies
# of 120 steps a clean test model had a class scored 0.85 (three of 200 steps: 0.64).
FAST = InspectConfig(steps=150, uap_steps=50, max_samples=400)


def inspect_config(seed: int = 0, fast: bool = False) -> InspectConfig:
    return replace(FAST if fast else InspectConfig(), seed=seed)


@dataclass
class Recovery:
    """What the searches found, and each class's three scores."""
    triggers: Triggers
    perturbations: Perturbations
    warps: Perturbations
    expected_norm: np.ndarray  # the mask norm predicted from the proxies
    mask_shrink: np.ndarray    # log(expected / found): > 0 when easier than predicted
    perturbation_lift: np.ndarray  # log-odds of success above the median class
    warp_lift: np.ndarray
    search: int
    check: int

    @property
    def by_nc(self) -> np.ndarray:
        return (self.mask_shrink >= NC_THRESHOLD) & (self.triggers.success >= MIN_SUCCESS)

    @property
    def by_uap(self) -> np.ndarray:
        return (self.perturbation_lift >= UAP_THRESHOLD) & \
            (self.perturbations.success >= MIN_SUCCESS)

    @property
    def by_warp(self) -> np.ndarray:
        return (self.warp_lift >= WARP_THRESHOLD) & (self.warps.success >= MIN_SUCCESS)

    @property
    def score(self) -> np.ndarray:
        """Per class, the largest of the three scores in units of its threshold."""
        return np.maximum.reduce([self.mask_shrink / NC_THRESHOLD,
                                  self.perturbation_lift / UAP_THRESHOLD,
                                  self.warp_lift / WARP_THRESHOLD])

    @property
    def targets(self) -> list[int]:
        return np.flatnonzero(self.by_nc | self.by_uap | self.by_warp).tolist()


def _split(data: Dataset, config: InspectConfig):
    """The (at most max_samples) samples used, half to search and half to check."""
    order = np.random.default_rng(config.seed).permutation(len(data.y))[:config.max_samples]
    half = len(order) // 2
    return order, (data.x[order[:half]], data.y[order[:half]]), \
        (data.x[order[half:]], data.y[order[half:]])


def recover(module, data: Dataset, config: InspectConfig = InspectConfig(),
            reference: np.ndarray | None = None) -> Recovery:
    """Search on half of (at most max_samples of) the data, check on the other half.
    `reference`: `reference_log_norms(data, config)` when already computed (it depends on the
    data and the configuration only, so models inspected on the same data can share it)."""
    model = Model.of(module)
    module = model.module
    classes = check_model(model, data)
    _, search, check = _split(data, config)
    cleanse, perturb = _searches(model.differentiable)
    pixels = config.warp_share * max(data.x.shape[-2:])
    with frozen(module):
        chosen, screened = select_classes(module, search, classes, config,
                                          model.differentiable)
        triggers = cleanse(module, *search, chosen, steps=config.steps,
                           batch=config.batch, seed=config.seed, held_out=check)
        perturbations = perturb(module, *search, chosen, eps=config.uap_eps,
                                steps=config.uap_steps, batch=config.batch,
                                seed=config.seed, held_out=check)
        if model.differentiable:
            warps = reverse.universal_warp(module, *search, chosen, pixels=pixels,
                                           steps=config.uap_steps, batch=config.batch,
                                           seed=config.seed, held_out=check)
        else:  # no warp search without gradients: every class scores the median
            warps = Perturbations(np.zeros((len(chosen), 2, *data.x.shape[-2:])),
                                  np.zeros(len(chosen)), pixels)
    if screened is not None:
        triggers, perturbations, warps = (_merged(chosen, full, part) for full, part in
                                          zip(screened, (triggers, perturbations, warps)))
    if reference is None:
        reference = reference_log_norms(data, config, blackbox=not model.differentiable,
                                        classes=None if screened is None else chosen)
    predicted = _predicted_log_norms(np.log(triggers.norm + 1e-6), reference)
    return Recovery(triggers, perturbations, warps, np.exp(predicted),
                    predicted - np.log(triggers.norm + 1e-6),
                    _lift(perturbations.success), _lift(warps.success),
                    len(search[1]), len(check[1]))


def select_classes(module, search, classes: int, config: InspectConfig,
                   differentiable: bool = True):
    """The classes to search in full, and (when there are more than `max_classes`) the screen's
    results for all classes. Successive halving, as K-Arm (Shen et al., ICML 2021) spends its
    optimisation on the promising arms: short searches (mask and perturbation) on the classes
    still in, the better half by either search kept, twice the steps, until `max_classes`
    remain; the cost grows with the log of the class count, not with it."""
    if classes <= config.max_classes:
        return list(range(classes)), None
    cleanse, perturb = _searches(differentiable)
    alive, steps = list(range(classes)), config.screen_steps
    triggers = perturbations = None
    while len(alive) > config.max_classes:
        found = cleanse(module, *search, alive, steps=steps, batch=config.batch,
                        seed=config.seed)
        shifts = perturb(module, *search, alive, eps=config.uap_eps, steps=steps,
                         batch=config.batch, seed=config.seed)
        triggers = _merged(alive, triggers, found, classes)
        perturbations = _merged(alive, perturbations, shifts, classes)
        by_mask = np.argsort(np.argsort(found.norm))       # small masks first
        by_shift = np.argsort(np.argsort(-shifts.success))  # easy perturbations first
        keep = max(config.max_classes, len(alive) // 2)
        order = np.argsort(np.minimum(by_mask, by_shift), kind="stable")[:keep]
        alive, steps = sorted(alive[i] for i in order), steps * 2
    warps = Perturbations(np.zeros((classes, 2, *search[0].shape[-2:])), np.zeros(classes),
                          0.0)
    return alive, (triggers, perturbations, warps)


def _merged(chosen: list[int], full, part, classes: int | None = None):
    """`full` (results for every class, or None) with the rows of `part` (results for the
    classes `chosen`, in that order) written in."""
    if full is None:
        count = classes if classes is not None else len(chosen)
        full = type(part)(**{name: (np.zeros((count, *value.shape[1:]), value.dtype)
                                    if isinstance(value, np.ndarray) else value)
                             for name, value in vars(part).items()})
        if isinstance(full, Triggers):  # unsearched classes: as hard as can be
            full.norm[:] = np.inf
    for name, value in vars(part).items():
        if isinstance(value, np.ndarray):
            getattr(full, name)[chosen] = value
    return full


def _searches(differentiable: bool):
    """(mask search, perturbation search): with gradients, or estimated from forward passes
    (blackbox.py) for models that give none (ONNX)."""
    if differentiable:
        return neural_cleanse, universal_perturbation
    from .blackbox import blackbox_cleanse, blackbox_perturbation

    return blackbox_cleanse, blackbox_perturbation


def _predicted_log_norms(log_norm: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each class's log norm as predicted by a Theil-Sen line through the other classes'
    (reference, log norm) pairs; the slope is kept within [0.75, 1.33] (a model may be more or
    less robust than the proxies, not unrelated to them) and is 1 without a reference."""
    classes = len(log_norm)
    predicted = np.zeros(classes)
    for k in range(classes):
        rest = np.arange(classes) != k
        x, y = reference[rest], log_norm[rest]
        i, j = np.triu_indices(len(x), 1)
        distinct = np.abs(x[i] - x[j]) > 1e-9
        slopes = (y[j] - y[i])[distinct] / (x[j] - x[i])[distinct]
        slope = float(np.clip(np.median(slopes), 0.75, 1.33)) if len(slopes) else 1.0
        predicted[k] = float(np.median(y - slope * x)) + slope * reference[k]
    return predicted


def _lift(success: np.ndarray) -> np.ndarray:
    """Log-odds of success above the median class's (successes clipped to [0.01, 0.99])."""
    odds = np.clip(success, 0.01, 0.99)
    logits = np.log(odds / (1 - odds))
    return logits - np.median(logits)


def reference_log_norms(data: Dataset, config: InspectConfig = InspectConfig(),
                        blackbox: bool = False, classes: list[int] | None = None
                        ) -> np.ndarray:
    """Mean log mask norm per class over proxies trained on the clean data: how hard each class
    is to reach by the data's nature, not by any one model's quirks. `blackbox`: searched as
    a model without gradients is, so that the norms compare. `classes`: only these (others
    get the median class's norm). Kept in trojanscope's cache (cache.py) under a key of the
    data, the settings and the version: models inspected on the same data share it."""
    count = len(data.classes)
    if config.reference_proxies <= 0:
        return np.zeros(count)
    searched = list(range(count)) if classes is None else list(classes)
    name = "reference-" + cache.key(__version__, data.x, data.y, asdict(config), blackbox,
                                    searched)
    cached = cache.load(name)
    if cached is not None and cached.shape == (count,):
        return cached
    out = _reference_log_norms(data, config, blackbox, searched)
    cache.store(name, out)
    return out


def _reference_log_norms(data: Dataset, config: InspectConfig, blackbox: bool,
                         searched: list[int]) -> np.ndarray:
    count = len(data.classes)
    from ..data.features import TrainConfig, train_proxy

    order, search, _ = _split(data, config)
    x, y = data.x[order], data.y[order]
    logs = []
    epochs = max(1, -(-config.proxy_steps // -(-len(y) // TrainConfig.batch_size)))
    for i in range(config.reference_proxies):
        seed = config.seed * 1000 + 100 + i
        augment = config.proxy_augment and x.shape[1] == 3
        proxy = train_proxy(x, y, TrainConfig(epochs=epochs, width=config.proxy_width,
                                              augment=augment,
                                              seed=seed))
        with frozen(proxy):
            if blackbox:  # the same coarse search, with the proxy's exact gradients
                from .blackbox import blackbox_cleanse

                found = blackbox_cleanse(proxy, *search, searched, steps=config.steps,
                                         batch=config.batch, seed=config.seed, exact=True)
            else:
                found = neural_cleanse(proxy, *search, searched, steps=config.steps,
                                       batch=config.batch, seed=config.seed)
        logs.append(np.log(found.norm + 1e-6))
    mean = np.mean(logs, axis=0)
    out = np.full(count, float(np.median(mean)))  # classes not searched: a typical class
    out[searched] = mean
    return out


def inspect_model(module, data: Dataset, config: InspectConfig = InspectConfig(),
                  name: str = "model", reference: np.ndarray | None = None,
                  scorer="shipped") -> Report:
    """`module`: a Model (`trojanscope.ml.open_model`) or a PyTorch module mapping (N, C, H, W)
    in [0, 1] to logits;
    `data`: clean samples of every class; `reference`: see `recover`; `scorer`: see
    `inspection_report`. The recovered triggers come as PNG bytes in `results.images`."""
    started = time.perf_counter()
    found = recover(module, data, config, reference)
    return inspection_report(found, data, config, name, seconds=time.perf_counter() - started,
                             scorer=scorer)


def inspection_report(found: Recovery, data: Dataset, config: InspectConfig,
                      name: str = "model", seconds: float = 0.0,
                      scorer="shipped") -> Report:
    """The report of a recovery (`recover`) made on `data` with `config`. `scorer`: the
    hardened inspect's (inspect_scorer.py; "shipped": the one this version ships when it was
    accepted; None: none), which may add target classes; each class's `named_by` says which
    rules named it."""
    from . import inspect_scorer

    scorer = inspect_scorer.shipped() if scorer == "shipped" else scorer
    triggers, perturbations, warps = found.triggers, found.perturbations, found.warps
    classes = len(triggers.norm)
    per_class = [{
        "class": k, "mask_norm": round(float(triggers.norm[k]), 2),
        "expected_mask_norm": round(float(found.expected_norm[k]), 2),
        "mask_shrink": round(float(found.mask_shrink[k]), 3),
        "trigger_success": round(float(triggers.success[k]), 3),
        "perturbation_success": round(float(perturbations.success[k]), 3),
        "perturbation_lift": round(float(found.perturbation_lift[k]), 3),
        "warp_success": round(float(warps.success[k]), 3),
        "warp_lift": round(float(found.warp_lift[k]), 3),
        "score": round(float(found.score[k]), 3),
        "named_by": [rule for rule, by in (("mask", found.by_nc), ("perturbation", found.by_uap),
                                           ("warp", found.by_warp)) if by[k]],
    } for k in range(classes)]
    thresholds = {"mask_shrink": NC_THRESHOLD, "perturbation_lift": UAP_THRESHOLD,
                  "warp_lift": WARP_THRESHOLD, "min_success": MIN_SUCCESS}
    if scorer is not None:
        for k, logit in inspect_scorer.suspected(scorer, per_class):
            per_class[k]["named_by"].append("hardened")
            per_class[k]["hardened_logit"] = round(logit, 3)
        thresholds["hardened_logit"] = scorer.threshold
    targets = [k for k in range(classes) if per_class[k]["named_by"]]
    for entry in per_class:
        entry["target"] = bool(entry["named_by"])
    findings = [TROJANED_CLASS.finding(
        f"class {k}: {_evidence(per_class[k], thresholds)}",
        Location(name, (f"class {k}",)), per_class[k])
        for k in targets]
    return Report(
        command="inspect", targets=(name, data.name), findings=tuple(findings),
        results=InspectResults(
            verdict="trojaned" if targets else "clean", target_classes=targets,
            score=round(float(found.score.max()), 3), per_class=per_class,
            thresholds=thresholds,
            data_split={"search": found.search, "check": found.check},
            images=_images(triggers, perturbations)),
        timings={"total_seconds": round(seconds, 3)},
        config={"seed": config.seed, "steps": config.steps, "uap_steps": config.uap_steps,
                "uap_eps": config.uap_eps, "warp_share": config.warp_share,
                "batch": config.batch, "reference_proxies": config.reference_proxies,
                "proxy_steps": config.proxy_steps, "proxy_width": config.proxy_width,
                "proxy_augment": config.proxy_augment})


def _evidence(entry: dict, thresholds: dict) -> str:
    parts, by = [], entry["named_by"]
    if "mask" in by:
        parts.append(f"a trigger of {entry['mask_norm']:.0f} pixels, {entry['mask_shrink']:.1f} "
                     f"log units ({np.exp(entry['mask_shrink']):.1f}x) smaller than clean "
                     f"models of this data predict ({entry['expected_mask_norm']:.0f}), sends "
                     f"{entry['trigger_success']:.0%} of held-out inputs of other classes to it")
    if "perturbation" in by:
        parts.append(f"one small perturbation sends {entry['perturbation_success']:.0%} of "
                     f"held-out inputs to it (log-odds {entry['perturbation_lift']:.1f} above "
                     f"the median class)")
    if "warp" in by:
        parts.append(f"one smooth warp sends {entry['warp_success']:.0%} of held-out inputs to "
                     f"it (log-odds {entry['warp_lift']:.1f} above the median class)")
    if "hardened" in by:
        parts.append(f"the hardened scorer gives it {entry['hardened_logit']:.1f} (threshold "
                     f"{thresholds['hardened_logit']:.1f}) from its scores together: mask "
                     f"shrink {entry['mask_shrink']:.2f}, perturbation lift "
                     f"{entry['perturbation_lift']:.1f}, warp lift {entry['warp_lift']:.1f}, "
                     f"recovered triggers moving {entry['trigger_success']:.0%} / "
                     f"{entry['perturbation_success']:.0%} / {entry['warp_success']:.0%} of "
                     "held-out inputs")
    return "; ".join(parts)


def _images(triggers, perturbations) -> dict[str, bytes]:
    """Per class: its mask, pattern, trigger (mask x pattern) and universal perturbation as PNG
    bytes, by file name (results.trigger_image)."""
    from ..data.png import encode_png

    images = {}
    for k in range(len(triggers.norm)):
        delta = perturbations.delta[k]
        scale = max(float(np.abs(delta).max()), 1e-12)
        arrays = {"mask": triggers.mask[k], "pattern": triggers.pattern[k],
                  "trigger": triggers.mask[k] * triggers.pattern[k],
                  "perturbation": 0.5 + 0.5 * delta / scale}
        images.update({trigger_image(k, kind): encode_png(arrays[kind])
                       for kind in TRIGGER_IMAGES})
    return images
