"""One case per public advisory class of the last two years, built from bytes: picklescan's
CVE-2025-1716/1889/1944/1945/10155/10156/10157, Keras's safe_mode CVE-2025-1550/8747/9905/9906
and torch's weights_only bypass CVE-2025-32434. Each must fail the default gate (high)."""

from __future__ import annotations

import struct
import zlib

import pytest

from trojanscope.artifacts import scan_bytes
from trojanscope.attacks import model_files as mf
from trojanscope.attacks import payload_files as pf
from trojanscope.attacks.pickle_payloads import STOP, call, classic, global_, proto, unicode
from trojanscope.findings import Severity


def _stored_zip(name: str, data: bytes) -> bytes:
    import zipfile

    return mf.zip_of({name: data}, compression=zipfile.ZIP_STORED)


def _bad_crc(data: bytes) -> bytes:
    """Every CRC field zeroed: zipfile refuses the member, torch's reader does not check."""
    out = bytearray(data)
    for magic, at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        start = out.find(magic)
        while start >= 0:
            out[start + at:start + at + 4] = b"\0\0\0\0"
            start = out.find(magic, start + 4)
    return bytes(out)


def _flagged(data: bytes) -> bytes:
    """The encryption flag set on a member that is not encrypted (CVE-2025-1945's trick)."""
    out = bytearray(data)
    for magic, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = out.find(magic)
        out[start + at] |= 0x1
    return bytes(out)


def _renamed_local_header(data: bytes) -> bytes:
    at = data.index(b"archive/data.pkl")
    return data[:at] + b"archive/data.txt" + data[at + 16:]


CASES = {
    # picklescan
    "CVE-2025-1716 pip.main as the callable": lambda: proto(2) + call(
        global_("pip", "main"), b"(" + unicode("install") + unicode("evil") + b"l") + STOP,
    "CVE-2025-1889 payload under an unusual extension": lambda: classic("id"),
    "CVE-2025-1944 zip local header names another file": lambda: _renamed_local_header(
        mf.torch_zip(classic("id"))),
    "CVE-2025-1945 zip flag bits set on a plain member": lambda: _flagged(
        _stored_zip("archive/data.pkl", classic("id"))),
    "CVE-2025-10155 payload in a .bin under a torch layout": lambda: mf.torch_legacy(
        classic("id"), at=3),
    "CVE-2025-10156 zip with a bad CRC": lambda: _bad_crc(
        _stored_zip("archive/data.pkl", classic("id"))),
    "CVE-2025-10157 submodule of a dangerous module": lambda: proto(2) + call(
        global_("asyncio.unix_events", "_UnixSubprocessTransport"), unicode("id")) + STOP,
    # Keras safe_mode
    "CVE-2025-1550 config object from a module outside Keras": lambda: pf.GENERATORS[
        "keras-module"]("id"),
    "CVE-2025-8747 keras.utils.get_file from a config": lambda: pf._keras_archive([{
        "module": "keras.layers", "class_name": "Dense", "registered_name": None,
        "config": {"name": "d", "activation": {"module": "keras.utils", "class_name": "function",
                                                "config": "get_file", "registered_name": None}}}]),
    "CVE-2025-9905 Lambda layer in a legacy HDF5 model": lambda: pf.GENERATORS["keras-h5"](
        "id"),
    "CVE-2025-9906 config turns safe mode off": lambda: pf._keras_archive([{
        "module": "keras.config", "class_name": "function",
        "config": "enable_unsafe_deserialization", "registered_name": None}]),
    # torch
    "CVE-2025-32434 TorchScript archive given to torch.load(weights_only=True)": lambda:
        pf.torchscript("id", path="/tmp/x"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_advisory_class_is_caught(case):
    if "HDF5" in case:
        pytest.importorskip("h5py")
    report = scan_bytes(CASES[case](), "model.xyz")
    assert report.max_severity is not None and report.max_severity >= Severity.HIGH, \
        [(f.rule, f.severity, f.message) for f in report.findings]


def test_the_bad_crc_fixture_is_what_a_crc_blind_reader_loads():
    data = _bad_crc(_stored_zip("archive/data.pkl", classic("id")))
    header = data.index(b"PK\x03\x04")
    name_length, extra_length = struct.unpack("<HH", data[header + 26:header + 30])
    body = data[header + 30 + name_length + extra_length:][:len(classic("id"))]
    assert body == classic("id") and zlib.crc32(body) != 0
