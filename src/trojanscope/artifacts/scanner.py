"""`scan`: is this file safe to load? Examines every file by content; never loads it."""

from __future__ import annotations

import errno
import io
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from ..findings import Finding, Location, Report, Rule, ScanError, Severity
from ..provenance.paths import SIGNATURE_NAME, default_signature
from ..results import ScanResults
from .context import READ_ERRORS, Abandon, ScanContext
from .limits import Limits
from .policy import GlobalsPolicy
from .polyglot import check_appended_zip
from .registry import handlers
from .source import Source

CRASHED = Rule("scan.crashed", Severity.HIGH,
               "Examining the file failed each time it was tried (its worker died, or the "
               "scanner raised), so it was not examined",
               "Do not load the file. Scan it alone (trojanscope scan FILE) to see why; a file "
               "built to crash scanners is hostile.")


@dataclass(frozen=True)
class FileScan:
    """What examining one top-level file found: the formats recognised (its members' too), the
    findings, or why it could not be opened. The unit that the result cache keeps and that Ray
    tasks send back, as JSON-like data (`to_dict`), never a pickle."""

    path: str
    formats: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False  # taken from the result cache, not examined again

    def to_dict(self) -> dict:
        return {"path": self.path, "formats": list(self.formats), "error": self.error,
                "findings": [f.to_dict() for f in self.findings], "seconds": self.seconds,
                "cached": self.cached}

    @classmethod
    def from_dict(cls, data: Mapping) -> FileScan:
        return cls(data["path"], tuple(data["formats"]),
                   tuple(Finding.from_dict(f) for f in data["findings"]), data["error"],
                   data["seconds"], bool(data.get("cached", False)))

    @classmethod
    def crashed(cls, path: str, tries: int, why: str) -> FileScan:
        """The result of a file whose examination killed its worker `tries` times."""
        return cls(path, findings=(CRASHED.finding(
            f"examining it failed {tries} time(s): {why}", Location(path),
            {"tries": tries, "error": why}),))

    def moved(self, path: str) -> FileScan:
        """The same result for the same bytes found at `path` (a cached result's findings name
        the file where it was first seen)."""
        findings = tuple(replace(f, location=replace(f.location, path=path))
                         for f in self.findings) if self.findings else ()
        return replace(self, path=path, findings=findings)


@dataclass(frozen=True)
class Plan:
    """What a scan of `targets` will examine: the files in order, the paths that could not be
    examined at all, and the signature files met on the way."""

    targets: tuple[str, ...]
    files: tuple[str, ...]
    errors: tuple[ScanError, ...]
    signatures: tuple[tuple[Path, Path], ...]


def scan(paths: str | os.PathLike | Iterable[str | os.PathLike], *,
         policy: GlobalsPolicy | None = None, limits: Limits | None = None) -> Report:
    """Examine files and directories (recursively) and report what loading them would run."""
    plan = plan_scan(paths)
    policy, limits = policy or GlobalsPolicy.default(), limits or Limits()
    started = time.perf_counter()
    scans = [scan_path(path, policy, limits) for path in plan.files]
    return assemble(plan, scans, policy, limits, time.perf_counter() - started)


