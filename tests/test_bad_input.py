"""Bad input ends with a clear finding or error, within bounded time and memory; scans go on."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib

import pytest

from trojanscope.artifacts import Limits, scan, scan_bytes
from trojanscope.attacks import model_files as mf
from trojanscope.attacks.pickle_payloads import classic
from trojanscope.findings import Severity

PAYLOAD = classic("touch /nonexistent/canary")
MiB = 1024 * 1024


def _rules(report):
    return {f.rule for f in report.findings}


def test_empty_file_is_reported(write):
    report = scan(write("empty.pt", b""))
    assert _rules(report) == {"scan.empty-file"}
    assert report.exit_code() == 0


def test_missing_path_is_an_error_and_the_rest_is_scanned(write):
    bad = write("bad.pkl", PAYLOAD)
    report = scan([bad.parent / "nope.pt", bad])
    assert [e.message for e in report.errors] == ["no such file or directory"]
    assert "pickle.unsafe-global" in _rules(report)
    assert report.exit_code() == 1  # findings outrank errors
    assert scan(bad.parent / "nope.pt").exit_code() == 2


@pytest.mark.parametrize("wrapper", ["zip", "7z", "tar", "gzip", "bz2", "xz", "zip-in-zip"])
def test_truncated_archive_is_unreadable_not_clean(wrapper):
    whole = mf.WRAPPERS[wrapper](PAYLOAD + b"\x00" * 4000)
    cut = whole[: len(whole) // 2]
    report = scan_bytes(cut, f"cut.{wrapper}")
    assert report.max_severity is not None and report.max_severity >= Severity.HIGH, \
        [(f.rule, f.message) for f in report.findings]


def test_truncated_torch_zip_keeps_going_in_a_directory(write):
    write("a_cut.pt", mf.torch_zip(PAYLOAD)[:100])
    write("b_bad.pt", mf.torch_zip(PAYLOAD))
    report = scan(write("c.txt", b"x").parent)
    by_file = {f["path"].rsplit("/", 1)[-1]: f["findings"] for f in report.results["files"]}
    assert by_file["b_bad.pt"] >= 1 and by_file["a_cut.pt"] >= 1


def test_encrypted_zip_member_is_unreadable():
    data = bytearray(mf.zip_of({"data.pkl": PAYLOAD}, zipfile.ZIP_STORED))
    data[6] |= 1  # general-purpose flag, local header
    central = data.rindex(b"PK\x01\x02")
    data[central + 8] |= 1  # and central directory
    report = scan_bytes(bytes(data))
    assert _rules(report) == {"archive.unreadable"}
    assert "encrypted" in report.findings[0].message


def _bomb(expanded: int) -> bytes:
    """A zip whose one member inflates to `expanded` bytes: a pickle declaring one huge bytes
    object, so a naive reader would try to hold it all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    header = b"\x80\x04\x8e" + struct.pack("<Q", expanded - 11)  # PROTO 4, BINBYTES8
    body = [compressor.compress(header)]
    crc = zlib.crc32(header)
    zeros = b"\x00" * MiB
    for _ in range((expanded - len(header)) // MiB):
        body.append(compressor.compress(zeros))
        crc = zlib.crc32(zeros, crc)
    tail = b"\x00" * ((expanded - len(header)) % MiB)
    body.append(compressor.compress(tail))
    crc = zlib.crc32(tail, crc)
    body.append(compressor.flush())
    deflated = b"".join(body)
    # Write the zip by hand around the pre-deflated stream.
    name = b"bomb.pkl"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated),
                        expanded, len(name), 0) + name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(deflated),
                          expanded, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central),
                      len(local) + len(deflated), 0)
    return local + deflated + central + end


def test_zip_bomb_stops_at_the_expansion_limit_with_bounded_memory():
    bomb = _bomb(96 * MiB)
    assert len(bomb) < MiB
    limits = Limits(max_expanded_bytes=32 * MiB, max_item_bytes=8 * MiB)
    tracemalloc.start()
    report = scan_bytes(bomb, "bomb.zip", limits=limits)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "scan.limit-exceeded" in _rules(report)
    assert report.max_severity == Severity.HIGH
    assert peak < 24 * MiB, f"peak memory {peak / MiB:.1f} MiB"


