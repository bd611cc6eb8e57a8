"""The gate every model file passes before anything loads it: trojanscope's own scan of the very
bytes that will be loaded. A finding at or above `REFUSE_AT` refuses the file, naming it."""

from __future__ import annotations

import json
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


def scanned_bytes(path: Path, refuse_at: Severity = REFUSE_AT) -> bytes:
    """The file's bytes, once read and scanned: what is loaded is exactly what was scanned."""
    data = read_model_bytes(path)
    refuse(path, scan_findings(path, data), refuse_at)
    return data


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 300 characters), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def json_object(file: Path) -> dict:
    """A model folder's JSON file (config.json and the like), which must hold an object."""
    try:
        found = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{file}: unreadable: {exc}") from None
    if not isinstance(found, dict):
        raise ModelError(f"{file}: not a JSON object")
    return found


def read_model_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model: {exc.strerror or exc}") from None


def scan_findings(path: Path, data: bytes) -> tuple[Finding, ...]:
    from ..artifacts import scan_bytes

    return scan_bytes(data, str(path)).findings


def refuse(path: Path, findings, refuse_at: Severity = REFUSE_AT) -> None:
    """UnsafeModelError when any finding is at or above `refuse_at`."""
    bad = tuple(f for f in findings if f.severity >= refuse_at)
    if bad:
        raise UnsafeModelError(str(path), tuple(sorted(bad, key=lambda f: -int(f.severity))))


def scan_folder(path: Path) -> None:
    """A model folder (Hugging Face layout): no symbolic links (a link to a file elsewhere
    would be read, or copied into a repaired model, as if it were the model's), and every file
    scanned."""
    from ..artifacts import scan

    for item in sorted(Path(path).rglob("*")):
        if item.is_symlink():
            raise ModelError(f"{item}: a symbolic link inside the model folder; trojanscope "
                             "reads only the folder's own files")
    report = scan(path)
    if report.errors:
        first = report.errors[0]
        raise ModelError(f"{first.path}: cannot scan: {first.message}")
    refuse(path, report.findings)


def check_complete(path: Path, loading: dict) -> None:
    """transformers' loading info (`output_loading_info=True`): a weight the file lacks is
    filled at random, which makes another model than the file's; refused by name."""
    missing = sorted(loading.get("missing_keys") or [])
    if missing:
        raise ModelError(f"{path}: its weights lack {missing[0]}"
                         + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                         + ", which transformers would fill at random")
