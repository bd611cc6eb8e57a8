"""vet on natural images: CIFAR-10 (JPEG) from ../shared/datasets, attacks x poison rates.

For each attack and rate a class-balanced subset of the training split is poisoned, `vet`
flags samples with its default detector for colour images (shared pattern + semantic contrast,
over EfficientNet-Lite0 features), and a victim CNN trained on the kept data gives the attack
success (ASR: triggered test images of other classes classified as the target) and clean
accuracy, beside the victim trained on all the poisoned data. IBM ART's ActivationDefence and
SpectralSignatureDefense run on that victim, side by side, where ART is installed.

The thresholds were chosen on a development run (subset seed 0, target 0, a solid white patch,
a blended pattern of seed 0 at alpha 0.2, WaNet field seed 0); the defaults here are other
images (subset seed 1), another target and other triggers. `--dev` runs the development set.

Run: python benchmarks/bench_natural.py [--train-size 10000] [--attacks ...] [--rates ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_vet import art_defences, evaluate  # noqa: E402

from trojanscope.attacks.image_poison import (  # noqa: E402
    badnets_trigger,
    blended_trigger,
    label_consistent,
    poison,
    sig_trigger,
    wanet_trigger,
)
from trojanscope.bench.metrics import auroc  # noqa: E402
from trojanscope.data.cifar import cifar10  # noqa: E402
from trojanscope.data.datasets import Dataset  # noqa: E402
from trojanscope.data.features import TrainConfig, train_proxy  # noqa: E402
from trojanscope.data.vet import vet  # noqa: E402

CLEAN_LABEL = ("sig", "label-consistent")


def triggers(dev: bool) -> dict:
    shape = (32, 32)
    if dev:
        return {"badnets": badnets_trigger(3), "blended": blended_trigger(shape, 0.2, seed=0),
                "wanet": wanet_trigger(shape, strength=2.0, seed=0),
                "sig": sig_trigger(shape, 0.08),
                "label-consistent": badnets_trigger(3, checker=True,
                                                    corners=("top-left", "bottom-right"))}
    corners = ("top-left", "top-right", "bottom-left", "bottom-right")
    return {"badnets": badnets_trigger(3, checker=True),
            "blended": blended_trigger(shape, 0.15, seed=7),
            "wanet": wanet_trigger(shape, strength=2.0, seed=3),
            "sig": sig_trigger(shape, 20 / 255, frequency=6),
            "label-consistent": badnets_trigger(3, checker=True, corners=corners)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--attacks", nargs="+",
                        default=["badnets", "blended", "wanet", "sig", "label-consistent"])
    parser.add_argument("--rates", nargs="+", type=float, default=[0.01, 0.05, 0.1])
    parser.add_argument("--epochs", type=int, default=10, help="of each victim CNN")
    parser.add_argument("--dev", action="store_true", help="the development set instead")
    parser.add_argument("--no-art", action="store_true")
    args = parser.parse_args()
    data = cifar10(train_size=args.train_size, test_size=2000, seed=0 if args.dev else 1)
    if data is None:
        print("CIFAR-10 (JPEG) is not in ../shared/datasets: skipped")
        return
    train, test = data
    target = 0 if args.dev else 2
    from trojanscope.data.encoder import encode, load_encoder

    encoder = load_encoder()
    started = time.perf_counter()
    clean_features = encode(train.x, encoder=encoder)
    encode_seconds = time.perf_counter() - started
    print(f"CIFAR-10 (JPEG), {len(train.y):,} training images, target class {target}; encoder "
          f"features {encode_seconds:.0f} s ({len(train.y) / encode_seconds:.0f} images/s); "
          "ASR / acc: a victim CNN trained on the kept data (no defence: on all of it)")
    print(f"{'attack':17s} {'rate':>5s} {'method':22s} {'prec':>6s} {'recall':>6s} "
          f"{'FPR':>7s} {'AUROC':>6s} {'classes':>8s} {'ASR':>6s} {'acc':>6s} {'sec':>6s}",
          flush=True)
    started = time.perf_counter()
    report = vet(train, features=clean_features)
    print(f"{'none':17s} {0:5.2f} {'vet':22s} {'':>6s} {'':>6s} "
          f"{len(report.results['suspicious_indices']) / len(train.y):7.4f} {'':>6s} "
          f"{','.join(map(str, report.results['suspected_classes'])) or '-':>8s} {'':>6s} "
          f"{'':>6s} {time.perf_counter() - started + encode_seconds:6.1f}", flush=True)
    stamps = triggers(args.dev)
    for attack in args.attacks:
        for rate in args.rates:
            if attack in CLEAN_LABEL and rate * len(train.y) > 0.5 * (train.y == target).sum():
                print(f"{attack:17s} {rate:5.2f} (more than half the target class: a clean-"
                      "label attack cannot poison it; skipped)", flush=True)
                continue
            case(attack, rate, train, test, stamps[attack], target, clean_features, encoder,
                 args)


def case(attack, rate, train, test, trigger, target, clean_features, encoder, args) -> None:
    from trojanscope.data.encoder import encode

    if attack == "label-consistent":
        reference = train_proxy(train.x, train.y, TrainConfig(epochs=args.epochs, seed=5))
        bad = label_consistent(train.x, train.y, trigger, rate, target, reference, seed=1)
    else:
        bad = poison(train.x, train.y, trigger, rate, target, seed=1,
                     label_consistent=attack in CLEAN_LABEL)
    truth = np.zeros(len(bad.y), dtype=bool)
    truth[bad.indices] = True
    accuracy, asr, victim = evaluate(bad.x, bad.y, test, trigger, target, args.epochs)
    prefix = f"{attack:17s} {rate:5.2f}"
    print(f"{prefix} {'(no defence)':22s} {'':>6s} {'':>6s} {'':>7s} {'':>6s} {'':>8s} "
          f"{asr:6.3f} {accuracy:6.3f}", flush=True)
    started = time.perf_counter()
    features = clean_features.copy()
    features[bad.indices] = encode(bad.x[bad.indices], encoder=encoder)
    report = vet(Dataset(bad.x, bad.y, "poisoned"), features=features)
    seconds = time.perf_counter() - started
    flagged = np.zeros(len(bad.y), dtype=bool)
    flagged[report.results["suspicious_indices"]] = True
    row(prefix, "vet", flagged, truth, bad, test, trigger, target, args, seconds,
        report.results["scores"], ",".join(map(str, report.results["suspected_classes"])))
    if not args.no_art:
        for name, (art_flags, art_seconds) in art_defences(victim, bad.x, bad.y,
                                                           rate).items():
            row(prefix, name, art_flags, truth, bad, test, trigger, target, args, art_seconds)


def row(prefix, method, flagged, truth, bad, test, trigger, target, args, seconds,
        scores=None, classes="") -> None:
    tp = int((flagged & truth).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    fpr = int((flagged & ~truth).sum()) / int((~truth).sum())
    accuracy, asr, _ = evaluate(bad.x[~flagged], bad.y[~flagged], test, trigger, target,
                                args.epochs)
    ranking = f"{auroc(np.asarray(scores), truth):6.3f}" if scores is not None else ""
    print(f"{prefix} {method:22s} {precision:6.3f} {recall:6.3f} {fpr:7.4f} {ranking:>6s} "
          f"{classes or '-':>8s} {asr:6.3f} {accuracy:6.3f} {seconds:6.1f}", flush=True)


if __name__ == "__main__":
    main()
