"""Photographic negatives among colour images. An attack that blends its poisons with their own
negative (x -> (1 - s) x + s (1 - x), s >= 0.5) leaves no pattern shared by its poisons, no
jaggies and, with a dirty label, misfits a pretrained encoder reads as ordinary (a red team
found one on CIFAR-10 at 11.8%, success 0.98, that every other check missed: docs/redteam.md,
round ten). A photo has a polarity: light from above, dark shadows, skies brighter than ground.
A small CNN learns it from the set itself: half the set's images against their negatives, each
side given random contrast and brightness so that only polarity tells them apart; it scores the
other half (then the halves swap), so no image is scored by a model that saw it. A negative
scores near 1, a photo near 0; decide() names a class whose share at CUT stands out.

Measured on cifar10-5k splits (4,000 images; docs/redteam.md, round ten): the evasion's class
z 38, 428 of its 471 poisons at the cut; clean-label negatives at 5% z 49; full negatives at 5%
z 11, at 2% missed (z 7.8). Clean splits 0-5 and 10,000 clean images: no class (z <= 3.5);
eleven benign changes to half a class (low contrast, haze, grey copies, brighter, ...): none
(at most z 6.7, grey copies); the eleven poisoned sets of bench_natural.py: none.
"""

from __future__ import annotations

import numpy as np

CUT = 0.5  # P(negative) at or above which a sample is an outlier
SHARE = (0.55, 1.0)  # how far the learnt negatives are blended towards 1 - x
CONTRAST = (0.2, 1.0)  # random contrast (about the image's mean) of the jittered images
BRIGHTNESS = 0.2  # and random brightness, +/- this
EPOCHS = 12
MIN_STEPS = 150  # small sets: at least this many optimiser steps
WIDTH = 32


def negative_scores(x: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Each image's probability of being a negative, cross-fitted over two random halves."""
    from .features import TrainConfig, extract, train_proxy

    x = np.asarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    halves = (order[::2], order[1::2])
    scores = np.zeros(len(x))
    for train, test in (halves, halves[::-1]):
        if len(train) == 0 or len(test) == 0:
            continue
        images = x[train]
        negatives = _jitter(_negatives(images, rng), rng)
        photos = _jitter(images, rng)
        kept = rng.random(len(train)) < 0.5  # half the photos keep their own look
        photos[kept] = images[kept]
        batches = -(-len(train) * 2 // 128)
        config = TrainConfig(epochs=max(EPOCHS, -(-MIN_STEPS // batches)), seed=seed,
                             width=WIDTH)
        model = train_proxy(np.concatenate([photos, negatives]),
                            np.r_[np.zeros(len(train), int), np.ones(len(train), int)],
                            config, what="the negatives' CNN")
        logits = extract(model, x[test])[1]
        scores[test] = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))
    return scores


def _negatives(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image blended with its negative by a random share."""
    share = rng.uniform(*SHARE, (len(images), 1, 1, 1)).astype(np.float32)
    return share + (1 - 2 * share) * images


def _jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image given a random contrast about its mean and a random brightness."""
    n = len(x)
    contrast = rng.uniform(*CONTRAST, (n, 1, 1, 1)).astype(np.float32)
    brightness = rng.uniform(-BRIGHTNESS, BRIGHTNESS, (n, 1, 1, 1)).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip(mean + contrast * (x - mean) + brightness, 0, 1).astype(np.float32)
