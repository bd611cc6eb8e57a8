"""Formats are recognised by content, whatever the file is called, at any nesting."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from trojanscope.artifacts import scan, scan_bytes
from trojanscope.attacks import model_files as mf
from trojanscope.attacks.pickle_payloads import PAYLOADS, classic
from trojanscope.findings import Severity

PAYLOAD = classic("touch /nonexistent/canary")

WRAPPED_MEMBER = {
    "gzip": ("<gzip>",), "bz2": ("<bz2>",), "xz": ("<xz>",), "lzma": ("<lzma>",),
    "zlib": ("<zlib>",), "zip": ("model.bin",), "zip-in-zip": ("inner.zip", "weights/model.bin"),
    "tar": ("model.bin",), "tar.gz": ("<gzip>", "model.bin"), "7z": ("model.bin",),
    "lzma-odd-dictionary": ("<lzma>",), "bz2-empty-first-stream": ("<bz2>",),
    "zlib-small-window": ("<zlib>",), "joblib-zfile": ("<joblib-zfile>",),
}


def _critical(report):
    return [f for f in report.findings if f.rule == "pickle.unsafe-global"]


@pytest.mark.parametrize("wrapper", sorted(mf.WRAPPERS))
def test_payload_found_inside_every_wrapper(wrapper):
    report = scan_bytes(mf.WRAPPERS[wrapper](PAYLOAD), "download.bin")
    hits = _critical(report)
    assert len(hits) == 1
    assert hits[0].location.member == WRAPPED_MEMBER[wrapper]
    assert hits[0].severity == Severity.CRITICAL


def test_wrappers_nest(write):
    data = PAYLOAD
    for wrapper in ("gzip", "tar", "zip", "bz2", "7z", "xz"):
        data = mf.WRAPPERS[wrapper](data)
    hits = _critical(scan_bytes(data))
    assert len(hits) == 1 and len(hits[0].location.member) == 6


@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/data/7", "x/.hidden",
                                    "archive/.data/serialization_id"])
def test_torch_zip_pickle_under_any_member_name(member):
    hits = _critical(scan_bytes(mf.torch_zip(PAYLOAD, member)))
    assert [h.location.member for h in hits] == [(member,)]


@pytest.mark.parametrize("position", range(5))
def test_legacy_torch_payload_in_any_of_its_pickles(position):
    hits = _critical(scan_bytes(mf.torch_legacy(PAYLOAD, at=position)))
    assert len(hits) == 1


def test_legacy_torch_offset_points_at_the_later_pickle():
    data = mf.torch_legacy(PAYLOAD, at=3)
    hit = _critical(scan_bytes(data))[0]
    assert data[hit.location.offset:hit.location.offset + 1] == b"c"  # the GLOBAL opcode


@pytest.mark.parametrize("member", ["sys_info", "pickle", "storages", "tensors"])
def test_legacy_torch_tar_payload_in_any_member(member):
    hits = _critical(scan_bytes(mf.torch_legacy_tar(PAYLOAD, member)))
    assert [h.location.member for h in hits] == [(member,)]


@pytest.mark.parametrize("kind", ["symbolic", "hard", "fifo"])
def test_a_legacy_torch_tar_whose_storages_are_a_link_or_a_fifo_is_high(kind):
    """Red teams': torch's oldest loader extracts `storages` and unpickles what it opens, so
    a link member makes it read a file outside the archive that the scan never read (and a
    FIFO hangs it)."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        link = tarfile.TarInfo("storages")
        link.type = {"symbolic": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                     "fifo": tarfile.FIFOTYPE}[kind]
        link.linkname = "" if kind == "fifo" else "/tmp/elsewhere/evil.pkl"
        archive.addfile(link)
        for name in ("sys_info", "pickle", "tensors"):
            info = tarfile.TarInfo(name)
            info.size = 5
            archive.addfile(info, io.BytesIO(b"\x80\x02K\x00."))
    hits = [f for f in scan_bytes(out.getvalue()).findings if f.rule == "archive.special-member"]
    assert [(h.severity, h.location.member, h.evidence["link_to"]) for h in hits] == \
        [(Severity.HIGH, ("storages",), link.linkname)]


