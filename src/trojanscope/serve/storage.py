"""Uploaded bytes, stored once under their SHA-256: `blobs/ab/abcdef...`. An upload is written
to a temporary file in the same folder while it is hashed and counted (upload.py), then moved
into place atomically. The name a user gave a file is never part of a path."""

from __future__ import annotations

import os
from pathlib import Path


class TooLarge(ValueError):
    """The upload passed the size limit."""


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root).resolve() / "blobs"  # absolute: workers change folder
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def keep(self, temporary: Path, sha256: str) -> str:
        """Move a finished temporary file (in this store's folder) to its place."""
        final = self.path(sha256)
        final.parent.mkdir(exist_ok=True)
        if not final.exists():
            os.replace(temporary, final)  # atomic: a reader never sees half a blob
        return sha256
