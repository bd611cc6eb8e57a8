"""Where a signature lives. Standard library only and nothing else, so that scan can look for
signatures without importing the signing code."""

from __future__ import annotations

from pathlib import Path

SIGNATURE_NAME = "model.sig"


def default_signature(root: Path) -> Path:
    """A folder's signature lives inside it as model.sig; a file's beside it as FILE.sig."""
    return root / SIGNATURE_NAME if root.is_dir() else root.with_name(root.name + ".sig")
