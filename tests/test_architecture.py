"""House rules that code review alone would miss: registries, the rule catalogue, import bans."""

from __future__ import annotations

import ast
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import trojanscope
from trojanscope import RULES, artifacts
from trojanscope.artifacts.registry import handlers
from trojanscope.cli import main

SRC = Path(trojanscope.__file__).parent
DOCS = SRC.parent.parent / "docs"


def test_every_format_module_registers_a_handler():
    modules = {m.name for m in pkgutil.iter_modules(artifacts.__path__)
               if m.name.endswith("_format")}
    registered = {h.__module__.rsplit(".", 1)[-1] for h in handlers()}
    assert modules and modules <= registered, modules - registered


def test_handler_names_are_unique():
    names = [h.name for h in handlers()]
    assert len(names) == len(set(names))


def _rule_modules():
    """What `trojanscope rules` imports to list the rules: on any install, every module that
    declares one (checked below against the source)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        main(["rules"])


def test_docs_rules_md_is_the_catalogue(capsys):
    _rule_modules()
    main(["rules", "--markdown"])
    expected = capsys.readouterr().out
    assert (DOCS / "rules.md").read_text() == expected, \
        "regenerate: trojanscope rules --markdown > docs/rules.md"
    for rule_id in RULES:
        assert f"`{rule_id}`" in expected


def test_every_rule_id_in_the_source_is_declared():
    """A string that looks like a rule id and is compared or used must be in the catalogue."""
    _rule_modules()
    used = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Rule":
                used.add(node.args[0].value)
    assert used == set(RULES)
    for rule in RULES.values():
        assert rule.title and rule.remedy and rule.id.count(".") == 1


BANNED_IMPORTS = {"torch", "tensorflow", "keras", "dill", "cloudpickle", "joblib", "numpy", "onnx",
                  "onnxruntime", "safetensors", "gguf"}
BANNED_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
                ("_pickle", "loads"), ("marshal", "loads"), ("marshal", "load"),
                ("torch", "load"), ("numpy", "load"), ("builtins", "eval"), ("builtins", "exec")}


def test_artifacts_never_imports_frameworks_or_deserialises():
    for path in (SRC / "artifacts").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                assert name.split(".")[0] not in BANNED_IMPORTS, f"{path.name} imports {name}"
                assert name not in {"pickle", "marshal", "_pickle"}, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "__import__"}, path.name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                call = (node.value.id, node.attr)
                assert call not in BANNED_CALLS, f"{path.name}: {'.'.join(call)}"


def test_scan_does_not_import_heavy_frameworks():
    code = ("import sys; from trojanscope.artifacts import scan_bytes; "
            "from trojanscope.attacks import model_files as mf; "
            "[scan_bytes(w(mf.harmless_pickle())) for w in mf.WRAPPERS.values()]; "
            "print(sorted(m for m in ('torch','numpy','tensorflow','sklearn','joblib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_clean_including_no_print_outside_render_and_cli():
    if shutil.which("ruff") is None:
        pytest.skip('needs ruff: pip install "trojanscope[test]"')
    root = SRC.parent.parent
    result = subprocess.run(["ruff", "check", "src", "tests", "benchmarks"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_modules_stay_small():
    for path in SRC.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines < 800, f"{path.relative_to(SRC)} has {lines} lines: split it"


def test_plugins_register_themselves():
    """Detectors, triggers, repair methods and payloads come from registries (a new one is a
    new decorated function or module); the command line offers the registry's repair methods."""
    from trojanscope.attacks.image_poison import TRIGGERS
    from trojanscope.attacks.pickle_payloads import PAYLOADS

    assert {"badnets", "blended", "wanet", "sig"} <= set(TRIGGERS)
    assert len(PAYLOADS) >= 27 and "classic" in PAYLOADS
    try:
        from trojanscope.data.detectors import DETECTORS
        from trojanscope.model.repair import METHODS
    except ImportError:
        pytest.skip("needs numpy and torch")
    assert {"neighbour-disagreement", "spectral", "spectre", "activation-clustering",
            "local-outlier-factor"} <= set(DETECTORS)
    parser = main.__globals__["build_parser"]("repair")
    repair = next(a for a in parser._subparsers._group_actions[0].choices["repair"]._actions
                  if a.dest == "method")
    assert set(repair.choices) == {"auto", *METHODS}
