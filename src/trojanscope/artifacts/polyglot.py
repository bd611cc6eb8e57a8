"""Files that are two formats at once: a pickle (or .npy) at the start, a zip at the end.

Loaders disagree on such files: torch.load and pickle read the start, zipfile-based tools read the
directory at the end. Both halves are examined, and the disagreement itself is reported.
"""

from __future__ import annotations

import os
import zipfile

from ..findings import Location, Rule, Severity
from .context import READ_ERRORS
from .source import Source
from .zip_format import ZipHandler

POLYGLOT = Rule("scan.polyglot", Severity.MEDIUM,
                "The file is two formats at once: a zip archive is appended to another format",
                "Treat the file as crafted: loaders that pick the format differently will see "
                "different contents.")
EOCD = b"PK\x05\x06"
TAIL = 22 + 65535  # the end-of-central-directory record and its longest comment


def check_appended_zip(ctx, handle, location: Location, primary: str | None) -> None:
    """If `handle` (a seekable file) starts as another format but ends as a zip, scan the zip."""
    if primary in (None, "zip"):
        return
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - TAIL))
    if EOCD not in handle.read(TAIL):
        return
    handle.seek(0)
    try:  # four bytes in tensor data can look like the signature: require a real directory
        with zipfile.ZipFile(handle) as archive:
            if not archive.infolist():
                return
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    handle.seek(0)
    ctx.add(POLYGLOT.finding(f"starts as {primary} but ends with a zip directory", location,
                             {"formats": [primary, "zip"]}))
    where = location.inside("<appended zip>")
    try:
        ZipHandler.scan(ctx, Source(handle, ctx.limits.sniff_bytes, None, cheap_seek=True),
                        where, 1)
    except READ_ERRORS as exc:
        ctx.unreadable(where, exc)
