"""NumPy .npy files (.npz archives are zips of these): object arrays carry a pickle."""

from __future__ import annotations

import ast
import re
import struct

from ..findings import Location, Rule, Severity
from .pickle_format import scan_pickle_stream
from .registry import FormatHandler, format_handler

MAGIC = b"\x93NUMPY"
PY2_LONG = re.compile(r"\b([0-9]+)[lL]\b")
MAX_HEADER = 64 * 1024  # NumPy itself refuses headers over 10,000 bytes by default

OBJECT_ARRAY = Rule("numpy.object-array", Severity.MEDIUM,
                    "The array holds Python objects, stored as a pickle",
                    "Load it only with allow_pickle=False unless the pickle below is clean; ask "
                    "for a numeric dtype.")
BAD_HEADER = Rule("numpy.malformed-header", Severity.HIGH,
                  "The .npy header cannot be parsed, so the array was not examined",
                  "Do not load this file with allow_pickle=True.")


@format_handler
class NumpyHandler(FormatHandler):
    name = "numpy"
    priority = 10

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head.startswith(MAGIC)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        try:
            header, end = read_header(source)
        except ValueError as exc:
            ctx.add(BAD_HEADER.finding(f"bad .npy header: {exc}", location))
            return
        descr = header["descr"]
        if not _has_object(descr):
            return
        ctx.add(OBJECT_ARRAY.finding(f"object array of shape {header.get('shape')!r}; "
                                     "np.load(allow_pickle=True) unpickles it", location.at(end),
                                     {"descr": str(descr)[:200]}))
        scan_pickle_stream(ctx, source, location, depth, start=end)


def read_header(source) -> tuple[dict, int]:
    """Parse the header as a Python literal (never evaluated), as NumPy's safe reader does."""
    fixed = source.read(8)
    if len(fixed) < 8:
        raise ValueError("file ends inside the magic string")
    major = fixed[6]
    if major == 1:
        raw = source.read(2)
        size = struct.unpack("<H", raw)[0] if len(raw) == 2 else -1
    elif major in (2, 3):
        raw = source.read(4)
        size = struct.unpack("<I", raw)[0] if len(raw) == 4 else -1
    else:
        raise ValueError(f"unknown format version {major}")
    if size < 0:
        raise ValueError("file ends inside the header length")
    if size > MAX_HEADER:
        raise ValueError(f"header of {size:,} bytes exceeds {MAX_HEADER:,}")
    text = source.read(size)
    if len(text) != size:
        raise ValueError("file ends inside the header")
    try:
        decoded = text.decode("utf-8" if major == 3 else "latin-1")
        try:
            header = ast.literal_eval(decoded)
        except SyntaxError:  # Python 2 wrote long integers as 2L; NumPy reads them
            header = ast.literal_eval(PY2_LONG.sub(r"\1", decoded))
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"header is not a Python literal ({type(exc).__name__})") from None
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
        raise ValueError("header lacks descr, fortran_order or shape")
    return header, source.pos


PLAIN_CODE = re.compile(r"[<>|=]?(?:[biufcmMSUVa?][0-9]*(?:\[[A-Za-z0-9]+\])?|b1)")
PLAIN_NAMES = {f"{kind}{bits}" for kind, sizes in (("float", (16, 32, 64, 128)),
                                                     ("int", (8, 16, 32, 64)),
                                                     ("uint", (8, 16, 32, 64)),
                                                     ("complex", (64, 128, 256)))
               for bits in sizes} | {"bool", "float", "int", "complex", "str", "bytes"}


def _has_object(descr: object) -> bool:
    """Could the dtype NumPy builds from this description hold Python objects, at any depth?
    np.load builds it with descr_to_dtype, which reads "O", "|O8", "object" and
    [("a", "object")] alike; scan imports no NumPy, so every form but plain numeric and text
    codes counts as objects: fail closed."""
    if isinstance(descr, str):
        return not (PLAIN_CODE.fullmatch(descr) or descr in PLAIN_NAMES)
    if isinstance(descr, list):  # fields: (name, dtype) or (name, dtype, shape)
        return any(not (isinstance(f, tuple) and len(f) in (2, 3)) or _has_object(f[1])
                   for f in descr)
    if isinstance(descr, tuple) and len(descr) == 2:  # (dtype, shape): a subarray
        return _has_object(descr[0])
    return True