def test_huge_constant_is_skipped_not_held():
    """Within the expansion budget, an item over max_item_bytes is read past in chunks."""
    limits = Limits(max_item_bytes=4 * MiB)
    tracemalloc.start()
    report = scan_bytes(_bomb(24 * MiB), "big.zip", limits=limits)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * MiB, f"peak memory {peak / MiB:.1f} MiB"
    # No STOP after the big item (the member ends): it breaks off before importing anything,
    # so inside an archive it is data, not a broken pickle (nothing in it can run).
    assert _rules(report) == set()


def test_deeply_nested_wrappers_stop_at_the_depth_limit():
    data = PAYLOAD
    for _ in range(30):
        data = mf.WRAPPERS["gzip"](data)
    report = scan_bytes(data)
    assert _rules(report) == {"archive.too-deep"}
    assert report.findings[0].severity == Severity.HIGH


def test_zip_quine_like_recursion_is_bounded():
    data = PAYLOAD
    for i in range(12):
        data = mf.zip_of({f"level{i}.zip": data, "readme.txt": b"hello"})
    report = scan_bytes(data)
    assert "archive.too-deep" in _rules(report)


def test_huge_pickle_without_stop_hits_the_opcode_limit():
    data = b"\x80\x04" + b"N0" * 400_000  # push None, pop it, forever; no STOP
    report = scan_bytes(data, limits=Limits(max_opcodes=100_000))
    assert _rules(report) == {"pickle.resource-limit"}
    report = scan_bytes(data)  # default limits: read to the end, then report the missing STOP
    assert _rules(report) == {"pickle.malformed"}


def test_growing_stack_hits_the_stack_limit():
    data = b"\x80\x04" + b"N" * 200_000 + b"."
    report = scan_bytes(data, limits=Limits(max_stack=10_000))
    assert _rules(report) == {"pickle.resource-limit"}


def test_too_many_members_is_reported():
    data = mf.zip_of({f"m{i}": b"x" for i in range(30)}, zipfile.ZIP_STORED)
    report = scan_bytes(data, limits=Limits(max_members=10))
    assert _rules(report) == {"scan.limit-exceeded"}


@pytest.mark.parametrize("header", [
    b"{'descr': '|O', 'shape': (1,)",                # not a literal
    b"__import__('os').system('id')",                # code, never evaluated
    b"{'descr': 5, 'fortran_order': False}",         # missing shape
    b"(" * 5000,                                     # deep nesting
])
def test_bad_npy_header_is_high(header):
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + PAYLOAD
    report = scan_bytes(data)
    assert _rules(report) == {"numpy.malformed-header"}


def test_oversized_npy_header_is_refused_before_reading():
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{}"
    assert _rules(scan_bytes(data)) == {"numpy.malformed-header"}


def test_inputs_are_never_modified(write):
    path = write("model.pt", mf.torch_zip(PAYLOAD))
    before = path.read_bytes(), path.stat().st_mtime_ns
    scan(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_stream_of_text_is_not_a_pickle():
    for text in (b"copyright holder\nhello world\n", b"I1\nI2\n", b"# model card\n\nNothing\n",
                 io.BytesIO(b"(" * 100).getvalue()):
        report = scan_bytes(text)
        assert _rules(report) <= {"scan.unrecognized-format", "pickle.malformed"}, text


@pytest.mark.parametrize("form", ["json", "sarif"])
def test_a_failed_command_still_writes_the_report_it_was_asked_for(tmp_path, form, capsys):
    """-f json -o FILE: a pipeline finds the reason in the file, not only on stderr."""
    import json

    from trojanscope.cli import main

    out = tmp_path / f"report.{form}"
    missing = tmp_path / "missing.pt"
    assert main(["inspect", str(missing), "--data", str(tmp_path / "x.npz"), "-f", form,
                 "-o", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    data = json.loads(out.read_text())
    if form == "json":
        assert data["command"] == "inspect" and data["targets"][0] == str(missing)
        assert data["summary"]["errors"] == 1 and "x.npz" in data["errors"][0]["message"]
    else:
        assert data["runs"][0]["invocations"][0]["executionSuccessful"] is False
