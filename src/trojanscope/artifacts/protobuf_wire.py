"""A bounded reader of the protobuf wire format, for the few messages scan needs (ONNX,
TensorFlow SavedModel). No generated code and no protobuf runtime: every length is checked
against the bytes that are there, and large byte fields are returned as views, not copies."""

from __future__ import annotations

from typing import Iterator

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class ProtoError(ValueError):
    """Bytes that are not a valid protobuf message."""


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ProtoError("message ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint longer than 10 bytes")


def fields(buf: memoryview, start: int = 0,
           end: int | None = None) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value): an int, or a (start, end) span for LEN fields."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire == LEN:
            size, pos = read_varint(buf, pos, end)
            if size > end - pos:
                raise ProtoError(f"field {number} claims {size:,} bytes, {end - pos:,} remain")
            value, pos = (pos, pos + size), pos + size
        elif wire == I64:
            if pos + 8 > end:
                raise ProtoError("message ends inside a fixed64")
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == I32:
            if pos + 4 > end:
                raise ProtoError("message ends inside a fixed32")
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:  # groups are long deprecated and used by none of the formats read here
            raise ProtoError(f"unsupported wire type {wire}")
        yield number, wire, value


def text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def looks_like_message(head: bytes, first_fields: dict[int, int], min_fields: int = 2) -> bool:
    """True when `head` starts with `min_fields` well-formed fields whose numbers and wire types
    are those of `first_fields` (number -> wire type)."""
    view = memoryview(head)
    count = 0
    try:
        for number, wire, _ in fields(view):
            if first_fields.get(number) != wire:
                return False
            count += 1
            if count >= min_fields:
                return True
    except ProtoError as exc:
        # A LEN field longer than the sniffed head is fine: the message goes on.
        return count >= 1 and "remain" in str(exc)
    return False
