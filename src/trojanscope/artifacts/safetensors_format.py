"""safetensors: only the header is read. It cannot carry code, but a malformed header is how
parser differentials and denial of service get in (overlapping tensors, lengths past the file,
duplicate names that two parsers resolve differently)."""

from __future__ import annotations

import json

from ..findings import Location, Rule, Severity
from .registry import FormatHandler, format_handler

MAX_HEADER = 100_000_000  # what the safetensors library itself accepts
MAX_METADATA = 1 << 20
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16,
              "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64,
              "I64": 64, "U64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}

MALFORMED = Rule("safetensors.malformed-header", Severity.HIGH,
                 "The safetensors header is inconsistent: loaders may disagree on it or fail",
                 "Do not load the file; ask for a re-export with the safetensors library.")
METADATA = Rule("safetensors.oversized-metadata", Severity.MEDIUM,
                "The safetensors __metadata__ is unusually large or not string to string",
                "Inspect the metadata before trusting the file; it is not part of the weights.")


@format_handler
class SafetensorsHandler(FormatHandler):
    holds_model = True
    name = "safetensors"
    priority = 15

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        if len(head) < 10:
            return False
        # Claimed only when the bytes read as a safetensors header would: a length a loader
        # accepts, then a JSON object whose first key or end follows (a raw tensor block or
        # a text file whose 9th byte is "{" is not one).
        size = int.from_bytes(head[:8], "little")
        body = head[9:].lstrip(b" \t\r\n")
        return head[8:9] == b"{" and 2 <= size <= MAX_HEADER and \
            (body[:1] in (b'"', b"}") or (not body and not complete))

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        size = int.from_bytes(source.read(8), "little")
        problems: list[str] = []
        if size > MAX_HEADER:
            ctx.add(MALFORMED.finding(f"header length {size:,} exceeds {MAX_HEADER:,}", location,
                                      {"header_length": size}))
            return
        raw = source.read(size)
        if len(raw) < size:
            ctx.add(MALFORMED.finding(f"header length {size:,} is longer than the file",
                                      location, {"header_length": size}))
            return
        data_size = _remaining(source)
        duplicates: list[str] = []

        def pairs(items):
            keys = [k for k, _ in items]
            duplicates.extend(sorted({k for k in keys if keys.count(k) > 1}))
            return dict(items)

        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            ctx.add(MALFORMED.finding(f"header is not valid UTF-8 JSON: {exc}", location))
            return
        if not isinstance(header, dict):
            ctx.add(MALFORMED.finding("header is not a JSON object", location))
            return
        if duplicates:
            problems.append(f"duplicate names {duplicates[:5]}")
        _check_metadata(ctx, header.pop("__metadata__", {}), location)
        problems += _check_tensors(header, data_size)
        if problems:
            ctx.add(MALFORMED.finding("; ".join(problems[:8]), location,
                                      {"problems": problems[:50], "tensors": len(header)}))


def _remaining(source) -> int:
    """Bytes after the header, read in chunks and not kept."""
    total = 0
    while True:
        chunk = source.read(1 << 20)
        if not chunk:
            return total
        total += len(chunk)


def _check_metadata(ctx, metadata, location: Location) -> None:
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        ctx.add(METADATA.finding("__metadata__ is not a table of strings", location))
    elif sum(len(k) + len(v) for k, v in metadata.items()) > MAX_METADATA:
        ctx.add(METADATA.finding(f"__metadata__ holds over {MAX_METADATA:,} characters",
                                 location))


def _check_tensors(header: dict, data_size: int) -> list[str]:
    problems, spans = [], []
    for name, info in header.items():
        if not isinstance(info, dict):
            problems.append(f"{name!r}: entry is not an object")
            continue
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BITS:
            problems.append(f"{name!r}: unknown dtype {dtype!r}")
            continue
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            problems.append(f"{name!r}: shape is not a list of non-negative integers")
            continue
        if not (isinstance(offsets, list) and len(offsets) == 2 and
                all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            problems.append(f"{name!r}: data_offsets is not [begin, end] with begin <= end")
            continue
        count = 1
        for d in shape:
            count *= d
        need = (count * DTYPE_BITS[dtype] + 7) // 8
        if need != offsets[1] - offsets[0]:
            problems.append(f"{name!r}: {dtype}{shape} needs {need:,} bytes, offsets give "
                            f"{offsets[1] - offsets[0]:,}")
        if offsets[1] > data_size:
            problems.append(f"{name!r}: data ends at {offsets[1]:,}, past the file's "
                            f"{data_size:,} data bytes")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, e1, n1), (b2, _, n2) in zip(spans, spans[1:]):
        if b2 < e1:
            problems.append(f"{n1!r} and {n2!r} overlap")
    covered = sum(e - b for b, e, _ in spans)
    if not problems and spans and covered != data_size:
        problems.append(f"tensors cover {covered:,} of {data_size:,} data bytes (gaps or "
                        "trailing data)")
    return problems
