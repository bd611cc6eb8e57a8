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
    """The ONNX model in `data` (the scanned bytes of `path`), with every tensor's external data
    (initializers, constants in nodes, sparse tensors, subgraphs, functions) read here from the
    model's own folder, so that onnxruntime never opens a file itself (it would resolve a
    relative location against the current folder, not the model's). A location that is
    absolute, leaves the folder, is a link or not a regular file is refused."""
    import onnx

    model = onnx.load_model_from_string(data)
    folder = Path(path).resolve().parent
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _read_external(tensor, folder, path)
    return model


def _tensors(model):
    """Every TensorProto in the model, wherever it sits."""
    def graph_tensors(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from node_tensors(node)

    def node_tensors(node):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices
            for sparse in attribute.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attribute.HasField("g"):
                yield from graph_tensors(attribute.g)
            for graph in attribute.graphs:
                yield from graph_tensors(graph)

    yield from graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from node_tensors(node)


def _read_external(tensor, folder: Path, path: Path) -> None:
    import onnx

    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    target = folder / location
    if not location or Path(location).is_absolute() or ".." in Path(location).parts or \
            target.is_symlink() or not target.is_file() or \
            folder not in target.resolve().parents:
        raise ModelError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, "
                         "which is not a regular file inside the model's folder")
    try:
        offset = int(entries.get("offset", 0))
        size = target.stat().st_size
        length = int(entries.get("length", size - offset))
    except ValueError:
        raise ModelError(f"{path}: tensor {tensor.name!r}: bad external data offset or "
                         "length") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelError(f"{path}: tensor {tensor.name!r}: external data past the end of "
                         f"{location!r}")
    with target.open("rb") as handle:
        handle.seek(offset)
        tensor.raw_data = handle.read(length)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


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
            except ModelError:
                raise
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

        def initializers(self) -> dict[str, np.ndarray]:
            """The graph's floating-point weights, by name (float64): what diff compares."""
            from onnx import numpy_helper

            arrays = {t.name: numpy_helper.to_array(t) for t in self.graph.graph.initializer}
            return {name: a.astype(np.float64) for name, a in arrays.items()
                    if np.issubdtype(a.dtype, np.floating)}

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
            try:
                parts = [session.run(None, {self.input: np.ascontiguousarray(
                    x[start:start + step], dtype=np.float32)})[index] for start in starts]
            except Exception as exc:  # onnxruntime's own error types (Fail, InvalidArgument)
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc
                raise ModelError(f"the ONNX model failed to run: {first}") from None
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
