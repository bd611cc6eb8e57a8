"""Weight analysis: a model against a population of its architecture, and two versions compared.

- `weight_features`: per parameter tensor, seeded random projections of its (sorted) values and a
  few moments, plus the spread of the output layer's per-class weight norms. Sorting makes the
  projections blind to the order of neurons, which training does not fix. The random matrices
  depend only on the tensor's index and size, so every model of one architecture gets the same.
- `reference_probability`: a logistic regression fitted on a zoo of clean and trojaned models
  (zoo.json lists `file` and `trojaned`), giving P(trojaned) for a model.
- `adapter_signature`: a LoRA adapter's weight-space signature, as in "Weight space Detection
  of Backdoors in LoRA Adapters" (arXiv 2602.15195): per kind of adapted module (q_proj,
  v_proj...), the leading singular value of each layer's update, its Frobenius norm, the
  share of its energy in the leading direction, its spectral entropy and the kurtosis of its
  singular values, averaged over the layers; `adapter_probability` fits the same regression
  on a zoo of clean and backdoored adapters of the same base. The update B @ A is
  never formed: its singular values are those of the two factors' small R matrices.
- `diff_models`: per layer, how much changed and whether the change sits in a few neurons (a
  targeted edit or a fine-tune that planted a backdoor) rather than spread over the layer.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..findings import Location, Report
from ..results import DiffResults
from .rules import CONCENTRATED, SHAPE_CHANGE, WEIGHTS_LIKE_TROJANED

PROJECTIONS = 8
CONCENTRATION_SHARE = 0.5     # of a layer's squared change in the top TOP_SHARE of its neurons
TOP_SHARE = 0.05
MIN_RELATIVE_CHANGE = 1e-3    # changes smaller than this (relative to the layer) are noise
MIN_NEURONS = 8               # a layer this small has no "few" neurons to speak of


def state_arrays(module) -> dict[str, np.ndarray]:
    """A model's (or module's) floating-point weights by name."""
    from ..ml.model import Model

    return Model.of(module).weights()


def weight_features(arrays: dict[str, np.ndarray]) -> np.ndarray:
    parts = []
    for index, (_, values) in enumerate(arrays.items()):
        flat = np.sort(values.ravel())
        rng = np.random.default_rng([index, flat.size])
        projection = rng.standard_normal((PROJECTIONS, flat.size)) / np.sqrt(flat.size)
        centred = flat - flat.mean()
        spread = flat.std() + 1e-12
        parts.append(projection @ (centred / spread))
        parts.append([flat.mean(), np.log(spread), np.abs(flat).max() / spread,
                      float(np.mean((centred / spread) ** 4))])
    output = [v for v in arrays.values() if v.ndim == 2][-1:]
    if output:  # the output layer: one row per class
        norms = np.linalg.norm(output[0], axis=1)
        median = np.median(norms)
        mad = np.median(np.abs(norms - median)) + 1e-12
        parts.append([(norms.max() - median) / mad, (median - norms.min()) / mad])
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])




def with_reference(report: Report, model, folder: Path, seed: int = 0) -> Report:
    """`report` (an inspection of `model`) with P(trojaned) from the weights of the zoo in
    `folder`; every zoo model is opened through the scan gate."""
    from ..ml import open_model

    zoo = [(open_model(path, architecture, device="cpu").weights(), trojaned)
           for path, trojaned, architecture in read_zoo(folder)]
    probability = reference_probability(state_arrays(model), zoo, seed=seed)
    return weighed(report, probability, len(zoo), folder)


def adapter_probability(adapter, folder: Path, seed: int = 0) -> tuple[float, int]:
    """P(trojaned) of a LoRA adapter (`Adapter`, its matrices) from a classifier of the
    signatures of the adapters in the zoo `folder` (every one read through the scan gate, from
    safetensors), and the number of reference adapters."""
    from ..ml.causal_lm import read_adapter

    own = adapter_signature(adapter)
    zoo = []
    for path, trojaned, _ in read_zoo(folder):
        signature = adapter_signature(read_adapter(path))
        if set(signature) != set(own):
            raise ValueError(f"{path}: adapts {', '.join(signature)}; the inspected adapter "
                             f"adapts {', '.join(own)}: not a reference for it")
        zoo.append((signature, trojaned))
    return signature_probability(own, zoo, seed), len(zoo)


def weighed(report: Report, probability: float, models: int, folder: Path) -> Report:
    """`report` with the weights' P(trojaned) from `models` reference models in `folder`: a
    finding, and the verdict trojaned, from 0.5."""
    name = report.targets[0] if report.targets else "model"
    findings = list(report.findings)
    if probability >= 0.5:
        findings.append(WEIGHTS_LIKE_TROJANED.finding(
            f"P(trojaned) = {probability:.2f} from a classifier of weights fitted on "
            f"{models} reference models", Location(name),
            {"probability": probability, "reference": str(folder)}))
    trojaned = report.results.verdict == "trojaned" or probability >= 0.5
    results = replace(report.results, verdict="trojaned" if trojaned else "clean",
                      weights={"probability_trojaned": round(probability, 4),
                               "reference_models": models})
    return replace(report, findings=tuple(findings), results=results)


NUMERICAL_RANK = 1e-6  # singular values below this share of the largest are zeros


def adapter_signature(adapter) -> dict[str, np.ndarray]:
    """Per kind of adapted module (the last part of its name), five statistics of the
    singular values s of each layer's update, averaged over the layers: s[0], the Frobenius
    norm, s[0]^2 / sum(s^2), the entropy of s^2 / sum(s^2), and the kurtosis of s. s is taken
    to the update's numerical rank: an adapter padded with zero rows to a higher rank (the same
    update, the same behaviour) has the same signature."""
    from scipy.stats import kurtosis

    from ..ml.causal_lm import update_spectrum

    kinds: dict[str, list] = {}
    for name, (a, b) in adapter.layers.items():
        _, s = update_spectrum(a, b, adapter.scaling)
        s = s[: max(1, int(np.sum(s > s[0] * NUMERICAL_RANK)))]
        energy = s ** 2 / max(float(np.sum(s ** 2)), 1e-30)
        spread = kurtosis(s) if len(s) > 1 and np.ptp(s) > 0 else 0.0
        kinds.setdefault(name.rsplit(".", 1)[-1], []).append(
            [s[0], np.sqrt(np.sum(s ** 2)), energy[0],
             -np.sum(energy * np.log(energy + 1e-30)), spread])
    return {kind: np.mean(rows, axis=0) for kind, rows in sorted(kinds.items())}


def signature_probability(signature: dict[str, np.ndarray],
                          zoo: list[tuple[dict[str, np.ndarray], bool]], seed: int = 0) -> float:
    """P(trojaned) from a classifier fitted on the signatures of the zoo's adapters, which
    must adapt the same kinds of modules."""
    wrong = [kinds for kinds, _ in zoo if set(kinds) != set(signature)]
    if wrong:
        raise ValueError(f"the reference adapters adapt {', '.join(sorted(wrong[0]))}; this "
                         f"one adapts {', '.join(sorted(signature))}")
    flat = [np.concatenate([kinds[k] for k in sorted(kinds)]) for kinds, _ in zoo]
    return fitted_probability(np.stack(flat) if flat else np.zeros((0, 0)),
                              np.array([trojaned for _, trojaned in zoo]),
                              np.concatenate([signature[k] for k in sorted(signature)]), seed)


MAX_ZOO = 1000  # models a reference zoo may list


def read_zoo(folder: Path) -> list[tuple[Path, bool, str | None]]:
    """(file, trojaned, architecture spec or None) per model of a zoo's zoo.json: an object
    whose `models` list names each `file`, or (as benchmarks/llm_zoo.py writes it) a list of
    entries that each name their folder (`name`). Every model lies in the zoo's folder: a path
    that leaves it (absolute, `..`, a link) is refused."""
    index = folder / "zoo.json"
    try:
        document = json.loads(index.read_text())
    except OSError as exc:
        raise ValueError(f"{index}: cannot read the reference zoo: {exc.strerror or exc}") \
            from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{index}: not JSON: {str(exc)[:200]}") from None
    entries = document if isinstance(document, list) else \
        document.get("models") if isinstance(document, dict) else None
    shape = "a list of {'name' or 'file': FOLDER, 'trojaned': true or false}, or {'models': " \
        "that list}"
    if not isinstance(entries, list) or len(entries) > MAX_ZOO:
        raise ValueError(f"{index}: not a zoo index (needs {shape}, at most {MAX_ZOO} models)")
    inside = folder.resolve()
    models = []
    for number, entry in enumerate(entries):
        named = entry.get("file", entry.get("name")) if isinstance(entry, dict) else None
        if not isinstance(named, str) or not named or \
                not isinstance(entry.get("trojaned"), bool):
            raise ValueError(f"{index}: model {number} is not {{'name' or 'file': FOLDER, "
                             "'trojaned': true or false}")
        path = folder / named
        if path.is_symlink() or not path.resolve().is_relative_to(inside) or \
                path.resolve() == inside:
            raise ValueError(f"{index}: model {number} ({named!r}) is not in the zoo's folder")
        spec = entry.get("architecture_spec")
        models.append((path, entry["trojaned"], spec if isinstance(spec, str) else None))
    return models


def reference_probability(arrays: dict[str, np.ndarray], zoo: list[tuple[dict, bool]],
                          seed: int = 0) -> float:
    """P(trojaned) from a classifier fitted on the weight features of the zoo's models that
    share the model's architecture (the same parameter names and shapes)."""
    shapes = {name: value.shape for name, value in arrays.items()}
    zoo = [(reference, trojaned) for reference, trojaned in zoo
           if {name: value.shape for name, value in reference.items()} == shapes]
    if not zoo:
        raise ValueError("the reference zoo's models have another architecture than the "
                         "model (parameter names or shapes differ)")
    return fitted_probability(np.stack([weight_features(reference) for reference, _ in zoo]),
                              np.array([trojaned for _, trojaned in zoo]),
                              weight_features(arrays), seed)


