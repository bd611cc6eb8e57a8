"""`scan`: is this file safe to load? Examines every file by content; never loads it."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

from ..findings import Location, Report, ScanError
from ..provenance.paths import SIGNATURE_NAME, default_signature
from ..results import ScanResults
from .context import READ_ERRORS, Abandon, ScanContext
from .limits import Limits
from .policy import GlobalsPolicy
from .polyglot import check_appended_zip
from .source import Source


def scan(paths: str | os.PathLike | Iterable[str | os.PathLike], *,
         policy: GlobalsPolicy | None = None, limits: Limits | None = None) -> Report:
    """Examine files and directories (recursively) and report what loading them would run."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    targets = tuple(str(p) for p in paths)
    ctx = ScanContext(policy or GlobalsPolicy.default(), limits or Limits())
    errors: list[ScanError] = []
    files: list[dict] = []
    started = time.perf_counter()
    for target in targets:
        signatures = []
        for path, error in _walk(Path(target)):
            if path.name == SIGNATURE_NAME and path.is_file():
                signatures.append((path.parent, path))
            if error:
                errors.append(ScanError(str(path), error))
                continue
            before, formats_before = len(ctx.findings), len(ctx.formats)
            clock = time.perf_counter()
            error = scan_file(ctx, path)
            if error:
                errors.append(ScanError(str(path), error))
            files.append({
                "path": str(path),
                "formats": sorted({fmt for _, fmt in ctx.formats[formats_before:]}),
                "findings": len(ctx.findings) - before,
                "seconds": round(time.perf_counter() - clock, 4),
            })
        beside = default_signature(Path(target))
        if Path(target).is_file() and beside.is_file():
            signatures.append((Path(target), beside))
        if signatures:
            from ..provenance.integrity import signature_notes  # hashing code, only when signed

            for root, signature in signatures:
                ctx.findings.extend(signature_notes(root, signature))
    return Report(
        command="scan",
        targets=targets,
        findings=tuple(ctx.findings),
        errors=tuple(errors),
        results=ScanResults(files=files, files_scanned=len(files)),
        timings={"total_seconds": round(time.perf_counter() - started, 4)},
        config={"limits": ctx.limits.to_dict(), "policy": list(ctx.policy.sources)},
    )


def scan_bytes(data: bytes, name: str = "<bytes>", *, policy: GlobalsPolicy | None = None,
               limits: Limits | None = None) -> Report:
    """Examine bytes held in memory, as if they were a file called `name`."""
    return scan_stream(io.BytesIO(data), name, policy=policy, limits=limits)


def scan_stream(handle, name: str, *, policy: GlobalsPolicy | None = None,
                limits: Limits | None = None) -> Report:
    """Examine an open, seekable binary file as if it were called `name` (the service scans
    stored uploads under the name they were uploaded with)."""
    ctx = ScanContext(policy or GlobalsPolicy.default(), limits or Limits())
    started = time.perf_counter()
    examine_top(ctx, handle, Location(name))
    return Report(command="scan", targets=(name,),
                  findings=tuple(ctx.findings), results=ScanResults(files_scanned=1),
                  timings={"total_seconds": round(time.perf_counter() - started, 4)},
                  config={"limits": ctx.limits.to_dict(), "policy": list(ctx.policy.sources)})


def scan_file(ctx: ScanContext, path: Path) -> str | None:
    """Examine one file; returns an error message when it could not be opened at all."""
    try:
        with open(path, "rb") as handle:
            examine_top(ctx, handle, Location(str(path)))
    except OSError as exc:
        return f"cannot open: {exc.strerror or exc}"
    return None


def examine_top(ctx: ScanContext, handle, location: Location) -> None:
    """Examine one top-level file (a seekable handle), within its own expansion budget."""
    ctx.start_file()
    try:
        source = Source(handle, ctx.limits.sniff_bytes, None, cheap_seek=True)
        before = len(ctx.formats)
        ctx.examine(source, location, depth=0, top=True)
        primary = ctx.formats[before][1] if len(ctx.formats) > before else None
        check_appended_zip(ctx, handle, location, primary)
    except Abandon:
        pass
    except READ_ERRORS as exc:
        ctx.unreadable(location, exc)


def _walk(target: Path) -> Iterator[tuple[Path, str | None]]:
    if target.is_file():
        yield target, None
    elif target.is_dir():
        found = []
        for root, _, names in os.walk(target, followlinks=False):
            found.extend(Path(root) / name for name in names)
        yield from ((path, None) for path in sorted(found) if path.is_file())
    elif target.exists():
        yield target, "not a regular file or directory"
    else:
        yield target, "no such file or directory"
