"""GGUF (llama.cpp) files: the header and metadata are parsed with bounded reads, and chat
templates, which are Jinja run by the loader (CVE-2024-34359), are checked for sandbox escapes."""

from __future__ import annotations

import struct

from ..findings import Location, Rule, Severity
from .jinja_template import check_template
from .registry import FormatHandler, format_handler

MAGIC = b"GGUF"
MAX_STRING = 64 * 1024 * 1024      # a chat template or a token is far smaller
MAX_ITEMS = 1 << 26                # array elements (vocabularies are ~1e5..1e6)
MAX_TENSORS = 1 << 20
# value type -> struct format of a scalar
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9

MALFORMED = Rule("gguf.malformed", Severity.HIGH,
                 "The GGUF header or metadata is malformed or claims absurd sizes",
                 "Do not load the file: loaders have had memory-safety bugs on such input.")


class GGUFError(ValueError):
    pass


@format_handler
class GGUFHandler(FormatHandler):
    holds_model = True
    name = "gguf"
    priority = 10

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head[:4] == MAGIC

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        reader = _Reader(source)
        try:
            reader.exact(4)
            version = reader.scalar("<I")
            if version not in (1, 2, 3):
                raise GGUFError(f"unknown GGUF version {version}")
            count_fmt = "<I" if version == 1 else "<Q"
            tensors = reader.scalar(count_fmt)
            entries = reader.scalar(count_fmt)
            if tensors > MAX_TENSORS or entries > MAX_ITEMS:
                raise GGUFError(f"header claims {tensors:,} tensors and {entries:,} metadata "
                                "entries")
            for _ in range(entries):
                key = reader.string(count_fmt)
                value_type = reader.scalar("<I")
                if key.startswith("tokenizer.chat_template") and value_type == STRING:
                    offset = reader.pos
                    template = reader.string(count_fmt)
                    for finding in check_template(template, location.at(offset), key):
                        ctx.add(finding)
                else:
                    reader.skip_value(value_type, count_fmt)
            for _ in range(tensors):
                reader.string(count_fmt)
                dims = reader.scalar("<I")
                if dims > 8:
                    raise GGUFError(f"tensor with {dims} dimensions")
                reader.exact(8 * dims + 4 + 8)
        except GGUFError as exc:
            ctx.add(MALFORMED.finding(str(exc), location.at(reader.pos)))


class _Reader:
    def __init__(self, source):
        self.source = source
        self.pos = 0

    def exact(self, n: int) -> bytes:
        data = self.source.read(n)
        if len(data) != n:
            raise GGUFError(f"file ends at byte {self.pos + len(data):,}, inside a field")
        self.pos += n
        return data

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.exact(struct.calcsize(fmt)))[0]

    def string(self, count_fmt: str) -> str:
        size = self.scalar(count_fmt)
        if size > MAX_STRING:
            raise GGUFError(f"string of {size:,} bytes")
        return self.exact(size).decode("utf-8", "replace")

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.source.read(min(n, 1 << 20)))
            if not got:
                raise GGUFError("file ends inside an array")
            self.pos += got
            n -= got

    def skip_value(self, value_type: int, count_fmt: str, depth: int = 0) -> None:
        if value_type in SCALARS:
            self.exact(struct.calcsize(SCALARS[value_type]))
        elif value_type == STRING:
            self.skip(self._length(count_fmt, MAX_STRING))
        elif value_type == ARRAY:
            item_type = self.scalar("<I")
            count = self._length(count_fmt, MAX_ITEMS)
            if depth > 2:
                raise GGUFError("arrays nested too deep")
            if item_type in SCALARS:
                self.skip(count * struct.calcsize(SCALARS[item_type]))
            else:
                for _ in range(count):
                    self.skip_value(item_type, count_fmt, depth + 1)
        else:
            raise GGUFError(f"unknown metadata value type {value_type}")

    def _length(self, count_fmt: str, limit: int) -> int:
        size = self.scalar(count_fmt)
        if size > limit:
            raise GGUFError(f"length {size:,} exceeds {limit:,}")
        return size
