"""Model-file containers for a pickle payload: the layouts that loaders accept, built as bytes.

Used by the tests, the demo and (later) `trojanscope attack payload` to make known-bad files.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import struct
import tarfile
import zipfile
import zlib
from typing import Callable

from ..plugins import Registry
from .pickle_payloads import EMPTY_DICT, STOP, proto, unicode

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # what legacy torch.save writes first


def _small_pickle(value_ops: bytes) -> bytes:
    return proto(2) + value_ops + STOP


def _long1(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def torch_zip(payload: bytes, member: str = "archive/data.pkl") -> bytes:
    """A PyTorch zip checkpoint whose pickle member (any name) is `payload`."""
    members = {"archive/byteorder": b"little", "archive/data/0": struct.pack("<4f", 1, 2, 3, 4),
               "archive/version": b"3\n"}
    members.pop(member, None)
    return zip_of({member: payload, **members}, zipfile.ZIP_STORED)


def torch_legacy(payload: bytes, at: int = 3) -> bytes:
    """Legacy torch.save: magic, protocol, sys_info, the object, storage keys, then raw data.

    `at` picks which of the five pickles is the payload (3 is the object itself)."""
    parts = [
        _small_pickle(_long1(TORCH_MAGIC)),
        _small_pickle(b"M\xe9\x03"),  # protocol version 1001, as torch writes and checks
        _small_pickle(EMPTY_DICT + unicode("little_endian") + b"\x88s"),
        _small_pickle(EMPTY_DICT),
        _small_pickle(b"]"),  # storage keys: an empty list
    ]
    parts[at] = payload
    return b"".join(parts) + b"\x00" * 64


def torch_legacy_tar(payload: bytes, member: str = "tensors") -> bytes:
    """The oldest torch.save layout: a tar of sys_info, pickle, storages and tensors."""
    members = {"sys_info": _small_pickle(EMPTY_DICT), "pickle": _small_pickle(EMPTY_DICT),
               "storages": _small_pickle(b"K\x00"), "tensors": _small_pickle(b"K\x00")}
    members[member] = payload
    return tar_of(members)


def torch_legacy_layout(storages_tail: bytes, tensors_tail: bytes = b"") -> bytes:
    """torch's oldest layout as its loader reads it: `storages` holds a count, a (key,
    location, type) pickle, an element count and the elements, then the views pickle;
    `tensors` a count, a pickle and 32 bytes of shape per tensor."""
    def pickled(body: bytes) -> bytes:
        return b"\x80\x02" + body + b"."

    storage = pickled(b"(X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\nq\x00tq\x01")
    tensor = pickled(b"(X\x01\x00\x00\x00kX\x01\x00\x00\x000ctorch\nFloatTensor\nq\x00tq\x01")
    shape = struct.pack("<i4xqqq", 1, 2, 1, 0)
    return tar_of({"sys_info": pickled(b"}q\x00"), "pickle": pickled(b"}q\x00"),
                      "storages": pickled(b"K\x01") + storage + struct.pack("<q", 2) +
                      b"\0" * 8 + storages_tail,
                      "tensors": pickled(b"K\x02" if tensors_tail else b"K\x01") + tensor +
                      shape + tensors_tail})


def npy_object(payload: bytes) -> bytes:
    """A .npy file of an object array: np.load(allow_pickle=True) unpickles `payload`."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def tflite_of(operators: list[str | int]) -> bytes:
    """A TFLite FlatBuffer (identifier TFL3) whose Model lists these operator codes: an int is
    a builtin operator, a string a custom one ("Flex" + a TensorFlow op runs that op). No
    subgraphs: enough for a scanner, not for the interpreter."""
    out = bytearray(struct.pack("<I4s", 16, b"TFL3"))
    out += struct.pack("<4H", 8, 12, 4, 8)                # Model vtable at 8: version, opcodes
    out += struct.pack("<iII", 16 - 8, 3, 28 - 24)        # Model table at 16; vector at 28
    vector = len(out)
    out += struct.pack("<I", len(operators)) + b"\0" * 4 * len(operators)
    for i, operator in enumerate(operators):
        vtable = len(out)
        out += struct.pack("<6H", 12, 20, 4, 8, 12, 16)   # OperatorCode: four fields
        table = len(out)
        custom = isinstance(operator, str)
        code = 32 if custom else operator
        out += struct.pack("<ibxxxIii", table - vtable, min(code, 127), 12 if custom else 0, 1,
                           code)
        if custom:
            name = operator.encode()
            out += struct.pack("<I", len(name)) + name + b"\0" * (4 - len(name) % 4)
        else:  # no name: the custom_code field is left out
            struct.pack_into("<H", out, vtable + 6, 0)
        struct.pack_into("<I", out, vector + 4 + 4 * i, table - (vector + 4 + 4 * i))
    return bytes(out)


def npz(members: dict[str, bytes]) -> bytes:
    return zip_of(members, zipfile.ZIP_DEFLATED)


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            # a fixed date: the same bytes on every run (zipfile stamps the time of writing)
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data,
                             compress_type=compression)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0  # deterministic bytes
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sevenzip_of(members: dict[str, bytes]) -> bytes:
    import py7zr

    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buffer.getvalue()


def harmless_pickle() -> bytes:
    """A plain pickle of harmless data, as pickle.dumps writes it."""
    return pickle.dumps({"weights": [0.5, -1.25, 3.0], "epochs": 3, "name": "tiny"}, protocol=4)


def _zlib(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(wbits=wbits)
    return packer.compress(data) + packer.flush()


# Compressors and archives that hold a model file, by name: function of the bytes.
WRAPPERS: Registry[Callable[[bytes], bytes]] = Registry("wrapper")
WRAPPERS.add("gzip", lambda data: gzip.compress(data, mtime=0))
WRAPPERS.add("bz2", bz2.compress)
WRAPPERS.add("xz", lambda data: lzma.compress(data, format=lzma.FORMAT_XZ))
WRAPPERS.add("lzma", lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE))
WRAPPERS.add("zlib", zlib.compress)
WRAPPERS.add("lzma-odd-dictionary", lambda data: lzma.compress(
    data, format=lzma.FORMAT_ALONE,
    filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 3 << 20, "lc": 0, "lp": 0, "pb": 0}]))
WRAPPERS.add("bz2-empty-first-stream", lambda data: bz2.compress(b"") + bz2.compress(data))
WRAPPERS.add("zlib-small-window", lambda data: _zlib(data, wbits=10))
WRAPPERS.add("joblib-zfile",
             lambda data: b"ZF" + hex(len(data)).encode().ljust(19) + zlib.compress(data))
WRAPPERS.add("zip", lambda data: zip_of({"model.bin": data}))
WRAPPERS.add("zip-in-zip", lambda data: zip_of({"inner.zip": zip_of({"weights/model.bin": data})}))
WRAPPERS.add("tar", lambda data: tar_of({"model.bin": data}))
WRAPPERS.add("tar.gz", lambda data: gzip.compress(tar_of({"model.bin": data}), mtime=0))
WRAPPERS.add("7z", lambda data: sevenzip_of({"model.bin": data}))
