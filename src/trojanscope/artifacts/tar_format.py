"""Tar archives, including the oldest torch.save layout (sys_info, pickle, storages, tensors)."""

from __future__ import annotations

import io
import pickletools
import struct
import tarfile

from ..findings import Location, Rule, Severity
from .context import LIMIT_EXCEEDED, UNREADABLE
from .pickle_format import looks_like_pickle, scan_pickle_stream
from .polyglot import POLYGLOT
from .registry import FormatHandler, format_handler
from .source import Source

SPECIAL_MEMBER = Rule("archive.special-member", Severity.HIGH,
                      "A tar member is a link, a FIFO or a device: a loader that extracts the "
                      "archive opens what it names, which this scan did not read",
                      "Do not load the file: unpack it by hand, see what each such member "
                      "names, and scan that.")
# torch's oldest loader reads `storages` and `tensors` as pickles with raw bytes between them;
# the bytes a storage's element takes, by the storage type's name.
ELEMENT_BYTES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
                 "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
                 "ByteStorage": 1, "BoolStorage": 1, "ComplexDoubleStorage": 16,
                 "ComplexFloatStorage": 8, "QUInt8Storage": 1, "QInt8Storage": 1,
                 "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1}
# A layout pickle (a count, a key, a type) is read in a first window, then at most this one:
# reading the large window for each of many storages would copy it each time.
FIRST_WINDOW, PICKLE_WINDOW = 1 << 12, 1 << 20


@format_handler
class TarHandler(FormatHandler):
    name = "tar"
    priority = 30

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        if len(head) < 512 or not _octal_field(head[148:156]):  # cheap test first: checksum
            return False
        try:  # checks the header checksum, so plain data rarely passes
            tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            return False
        return True

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        pickle_too = looks_like_pickle(source.head, len(source.head) < ctx.limits.sniff_bytes)
        handle = source.random_access(ctx.limits)
        if pickle_too:  # pickle.load reads the header's first bytes as opcodes
            ctx.add(POLYGLOT.finding("starts as a pickle and as a tar header at once", location,
                                     {"formats": ["pickle", "tar"]}))
            handle.seek(0)
            scan_pickle_stream(ctx, Source(handle, ctx.limits.sniff_bytes, None,
                                           cheap_seek=True), location, depth, start=0)
            handle.seek(0)
        archive = tarfile.open(fileobj=handle, mode="r:")
        count = 0
        for info in archive:  # members are read one by one, never all listed first
            if info.issym() or info.islnk() or info.isfifo() or info.isdev():
                kind = "a symbolic link" if info.issym() else "a hard link" if info.islnk() \
                    else "a FIFO" if info.isfifo() else "a device"
                ctx.add(SPECIAL_MEMBER.finding(  # torch's oldest loader extracts, then opens
                    f"{info.name!r} is {kind}" + (f" to {info.linkname!r}" if info.linkname
                                                  else ""), location.inside(info.name),
                    {"member": info.name, "kind": kind, "link_to": info.linkname}))
            if not info.isfile():
                continue
            count += 1
            if count > ctx.limits.max_members:
                ctx.add(LIMIT_EXCEEDED.finding(f"more than {ctx.limits.max_members:,} members; "
                                               "the rest were not examined", location,
                                               {"limit": "max_members"}))
                return
            member = archive.extractfile(info)
            if member is not None:
                ctx.examine_stream(member, location.inside(info.name), depth + 1)
            if info.name in ("storages", "tensors"):
                member = archive.extractfile(info)
                found, unfollowed = _after_raw_bytes(member, info.name, info.size)
                for offset, pickled in found:
                    if pickled is None:  # the last: scanned from there, as torch reads it
                        member.seek(offset)
                    stream = member if pickled is None else io.BytesIO(pickled)
                    scan_pickle_stream(ctx, Source(stream, ctx.limits.sniff_bytes, None,
                                                   cheap_seek=True),
                                       location.inside(info.name), depth + 1, start=offset)
                if unfollowed:
                    ctx.add(UNREADABLE.finding(
                        f"torch's oldest layout in {info.name!r} could not be followed ("
                        f"{unfollowed}); the pickles torch's loader reads after it were not "
                        "examined", location.inside(info.name), {"member": info.name}))


def _octal_field(field: bytes) -> bool:
    digits = field.strip(b" \x00")
    return bool(digits) and all(48 <= c <= 55 for c in digits)


