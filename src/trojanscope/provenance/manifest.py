"""The manifest of a model: every file under a path with its SHA-256, as the OpenSSF model
signing format's "files" serialization records it.

A file signed on its own is recorded under the name "."; a folder's files under their POSIX
paths relative to the folder, ordered by path components. Files are streamed in fixed-size
chunks (bounded memory whatever their size) and hashed several at a time (hashlib releases the
GIL on large updates, so threads run in parallel).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from .paths import SIGNATURE_NAME

CHUNK = 1 << 20
# Never part of a model: version-control files, and the signature itself.
DEFAULT_IGNORED = (".gitignore", ".gitattributes", ".git", SIGNATURE_NAME, ".github")


class ManifestError(ValueError):
    """A path that cannot be hashed (missing, a symbolic link, unreadable); names the path."""


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
    return digest.hexdigest()


def model_files(root: Path, ignored: tuple[str, ...] = DEFAULT_IGNORED,
                links: list[str] | None = None) -> dict[str, Path]:
    """name -> path of every file to record; symbolic links are refused, not followed (a link
    could point the signature at a file outside the model), or, given `links`, listed there."""
    if root.is_symlink():
        raise ManifestError(f"{root}: a symbolic link; sign what it points to")
    if root.is_file():
        return {".": root}
    if not root.is_dir():
        raise ManifestError(f"{root}: no such file or folder")
    skip = {PurePosixPath(p) for p in ignored}
    files: dict[str, Path] = {}
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        relative = PurePosixPath(here.relative_to(root).as_posix())
        subfolders[:] = sorted(d for d in subfolders if not _skipped(relative / d, skip))
        for name in names + [d for d in subfolders if (here / d).is_symlink()]:
            path = here / name
            if _skipped(relative / name, skip):
                continue
            if path.is_symlink():
                if links is None:
                    raise ManifestError(f"{path}: a symbolic link; models are signed without "
                                        "links")
                links.append(str(relative / name).removeprefix("./"))
            elif not path.is_file():  # opening a FIFO would wait for a writer for ever
                raise ManifestError(f"{path}: not a regular file (a FIFO, socket or device); "
                                    "models are signed as regular files")
            else:
                files[str(relative / name).removeprefix("./")] = path
    return files


def hash_files(files: dict[str, Path], workers: int | None = None) -> dict[str, str]:
    """name -> hex SHA-256, in canonical order (by path components)."""
    names = sorted(files, key=lambda n: PurePosixPath(n).parts)
    workers = workers or min(8, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            digests = list(pool.map(lambda n: sha256_file(files[n]), names))
    except OSError as exc:
        raise ManifestError(f"{exc.filename}: cannot read: {exc.strerror}") from None
    return dict(zip(names, digests))


def manifest(root: Path, ignored: tuple[str, ...] = DEFAULT_IGNORED,
             workers: int | None = None) -> dict[str, str]:
    return hash_files(model_files(Path(root), ignored), workers)


def _skipped(relative: PurePosixPath, skip: set[PurePosixPath]) -> bool:
    return any(relative == s or s in relative.parents for s in skip)
