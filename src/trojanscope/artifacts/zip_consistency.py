"""Zips that two readers could read differently (issue 17: "judge zips as torch's reader sees
them"). Python's zipfile, torch's reader (miniz) and streaming unzippers each find members in
their own way: the last end record or the first, the central directory or the local headers,
the first of two members of one name or the last. When those can disagree, the members one
reader loads are not the ones another examined, so the archive is refused as a whole.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections import Counter

from ..findings import Location, Rule, Severity

AMBIGUOUS = Rule("zip.ambiguous", Severity.HIGH,
                 "Readers of this zip can see different members: it has more than one end "
                 "record, names a member twice, or its local headers disagree with its "
                 "central directory",
                 "Do not load it: the loader may read members that were not examined. Rebuild "
                 "the archive from a trusted source.")

END = b"PK\x05\x06"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
TAIL = 22 + 65535


def ambiguities(handle, archive: zipfile.ZipFile, location: Location) -> list:
    """Findings for the ways `archive` (opened on the seekable `handle`) reads ambiguously."""
    problems = []
    names = Counter(info.filename for info in archive.infolist())
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        problems.append(f"{len(twice)} member name(s) appear more than once "
                        f"(first: {twice[0]!r}); readers keep the first or the last")
    ends = _end_records(handle)
    if len(ends) > 1:
        problems.append(f"{len(ends)} end-of-central-directory records point at central "
                        f"directories (at bytes {', '.join(map(str, ends[:4]))}); readers "
                        "choose different ones")
    for info in archive.infolist():
        problem = _local_header_problem(handle, info)
        if problem:
            problems.append(f"{info.filename!r}: {problem}")
            break
    return [AMBIGUOUS.finding(problem, location, {}) for problem in problems]


def _end_records(handle) -> list[int]:
    """Offsets of end records in the tail whose central directory offset holds one."""
    size = handle.seek(0, os.SEEK_END)
    start = max(0, size - TAIL)
    handle.seek(start)
    tail = handle.read(TAIL)
    found, at = [], tail.find(END)
    while at >= 0:
        record = tail[at:at + 22]
        if len(record) == 22:
            entries, cd_size, cd_offset = struct.unpack("<10xHII", record[:20])
            # where the record says, or right before it (an archive appended to other bytes)
            if _starts_with(handle, cd_offset, CENTRAL) or \
                    _starts_with(handle, start + at - cd_size, CENTRAL) or \
                    (entries == 0 and cd_size == 0) or cd_offset == 0xFFFFFFFF:
                found.append(start + at)
        at = tail.find(END, at + 1)
    return found


def _starts_with(handle, offset: int, magic: bytes) -> bool:
    handle.seek(offset)
    return handle.read(len(magic)) == magic


def _local_header_problem(handle, info: zipfile.ZipInfo) -> str | None:
    handle.seek(info.header_offset)
    header = handle.read(30)
    if len(header) < 30 or header[:4] != LOCAL:
        return "no local header where the central directory says"
    name_length = struct.unpack("<H", header[26:28])[0]
    name = handle.read(name_length)
    expected = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437",
                                         "replace")
    if name != expected:
        return f"the local header names it {name[:60]!r}"
    return None
