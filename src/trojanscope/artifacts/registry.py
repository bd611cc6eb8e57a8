"""Format handlers register themselves by subclassing; formats are recognised by content only."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..findings import Location
    from .context import ScanContext
    from .source import Source

HANDLERS: list[type[FormatHandler]] = []


class FormatHandler:
    """One format: `sniff` looks at a stream's first bytes, `scan` examines the whole stream."""

    name: ClassVar[str]
    # Lower runs first: exact magic numbers before the weak pickle heuristics.
    priority: ClassVar[int] = 50

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        HANDLERS.append(cls)
        HANDLERS.sort(key=lambda h: (h.priority, h.name))

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        """`complete` is True when `head` is the whole stream."""
        raise NotImplementedError

    @classmethod
    def scan(cls, ctx: ScanContext, source: Source, location: Location, depth: int) -> None:
        raise NotImplementedError


def detect(head: bytes, complete: bool) -> type[FormatHandler] | None:
    for handler in HANDLERS:
        if handler.sniff(head, complete):
            return handler
    return None


# Formats marked by so little that a stream may pass several of their tests at once (a zlib
# stream whose first byte reads as a pickle opcode): each that claims a stream examines it.
WEAK = {"pickle", "zlib", "lzma"}


def weak_rivals(first: type[FormatHandler], head: bytes, complete: bool) -> list:
    """The other weakly marked formats that also claim a stream `first` claimed."""
    if first.name not in WEAK:
        return []
    return [h for h in HANDLERS if h is not first and h.name in WEAK and h.sniff(head, complete)]
