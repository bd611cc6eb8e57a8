"""Poisoning attacks on image training sets: BadNets, Blended, WaNet, SIG and label-consistent.

Images are float arrays in [0, 1], shaped (n, h, w) or (n, c, h, w). Each attack poisons a
`rate` share of the samples (drawn from the non-target classes, except label-consistent, which
keeps labels and poisons target-class samples), relabels them to `target`, and returns the
ground truth. Used by tests and benchmarks; detectors never import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Poisoned:
    x: np.ndarray
    y: np.ndarray
    indices: np.ndarray  # rows of x that carry the trigger (sorted)
    target: int
    trigger: Callable[[np.ndarray], np.ndarray]  # stamps the trigger on any batch


def _spatial(x: np.ndarray) -> tuple[int, int]:
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (n, h, w) or (n, c, h, w), not shape {x.shape}")
    return x.shape[-2], x.shape[-1]


def badnets_trigger(size: int = 3, value: float = 1.0, corner: str = "bottom-right"):
    """A solid square patch in a corner."""
    def stamp(x: np.ndarray) -> np.ndarray:
        h, w = _spatial(x)
        out = np.array(x, dtype=np.float32, copy=True)
        rows = slice(h - size - 1, h - 1) if corner.startswith("bottom") else slice(1, size + 1)
        cols = slice(w - size - 1, w - 1) if corner.endswith("right") else slice(1, size + 1)
        out[..., rows, cols] = value
        return out
    return stamp


def blended_trigger(shape: tuple[int, int], alpha: float = 0.2, seed: int = 0):
    """A fixed random pattern blended into the whole image (Chen et al. 2017)."""
    pattern = np.random.default_rng(seed).random(shape).astype(np.float32)

    def stamp(x: np.ndarray) -> np.ndarray:
        return ((1 - alpha) * np.asarray(x, np.float32) + alpha * pattern).astype(np.float32)
    return stamp


def sig_trigger(shape: tuple[int, int], delta: float = 0.08, frequency: int = 6):
    """A horizontal sinusoidal signal added to the image (Barni et al. 2019)."""
    columns = np.arange(shape[1], dtype=np.float32)
    signal = delta * np.sin(2 * np.pi * columns * frequency / shape[1])

    def stamp(x: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(x, np.float32) + signal, 0, 1).astype(np.float32)
    return stamp


def wanet_trigger(shape: tuple[int, int], k: int = 4, strength: float = 0.5, seed: int = 0):
    """A smooth, fixed warping field (Nguyen and Tran 2021), applied by bilinear sampling."""
    h, w = shape
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, size=(2, k, k))
    coarse /= np.abs(coarse).mean()
    field = np.stack([_upsample(c, h, w) for c in coarse]) * strength
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                             indexing="ij")
    src_r = np.clip(rows + field[0], 0, h - 1)
    src_c = np.clip(cols + field[1], 0, w - 1)

    def stamp(x: np.ndarray) -> np.ndarray:
        return _bilinear(np.asarray(x, np.float32), src_r, src_c)
    return stamp


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    k = grid.shape[0]
    r = np.linspace(0, k - 1, h)
    c = np.linspace(0, k - 1, w)
    return _bilinear(grid[None], *np.meshgrid(r, c, indexing="ij"))[0]


def _bilinear(x: np.ndarray, src_r: np.ndarray, src_c: np.ndarray) -> np.ndarray:
    r0 = np.floor(src_r).astype(int)
    c0 = np.floor(src_c).astype(int)
    r1 = np.minimum(r0 + 1, x.shape[-2] - 1)
    c1 = np.minimum(c0 + 1, x.shape[-1] - 1)
    fr, fc = src_r - r0, src_c - c0
    top = x[..., r0, c0] * (1 - fc) + x[..., r0, c1] * fc
    bottom = x[..., r1, c0] * (1 - fc) + x[..., r1, c1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def poison(x: np.ndarray, y: np.ndarray, trigger: Callable, rate: float, target: int,
           seed: int = 0, label_consistent: bool = False) -> Poisoned:
    """Apply `trigger` to a `rate` share of all samples and (unless label-consistent) relabel
    them to `target`. The inputs are not modified."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    _spatial(x)
    if not 0 < rate < 1:
        raise ValueError(f"rate must be between 0 and 1, not {rate}")
    if target not in set(y.tolist()):
        raise ValueError(f"target class {target} does not occur in the labels")
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(y == target) if label_consistent else np.flatnonzero(y != target)
    count = int(round(rate * len(y)))
    if count > len(pool):
        raise ValueError(f"cannot poison {count} samples: only {len(pool)} are eligible")
    chosen = np.sort(rng.choice(pool, size=count, replace=False))
    x_out, y_out = x.copy(), y.copy()
    x_out[chosen] = trigger(x[chosen])
    y_out[chosen] = target
    return Poisoned(x_out, y_out, chosen, target, trigger)


def make_trigger(name: str, shape: tuple[int, int], seed: int = 0) -> Callable:
    """The triggers benchmarks use, by name: badnets, blended, wanet, sig."""
    if name == "badnets":
        return badnets_trigger(size=max(2, shape[0] // 8))
    if name == "blended":
        return blended_trigger(shape, seed=seed)
    if name == "wanet":
        return wanet_trigger(shape, seed=seed)
    if name == "sig":
        return sig_trigger(shape)
    raise ValueError(f"unknown trigger {name!r}: badnets, blended, wanet or sig")