def plan_scan(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> Plan:
    """Walk `paths` (directories recursively, sorted) into the files a scan examines."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    targets = tuple(str(p) for p in paths)
    files: list[str] = []
    errors: list[ScanError] = []
    signatures: list[tuple[Path, Path]] = []
    for target in targets:
        if not target:
            errors.append(ScanError(target, "an empty path names no file"))
            continue
        for path, error in _walk(Path(target)):
            if error:
                errors.append(ScanError(path, error))
                continue
            files.append(path)
            if os.path.basename(path) == SIGNATURE_NAME:
                signatures.append((Path(path).parent, Path(path)))
        beside = default_signature(Path(target))
        if Path(target).is_file() and beside.is_file():
            signatures.append((Path(target), beside))
    return Plan(targets, tuple(files), tuple(errors), tuple(signatures))


def assemble(plan: Plan, scans: Iterable[FileScan], policy: GlobalsPolicy, limits: Limits,
             seconds: float) -> Report:
    """The report of a scan: the files' results in the plan's order, however they were made
    (here, on Ray, from the cache)."""
    findings: list[Finding] = []
    errors = list(plan.errors)
    files = []
    for done in scans:
        findings.extend(done.findings)
        if done.error:
            errors.append(ScanError(done.path, done.error))
        files.append({"path": done.path, "formats": list(done.formats),
                      "findings": len(done.findings), "seconds": done.seconds})
    if plan.signatures:
        from ..provenance.integrity import signature_notes  # hashing code, only when signed

        for root, signature in plan.signatures:
            findings.extend(signature_notes(root, signature))
    return Report(
        command="scan",
        targets=plan.targets,
        findings=tuple(findings),
        errors=tuple(errors),
        results=ScanResults(files=files, files_scanned=len(files)),
        timings={"total_seconds": round(seconds, 4)},
        config={"limits": limits.to_dict(), "policy": list(policy.sources)},
    )


def scan_bytes(data: bytes, name: str = "<bytes>", *, policy: GlobalsPolicy | None = None,
               limits: Limits | None = None) -> Report:
    """Examine bytes held in memory, as if they were a file called `name`."""
    return scan_stream(io.BytesIO(data), name, policy=policy, limits=limits)


def scan_stream(handle, name: str, *, policy: GlobalsPolicy | None = None,
                limits: Limits | None = None) -> Report:
    """Examine an open, seekable binary file as if it were called `name` (the service scans
    stored uploads under the name they were uploaded with)."""
    policy, limits = policy or GlobalsPolicy.default(), limits or Limits()
    return file_report(scan_handle(handle, name, policy, limits), policy, limits)


def file_report(result: FileScan, policy: GlobalsPolicy, limits: Limits) -> Report:
    """The report of a scan of the one file `result` is of."""
    return assemble(Plan((result.path,), (result.path,), (), ()), [result], policy, limits,
                    result.seconds)


def scan_path(path: str | os.PathLike, policy: GlobalsPolicy, limits: Limits) -> FileScan:
    """Examine one top-level file."""
    try:
        with open_regular(path) as handle:
            return scan_handle(handle, str(path), policy, limits)
    except OSError as exc:
        return FileScan(str(path), error=f"cannot open: {exc.strerror or exc}")


def open_regular(path: str | os.PathLike):
    """`path` opened for reading, refused (OSError) unless it is a regular file when opened:
    a name swapped for a named pipe after the walk must not block the scan forever."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return os.fdopen(fd, "rb")


def scan_handle(handle, name: str, policy: GlobalsPolicy, limits: Limits) -> FileScan:
    """Examine one top-level file, open as `handle` (seekable), called `name`."""
    ctx = ScanContext(policy, limits)
    clock = time.perf_counter()
    examine_top(ctx, handle, Location(name))
    return FileScan(name, tuple(sorted({fmt for _, fmt in ctx.formats})), tuple(ctx.findings),
                    None, round(time.perf_counter() - clock, 4))


def examine_top(ctx: ScanContext, handle, location: Location) -> None:
    """Examine one top-level file (a seekable handle), within its own expansion budget."""
    ctx.start_file()
    try:
        source = Source(handle, ctx.limits.sniff_bytes, None, cheap_seek=True)
        before = len(ctx.formats)
        ctx.examine(source, location, depth=0, top=True)
        primary = ctx.formats[before][1] if len(ctx.formats) > before else None
        if location.path.lower().endswith(".jinja") and \
                "jinja" not in {name for _, name in ctx.formats[before:]}:
            # transformers renders chat_template.jinja by its name, whatever its first bytes
            handle.seek(0)
            ctx.formats.append((str(location), "jinja"))
            template = next(h for h in handlers() if h.name == "jinja")
            template.scan(ctx, Source(handle, ctx.limits.sniff_bytes, None, cheap_seek=True),
                          location, 0)
        check_appended_zip(ctx, handle, location, primary)
    except Abandon:
        pass
    except READ_ERRORS as exc:
        ctx.unreadable(location, exc)


def _walk(target: Path) -> Iterator[tuple[str, str | None]]:
    """(path, None) for each regular file under `target` (symbolic links to files followed,
    links to folders not), sorted as paths sort; (path, why) for what cannot be examined: a
    link to a folder outside `target` (a loader would follow it into files not scanned; a link
    within is scanned where it leads), and what is neither a file nor a folder (a FIFO, a
    link to nothing: a loader would read what appears there later)."""
    if target.is_file():
        yield str(target), None
    elif target.is_dir():
        found: list[str] = []
        problems: list[tuple[str, str]] = []
        folders = [str(target)]
        root = target.resolve()
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        try:
                            kind = _kind(entry, root)
                        except (OSError, RuntimeError) as exc:
                            kind = f"cannot be read: {getattr(exc, 'strerror', None) or exc}"
                        if kind == "folder":
                            folders.append(entry.path)
                        elif kind == "file":
                            found.append(entry.path)
                        elif kind:
                            problems.append((entry.path, kind))
            except OSError as exc:
                problems.append((folder, f"cannot list the folder: {exc.strerror or exc}"))
        yield from ((path, None) for path in sorted(found, key=_path_order))
        yield from problems
    elif target.exists():
        yield str(target), "not a regular file or directory"
    else:
        yield str(target), "no such file or directory"


def _kind(entry: os.DirEntry, root: Path) -> str | None:
    """"folder" to walk, "file" to scan, None to pass over (a link to a folder within
    `root`), or why the entry is not examined."""
    if entry.is_dir(follow_symlinks=False):
        return "folder"
    if entry.is_symlink() and _through_proc(os.path.abspath(entry.path)):
        return ("a link through /proc or /dev/fd: what it names depends on the process that "
                "opens it, not examined")
    if entry.is_file():
        return "file"
    if entry.is_dir():
        leads = Path(entry.path).resolve()
        if leads.is_relative_to(root):
            return None  # scanned where it leads
        return (f"a link to a folder outside the scanned one ({leads}), not followed: scan "
                "it on its own")
    if entry.is_symlink():
        return "a link to nothing: a loader would read what appears there later"
    return "not a regular file or folder (a FIFO, a socket or a device)"


def _through_proc(path: str, hops: int = 40) -> bool:
    """Does following `path`, one component and one link at a time, pass through /proc or
    /dev/fd (/dev/stdin and the like lead there), whose names mean the opening process's?"""
    current, pending = Path("/"), list(Path(path).parts[1:])
    while pending:
        part = pending.pop(0)
        if part == "..":
            current = current.parent
            continue
        candidate = current / part
        if candidate.parts[1:2] == ("proc",) or candidate.parts[1:3] == ("dev", "fd"):
            return True
        if not candidate.is_symlink():
            current = candidate
            continue
        hops -= 1
        if hops < 0:
            return False  # a loop: nothing is opened through it
        target = Path(os.readlink(candidate))
        current = Path("/") if target.is_absolute() else current
        pending = list(target.parts[1:] if target.is_absolute() else target.parts) + pending
    return False


def _path_order(path: str) -> list[str]:
    return path.split(os.sep)
