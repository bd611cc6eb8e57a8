"""Raw pickle streams: one pickle or several back to back (legacy torch.save, joblib, pickle.dump).

After a pickle, the next bytes are read as another pickle, whatever they look like; once they
stop being one that imports anything, they are data that the loader reads itself (legacy torch
storages), and the scan stops there quietly.
"""

from __future__ import annotations

import collections
import dataclasses
import io

from ..findings import Location, Severity, clipped
from .context import UNRECOGNIZED
from .limits import Limits
from .pickle_machine import MALFORMED, PickleMachine
from .pickle_reader import OpcodeReader, PickleSyntaxError, Truncated
from .registry import FormatHandler, format_handler

CALL_OPS = {"REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"}
IMPORT_OPS = {"GLOBAL", "INST", "STACK_GLOBAL"}
SNIFF_OPCODES = 8  # valid opcodes in a row that make a stream a pickle
MAX_PICKLES = 10_000  # pickles back to back in one stream
SNIFF_LIMITS = Limits()
IN_MEMORY = 4 * 1024 * 1024  # pickle streams up to this size are read whole, for speed
TRACE_LENGTH, TRACE_AFTER = 12, 6  # opcodes shown before and after a high or critical finding
TRACED = 16  # findings of a pickle given a trace: each reads the pickle again from its start,
             # so a trace for every one of 8,000 distinct globals took minutes (a red team's)


def looks_like_pickle(head: bytes, complete: bool) -> bool:
    """Would an unpickler get anywhere with these bytes? Checked without running anything."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return _valid_opcodes(head[2:], complete, need=3, after_proto=True)
    return _valid_opcodes(head, complete, need=SNIFF_OPCODES)


def _valid_opcodes(head: bytes, complete: bool, need: int, after_proto: bool = False) -> bool:
    reader = OpcodeReader(io.BytesIO(head), SNIFF_LIMITS)
    count = 0
    imports = calls = False
    try:
        while count < need:
            name, arg, _ = reader.next()
            count += 1
            if name == "STOP":
                return True
            if name in IMPORT_OPS and _is_dotted_identifier(arg, name):
                imports = True
            elif imports and name in CALL_OPS:
                calls = True
        return True
    except Truncated:
        if not complete:  # the sniffed head ends inside an opcode: the stream goes on
            # (a protocol-0 line may be longer than the head: CPython reads any length)
            return after_proto or count >= 1 or imports or reader.pos > 1
        # The whole stream ends early: a loader still runs what came before the end.
        return imports
    except PickleSyntaxError:
        return calls


def _is_dotted_identifier(arg: object, name: str) -> bool:
    if name == "STACK_GLOBAL":
        return True
    return all(part.isidentifier() for text in arg for part in text.split("."))


@format_handler
class PickleHandler(FormatHandler):
    holds_model = True
    name = "pickle"
    priority = 90

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return looks_like_pickle(head, complete)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        scan_pickle_stream(ctx, source, location, depth, start=0)


def scan_pickle_stream(ctx, stream, location: Location, depth: int, start: int) -> None:
    """Simulate every pickle in `stream` from `start` on, until the data stops being pickles."""
    data = stream.read(IN_MEMORY)
    if len(data) < IN_MEMORY:  # the common case: opcodes are read at C speed from memory
        stream = io.BytesIO(data)
    else:
        stream.unread(data)
    versioned = _peek(stream, 1) == b"\x80"
    reader = OpcodeReader(stream, ctx.limits, start, ctx.held)
    try:
        _scan_pickles(ctx, stream, reader, location, depth, versioned)
    finally:
        reader.release()


def _scan_pickles(ctx, stream, reader: OpcodeReader, location: Location, depth: int,
                  versioned: bool) -> None:
    for count in range(MAX_PICKLES):
        before = len(ctx.findings)
        outcome = run_pickle(ctx, reader, location, depth)
        if not outcome.stopped and count == 0 and not outcome.imports and \
                (depth or not versioned) and \
                all(f.rule == MALFORMED.id for f in ctx.findings[before:]):
            # Bytes that break off before importing anything: an unpickler fails on them
            # having run nothing, so they are no pickle but text or data that starts like one
            # (a source file, a git object, a tensor block in an archive), not a broken model.
            # A loose file says so (info); an archive member, where such data is common, not.
            del ctx.findings[before:]
            if depth == 0:
                ctx.add(UNRECOGNIZED.finding(f"{UNRECOGNIZED.title}: it starts like a pickle, "
                                             "but an unpickler fails on it before it imports "
                                             "anything", location, {}))
            return
        if count and not outcome.imports:
            # After a pickle, bytes that import nothing cannot run anything: a pickle of
            # plain values, or data the loader reads itself (legacy torch storages).
            del ctx.findings[before:]
        if not outcome.stopped or not _peek(stream, 1):
            return
        # Every later pickle is tried, whatever it looks like: a loader that reads pickles
        # back to back (legacy torch.save writes five) runs each one until one fails.


def run_pickle(ctx, reader: OpcodeReader, location: Location, depth: int):
    def nested(data: bytes, where: Location) -> None:
        ctx.examine_bytes(data, where, depth + 1)

    begin = reader.pos
    machine = PickleMachine(reader, location, ctx.policy, ctx.limits, nested)
    try:
        return machine.run()
    finally:  # also when the file's expansion budget runs out mid-pickle
        traced = 0
        for finding in machine.out.findings:
            if traced < TRACED and finding.severity >= Severity.HIGH:
                traced += 1
                finding = _with_trace(finding, reader, begin, ctx.limits)
            ctx.add(finding)


def _with_trace(finding, reader: OpcodeReader, begin: int, limits):
    """A high or critical finding gains the opcodes around it (the finding's marked ">"), read
    again from the pickle's start: paid only by files with such findings, never by clean ones.
    Only pickles held in memory are read twice; a stream is not rewound."""
    offset = finding.location.offset
    if finding.severity < Severity.HIGH or offset is None or offset < begin or \
            not isinstance(reader.stream, io.BytesIO):
        return finding
    stream = reader.stream
    here, base = stream.tell(), reader.pos - stream.tell()  # stream position = offset - base
    stream.seek(begin - base)
    again = OpcodeReader(stream, limits, begin)
    before: collections.deque = collections.deque(maxlen=TRACE_LENGTH)
    after: list[str] = []
    try:
        for _ in range(limits.max_opcodes):
            name, arg, at = again.next()
            line = f"{'>' if at == offset else ' '}{at:>8} {name} {_shown(arg)}".rstrip()
            (before if at <= offset else after).append(line)
            if name == "STOP" or len(after) >= TRACE_AFTER:
                break
    except PickleSyntaxError:
        pass
    finally:
        stream.seek(here)
    return dataclasses.replace(finding, evidence={**finding.evidence,
                                                  "trace": [*before, *after]})


def _shown(arg) -> str:
    return "" if arg is None else clipped(repr(arg), 60)


def _peek(stream, n: int) -> bytes:
    """The next bytes of a stream without consuming them."""
    data = stream.read(n)
    if isinstance(stream, io.BytesIO):
        stream.seek(-len(data), io.SEEK_CUR)
    else:
        stream.unread(data)
    return data
