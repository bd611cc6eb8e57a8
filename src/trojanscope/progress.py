"""Progress bars for long steps, on stderr. Off unless the command line turns them on (text
output to a terminal): library calls, JSON and SARIF runs and pipes stay quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_enabled = False


def enable(on: bool) -> None:
    global _enabled
    _enabled = bool(on) and sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if not _enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total,
                          console=Console(stderr=True), transient=True)
