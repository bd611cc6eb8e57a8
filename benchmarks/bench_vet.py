"""vet on poisoned image data: data sets x attacks x poison rates x detectors, one table.

For each attack and rate the training split is poisoned (target class 0), every detector flags
samples, a proxy CNN is retrained on what each detector keeps, and the attack success rate (ASR,
triggered test images of other classes classified as the target) and clean accuracy are measured
on the held-out split. Data: the embedded MNIST-5k (4,000 train / 1,000 test) and, when
../shared/datasets has them, MNIST-10k (10,000 train / 2,000 test) and CIFAR-10 (JPEG; 1,000
train images per class, 2,000 test). Where IBM ART is installed its ActivationDefence and
SpectralSignatureDefense run on the same poisoned data and the same trained model, side by side.
Run: python benchmarks/bench_vet.py [--data mnist-5k mnist-10k cifar10] [--rates 0.01 0.05 0.1]
"""

from __future__ import annotations

import argparse
import logging
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from trojanscope.attacks.image_poison import make_trigger, poison
from trojanscope.bench.metrics import auroc
from trojanscope.data.datasets import Dataset, image_folder, mnist_5k, validate
from trojanscope.data.features import TrainConfig, extract, train_proxy
from trojanscope.data.vet import vet

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DETECTORS = ("neighbour-disagreement", "spectral", "activation-clustering", "spectre")
DEFAULT = "neighbour-disagreement"


def available() -> list[str]:
    names = ["mnist-5k"]
    if (SHARED / "mnist_train10k_test10k.npz").exists():
        names.append("mnist-10k")
    if (SHARED / "cifar10-jpg.tar.gz").exists():
        names.append("cifar10")
    return names


def cifar10(per_class: int = 1000, test_size: int = 2000):
    """The JPEG copy of CIFAR-10, unpacked to a temporary folder and read with vet's own
    image-folder loader; the first `per_class` images of each class (by file name)."""
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(SHARED / "cifar10-jpg.tar.gz") as archive:
            archive.extractall(folder, filter="data")
        train, test = image_folder(Path(folder, "train")), image_folder(Path(folder, "test"))
    keep = np.concatenate([np.flatnonzero(train.y == c)[:per_class] for c in train.classes])
    picks = np.random.default_rng(0).permutation(len(test.y))[:test_size]
    return (Dataset(train.x[keep], train.y[keep], "cifar10"),
            Dataset(test.x[picks], test.y[picks], "test"))


def split(name: str):
    if name == "cifar10":
        return cifar10()
    if name == "mnist-10k":
        path = SHARED / "mnist_train10k_test10k.npz"
        with np.load(path) as d:
            train = validate(d["x_train"] / 255.0, d["y_train"], "mnist-10k train")
            test = validate(d["x_test"][:2000] / 255.0, d["y_test"][:2000], "mnist test")
        return train, test
    data = mnist_5k()
    order = np.random.default_rng(0).permutation(len(data.y))
    tr, te = order[:4000], order[4000:]
    return Dataset(data.x[tr], data.y[tr], "mnist-5k"), Dataset(data.x[te], data.y[te], "test")


def evaluate(x, y, test: Dataset, trigger, target: int, epochs: int):
    """(clean accuracy, ASR, model) of a proxy trained on (x, y)."""
    model = train_proxy(x, y, TrainConfig(epochs=epochs))
    _, logits = extract(model, test.x)
    accuracy = float((logits.argmax(1) == test.y).mean())
    others = test.x[test.y != target]
    _, triggered = extract(model, trigger(others))
    return accuracy, float((triggered.argmax(1) == target).mean()), model


