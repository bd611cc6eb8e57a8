"""The command line: exit codes, output formats, errors without tracebacks; pinned outputs."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import pytest

from trojanscope import RULES, Severity
from trojanscope.artifacts import scan
from trojanscope.attacks import model_files as mf
from trojanscope.attacks.pickle_payloads import PAYLOADS
from trojanscope.cli import main
from trojanscope.render import render_json, render_sarif, render_text

GOLDEN = Path(__file__).parent / "golden"
SCHEMA = json.loads(resources.files("trojanscope.render").joinpath("report.schema.json")
                    .read_text("utf-8"))


class Result:
    def __init__(self, exit_code: int, output: str):
        self.exit_code, self.output = exit_code, output


@pytest.fixture
def run(capsys):
    """Run the command line in-process; exit code and stdout+stderr, as a user sees them."""
    def _run(*args) -> Result:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors and --version
            code = exc.code
        out = capsys.readouterr()
        return Result(code, out.out + out.err)
    return _run


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A small folder with one file of each kind, scanned through relative paths."""
    files = {
        "clean/weights.pkl": mf.harmless_pickle(),
        "clean/notes.txt": b"a model card\n",
        "bad/model.pt": mf.torch_zip(PAYLOADS["classic"]("id")),
        "bad/bundle.tar.gz": mf.WRAPPERS["tar.gz"](PAYLOADS["getattr-chain"]("id")),
        "odd/frame.pkl": PAYLOADS["lying-frame"]("id"),
        "odd/custom.pkl": b"\x80\x02c__main__\nNet\n)\x81.",
        "odd/objects.npy": mf.npy_object(mf.harmless_pickle()),
    }
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_exit_0_when_clean(corpus, run):
    result = run("scan", "clean")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "scan: 2 file(s), 1 finding(s): 1 info (1 below the display " \
        "threshold)"  # notes.txt: not a model format
    assert "no findings" in run("scan", "clean/weights.pkl").output


def test_exit_1_on_findings_and_fail_on_threshold(corpus, run):
    assert run("scan", "bad").exit_code == 1
    assert run("scan", "odd/custom.pkl").exit_code == 1  # a global the policy does not know
    assert run("scan", "odd/objects.npy").exit_code == 0  # medium only; --fail-on is high
    assert run("scan", "odd/objects.npy", "--fail-on", "medium").exit_code == 1
    assert run("scan", "bad", "--fail-on", "critical").exit_code == 1


def test_exit_2_when_nothing_could_be_examined(corpus, run):
    result = run("scan", "missing.pt")
    assert result.exit_code == 2
    assert "missing.pt: no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_bad_allowlist_is_a_clear_error(corpus, run):
    Path("allow.toml").write_text("[allow\n")
    result = run("scan", "clean", "--allow", "allow.toml")
    assert result.exit_code == 2
    assert "allow.toml: not valid TOML" in result.output
    assert "Traceback" not in result.output


def test_allowlist_through_the_cli(corpus, run):
    Path("allow.toml").write_text('[allow]\n"__main__" = ["Net"]\n')
    result = run("scan", "odd/custom.pkl", "--allow", "allow.toml", "--fail-on", "low")
    assert result.exit_code == 0, result.output


def test_bad_option_values_exit_2(corpus, run):
    assert run("scan", "clean", "--fail-on", "severe").exit_code == 2
    assert run("scan", "clean", "--format", "xml").exit_code == 2


def test_text_output_names_rule_place_and_remedy(corpus, run):
    result = run("scan", "bad")
    out = result.output
    assert "pickle.unsafe-global" in out and "archive/data.pkl @0" in out
    assert "imports os.system" in out
    assert "Do not load this file" in out


def test_json_output_matches_schema_and_written_to_file(corpus, run):
    result = run("scan", ".", "--format", "json", "--output", "report.json")
    assert result.exit_code == 1
    data = json.loads(Path("report.json").read_text())
    pytest.importorskip("jsonschema").validate(data, SCHEMA)
    assert data["summary"]["by_severity"]["critical"] >= 2
    assert {f["rule"] for f in data["findings"]} <= set(RULES)