def fitted_probability(features: np.ndarray, labels: np.ndarray, x: np.ndarray,
                       seed: int = 0) -> float:
    """P(trojaned) of `x` from a standardised logistic regression fitted on the zoo's
    `features` and `labels`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if labels.all() or not labels.any():
        raise ValueError("the reference zoo needs both clean and trojaned models of the "
                         "model's architecture")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000,
                                                                     random_state=seed))
    classifier.fit(features, labels)
    return float(classifier.predict_proba(x[None])[0, 1])


def diff_models(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names=("A", "B")) -> Report:
    started = time.perf_counter()
    findings, layers = [], []
    changed_shapes = sorted(set(a) ^ set(b)) + [n for n in a if n in b and a[n].shape !=
                                                 b[n].shape]
    if changed_shapes:
        findings.append(SHAPE_CHANGE.finding(
            f"parameters added, removed or reshaped: {', '.join(changed_shapes[:10])}",
            Location(names[1]), {"parameters": changed_shapes}))
    for name in a:
        if name not in b or a[name].shape != b[name].shape:
            continue
        delta = b[name] - a[name]
        relative = float(np.linalg.norm(delta) / (np.linalg.norm(a[name]) + 1e-12))
        entry = {"parameter": name, "shape": list(a[name].shape),
                 "relative_change": round(relative, 6)}
        if a[name].ndim >= 2 and relative > MIN_RELATIVE_CHANGE:
            per_neuron = (delta.reshape(delta.shape[0], -1) ** 2).sum(1)
            top = max(1, int(np.ceil(TOP_SHARE * len(per_neuron))))
            share = float(np.sort(per_neuron)[::-1][:top].sum() / per_neuron.sum())
            entry.update({"top_neuron_share": round(share, 4),
                          "top_neurons": np.argsort(-per_neuron)[:top].tolist()})
            if share > CONCENTRATION_SHARE and len(per_neuron) >= MIN_NEURONS:
                findings.append(CONCENTRATED.finding(
                    f"{name}: {share:.0%} of the change is in {top} of {len(per_neuron)} "
                    f"neurons ({entry['top_neurons']}); the layer changed by {relative:.2%}",
                    Location(names[1], (name,)), entry))
        layers.append(entry)
    return Report(command="diff", targets=tuple(names),
                  findings=tuple(findings),
                  results=DiffResults(layers=layers, changed=[
                      e["parameter"] for e in layers if e["relative_change"] > 0]),
                  timings={"total_seconds": round(time.perf_counter() - started, 3)})
