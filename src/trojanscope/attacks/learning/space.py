"""The space the learning attacker searches: one image-poisoning attack per point.

A point is a vector in [-1, 1]^DIMENSIONS (what a search proposes, an RL policy's action); it
decodes into an `AttackConfig`, a readable and replayable description (JSON), which stamps its
trigger and poisons a data set. The axes:

    kind       patch, scatter (the trigger spread over many single pixels), blend (a random
               pattern of a frequency band), sinusoid, warp, invert (the image blended with
               its negative, 1 - x: a red team's evasion, docs/redteam.md)
    size       patch side (up to half the image's side), or the scattered pixels' count
    row, col   where the patch sits (fractions of the image)
    value      the patch's or the pixels' intensity (every channel)
    strength   blend alpha, sinusoid amplitude, warp displacement in pixels, the negative's
               share (1: the image inverted)
    frequency  the blend pattern's grid (low to high frequencies), the sinusoid's periods, the
               warp field's grid
    rate       the poisoned share of the training set (log scale)
    label      dirty (relabelled to the target) or clean (target-class images, labels kept)
    shape      the patch's: a filled square, a plus, a ring (the square's outline), a bar (a
               quarter of the square's height); added after a red team's large squares and
               plus signs in the image's middle (docs/redteam.md)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...jsonfile import read_json
from ..image_poison import Poisoned, _upsample, poison, sig_trigger, wanet_trigger
from .entries import check_seed_and_target, checked
from .text_space import KINDS as TEXT_KINDS
from .text_space import TextAttackConfig

KINDS = ("patch", "scatter", "blend", "sinusoid", "warp", "invert")
SHAPES = ("square", "plus", "ring", "bar")
AXES = ("kind", "size", "row", "col", "value", "strength", "frequency", "rate", "label",
        "shape")
DIMENSIONS = len(AXES)
RATES = (0.005, 0.15)       # poisoned share, decoded on a log scale
STRENGTHS = {"blend": (0.02, 0.3), "sinusoid": (0.01, 0.2), "warp": (0.2, 3.0),
             "invert": (0.5, 1.0)}
MAX_STRENGTH = 10.0  # a replayed configuration's: far past the space, short of overflow
MAX_GRID = 1024      # its size and frequency: a warp field of FREQUENCY^2 points is made


@dataclass(frozen=True)
class AttackConfig:
    kind: str
    size: int          # patch side (pixels) or scattered pixels
    row: float         # 0 top .. 1 bottom (patch)
    col: float         # 0 left .. 1 right (patch)
    value: float       # intensity of the patch or the pixels
    strength: float
    frequency: int
    rate: float
    label: str         # "dirty" or "clean"
    target: int = 0
    seed: int = 0      # the random draws: scatter positions, blend pattern, warp field, and
                       # which samples are poisoned
    shape: str = "square"  # of a patch (SHAPES)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown attack kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown patch shape {self.shape!r}: one of {', '.join(SHAPES)}")
        if self.label not in ("dirty", "clean"):
            raise ValueError(f"label must be 'dirty' or 'clean', not {self.label!r}")
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be between 0 and 1, not {self.rate}")
        if not 1 <= self.size <= MAX_GRID or not 1 <= self.frequency <= MAX_GRID:
            raise ValueError(f"size and frequency must be from 1 to {MAX_GRID}, not "
                             f"{self.size} and {self.frequency}")
        if not 0 <= self.strength <= MAX_STRENGTH:  # NaN fails too
            raise ValueError(f"strength must be between 0 and {MAX_STRENGTH}, not "
                             f"{self.strength}")
        for axis in ("row", "col", "value"):
            if not 0 <= getattr(self, axis) <= 1:
                raise ValueError(f"{axis} must be between 0 and 1, not {getattr(self, axis)}")
        check_seed_and_target(self)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, entry: dict) -> "AttackConfig":
        """A configuration as `as_dict` writes it (the JSON of redteam's evasions)."""
        return cls(**checked(cls, entry, "attack configuration"))

    def trigger(self, shape: tuple[int, int]):
        """The function that stamps this trigger on a batch (n, h, w) or (n, c, h, w)."""
        h, w = shape
        rng = np.random.default_rng(self.seed)
        if self.kind == "patch":
            side = min(self.size, h, w)
            top = int(round(self.row * (h - side)))
            left = int(round(self.col * (w - side)))
            mask = _shape_mask(self.shape, side)

            def stamp(x):
                out = np.array(x, dtype=np.float32, copy=True)
                out[..., top:top + side, left:left + side][..., mask] = self.value
                return out
            return stamp
        if self.kind == "scatter":
            where = rng.choice(h * w, size=min(self.size, h * w), replace=False)
            rows, cols = np.unravel_index(where, (h, w))

            def stamp(x):
                out = np.array(x, dtype=np.float32, copy=True)
                out[..., rows, cols] = self.value
                return out
            return stamp
        if self.kind == "blend":
            grid = max(2, min(self.frequency, h))
            pattern = _upsample(rng.random((grid, grid)).astype(np.float32), h, w)

            def stamp(x):
                x = np.asarray(x, np.float32)
                return ((1 - self.strength) * x + self.strength * pattern).astype(np.float32)
            return stamp
        if self.kind == "sinusoid":
            return sig_trigger(shape, self.strength, self.frequency)
        if self.kind == "invert":
            share = min(self.strength, 1.0)

            def stamp(x):
                x = np.asarray(x, np.float32)
                return ((1 - share) * x + share * (1 - x)).astype(np.float32)
            return stamp
        return wanet_trigger(shape, k=max(2, self.frequency), strength=self.strength,
                             seed=self.seed)

    def poison(self, x: np.ndarray, y: np.ndarray) -> Poisoned:
        """The training set poisoned by this attack (inputs unchanged)."""
        trigger = self.trigger(x.shape[-2:])
        clean = self.label == "clean"
        if clean:  # target-class images only: at most all of them
            share = np.mean(np.asarray(y) == self.target)
            rate = min(self.rate, 0.9 * share)
        else:
            rate = self.rate
        return poison(x, y, trigger, rate, self.target, seed=self.seed,
                      label_consistent=clean)


def decode(point, shape: tuple[int, int], target: int = 0, seed: int = 0) -> AttackConfig:
    """The attack at `point` (DIMENSIONS numbers in [-1, 1]; outside values are clipped) for
    images of `shape`."""
    u = (np.clip(np.asarray(point, dtype=np.float64).reshape(-1), -1, 1) + 1) / 2
    if u.size != DIMENSIONS:
        raise ValueError(f"a point of the attack space has {DIMENSIONS} numbers, not {u.size}")
    at = dict(zip(AXES, u))
    kind = KINDS[min(int(at["kind"] * len(KINDS)), len(KINDS) - 1)]
    side = min(shape)
    if kind == "scatter":
        size = int(round(4 + at["size"] * (side * side // 12 - 4)))
    else:
        size = int(round(1 + at["size"] * (max(2, side // 2) - 1)))
    low, high = STRENGTHS.get(kind, (0.0, 1.0))
    frequency = int(round(1 + at["frequency"] * (max(2, side // 2) - 1)))
    rate = float(np.exp(np.log(RATES[0]) + at["rate"] * np.log(RATES[1] / RATES[0])))
    return AttackConfig(kind=kind, size=size, row=round(float(at["row"]), 4),
                        col=round(float(at["col"]), 4), value=round(float(at["value"]), 4),
                        strength=round(float(low + at["strength"] * (high - low)), 4),
                        frequency=frequency, rate=round(rate, 4),
                        label="clean" if at["label"] >= 0.5 else "dirty", target=target,
                        seed=seed,
                        shape=SHAPES[min(int(at["shape"] * len(SHAPES)), len(SHAPES) - 1)])


def _shape_mask(shape: str, side: int) -> np.ndarray:
    """(side, side) booleans: the pixels of a patch of `shape` (strokes a fifth of the side)."""
    mask = np.zeros((side, side), dtype=bool)
    stroke = max(1, side // 5)
    low, high = (side - stroke) // 2, (side - stroke) // 2 + stroke
    if shape == "square":
        mask[:] = True
    elif shape == "plus":
        mask[low:high, :] = True
        mask[:, low:high] = True
    elif shape == "ring":
        mask[:stroke, :] = mask[-stroke:, :] = True
        mask[:, :stroke] = mask[:, -stroke:] = True
    else:  # bar
        height = max(1, side // 4)
        mask[(side - height) // 2:(side - height) // 2 + height, :] = True
    return mask


def read_config(path: Path) -> AttackConfig | TextAttackConfig:
    """An attack configuration from a JSON file: one configuration (an image attack, or a text
    attack by its kind), or redteam's report (its strongest evasion, the first of
    `evasions`)."""
    entry = read_json(path)
    if isinstance(entry, dict) and "results" in entry:
        evasions = entry["results"].get("evasions") if isinstance(entry["results"], dict) \
            else None
        if not evasions:
            raise ValueError(f"{path}: a redteam report without evasions")
        if not isinstance(evasions, list):
            raise ValueError(f"{path}: the report's evasions must be a list, not "
                             f"{type(evasions).__name__}")
        entry = evasions[0]
    if isinstance(entry, dict) and "config" in entry:
        entry = entry["config"]
    try:
        if isinstance(entry, dict) and entry.get("kind") in TEXT_KINDS:
            return TextAttackConfig.from_dict(entry)
        if isinstance(entry, dict) and entry.get("kind") not in KINDS:
            raise ValueError(f"unknown attack kind {entry.get('kind')!r}: one of "
                             f"{', '.join(KINDS + TEXT_KINDS)}")
        return AttackConfig.from_dict(entry)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
