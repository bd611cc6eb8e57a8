"""Every command's results: a typed object whose JSON matches the published schema, round-trips
through `Report.from_dict` (how a child process's report comes back), and, for vet, inspect and
verify, matches a golden file as scan's does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import valid_json_report

from trojanscope.findings import Report
from trojanscope.render.json import render_json, report_to_dict
from trojanscope.results import RESULTS, InspectResults, Results

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parents[1]


def test_the_published_schema_is_generated_from_the_results_classes():
    pytest.importorskip("pydantic")
    done = subprocess.run([sys.executable, str(ROOT / "scripts/results_schema.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_command_has_a_results_type_and_the_schema_rejects_a_wrong_one():
    jsonschema = pytest.importorskip("jsonschema")
    assert set(RESULTS) == {"scan", "vet", "inspect", "repair", "diff", "sign", "verify",
                            "redteam", "harden"}
    data = valid_json_report(Report(command="verify", targets=("m",),
                                    results=RESULTS["verify"](signature="m.sig", verified=True)))
    data["results"]["verified"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        valid_json_report(data)
    data["results"] = {"signature": "m.sig", "verified": True, "verdict": "clean"}  # not verify's
    with pytest.raises(jsonschema.ValidationError):
        valid_json_report(data)
    data["results"] = {}  # a command that failed: no results, and that is valid
    valid_json_report(data)


def _golden(name: str, report: Report, update: bool, *replace: tuple[str, str]) -> None:
    text = render_json(report, timings=False).replace(report.version, "VERSION")
    for old, new in replace:
        text = text.replace(old, new)
    golden = GOLDEN / name
    if update or not golden.exists():
        golden.write_text(text)
        if not update:
            pytest.fail(f"golden {golden.name} was missing and has been written; run again")
    assert text == golden.read_text(), "output changed; rerun with --update-goldens if intended"
    back = Report.from_dict(report_to_dict(report))
    assert type(back.results) is type(report.results) and back.results == report.results


def test_vet_json_of_texts_with_a_trigger_phrase(update_goldens):
    from test_vet_text import _corpus

    from trojanscope.api import vet
    from trojanscope.attacks.text_poison import poison_text

    poisoned = poison_text(_corpus(600), "rare-word", 0.05, target=1, seed=0).data
    report = vet(poisoned.subset(range(600), "texts.csv"), seed=0)
    valid_json_report(report)
    assert report.results.poisoned and report.results.trigger_phrases
    _golden("vet.json", report, update_goldens)


def test_inspect_json_and_its_images(update_goldens):
    """The report of a fixed recovery (4 classes of 6x6 images; class 2 easy to reach): the JSON
    form, and the recovered triggers as PNG bytes carried in memory, not in the JSON."""
    np = pytest.importorskip("numpy")
    from trojanscope.data.datasets import Dataset
    from trojanscope.model.inspect import InspectConfig, Recovery, inspection_report
    from trojanscope.model.reverse import Perturbations, Triggers

    rng = np.random.default_rng(0)
    k = 4
    mask = rng.random((k, 1, 6, 6)).round(3)
    triggers = Triggers(mask, rng.random((k, 1, 6, 6)).round(3),
                        np.array([0.2, 0.1, 0.99, 0.3]), np.array([9.0, 8.5, 1.5, 9.5]))
    uap = Perturbations(rng.normal(0, 0.1, (k, 1, 6, 6)), np.array([0.1, 0.2, 0.9, 0.1]), 0.1)
    warps = Perturbations(np.zeros((k, 1, 6, 6)), np.array([0.05, 0.05, 0.1, 0.05]), 0.1)
    found = Recovery(triggers, uap, warps, expected_norm=np.array([9.0, 9.0, 9.0, 9.0]),
                     mask_shrink=np.log(9.0 / triggers.norm),
                     perturbation_lift=np.array([0.0, 0.3, 3.0, -0.1]),
                     warp_lift=np.array([0.0, 0.0, 0.2, 0.0]), search=40, check=40)
    data = Dataset(np.zeros((8, 1, 6, 6), np.float32), np.arange(8) % k, "clean.npz")
    report = inspection_report(found, data, InspectConfig(), "model.pt2")
    valid_json_report(report)
    assert report.results.verdict == "trojaned" and report.results.target_classes == [2]
    assert "images" not in report_to_dict(report)["results"]
    assert len(report.results.images) == 4 * k
    assert all(png.startswith(b"\x89PNG") for png in report.results.images.values())
    _golden("inspect.json", report, update_goldens)


def test_verify_json_of_a_changed_file(tmp_path, update_goldens):
    pytest.importorskip("cryptography")
    from trojanscope.api import sign, verify
    from trojanscope.provenance import keys

    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (model / "config.json").write_text('{"model_type": "vit"}')
    hint = keys.generate(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    valid_json_report(sign(model, tmp_path / "k.pem"))
    (model / "config.json").write_text('{"model_type": "evil"}')
    report = verify(model, tmp_path / "k.pub.pem")
    valid_json_report(report)
    assert report.results.changed == ["config.json"] and not report.results.verified
    _golden("verify.json", report, update_goldens, (str(tmp_path), "TMP"), (hint, "KEY-HINT"))


def test_an_error_report_has_empty_results_of_the_base_type():
    report = Report(command="inspect", targets=("m.pt",))
    assert type(report.results) is Results and report_to_dict(report)["results"] == {}
    assert type(Report.from_dict(report_to_dict(report)).results) is Results
    assert InspectResults.from_dict({"verdict": "clean", "target_classes": [], "score": 0.0,
                                     "per_class": [], "thresholds": {}, "data_split": {}})[
        "verdict"] == "clean"  # a results object reads like its JSON mapping too
    assert json.loads(json.dumps(report_to_dict(report)))["results"] == {}
