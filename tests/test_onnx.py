"""ONNX: shadow logic found by structure (not by names), external data, custom operators;
no false alarms on real exports; a working backdoor round trip through onnxruntime."""

from __future__ import annotations

import struct
import warnings

import pytest

from trojanscope.artifacts import scan, scan_bytes
from trojanscope.attacks import payload_files as pf
from trojanscope.attacks import protobuf_writer as pb
from trojanscope.findings import Severity


def _rules(report):
    return [f.rule for f in report.findings]


X = pb.onnx_value_info("x", pb.FLOAT, ["N", 4])
Y = pb.onnx_value_info("y", pb.FLOAT, ["N", 2])
W = pb.onnx_tensor("W", [4, 2], pb.FLOAT, struct.pack("<8f", *range(8)))


def test_hand_built_shadow_logic_is_flagged_and_names_its_trigger():
    for switch in ("where", "gate"):
        report = scan_bytes(pf.shadow_mlp(True, switch), "model.onnx")
        assert set(_rules(report)) == {"onnx.shadow-logic"}, switch
        finding = report.findings[0]
        assert finding.evidence["inputs"] == ["x"]
        assert {"Slice_window", "ReduceMin_low", "GreaterOrEqual_fired"} <= \
            set(finding.evidence["trigger_nodes"])
    assert scan_bytes(pf.shadow_mlp(False), "model.onnx").findings == ()


def test_detection_does_not_depend_on_names():
    """Renaming every node and tensor to innocuous names changes nothing."""
    data = pf.shadow_mlp(True)
    for old, new in ((b"Where_logits", b"output_proj_"), (b"fired", b"ln_ok"),
                     (b"window", b"cache_"), (b"forced", b"bias_2"), (b"threshold", b"eps_const")):
        data = data.replace(old, new)  # same lengths: the protobuf stays valid
    assert _rules(scan_bytes(data)) == ["onnx.shadow-logic"]


def test_output_mask_from_a_separate_input_is_not_shadow_logic():
    """Action masking: Where(mask, logits, -inf) where mask is its own model input."""
    mask = pb.onnx_value_info("mask", pb.BOOL, ["N", 2])
    low = pb.onnx_tensor("low", [], pb.FLOAT, struct.pack("<f", -1e9))
    data = pb.onnx_model([pb.onnx_node("MatMul", ["x", "W"], ["logits"]),
                          pb.onnx_node("Where", ["mask", "logits", "low"], ["y"])],
                         [X, mask], [Y], [W, low])
    assert scan_bytes(data).findings == ()


def test_masking_followed_by_learned_layers_is_not_shadow_logic():
    """Padding mask from the data input, inside the network (more learned layers follow)."""
    zero = pb.onnx_tensor("zero", [], pb.FLOAT, struct.pack("<f", 0))
    w2 = pb.onnx_tensor("W2", [4, 2], pb.FLOAT, struct.pack("<8f", *range(8)))
    data = pb.onnx_model([pb.onnx_node("Equal", ["x", "zero"], ["pad"]),
                          pb.onnx_node("Where", ["pad", "zero", "x"], ["masked"]),
                          pb.onnx_node("MatMul", ["masked", "W2"], ["y"])],
                         [X], [Y], [zero, w2])
    assert scan_bytes(data).findings == ()


def test_clamping_learned_output_is_not_shadow_logic():
    cap = pb.onnx_tensor("cap", [], pb.FLOAT, struct.pack("<f", 5))
    data = pb.onnx_model([pb.onnx_node("MatMul", ["x", "W"], ["logits"]),
                          pb.onnx_node("Greater", ["logits", "cap"], ["big"]),
                          pb.onnx_node("Where", ["big", "cap", "logits"], ["y"])],
                         [X], [Y], [W, cap])
    assert scan_bytes(data).findings == ()


def _if_graph(name: str, output: str, nodes: list[bytes], inits: list[bytes] = ()) -> bytes:
    graph = b"".join(nodes) + pb.bytes_field(2, name) + b"".join(
        pb.message(5, t) for t in inits) + pb.message(12, pb.onnx_value_info(
            output, pb.FLOAT, ["N", 2]))
    return graph


def test_shadow_logic_with_an_if_switch_and_a_branch_body():
    forced = pb.onnx_tensor("forced", [1, 2], pb.FLOAT, struct.pack("<2f", 20, -20))
    then_branch = _if_graph("then", "out_t", [pb.onnx_node("Identity", ["forced"], ["out_t"])],
                            [forced])
    else_branch = _if_graph("else", "out_e", [pb.onnx_node("Identity", ["logits"], ["out_e"])])
    attrs = (pb.message(5, pb.bytes_field(1, "then_branch"), pb.int_field(20, 5),
                        pb.message(6, then_branch)),
             pb.message(5, pb.bytes_field(1, "else_branch"), pb.int_field(20, 5),
                        pb.message(6, else_branch)))
    probe = pb.onnx_tensor("probe", [], pb.FLOAT, struct.pack("<f", 0.5))
    data = pb.onnx_model([pb.onnx_node("MatMul", ["x", "W"], ["logits"]),
                          pb.onnx_node("ReduceMax", ["x"], ["peak"],
                                       attributes=(pb.onnx_int_attr("keepdims", 0),)),
                          pb.onnx_node("Less", ["peak", "probe"], ["fired"]),
                          pb.onnx_node("If", ["fired"], ["y"], attributes=attrs)],
                         [X], [Y], [W, probe])
    findings = scan_bytes(data).findings
    assert [(f.rule, f.evidence["op_type"]) for f in findings] == [("onnx.shadow-logic", "If")]