def test_a_legacy_torch_tar_pickle_after_the_raw_storage_bytes_is_read():
    """The second red team's: torch unpickles the storage views after the raw elements (and a
    second tensor's pickle after the first's shape); the scan stopped at the raw bytes."""
    assert not _critical(scan_bytes(mf.torch_legacy_layout(b"\x80\x02]q\x00.")))
    for storages, tensors in ((PAYLOAD, b""), (b"\x80\x02]q\x00.", PAYLOAD)):
        hits = _critical(scan_bytes(mf.torch_legacy_layout(storages, tensors)))
        assert [h.location.member for h in hits] == [("storages",) if tensors == b"" else
                                                      ("tensors",)]


@pytest.mark.parametrize("count, storage", [
    (b"K\x01", b"(X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\n"
                b"X\x0b\x00\x00\x00ByteStorage0t"),  # a decoy type, popped
    (b"\x88", None),                                     # the count is True: one storage
    (b"K\x000K\x01", None),                              # a count pushed, popped, pushed
    (b"K\x01", b"X\x00\x00\x10\x00" + b"a" * (1 << 20) + b"0(X\x01\x00\x00\x000X\x03\x00"
                b"\x00\x00cpuctorch\nFloatStorage\nt"),   # a pickle past the parsed window
])
def test_a_legacy_torch_layout_the_walk_cannot_follow_is_high(count, storage):
    """The third red team's: each of these threw the layout walk off torch's reads (a wrong
    element size, no storage, one too few) and the views pickle after the raw bytes went
    unread; now such a layout is named as not examined."""
    storage = storage or b"(X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\nt"
    data = mf.tar_of({"sys_info": b"\x80\x02}.", "pickle": b"\x80\x02}.",
                      "storages": b"\x80\x02" + count + b"." + b"\x80\x02" + storage + b"." +
                      struct.pack("<q", 16) + b"\xff" * 64 + PAYLOAD,
                      "tensors": b"\x80\x02K\x00."})
    assert "archive.unreadable" in [f.rule for f in scan_bytes(data).findings]


def test_npy_object_array_and_its_pickle():
    report = scan_bytes(mf.npy_object(PAYLOAD))
    found = {f.rule: f for f in report.findings}
    assert found["numpy.object-array"].severity == Severity.MEDIUM
    assert found["pickle.unsafe-global"].location.offset == 128  # right after the header


def test_npz_member():
    members = {"clean.npy": mf.npy_object(b"N."), "bad.npy": mf.npy_object(PAYLOAD)}
    report = scan_bytes(mf.npz(members))
    assert [h.location.member for h in _critical(report)] == [("bad.npy",)]


def test_pickles_back_to_back_are_all_read():
    harmless = b"\x80\x02N."
    report = scan_bytes(harmless * 3 + PAYLOAD)
    assert len(_critical(report)) == 1


def test_name_does_not_matter(write):
    path = write("model.safetensors", PAYLOAD)
    assert _critical(scan(path))
    path = write("README.md", mf.WRAPPERS["gzip"](PAYLOAD))
    assert _critical(scan(path))


def test_directory_is_walked_recursively_and_sorted(write):
    write("a/b/c/deep.pt", mf.torch_zip(PAYLOAD))
    second = write("z.pkl", PAYLOAD)
    write("notes.txt", b"just text\n")
    report = scan(second.parent)
    assert [f["path"].split("/")[-1] for f in report.results["files"]] == \
        ["deep.pt", "notes.txt", "z.pkl"]
    assert len(_critical(report)) == 2


