"""vet's resampling check on colour images (`vet.resampling_check`), alone: which classes it
names on clean CIFAR-10 training splits, on the learnt attacker's warp (docs/redteam.md, round
nine), on warps it was not built on, and on benign changes to part of one class.

The check's thresholds are the grey-image resampling member's (a sample's 3.5 robust units, a
class z of 8), not fitted on any of these sets. The rows:
- clean: the loop's 4,000-image training splits of `cifar10-5k` (split seeds 0-5);
- learnt: the attacker's evasion (split 3, target 5, warp field seed 10, grid 15, 3 px, 15%
  dirty label) and the same warp at 5%, 2% and 5% clean label;
- held out: split 0, target 3, another field (seed 21), grids 10, 15 and 16 at 1.5-3 px, 2% and
  5% dirty label;
- benign: split 0, a fifth or half of class 4 changed (JPEG quality 30 and 90, Gaussian noise,
  unsharp masking, a blur of 0.7 px, grey copies, mirror images, upscaled 2x from half size).

`--train` adds whether warps without jaggies still work (a red team's evasions of the check):
the same field (grid 15, 2.5 px, seed 0) applied bilinearly at 32 px, at 4 x the resolution
(bicubic up, warp, averaged down), and followed by a blur of 0.5 px, at 5% and 15% dirty label
(split 3, target 5), each trained as an episode is (10 epochs): attack success, a clean model's,
clean accuracy, and the check's class z. About 10 minutes more.

Run: python benchmarks/bench_warp_check.py [--train]   (about a minute; needs
../shared/datasets' CIFAR-10 JPEG archive, or any cifar10-5k the loader finds)
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from trojanscope.attacks.learning.episode import split
from trojanscope.attacks.learning.space import AttackConfig
from trojanscope.data.datasets import load
from trojanscope.data.vet import resampling_check

EVASION = {"kind": "warp", "size": 10, "row": 0.6418, "col": 0.2924, "value": 0.228,
           "strength": 3.0, "frequency": 15, "rate": 0.15, "label": "dirty", "target": 5,
           "seed": 10, "shape": "square"}


def row(group: str, name: str, x: np.ndarray, y: np.ndarray, poisons: np.ndarray,
        target: int | None, check=resampling_check) -> bool:
    """Print one case of `check` (x, y -> scores, decision); True when it names exactly the
    target (or nothing, clean)."""
    started = time.perf_counter()
    _, decision = check(x, y)
    top = max(decision.per_class, key=lambda e: e["z"])
    z = next((e["z"] for e in decision.per_class if e["class"] == target), top["z"])
    flagged = decision.indices
    caught = np.intersect1d(flagged, poisons).size
    named = ",".join(map(str, decision.classes)) or "-"
    print(f"{group:9s} {name:44s} {named:>6s} {z:7.1f} {top['class']:>4d} {top['z']:6.1f} "
          f"{caught:5d}/{len(poisons):<5d} {len(flagged):7d} "
          f"{time.perf_counter() - started:5.1f}", flush=True)
    return decision.classes == ([] if target is None else [target])


HEADER = f"{'group':9s} {'case':44s} {'named':>6s} {'z':>7s} {'top':>4s} {'top z':>6s} " \
         f"{'flagged poisons':>11s} {'flagged':>7s} {'sec':>5s}"


class Tally:
    """Which cases came out right, by group."""

    def __init__(self) -> None:
        self.right: dict[str, list[bool]] = {}

    def add(self, group: str, ok: bool) -> None:
        self.right.setdefault(group, []).append(ok)

    def show(self) -> None:
        print("\nright (the target alone named; nothing on clean and benign sets):")
        for group, oks in self.right.items():
            print(f"  {group:30s} {sum(oks)} of {len(oks)}")


def benign_changes(rng: np.random.Generator) -> dict:
    from PIL import Image

    def as_image(image):
        return Image.fromarray((np.clip(image.transpose(1, 2, 0), 0, 1) * 255).round()
                               .astype(np.uint8))

    def back(image):
        return np.asarray(image, np.float32).transpose(2, 0, 1) / 255

    def jpeg(image, quality):
        buffer = io.BytesIO()
        as_image(image).save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        return back(Image.open(buffer))

    def upscaled(image):
        side = image.shape[-1]
        small = as_image(image).resize((side // 2, side // 2), Image.BILINEAR)
        return back(small.resize((side, side), Image.BILINEAR))

    def noise(image, sigma):
        return np.clip(image + rng.normal(0, sigma, image.shape), 0, 1).astype(np.float32)

    return {"JPEG quality 30": lambda im: jpeg(im, 30),
            "JPEG quality 90": lambda im: jpeg(im, 90),
            "noise 0.02": lambda im: noise(im, 0.02),
            "noise 0.05": lambda im: noise(im, 0.05),
            "unsharp mask": lambda im: np.clip(2 * im - gaussian_filter(im, (0, 1, 1)), 0, 1),
            "blur 0.7 px": lambda im: gaussian_filter(im, (0, 0.7, 0.7)),
            "grey copies": lambda im: np.repeat(im.mean(0, keepdims=True), 3, 0),
            "mirror images": lambda im: im[:, :, ::-1].copy(),
            "upscaled 2x from half size": upscaled}


def jaggy_free_warps() -> dict:
    """The red team's warps: grid 15, 2.5 px, field seed 0, three ways of sampling it."""
    from PIL import Image
    from scipy.ndimage import zoom

    from trojanscope.attacks.image_poison import _bilinear, _upsample, wanet_trigger

    plain = wanet_trigger((32, 32), k=15, strength=2.5, seed=0)
    coarse = np.random.default_rng(0).uniform(-1, 1, (2, 15, 15))
    coarse /= np.abs(coarse).mean()
    field = np.stack([_upsample(c, 32, 32) for c in coarse]) * 2.5

    def fine(x, factor=4):
        side = 32 * factor
        up = np.stack([np.asarray(Image.fromarray(
            (np.clip(i.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)).resize(
            (side, side), Image.BICUBIC), np.float32).transpose(2, 0, 1) / 255 for i in x])
        moved = np.stack([zoom(f, factor, order=1) for f in field]) * factor
        rows, cols = np.meshgrid(np.arange(side, dtype=np.float64),
                                 np.arange(side, dtype=np.float64), indexing="ij")
        warped = _bilinear(up, np.clip(rows + moved[0], 0, side - 1),
                           np.clip(cols + moved[1], 0, side - 1))
        return np.clip(warped.reshape(len(x), 3, 32, factor, 32, factor).mean((3, 5)), 0,
                       1).astype(np.float32)

    def blurred(x):
        return gaussian_filter(plain(x), (0, 0, 0.5, 0.5)).astype(np.float32)

    return {"bilinear at 32 px": plain, "at 4x the resolution": fine,
            "then a blur of 0.5 px": blurred}


def train_rows(data) -> None:
    from trojanscope.attacks.image_poison import poison
    from trojanscope.attacks.learning.episode import Budget, _measure, train_model

    train, test = split(data, 3)
    budget = Budget(epochs=10)
    clean = train_model(train.x, train.y, 3, budget, "a clean model")
    print(f"\nwarps without jaggies, trained (split 3, target 5, 10 epochs; clean accuracy "
          f"{_measure(clean, None, test, None)[1]:.3f}):")
    for name, trigger in jaggy_free_warps().items():
        for rate in (0.05, 0.15):
            started = time.perf_counter()
            bad = poison(train.x, train.y, trigger, rate, 5, seed=1)
            _, decision = resampling_check(bad.x, bad.y)
            model = train_model(bad.x, bad.y, 3, budget, "the attacked model")
            success, accuracy = _measure(model, trigger, test, 5)
            natural = _measure(clean, trigger, test, 5)[0]
            print(f"  {name:22s} {rate:4.0%}: success {success:.3f} (a clean model "
                  f"{natural:.3f}), accuracy {accuracy:.3f}, check's z "
                  f"{decision.per_class[5]['z']:.1f}, named {decision.classes or '-'} "
                  f"{time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", action="store_true",
                        help="also train episodes on the warps without jaggies")
    args = parser.parse_args()
    data = load("cifar10-5k")
    print(HEADER)
    tally = Tally()

    for seed in range(6):
        train, _ = split(data, seed)
        tally.add("clean", row("clean", f"split {seed}", train.x, train.y, np.zeros(0, int), None))
    train, _ = split(data, 3)
    for change in ({}, {"rate": 0.05}, {"rate": 0.02}, {"rate": 0.05, "label": "clean"}):
        bad = AttackConfig(**{**EVASION, **change}).poison(train.x, train.y)
        name = f"grid 15, 3 px, {bad.indices.size / len(train.y):.0%} " \
               f"{change.get('label', 'dirty')}"
        tally.add("learnt", row("learnt", name, bad.x, bad.y, bad.indices, 5))
    train, _ = split(data, 0)
    for grid in (10, 15, 16):
        for strength in (1.5, 2.0, 2.5, 3.0):
            for rate in (0.02, 0.05):
                bad = AttackConfig("warp", 10, 0.5, 0.5, 0.5, strength, grid, rate, "dirty", 3,
                                   seed=21).poison(train.x, train.y)
                tally.add(f"held out, grid {grid} {'>= 2' if strength >= 2 else '1.5'} px",
                      row("held out", f"grid {grid}, {strength} px, {rate:.0%}", bad.x, bad.y,
                          bad.indices, 3))
    rng = np.random.default_rng(0)
    for name, change in benign_changes(rng).items():
        for share in (0.2, 0.5):
            x = train.x.copy()
            rows = np.flatnonzero(train.y == 4)
            rows = rng.choice(rows, int(share * len(rows)), replace=False)
            x[rows] = np.stack([change(image) for image in x[rows]]).astype(np.float32)
            tally.add("benign", row("benign", f"{name}, {share:.0%} of class 4", x, train.y,
                                np.zeros(0, int), None))
    tally.show()
    if args.train:
        train_rows(data)


if __name__ == "__main__":
    main()
