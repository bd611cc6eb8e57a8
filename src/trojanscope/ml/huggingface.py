"""Hugging Face image classifiers (config.json + model.safetensors) through transformers, with
their preprocessing (resize, normalise) done inside the module, so that they take (N, 3, H, W)
images in [0, 1] like every other model here and gradients reach the pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .gate import ModelError
from .model import Model


def load_image_classifier(path: Path) -> Model:
    try:
        import torch
        from transformers import AutoModelForImageClassification
    except ImportError as exc:
        raise ModelError(f"{path}: Hugging Face folders need {exc.name}: pip install "
                         "'trojanscope[huggingface]'") from None
    try:
        inner = AutoModelForImageClassification.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc
        raise ModelError(f"{path}: not a loadable image classifier: {first}") from None
    pre = _preprocessing(path)

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
        for name in ("preprocessor_config.json",):
            if (path / name).is_file():
                shutil.copyfile(path / name, Path(out) / name)

    return Model(ImageClassifier().eval(), "huggingface", str(path), saver=save)


def _preprocessing(path: Path) -> dict:
    """Mean, std and input size from preprocessor_config.json (or no change without one)."""
    config = {}
    file = path / "preprocessor_config.json"
    if file.is_file():
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{file}: unreadable: {exc}") from None
    normalise = config.get("do_normalize", True)
    mean = config.get("image_mean", [0.5, 0.5, 0.5]) if normalise else [0.0] * 3
    std = config.get("image_std", [0.5, 0.5, 0.5]) if normalise else [1.0] * 3
    size = config.get("size") if config.get("do_resize", True) else None
    if isinstance(size, dict):
        size = (size.get("height"), size.get("width")) if "height" in size else \
            (size.get("shortest_edge"),) * 2
    elif isinstance(size, int):
        size = (size, size)
    if size is not None and not all(isinstance(s, int) and s > 0 for s in size):
        raise ModelError(f"{file}: an image size trojanscope does not understand: {size}")
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
            "size": tuple(size) if size else None}
