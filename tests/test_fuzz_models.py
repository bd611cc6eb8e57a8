"""Property-based tests for what reads untrusted model files beyond scan's formats: the
torch.export program checks, the model loaders behind `open_model`, and the Hugging Face
preprocessing config. Mutated and truncated inputs end in a finding, a model or a ModelError,
never another exception."""

from __future__ import annotations

import functools
import io
import json
import zipfile

import numpy as np
import pytest
from helpers import mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trojanscope.artifacts import scan_bytes
from trojanscope.artifacts.torch_export import safe_expression, safe_guard
from trojanscope.findings import RULES

FUZZ = settings(max_examples=60, deadline=20000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def _files() -> dict[str, bytes]:
    """One small model written in each format the loaders read."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save as save_safetensors

    from trojanscope.ml.architectures import build

    torch.manual_seed(0)
    net = build("vgg11(width=2)").eval()
    example = torch.rand(2, 3, 32, 32)
    out = {}
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    out["state-dict"] = buffer.getvalue()
    out["safetensors"] = save_safetensors({k: v.contiguous() for k, v in
                                           net.state_dict().items()})
    buffer = io.BytesIO()
    program = torch.export.export(net, (example,),
                                  dynamic_shapes=({0: torch.export.Dim("b", min=1)},))
    torch.export.save(program, buffer)
    out["export"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.onnx.export(net, (example,), buffer, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    out["onnx"] = buffer.getvalue()
    return out


def _mutate(draw, data: bytes) -> bytes:
    return mutate(draw, data, rounds=(1, 4), longest_cut=64)


@pytest.mark.torch
@FUZZ
@given(st.data())
def test_mutated_model_files_load_or_are_refused_by_name(tmp_path_factory, data):
    from trojanscope.ml import ModelError, open_model

    kind = data.draw(st.sampled_from(["state-dict", "safetensors", "onnx"]))
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "model.bin"
    path.write_bytes(_mutate(data.draw, _files()[kind]))
    try:
        model = open_model(path, "vgg11(width=2)", device="cpu")
    except ModelError as exc:
        assert str(path) in str(exc)
        return
    assert model.logits(np.zeros((1, 3, 32, 32), np.float32)).shape[0] == 1


@st.composite
def mutated_program(draw) -> bytes:
    """The real archive with its program JSON edited: values replaced by hostile or odd
    strings, or the JSON text cut or flipped."""
    archive = zipfile.ZipFile(io.BytesIO(_files()["export"]))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in archive.infolist():
            text = archive.read(info.filename)
            if info.filename.endswith("models/model.json"):
                text = _edit_program(draw, text)
            target.writestr(info.filename, text)
    return out.getvalue()


def _edit_program(draw, text: bytes) -> bytes:
    if draw(st.booleans()):
        return _mutate(draw, text)
    document = json.loads(text)
    strings = st.sampled_from([
        "s0", "Symbol('s1', positive=True)", "Max(1, s0)", "__import__('os')", "s0.__class__",
        "(" * 500, "L['x'].size()[0] == 2", "lambda: 0", "open('/etc/passwd')", "S.One",
        "torch.ops.aten.save.default", "torch.ops.evil.x.default", "builtins.eval", ""])
    graph = document["graph_module"]["graph"]
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["size", "guard", "target"]))
        if where == "size":
            values = graph["tensor_values"]
            name = draw(st.sampled_from(sorted(values)))
            values[name]["sizes"] = [{"as_expr": {"expr_str": draw(strings)}}]
        elif where == "guard":
            document["guards_code"] = [draw(strings)]
        else:
            graph["nodes"][draw(st.integers(0, len(graph["nodes"]) - 1))]["target"] = \
                draw(strings)
    return json.dumps(document).encode()


@pytest.mark.torch
@FUZZ
@given(mutated_program())
def test_mutated_torch_export_programs_end_in_findings(data):
    report = scan_bytes(data, "fuzz.pt2")
    for finding in report.findings:
        assert finding.rule in RULES and finding.message


@settings(max_examples=300, deadline=2000, derandomize=True)
@given(st.text(max_size=300))
def test_expression_and_guard_checks_answer_for_any_text(text):
    assert safe_expression(text) in (True, False)
    assert safe_guard(text) in (True, False)
    if "__" in text or "import" in text:
        assert not safe_guard(text)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) |
                    st.floats(allow_nan=True) | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.sampled_from(["size", "image_mean", "image_std",
                                                     "do_resize", "do_normalize", "height",
                                                     "width", "shortest_edge"]), inner,
                                    max_size=5), max_leaves=12)


@settings(max_examples=300, deadline=2000, derandomize=True)
@given(JSON)
def test_any_preprocessing_config_is_read_or_a_clear_error(tmp_path_factory, config):
    from trojanscope.ml.gate import ModelError
    from trojanscope.ml.huggingface import _preprocessing

    folder = tmp_path_factory.mktemp("hf")
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    try:
        found = _preprocessing(folder)
    except ModelError as exc:
        assert "preprocessor_config.json" in str(exc)
        return
    assert len(found["mean"]) == 3 and all(0 < s < float("inf") for s in found["std"])
    assert found["size"] is None or all(0 < s <= 1024 for s in found["size"])
