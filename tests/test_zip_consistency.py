"""Zips that two readers could read differently are refused as a whole (zip.ambiguous)."""

from __future__ import annotations

import io
import warnings
import zipfile

from trojanscope.artifacts import scan_bytes
from trojanscope.attacks import model_files as mf
from trojanscope.attacks.pickle_payloads import classic
from trojanscope.findings import Severity


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(out, "w") as archive:
            for name, data in members:
                archive.writestr(name, data)
    return out.getvalue()


def _ambiguous(data: bytes) -> list[str]:
    report = scan_bytes(data, "model.pt")
    return [f.message for f in report.findings if f.rule == "zip.ambiguous" and
            f.severity == Severity.HIGH]


def test_a_clean_torch_zip_is_not_ambiguous():
    assert _ambiguous(mf.torch_zip(mf.harmless_pickle())) == []


def test_a_member_named_twice():
    data = _zip([("archive/data.pkl", mf.harmless_pickle()),
                 ("archive/data.pkl", mf.harmless_pickle())])
    assert any("more than once" in m for m in _ambiguous(data))


def test_two_archives_back_to_back_have_two_end_records():
    """Python's zipfile reads the last directory; a reader that takes the first sees the
    harmful member that the other never shows."""
    harmful = _zip([("archive/data.pkl", classic("true"))])
    harmless = _zip([("archive/data.pkl", mf.harmless_pickle())])
    assert any("end-of-central-directory records" in m for m in _ambiguous(harmful + harmless))


def test_a_local_header_that_names_another_member():
    data = bytearray(_zip([("archive/data.pkl", mf.harmless_pickle())]))
    at = data.index(b"archive/data.pkl")  # the first copy is the local header's
    data[at:at + 16] = b"archive/evil.pkl"
    assert any("local header names it" in m for m in _ambiguous(bytes(data)))
