"""Whether two names are one file: the same resolved path, or two links of one existing file
(the same device and inode: a hard link resolves to another path)."""

from __future__ import annotations

from pathlib import Path


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