def test_unwritable_output_is_a_clear_error(corpus, run):
    result = run("scan", "clean", "--output", "no/such/dir/report.json")  # before any work
    assert result.exit_code == 2 and "-o's folder does not exist" in result.output
    Path("folder").mkdir()
    result = run("scan", "clean", "--output", "folder")  # a folder: before any work too
    assert result.exit_code == 2 and "-o is a folder, not a file" in result.output


def test_sarif_is_valid_2_1_0(corpus):
    log = json.loads(render_sarif(scan(".")))
    assert log["version"] == "2.1.0"
    run_ = log["runs"][0]
    rule_ids = [r["id"] for r in run_["tool"]["driver"]["rules"]]
    for result in run_["results"]:
        assert result["ruleId"] == rule_ids[result["ruleIndex"]]
        assert result["level"] in {"error", "warning", "note"}
        assert result["partialFingerprints"]["trojanscope/v1"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert _sarif_schema_subset_ok(log)


def _sarif_schema_subset_ok(log) -> bool:
    """The parts of the SARIF 2.1.0 schema that dashboards reject on, checked by hand (the full
    schema cannot be fetched offline)."""
    assert set(log) == {"$schema", "version", "runs"}
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "trojanscope" and isinstance(driver["rules"], list)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["defaultConfiguration"]["level"]
        float(rule["properties"]["security-severity"])
    return True


def test_rules_command_lists_the_catalogue(run):
    result = run("rules")
    assert result.exit_code == 0
    for rule_id in ("pickle.unsafe-global", "archive.too-deep", "numpy.object-array"):
        assert rule_id in result.output


def test_rules_are_all_listed_without_the_extras():
    """A plain install (no numpy, scipy, scikit-learn or torch) lists every rule."""
    import subprocess
    import sys

    def listed(blocked: tuple[str, ...]) -> set[str]:
        code = ("import sys\n"
                f"for name in {blocked!r}: sys.modules[name] = None  # as if not installed\n"
                "from trojanscope.cli import main\nsys.exit(main(['rules', '--markdown']))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        return {line.split("`")[1] for line in result.stdout.splitlines()
                if line.startswith("| `")}

    everything = listed(())
    assert listed(("numpy", "scipy", "sklearn", "torch")) == everything
    assert {"vet.poisoned-class", "model.trojaned-class", "verify.file-changed"} <= everything


def test_version(run):
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("trojanscope ")


def test_demo_flags_every_harmful_file_and_no_harmless_one(tmp_path, run):
    page = tmp_path / "demo.html"
    result = run("demo", "--scan-only", "--keep", tmp_path / "files", "-o", page)
    assert result.exit_code == 0, result.output
    assert "11 harmful files, 4 harmless: every harmful file flagged" in result.output
    assert "1 of 1 steps right" in result.output
    assert (tmp_path / "files" / "suspect" / "model.pt").exists()
    assert "1. scan: is this model file safe to load?" in page.read_text()


def test_demo_refuses_a_report_folder_that_does_not_exist(tmp_path, run):
    result = run("demo", "--scan-only", "-o", tmp_path / "missing" / "demo.html")
    assert result.exit_code == 2
    assert "missing" in result.output and "Traceback" not in result.output


def test_same_input_same_report(corpus):
    first = render_json(scan("."), timings=False)
    second = render_json(scan("."), timings=False)
    assert first == second


def test_rendering_without_timings_leaves_the_report_as_it_was(corpus):
    report = scan(".")
    seconds = [entry["seconds"] for entry in report.results["files"]]
    render_json(report, timings=False)
    assert [entry["seconds"] for entry in report.results["files"]] == seconds


@pytest.mark.parametrize("form", ["json", "sarif", "text"])
def test_output_matches_golden(corpus, update_goldens, form):
    report = scan(sorted(str(p) for p in Path(".").iterdir()))
    renderers = {"json": lambda r: render_json(r, timings=False), "sarif": render_sarif,
                 "text": lambda r: render_text(r, min_severity=Severity.INFO)}
    text = renderers[form](report)
    text = text.replace(report.version, "VERSION")
    golden = GOLDEN / f"scan.{form}"
    if update_goldens or not golden.exists():
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
        if not update_goldens:
            pytest.fail(f"golden {golden.name} was missing and has been written; run again")
    assert text == golden.read_text(), "output changed; rerun with --update-goldens if intended"


def test_no_color_codes_when_not_a_terminal(corpus, run):
    assert "\x1b[" not in run("scan", "bad").output


def test_paths_with_spaces_and_unicode(tmp_path, run):
    path = tmp_path / "my models" / "modèle 1.pt"
    path.parent.mkdir()
    path.write_bytes(mf.torch_zip(PAYLOADS["classic"]("id")))
    result = run("scan", path.parent)
    assert result.exit_code == 1 and "modèle 1.pt" in result.output
    assert os.path.exists(path)


def test_progress_bars_stay_off_unless_turned_on_at_a_terminal(capsys):
    from trojanscope import progress

    progress.enable(True)  # pytest's stderr is not a terminal
    assert list(progress.track(range(3), "work")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    progress.enable(False)


def test_a_child_error_names_the_model_file():
    from trojanscope.api import _naming_the_model

    message = _naming_the_model("Expected input at *args[0].shape[0] to be equal to 2, but got "
                                "96", ["m.pt2"])
    assert message.startswith("m.pt2: Expected") and "dynamic batch dimension" in message
    assert _naming_the_model("m.pt2: not a model", ["m.pt2"]) == "m.pt2: not a model"


@pytest.mark.parametrize("form", ["sarif", "html", "text", "json"])
def test_a_file_name_that_is_not_utf8_is_reported_in_every_format(tmp_path, form):
    import os
    import subprocess
    import sys

    folder = tmp_path / "m"
    folder.mkdir()
    name = folder / os.fsdecode(b"odd-\xff.pkl")
    name.write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")
    out = tmp_path / f"report.{form}"
    done = subprocess.run([sys.executable, "-m", "trojanscope", "scan", str(folder), "-f", form,
                           "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "odd-" in out.read_text(encoding="utf-8")


def test_names_that_steer_a_terminal_are_shown_escaped_and_the_findings_listed(tmp_path, run):
    """File names, archive members and pickle globals are the attacker's: rich markup in them
    once crashed the text report (a traceback instead of the findings), and terminal sequences
    (colour, window title, Trojan Source's bidi overrides) reached the terminal as written."""
    import zipfile

    gadget = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."
    (tmp_path / "a[\\x]\x1b]0;PWNED\x07\u202ered.pkl").write_bytes(gadget)
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as archive:
        archive.writestr("arch/[/q]\x1b[31m\rdata.pkl", gadget)
    (tmp_path / "g.pkl").write_bytes(b"\x80\x02cos[/b]\x1b[2J\nsystem\nq\x00)Rq\x01.")
    (tmp_path / "m.pkl\nscan: 1 file(s), no findings").write_bytes(gadget)  # a forged line
    result = run("scan", tmp_path)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.count("critical") >= 4
    assert "\nscan: 1 file(s), no findings" not in result.output
    assert "m.pkl\\x0ascan: 1 file(s), no findings" in result.output
    for steering in ("\x1b", "\x07", "\u202e", "\r"):
        assert steering not in result.output
    assert "\\x1b]0;PWNED\\x07\\u202ered.pkl" in result.output
    assert "arch/[/q]\\x1b[31m\\x0ddata.pkl" in result.output
    assert "[/b]\\x1b[2J" in result.output


@pytest.mark.parametrize("form", ["json", "sarif", "cyclonedx"])
def test_a_nan_in_a_model_file_leaves_the_report_strict_json(tmp_path, run, form):
    """JSON has no NaN: Python writes one bare, and JavaScript's, Go's and GitHub's readers
    reject the whole report (a red team's Keras config with a NaN layer name)."""
    model = tmp_path / "model.json"
    model.write_text('{"class_name": "Sequential", "config": {"layers": [{"class_name": '
                     '"Lambda", "config": {"name": NaN, "function": ["4wAAAA", null, null]}}]}}')
    out = tmp_path / f"report.{form}"
    assert run("scan", model, "-f", form, "-o", out).exit_code == 1

    def refuse(constant):
        raise ValueError(constant)

    document = json.loads(out.read_text(), parse_constant=refuse)
    assert "keras.lambda-layer" in json.dumps(document)


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_an_output_that_is_a_link_planted_in_the_scanned_folder_is_refused(tmp_path, run,
                                                                           link):
    """A red team's: the scanned repository holds `scan.sarif -> pytorch_model.bin`, and the
    README's `scan . -f sarif -o scan.sarif` replaced the evidence with the report."""
    evidence = tmp_path / "pytorch_model.bin"
    evidence.write_bytes(mf.torch_zip(PAYLOADS["classic"]("id")))
    kept = evidence.read_bytes()
    out = tmp_path / "scan.sarif"
    out.symlink_to(evidence.name) if link == "symbolic" else out.hardlink_to(evidence)
    result = run("scan", tmp_path, "-f", "sarif", "-o", out)
    assert result.exit_code == 2 and ("is a link" in result.output or
                                      "would overwrite a file of the input" in result.output)
    assert evidence.read_bytes() == kept
    elsewhere = tmp_path.parent / f"{tmp_path.name}-out.sarif"  # outside the folder: a link
    elsewhere.symlink_to(evidence)                               # is refused all the same
    assert run("scan", tmp_path, "-f", "sarif", "-o", elsewhere).exit_code == 2
    assert evidence.read_bytes() == kept
    model = tmp_path / "model.pkl"  # a file of the scanned folder, named by the user
    model.write_bytes(PAYLOADS["classic"]("id"))
    result = run("scan", tmp_path, "-f", "json", "-o", model)
    assert result.exit_code == 2 and "would overwrite a file of the input" in result.output
    assert model.read_bytes() == PAYLOADS["classic"]("id")


def test_an_output_through_a_folder_link_planted_in_the_scanned_folder_is_refused(tmp_path,
                                                                                    run):
    """A red team's: `models/lnk -> ../../victim-folder` in the scanned folder, and
    `-o d/models/lnk/victim.pkl` replaced a file outside it; a new file there is refused too."""
    scanned, outside = tmp_path / "d", tmp_path / "victim-folder"
    (scanned / "models").mkdir(parents=True)
    outside.mkdir()
    (scanned / "models" / "model.pkl").write_bytes(PAYLOADS["classic"]("id"))
    victim = outside / "victim.pkl"
    victim.write_bytes(b"kept")
    (scanned / "models" / "lnk").symlink_to(outside, target_is_directory=True)
    for name in ("victim.pkl", "new.json"):
        result = run("scan", scanned, "-f", "json", "-o", scanned / "models" / "lnk" / name)
        assert result.exit_code == 2 and "goes through a link" in result.output
    assert victim.read_bytes() == b"kept" and not (outside / "new.json").exists()
    model = scanned / "models" / "model.pkl"  # the second red team's: a file scanned, and
    result = run("scan", model, "-f", "json", "-o", scanned / "models" / "lnk" / "victim.pkl")
    assert result.exit_code == 2 and "goes through a link" in result.output  # a link beside it
    assert victim.read_bytes() == b"kept"
    (scanned / "weights.bin").symlink_to(victim)  # the third red team's: a file the scan
    result = run("scan", scanned, "-f", "json", "-o", victim)  # reads through a link
    assert result.exit_code == 2 and "would overwrite a file of the input" in result.output
    assert victim.read_bytes() == b"kept"
    fine = tmp_path / "report.json"  # a plain path outside the folder is written
    assert run("scan", scanned, "-f", "json", "-o", fine).exit_code == 1 and fine.exists()


def test_an_output_that_is_a_fifo_a_loop_or_an_input_of_another_kind_is_refused(tmp_path, run):
    """The second red team's: a FIFO planted as the report hung the scan; a loop of links
    gave a traceback; `--allow` and `--cache` files were replaced by the report."""
    import os

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(PAYLOADS["classic"]("id"))
    os.mkfifo(folder / "scan.sarif")
    result = run("scan", folder, "-f", "sarif", "-o", folder / "scan.sarif")
    assert result.exit_code == 2 and "not a regular file" in result.output
    (folder / "loop").symlink_to("loop")
    for out in (folder / "loop", folder / "loop" / "r.json"):
        result = run("scan", folder / "model.pkl", "-f", "json", "-o", out)
        assert result.exit_code == 2 and "Traceback" not in result.output
    allow = tmp_path / "allow.toml"
    allow.write_text('[allow]\n"collections" = ["OrderedDict"]\n')
    result = run("scan", folder / "model.pkl", "--allow", allow, "-f", "json", "-o", allow)
    assert result.exit_code == 2 and "would overwrite the input" in result.output
    assert allow.read_text().startswith("[allow]")
    for argv in (["scan", "a" * 300], ["scan", folder / "model.pkl", "-o", "b" * 300]):
        result = run(*argv)
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_the_report_cannot_replace_the_result_cache_however_it_is_named(tmp_path, run,
                                                                         monkeypatch):
    """`-o` onto the result cache given as its default (`--cache` alone), with ~, or as a
    sqlite:/// URL replaced the database (a red team's, left until now)."""
    monkeypatch.setenv("TROJANSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    model = tmp_path / "model.pkl"
    model.write_bytes(PAYLOADS["classic"]("id"))
    default = tmp_path / "cache" / "scan-results.sqlite"
    assert run("scan", model, "--cache", "-f", "json").exit_code == 1 and default.exists()
    named = tmp_path / "c.sqlite"
    assert run("scan", model, "--cache", named, "-f", "json").exit_code == 1
    for cache, out in ((None, default), ("~/c.sqlite", named),
                       (f"sqlite:///{named}", named)):
        before = out.read_bytes()
        argv = ["--cache"] if cache is None else ["--cache", cache]
        result = run("scan", model, *argv, "-f", "json", "-o", out)
        assert result.exit_code == 2 and "would overwrite the input" in result.output
        assert out.read_bytes() == before


def test_a_signature_nested_past_the_stack_is_a_finding_and_the_rest_is_reported(tmp_path,
                                                                                  run):
    """A red team's: a model.sig of 100,000 nested brackets raised RecursionError, so the scan
    ended in a traceback and wrote no report, hiding the model's own critical finding."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "pytorch_model.bin").write_bytes(PAYLOADS["classic"]("id"))
    (model / "model.sig").write_text("[" * 100_000 + "]" * 100_000)
    out = tmp_path / "report.json"
    assert run("scan", model, "-f", "json", "-o", out).exit_code == 1
    found = {f["rule"] for f in json.loads(out.read_text())["findings"]}
    assert {"pickle.unsafe-global", "provenance.signature-mismatch"} <= found


def test_a_reader_that_leaves_early_does_not_turn_findings_into_exit_0(tmp_path):
    """`trojanscope scan . | head` under `set -o pipefail`: the broken pipe once made the exit
    code 0, "nothing found" (a red team's)."""
    import subprocess
    import sys

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(PAYLOADS["classic"]("id"))
    script = ("import io, sys\n"
              "from trojanscope import cli\n"
              "class Left(io.TextIOWrapper):\n"
              "    gone = False\n"
              "    def flush(self):\n"
              "        if not Left.gone:\n"
              "            Left.gone = True\n"
              "            raise BrokenPipeError\n"
              "sys.stdout = Left(open(sys.stdout.fileno(), 'wb', closefd=False))\n"
              f"sys.argv = ['trojanscope', 'scan', {str(bad)!r}]\n"
              "cli.run()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 1, done.stderr
