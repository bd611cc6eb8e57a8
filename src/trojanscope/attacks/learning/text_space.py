"""The text side of the learning attacker's space: one text-poisoning attack per point.

A point is a vector in [-1, 1]^DIMENSIONS; against a text set it decodes into a
`TextAttackConfig` that names its trigger words, so the JSON replays the attack on its own
(`trojanscope attack poison --config`). The axes:

    kind       phrase (a variant's words inserted together, at `position`) or words (each
               word inserted at its own random place, the trigger spread over the text)
    rarity     how rare the trigger words are in the set: 0 its most common words, 1 words it
               never uses (made-up tokens, as BadNL's "cf"); in between, a document frequency
               on a log scale
    length     words per variant (1-4)
    variants   how many interchangeable forms the trigger takes (1-32, log scale), each its own
               words of the same rarity: a paraphrase set. Each poison carries one form; the
               model learns them all, while every form has only its share of the carriers
    position   where a phrase goes: 0 before the first word, 1 after the last
    rate       the poisoned share of the training set (log scale, as for images)
    label      dirty (other classes' texts, relabelled to the target) or clean (the target's
               own texts, labels kept)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from ...data.text import TextDataset
from ...data.text_triggers import tokens
from ..text_poison import PoisonedText, inserted
from .entries import check_seed_and_target, checked

KINDS = ("phrase", "words")
AXES = ("kind", "rarity", "length", "variants", "position", "rate", "label")
DIMENSIONS = len(AXES)
RATES = (0.005, 0.15)   # as the image space's
MAX_LENGTH = 4
MAX_VARIANTS = 32
NEAREST = 40            # words drawn among this many of the asked document frequency
LETTERS = "bcdfghjklmnpqrstvwxz"


@dataclass(frozen=True)
class TextAttackConfig:
    kind: str
    variants: tuple[tuple[str, ...], ...]  # the trigger's forms, each its words
    position: float    # 0 start .. 1 end (a phrase)
    rate: float
    label: str         # "dirty" or "clean"
    target: int = 0
    seed: int = 0      # which texts are poisoned, which form each carries, where words go
    rarity: float = 0.0  # the axis the words were drawn at (a record; the words decide)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown text attack kind {self.kind!r}: one of "
                             f"{', '.join(KINDS)}")
        if not self.variants or any(not form or any(not isinstance(w, str) or not w.strip()
                                                    for w in form) for form in self.variants):
            raise ValueError("a text attack needs at least one form of at least one word")
        if self.label not in ("dirty", "clean"):
            raise ValueError(f"label must be 'dirty' or 'clean', not {self.label!r}")
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be between 0 and 1, not {self.rate}")
        for axis in ("position", "rarity"):
            if not 0 <= getattr(self, axis) <= 1:  # NaN fails too
                raise ValueError(f"{axis} must be between 0 and 1, not {getattr(self, axis)}")
        check_seed_and_target(self)

    def as_dict(self) -> dict:
        entry = asdict(self)
        entry["variants"] = [list(form) for form in self.variants]
        return entry

    @classmethod
    def from_dict(cls, entry: dict) -> "TextAttackConfig":
        """A configuration as `as_dict` writes it."""
        checked(cls, entry, "text attack configuration")
        forms = entry["variants"]
        if not isinstance(forms, list) or not all(
                isinstance(form, list) and all(isinstance(w, str) for w in form)
                for form in forms):
            raise ValueError("text attack configuration: variants must be lists of words")
        return cls(**{**entry, "variants": tuple(tuple(form) for form in forms)})

    def trigger(self):
        """The function that inserts one of the trigger's forms into a text:
        insert(text, rng) -> text."""
        def insert(text: str, rng: np.random.Generator) -> str:
            form = self.variants[int(rng.integers(len(self.variants)))]
            words = text.split()
            if self.kind == "phrase":
                at = int(round(self.position * len(words)))
                return " ".join(words[:at] + list(form) + words[at:])
            for word in form:
                at = int(rng.integers(0, len(words) + 1))
                words.insert(at, word)
            return " ".join(words)
        return insert

    def poison(self, data: TextDataset) -> PoisonedText:
        """The training set poisoned by this attack (the input unchanged)."""
        rng = np.random.default_rng(self.seed)
        clean = self.label == "clean"
        pool = np.flatnonzero((data.y == self.target) if clean else (data.y != self.target))
        count = min(max(1, int(round(self.rate * len(data.y)))),
                    int(0.9 * len(pool)) if clean else len(pool))
        if count < 1:
            raise ValueError(f"{data.name}: no text to poison (class {self.target} "
                             f"{'has too few texts' if clean else 'is every text'})")
        chosen = np.sort(rng.choice(pool, size=count, replace=False))
        insert = self.trigger()
        poisoned = inserted(data, chosen, insert, self.target, rng,
                            f"{data.name} ({self.kind} trigger {self.rate:.1%})")
        return PoisonedText(poisoned, chosen, self.target, insert,
                            tuple(" ".join(form) for form in self.variants))


class TextSpace:
    """Decodes points against one text set: its words, by how many texts use each."""

    def __init__(self, data: TextDataset):
        counts = Counter(w for text in data.texts for w in set(tokens(text)))
        words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                 if w.isalpha() and len(w) > 1]
        if not words:
            raise ValueError(f"{data.name}: no words to draw a trigger from")
        self.words = words
        self.frequency = np.array([counts[w] for w in words], dtype=np.float64)
        self.known = set(counts)

    def decode(self, point, target: int = 0, seed: int = 0) -> TextAttackConfig:
        """The attack at `point` (DIMENSIONS numbers in [-1, 1]; outside values clipped)."""
        u = (np.clip(np.asarray(point, dtype=np.float64).reshape(-1), -1, 1) + 1) / 2
        if u.size != DIMENSIONS:
            raise ValueError(f"a point of the text attack space has {DIMENSIONS} numbers, "
                             f"not {u.size}")
        at = dict(zip(AXES, u))
        kind = KINDS[min(int(at["kind"] * len(KINDS)), len(KINDS) - 1)]
        length = 1 + min(int(at["length"] * MAX_LENGTH), MAX_LENGTH - 1)
        variants = int(round(np.exp(at["variants"] * np.log(MAX_VARIANTS))))
        rate = float(np.exp(np.log(RATES[0]) + at["rate"] * np.log(RATES[1] / RATES[0])))
        rarity = round(float(at["rarity"]), 4)
        drawn = self.draw(rarity, length * variants, np.random.default_rng(seed))
        forms = tuple(tuple(drawn[k * length:(k + 1) * length]) for k in range(variants))
        return TextAttackConfig(kind=kind, variants=forms,
                                position=round(float(at["position"]), 4),
                                rate=round(rate, 4),
                                label="clean" if at["label"] >= 0.5 else "dirty",
                                target=target, seed=seed, rarity=rarity)

    def draw(self, rarity: float, count: int, rng: np.random.Generator) -> list[str]:
        """`count` distinct words at `rarity`: the set's words whose document frequency is
        nearest (max + 1) ** (1 - rarity) - 1 (log scale), or made-up words the set never
        uses where that is below one text."""
        wanted = (self.frequency[0] + 1) ** (1 - rarity) - 1
        if wanted < 1:
            return self._made_up(count, rng)
        distance = np.abs(np.log(self.frequency) - np.log(wanted))
        order = np.lexsort((rng.random(distance.size), distance))  # ties drawn at random
        near = order[:max(NEAREST, count)]
        return [self.words[k] for k in rng.choice(near, size=min(count, near.size),
                                                  replace=False)] + \
            self._made_up(max(0, count - near.size), rng)

    def _made_up(self, count: int, rng: np.random.Generator) -> list[str]:
        made: list[str] = []
        tried = 0
        while len(made) < count:  # two letters, longer once two-letter words run short
            size = 2 + tried // len(LETTERS) ** 2
            word = "".join(LETTERS[k] for k in rng.integers(len(LETTERS), size=size))
            tried += 1
            if word not in self.known and word not in made:
                made.append(word)
        return made
