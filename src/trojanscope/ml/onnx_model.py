"""An ONNX classifier as a forward-only PyTorch module: onnxruntime runs it, so the code that
only needs predictions (accuracy, trigger success, features) treats it like any other model.
Nothing flows back through it; inspect searches it without gradients."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..progress import track
from .gate import ModelError


def read_onnx(path: Path, data: bytes):
    """The ONNX model in `data` (the scanned bytes of `path`), with any external tensor data
    read from beside it (scan has checked that every location stays inside that folder)."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    model = onnx.load_model_from_string(data)
    if any(uses_external_data(t) for t in model.graph.initializer):
        load_external_data_for_model(model, str(Path(path).parent))
    return model


def onnx_module(path: Path, data: bytes):
    """A forward-only torch module running the ONNX model in `data` (scanned bytes of `path`)."""
    return _module_class()(path, data)


@functools.cache
def _module_class():
    import torch

    class OnnxModule(torch.nn.Module):
        def __init__(self, path: Path, data: bytes):
            super().__init__()
            try:
                import onnx  # noqa: F401  (checked here; read_onnx uses it)
                import onnxruntime  # noqa: F401  (checked here, used by _session)
            except ImportError as exc:
                raise ModelError(f"{path}: ONNX models need {exc.name}: pip install "
                                 "'trojanscope[onnx]' onnxruntime") from None
            try:
                self.graph = read_onnx(path, data)
                self.session = self._session(self.graph.SerializeToString())
            except Exception as exc:  # onnx and onnxruntime raise their own error types
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc
                raise ModelError(f"{path}: not a loadable ONNX model: {first}") from None
            self.input = self.session.get_inputs()[0].name
            self._sessions: dict[str, object] = {}

        @staticmethod
        def _session(serialised: bytes):
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            return onnxruntime.InferenceSession(serialised, options,
                                                providers=["CPUExecutionProvider"])

        def forward(self, x):
            import torch

            out = self.run_numpy(x.detach().cpu().numpy(), None, len(x) or 1, quiet=True)
            return torch.from_numpy(out)

        def layer_names(self) -> list[str]:
            return [out for node in self.graph.graph.node for out in node.output]

        def run_numpy(self, x: np.ndarray, layer: str | None, batch: int,
                      quiet: bool = False) -> np.ndarray:
            session, index = self.session, 0
            if layer is not None:
                session = self._sessions.get(layer) or self._layer_session(layer)
                index = len(session.get_outputs()) - 1
            fixed = session.get_inputs()[0].shape[0]
            step = fixed if isinstance(fixed, int) and fixed > 0 else batch
            starts = range(0, len(x), step)
            if not quiet:
                starts = track(starts, "model forward", -(-len(x) // step))
            parts = [session.run(None, {self.input: np.ascontiguousarray(
                x[start:start + step], dtype=np.float32)})[index] for start in starts]
            out = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
            return out.reshape(len(x), -1).astype(np.float32)

        def _layer_session(self, layer: str):
            import onnx

            model = onnx.ModelProto.FromString(self.graph.SerializeToString())
            model.graph.output.append(onnx.ValueInfoProto(name=layer))
            self._sessions[layer] = session = self._session(model.SerializeToString())
            return session

        def __deepcopy__(self, memo):
            return self  # an inference session is read-only: sharing it is a copy

    return OnnxModule
