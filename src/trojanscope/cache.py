"""trojanscope's cache of derived arrays: $TROJANSCOPE_CACHE, else ~/.cache/trojanscope.

Only plain numeric arrays are kept (numpy's format, read back with allow_pickle=False), under
a key that hashes everything they were computed from; a damaged or unreadable entry is computed
again. Writes go to a temporary file first, so that a stopped run leaves no half entry."""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from .paths import cache_dir


def key(*parts) -> str:
    """A hex digest of `parts`: arrays by dtype, shape and bytes, anything else by repr."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def load(name: str) -> np.ndarray | None:
    path = cache_dir() / f"{name}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def store(name: str, array: np.ndarray) -> None:
    """Best effort: a cache that cannot be written is no error."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as out:
            np.save(out, np.asarray(array), allow_pickle=False)
        os.replace(out.name, folder / f"{name}.npy")
    except OSError:
        pass
