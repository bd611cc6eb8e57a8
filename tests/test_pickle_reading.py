"""Pickle arguments read exactly as CPython's unpickler reads them: where scan reads less than
the loader, opcodes after the difference would go unseen."""

from __future__ import annotations

import pickle

import pytest

from trojanscope.artifacts import scan_bytes
from trojanscope.attacks.pickle_payloads import classic
from trojanscope.findings import Severity


@pytest.mark.parametrize("number", [b"0x1f", b"010", b"-0X7", b" 7", b"1_000", b"0b11",
                                    b"0o17", b"12\x0034", b"99999999999999999999"])
def test_integers_with_c_prefixes_do_not_hide_what_follows(number, tmp_path):
    """`I0x1` is an integer to CPython's _pickle (strtol, base 0): a payload after it runs."""
    data = b"(I" + number + b"\n0" + classic(f"touch {tmp_path / 'ran'}")[:-1] + b"."
    pickle.loads(data.replace(b"touch", b"true #"))  # the loader gets past the number
    report = scan_bytes(data)
    assert report.max_severity == Severity.CRITICAL, [f.message for f in report.findings]


def test_a_long_protocol_0_string_is_data():
    """Python 2 pickles (sklearn-crfsuite models) hold text lines of any length."""
    data = b"(S'" + b"a" * 200_000 + b"'\np0\nV" + b"b" * 100_000 + b"\np1\nl."
    assert pickle.loads(data) == ["a" * 200_000, "b" * 100_000]
    assert scan_bytes(data).findings == ()


def test_a_long_line_does_not_hide_a_payload():
    data = b"(S'" + b"a" * 300_000 + b"'\n0" + classic("true")
    assert scan_bytes(data).max_severity == Severity.CRITICAL


@pytest.mark.parametrize("text", [
    b"import { Component } from '@angular/core';\nexport class A {}\n",
    b"plugins {\n    id(\"com.android.application\")\n}\n" + b"x" * 5000,
    b"S" + b"o" * 10_000 + b"me long first line\nand more\n",
])
def test_text_that_starts_like_a_pickle_is_not_a_model_file(text):
    """Source files in a scanned package folder: an unpickler fails on them before importing
    anything, so they are no model file (info), never a finding."""
    assert [(f.rule, f.severity) for f in scan_bytes(text).findings] == \
        [("scan.unrecognized-format", Severity.INFO)]


def test_a_second_pickle_that_does_not_look_like_one_is_still_read(tmp_path):
    """A loader that reads pickles back to back runs the second whatever its first bytes."""
    second = b"(S'" + b"a" * 8000 + b"'\n0(" + b"I0x1\n" * 3 + b"0" * 3 + b"0" \
        + classic(f"touch {tmp_path / 'ran'}")
    data = b"\x80\x02]q\x00." + second
    report = scan_bytes(data)
    assert report.max_severity == Severity.CRITICAL, [f.message for f in report.findings]


def test_bytes_after_the_last_pickle_that_import_nothing_are_data():
    data = b"\x80\x02]q\x00." + b"N)R." + bytes(range(256)) * 4
    assert scan_bytes(data).findings == ()


def test_nested_pickles_share_one_budget_of_held_bytes():
    """A pickle nested in a constant of another holds its constants while the outer one still
    holds its own: the memory bound covers both. Past the bound, the nested call's argument
    cannot be examined, and that is high, never a pass."""
    from trojanscope.artifacts import Limits
    from trojanscope.attacks.pickle_payloads import STOP, binbytes, call, global_, proto

    def load_from_bytes(data: bytes) -> bytes:
        return proto(2) + call(global_("torch.storage", "_load_from_bytes"), binbytes(data)) + STOP

    middle = load_from_bytes(classic("true") + b"N" * 400)
    outer = load_from_bytes(middle)
    roomy = scan_bytes(outer, limits=Limits(max_held_bytes=10_000))
    assert "pickle.unsafe-global" in {f.rule for f in roomy.findings}
    # Room for the middle pickle (466 bytes) or for the inner one (423), not for both at once.
    tight = scan_bytes(outer, limits=Limits(max_held_bytes=len(middle) + 100))
    assert [(f.rule, f.severity) for f in tight.findings] == \
        [("pickle.nested-unresolved", Severity.HIGH)]


_PIECES = ["0", "1", "5", "9", ".", "e", "E", "+", "-", "_", " ", "\0", "x", "L", "inf", "nan",
           "inity", "junk", "0x", "07"]


@pytest.mark.parametrize("opcode", [b"F", b"L", b"I", b"I7\np", b"I7\np5\n0g"])
def test_text_numbers_are_read_as_cpython_reads_them(opcode):
    """FLOAT, LONG, INT, PUT and GET lines of random pieces: scan goes on past a number exactly
    when one of CPython's unpicklers does (the C one, a NUL after the digits ending the number;
    or pickle.py's, which joblib.load uses: float() and int() take spaces and underscores), so
    the opcodes after a number are the ones a loader runs."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6))
    def check(pieces):
        line = "".join(pieces).encode("latin-1")
        if b"\n" in line:
            return
        expected = "fails"
        for loads in (pickle.loads, pickle._loads):  # the C unpickler, then pickle.py's
            try:
                expected = loads(opcode + line + b"\n.")
                break
            except Exception:  # noqa: BLE001 - this loader fails here
                continue
        data = opcode + line + b"\n0" + classic("true")
        report = scan_bytes(data)
        ran = report.max_severity == Severity.CRITICAL
        assert ran == (expected != "fails"), (line, expected,
                                              [f.message for f in report.findings])

    check()