def test_a_link_to_a_folder_outside_is_named_and_one_inside_is_scanned_once(tmp_path):
    """A loader follows `weights -> /elsewhere` into files the scan never read: it cannot be
    called clean (exit 2, the link named); a link within the folder leads to files scanned."""
    inside, outside = tmp_path / "repo", tmp_path / "elsewhere"
    (inside / "real").mkdir(parents=True)
    outside.mkdir()
    (outside / "model.pkl").write_bytes(PAYLOAD)
    (inside / "real" / "model.pkl").write_bytes(PAYLOAD)
    (inside / "weights").symlink_to(outside, target_is_directory=True)
    (inside / "same").symlink_to(inside / "real", target_is_directory=True)
    report = scan(inside)
    assert [e.path for e in report.errors] == [str(inside / "weights")]
    assert "outside the scanned one" in report.errors[0].message
    assert [f["path"] for f in report.results["files"]] == [str(inside / "real" / "model.pkl")]
    assert scan(outside).exit_code() == 1


def test_a_loop_a_fifo_and_a_link_to_nothing_in_a_folder_are_named_and_the_rest_scanned(
        tmp_path, monkeypatch):
    """The second red team's: a looping link stopped the listing of its folder (a critical
    pickle after it was never read); a FIFO and a link to nothing passed in silence; a link to
    /proc/self/cwd counted as within the folder when scanned from inside it."""
    import os

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "aa").symlink_to("aa")
    (folder / "zz.pkl").write_bytes(PAYLOAD)
    os.mkfifo(folder / "fifo.pkl")
    (folder / "later.pkl").symlink_to(tmp_path / "not-yet.pkl")
    (folder / "cwd").symlink_to("/proc/self/cwd", target_is_directory=True)
    (folder / "cwd2").symlink_to("//proc/self/cwd", target_is_directory=True)
    (folder / "weights.bin").symlink_to("/proc/self/cwd/zz.pkl")
    (folder / "fd").symlink_to("/dev/fd/3")
    (folder / "stdin.pkl").symlink_to("/dev/stdin")
    (tmp_path / "p").symlink_to("/proc")  # a hop outside the folder leads into /proc
    (folder / "sub").symlink_to(tmp_path / "p" / "self" / "cwd", target_is_directory=True)
    monkeypatch.chdir(folder)
    report = scan(Path("."))
    assert len(_critical(report)) == 1
    assert sorted(e.path for e in report.errors) == ["./aa", "./cwd", "./cwd2", "./fd",
                                                     "./fifo.pkl", "./later.pkl",
                                                     "./stdin.pkl", "./sub", "./weights.bin"]


@pytest.mark.numpy
@pytest.mark.joblib
def test_joblib_object_array_with_payload_inside(tmp_path):
    """A real joblib dump whose nested object-array pickle is replaced by a payload."""
    import joblib
    import numpy as np

    path = tmp_path / "clean.joblib"
    joblib.dump({"objects": np.array([1, "a"], dtype=object), "numbers": np.arange(4)}, path)
    data = path.read_bytes()
    assert scan_bytes(data).max_severity is None or scan_bytes(data).max_severity < Severity.HIGH
    inner_start = data.index(b"\x80\x05", 2)  # joblib writes the object array as its own pickle
    inner_end = data.index(b".", data.index(b"\x85", inner_start))  # its STOP
    evil = data[:inner_start] + PAYLOAD + data[inner_end + 1:]
    hits = _critical(scan_bytes(evil))
    assert len(hits) == 1 and hits[0].location.offset == inner_start


@pytest.mark.numpy
@pytest.mark.joblib
def test_joblib_arrays_are_skipped_not_parsed(tmp_path):
    """Raw array bytes between pickle opcodes must not be read as opcodes (no false alarms)."""
    import joblib
    import numpy as np

    rng = np.random.default_rng(0)
    for compress in (0, 3, ("gzip", 1), ("bz2", 1), ("xz", 1), ("lzma", 1)):
        path = tmp_path / f"arrays-{compress}.joblib"
        joblib.dump([rng.normal(size=(50, 7)), rng.integers(0, 255, 99).astype("u1"),
                     np.zeros((3, 0)), {"s": np.array(["ab", "cde"])}], path, compress=compress)
        report = scan(path)
        assert report.findings == (), (compress, [(f.rule, f.message) for f in report.findings])


