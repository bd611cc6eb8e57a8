"""The gate every model file passes before anything loads it: trojanscope's own scan of the very
bytes that will be loaded. A finding at or above `REFUSE_AT` refuses the file, naming it."""

from __future__ import annotations

from pathlib import Path

from ..findings import Finding, Severity

REFUSE_AT = Severity.HIGH


class ModelError(ValueError):
    """A model file that cannot be used (unreadable, unknown format, wrong shape), by name."""


class UnsafeModelError(ModelError):
    """scan found something in the file that would run when it loads: it is not loaded."""

    def __init__(self, path: str, findings: tuple[Finding, ...]):
        self.path, self.findings = path, findings
        shown = "; ".join(f"{f.rule} ({f.severity}) at {f.location}: {f.message}"
                          for f in findings[:3])
        more = f" and {len(findings) - 3} more" if len(findings) > 3 else ""
        super().__init__(f"{path}: refused, not loaded: scan found {shown}{more}. Run "
                         f"`trojanscope scan {path}` for the whole report")


def scanned_bytes(path: Path) -> bytes:
    """The file's bytes, once read and scanned: what is loaded is exactly what was scanned."""
    from ..artifacts import scan_bytes

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model: {exc.strerror or exc}") from None
    _refuse(str(path), scan_bytes(data, str(path)).findings)
    return data


def scan_folder(path: Path) -> None:
    """A model folder (Hugging Face layout): every file in it is scanned."""
    from ..artifacts import scan

    report = scan(path)
    if report.errors:
        first = report.errors[0]
        raise ModelError(f"{first.path}: cannot scan: {first.message}")
    _refuse(str(path), report.findings)


def _refuse(path: str, findings) -> None:
    bad = tuple(f for f in findings if f.severity >= REFUSE_AT)
    if bad:
        raise UnsafeModelError(path, tuple(sorted(bad, key=lambda f: -int(f.severity))))
