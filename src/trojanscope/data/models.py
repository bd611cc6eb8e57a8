"""One small adapter over the models vet can use: a PyTorch module (in Python), a TorchScript
file, or an ONNX file (forward only, with onnxruntime). Each gives logits and the activations of
any named layer, batched. Feature-based detectors are written once against this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..progress import track

BATCH = 256


class ModelAdapter(Protocol):
    def layers(self) -> list[str]: ...
    def logits(self, x: np.ndarray) -> np.ndarray: ...
    def features(self, x: np.ndarray, layer: str) -> np.ndarray: ...


class TorchAdapter:
    """An nn.Module or a TorchScript module; layer activations come from forward hooks."""

    def __init__(self, module):
        import torch

        self.torch = torch
        self.module = module.eval()
        self.named = dict(module.named_modules())

    def layers(self) -> list[str]:
        return [name for name in self.named if name]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._run(x, None)

    def features(self, x: np.ndarray, layer: str) -> np.ndarray:
        if layer not in self.named or not layer:
            raise ValueError(f"no layer {layer!r}; layers: {', '.join(self.layers()[:20])}")
        if isinstance(self.module, self.torch.jit.ScriptModule):
            raise ValueError("a TorchScript file cannot show its inner layers (PyTorch allows no "
                             "hooks on it): export the model to ONNX and pass that, or pass the "
                             "module from Python")
        return self._run(x, layer)

    def _run(self, x: np.ndarray, layer: str | None) -> np.ndarray:
        torch = self.torch
        captured: list = []
        handle = None
        if layer is not None:
            handle = self.named[layer].register_forward_hook(
                lambda _m, _i, out: captured.append(out.detach().flatten(1).numpy()))
        outputs = []
        try:
            with torch.no_grad():
                for start in track(range(0, len(x), BATCH), "model forward",
                                   -(-len(x) // BATCH)):
                    batch = torch.from_numpy(np.ascontiguousarray(x[start:start + BATCH],
                                                                  dtype=np.float32))
                    outputs.append(self.module(batch).numpy())
        finally:
            if handle is not None:
                handle.remove()
        return np.concatenate(captured if layer is not None else outputs)


class OnnxAdapter:
    """An ONNX classifier run by onnxruntime; a layer is any tensor name in the graph."""

    def __init__(self, path: Path):
        import onnx
        import onnxruntime

        self.onnx, self.ort = onnx, onnxruntime
        self.model = onnx.load(str(path))
        self.session = onnxruntime.InferenceSession(self.model.SerializeToString())
        self.input = self.session.get_inputs()[0].name

    def layers(self) -> list[str]:
        return [out for node in self.model.graph.node for out in node.output]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.session, x, 0)

    def features(self, x: np.ndarray, layer: str) -> np.ndarray:
        if layer not in self.layers():
            examples = ", ".join(self.layers()[:10])
            raise ValueError(f"no tensor {layer!r} in the graph; e.g. {examples}")
        model = self.onnx.ModelProto.FromString(self.model.SerializeToString())
        model.graph.output.append(self.onnx.ValueInfoProto(name=layer))
        session = self.ort.InferenceSession(model.SerializeToString())
        return self._run(session, x, len(model.graph.output) - 1).reshape(len(x), -1)

    def _run(self, session, x: np.ndarray, index: int) -> np.ndarray:
        # Fixed-batch exports accept only their own batch size: run one sample at a time then.
        shape = session.get_inputs()[0].shape
        step = BATCH if not isinstance(shape[0], int) else shape[0]
        parts = [session.run(None, {self.input: np.ascontiguousarray(
            x[start:start + step], dtype=np.float32)})[index]
            for start in track(range(0, len(x), step), "model forward", -(-len(x) // step))]
        return np.concatenate(parts)


def load_model(path: str | Path) -> ModelAdapter:
    """A TorchScript archive or an ONNX file, told apart by content."""
    path = Path(path)
    try:
        head = path.read_bytes()[:4]
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the model: {exc.strerror or exc}") from None
    if head.startswith(b"PK"):
        import torch

        try:
            return TorchAdapter(torch.jit.load(str(path), map_location="cpu"))
        except RuntimeError as exc:
            raise ValueError(f"{path}: not a TorchScript archive ({exc}); plain torch.save "
                             "files would need unpickling, which vet refuses") from None
    try:
        return OnnxAdapter(path)
    except Exception as exc:  # onnx and onnxruntime raise their own error types
        raise ValueError(f"{path}: not a TorchScript or ONNX model: {exc}") from None
