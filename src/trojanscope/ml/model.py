"""The one model adapter that vet, inspect, repair and diff share, whatever the file format.

A `Model` wraps a PyTorch module (for ONNX, a forward-only module running onnxruntime) and
gives logits, the features of any named layer, weights, a clone and a save in its own format,
in batches, with progress, on CUDA when present. Files become Models through `open_model`
(formats.py), which scans them first.
"""

from __future__ import annotations

import copy
import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..progress import track
from .gate import ModelError

BATCH = 256


@dataclass
class Model:
    """`module` maps (N, C, H, W) images in [0, 1] to logits (N, K). `kind` names the format
    it came from (and is saved back to); `differentiable` is False for ONNX (no gradients)."""

    module: Any
    kind: str = "module"
    name: str = "model"
    differentiable: bool = True
    saver: Callable[[Any, Path], None] | None = field(default=None, repr=False)
    cloner: Callable[[Any], Any] | None = field(default=None, repr=False)
    hookable: bool = True  # forward hooks reach inner layers (not in TorchScript)

    @classmethod
    def of(cls, module, name: str = "model") -> Model:
        """A Model from a module built in Python (or a Model, returned as it is)."""
        if isinstance(module, Model):
            return module
        import torch

        kind = "torchscript" if isinstance(module, torch.jit.ScriptModule) else "module"
        saver = _save_torchscript if kind == "torchscript" else None
        return cls(module, kind, name, saver=saver, hookable=kind != "torchscript")

    @property
    def device(self):
        return device_of(self.module)

    def logits(self, x: np.ndarray, batch: int = BATCH) -> np.ndarray:
        return self._run(x, None, batch)

    def predict(self, x: np.ndarray, batch: int = BATCH) -> np.ndarray:
        return self.logits(x, batch).argmax(1) if len(x) else np.zeros(0, dtype=np.int64)

    def layers(self) -> list[str]:
        names = getattr(self.module, "layer_names", None)
        if callable(names):  # ONNX: every tensor of the graph
            return names()
        return [name for name, _ in self.module.named_modules() if name]

    def features(self, x: np.ndarray, layer: str, batch: int = BATCH) -> np.ndarray:
        """The activations of `layer` (a module name, or an ONNX tensor), one row per sample."""
        if layer not in self.layers():
            shown = ", ".join(self.layers()[-12:])
            raise ModelError(f"{self.name}: no layer {layer!r}; the last layers: {shown}")
        if not self.hookable:
            raise ModelError(f"{self.name}: a TorchScript file cannot show its inner layers "
                             "(PyTorch allows no hooks on it); save the model with "
                             "torch.export, as a state dict, or as ONNX")
        return self._run(x, layer, batch)

    def weights(self) -> dict[str, np.ndarray]:
        """Every floating-point parameter and buffer, by name (float64); an ONNX model's
        initializers."""
        if hasattr(self.module, "initializers"):
            return self.module.initializers()
        state = self.module.state_dict()
        return {name: value.detach().cpu().numpy().astype(np.float64)
                for name, value in state.items() if value.is_floating_point()}

    def clone(self) -> Model:
        """An independent copy (TorchScript through a save and load in memory: its deep copies
        carry parameters that are not leaves, which optimisers refuse)."""
        import torch

        if self.cloner is not None:
            module = self.cloner(self.module)
        elif isinstance(self.module, torch.jit.ScriptModule):
            buffer = io.BytesIO()
            with quiet_deprecation():
                torch.jit.save(self.module, buffer)
                buffer.seek(0)
                module = torch.jit.load(buffer, map_location=self.device)
        else:
            module = copy.deepcopy(self.module)
        return replace(self, module=module)

    def save(self, path: str | Path) -> None:
        """Write the model back in the format it came in (a module built in Python: as
        TorchScript)."""
        if not self.differentiable:
            raise ModelError(f"{self.name}: an ONNX model is not written back by trojanscope")
        (self.saver or _save_torchscript)(self.module, Path(path))

    def to(self, device) -> Model:
        if self.differentiable:
            self.module.to(device)
        return self

    def _run(self, x: np.ndarray, layer: str | None, batch: int) -> np.ndarray:
        runner = getattr(self.module, "run_numpy", None)
        if runner is not None:  # ONNX
            return runner(x, layer, batch)
        import torch

        captured: list = []
        handle = None
        if layer is not None:
            named = dict(self.module.named_modules())
            handle = named[layer].register_forward_hook(
                lambda _m, _i, out: captured.append(out.detach().flatten(1).cpu().numpy()))
        outputs = []
        device = self.device
        try:
            with torch.no_grad(), frozen(self.module):
                for start in track(range(0, len(x), batch), "model forward",
                                   -(-len(x) // batch)):
                    outputs.append(self.module(as_tensor(x[start:start + batch], device))
                                   .cpu().numpy())
        finally:
            if handle is not None:
                handle.remove()
        parts = captured if layer is not None else outputs
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def as_tensor(x: np.ndarray, device=None):
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return tensor if device is None or str(device) == "cpu" else tensor.to(device)


def device_of(module):
    """Where the module's parameters live (CPU for a module without any)."""
    import torch

    try:
        return next(module.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def best_device():
    """CUDA when present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def frozen(module):
    """Evaluation mode without parameter gradients, restored afterwards."""
    parameters = list(module.parameters()) if hasattr(module, "parameters") else []
    previous = [(p, p.requires_grad) for p in parameters]
    was_training = getattr(module, "training", False)
    if hasattr(module, "eval"):
        module.eval()
    for parameter, _ in previous:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in previous:
            parameter.requires_grad_(flag)
        if hasattr(module, "train"):
            module.train(was_training)


@contextmanager
def quiet_deprecation():
    """torch 2.10+ warns that TorchScript is deprecated on every load and save: noise for the
    user of this tool (it concerns authoring models, not reading them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _save_torchscript(module, path: Path) -> None:
    import torch

    with quiet_deprecation():
        if not isinstance(module, torch.jit.ScriptModule):
            module = torch.jit.script(module.cpu())
        torch.jit.save(module, str(path))
