"""Hugging Face image classifiers (config.json + model.safetensors) through transformers, with
their preprocessing (resize, normalise) done inside the module, so that they take (N, 3, H, W)
images in [0, 1] like every other model here and gradients reach the pixels."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .gate import ModelError, first_line, json_object
from .model import Model

MAX_SIDE = 1024  # pixels: larger inputs than image classifiers take (each step resizes to it)


def load_image_classifier(path: Path) -> Model:
    try:
        import torch
        from transformers import AutoModelForImageClassification
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise ModelError(f"{path}: Hugging Face folders need {exc.name}: pip install "
                         "'trojanscope[huggingface]'") from None
    pre = _preprocessing(path)  # cheap checks before the weights are read
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        inner = AutoModelForImageClassification.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False)
    except Exception as exc:  # a hostile config.json fails in many ways inside transformers
        raise ModelError(f"{path}: not a loadable image classifier: {first_line(exc)}") \
            from None

    class ImageClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = inner
            self.register_buffer("mean", torch.tensor(pre["mean"]).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(pre["std"]).view(1, -1, 1, 1))

        def forward(self, x):
            if pre["size"] is not None and tuple(x.shape[-2:]) != pre["size"]:
                x = torch.nn.functional.interpolate(x, size=pre["size"], mode="bilinear",
                                                    align_corners=False)
            return self.model(pixel_values=(x - self.mean) / self.std).logits

    def save(module, out: Path) -> None:
        module.model.save_pretrained(str(out), safe_serialization=True)
        if pre["config"] is not None:  # what was read and checked, not the file copied
            (Path(out) / "preprocessor_config.json").write_text(json.dumps(pre["config"]))

    return Model(ImageClassifier().eval(), "huggingface", str(path), saver=save)


def _preprocessing(path: Path) -> dict:
    """Mean, std and input size from preprocessor_config.json (or no change without one),
    every value checked."""
    config = None
    file = path / "preprocessor_config.json"
    if file.is_file():
        config = json_object(file)
    given = config or {}
    normalise = given.get("do_normalize", True) is not False
    mean = given.get("image_mean", [0.5] * 3) if normalise else [0.0] * 3
    std = given.get("image_std", [0.5] * 3) if normalise else [1.0] * 3
    for name, values in (("image_mean", mean), ("image_std", std)):
        if not (isinstance(values, list) and len(values) == 3 and
                all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                    math.isfinite(v) for v in values)):
            raise ModelError(f"{file}: {name} must be three finite numbers")
    if any(v <= 0 for v in std):
        raise ModelError(f"{file}: image_std must be positive")
    size = given.get("size") if given.get("do_resize", True) is not False else None
    if isinstance(size, dict):
        size = (size.get("height"), size.get("width")) if "height" in size else \
            (size.get("shortest_edge"),) * 2
    elif isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if size is not None and not (isinstance(size, tuple) and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_SIDE
            for s in size)):
        raise ModelError(f"{file}: the image size must be whole pixels up to {MAX_SIDE}, not "
                         f"{str(size)[:60]}")
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
            "size": tuple(size) if size else None, "config": config}
