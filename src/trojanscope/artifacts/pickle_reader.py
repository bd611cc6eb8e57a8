"""Reads a pickle stream one opcode at a time, as bytes, with every length checked.

The opcode table is the standard library's (pickletools.opcodes, pure data); the argument
readers are our own so that no length in the file can make us allocate or read without bound.
Nothing here unpickles: values are decoded literals (ints, strings, bytes) at most.
"""

from __future__ import annotations

import codecs
import pickletools
import re
import struct
from typing import BinaryIO, NamedTuple

from .limits import Limits

OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
LINE_CHUNK = 1 << 20  # protocol-0 text arguments are read in pieces of this size


class Skipped(NamedTuple):
    """A constant too large to hold; its bytes were read past, not kept."""

    kind: str
    size: int


class PickleSyntaxError(Exception):
    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class Truncated(PickleSyntaxError):
    pass


class HeldBytes:
    """Bytes of pickle constants in memory at once, across a pickle and the pickles nested in
    it (each reader gives its share back when it is done), against one limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0


class OpcodeReader:
    """Iterates (name, arg, offset) over one stream; the caller may skip bytes between opcodes."""

    def __init__(self, stream: BinaryIO, limits: Limits, start: int = 0,
                 shared: HeldBytes | None = None):
        self.stream = stream
        self.limits = limits
        self.pos = start
        self.shared = shared or HeldBytes(limits.max_held_bytes)
        self.held = 0  # this reader's share of shared.total

    def hold(self, n: int) -> bool:
        """Count `n` bytes more as held in memory; False (and nothing counted) past the limit."""
        if self.shared.total + n > self.shared.limit:
            return False
        self.shared.total += n
        self.held += n
        return True

    def release(self) -> None:
        """The constants read are dropped: give their bytes back to the shared count."""
        self.shared.total -= self.held
        self.held = 0

    def next(self) -> tuple[str, object, int]:
        offset = self.pos
        code = self.stream.read(1)
        if not code:
            raise Truncated("stream ends without a STOP opcode", offset)
        self.pos = offset + 1
        entry = _DECODE.get(code)
        if entry is None:
            raise PickleSyntaxError(f"invalid opcode byte 0x{code[0]:02x}", offset)
        name, reader = entry
        return name, None if reader is None else reader(self), offset

    def skip(self, n: int) -> None:
        """Read past n bytes (data that a loader reads beside the pickle, e.g. joblib arrays)."""
        left = n
        while left > 0:
            chunk = self.stream.read(min(left, 1 << 20))
            if not chunk:
                raise Truncated(f"stream ends {left:,} bytes before the end of skipped data",
                                self.pos)
            self.pos += len(chunk)
            left -= len(chunk)

    def _read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise Truncated("stream ends inside an opcode" if n != 1 or data else
                            "stream ends without a STOP opcode", self.pos)
        self.pos += n
        return data

    def _line(self) -> bytes | Skipped:
        """A protocol-0 text argument: as long as the line is (CPython sets no limit); one
        longer than max_item_bytes is read past and not kept."""
        parts, size = [], 0
        while True:
            data = self.stream.readline(LINE_CHUNK)
            if not data:
                raise Truncated("stream ends inside a text argument", self.pos)
            self.pos += len(data)
            size += len(data)
            if size <= self.limits.max_item_bytes + 1:
                parts.append(data)
            if data.endswith(b"\n"):
                break
        if size > self.limits.max_item_bytes + 1 or not self.hold(4 * size):
            return Skipped("line", size - 1)  # 4: decoded text may take 4 bytes a character
        return b"".join(parts)[:-1]

    def _kept_line(self, what: str) -> bytes:
        line = self._line()
        if isinstance(line, Skipped):
            raise PickleSyntaxError(f"{what} of {line.size:,} bytes", self.pos)
        return line

    def _sized(self, n: int, kind: str) -> bytes | Skipped:
        if n < 0:
            raise PickleSyntaxError(f"negative {kind} length", self.pos)
        if n > self.limits.max_item_bytes or not self.hold(n * (4 if kind == "unicode" else 1)):
            self.skip(n)
            return Skipped(kind, n)
        return self._read(n)


def _uint(size: int, fmt: str):
    unpack = struct.Struct(fmt).unpack
    return lambda r: unpack(r._read(size))[0]


def _uint1(r: OpcodeReader) -> int:  # the commonest argument (BINPUT, BINGET, BININT1)
    data = r.stream.read(1)
    if not data:
        raise Truncated("stream ends inside an opcode", r.pos)
    r.pos += 1
    return data[0]


def _sized(size: int, fmt: str, kind: str, decode=None):
    def read(r: OpcodeReader):
        n = struct.unpack(fmt, r._read(size))[0]
        data = r._sized(n, kind)
        if decode is None or isinstance(data, Skipped):
            return data
        try:
            return decode(data)
        except UnicodeDecodeError:
            raise PickleSyntaxError(f"{kind} is not valid UTF-8", r.pos) from None
    return read


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


def _utf8(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _string_nl(r: OpcodeReader):
    line = r._line()
    if isinstance(line, Skipped):
        return line
    if len(line) >= 2 and line[:1] == line[-1:] and line[:1] in (b"'", b'"'):
        try:  # Python 3 unpicklers decode Python 2 strings to str (latin-1 keeps every byte)
            return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
        except ValueError:
            raise PickleSyntaxError("bad escape in STRING argument", r.pos) from None
    raise PickleSyntaxError("STRING argument is not quoted", r.pos)


def _text_nl(r: OpcodeReader):
    return r._kept_line("a module or global name").decode("latin-1")


def _pair_nl(r: OpcodeReader):
    return _text_nl(r), _text_nl(r)


def _unicode_nl(r: OpcodeReader):
    line = r._line()
    if isinstance(line, Skipped):
        return line
    try:
        return codecs.decode(line, "raw-unicode-escape")
    except UnicodeDecodeError:
        raise PickleSyntaxError("bad UNICODE argument", r.pos) from None


# Numbers as CPython's _pickle reads them: INT with C's strtol (base 0: "0x1f", "010" octal,
# stopping at a NUL) and then int(text, 0); "00" and "01" are False and True; LONG with
# int(text, 0) after one trailing "L", and GET and PUT keys in base 10, both on the text before
# the first NUL (PyLong_FromString reads a C string); FLOAT with PyOS_string_to_double, which
# takes the longest number at the start and accepts a NUL or the line's end after it.
# And as pickle.py reads them (pickle._Unpickler, which joblib.load uses): int(line, 0) and
# float(line) on the whole line, which take spaces and underscores ("F 1_0"). A line that
# either reads is read: a red team hid payloads behind numbers only one of them takes.
_C_LONG = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))")
_C_DOUBLE = re.compile(rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|"
                       rb"(?i:inf(?:inity)?|nan))")


def _either(r: OpcodeReader, line: bytes, *reads):
    """The first of `reads` (the C unpickler's, then pickle.py's) that takes `line`."""
    for read in reads:
        try:
            return read(line)
        except (ValueError, OverflowError):
            continue
    raise PickleSyntaxError(f"bad number {line[:40]!r}", r.pos)


def _int_nl(r: OpcodeReader):
    line = r._kept_line("an integer")
    if line in (b"00", b"01"):
        return line == b"01"
    return _either(r, line, _c_int, lambda text: int(text, 0))


def _c_int(line: bytes) -> int:
    head = _c_string(line)
    if line and not head:  # strtol reads no digit and stops at the NUL: 0
        return 0
    match = _C_LONG.fullmatch(head)
    if match:
        sign, hexa, octal, decimal = match.groups()
        value = int(hexa, 16) if hexa else int(octal, 8) if octal else int(decimal)
        value = -value if sign == b"-" else value
        if -(1 << 63) <= value < (1 << 63):
            return value
    return int(head, 0)  # past a C long: PyLong_FromString on the text before the NUL


def _decimal_nl(r: OpcodeReader):
    return _either(r, r._kept_line("an integer"), lambda text: int(_c_string(text), 10),
                   lambda text: int(text, 10))


def _long_nl(r: OpcodeReader):
    line = r._kept_line("an integer")
    digits = line[:-1] if line.endswith(b"L") else line
    return _either(r, digits, lambda text: int(_c_string(text), 0), lambda text: int(text, 0))


def _c_string(line: bytes) -> bytes:
    return line.split(b"\0", 1)[0]


def _float_nl(r: OpcodeReader):
    return _either(r, r._kept_line("a float"), _c_float, float)


def _c_float(line: bytes) -> float:
    number = _C_DOUBLE.match(line)
    if number is None or not (number.end() == len(line) or line[number.end()] == 0):
        raise ValueError(line)
    value = float(number.group().decode("ascii"))
    if value in (float("inf"), float("-inf")) and number.group()[-1:].isdigit():
        raise OverflowError(line)  # the C unpickler's OverflowError
    return value


def _long(size: int, fmt: str):
    def read(r: OpcodeReader):
        n = struct.unpack(fmt, r._read(size))[0]
        if n < 0:
            raise PickleSyntaxError("negative LONG length", r.pos)
        if n > 4096:  # a bigger integer has no use but to slow the reader down
            r.skip(n)
            return Skipped("long", n)
        return int.from_bytes(r._read(n), "little", signed=True)
    return read


_READERS = {
    "uint1": _uint1,
    "uint2": _uint(2, "<H"),
    "int4": _uint(4, "<i"),
    "uint4": _uint(4, "<I"),
    "uint8": _uint(8, "<Q"),
    "float8": _uint(8, ">d"),
    "long1": _long(1, "<B"),
    "long4": _long(4, "<i"),
    "string1": _sized(1, "<B", "string", _latin1),
    "string4": _sized(4, "<i", "string", _latin1),
    "bytes1": _sized(1, "<B", "bytes"),
    "bytes4": _sized(4, "<I", "bytes"),
    "bytes8": _sized(8, "<Q", "bytes"),
    "bytearray8": _sized(8, "<Q", "bytearray"),
    "unicodestring1": _sized(1, "<B", "unicode", _utf8),
    "unicodestring4": _sized(4, "<I", "unicode", _utf8),
    "unicodestring8": _sized(8, "<Q", "unicode", _utf8),
    "stringnl": _string_nl,
    "stringnl_noescape": _text_nl,
    "stringnl_noescape_pair": _pair_nl,
    "unicodestringnl": _unicode_nl,
    "decimalnl_short": _decimal_nl,
    "decimalnl_long": _long_nl,
    "floatnl": _float_nl,
}
_BY_OPCODE = {"INT": _int_nl}

# opcode byte -> (name, argument reader), built once from the standard library's table.
_DECODE = {code: (op.name, None if op.arg is None else
                   _BY_OPCODE.get(op.name, _READERS[op.arg.name]))
           for code, op in OPCODES.items()}
