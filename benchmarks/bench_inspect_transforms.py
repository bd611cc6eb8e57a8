"""Whole-image transforms as triggers, seen from the model: do clean models send transformed
inputs to one class as a trojaned model does?

The learning attacker against inspect (docs/redteam.md, "inspect in the loop") found that a
model trained on digits blended with their negative, relabelled to the target, sends every
such image to the target, and inspect's searches (a small mask, a perturbation bounded by 0.1,
a 2 px warp) miss it. A fourth rule was tried: apply fixed transforms to held-out inputs and
compare each class's share with clean models'. This measures whether that can work: for clean
models (the episodes' proxy, trained on MNIST-5k's training split with several seeds, and
inspect's reference-proxy recipe: width 32 on 1,000 images) and for models trained with the
attacker's inversions, per transform, the largest share of other classes' held-out inputs that
goes to one class, and which class; and how sure the model is of it: the median logit margin
(top minus second) of the transformed inputs sent there over the median margin of that class's
own inputs rightly classified (a trojaned model was trained on its trigger; a clean model's
sink might be an extrapolation, less sure).

Run: python benchmarks/bench_inspect_transforms.py [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trojanscope.attacks.learning.episode import Budget, split, train_model
from trojanscope.attacks.learning.space import AttackConfig
from trojanscope.data.datasets import mnist_5k
from trojanscope.data.features import TrainConfig, extract, train_proxy


def _shifted(x: np.ndarray) -> np.ndarray:
    step = max(1, round(0.1 * x.shape[-1]))
    out = np.zeros_like(x)
    out[..., step:, step:] = x[..., :-step, :-step]
    return out


TRANSFORMS = {"inverted": lambda x: 1 - x,
              "inverted, low contrast": lambda x: 0.7 - 0.4 * x,
              "flipped left-right": lambda x: x[..., ::-1],
              "transposed": lambda x: np.swapaxes(x, -1, -2),
              "shifted": _shifted}
ATTACKS = [  # the attacker's inversions (redteam against inspect, seeds 0 and 1)
    AttackConfig("invert", 9, 0.5, 0.5, 0.5, 0.6926, 1, 0.054, "dirty", target=0, seed=1),
    AttackConfig("invert", 6, 0.5, 0.5, 0.5, 0.8170, 10, 0.0087, "clean", target=0, seed=1),
    AttackConfig("invert", 6, 0.5, 0.5, 0.5, 1.0, 10, 0.02, "dirty", target=7, seed=1),
    AttackConfig("invert", 6, 0.5, 0.5, 0.5, 0.74, 10, 0.06, "clean", target=0, seed=1),
    AttackConfig("invert", 6, 0.5, 0.5, 0.5, 0.98, 10, 0.14, "clean", target=0, seed=1),
    AttackConfig("invert", 6, 0.5, 0.5, 0.5, 0.63, 10, 0.005, "dirty", target=0, seed=1)]


def sinks(model, x: np.ndarray, y: np.ndarray) -> dict[str, tuple[int, float, float]]:
    """Per transform, (class, share, margin ratio): the class that receives the largest share
    of the other classes' transformed inputs, and the margin ratio described above."""
    clean = extract(model, x)[1]
    out = {}
    for name, transform in TRANSFORMS.items():
        logits = extract(model, np.ascontiguousarray(transform(x), dtype=np.float32))[1]
        predicted = logits.argmax(1)
        shares = [float(np.mean(predicted[y != c] == c)) for c in range(10)]
        c = int(np.argmax(shares))
        sent, own = (y != c) & (predicted == c), (y == c) & (clean.argmax(1) == c)
        ratio = float(np.median(_margin(logits[sent])) / np.median(_margin(clean[own])))
        out[name] = (c, max(shares), ratio)
    return out


def _margin(logits: np.ndarray) -> np.ndarray:
    top = np.sort(logits, axis=1)
    return top[:, -1] - top[:, -2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    train, test = split(mnist_5k(), args.seed)
    x, y = test.x[:500], test.y[:500]
    models = [(f"clean, 3 epochs, width 16, seed {s}",
               train_model(train.x, train.y, 20_000 + s, Budget(), "a clean model"))
              for s in range(4)]
    models += [(f"clean, 10 epochs, width 32, seed {s}",
                train_model(train.x, train.y, 21_000 + s, Budget(epochs=10, width=32),
                            "a clean model")) for s in range(2)]
    models += [(f"clean, reference-proxy recipe, seed {s}",
                train_proxy(test.x, test.y, TrainConfig(epochs=7, width=32, seed=100 + s)))
               for s in range(3)]
    for attack in ATTACKS:
        bad = attack.poison(train.x, train.y)
        models.append((f"trojaned: invert {attack.label} label, share {attack.strength:.2f}, "
                       f"{attack.rate:.1%}, target {attack.target}",
                       train_model(bad.x, bad.y, 5, Budget(), "a trojaned model")))
    print(f"{'model':58s} " + " ".join(f"{name[:22]:>22s}" for name in TRANSFORMS))
    for name, model in models:
        found = sinks(model, x, y)
        print(f"{name:58s} " + " ".join(f"{f'class {c}: {s:.2f} ({r:.2f})':>22s}"
                                         for c, s, r in found.values()), flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
