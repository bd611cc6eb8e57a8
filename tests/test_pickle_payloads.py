"""Every known pickle trick, assembled from opcodes: the exact rule, severity and place."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import rules

from trojanscope.artifacts import scan, scan_bytes
from trojanscope.attacks.pickle_payloads import PAYLOADS
from trojanscope.findings import Severity

# payload -> (rule that must fire, its severity, the global it names or None)
EXPECTED = {
    "classic": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "posix-system": ("pickle.unsafe-global", Severity.CRITICAL, "posix.system"),
    "subprocess-popen": ("pickle.unsafe-global", Severity.CRITICAL, "subprocess.Popen"),
    "dotted-name": ("pickle.unsafe-global", Severity.CRITICAL, "pathlib.os.system"),
    "memo-indirection": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "builtins-exec": ("pickle.unsafe-global", Severity.CRITICAL, "builtins.exec"),
    "python2-builtin": ("pickle.unsafe-global", Severity.CRITICAL, "__builtin__.eval"),
    "getattr-chain": ("pickle.indirect-call", Severity.HIGH, None),
    "runpy": ("pickle.unsafe-global", Severity.CRITICAL, "runpy._run_code"),
    "torch-hub-load": ("pickle.unsafe-global", Severity.CRITICAL, "torch.hub.load"),
    "torch-load": ("pickle.unsafe-global", Severity.CRITICAL, "torch.load"),
    "nested-load-from-bytes": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "nested-pickle-loads": ("pickle.unsafe-global", Severity.CRITICAL, "pickle.loads"),
    "logging-dictconfig": ("pickle.unknown-global", Severity.HIGH, "logging.config.dictConfig"),
    "rebuild-applier": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "generator-ctor": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "partial-nested": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "utf16-nested": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "partial-setstate": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "dynamic-name": ("pickle.dynamic-global", Severity.HIGH, None),
    "extension-code": ("pickle.extension-code", Severity.HIGH, None),
    "build-on-function": ("pickle.build-on-global", Severity.HIGH, None),
    "lying-frame": ("pickle.frame-mismatch", Severity.MEDIUM, None),
    "truncated": ("pickle.malformed-with-imports", Severity.HIGH, None),
    "inst-opcode": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "obj-opcode": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
    "float-nul": ("pickle.unsafe-global", Severity.CRITICAL, "os.system"),
}
# Payloads that run the command under plain pickle.loads in this environment (the others need
# torch, the network or a registered copyreg extension, and fail before the command).
NEEDS_TORCH = {"torch-hub-load", "torch-load", "nested-load-from-bytes", "rebuild-applier",
               "generator-ctor", "partial-nested", "utf16-nested", "partial-setstate"}
RUNS_UNDER_PICKLE = set(EXPECTED) - NEEDS_TORCH - {"extension-code", "build-on-function"}
# With torch installed, these run under pickle.loads too (torch.load's weights_only=False path).
RUNS_WITH_TORCH = NEEDS_TORCH - {"torch-hub-load", "torch-load"}


def test_every_payload_has_an_expectation():
    assert set(EXPECTED) == set(PAYLOADS)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_is_flagged_with_its_rule(name):
    rule, severity, named = EXPECTED[name]
    report = scan_bytes(PAYLOADS[name]("touch /nonexistent/canary"), name)
    hits = [f for f in report.findings if f.rule == rule]
    assert hits, f"{name}: {[(f.rule, str(f.severity)) for f in report.findings]}"
    assert hits[0].severity == severity
    assert report.max_severity >= Severity.HIGH, "every payload must fail the default threshold"
    if named:
        assert any(named in f.message for f in hits), [f.message for f in hits]
    assert all(f.location.path == name for f in report.findings)


def test_dotted_name_is_judged_by_what_the_walk_reaches():
    finding = scan_bytes(PAYLOADS["dotted-name"]("id")).findings[0]
    assert finding.evidence["matched"] == "os.system"
    # The offset is the importing opcode's: PROTO (2 bytes), two short strings (9 + 11), then
    # STACK_GLOBAL at byte 22.
    assert finding.location.offset == 22


def test_nested_payload_is_located_inside_its_carrier():
    payload = PAYLOADS["nested-load-from-bytes"]("id")
    report = scan_bytes(payload, "outer.pkl")
    inner = [f for f in report.findings if f.rule == "pickle.unsafe-global"]
    reduce_at = len(payload) - 2  # the call that hands the bytes over: REDUCE, then STOP
    assert inner and inner[0].location.member == (f"<nested pickle at {reduce_at}>",)
    assert inner[0].location.offset == 0
    assert "pickle.nested" in rules(report)


def test_getattr_chain_names_both_gadgets():
    report = scan_bytes(PAYLOADS["getattr-chain"]("id"))
    names = {f.evidence.get("matched") for f in report.findings if f.rule == "pickle.unsafe-global"}
    assert names == {"builtins.getattr", "builtins.__import__"}


def test_repeated_import_is_reported_once_with_a_count():
    payload = PAYLOADS["classic"]("id")[:-1]
    twice = payload + b"0" + payload + b"."  # POP the first result, call again, STOP
    report = scan_bytes(twice)
    hits = [f for f in report.findings if f.rule == "pickle.unsafe-global"]
    assert len(hits) == 1 and hits[0].evidence["occurrences"] == 2


@pytest.mark.parametrize("name", sorted(RUNS_UNDER_PICKLE) + [
    pytest.param(name, marks=pytest.mark.torch) for name in sorted(RUNS_WITH_TORCH)])
def test_fixture_really_is_harmful(tmp_path, name):
    """The fixture is a working exploit: plain pickle.loads runs the command."""
    canary = tmp_path / "ran"
    path = tmp_path / "payload.pkl"
    path.write_bytes(PAYLOADS[name](f"touch {canary}"))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(path)!r}, "
                    "'rb').read())"], capture_output=True, timeout=60)
    assert canary.exists(), f"{name} did not run under pickle.loads: the fixture is wrong"


CANARY_SCRIPT = r"""
import builtins, marshal, pickle, sys, pathlib
from trojanscope.artifacts import scan, scan_bytes
from trojanscope.attacks import model_files as mf
# Warm up: libraries import modules lazily (py7zr), and Python's import system itself calls
# marshal.loads; do that before the spies go in.
for wrap in mf.WRAPPERS.values():
    scan_bytes(wrap(mf.harmless_pickle()))
