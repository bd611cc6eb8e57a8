"""TensorFlow Lite models (.tflite, a FlatBuffer whose identifier is "TFL3"): the operators a
model asks the interpreter for, read with checked offsets, never loaded.

Builtin operators are TFLite's own kernels. A custom operator runs a kernel the application
registered, which the scan cannot see (medium). "Flex" operators run TensorFlow kernels through
the Select TF ops delegate: one that reads or writes files, reaches the network or runs Python
(the SavedModel list, plus checkpoint and summary writers) is high, as in a SavedModel graph;
any other is medium. A buffer whose offsets do not hold together is high: it was not examined.
"""

from __future__ import annotations

import struct

from ..findings import Location, Rule, Severity
from .registry import FormatHandler, format_handler
from .tensorflow_format import UNSAFE_OPS

IDENTIFIER = b"TFL3"
CUSTOM = 32  # BuiltinOperator.CUSTOM: the custom_code names the kernel
MAX_OPERATOR_CODES = 100_000
FLEX_UNSAFE = {**UNSAFE_OPS, "SaveV2": "writes a checkpoint", "Save": "writes a checkpoint",
               "SaveSlices": "writes a checkpoint", "RestoreV2": "reads a checkpoint",
               "Restore": "reads a checkpoint", "MergeV2Checkpoints": "writes files",
               "CreateSummaryFileWriter": "writes files", "WriteSummary": "writes files",
               "WriteScalarSummary": "writes files", "WriteAudioSummary": "writes files"}

FLEX_UNSAFE_OP = Rule(
    "tflite.unsafe-flex-op", Severity.HIGH,
    "The TFLite model runs a TensorFlow op through the Flex delegate that reads or writes files, "
    "reaches the network or runs Python",
    "Do not run this model with the Select TF ops delegate; ask for one without the op.")
CUSTOM_OP = Rule(
    "tflite.custom-op", Severity.MEDIUM,
    "The TFLite model needs a custom or Flex (TensorFlow) kernel, code outside TFLite's own "
    "operators",
    "Run it only with kernels you trust; review the library that registers them.")
MALFORMED = Rule(
    "tflite.malformed", Severity.HIGH,
    "The TFLite FlatBuffer's offsets do not hold together, so its operators were not examined",
    "Do not load the file; the interpreter's verifier would refuse it, a loader that skips the "
    "verifier may not.")


class TFLiteError(ValueError):
    pass


@format_handler
class TFLiteHandler(FormatHandler):
    holds_model = True
    name = "tflite"
    priority = 15

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return len(head) >= 8 and head[4:8] == IDENTIFIER

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        try:
            codes = operator_codes(source.whole())
        except TFLiteError as exc:
            ctx.add(MALFORMED.finding(f"cannot read the model: {exc}", location, {}))
            return
        for custom in sorted({c for c in codes if c is not None}):
            if custom.startswith("Flex") and custom[4:] in FLEX_UNSAFE:
                ctx.add(FLEX_UNSAFE_OP.finding(
                    f"Flex op {custom[4:]} {FLEX_UNSAFE[custom[4:]]}", location,
                    {"op": custom}))
            else:
                kind = "TensorFlow op" if custom.startswith("Flex") else "custom operator"
                ctx.add(CUSTOM_OP.finding(f"{kind} {custom!r}", location, {"op": custom}))


def operator_codes(data: bytes) -> list[str | None]:
    """Each operator code's custom name (None for a builtin operator)."""
    buffer = _Buffer(data)
    model = buffer.table(buffer.u32(0))
    field = model.field(1)  # Model.operator_codes
    if field is None:
        return []
    out = []
    for entry in buffer.tables(field, MAX_OPERATOR_CODES):
        deprecated, builtin, custom = entry.field(0), entry.field(3), entry.field(1)
        code = max(buffer.i8(deprecated) if deprecated is not None else 0,
                   buffer.i32(builtin) if builtin is not None else 0)
        name = buffer.string(custom) if custom is not None else None
        if code == CUSTOM and name is None:
            raise TFLiteError("a custom operator without a name")
        out.append(name if code == CUSTOM or name else None)
    return out


class _Buffer:
    def __init__(self, data: bytes):
        self.data = data

    def _at(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise TFLiteError(f"offset {pos} outside the {len(self.data):,} bytes")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u32(self, pos: int) -> int:
        return self._at("<I", pos)

    def i32(self, pos: int) -> int:
        return self._at("<i", pos)

    def i8(self, pos: int) -> int:
        return self._at("<b", pos)

    def table(self, pos: int) -> _Table:
        vtable = pos - self.i32(pos)
        size = self._at("<H", vtable)
        if size < 4 or size % 2:
            raise TFLiteError(f"a table at {pos} has a vtable of {size} bytes")
        return _Table(self, pos, vtable, size)

    def tables(self, field: int, limit: int) -> list[_Table]:
        start = field + self.u32(field)
        count = self.u32(start)
        if count > limit or start + 4 + 4 * count > len(self.data):
            raise TFLiteError(f"a vector of {count:,} entries at {start}")
        return [self.table(start + 4 + 4 * i + self.u32(start + 4 + 4 * i)) for i in range(count)]

    def string(self, field: int) -> str:
        start = field + self.u32(field)
        length = self.u32(start)
        if start + 4 + length > len(self.data):
            raise TFLiteError(f"a string of {length:,} bytes at {start}")
        return bytes(self.data[start + 4:start + 4 + length]).decode("utf-8", "replace")


class _Table:
    def __init__(self, buffer: _Buffer, pos: int, vtable: int, size: int):
        self.buffer, self.pos, self.vtable, self.size = buffer, pos, vtable, size

    def field(self, index: int) -> int | None:
        """The absolute position of field `index`, or None when the table leaves it out."""
        slot = 4 + 2 * index
        if slot + 2 > self.size:
            return None
        offset = self.buffer._at("<H", self.vtable + slot)
        return self.pos + offset if offset else None
