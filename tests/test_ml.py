"""The one model adapter (trojanscope.ml): every format gives the same logits as the module it
was written from, and a model file that would run code is refused by every command that loads
models, with nothing in it run (canary files), in the real child process."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.torch]

SHAPE = (3, 32, 32)


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def net():
    import torch

    from trojanscope.ml.architectures import build

    torch.manual_seed(0)
    return build("vgg11(width=2)").eval()


def _write(kind: str, net, folder):
    """`net` written as `kind`; returns (path, architecture spec or None)."""
    import torch

    spec = "vgg11(width=2)"
    example = torch.from_numpy(_images(2))
    if kind == "torchscript":
        torch.jit.save(torch.jit.trace(net, example), str(folder / "m.pt"))
        return folder / "m.pt", None
    if kind == "export":
        program = torch.export.export(net, (example,),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        torch.export.save(program, str(folder / "m.pt2"))
        return folder / "m.pt2", None
    if kind == "state-dict":
        torch.save(net.state_dict(), str(folder / "m.bin"))
        return folder / "m.bin", spec
    if kind == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                  str(folder / "m.safetensors"))
        return folder / "m.safetensors", spec
    pytest.importorskip("onnxruntime")
    torch.onnx.export(net, (example,), str(folder / "m.onnx"), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return folder / "m.onnx", None


def test_diff_of_two_onnx_files_compares_their_weights(tmp_path, net, capsys):
    """ONNX models have no state dict: diff reads their initializers (it once found nothing
    in either and called that an architecture change)."""
    import torch

    from trojanscope.cli import main

    path, _ = _write("onnx", net, tmp_path)
    assert main(["diff", str(path), str(path), "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    edited = tmp_path / "edited"
    edited.mkdir()
    with torch.no_grad():
        changed = copy.deepcopy(net)
        last = [m for m in changed.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight[0, :4] += 5.0  # a few neurons of one layer: a targeted edit
    other, _ = _write("onnx", changed, edited)
    main(["diff", str(path), str(other), "-f", "json"])
    rules = {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert "model.architecture-change" not in rules and "model.concentrated-change" in rules


@pytest.mark.parametrize("kind", ["torchscript", "export", "state-dict", "safetensors", "onnx"])
def test_every_format_gives_the_logits_of_the_module_it_was_written_from(tmp_path, net, kind):
    from trojanscope import scan
    from trojanscope.ml import Model, open_model

    path, spec = _write(kind, net, tmp_path)
    assert scan(path).findings == ()  # a real file of each format: nothing to report
    x = _images()
    model = open_model(path, spec)
    assert model.kind == kind
    np.testing.assert_allclose(model.logits(x), Model.of(net).logits(x), rtol=1e-4, atol=1e-5)
    assert model.layers()
    weights = model.weights()  # what diff compares (ONNX: initializers, batch norm folded)
    assert weights and (kind == "onnx" or sum(a.size for a in weights.values()) == sum(
        p.numel() for p in net.state_dict().values() if p.is_floating_point()))
    if kind == "onnx":
        assert not model.differentiable
        return
    if kind != "torchscript":  # TorchScript allows no hooks
        layer = model.layers()[-2]
        assert model.features(x, layer).shape[0] == len(x)
    copy = model.clone()
    copy.save(tmp_path / f"again{path.suffix}")
    again = open_model(tmp_path / f"again{path.suffix}", spec)
    np.testing.assert_allclose(again.logits(x), model.logits(x), rtol=1e-4, atol=1e-5)
    assert set(model.weights()) == set(again.weights())


def test_an_exported_program_can_be_trained_and_exported_again(tmp_path, net):
    import torch

    from trojanscope.ml import open_model

    path, _ = _write("export", net, tmp_path)
    model = open_model(path).clone()
    model.module.train()  # an exported graph refuses train(); the adapter records the mode
    optimizer = torch.optim.SGD(model.module.parameters(), lr=0.5)
    model.module(torch.from_numpy(_images())).sum().backward()
    optimizer.step()
    model.save(tmp_path / "changed.pt2")
    changed = open_model(tmp_path / "changed.pt2")
    assert not np.allclose(changed.logits(_images()), open_model(path).logits(_images()))


def test_a_hugging_face_image_classifier_folder_takes_images_in_0_1(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from trojanscope.ml import ModelError, open_model

    torch.manual_seed(0)
    inner = ViTForImageClassification(ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=10)).eval()
    folder = tmp_path / "vit"
    inner.save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5] * 3, "image_std": [0.25] * 3, "size": {"height": 32, "width": 32}}))
    x = _images()
    with torch.no_grad():
        expected = inner(pixel_values=(torch.from_numpy(x) - 0.5) / 0.25).logits.numpy()
    model = open_model(folder)
    np.testing.assert_allclose(model.logits(x), expected, rtol=1e-4, atol=1e-5)
    assert model.features(x, "model.classifier").shape == (len(x), 10)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {
        "AutoModelForImageClassification": "modeling_evil.Evil"}}))
    with pytest.raises(ModelError, match="never runs it"):
        open_model(folder)


def test_a_state_dict_needs_its_architecture_and_must_fit_it(tmp_path, net):
    from trojanscope.ml import ModelError, open_model

    path, _ = _write("safetensors", net, tmp_path)
    with pytest.raises(ModelError, match="--architecture"):
        open_model(path)
    with pytest.raises(ModelError, match="do not fit resnet18"):
        open_model(path, "resnet18(width=2)")
    with pytest.raises(ModelError, match="not one of"):
        open_model(path, "alexnet")
    with pytest.raises(ModelError, match="key=literal"):
        open_model(path, "vgg11(2)")


def test_architectures_take_cifar_images_and_export(tmp_path):
    import torch

    from trojanscope.ml.architectures import BUILT_IN, build

    for name in BUILT_IN:
        module = build(f"{name}(width=8, classes=7)").eval()
        x = torch.from_numpy(_images(3))
        assert module(x).shape == (3, 7)
        torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1)},))


# ---- refusal: nothing in a harmful model file runs ------------------------------------------

def _torchscript_payload(canary) -> bytes:
    from trojanscope.attacks.payload_files import torchscript

    return torchscript("", path=str(canary))


def _pickle_payload(canary) -> bytes:
    """A state dict whose pickle opens a log file (creating it) when unpickled: a global no
    gadget list names (logging.FileHandler), refused because the policy denies by default."""
    from trojanscope.attacks.model_files import torch_zip
    from trojanscope.attacks.pickle_payloads import call, global_, proto, unicode

    return torch_zip(proto(2) + call(global_("logging", "FileHandler"), unicode(str(canary)))
                     + b".")


def _os_system_payload(canary) -> bytes:
    from trojanscope.attacks.model_files import torch_zip
    from trojanscope.attacks.pickle_payloads import posix_system

    return torch_zip(posix_system(f"touch {canary}"))


def test_the_payloads_are_real(tmp_path):
    """Each payload does run its code under the loader a careless user would call."""
    import subprocess
    import sys

    for name, make, loader in [
        ("ts", _torchscript_payload, "import torch; torch.jit.load(sys.argv[1])"),
        ("log", _pickle_payload, "import torch; torch.load(sys.argv[1], weights_only=False)"),
        ("os", _os_system_payload, "import torch; torch.load(sys.argv[1], weights_only=False)"),
    ]:
        canary = tmp_path / f"{name}.canary"
        (tmp_path / f"{name}.pt").write_bytes(make(canary))
        subprocess.run([sys.executable, "-c", f"import sys; {loader}",
                        str(tmp_path / f"{name}.pt")], capture_output=True, timeout=120)
        assert canary.exists(), name


def test_the_library_refuses_a_harmful_model_as_the_command_does(tmp_path):
    """trojanscope.inspect (the library entry point) scans in the child before loading: an
    InputError naming the model, and nothing in it runs."""
    import trojanscope

    canary = tmp_path / "canary"
    bad = tmp_path / "model.pt"
    bad.write_bytes(_torchscript_payload(canary))
    np.savez(tmp_path / "clean.npz", x=_images(20), y=np.arange(20) % 2)
    with pytest.raises(trojanscope.InputError, match="refused, not loaded") as caught:
        trojanscope.inspect(bad, tmp_path / "clean.npz")
    assert str(bad) in str(caught.value) and not canary.exists()
    with pytest.raises(trojanscope.InputError, match="missing.npz"):
        trojanscope.vet(tmp_path / "missing.npz")


@pytest.mark.parametrize("payload", ["torchscript", "os-system", "unlisted-global"])
def test_harmful_models_are_refused_by_every_command_and_nothing_runs(tmp_path, capsys, payload):
    from trojanscope.cli import main

    canary = tmp_path / "canary"
    make = {"torchscript": _torchscript_payload, "os-system": _os_system_payload,
            "unlisted-global": _pickle_payload}[payload]
    bad = tmp_path / "model.pt"
    bad.write_bytes(make(canary))
    before = bad.read_bytes()
    arch = [] if payload == "torchscript" else ["--architecture", "vgg11(width=2)"]
    np.savez(tmp_path / "clean.npz", x=_images(20), y=np.arange(20) % 2)
    data = ["--data", str(tmp_path / "clean.npz")]
    commands = [["inspect", str(bad), *data, *arch],
                ["repair", str(bad), *data, "--out", str(tmp_path / "out.pt"), *arch],
                ["diff", str(bad), str(bad), *arch],
                ["vet", str(tmp_path / "clean.npz"), "--detector", "spectral", "--model",
                 str(bad), "--layer", "classifier", *arch]]
    expected = "refused, not loaded"
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert expected in err and str(bad) in err and "Traceback" not in err, (command, err)
    assert not canary.exists()
    assert not (tmp_path / "out.pt").exists()
    assert bad.read_bytes() == before


def test_the_model_is_built_and_loaded_in_a_child_process_not_in_this_one(tmp_path, net,
                                                                         capsys):
    import os

    from trojanscope.cli import main

    path, _ = _write("safetensors", net, tmp_path)
    record = tmp_path / "pid"
    np.savez(tmp_path / "data.npz", x=_images(40), y=np.arange(40) % 4)
    code = main(["vet", str(tmp_path / "data.npz"), "--detector", "spectral", "--model",
                 str(path), "--architecture", f"helpers:recording_vgg(record={str(record)!r})",
                 "--layer", "classifier", "-f", "json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["features"] == "model" and report["results"]["samples"] == 40
    assert int(record.read_text()) != os.getpid()  # the architecture ran in the child


# ---- the red team's bypasses, each a regression test built from bytes ------------------------

def _patched_export(net, folder, patch) -> bytes:
    """A real torch.export archive of `net` with its program JSON changed by `patch(doc)`."""
    import io
    import zipfile

    path, _ = _write("export", net, folder)
    source, out = zipfile.ZipFile(path), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("models/model.json"):
                document = json.loads(data)
                patch(document)
                data = json.dumps(document).encode()
            target.writestr(info.filename, data)
    return out.getvalue()


def _code_exec_size(canary) -> dict:
    command = f"touch {canary}"
    return {"as_expr": {"expr_str": "Integer(2) + 0*sympify.__globals__['__builtins__']"
                                    f"['__import__']('os').system({command!r})",
                        "hint": {"as_int": 2}}}


@pytest.mark.parametrize("case", ["sympify-size", "guard-code", "from-file-node"])
def test_a_torch_export_program_that_runs_code_is_refused_and_nothing_runs(tmp_path, net,
                                                                          capsys, case):
    from trojanscope.cli import main

    canary = tmp_path / "canary"

    def patch(document):
        graph = document["graph_module"]["graph"]
        if case == "sympify-size":
            values = graph["tensor_values"]
            values[next(iter(values))]["sizes"][0] = _code_exec_size(canary)
        elif case == "guard-code":
            document["guards_code"] = [f"__import__('os').system('touch {canary}') == 0"]
        else:
            graph["nodes"][0]["target"] = "torch.ops.aten.from_file.default"
    (tmp_path / "m.pt2").write_bytes(_patched_export(net, tmp_path, patch))
    rule = {"sympify-size": "torch-export.unsafe-expression",
            "guard-code": "torch-export.unsafe-guard",
            "from-file-node": "torch-export.file-access"}[case]
    assert main(["diff", str(tmp_path / "m.pt2"), str(tmp_path / "m.pt2")]) == 2
    err = capsys.readouterr().err
    assert "refused, not loaded" in err and rule in err
    assert not canary.exists()


def test_a_torch_export_archive_with_any_doubtful_pickle_is_refused(tmp_path, net, capsys):
    """torch.export.load unpickles sample inputs without weights_only when weights_only fails:
    for .pt2 even a medium pickle finding refuses the file."""
    import io
    import zipfile

    from trojanscope.attacks.pickle_payloads import call, global_, proto, unicode
    from trojanscope.cli import main
    from trojanscope.ml import UnsafeModelError, open_model

    canary = tmp_path / "canary"
    path, _ = _write("export", net, tmp_path)
    payload = proto(2) + call(global_("logging", "FileHandler"), unicode(str(canary))) + b"."
    source, out = zipfile.ZipFile(path), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("sample_inputs/model.pt"):
                inner = io.BytesIO()
                with zipfile.ZipFile(inner, "w") as nested:
                    nested.writestr("archive/data.pkl", payload)
                data = inner.getvalue()
            target.writestr(info.filename, data)
    (tmp_path / "bad.pt2").write_bytes(out.getvalue())
    with pytest.raises(UnsafeModelError, match="pickle.unknown-global"):
        open_model(tmp_path / "bad.pt2")
    assert main(["inspect", str(tmp_path / "bad.pt2"), "--data", "digits"]) == 2
    assert "refused" in capsys.readouterr().err and not canary.exists()


def test_torchscript_code_that_python_cannot_parse_is_refused(tmp_path):
    """TorchScript compiles a code file with a NUL byte, which Python's parser rejects: the
    code scan cannot see what it calls, so the file is refused (it used to be medium)."""
    from trojanscope.attacks.payload_files import torchscript_archive
    from trojanscope.ml import UnsafeModelError, open_model

    code = "# \x00\nclass Evil(Module):\n  __parameters__ = []\n"
    (tmp_path / "m.pt").write_bytes(torchscript_archive(code))
    with pytest.raises(UnsafeModelError, match="torchscript.unparsable"):
        open_model(tmp_path / "m.pt")


def _onnx_reading(location: str) -> bytes:
    """An ONNX model whose Constant node keeps its bytes in an external file at `location`."""
    from onnx import TensorProto, helper

    secret = TensorProto(name="c", data_type=TensorProto.UINT8, dims=[8])
    secret.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        entry = secret.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("Constant", [], ["c"], value=secret),
             helper.make_node("Cast", ["c"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "f"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 8])], [helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_onnx_external_data_is_read_from_the_model_folder_only(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from trojanscope.ml import ModelError, open_model

    models, elsewhere = tmp_path / "models", tmp_path / "home"
    models.mkdir()
    elsewhere.mkdir()
    (elsewhere / "secret").write_bytes(b"SSH-PRIV")
    (models / "leak.onnx").write_bytes(_onnx_reading("secret"))
    monkeypatch.chdir(elsewhere)  # onnxruntime would resolve "secret" against this folder
    with pytest.raises(ModelError, match="not a regular file inside the model's folder"):
        open_model(models / "leak.onnx")
    (models / "secret").write_bytes(bytes(range(8)))  # the model's own file: read, by us
    model = open_model(models / "leak.onnx")
    np.testing.assert_allclose(model.logits(np.ones((1, 8), np.float32)),
                               [np.arange(8) * 8.0])


def test_a_symbolic_link_in_a_hugging_face_folder_is_refused(tmp_path):
    from trojanscope.ml import ModelError, open_model

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    (tmp_path / "secret.json").write_text('{"token": "s3cret"}')
    (folder / "preprocessor_config.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(ModelError, match="symbolic link inside the model folder"):
        open_model(folder)


def test_a_model_that_never_finishes_is_stopped_by_the_time_limit(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from trojanscope.cli import main

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(np.array([0.0], np.float32), "one")])
    nodes = [helper.make_node("ReduceSum", ["x"], ["m"], keepdims=1),
             helper.make_node("Loop", ["M", "cond", "zero"], ["acc"], body=body),
             helper.make_node("Add", ["m", "acc"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 1, 4, 4])], [helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, None)], initializer=[
        numpy_helper.from_array(np.array(1 << 62, np.int64), "M"),
        numpy_helper.from_array(np.array(True), "cond"),
        numpy_helper.from_array(np.array([0.0], np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (tmp_path / "loop.onnx").write_bytes(model.SerializeToString())
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((20, 4, 4)).astype(
        np.float32), y=np.arange(20) % 2)
    assert main(["vet", str(tmp_path / "d.npz"), "--model", str(tmp_path / "loop.onnx"),
                 "--layer", "m", "--detector", "spectral", "--time-limit", "15"]) == 2
    assert "stopped after 15 s (--time-limit)" in capsys.readouterr().err


@pytest.mark.parametrize("config,preprocessor,message", [
    ({"model_type": "vit", "id2label": ["a", "b"]}, None, "not a loadable image classifier"),
    ({"model_type": "vit"}, [], "not a JSON object"),
    ({"model_type": "vit"}, {"size": {"height": 5000, "width": 5000}}, "up to 1024"),
    ({"model_type": "vit"}, {"image_mean": "grey"}, "three finite numbers"),
])
def test_hostile_hugging_face_configs_are_clear_errors(tmp_path, config, preprocessor, message):
    pytest.importorskip("transformers")
    from safetensors.torch import save_file

    from trojanscope.ml import ModelError, open_model

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file({}, str(folder / "model.safetensors"))
    if preprocessor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    with pytest.raises(ModelError, match=message):
        open_model(folder)
