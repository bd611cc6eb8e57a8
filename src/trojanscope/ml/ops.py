"""What the model commands ask of any model: does it fit the data, how accurate is it, which
of its layers can be pruned."""

from __future__ import annotations

import numpy as np

from ..data.datasets import Dataset
from .gate import ModelError
from .model import Model, as_tensor


def check_model(model, data: Dataset) -> int:
    """Run one batch; the model must accept the data's layout and give one logit per class."""
    import torch

    model = Model.of(model)
    classes = len(data.classes)
    if int(data.y.max()) + 1 != classes:
        raise ValueError(f"{data.name}: labels must be 0..K-1 with every class present")
    try:
        with torch.no_grad():
            out = model.module(as_tensor(data.x[:2], model.device))
    except Exception as exc:  # the model's own code rejects the input; its error types vary
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{model.name} does not accept {data.name}'s images of shape "
                         f"{tuple(data.x.shape[1:])} (N, C, H, W in [0, 1]): {message}") \
            from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ModelError(f"{model.name} must return logits of shape (N, classes)")
    if out.shape[1] != classes:
        raise ModelError(f"{model.name} gives {out.shape[1]} outputs but {data.name} has "
                         f"{classes} classes")
    return classes


def predict(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return Model.of(model).predict(x, batch)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    return float((predict(model, x, batch) == y).mean()) if len(y) else 0.0


def prunable_layers(module) -> list[tuple[str, object]]:
    """Convolution and hidden linear layers, by name, in order; the output layer excluded."""
    layers = [(name, sub) for name, sub in module.named_modules()
              if layer_kind(sub) in ("Conv2d", "Linear")]
    return layers[:-1] if layers and layer_kind(layers[-1][1]) == "Linear" else layers


def layer_kind(sub) -> str:
    """The layer's class name, for TorchScript modules too (their type is RecursiveScriptModule);
    an unflattened torch.export module keeps no class, so its kind is read from its own
    parameters (a 4-D weight: Conv2d, 2-D: Linear, running statistics: BatchNorm2d)."""
    kind = getattr(sub, "original_name", type(sub).__name__)
    if not kind.startswith("Interpreter"):
        return kind
    own = dict(sub.named_parameters(recurse=False))
    weight = own.get("weight")
    if any(name == "running_mean" for name, _ in sub.named_buffers(recurse=False)):
        return "BatchNorm2d"
    if weight is not None and weight.ndim in (2, 4):
        return "Conv2d" if weight.ndim == 4 else "Linear"
    return kind


def channel_tensors(module, name: str) -> list:
    """The tensors whose row c is output channel c of layer `name`: its weight and bias, and
    those of the batch norm right after it (zeroing a convolution's channel alone leaves the
    norm's shift; zeroing the norm's scale and shift too makes the channel output 0)."""
    named = list(module.named_modules())
    position = [n for n, _ in named].index(name)
    layer = named[position][1]
    tensors = [layer.weight] + ([layer.bias] if getattr(layer, "bias", None) is not None
                                else [])
    for _, sub in named[position + 1:]:
        kind = layer_kind(sub)
        if kind.startswith("BatchNorm"):
            if getattr(sub, "weight", None) is not None and \
                    sub.weight.shape[0] == layer.weight.shape[0]:
                tensors += [sub.weight, sub.bias]
            break
        if kind in ("Conv2d", "Linear"):
            break
    return tensors
