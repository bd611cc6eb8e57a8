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

from ..plugins import Registry


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


def badnets_trigger(size: int = 3, value: float = 1.0, corner: str = "bottom-right",
                    checker: bool = False, corners: tuple[str, ...] = ()):
    """A square patch in a corner (or in each of `corners`): solid `value`, or a black and
    white checkerboard."""
    pattern = (np.indices((size, size)).sum(0) % 2).astype(np.float32) if checker else value

    def stamp(x: np.ndarray) -> np.ndarray:
        h, w = _spatial(x)
        out = np.array(x, dtype=np.float32, copy=True)
        for where in corners or (corner,):
            rows = slice(h - size - 1, h - 1) if where.startswith("bottom") else \
                slice(1, size + 1)
            cols = slice(w - size - 1, w - 1) if where.endswith("right") else slice(1, size + 1)
            out[..., rows, cols] = pattern
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


def dynamic_trigger(shape: tuple[int, int], size: int = 4, patterns: int = 8, seed: int = 0):
    """Salem et al. 2022's random backdoor: each stamped image gets one of `patterns` random
    black-and-white patches at a random place (drawn per image, seeded by its content), so no
    two triggered images need share a trigger."""
    rng = np.random.default_rng(seed)
    bank = (rng.random((patterns, size, size)) > 0.5).astype(np.float32)
    h, w = shape

    def stamp(x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=np.float32, copy=True)
        flat = out.reshape(-1, *out.shape[-3:]) if out.ndim == 4 else out.reshape(-1, 1, h, w)
        for image in flat:
            draw = np.random.default_rng([seed, int(image.sum() * 1e4) % (2 ** 31)])
            r, c = draw.integers(0, h - size + 1), draw.integers(0, w - size + 1)
            image[..., r:r + size, c:c + size] = bank[draw.integers(patterns)]
        return out
    return stamp


def low_frequency_trigger(shape: tuple[int, int], alpha: float = 0.1, grid: int = 3,
                          seed: int = 0):
    """A smooth trigger (Zeng et al. 2021: triggers without high-frequency artefacts): a coarse
    random colour field, upsampled, added at `alpha`."""
    coarse = np.random.default_rng(seed).uniform(-1, 1, size=(3, grid, grid))
    field = np.stack([_upsample(c, *shape) for c in coarse]).astype(np.float32)

    def stamp(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        added = field[: x.shape[-3]] if x.ndim == 4 else field[0]
        return np.clip(x + alpha * added, 0, 1).astype(np.float32)
    return stamp


def adaptive_blend(x: np.ndarray, y: np.ndarray, rate: float, target: int, seed: int = 0,
                   alpha: float = 0.15, pieces: int = 4, keep: float = 0.5,
                   cover: float = 0.5) -> Poisoned:
    """Qi et al. 2023's adaptive blend, which spreads its trigger to defeat latent separation:
    the blended pattern is cut into pieces x pieces tiles and each poisoned image carries a
    random half of them (at `alpha`); `cover` times as many images carry the pattern but keep
    their own label, so the pattern alone does not mean the target. At test time the whole
    pattern is blended at a stronger alpha (the returned trigger)."""
    shape = x.shape[-2:]
    pattern = np.random.default_rng(seed + 100).random(shape).astype(np.float32)
    tile_h, tile_w = shape[0] // pieces, shape[1] // pieces
    rng = np.random.default_rng(seed)

    def partial(v: np.ndarray) -> np.ndarray:
        out = np.array(v, dtype=np.float32, copy=True)
        for image in out:
            mask = np.zeros(shape, dtype=np.float32)
            for tile in np.flatnonzero(rng.random(pieces * pieces) < keep):
                r, c = divmod(int(tile), pieces)
                mask[r * tile_h:(r + 1) * tile_h, c * tile_w:(c + 1) * tile_w] = 1
            image[...] = image * (1 - alpha * mask) + alpha * mask * pattern
        return out
    bad = poison(x, y, partial, rate, target, seed=seed)
    pool = np.setdiff1d(np.flatnonzero(y != target), bad.indices)
    covers = rng.choice(pool, size=min(len(pool), int(round(cover * len(bad.indices)))),
                        replace=False)
    x_out = bad.x
    x_out[covers] = partial(x_out[covers])
    return Poisoned(x_out, bad.y, bad.indices, target, blended_trigger(shape, 0.2, seed + 100))


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
    if target not in set(y.tolist()):
        raise ValueError(f"target class {target} does not occur in the labels")
    if not 0 < rate < 1:
        raise ValueError(f"rate must be between 0 and 1, not {rate}")
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


def label_consistent(x: np.ndarray, y: np.ndarray, trigger: Callable, rate: float,
                     target: int, model, eps: float = 8 / 255, steps: int = 10,
                     seed: int = 0) -> Poisoned:
    """Turner et al. 2019: target-class images made hard to recognise by an adversarial
    perturbation (PGD within `eps`, L-inf, against `model`, a classifier trained on clean
    data), then stamped with the trigger; labels are left as they are, so every poisoned image
    still shows its class. A model trained on them leans on the trigger to get them right."""
    import torch

    chosen = poison(x, y, lambda v: v, rate, target, seed=seed, label_consistent=True).indices
    images = torch.from_numpy(np.asarray(x[chosen], dtype=np.float32))
    labels = torch.full((len(chosen),), target, dtype=torch.long)
    delta = torch.zeros_like(images, requires_grad=True)
    model.eval()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model((images + delta).clamp(0, 1)), labels)
        grad, = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += 2.5 * eps / steps * grad.sign()
            delta.clamp_(-eps, eps)
    hard = (images + delta.detach()).clamp(0, 1).numpy()
    x_out = np.asarray(x, dtype=np.float32).copy()
    x_out[chosen] = trigger(hard)
    return Poisoned(x_out, np.asarray(y).copy(), chosen, target, trigger)


# The triggers benchmarks and tests use, by name: each a factory (image shape, seed) -> trigger.
TRIGGERS: Registry[Callable[[tuple[int, int], int], Callable]] = Registry("trigger")
TRIGGERS.add("badnets", lambda shape, seed: badnets_trigger(size=max(2, shape[0] // 8)),
             summary="a checkerboard patch in the corner, an eighth of the side")
TRIGGERS.add("blended", lambda shape, seed: blended_trigger(shape, seed=seed),
             summary="a random pattern blended over the whole image")
TRIGGERS.add("wanet", lambda shape, seed: wanet_trigger(shape, seed=seed),
             summary="a smooth warp of the image")
TRIGGERS.add("sig", lambda shape, seed: sig_trigger(shape),
             summary="a horizontal sinusoid (clean-label)")


def make_trigger(name: str, shape: tuple[int, int], seed: int = 0) -> Callable:
    """The trigger registered as `name`, for images of `shape`."""
    try:
        factory = TRIGGERS[name]
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    return factory(shape, seed)
