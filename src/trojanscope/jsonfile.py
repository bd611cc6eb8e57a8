"""Reading a JSON file the user gave (a configuration, a report, a scorer): its value, or a
ValueError naming the file and what is wrong with it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

LIMIT = 64 * 2 ** 20  # bytes: a redteam report is about 150 KB, a scorer under 1 KB


def read_json(path: str | Path):
    """Only a regular file of at most LIMIT bytes is read (not /dev/zero, not a FIFO)."""
    try:
        regular = stat.S_ISREG(Path(path).stat().st_mode)  # before opening: a FIFO would block
        if regular:
            with open(path, "rb") as handle:
                raw = handle.read(LIMIT + 1)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
    if not regular:
        raise ValueError(f"{path}: not a regular file")
    if len(raw) > LIMIT:
        raise ValueError(f"{path}: larger than {LIMIT // 2 ** 20} MiB, not a report or a "
                         "configuration")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSON syntax, UTF-8, 4,300-digit integers
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