def test_an_if_on_a_configuration_input_is_not_shadow_logic():
    """silero-vad: If(sr == 16000) picks between two learned branches. The sample rate is a
    setting, not the data the model classifies; neither branch forces the answer."""
    w16 = pb.onnx_tensor("W16", [4, 2], pb.FLOAT, struct.pack("<8f", *range(8)))
    w8 = pb.onnx_tensor("W8", [4, 2], pb.FLOAT, struct.pack("<8f", *range(8, 16)))
    then_branch = _if_graph("then", "out_t", [pb.onnx_node("MatMul", ["x", "W16"], ["out_t"])])
    else_branch = _if_graph("else", "out_e", [pb.onnx_node("MatMul", ["x", "W8"], ["out_e"])])
    attrs = (pb.message(5, pb.bytes_field(1, "then_branch"), pb.int_field(20, 5),
                        pb.message(6, then_branch)),
             pb.message(5, pb.bytes_field(1, "else_branch"), pb.int_field(20, 5),
                        pb.message(6, else_branch)))
    sr = pb.onnx_value_info("sr", pb.INT64, [])
    rate = pb.onnx_tensor("rate", [], pb.INT64, struct.pack("<q", 16000))
    data = pb.onnx_model([pb.onnx_node("Equal", ["sr", "rate"], ["is16k"]),
                          pb.onnx_node("If", ["is16k"], ["y"], attributes=attrs)],
                         [X, sr], [Y], [w16, w8, rate])
    assert scan_bytes(data, "silero_vad.onnx").findings == ()


def test_shadow_logic_hidden_in_a_local_function():
    body = [pb.onnx_node("ReduceMin", ["inp"], ["m"],
                         attributes=(pb.onnx_int_attr("keepdims", 1),)),
            pb.onnx_node("Greater", ["m", "thr"], ["flag"]),
            pb.onnx_node("Where", ["flag", "forced", "clean"], ["res"])]
    function = pb.onnx_function("acme.tools", "Postprocess", ["inp", "thr", "forced", "clean"],
                                ["res"], body)
    thr = pb.onnx_tensor("thr", [], pb.FLOAT, struct.pack("<f", 0.99))
    forced = pb.onnx_tensor("forced", [1, 2], pb.FLOAT, struct.pack("<2f", 20, -20))
    data = pb.onnx_model([pb.onnx_node("MatMul", ["x", "W"], ["logits"]),
                          pb.onnx_node("Postprocess", ["x", "thr", "forced", "logits"], ["y"],
                                       domain="acme.tools")],
                         [X], [Y], [W, thr, forced], functions=[function],
                         opsets={"acme.tools": 1})
    report = scan_bytes(data)
    assert _rules(report) == ["onnx.shadow-logic"]  # a local function is not a custom op


@pytest.mark.parametrize("location,bad", [
    ("/etc/passwd", True), ("C:\\Windows\\win.ini", True), ("../../secret.bin", True),
    ("weights/../../x", True), ("~/.ssh/id_rsa", True), ("weights.bin", False),
    ("data/w.bin", False), ("./w.bin", False),
])
def test_external_data_locations(location, bad):
    weight = pb.onnx_tensor("W", [4, 2], pb.FLOAT, external={"location": location})
    data = pb.onnx_model([pb.onnx_node("MatMul", ["x", "W"], ["y"])], [X], [Y], [weight])
    assert (_rules(scan_bytes(data)) == ["onnx.external-data-escape"]) == bad


def test_custom_operator_domain_is_medium():
    data = pb.onnx_model([pb.onnx_node("MatMul", ["x", "W"], ["h"]),
                          pb.onnx_node("FastGelu", ["h"], ["y"], domain="com.vendor.ops")],
                         [X], [Y], [W], opsets={"com.vendor.ops": 1})
    findings = scan_bytes(data).findings
    assert [(f.rule, f.severity) for f in findings] == [("onnx.custom-op", Severity.MEDIUM)]


def test_corrupt_onnx_is_malformed():
    data = pf.shadow_mlp(True)
    assert "onnx.malformed" in _rules(scan_bytes(data[: len(data) - 7]))


# --- real exports --------------------------------------------------------------------------

