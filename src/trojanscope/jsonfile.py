"""Reading a JSON file the user gave (a configuration, a report, a scorer): its value, or a
ValueError naming the file and what is wrong with it."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: str | Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
