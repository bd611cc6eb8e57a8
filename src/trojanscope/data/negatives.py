"""Photographic negatives among colour images. An attack that blends its poisons with their own
negative (x -> (1 - s) x + s (1 - x), s >= 0.5) leaves no pattern shared by its poisons, no
jaggies and, with a dirty label, misfits a pretrained encoder reads as ordinary (the learning
attacker found one on CIFAR-10 at 11.8%, success 0.98, that every other check missed:
docs/redteam.md, round nine). A photo has a polarity: light from above, dark shadows, skies
brighter than ground. A small CNN learns it from the set itself: half the set's images against
their negatives, the negatives and half the photos given random contrast and brightness so
that those alone do not part them; it scores the other half (then the halves swap), so no
image is scored by a model that saw it. A negative scores near 1, a photo near 0; decide()
names a class whose share at CUT stands out.

It learns whole-image negatives in the image's own channel order, not polarity as such: a
negative with its channels reversed, half an image inverted, or luminance inverted alone pass
it, and a class most of whose photos have their channels reversed can be named (a red team;
measured in docs/redteam.md, round ten, and benchmarks/bench_polarity_check.py).
"""

from __future__ import annotations

import hashlib

import numpy as np

CUT = 0.5  # P(negative) at or above which a sample is an outlier
SHARE = (0.55, 1.0)  # how far the learnt negatives are blended towards 1 - x
CONTRAST = (0.2, 1.0)  # random contrast (about the image's mean) of the jittered images
BRIGHTNESS = 0.2  # and random brightness, +/- this
EPOCHS = 12
MIN_STEPS = 150  # small sets: at least this many optimiser steps
WIDTH = 32


def settings() -> dict:
    """The check's effective settings, for the report's config."""
    return {"cut": CUT, "share": list(SHARE), "contrast": list(CONTRAST),
            "brightness": BRIGHTNESS, "epochs": EPOCHS, "min_steps": MIN_STEPS, "width": WIDTH}


def negative_scores(x: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Each image's probability of being a negative, cross-fitted over two halves chosen by
    content (a hash of each image's bytes): the same images in any order get the same scores,
    and copies of an image fall in the same half. Fewer than two images, or a half left empty:
    zeros (nothing to learn from)."""
    from .features import TrainConfig, extract, probability, train_proxy

    x = np.asarray(x, dtype=np.float32)
    scores = np.zeros(len(x))
    keys = _content_keys(x)
    order = np.argsort(keys, kind="stable")
    odd = (keys[order] & 1).astype(bool)
    halves = (order[~odd], order[odd])
    if min(map(len, halves)) == 0:
        return scores
    rng = np.random.default_rng(seed)
    for train, test in (halves, halves[::-1]):
        images = x[train]
        negatives = _jitter(_negatives(images, rng), rng)
        photos = _jitter(images, rng)
        kept = rng.random(len(train)) < 0.5  # half the photos keep their own look
        photos[kept] = images[kept]
        batches = -(-len(train) * 2 // TrainConfig.batch_size)
        config = TrainConfig(epochs=max(EPOCHS, -(-MIN_STEPS // batches)), seed=seed,
                             width=WIDTH)
        model = train_proxy(np.concatenate([photos, negatives]),
                            np.r_[np.zeros(len(train), int), np.ones(len(train), int)],
                            config, what="the negatives' CNN")
        scores[test] = probability(extract(model, x[test])[1])
    return scores


def _content_keys(x: np.ndarray) -> np.ndarray:
    """A 64-bit key per image from its bytes."""
    return np.array([int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(),
                                    "little") for image in x], dtype=np.uint64)


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
