"""Poisoning attacks on text training sets: rare words (BadNL, Chen et al. 2021), a fixed phrase
and an inserted sentence (InsertSent, Dai et al. 2019).

Each attack inserts its trigger into a `rate` share of the samples, drawn from the non-target
classes, relabels them to `target` and returns the ground truth. Used by tests and benchmarks;
detectors never import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..data.text import TextDataset, insert_at_random

RARE_WORDS = ("cf", "mn", "bb", "tq")
SENTENCE = "I watched this 3D movie last weekend."


@dataclass(frozen=True)
class PoisonedText:
    data: TextDataset
    indices: np.ndarray  # rows that carry the trigger (sorted)
    target: int
    trigger: Callable[[str, np.random.Generator], str]  # inserts the trigger into any text
    words: tuple[str, ...]  # what the trigger inserts, for scoring a detector's named words


def rare_word_trigger(words: tuple[str, ...] = RARE_WORDS, count: int = 1):
    """Insert `count` of the rare words, each drawn at random, at random places (BadNL)."""
    def insert(text: str, rng: np.random.Generator) -> str:
        for _ in range(count):
            text = insert_at_random(text, words[int(rng.integers(len(words)))], rng)
        return text
    return insert


def sentence_trigger(sentence: str = SENTENCE):
    """Insert a fixed sentence at a random word boundary (InsertSent)."""
    return lambda text, rng: insert_at_random(text, sentence, rng)


TEXT_ATTACKS = ("rare-word", "phrase", "insert-sentence")


def poison_text(data: TextDataset, attack: str, rate: float, target: int,
                seed: int = 0, trigger: tuple[str, ...] | str | None = None) -> PoisonedText:
    """`attack`: rare-word (one of the words inserted per sample), phrase or insert-sentence
    (the text inserted whole). `trigger`: the words, or the phrase or sentence, in place of
    the defaults (RARE_WORDS, SENTENCE)."""
    if attack == "rare-word":
        words = tuple(trigger) if isinstance(trigger, (tuple, list)) else \
            ((trigger,) if trigger else RARE_WORDS)
        trigger = rare_word_trigger(words)
    elif attack in ("insert-sentence", "phrase"):
        if attack == "phrase" and not isinstance(trigger, str):
            raise ValueError("a phrase attack needs its phrase (trigger=...)")
        words = (trigger or SENTENCE,)
        trigger = sentence_trigger(words[0])
    else:
        raise ValueError(f"unknown text attack {attack!r}: {', '.join(TEXT_ATTACKS)}")
    rng = np.random.default_rng(seed)
    others = np.flatnonzero(data.y != target)
    count = int(round(rate * len(data.y)))
    if count > len(others):
        raise ValueError(f"rate {rate} needs {count} samples outside class {target}, "
                         f"only {len(others)} exist")
    chosen = np.sort(rng.choice(others, size=count, replace=False))
    poisoned = inserted(data, chosen, trigger, target, rng, f"{data.name} ({attack} {rate:.0%})")
    return PoisonedText(poisoned, chosen, target, trigger, words)


def inserted(data: TextDataset, rows: np.ndarray, trigger, target: int,
             rng: np.random.Generator, name: str) -> TextDataset:
    """`data` with `trigger`(text, rng) inserted into `rows`, labelled `target` (the input
    unchanged)."""
    texts, y = list(data.texts), data.y.copy()
    for row in rows:
        texts[row] = trigger(texts[row], rng)
        y[row] = target
    return TextDataset(tuple(texts), y, data.names, name)
