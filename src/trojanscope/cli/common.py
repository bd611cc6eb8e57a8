"""What every command group shares: exit codes, severities, the user's error, and writing the
report in the format asked for (also when the command fails)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import render
from ..findings import Report, ScanError, Severity
from ..paths import cache_file, identities

SEVERITIES = [str(s) for s in Severity]
EXIT_CODES = "exit codes: 0 nothing at or above --fail-on, 1 findings, 2 could not do the job"


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


def emit(report: Report, output_format: str, output: Path | None, show: Severity,
         images: dict[str, bytes] | None = None, gallery: str = "Images") -> None:
    text = render.render(report, output_format, render.RenderOptions(
        min_severity=show, color=output is None and sys.stdout.isatty(), images=images or {},
        gallery=gallery))
    # a file name that is not UTF-8 holds surrogates: written as \xNN escapes, not a crash
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{output}: cannot write the report: {exc.strerror or exc}") from None


OUTPUTS = ("output", "out", "export_clean")  # the arguments a command writes to
INPUTS = ("paths", "path", "model", "old", "new", "data", "reports", "scorer", "base",
          "features", "config", "allow", "cache", "key", "signature", "certificate",
          "root_certificates", "reference", "images")  # and those it reads


def check_outputs(args: argparse.Namespace) -> None:
    try:
        _check_outputs(args)
    except OSError as exc:  # a name too long for the system, and the like
        raise UserError(f"{exc.filename or ''}: {exc.strerror or exc}") from None


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that is one of the command's inputs (the user's data
    replaced by a report) or another of its outputs (a scorer replaced by the report), by path
    or as another name (a link) of the same file, and an output whose folder does not exist
    (found after an hour of work, it would be lost). An output that is a link, symbolic or
    hard, is refused too: a scanned folder may plant `scan.sarif -> pytorch_model.bin`, and the
    report would replace the evidence (a red team's), or a file outside the folder; and so are
    an output whose path goes through a link in a scanned folder (or, for a file that exists,
    in a scanned file's folder), and one that exists but is not a regular file (a planted
    FIFO hangs the writer)."""
    seen: dict[object, str] = {}
    # Per input, the folder a link may be planted in, as typed and as it resolves, and whether
    # the input is that folder (then any output through a link there, and any existing file
    # in it, is refused; beside a file, only an output that exists).
    places: list[tuple[Path, Path, str, bool]] = []
    for name in INPUTS:
        value = getattr(args, name, None)
        if name == "cache" and isinstance(value, str):  # its default, ~ or a sqlite:/// URL
            value = cache_file(value)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, Path)) and Path(item).exists():
                for key in identities(Path(item)):
                    seen.setdefault(key, f"the input {item}")
                folder = Path(item).is_dir()
                root = Path(os.path.abspath(item)) if folder else \
                    Path(os.path.abspath(item)).parent
                places.append((root, root.resolve(), str(item), folder))
    for name in OUTPUTS:
        value = getattr(args, name, None)
        if not isinstance(value, (str, Path)):
            continue
        path, flag = Path(value), "-o" if name == "output" else "--" + name.replace("_", "-")
        where = _resolved(path, value, flag)
        if not where.parent.is_dir():
            raise UserError(f"{value}: {flag}'s folder does not exist")
        if name == "output" and path.is_dir():  # (repair --out may be an adapter folder)
            raise UserError(f"{value}: {flag} is a folder, not a file")
        if path.exists() and not path.is_file() and not path.is_dir():
            raise UserError(f"{value}: {flag} is not a regular file (a FIFO, a socket or a "
                            "device); name a new file")
        keys = identities(path)
        for key in keys:
            if key in seen:
                raise UserError(f"{value}: {flag} would overwrite {seen[key]}")
        typed = Path(os.path.abspath(value))
        for root, real, item, folder in places:
            if (folder or path.exists()) and typed.parent.is_relative_to(root) and \
                    where.parent != real / typed.parent.relative_to(root):
                raise UserError(f"{value}: {flag} goes through a link beside or inside the "
                                f"input {item}; name a path without links")
        for root, real, item, folder in places:
            if folder and path.is_file() and (where.is_relative_to(real) or
                                              _linked_from(root, keys)):
                raise UserError(f"{value}: {flag} would overwrite a file of the input "
                                f"{item}; name a new file or one outside it")
        if path.is_symlink() or path.is_file() and path.stat().st_nlink > 1:
            raise UserError(f"{value}: {flag} is a link to another file (symbolic or hard); "
                            "name a new file")
        for key in keys:
            seen[key] = f"{flag} {value}"


def _linked_from(folder: Path, keys) -> bool:
    """Does a link to a file inside `folder` lead to the file of `keys` (it is scanned)?"""
    for top, _, files in os.walk(folder):
        for name in files:
            link = Path(top, name)
            try:
                if link.is_symlink() and set(identities(link)) & set(keys):
                    return True
            except (OSError, RuntimeError):  # a loop of links leads nowhere
                continue
    return False


def _resolved(path: Path, value, flag: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links (RuntimeError before 3.13)
        raise UserError(f"{value}: {flag} cannot be followed to a place ({exc})") from None


def emit_failure(args: argparse.Namespace, message: str) -> None:
    """A machine-readable report asked for (-f json|sarif -o FILE) is written on failure too,
    holding the error: a pipeline reads why the job could not be done."""
    output, form = getattr(args, "output", None), getattr(args, "format", "text")
    if output is None or form not in ("json", "sarif") or output.exists() and \
            not output.is_file():
        return
    inputs = [getattr(args, name, None)
              for name in ("paths", "model", "old", "new", "path", "data")]
    targets = tuple(str(p) for value in inputs if value
                    for p in (value if isinstance(value, list) else [value]))
    report = Report(command=args.command, targets=targets,
                    errors=(ScanError(targets[0] if targets else "", message),))
    try:
        emit(report, form, output, Severity.LOW)
    except UserError:
        pass  # already said: the output cannot be written


def write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None


def seed(text: str) -> int:
    """An argparse type: a seed, a whole number from 0 to 2**32 - 1 (what every library the
    commands seed takes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2**32 - 1, not {value}")
    return value


def add_time_limit(parser) -> None:
    from ..jobs.child import TIME_LIMIT

    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT, metavar="SECONDS",
                        help=f"stop the work on the model after this long (default "
                             f"{TIME_LIMIT:.0f}: a model file may loop forever)")
