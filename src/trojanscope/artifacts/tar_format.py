"""Tar archives, including the oldest torch.save layout (sys_info, pickle, storages, tensors)."""

from __future__ import annotations

import tarfile

from ..findings import Location, Rule, Severity
from .context import LIMIT_EXCEEDED
from .pickle_format import looks_like_pickle, scan_pickle_stream
from .polyglot import POLYGLOT
from .registry import FormatHandler, format_handler
from .source import Source

LINK_MEMBER = Rule("archive.link-member", Severity.HIGH,
                   "A tar member is a link: a loader that extracts the archive reads the file it "
                   "names, which this scan did not read",
                   "Do not load the file: unpack it by hand, see where each link points, and "
                   "scan the files it names.")


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
            if info.issym() or info.islnk():  # torch's oldest loader extracts, then opens
                ctx.add(LINK_MEMBER.finding(
                    f"{info.name!r} is a {'symbolic' if info.issym() else 'hard'} link to "
                    f"{info.linkname!r}", location.inside(info.name),
                    {"member": info.name, "link_to": info.linkname}))
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


def _octal_field(field: bytes) -> bool:
    digits = field.strip(b" \x00")
    return bool(digits) and all(48 <= c <= 55 for c in digits)
