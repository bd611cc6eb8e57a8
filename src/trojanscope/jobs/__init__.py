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
    """model, architecture, data, seed, fast, reference (zoo or None), scorer (file or None)"""
    from ..data.datasets import load
    from ..ml import open_model
    from ..model.inspect import inspect_config, inspect_model
    from ..model.weights import with_reference

    adapter = _adapter_or_merged(p)
    texts = None if adapter else _text_data(p)
    if p.get("scorer") and (adapter or texts is not None):
        raise JobError("--scorer (the hardened inspect) is for image classifiers")
    if adapter:
        return _inspect_adapter(p)
    if texts is not None:
        from ..ml.formats import open_text_model
        from ..model.text_inspect import inspect_text_model, text_inspect_config

        if p.get("reference"):
            raise JobError("--reference (a zoo of models) is for image classifiers and LoRA "
                           "adapters")
        model = open_text_model(p["model"])
        return _report(inspect_text_model(model, texts, text_inspect_config(p["seed"],
                                                                            p["fast"]),
                                          name=p["model"]))
    scorer = "shipped"
    if p.get("scorer"):
        from ..model.inspect_scorer import load as load_scorer

        scorer = load_scorer(Path(p["scorer"]))
    data = load(p["data"])
    model = open_model(p["model"], p.get("architecture"))
    report = inspect_model(model, data, inspect_config(p["seed"], p["fast"]), name=p["model"],
                           scorer=scorer)
    if p.get("reference"):
        report = with_reference(report, model, Path(p["reference"]), seed=p["seed"])
    return _report(report)


def _adapter_or_merged(p: dict) -> bool:
    """A LoRA adapter folder (on --base), or a causal LM given with --base (a merged model);
    --base with anything else is an error."""
    from ..ml.causal_lm import is_causal_lm

    if (Path(p["model"]) / "adapter_config.json").is_file():
        return True
    if not p.get("base"):
        return False
    if is_causal_lm(p["model"]):
        return True
    raise JobError(f"--base is for LoRA adapters and merged language models; {p['model']} is "
                   "neither (no adapter_config.json; not a .gguf or a *ForCausalLM folder)")


def _inspect_adapter(p: dict) -> dict:
    from ..model.llm_inspect import inspect_adapter, llm_inspect_config
    from ..model.weights import adapter_probability, weighed

    prompts, lm, matrices, merged = _adapter_and_prompts(p)
    # a zoo of clean and backdoored adapters of the same base: read before minutes of
    # inspection, so that a bad one is named at once
    weights = adapter_probability(matrices(), Path(p["reference"]), p["seed"]) \
        if p.get("reference") else None
    report = inspect_adapter(lm, prompts, llm_inspect_config(p["seed"], p["fast"]),
                             name=p["model"])
    if weights is not None:
        report = weighed(report, *weights, Path(p["reference"]))
    if merged is not None:
        report = replace(report, results=replace(report.results, merged=merged.as_dict()))
    return _report(report)


def _adapter_and_prompts(p: dict):
    """The prompts in --data; the adapter on its base, or a merged model read as its base plus
    an adapter (each scanned, then loaded); a function that gives the adapter's matrices; and,
    for a merged model, what its adapter kept (else None)."""
    from ..data.text import is_text_source, load_prompts
    from ..ml.causal_lm import open_causal_lm, read_adapter
    from ..ml.merged_lm import open_merged_lm

    if not is_text_source(p.get("data")):
        given = f"{p['data']!r} is not" if p.get("data") else "none was given"
        raise JobError(f"{p['model']}: a LoRA adapter needs prompts of its task (--data "
                       f"prompts.csv, .tsv or .jsonl with a text or prompt column); {given}")
    prompts = load_prompts(p["data"])
    if (Path(p["model"]) / "adapter_config.json").is_file():
        return prompts, open_causal_lm(p.get("base"), p["model"]), \
            lambda: read_adapter(Path(p["model"])), None
    lm, matrices, merged = open_merged_lm(p["model"], p["base"])
    return prompts, lm, lambda: matrices, merged


def _text_data(p: dict):
    """The texts when the model is a text classifier (None for an image model); a clear error
    when the model and the data are of different kinds."""
    from ..data.text import is_text_source, load_text
    from ..ml.formats import is_text_classifier

    text_data = is_text_source(p.get("data"))
    # a folder given with texts is read as a text classifier (its errors are then the right
    # ones: no config.json, no tokenizer...)
    text_model = is_text_classifier(p["model"]) or (text_data and Path(p["model"]).is_dir())
    if text_model and not text_data:
        given = f"{p['data']!r} is not" if p.get("data") else "none was given"
        raise JobError(f"{p['model']}: a text classifier needs clean texts with labels "
                       f"(--data texts.csv, .tsv or .jsonl); {given}")
    if text_data and not text_model:
        raise JobError(f"{p['data']}: texts, but {p['model']} is not a Hugging Face text "
                       "classifier (a folder with config.json, model.safetensors and its "
                       "tokenizer)")
    return load_text(p["data"]) if text_model else None