def test_every_payload_in_every_container_is_caught():
    """The whole cross product, as the benchmark corpus does it: no wrapper hides any payload."""
    for name, make in PAYLOADS.items():
        payload = make("id")
        for wrapper, wrap in mf.WRAPPERS.items():
            report = scan_bytes(wrap(payload))
            assert report.max_severity >= Severity.MEDIUM, (name, wrapper)
            if name != "lying-frame":
                assert report.max_severity >= Severity.HIGH, (name, wrapper)


def test_pickle_with_an_appended_zip_is_a_polyglot():
    """torch.load reads the leading pickle; zip-based tools read the appended archive."""
    clean_zip = mf.torch_zip(mf.harmless_pickle())
    report = scan_bytes(PAYLOAD + clean_zip, "two-faced.pt")
    rules = {f.rule for f in report.findings}
    assert {"scan.polyglot", "pickle.unsafe-global"} <= rules
    evil_zip = mf.torch_zip(PAYLOAD)
    report = scan_bytes(mf.harmless_pickle() + evil_zip, "other-way.pt")
    hits = _critical(report)
    assert [h.location.member for h in hits] == [("<appended zip>", "archive/data.pkl")]


def test_signature_bytes_in_data_are_not_a_polyglot():
    data = mf.torch_legacy(b"\x80\x02N.") + b"xxPK\x05\x06yy" + b"\x00" * 30
    assert scan_bytes(data).findings == ()


@pytest.mark.parametrize("descr", ["'object'", "'O8'", "[('a', 'object')]", "[('a', '<f4'), "
                                   "('b', [('c', 'O')])]", "('O', (2,))"])
def test_npy_object_dtypes_in_every_spelling(descr, tmp_path):
    """np.load(allow_pickle=True) unpickles whatever dtype NumPy reads as holding objects."""
    from trojanscope.attacks.pickle_payloads import classic

    header = "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() \
        + classic(f"touch {tmp_path / 'ran'}")
    report = scan_bytes(data, "a.npy")
    assert "numpy.object-array" in [f.rule for f in report.findings]
    assert report.max_severity == Severity.CRITICAL


def test_npy_dtypes_judged_without_numpy_fail_closed():
    from trojanscope.artifacts.numpy_format import _has_object as _maybe_object

    for plain in ("<f4", "|u1", "<U10", "|b1", "<M8[ns]", "float32",
                  [("a", "<f4"), ("b", "<i8", (2,))], [(("title", "a"), "<f4")]):
        assert not _maybe_object(plain), plain
    for objects in ("object", "O", "|O8", [("a", "object")], ("O", (2,)), {"names": []}):
        assert _maybe_object(objects), objects


def test_a_tar_header_that_is_also_a_pickle(tmp_path):
    """The first member's name is a pickle: tarfile sees an archive, pickle.load runs code."""
    import io
    import subprocess
    import sys
    import tarfile

    canary = tmp_path / "ran"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo(classic(f"touch {canary}").decode())
        data = mf.harmless_pickle()
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    path = tmp_path / "model.tar"
    path.write_bytes(out.getvalue())
    report = scan(path)
    assert report.max_severity == Severity.CRITICAL
    assert "scan.polyglot" in [f.rule for f in report.findings]
    assert not canary.exists()
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], "
                    "'rb'))", str(path)], capture_output=True, timeout=60)
    assert canary.exists(), "the fixture should run under pickle.load"


@pytest.mark.parametrize("wrapper", ["lzma-odd-dictionary", "bz2-empty-first-stream",
                                     "zlib-small-window", "joblib-zfile"])
