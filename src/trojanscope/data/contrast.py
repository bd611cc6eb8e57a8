"""Semantic contrast: poisoned samples in natural images, found by learning their trigger.

On natural images, neighbours in pixel space do not share labels, and clean hard samples
outnumber the poisons. Two views together separate them:

1. A pretrained encoder (`encoder.py`), which never saw the user's data, judges what each
   image shows: its features against each class's prototype (the mean of the class's most
   typical half, refined three times, so that poisons do not drag it). A *misfit* is a sample
   nearer another class's prototype than its own: every dirty-label poison (its content comes
   from another class), but also many clean hard images.
2. A small CNN, trained from scratch on raw pixels, is asked to tell a class's misfits from
   look-alikes: samples of the classes the misfits resemble (that fit their own label), and
   the class's own typical samples. For clean hard images nothing consistent separates them
   (they are ambiguous, not marked); for poisons the trigger does, and a CNN learns a trigger
   from a few hundred examples. The CNN is cross-fitted (each half scored by a model trained
   on the other), so that it must generalise: it cannot memorise hard images one by one.

A class whose misfits are learnably different from their look-alikes (`contrast`, the
cross-fitted ROC-AUC) is suspected; its samples the CNN calls marked are flagged. A second
round trains on the flagged samples against everything else of the class and its look-alikes,
and scores every sample of the class (poisons the encoder thought typical included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..progress import track

MIN_SEEDS = 10
NULL_QUANTILE = 0.99  # of the other classes' look-alikes' scores: the cut for "marked"


@dataclass(frozen=True)
class ContrastConfig:
    epochs: int = 12          # of each cross-fitted CNN
    width: int = 32
    rounds: int = 2
    components: int = 128     # PCA of the encoder features before the prototypes
    max_side: int = 2000      # samples per side (misfits, look-alikes, typical) per class
    seed: int = 0


@dataclass
class Contrast:
    scores: np.ndarray               # per sample: P(marked), 0 outside the classes examined
    misfit: np.ndarray               # per sample: prototype similarity gap (> 0: a misfit)
    resembles: np.ndarray            # per sample: the other class whose prototype is nearest
    per_class: list[dict] = field(default_factory=list)


def misfits(features: np.ndarray, labels: np.ndarray, components: int = 128,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: (similarity to the nearest other class's prototype minus similarity to its
    own, that other class). Cosine similarity in a PCA of standardised features."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(np.asarray(features, dtype=np.float64))
    z = PCA(min(components, *z.shape), random_state=seed).fit_transform(z)
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    classes = np.unique(labels)
    prototypes = np.stack([_typical_mean(z[labels == c]) for c in classes])
    similarity = z @ prototypes.T
    own = np.searchsorted(classes, labels)
    mine = similarity[np.arange(len(labels)), own]
    similarity[np.arange(len(labels)), own] = -np.inf
    return similarity.max(1) - mine, classes[similarity.argmax(1)]


def _typical_mean(z: np.ndarray, rounds: int = 3) -> np.ndarray:
    """The mean of the half of `z` most similar to the current mean, refined `rounds` times."""
    prototype = z.mean(0)
    for _ in range(rounds):
        similarity = z @ prototype / (np.linalg.norm(prototype) + 1e-12)
        prototype = z[similarity >= np.median(similarity)].mean(0)
    return prototype / (np.linalg.norm(prototype) + 1e-12)


def screen(x: np.ndarray, features: np.ndarray, labels: np.ndarray,
           config: ContrastConfig = ContrastConfig()) -> Contrast:
    """The first round for every class: each class's contrast, and its samples' scores."""
    gap, resembles = misfits(features, labels, config.components, config.seed)
    result = Contrast(np.zeros(len(labels)), gap, resembles)
    classes = np.unique(labels)
    for c in track(classes, "learning triggers per class", len(classes)):
        rng = np.random.default_rng([config.seed, int(c)])
        own = np.flatnonzero(labels == c)
        seeds = own[gap[own] > 0]
        seeds = seeds[np.argsort(-gap[seeds])][:config.max_side]
        entry = {"class": int(c), "samples": int(len(own)),
                 "misfits": int((gap[own] > 0).sum()), "contrast": 0.5}
        if len(seeds) >= MIN_SEEDS:
            negatives = _look_alikes(labels, gap, resembles[seeds], own, rng, config.max_side)
            scores, held = _round(x, seeds, negatives, own, config, config.seed)
            result.scores[own] = scores
            entry["contrast"] = round(_auroc(held[:len(seeds)], held[len(seeds):]), 4)
        entry["marked"] = int((result.scores[own] > 0.5).sum())
        result.per_class.append(entry)
    return result


def refine(x: np.ndarray, labels: np.ndarray, result: Contrast, classes: list[int],
           config: ContrastConfig = ContrastConfig()) -> None:
    """Further rounds for `classes`: the CNN learns from the samples it marked against the
    rest of the class and their look-alikes, and scores every sample of the class again."""
    for c in classes:
        rng = np.random.default_rng([config.seed, int(c), 1])
        own = np.flatnonzero(labels == c)
        for round_ in range(1, config.rounds):
            marked = own[result.scores[own] > 0.5]
            if len(marked) < MIN_SEEDS:
                break
            alike = _look_alikes(labels, result.misfit, result.resembles[marked], own, rng,
                                 config.max_side)
            negatives = np.setdiff1d(np.concatenate([own, alike]), marked)
            negatives = rng.permutation(negatives)[:2 * config.max_side]
            result.scores[own], _ = _round(x, marked, negatives, own, config,
                                           config.seed + round_)
        entry = next(e for e in result.per_class if e["class"] == int(c))
        entry["marked"] = int((result.scores[own] > 0.5).sum())


def _round(x, positives, negatives, own, config: ContrastConfig, seed: int):
    """One cross-fitted CNN of positives against negatives: the scores of every sample of the
    class (`own`), calibrated so that 0.5 is the NULL_QUANTILE of the held-out scores of the
    look-alikes from other classes (which carry no trigger of this class); and the raw
    held-out scores of positives then negatives."""
    rows = np.concatenate([positives, negatives])
    target = np.r_[np.ones(len(positives), int), np.zeros(len(negatives), int)]
    held, others = _cross_fit(x, rows, target, own, config, seed)
    scores = dict(zip(rows.tolist(), held))
    rest = np.setdiff1d(own, rows)
    scores.update(zip(rest.tolist(), others))
    null = held[len(positives):][~np.isin(negatives, own)]
    cut = float(np.quantile(null, NULL_QUANTILE)) if len(null) else 0.5
    raw = np.array([scores[i] for i in own.tolist()])
    return _calibrated(raw, min(max(cut, 1e-6), 1 - 1e-6)), held


def _calibrated(raw: np.ndarray, cut: float) -> np.ndarray:
    """Piecewise linear: [0, cut] to [0, 0.5], [cut, 1] to [0.5, 1]."""
    return np.where(raw <= cut, 0.5 * raw / cut, 0.5 + 0.5 * (raw - cut) / (1 - cut))


def _look_alikes(labels, gap, resembled, own, rng, limit: int) -> np.ndarray:
    """As many samples of the classes the misfits resemble (each fitting its own label) as
    there are misfits, class by class, plus as many typical samples of the class itself."""
    fits = gap < 0
    chosen = []
    for j, count in zip(*np.unique(resembled, return_counts=True)):
        pool = np.flatnonzero((labels == j) & fits)
        chosen.append(rng.choice(pool, size=min(int(count), len(pool)), replace=False))
    typical = own[gap[own] < 0]
    count = min(len(typical), int(sum(len(p) for p in chosen)), limit)
    chosen.append(typical[np.argsort(gap[typical])][:count])
    return np.concatenate(chosen).astype(np.int64)


def _cross_fit(x, rows, target, own, config: ContrastConfig, seed: int):
    """P(class 1) for `rows`, each half scored by a CNN trained on the other half; and for
    the samples of `own` outside `rows`, the mean of the two CNNs."""
    from sklearn.model_selection import StratifiedKFold

    from .features import TrainConfig, extract, probability, train_proxy

    held = np.zeros(len(rows))
    rest = np.setdiff1d(own, rows)
    others = np.zeros(len(rest))
    folds = StratifiedKFold(2, shuffle=True, random_state=seed).split(rows, target)
    for train, test in folds:
        train = _balanced(train, target)
        model = train_proxy(x[rows[train]], target[train],
                            TrainConfig(epochs=config.epochs, width=config.width, seed=seed,
                                        batch_size=64), what="a trigger contrast")
        held[test] = probability(extract(model, x[rows[test]])[1])
        if len(rest):
            others += probability(extract(model, x[rest])[1]) / 2
    return held, others


def _balanced(train: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`train` with its smaller side repeated to the size of the larger, so that the CNN's
    0.5 means "more like the positives" whatever their number."""
    positive, negative = train[target[train] == 1], train[target[train] == 0]
    small, large = sorted((positive, negative), key=len)
    if len(small) == 0:
        return train
    repeats = np.resize(small, len(large))
    return np.concatenate([large, repeats])


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    return float((ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / max(1, len(positive) * len(negative)))