class _Unfollowed(Exception):
    """The layout holds something torch's loader reads in a way this walk does not follow."""


def _after_raw_bytes(member, name: str, size: int) -> tuple[list[list], str | None]:
    """Where torch's oldest loader starts a pickle in `storages` or `tensors` right after raw
    bytes (the pickles back to back from the start are scanned as any pickle is): `storages`
    is a count, then per storage a (key, location, type) pickle, an 8-byte element count and
    the elements, then the views pickle; `tensors` a count, then per tensor a pickle and
    4 + 4 + 16 * ndim + 8 bytes. Only plain layouts are followed (a count that is one number,
    one storage type per pickle): anything else, where torch would read on, is returned as
    why the rest was not examined. A layout that ends where torch's loader would fail too is
    no danger, and ends the walk in silence. Each offset comes with the bytes of its pickle
    when the walk parsed it (so that it is scanned without reading on), else None."""
    offsets: list[list] = []  # [offset, the pickle's bytes once the walk has parsed it]
    try:
        count = _count(_pickle_ops(member)[0])
        for _ in range(count):
            ops, pickled = _pickle_ops(member)
            if offsets:
                offsets[-1][1] = pickled
            if name == "storages":
                element = ELEMENT_BYTES[_storage_type(ops)]
                elements, = struct.unpack("<q", _exactly(member, 8))
                if not 0 <= elements * element <= size:
                    raise _Unfollowed(f"a storage of {elements} elements")
                member.seek(elements * element, io.SEEK_CUR)
            else:
                ndim, = struct.unpack("<i", _exactly(member, 4))
                if not 0 <= ndim <= 64:
                    raise _Unfollowed(f"a tensor of {ndim} dimensions")
                _exactly(member, 4 + 16 * ndim + 8)
            if member.tell() > size:
                return offsets, None  # past the end: torch's loader fails here
            offsets.append([member.tell(), None])  # the next pickle; at the end, the views
    except _Unfollowed as exc:
        return offsets, str(exc)
    except KeyError as exc:
        return offsets, f"a storage type this scan does not know ({exc.args[0]!r})"
    except (EOFError, struct.error):
        pass  # the member ends: torch's loader fails here too
    return offsets, None


def _pickle_ops(member) -> tuple[list[tuple[str, object]], bytes]:
    """The opcodes and bytes of the pickle at `member`'s position (parsed, never run),
    leaving the position just after it."""
    start = member.tell()
    for size in (FIRST_WINDOW, PICKLE_WINDOW):  # most layout pickles are tens of bytes
        member.seek(start)
        window = io.BytesIO(member.read(size))
        if not window.getvalue():
            raise EOFError
        try:
            ops = [(op.name, arg) for op, arg, _ in pickletools.genops(window)]
        except ValueError as exc:
            if size < PICKLE_WINDOW and len(window.getvalue()) == size:
                continue  # it may go on past the first window
            raise _Unfollowed(f"a layout pickle that this scan cannot parse ({exc})") from None
        member.seek(start + window.tell())
        return ops, window.getvalue()[:window.tell()]


PLAIN = {"PROTO", "FRAME", "STOP"}


def _count(ops: list[tuple[str, object]]) -> int:
    """The number a count pickle holds, when it is one plain integer and nothing else."""
    values = [(name, arg) for name, arg in ops if name not in PLAIN]
    if len(values) != 1 or not values[0][0].startswith(("INT", "BININT", "LONG")) or \
            not isinstance(values[0][1], int) or not 0 <= values[0][1] <= 1 << 20:
        raise _Unfollowed(f"a count pickle that is not one plain number ({values[:3]})")
    return values[0][1]


def _storage_type(ops: list[tuple[str, object]]) -> str:
    """The storage type a (key, location, type) pickle names: one name ending in Storage,
    from a GLOBAL or the two strings of a STACK_GLOBAL, and no value popped or replaced."""
    names = {str(arg).split()[-1] for _, arg in ops if isinstance(arg, str) and arg and
             str(arg).split()[-1].endswith("Storage")}
    if len(names) != 1 or any(name.startswith("POP") for name, _ in ops):
        raise _Unfollowed(f"a storage pickle that does not name one storage type "
                          f"({sorted(names)[:3]})")
    return names.pop()


def _exactly(member, n: int) -> bytes:
    data = member.read(n)
    if len(data) != n:
        raise EOFError
    return data