def art_defences(model, x: np.ndarray, y: np.ndarray, rate: float) -> dict[str, tuple]:
    """ART's two poisoning defences as its documentation runs them, on the model trained on the
    poisoned data (as nn.Sequential, ART's preferred PyTorch form). Spectral signatures is told
    the true poison rate, which ART asks for and vet does not. Returns (flagged, seconds)."""
    try:
        import torch
        from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return {}
    logging.getLogger("art").setLevel(logging.ERROR)
    classes = int(y.max()) + 1
    sequential = torch.nn.Sequential(*model.body, model.head)
    classifier = PyTorchClassifier(model=sequential, loss=torch.nn.CrossEntropyLoss(),
                                   input_shape=x.shape[1:], nb_classes=classes,
                                   clip_values=(0.0, 1.0))
    onehot = np.eye(classes, dtype=np.float32)[y]
    x = x.astype(np.float32)
    flagged = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        _, clean = ActivationDefence(classifier, x, onehot).detect_poison(
            nb_clusters=2, nb_dims=10, reduce="PCA")
        flagged["ART ActivationDefence"] = (np.asarray(clean) == 0,
                                            time.perf_counter() - started)
        started = time.perf_counter()
        _, clean = SpectralSignatureDefense(classifier, x, onehot, batch_size=128,
                                            eps_multiplier=1.5,
                                            expected_pp_poison=rate).detect_poison()
        flagged["ART SpectralSignature"] = (np.asarray(clean) == 0,
                                            time.perf_counter() - started)
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", nargs="+", default=available(),
                        choices=["mnist-5k", "mnist-10k", "cifar10"])
    parser.add_argument("--attacks", nargs="+", default=["badnets", "blended", "wanet", "sig"])
    parser.add_argument("--rates", nargs="+", type=float, default=[0.01, 0.05, 0.1])
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--no-art", action="store_true", help="leave IBM ART out")
    args = parser.parse_args()
    target = 0
    header = (f"{'data':9s} {'attack':8s} {'rate':>5s} {'detector':24s} {'prec':>6s} "
              f"{'recall':>6s} {'FPR':>7s} {'AUROC':>6s} {'classes':>8s} {'ASR':>6s} "
              f"{'acc':>6s} {'sec':>6s}")
    print(f"target class {target}; ASR and acc from a proxy retrained on the kept data; "
          f"classes = suspected classes")
    print(header, flush=True)
    for name in args.data:
        if name != "mnist-5k" and name not in available():
            print(f"{name}: not in {SHARED}, skipped")
            continue
        train, test = split(name)
        started = time.perf_counter()
        clean = vet(train)
        print(f"{name:9s} {'none':8s} {0:5.2f} {DEFAULT:24s} {'':>6s} {'':>6s} "
              f"{len(clean.results['suspicious_indices']) / len(train.y):7.4f} {'':>6s} "
              f"{','.join(map(str, clean.results['suspected_classes'])) or '-':>8s} "
              f"{'':>6s} {'':>6s} {time.perf_counter() - started:6.1f}", flush=True)
        for attack in args.attacks:
            trigger = make_trigger(attack, train.x.shape[-2:])
            for rate in args.rates:
                run_case(name, attack, rate, train, test, trigger, target, args)


def run_case(name, attack, rate, train, test, trigger, target, args) -> None:
    bad = poison(train.x, train.y, trigger, rate, target, seed=1)
    truth = np.zeros(len(bad.y), dtype=bool)
    truth[bad.indices] = True
    accuracy, asr, model = evaluate(bad.x, bad.y, test, trigger, target, args.epochs)
    prefix = f"{name:9s} {attack:8s} {rate:5.2f}"
    print(f"{prefix} {'(no defence)':24s} {'':>6s} {'':>6s} {'':>7s} {'':>6s} {'':>8s} "
          f"{asr:6.3f} {accuracy:6.3f}", flush=True)

    def row(detector: str, flagged: np.ndarray, seconds: float, scores=None, classes="") -> None:
        tp = int((flagged & truth).sum())
        precision = tp / max(int(flagged.sum()), 1)
        recall = tp / max(int(truth.sum()), 1)
        fpr = int((flagged & ~truth).sum()) / int((~truth).sum())
        accuracy, asr, _ = evaluate(bad.x[~flagged], bad.y[~flagged], test, trigger, target,
                                    args.epochs)
        ranking = f"{auroc(np.asarray(scores), truth):6.3f}" if scores is not None else ""
        print(f"{prefix} {detector:24s} {precision:6.3f} {recall:6.3f} {fpr:7.4f} "
              f"{ranking:>6s} {classes or '-':>8s} {asr:6.3f} {accuracy:6.3f} {seconds:6.1f}",
              flush=True)

    for detector in args.detectors:
        started = time.perf_counter()
        report = vet(Dataset(bad.x, bad.y, "poisoned"), detector=detector)
        seconds = time.perf_counter() - started
        flagged = np.zeros(len(bad.y), dtype=bool)
        flagged[report.results["suspicious_indices"]] = True
        row(detector, flagged, seconds, report.results["scores"],
            ",".join(map(str, report.results["suspected_classes"])))
    if not args.no_art:
        for detector, (flagged, seconds) in art_defences(model, bad.x, bad.y, rate).items():
            row(detector, flagged, seconds)


if __name__ == "__main__":
    main()