def test_wrappers_the_libraries_accept_are_opened(wrapper, tmp_path):
    """Decompressors read more than the usual magic numbers; so does scan."""
    import bz2
    import lzma
    import zlib

    payload = classic("true")
    data = mf.WRAPPERS[wrapper](payload)
    opened = {"lzma-odd-dictionary": lambda d: lzma.decompress(d, format=lzma.FORMAT_ALONE),
              "bz2-empty-first-stream": bz2.decompress,
              "zlib-small-window": zlib.decompress,
              "joblib-zfile": lambda d: zlib.decompress(d[21:])}[wrapper](data)
    assert opened == payload  # what the library reads
    assert scan_bytes(data).max_severity == Severity.CRITICAL


@pytest.mark.parametrize("stated", [1 << 31, 0xFFFFFFFF])
def test_an_lzma_header_stating_a_huge_dictionary_costs_no_memory(stated):
    """13 bytes of lzma-alone header state the dictionary the decoder allocates; scan reads
    the stream with the size capped, so a 4 GiB claim costs nothing, and the payload behind
    it is still found."""
    import lzma
    import tracemalloc

    data = mf.WRAPPERS["lzma-odd-dictionary"](classic("true"))
    data = data[:1] + stated.to_bytes(4, "little") + data[5:]
    assert lzma.decompress(data, format=lzma.FORMAT_ALONE) == classic("true")  # the loader's
    tracemalloc.start()
    try:
        report = scan_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.max_severity == Severity.CRITICAL
    assert peak < 100 * 2**20


@pytest.mark.joblib
def test_joblib_loads_its_legacy_zfile(tmp_path):
    import subprocess
    import sys

    canary = tmp_path / "ran"
    path = tmp_path / "model.joblib"
    path.write_bytes(mf.WRAPPERS["joblib-zfile"](classic(f"touch {canary}")))
    assert scan(path).max_severity == Severity.CRITICAL
    subprocess.run([sys.executable, "-c", "import joblib, sys; joblib.load(sys.argv[1])",
                    str(path)], capture_output=True, timeout=120)
    assert canary.exists(), "joblib.load should run the fixture"


@pytest.mark.numpy
@pytest.mark.joblib
def test_a_joblib_array_that_is_a_pickle_payload(tmp_path):
    """joblib.load reads the region as the array; pickle.load of the same file runs it. A file
    safe under only one of the two loaders is not safe."""
    import subprocess
    import sys

    canary = tmp_path / "ran"
    payload = classic(f"touch {canary}")
    path = tmp_path / "model.joblib"
    path.write_bytes(_joblib_array_without_alignment(payload))
    report = scan(path)
    assert report.max_severity == Severity.CRITICAL, [f.message for f in report.findings]
    loaded = subprocess.run([sys.executable, "-c", "import joblib, sys; sys.stdout.buffer."
                             "write(bytes(joblib.load(sys.argv[1])))", str(path)],
                            capture_output=True, timeout=120)
    assert loaded.stdout == payload and not canary.exists()  # joblib: the bytes are the array
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], "
                    "'rb'))", str(path)], capture_output=True, timeout=120)
    assert canary.exists()  # pickle.load runs them


def _joblib_array_without_alignment(data: bytes) -> bytes:
    """A joblib file of one uint8 array holding `data`, written from bytes as joblib wrote it
    before it aligned arrays: the wrapper, its state, BUILD, then the raw bytes, then STOP."""
    import pickle

    import numpy as np

    dtype = pickle.dumps(np.dtype("u1"), protocol=2)[2:-1]
    state = (b"}(" + b"X\x08\x00\x00\x00subclasscnumpy\nndarray\n"
             + b"X\x05\x00\x00\x00shape" + b"J" + len(data).to_bytes(4, "little") + b"\x85"
             + b"X\x05\x00\x00\x00orderX\x01\x00\x00\x00C"
             + b"X\x05\x00\x00\x00dtype" + dtype
             + b"X\x0a\x00\x00\x00allow_mmap\x89u")
    return (b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state + b"b"
            + data + b".")