@job("repair")
def repair_job(p: dict) -> dict:
    """model, architecture, data, seed, fast, epochs, method ("auto" or one), out"""
    from ..data.datasets import load
    from ..ml import open_model
    from ..model.inspect import inspect_config
    from ..model.repair import RepairConfig, repair_model

    if _adapter_or_merged(p):
        return _repair_adapter(p)
    if p.get("answer"):
        raise JobError(f"--answer is for LoRA adapters; {p['model']} is not one (no "
                       "adapter_config.json)")
    texts = _text_data(p)
    if texts is not None:
        return _repair_text(p, texts)
    data = load(p["data"])
    model = open_model(p["model"], p.get("architecture"))
    if not model.differentiable:
        raise JobError(f"{p['model']}: repair trains the model, which needs gradients; an "
                       "ONNX model has none here (export it from its framework as a state dict "
                       "or with torch.export)")
    config = RepairConfig(seed=p["seed"], epochs=p.get("epochs") or 10,
                          inspect=inspect_config(p["seed"], p["fast"]))
    repaired, report = repair_model(model, data, config, name=p["model"],
                                    only=None if p["method"] == "auto" else p["method"])
    try:
        replace(model, module=repaired).save(Path(p["out"]))
    except OSError as exc:
        raise JobError(f"{p['out']}: cannot write: {exc.strerror or exc}") from None
    return _report(report)


def _repair_text(p: dict, texts) -> dict:
    from ..ml.formats import open_text_model
    from ..model.text_inspect import text_inspect_config
    from ..model.text_repair import TextRepairConfig, repair_text_model

    if p["method"] not in ("auto", "unlearn"):
        raise JobError(f"--method {p['method']} is for image classifiers; a text classifier "
                       "is repaired by unlearning its recovered triggers (unlearn)")
    out = _new_folder(p["out"], "a repaired text classifier")
    model = open_text_model(p["model"])
    config = TextRepairConfig(seed=p["seed"], epochs=p.get("epochs") or 2,
                              inspect=text_inspect_config(p["seed"], p["fast"]))
    repaired, report = repair_text_model(model, texts, config, name=p["model"])
    try:
        repaired.save(out)
    except OSError as exc:
        raise JobError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return _report(report)


def _repair_adapter(p: dict) -> dict:
    from ..model.llm_inspect import llm_inspect_config
    from ..model.llm_repair import LLMRepairConfig, repair_adapter

    if p["method"] not in ("auto", "unlearn"):
        raise JobError(f"--method {p['method']} is for image classifiers; a LoRA adapter is "
                       "repaired by unlearning the backdoor's answer (unlearn)")
    if p.get("epochs"):
        raise JobError("--epochs is for classifiers; a LoRA adapter is repaired in rounds of "
                       "its own")
    out = _new_folder(p["out"], "a repaired adapter")
    prompts, lm, _, merged = _adapter_and_prompts(p)
    if merged is not None and merged.outside:
        raise JobError(f"{p['model']}: changes {', '.join(merged.outside[:3])} besides its "
                       "linear layers, which a repaired adapter for the base cannot carry; "
                       "inspect reads them, repair does not")
    config = LLMRepairConfig(seed=p["seed"], inspect=llm_inspect_config(p["seed"], p["fast"]))
    lm, report = repair_adapter(lm, prompts, config, name=p["model"], answer=p.get("answer"))
    try:
        lm.save_adapter(out)
    except OSError as exc:
        raise JobError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return _report(report)


def _new_folder(path: str, what: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise JobError(f"{out}: {what} is written as a new folder; this is a file")
    if out.exists() and any(out.iterdir()):
        raise JobError(f"{out}: {what} is written as a new folder; this one exists and is not "
                       "empty")
    return out


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


@job("text-features")
def text_features_job(p: dict) -> dict:
    """model (a Hugging Face text classifier), texts (.jsonl written by the caller), out
    (.npy written): the classifier's features of every text."""
    import numpy as np

    from ..data.text import load_text
    from ..ml.formats import is_text_classifier, open_text_model

    if not is_text_classifier(p["model"]):
        raise JobError(f"{p['model']}: for texts, --model is a Hugging Face text classifier "
                       "(a folder with config.json, model.safetensors and its tokenizer)")
    model = open_text_model(p["model"])
    texts = load_text(p["texts"])
    features = model.features(list(texts.texts), progress="text features")
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

