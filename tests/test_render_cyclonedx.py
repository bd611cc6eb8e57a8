"""CycloneDX output: a valid 1.6 AI-BOM whose vulnerabilities are the findings, for the files
they affect."""

from __future__ import annotations

import json

import pytest

from trojanscope.artifacts import scan
from trojanscope.attacks import model_files as mf
from trojanscope.attacks.pickle_payloads import PAYLOADS
from trojanscope.cli import main


@pytest.fixture
def folder(tmp_path):
    files = {"clean/weights.pkl": mf.harmless_pickle(), "clean/notes.txt": b"a model card\n",
             "bad/model.pt": mf.torch_zip(PAYLOADS["classic"]("id"))}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_scan_as_cyclonedx_names_each_file_and_each_finding(folder, capsys):
    assert main(["scan", str(folder), "-f", "cyclonedx"]) == 1
    text = capsys.readouterr().out
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    kinds = {c["name"]: c["type"] for c in bom["components"]}
    assert kinds == {"model.pt": "machine-learning-model", "weights.pkl": "machine-learning-model",
                     "notes.txt": "file"}
    critical = [v for v in bom["vulnerabilities"] if v["ratings"][0]["severity"] == "critical"]
    assert [v["id"] for v in critical] == ["pickle.unsafe-global"]
    [affected] = critical[0]["affects"]
    model = next(c for c in bom["components"] if c["name"] == "model.pt")
    assert affected["ref"] == model["bom-ref"]
    assert {"name": "trojanscope:member", "value": "archive/data.pkl"} in critical[0]["properties"]
    assert "Do not load" in critical[0]["recommendation"]


def test_the_same_report_gives_the_same_bytes(folder):
    from trojanscope.render import render

    first = render(scan(str(folder)), "cyclonedx")
    second = render(scan(str(folder)), "cyclonedx")
    assert first == second and json.loads(first)["serialNumber"].startswith("urn:uuid:")


def test_valid_against_the_cyclonedx_1_6_schema(folder):
    validation = pytest.importorskip("cyclonedx.validation.json")
    from cyclonedx.schema import SchemaVersion

    from trojanscope.render import render

    for report in (scan(str(folder)), scan(str(folder / "clean" / "weights.pkl"))):
        error = validation.JsonStrictValidator(SchemaVersion.V1_6).validate_str(
            render(report, "cyclonedx"))
        assert error is None, error