def test_a_python_2_npy_header_with_long_integers():
    """NumPy reads the shape (2L,) that Python 2 wrote."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() \
        + b"\0" * 16
    assert scan_bytes(data, "a.npy").findings == ()


def test_a_zlib_stream_whose_first_byte_reads_as_a_pickle_is_also_decompressed():
    """zlib with a 1 KiB window starts with "(" (MARK): scanned as a pickle and as zlib."""
    data = mf.WRAPPERS["zlib-small-window"](PAYLOAD)
    assert data[:1] == b"("
    assert len(_critical(scan_bytes(data))) == 1
    plain = b"(lp0\nI1\naI2\na."  # a real protocol-0 pickle: no zlib read error reported
    assert scan_bytes(plain).findings == ()


def test_a_float_nul_payload_is_found_in_every_carrier():
    """The red team's FLOAT-with-NUL pickle (CPython reads the number up to the NUL and runs
    what follows) inside a torch zip, a legacy torch stream and a .npy object array."""
    payload = PAYLOADS["float-nul"]("id")
    for carrier in (mf.torch_zip(payload), mf.torch_legacy(payload), mf.npy_object(payload)):
        assert scan_bytes(carrier).max_severity == Severity.CRITICAL


def test_a_float_tensor_that_starts_like_lzma_is_not_unreadable():
    """Random floats whose first bytes pass lzma-alone's weak test decode for a while, then
    fail (a torch.export sample input was called unreadable, high): lzma is claimed only when
    what it decodes starts like a format scan reads."""
    import numpy as np

    block = np.random.default_rng(10160).random(256).astype(np.float32).tobytes()
    assert block[13] == 0 and block[0] < 225  # it passes the header test
    archive = mf.torch_zip(mf.harmless_pickle())
    report = scan_bytes(mf.zip_of({"archive/data.pkl": mf.harmless_pickle(),
                                   "archive/data/0": block}), "model.pt")
    assert report.max_severity is None or report.max_severity < Severity.HIGH, \
        [f.message for f in report.findings]
    assert scan_bytes(archive, "model.pt").findings == ()


def test_a_file_that_expands_for_too_long_stops_with_a_limit_finding():
    """Many compressed streams of cheap bytes: within every size limit, but hours of work;
    the time limit per top-level file stops it (fail closed)."""
    import gzip

    from trojanscope.artifacts import Limits, scan_bytes

    stream = gzip.compress(b"\x80\x04" + b")0" * 2_000_000 + b".")  # EMPTY_TUPLE, POP, ...
    report = scan_bytes(stream * 3, "slow.pkl.gz", limits=Limits(max_seconds=0))
    assert [f.rule for f in report.findings] == ["scan.limit-exceeded"]
    assert "seconds" in report.findings[0].message
    assert not scan_bytes(stream, "slow.pkl.gz").findings  # harmless, given the time


def test_tensor_bytes_that_begin_like_zlib_are_not_reported_unreadable():
    """A synthetic mirror's harmless checkpoint (one in 2,800): its random tensor data opens
    with a valid zlib header and 64 bytes that decode, then an invalid distance code. Scan
    called it an unreadable zlib stream, a high finding, before zlib streams had to decode to
    the start of a format it reads."""
    tensor = bytes.fromhex("7801d20955b1e53ffbf64e37189c133f95cc5f66ba10086847569ec67c5e4f05fd"
                           "88bd0168084a294bb1533fc8") + bytes(range(256)) * 4
    checkpoint = mf.zip_of({"archive/data.pkl": mf.harmless_pickle(),
                            "archive/data/0": tensor, "archive/version": b"3\n"}, 0)
    assert scan_bytes(checkpoint, "model.pt").findings == ()
    wrapped = mf.zip_of({"archive/data.pkl": mf.WRAPPERS["zlib"](classic("id"))}, 0)
    assert scan_bytes(wrapped, "model.pt").max_severity == Severity.CRITICAL