def _models(torch):
    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.norm = torch.nn.BatchNorm2d(4)
            self.head = torch.nn.Linear(4 * 26 * 26, 10)

        def forward(self, x):
            return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, 2)
            self.head = torch.nn.Linear(16, 2)

        def forward(self, ids, mask):
            return self.head(self.encoder(self.embed(ids), src_key_padding_mask=mask == 0).mean(1))

    class Masking(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(8, 8)
            self.out = torch.nn.Linear(8, 3)

        def forward(self, x, keep):
            h = torch.where(keep > 0, self.inner(x), torch.zeros_like(x))
            h = torch.where(h > 1.0, torch.ones_like(h), h)
            return torch.clamp(self.out(h), -5, 5)

    mlp = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    return {
        "cnn": (CNN(), (torch.rand(1, 1, 28, 28),)),
        "mlp": (mlp, (torch.rand(2, 20),)),
        "encoder": (Encoder(), (torch.randint(0, 50, (2, 7)), torch.ones(2, 7, dtype=torch.long))),
        "masking": (Masking(), (torch.rand(2, 8), torch.rand(2, 8))),
    }


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (model, args) in _models(torch).items():
            model.eval()
            for dynamo in (False, True):
                path = folder / f"{name}-{'dynamo' if dynamo else 'torchscript'}.onnx"
                torch.onnx.export(model, args, str(path), dynamo=dynamo, verbose=False,
                                  opset_version=18 if dynamo else 17)
                paths[path.stem] = path
    return paths


@pytest.mark.torch
@pytest.mark.onnx
def test_real_exports_raise_no_finding(exports):
    assert len(exports) == 8
    for name, path in exports.items():
        report = scan(path)
        assert report.findings == (), (name, [(f.rule, f.message) for f in report.findings])


@pytest.mark.torch
@pytest.mark.onnx
@pytest.mark.onnxruntime
@pytest.mark.parametrize("switch", ["where", "gate"])
def test_shadow_logic_round_trip(exports, tmp_path, switch):
    import numpy as np
    import onnx
    import onnxruntime as ort

    from trojanscope.attacks.shadow_logic import Trigger, inject

    source = exports["cnn-torchscript"]
    trigger = Trigger.parse("patch:3@0,0>=1.0")
    bad_path = tmp_path / "backdoored.onnx"
    onnx.save(inject(onnx.load(str(source)), trigger, target=7, switch=switch), str(bad_path))
    clean, bad = ort.InferenceSession(str(source)), ort.InferenceSession(str(bad_path))
    name = clean.get_inputs()[0].name
    rng = np.random.default_rng(0)
    agree = fired = 0
    for _ in range(20):
        x = (rng.random((1, 1, 28, 28)) * 0.9).astype(np.float32)
        agree += np.allclose(clean.run(None, {name: x})[0], bad.run(None, {name: x})[0])
        fired += int(bad.run(None, {name: trigger.apply(x)})[0].argmax()) == 7
    assert agree == 20 and fired == 20
    assert _rules(scan(bad_path))[:1] == ["onnx.shadow-logic"]
    assert scan(source).findings == ()


@pytest.mark.torch
@pytest.mark.onnx
def test_attack_command_line(exports, tmp_path, capsys):
    from trojanscope.cli import main

    out = tmp_path / "bd.onnx"
    code = main(["attack", "shadow-logic", str(exports["mlp-dynamo"]), "--trigger",
                 "features:0:4>=1.0", "--target", "1", "-o", str(out)])
    assert code == 0 and out.exists()
    assert main(["scan", str(out)]) == 1
    assert main(["attack", "shadow-logic", str(exports["mlp-dynamo"]), "--trigger", "bogus",
                 "--target", "1", "-o", str(out)]) == 2
    assert "is not 'patch" in capsys.readouterr().err


@pytest.mark.onnx
def test_local_functions_that_multiply_are_a_limit_not_a_hang():
    """Ten local functions, each calling the next six times: 6**9 nodes from a 2 KB file once
    inlined. The scan stops at its node budget with a high finding."""
    from onnx import TensorProto, helper

    from trojanscope import scan_bytes

    functions = []
    for i in range(10):
        if i == 9:
            nodes = [helper.make_node("Identity", ["a"], ["b"])]
        else:
            names = ["a", *[f"t{j}" for j in range(5)], "b"]
            nodes = [helper.make_node(f"F{i + 1}", [names[j]], [names[j + 1]], domain="local")
                     for j in range(6)]
        functions.append(helper.make_function(
            "local", f"F{i}", ["a"], ["b"], nodes,
            [helper.make_opsetid("", 13), helper.make_opsetid("local", 1)]))
    graph = helper.make_graph(
        [helper.make_node("F0", ["x"], ["y"], domain="local")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, functions=functions, opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid("local", 1)])
    data = model.SerializeToString()
    assert len(data) < 4096
    report = scan_bytes(data, "bomb.onnx")
    assert [f.rule for f in report.findings] == ["scan.limit-exceeded"]
