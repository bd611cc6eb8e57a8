"""Whether two names are one file: the same resolved path, or two links of one existing file
(the same device and inode: a hard link resolves to another path); and where trojanscope's
caches lie (no numpy here: `scan` needs none)."""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_DATABASE = "scan-results.sqlite"  # the scan result cache's default file, in cache_dir


def identities(path: Path) -> list:
    """The resolved path, and for an existing file its (device, inode)."""
    keys: list = [Path(path).resolve()]
    try:
        status = Path(path).stat()
        keys.append((status.st_dev, status.st_ino))
    except OSError:
        pass
    return keys


def same_file(a: Path, b: Path) -> bool:
    return bool(set(identities(a)) & set(identities(b)))


def cache_dir() -> Path:
    """$TROJANSCOPE_CACHE, else ~/.cache/trojanscope."""
    found = os.environ.get("TROJANSCOPE_CACHE")
    return Path(found) if found else Path.home() / ".cache" / "trojanscope"


def cache_file(value: str | Path) -> Path | None:
    """The file a `--cache` value names: its default ("local"), a path (with ~), or a
    sqlite:/// URL; None for a database server's URL."""
    text = str(value)
    if text == "local":
        return cache_dir() / RESULTS_DATABASE
    if text.startswith("sqlite:///"):
        rest = text[len("sqlite:///"):].split("?")[0]
        return Path(rest) if rest and not rest.startswith(":memory:") else None
    return None if "://" in text else Path(text).expanduser()
