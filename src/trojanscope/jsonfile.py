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
        if not stat.S_ISREG(Path(path).stat().st_mode):  # before opening: a FIFO would block
            raise ValueError(f"{path}: not a regular file")
        with open(path, "rb") as handle:
            raw = handle.read(LIMIT + 1)
        if len(raw) > LIMIT:
            raise ValueError(f"{path}: larger than {LIMIT // 2 ** 20} MiB, not a report or a "
                             "configuration")
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # also JSON syntax, UTF-8 and 4,300-digit integer errors
        raise ValueError(exc if str(exc).startswith(f"{path}:") else
                         f"{path}: not a readable JSON file ({exc})") from None
    except (OSError, RecursionError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
