"""inspect and repair on a zoo: small CNNs on the embedded MNIST-5k, or (`--data cifar10`)
narrow VGG-11, PreAct-ResNet-18 and small ViT models on CIFAR-10 (JPEG).

The zoo (12 clean, 12 trojaned: BadNets with four patch placements and sizes, Blended with four
patterns, WaNet with four warps; targets drawn at random, 10% poisoned) is trained on 4,000
images (10 epochs); the other 1,000 are the user's clean data: inspect gets all of them, repair
gets 500 and the other 500 measure clean accuracy and the real trigger's attack success (ASR).
inspect's thresholds were chosen on the zoo of `--seed 1`; the default `--seed 0` measures them.
Prints, per model, inspect's verdict and scores, then ROC-AUC and verdict accuracy, the weight
classifier's leave-one-out ROC-AUC, and repair against plain fine-tuning.
CIFAR-10 (`--data cifar10`, when ../shared/datasets has it): the zoo (10 clean, 10 trojaned:
BadNets, Blended, WaNet, SIG, dynamic patches, a low-frequency trigger, adaptive blend) is
trained on 10,000 training images (12 epochs, shifts and flips); the user's clean data is 1,000
test images, repair gets 500 others and 1,000 more measure it.
Run: python benchmarks/bench_inspect.py [--data cifar10] [--zoo DIR] [--seed 0] [--repairs 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from trojanscope import __version__, cache
from trojanscope.attacks.trojan_models import ModelSpec, build_zoo, train_model
from trojanscope.bench.metrics import auroc
from trojanscope.data.datasets import Dataset, mnist_5k
from trojanscope.ml import open_model
from trojanscope.ml.ops import accuracy, predict
from trojanscope.model.inspect import inspect_config, inspect_model, reference_log_norms
from trojanscope.model.repair import RepairConfig, fine_tune, repair_model
from trojanscope.model.weights import read_zoo, reference_probability


def split(name: str, seed: int):
    if name == "cifar10":
        from trojanscope.data.cifar import cifar10

        found = cifar10(train_size=10000, seed=seed)
        if found is None:
            raise SystemExit("CIFAR-10 (JPEG) is not in ../shared/datasets")
        train, held = found
        order = np.random.default_rng(0).permutation(len(held.y))
        pick = lambda rows, name: Dataset(held.x[rows], held.y[rows], name)  # noqa: E731
        return train, pick(order[:1000], "clean"), pick(order[1000:1500], "repair"), \
            pick(order[1500:2500], "test")
    data = mnist_5k()
    order = np.random.default_rng(0).permutation(len(data.y))
    pick = lambda rows, name: Dataset(data.x[rows], data.y[rows], name)  # noqa: E731
    return pick(order[:4000], "zoo-train"), pick(order[4000:], "clean"), \
        pick(order[4000:4500], "repair"), pick(order[4500:], "test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zoo", type=Path, help="reuse a zoo built with this split")
    parser.add_argument("--seed", type=int, default=0, help="the zoo's seed (1: development)")
    parser.add_argument("--repairs", type=int, default=8, help="trojaned models to repair")
    parser.add_argument("--fast", action="store_true", help="inspect's --fast settings")
    parser.add_argument("--data", choices=["mnist-5k", "cifar10"], default="mnist-5k")
    parser.add_argument("--architectures", nargs="+",
                        default=["vgg11", "preact-resnet18", "vit-small"],
                        help="cifar10: the zoo's architectures, taken in turn")
    parser.add_argument("--models", type=int, default=0,
                        help="clean and trojaned models each (default: 12, cifar10 10)")
    parser.add_argument("--only", choices=["inspect", "variety", "weights", "repair"],
                        nargs="+", default=["inspect", "variety", "weights", "repair"])
    args = parser.parse_args()
    train, clean, repair_data, test = split(args.data, args.seed)
    folder = args.zoo or Path(tempfile.mkdtemp(prefix="zoo-"))
    colour = args.data == "cifar10"
    count = args.models or (10 if colour else 12)
    built = json.loads((folder / "zoo.json").read_text())["models"] \
        if (folder / "zoo.json").exists() else []
    if len(built) < 2 * count:  # build it, or finish an interrupted build
        started = time.perf_counter()
        build_zoo(train, folder, clean=count, trojaned=count, seed=args.seed,
                  epochs=12 if colour else 10,
                  architecture=args.architectures if colour else "cnn")
        print(f"zoo: {2 * count - len(built)} models trained in "
              f"{time.perf_counter() - started:.0f} s -> {folder}")

    entries = json.loads((folder / "zoo.json").read_text())["models"]
    config = inspect_config(fast=args.fast)
    if {"inspect", "variety"} & set(args.only):
        # The proxies' norms depend on the clean data and the settings only: once for all.
        started = time.perf_counter()
        reference = reference_log_norms(clean, config)
        print(f"reference (proxies trained on the clean data): "
              f"{time.perf_counter() - started:.1f} s, once per data set")
    if "inspect" in args.only:
        _inspect(entries, folder, clean, test, config, reference)
    if "variety" in args.only and not colour:
        _variety(train, clean, test, config, reference, folder)
    if "weights" in args.only:
        _weights(folder)
    if "repair" in args.only:
        _repairs(folder, entries, repair_data, test, args.repairs,
                 inspect_config(fast=args.fast))


def _inspect(entries, folder: Path, clean: Dataset, test: Dataset, config, reference) -> None:
    # Clean and trojaned models alternate, so a run stopped early still measures both kinds.
    clean_models = [e for e in entries if not e["trojaned"]]
    trojaned_models = [e for e in entries if e["trojaned"]]
    entries = [e for pair in zip(clean_models, trojaned_models) for e in pair] + \
        clean_models[len(trojaned_models):] + trojaned_models[len(clean_models):]
    print(f"{'model':9s} {'attack':14s} {'arch':16s} {'target':>6s} {'ASR':>5s} {'acc':>5s} "
          f"{'verdict':9s} {'found':>6s} {'shrink':>6s} {'UAP':>5s} {'warp':>5s} "
          f"{'score':>6s} {'sec':>5s}")
    print("(columns: ASR of the attacker's trigger and clean accuracy on held-out test images)")
    scores, truth, correct, seconds, alarms = [], [], 0, [], []
    # Each model's outcome is kept beside the zoo, so that a stopped run goes on where it was.
    kept_path = folder / "inspect-results.json"
    fingerprint = cache.key(__version__, clean.x, clean.y, asdict(config))
    kept = _kept(kept_path, fingerprint)
    for entry in entries:
        spec = _spec(entry)
        if "per_class" not in kept.get(entry["file"], {}):
            module = open_model(folder / entry["file"]).module
            started = time.perf_counter()
            report = inspect_model(module, clean, config, name=entry["file"],
                                   reference=reference)
            per = report.results["per_class"]
            kept[entry["file"]] = {
                "seconds": time.perf_counter() - started,
                "asr": _asr(module, spec, test) if spec.attack else float("nan"),
                "accuracy": accuracy(module, test.x, test.y),
                **{k: report.results[k] for k in ("verdict", "target_classes", "score")},
                **{k: max(c[k] for c in per)
                   for k in ("mask_shrink", "perturbation_lift", "warp_lift")},
                # every class's searches, so that a change of calibration can be measured
                # on the kept searches (the reference is the only input that changes)
                "per_class": {k: [c[k] for c in per] for k in (
                    "mask_norm", "trigger_success", "perturbation_success", "warp_success")},
                # and every class's scores whole: what bench_harden_inspect.py checks a
                # hardened scorer on
                "classes": per}
            kept_path.write_text(json.dumps({"fingerprint": fingerprint, "models": kept}))
        outcome = kept[entry["file"]]
        seconds.append(outcome["seconds"])
        found = outcome["target_classes"]
        alarms.append(outcome["verdict"] == "trojaned")
        right = (found == [spec.target]) if spec.attack else not found
        correct += right
        scores.append(outcome["score"])
        truth.append(bool(spec.attack))
        print(f"{entry['file'][:9]:9s} {spec.attack or 'clean':14s} "
              f"{spec.architecture:16s} {spec.target if spec.attack else '-':>6} "
              f"{outcome['asr']:5.2f} {outcome['accuracy']:5.3f} "
              f"{outcome['verdict']:9s} {','.join(map(str, found)) or '-':>6s} "
              f"{outcome['mask_shrink']:6.2f} {outcome['perturbation_lift']:5.2f} "
              f"{outcome['warp_lift']:5.2f} {scores[-1]:6.2f} {seconds[-1]:5.1f}", flush=True)
    truth_arr, scores_arr = np.array(truth), np.array(scores)
    clean_alarms = sum(not t and flagged for t, flagged in zip(truth, alarms))
    print(f"inspect: ROC-AUC {auroc(scores_arr, truth_arr):.3f}, verdict and target right for "
          f"{correct}/{len(entries)}, verdict 'trojaned' on clean models {clean_alarms}/"
          f"{int((~truth_arr).sum())}, {np.mean(seconds):.1f} s per model "
          f"({_threads()} torch threads) after the reference")


# Clean models unlike the zoo's: other architectures, under- and over-trained. The proxies
# are CNNs of width 32; a verdict must not depend on the model looking like them.
VARIETY = [("cnn", 8, 3), ("cnn", 8, 10), ("cnn", 32, 10), ("cnn", 16, 30),
           ("lenet", 16, 3), ("lenet", 16, 10), ("mlp", 16, 3), ("mlp", 16, 10)]


def _variety(train: Dataset, clean: Dataset, test: Dataset, config, reference,
             folder: Path) -> None:
    print(f"\n{'architecture':13s} {'width':>5s} {'epochs':>6s} {'acc':>5s} {'verdict':9s} "
          f"{'found':>6s} {'score':>6s}")
    alarms = 0
    # kept beside the zoo as the zoo's results are (bench_harden_inspect.py reads them)
    kept_path = folder / "variety-results.json"
    fingerprint = cache.key(__version__, train.x, train.y, clean.x, clean.y, asdict(config))
    kept = _kept(kept_path, fingerprint)
    for architecture, width, epochs in VARIETY:
        name = f"{architecture}-{width}-{epochs}"
        if name not in kept:
            module, _ = train_model(train, ModelSpec(None, seed=7, architecture=architecture),
                                    epochs=epochs, width=width)
            report = inspect_model(module, clean, config, reference=reference)
            kept[name] = {"accuracy": accuracy(module, test.x, test.y),
                          **{k: report.results[k] for k in ("verdict", "target_classes",
                                                             "score", "per_class")}}
            kept_path.write_text(json.dumps({"fingerprint": fingerprint, "models": kept}))
        outcome = kept[name]
        found = outcome["target_classes"]
        alarms += bool(found)
        print(f"{architecture:13s} {width:5d} {epochs:6d} {outcome['accuracy']:5.3f} "
              f"{outcome['verdict']:9s} {','.join(map(str, found)) or '-':>6s} "
              f"{outcome['score']:6.2f}", flush=True)
    print(f"clean models of other architectures and training lengths: verdict 'trojaned' on "
          f"{alarms}/{len(VARIETY)}")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _kept(path: Path, fingerprint: str) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found["models"] if found.get("fingerprint") == fingerprint else {}


def _spec(entry: dict) -> ModelSpec:
    return ModelSpec(entry["attack"], entry["target"], entry["rate"], entry["seed"],
                     entry["variant"], entry.get("architecture", "cnn"))


def _asr(module, spec: ModelSpec, test: Dataset) -> float:
    trigger = spec.trigger(test.x.shape[-2:])
    others = test.x[test.y != spec.target]
    return float((predict(module, trigger(others)) == spec.target).mean())


def _weights(folder: Path) -> None:
    """Leave one out: each model scored by a classifier fitted on the zoo's other models of
    its architecture."""
    models = [(open_model(path, spec).weights(), trojaned)
              for path, trojaned, spec in read_zoo(folder)]
    probabilities = [reference_probability(arrays, models[:i] + models[i + 1:])
                     for i, (arrays, _) in enumerate(models)]
    truth = np.array([t for _, t in models])
    predicted = np.array(probabilities) >= 0.5
    print(f"weights (leave-one-out): ROC-AUC {auroc(np.array(probabilities), truth):.3f}, "
          f"accuracy {(predicted == truth).mean():.2f}")


def _repairs(folder: Path, entries, repair_data: Dataset, test: Dataset, count: int,
             config) -> None:
    print(f"\n{'model':9s} {'attack':14s} {'method':22s} {'ASR':>12s} {'clean acc':>14s} "
          f"{'fine-tune ASR':>14s} {'fine-tune acc':>14s} {'sec':>5s}")
    chosen = [e for e in entries if e["trojaned"]][:count]
    for entry in chosen:
        model = open_model(folder / entry["file"])  # its clone knows the format
        module = model.module
        spec = _spec(entry)
        started = time.perf_counter()
        repaired, report = repair_model(model, repair_data, RepairConfig(inspect=config))
        took = time.perf_counter() - started
        # The baseline: plain fine-tuning with the same settings on all the repair data.
        baseline = model.clone().module
        fine_tune(baseline, repair_data, RepairConfig(inspect=config), {})
        print(f"{entry['file'][:9]:9s} {spec.attack:14s} {report.results['method']:22s} "
              f"{_asr(module, spec, test):5.3f}->{_asr(repaired, spec, test):5.3f} "
              f"{accuracy(module, test.x, test.y):6.3f}->{accuracy(repaired, test.x, test.y):6.3f} "
              f"{_asr(baseline, spec, test):14.3f} {accuracy(baseline, test.x, test.y):14.3f} "
              f"{took:5.0f}", flush=True)


if __name__ == "__main__":
    main()
