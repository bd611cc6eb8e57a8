"""vet on poisoned image data: attacks x poison rates x detectors, one table.

For each attack and rate the training split is poisoned (target class 0), every detector flags
samples, a proxy CNN is retrained on what each detector keeps, and the attack success rate (ASR,
triggered test images of other classes classified as the target) and clean accuracy are measured
on the held-out split. Data: the embedded MNIST-5k (4,000 train / 1,000 test), and MNIST-10k
from ../shared/datasets when present (--data mnist-10k).
Run: python benchmarks/bench_vet.py [--data mnist-5k|mnist-10k] [--rates 0.01 0.05 0.1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from trojanscope.attacks.image_poison import make_trigger, poison
from trojanscope.bench.metrics import auroc
from trojanscope.data.datasets import Dataset, mnist_5k, validate
from trojanscope.data.features import TrainConfig, extract, train_proxy
from trojanscope.data.vet import vet

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DETECTORS = ("neighbour-disagreement", "spectral", "activation-clustering", "spectre")


def split(name: str):
    if name == "mnist-10k":
        path = SHARED / "mnist_train10k_test10k.npz"
        if not path.exists():
            raise SystemExit(f"{path} is not there; use --data mnist-5k")
        with np.load(path) as d:
            train = validate(d["x_train"] / 255.0, d["y_train"], "mnist-10k train")
            test = validate(d["x_test"][:2000] / 255.0, d["y_test"][:2000], "mnist test")
        return train, test
    data = mnist_5k()
    order = np.random.default_rng(0).permutation(len(data.y))
    tr, te = order[:4000], order[4000:]
    return Dataset(data.x[tr], data.y[tr], "mnist-5k"), Dataset(data.x[te], data.y[te], "test")


def evaluate(x, y, test: Dataset, trigger, target: int, epochs: int) -> tuple[float, float]:
    model = train_proxy(x, y, TrainConfig(epochs=epochs))
    _, logits = extract(model, test.x)
    accuracy = float((logits.argmax(1) == test.y).mean())
    others = test.x[test.y != target]
    _, triggered = extract(model, trigger(others))
    return accuracy, float((triggered.argmax(1) == target).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="mnist-5k", choices=["mnist-5k", "mnist-10k"])
    parser.add_argument("--attacks", nargs="+", default=["badnets", "blended", "wanet", "sig"])
    parser.add_argument("--rates", nargs="+", type=float, default=[0.01, 0.05, 0.1])
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    train, test = split(args.data)
    target = 0
    print(f"data: {args.data}, {len(train.y)} train / {len(test.y)} test, target class {target}")
    clean = vet(train)
    print(f"clean data: suspected classes {clean.results['suspected_classes']} "
          f"(goal: none), {len(clean.results['suspicious_indices'])} samples flagged")
    header = (f"{'attack':8s} {'rate':>5s} {'detector':24s} {'prec':>6s} {'recall':>6s} "
              f"{'FPR':>7s} {'AUROC':>6s} {'classes':>8s} {'ASR':>6s} {'acc':>6s} {'sec':>6s}")
    print(header)
    for attack in args.attacks:
        trigger = make_trigger(attack, train.x.shape[-2:])
        for rate in args.rates:
            bad = poison(train.x, train.y, trigger, rate, target, seed=1)
            truth = np.zeros(len(bad.y), dtype=bool)
            truth[bad.indices] = True
            accuracy, asr = evaluate(bad.x, bad.y, test, trigger, target, args.epochs)
            print(f"{attack:8s} {rate:5.2f} {'(no defence)':24s} {'':>6s} {'':>6s} {'':>7s} "
                  f"{'':>6s} {'':>8s} {asr:6.3f} {accuracy:6.3f}")
            for detector in args.detectors:
                started = time.perf_counter()
                report = vet(Dataset(bad.x, bad.y, "poisoned"), detector=detector)
                seconds = time.perf_counter() - started
                flagged = np.zeros(len(bad.y), dtype=bool)
                flagged[report.results["suspicious_indices"]] = True
                tp = int((flagged & truth).sum())
                precision = tp / max(int(flagged.sum()), 1)
                recall = tp / max(int(truth.sum()), 1)
                fpr = int((flagged & ~truth).sum()) / int((~truth).sum())
                keep = ~flagged
                accuracy, asr = evaluate(bad.x[keep], bad.y[keep], test, trigger, target,
                                         args.epochs)
                classes = ",".join(map(str, report.results["suspected_classes"])) or "-"
                ranking = auroc(np.array(report.results["scores"]), truth)
                print(f"{attack:8s} {rate:5.2f} {detector:24s} {precision:6.3f} {recall:6.3f} "
                      f"{fpr:7.4f} {ranking:6.3f} {classes:>8s} {asr:6.3f} {accuracy:6.3f} "
                      f"{seconds:6.1f}", flush=True)
    print("ART (ActivationDefence, SpectralSignatureDefense): not run; "
          "install adversarial-robustness-toolbox to compare (not yet wired in)")


if __name__ == "__main__":
    main()
