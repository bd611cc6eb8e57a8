"""Loading, checking and saving the models inspect and repair work on: PyTorch modules in
Python and TorchScript files. They need gradients, so ONNX files (forward only here) and plain
torch.save pickles (loading one runs its code) are refused with a clear message."""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..data.datasets import Dataset


def load_module(path: str | Path):
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the model: {exc.strerror or exc}") from None
    if not head.startswith(b"PK"):
        kind = "an ONNX file or not a model" if head[:1] == b"\x08" else "not a model archive"
        raise ValueError(f"{path}: {kind}; inspect and repair need a TorchScript file "
                         "(torch.jit.save) because they follow gradients")
    import torch

    try:
        with _quiet_deprecation():
            return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a TorchScript archive ({first}); a plain torch.save "
                         "file would need unpickling, which trojanscope refuses") from None


def save_module(module, out: str | Path) -> None:
    """Write `module` as TorchScript (scripting a plain nn.Module first)."""
    import torch

    with _quiet_deprecation():
        if not isinstance(module, torch.jit.ScriptModule):
            module = torch.jit.script(module)
        torch.jit.save(module, str(out))


@contextmanager
def _quiet_deprecation():
    """torch 2.10+ warns that TorchScript is deprecated on every load and save: noise for the
    user of this tool (it concerns authoring models, not reading them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def clone_module(module):
    """An independent copy. TorchScript modules go through a save and load in memory: their
    deep copies carry parameters that are not leaves, which optimisers refuse."""
    import io

    import torch

    if isinstance(module, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
        buffer.seek(0)
        return torch.jit.load(buffer, map_location="cpu")
    return copy.deepcopy(module)


def check_model(module, data: Dataset) -> int:
    """Run one batch; the model must accept the data's layout and give one logit per class."""
    import torch

    classes = len(data.classes)
    if int(data.y.max()) + 1 != classes:
        raise ValueError(f"{data.name}: labels must be 0..K-1 with every class present")
    sample = torch.from_numpy(np.ascontiguousarray(data.x[:2], dtype=np.float32))
    try:
        with torch.no_grad():
            out = module(sample)
    except Exception as exc:  # the model's own code rejects the input; its error types vary
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the model does not accept {data.name}'s images of shape "
                         f"{tuple(data.x.shape[1:])} (N, C, H, W in [0, 1]): {message}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ValueError("the model must return logits of shape (N, classes)")
    if out.shape[1] != classes:
        raise ValueError(f"the model gives {out.shape[1]} outputs but {data.name} has "
                         f"{classes} classes")
    return classes


@contextmanager
def frozen(module):
    """Evaluation mode without parameter gradients, restored afterwards."""
    previous = [(p, p.requires_grad) for p in module.parameters()]
    was_training = module.training
    module.eval()
    for parameter, _ in previous:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in previous:
            parameter.requires_grad_(flag)
        module.train(was_training)


def accuracy(module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    return float((predict(module, x, batch) == y).mean()) if len(y) else 0.0


def predict(module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch],
                                                          dtype=np.float32))
            out.append(module(chunk).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def prunable_layers(module) -> list[tuple[str, object]]:
    """Convolution and hidden linear layers, by name, in order; the output layer excluded."""
    layers = [(name, sub) for name, sub in module.named_modules()
              if layer_kind(sub) in ("Conv2d", "Linear")]
    return layers[:-1] if layers and layer_kind(layers[-1][1]) == "Linear" else layers


def layerlayer_kind(sub) -> str:
    return getattr(sub, "original_name", type(sub).__name__)


def layer_kind(sub) -> str:
    """The layer's class name, for TorchScript modules too (their type is RecursiveScriptModule)."""
    return getattr(sub, "original_name", type(sub).__name__)
