"""The work that needs a model file loaded: inspect, repair, diff, and a model's features for
vet. Each job takes a JSON-able payload of paths and settings, opens the model files through the
scan gate (`ml.open_model`) and returns JSON (a report's dict). The command line runs them in a
child process (`run_in_child`), so that the process that talks to the user never loads a model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from .child import JobError, run_in_child

JOBS: dict[str, Callable[[dict], dict]] = {}

__all__ = ["JOBS", "JobError", "run_in_child"]


def job(name: str):
    def register(function: Callable[[dict], dict]):
        JOBS[name] = function
        return function
    return register


def _report(report) -> dict:
    """The report's JSON, and its images (PNG bytes, which the JSON leaves out) in base64."""
    import base64

    from ..render.json import report_to_dict

    answer = report_to_dict(report)
    images = getattr(report.results, "images", None)
    if images:
        answer["images"] = {name: base64.b64encode(png).decode() for name, png in images.items()}
    return answer


@job("inspect")
def inspect_job(p: dict) -> dict:
    """model, architecture, data, seed, fast, reference (zoo or None)"""
    from ..data.datasets import load
    from ..ml import open_model
    from ..model.inspect import inspect_config, inspect_model
    from ..model.weights import with_reference

    data = load(p["data"])
    model = open_model(p["model"], p.get("architecture"))
    report = inspect_model(model, data, inspect_config(p["seed"], p["fast"]), name=p["model"])
    if p.get("reference"):
        report = with_reference(report, model, Path(p["reference"]), seed=p["seed"])
    return _report(report)


@job("repair")
def repair_job(p: dict) -> dict:
    """model, architecture, data, seed, fast, epochs, method ("auto" or one), out"""
    from ..data.datasets import load
    from ..ml import open_model
    from ..model.inspect import inspect_config
    from ..model.repair import RepairConfig, repair_model

    data = load(p["data"])
    model = open_model(p["model"], p.get("architecture"))
    if not model.differentiable:
        raise JobError(f"{p['model']}: repair trains the model, which needs gradients; an "
                       "ONNX model has none here (export it from its framework as a state dict "
                       "or with torch.export)")
    config = RepairConfig(seed=p["seed"], epochs=p["epochs"],
                          inspect=inspect_config(p["seed"], p["fast"]))
    repaired, report = repair_model(model, data, config, name=p["model"],
                                    only=None if p["method"] == "auto" else p["method"])
    try:
        replace(model, module=repaired).save(Path(p["out"]))
    except OSError as exc:
        raise JobError(f"{p['out']}: cannot write: {exc.strerror or exc}") from None
    return _report(report)


@job("diff")
def diff_job(p: dict) -> dict:
    """old, new (model files), architecture (for state dicts; both)"""
    from ..ml import open_model
    from ..model.weights import diff_models

    old = open_model(p["old"], p.get("architecture"), device="cpu")
    new = open_model(p["new"], p.get("architecture"), device="cpu")
    return _report(diff_models(old.weights(), new.weights(), (p["old"], p["new"])))


@job("features")
def features_job(p: dict) -> dict:
    """model, architecture, inputs (.npy of images), layer, out (.npy written): the model's
    features of every image, for vet's feature-based detectors."""
    import numpy as np

    from ..ml import open_model

    model = open_model(p["model"], p.get("architecture"))
    x = np.load(p["inputs"], mmap_mode="r", allow_pickle=False)
    if not p.get("layer"):
        shown = ", ".join(model.layers()[-6:])
        raise JobError(f"--layer is needed with --model: one of the last layers: {shown}")
    features = model.features(x, p["layer"])
    np.save(p["out"], features.astype(np.float32), allow_pickle=False)
    return {"shape": list(features.shape)}


@job("vet")
def vet_job(p: dict) -> dict:
    """data (a file vet reads): the report and the most suspicious samples (caption -> PNG in
    base64), for the service's workers, which keep the data's reading out of their process"""
    import base64

    from .. import api
    from ..render.json import report_to_dict

    data = api.load_data(p["data"])
    report = api.vet(data, seed=p.get("seed", 0))
    images = {caption: base64.b64encode(png).decode()
              for caption, png in api.suspicious_samples(data, report).items()}
    return {"report": report_to_dict(report), "images": images}

