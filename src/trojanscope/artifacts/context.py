"""The state of one scan: policy, limits, findings so far, and the dispatch of streams."""

from __future__ import annotations

import io
import lzma
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field

from ..findings import Finding, Location, Rule, Severity
from .limits import LimitExceeded, Limits
from .pickle_reader import HeldBytes
from .policy import GlobalsPolicy
from .registry import detect, weak_rivals
from .source import Budget, Source

UNREADABLE = Rule("archive.unreadable", Severity.HIGH,
                  "A file or archive member could not be read, so its contents were not examined",
                  "Re-download the file; do not load it until it scans cleanly.")
LIMIT_EXCEEDED = Rule("scan.limit-exceeded", Severity.HIGH,
                      "The file exceeds a scan limit, so the rest of it was not examined",
                      "Raise the limit (Limits) if the file is trusted to be this large; a "
                      "compression bomb is not.")
TOO_DEEP = Rule("archive.too-deep", Severity.HIGH,
                "Archives or compressed streams are nested deeper than the limit",
                "Unpack the file by hand and scan what it holds; deep nesting is an "
                "evasion trick.")
UNRECOGNIZED = Rule("scan.unrecognized-format", Severity.INFO,
                    "The file is not in a format that trojanscope examines",
                    "None: a loader that expects a model format will reject it too.")
EMPTY = Rule("scan.empty-file", Severity.INFO, "The file is empty",
             "None: there is nothing to load.")

# What a broken wrapper raises while being read; each becomes an `archive.unreadable` finding.
# zipfile and tarfile also raise IndexError and KeyError on some corrupt headers (fuzzing found
# `ZipInfo.is_dir` on an empty name).
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError, NotImplementedError,
               RuntimeError, OverflowError, IndexError, KeyError, zipfile.BadZipFile,
               tarfile.TarError)


class Abandon(Exception):
    """Stops the examination of one top-level file after a limit was hit (already reported)."""


@dataclass
class ScanContext:
    policy: GlobalsPolicy
    limits: Limits
    findings: list[Finding] = field(default_factory=list)
    formats: list[tuple[str, str]] = field(default_factory=list)
    budget: Budget | None = None
    # Pickle constants held at once, nested pickles included (pickle_reader.HeldBytes).
    held: HeldBytes = field(init=False)

    def __post_init__(self) -> None:
        self.held = HeldBytes(self.limits.max_held_bytes)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def start_file(self) -> None:
        self.budget = Budget(self.limits.max_expanded_bytes, self.limits.max_seconds)

    def examine(self, source: Source, location: Location, depth: int, top: bool = False) -> None:
        """Recognise the format of `source` by its first bytes and hand it to that format."""
        if depth > self.limits.max_depth:
            self.add(TOO_DEEP.finding(f"nesting depth {depth} exceeds the limit of "
                                      f"{self.limits.max_depth}", location))
            return
        complete = len(source.head) < self.limits.sniff_bytes
        handler = detect(source.head, complete)
        if handler is None:
            if top:
                rule = EMPTY if not source.head else UNRECOGNIZED
                self.add(rule.finding(rule.title, location, {"head": source.head[:16].hex()}))
            return
        self.formats.append((str(location), handler.name))
        rivals = weak_rivals(handler, source.head, complete)
        try:
            if rivals:  # read again from the start by each rival: spooled once
                handle = source.random_access(self.limits)
                start = handle.tell()
                handler.scan(self, Source(handle, self.limits.sniff_bytes, None, True),
                             location, depth)
                for rival in rivals:
                    handle.seek(start)
                    before = len(self.findings)
                    try:  # bytes that only looked like the rival's format: no read error
                        rival.scan(self, Source(handle, self.limits.sniff_bytes, None, True),
                                   location, depth)
                    except READ_ERRORS:
                        pass
                    self.findings[before:] = [f for f in self.findings[before:]
                                              if f.rule not in (UNREADABLE.id, UNRECOGNIZED.id)]
            else:
                handler.scan(self, source, location, depth)
        except LimitExceeded as exc:
            self.add(LIMIT_EXCEEDED.finding(f"stopped: {exc}", location, {"limit": exc.what}))
            raise Abandon from None

    def examine_stream(self, raw, location: Location, depth: int, *, counted: bool = True,
                       cheap_seek: bool = False) -> None:
        """Examine an archive member or a decompressed stream, reporting read errors as findings."""
        try:
            source = Source(raw, self.limits.sniff_bytes, self.budget if counted else None,
                            cheap_seek=cheap_seek)
            self.examine(source, location, depth)
        except (Abandon, LimitExceeded):
            raise
        except READ_ERRORS as exc:
            self.unreadable(location, exc)

    def unreadable(self, location: Location, exc: BaseException) -> None:
        self.add(UNREADABLE.finding(f"cannot read: {describe_error(exc)}", location,
                                    {"error": type(exc).__name__}))

    def examine_bytes(self, data: bytes, location: Location, depth: int) -> None:
        self.examine_stream(io.BytesIO(data), location, depth, counted=False, cheap_seek=True)


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."