from trojanscope.artifacts.jinja_template import jinja_environment
jinja_environment().parse("{% for m in messages %}{{ m['content'] }}{% endfor %}")  # jinja2
banned = []
def refuse(name):
    def f(*a, **k):
        banned.append(name)
        raise AssertionError(name + " called during a scan")
    return f
pickle.loads = refuse("pickle.loads"); pickle.load = refuse("pickle.load")
pickle.Unpickler = refuse("pickle.Unpickler"); marshal.loads = refuse("marshal.loads")
real_import = builtins.__import__
imported = []
def spy(name, *a, **k):
    imported.append(name)
    return real_import(name, *a, **k)
builtins.__import__ = spy
report = scan(sys.argv[1])
builtins.__import__ = real_import
gadgets = {"runpy", "webbrowser", "torch", "posix.system", "pdb", "timeit", "cProfile",
           "antigravity", "code", "pty", "tensorflow", "keras"}
print("findings", len(report.findings))
print("banned", banned)
print("imported", sorted(set(imported) & gadgets))
"""


def test_scanning_runs_nothing(tmp_path):
    """Scan every payload in every wrapper in a fresh interpreter; no canary, no gadget import."""
    from trojanscope.attacks import model_files as mf

    canary = tmp_path / "canary"
    folder = tmp_path / "files"
    folder.mkdir()
    for name, make in PAYLOADS.items():
        payload = make(f"touch {canary}")
        (folder / f"{name}.pkl").write_bytes(payload)
        for wrapper, wrap in mf.WRAPPERS.items():
            (folder / f"{name}.{wrapper}").write_bytes(wrap(payload))
        (folder / f"{name}.pt").write_bytes(mf.torch_zip(payload))
        (folder / f"{name}.npy").write_bytes(mf.npy_object(payload))
    # the text handlers too, each with a byte-order mark (a codec looked up late imports)
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (folder / "chat_template.jinja").write_bytes(b"\xef\xbb\xbf" + template.encode())
    (folder / "tokenizer_config.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"chat_template": template}).encode())
    result = subprocess.run([sys.executable, "-c", CANARY_SCRIPT, str(folder)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "banned []" in result.stdout, result.stdout
    assert "imported []" in result.stdout, result.stdout
    assert not canary.exists()
    assert scan(folder).max_severity == Severity.CRITICAL


def test_a_critical_pickle_finding_carries_the_opcodes_around_it():
    from trojanscope.artifacts import scan_bytes
    from trojanscope.attacks.pickle_payloads import PAYLOADS

    # two pickles back to back: the trace is read again without disturbing the scan
    data = PAYLOADS["classic"]("echo one") + PAYLOADS["classic"]("echo two")
    findings = [f for f in scan_bytes(data, "x.pkl").findings
                if f.rule == "pickle.unsafe-global"]
    assert [f.location.offset for f in findings] == [0, len(data) // 2]
    for finding in findings:
        trace = finding.evidence["trace"]
        marked = [line for line in trace if line.startswith(">")]
        assert len(marked) == 1 and "GLOBAL ('os', 'system')" in marked[0]
        assert trace[-1].split()[1] == "STOP" and any("REDUCE" in t for t in trace)


def test_a_pickle_that_swallows_another_formats_magic_number_is_read_as_a_pickle():
    """A red team's polyglot: NONE, then BINFLOAT, whose 8-byte argument holds TFLite's "TFL3"
    at bytes 4-7, so the file is a TFLite model to its magic number and a pickle to
    `pickle.load` and `torch.load`, which read any file from its first byte."""
    import struct

    data = bytearray(b"NG\0\0TFL3\0\0" + b"00" + b"cos\nsystem\n(S'touch /tmp/x'\ntR.")
    data += b"\0" * (0x474E - 4 - len(data)) + struct.pack("<HHi", 4, 4, 4)
    report = scan_bytes(bytes(data), "pytorch_model.bin")
    assert report.max_severity == Severity.CRITICAL
    assert "pickle.unsafe-global" in rules(report)


def test_a_pickle_of_thousands_of_globals_traces_only_its_first_findings():
    """Each trace reads the pickle again from its start; a trace for each of 8,000 distinct
    globals made a 143 KB file take 80 s (a red team's)."""
    from trojanscope.artifacts.pickle_format import TRACED

    data = b"\x80\x02" + b"".join(b"cos\nsystem%d\n0" % i for i in range(40)) + \
        PAYLOADS["classic"]("id")[2:]
    high = [f for f in scan_bytes(data, "x.pkl").findings if f.severity >= Severity.HIGH]
    assert len(high) > TRACED
    assert [("trace" in f.evidence) for f in high] == [True] * TRACED + \
        [False] * (len(high) - TRACED)


@pytest.mark.parametrize("prefix", [b"I99999999999999999999\x00zz\n0", b"F 1_0\n0",
                                    b"L 1_0L\n0", b"I 0x1_0\n0"])
def test_a_number_only_one_unpickler_reads_does_not_hide_what_follows(prefix):
    """A red team's: the C unpickler reads INT up to a NUL past 2**63, and pickle.py (which
    joblib.load uses) reads FLOAT, LONG and INT with float() and int(), spaces and
    underscores and all; the scanner took such a line for the end of a pickle that imports
    nothing, and the payload after it passed as an unrecognised file."""
    data = prefix + b"cposix\nsystem\n(S'touch /tmp/x'\ntR."
    assert scan_bytes(data, "m.pkl").max_severity == Severity.CRITICAL
