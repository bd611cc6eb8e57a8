"""Format handlers: a class per format, registered with @format_handler in a module of this
package named *_format (imported when the registry is first read, so a new format is a new
module). Formats are recognised by content only."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..plugins import Registry

if TYPE_CHECKING:
    from ..findings import Location
    from .context import ScanContext
    from .source import Source

FORMATS: Registry[type[FormatHandler]] = Registry("format", __package__, suffix="_format")


class FormatHandler:
    """One format: `sniff` looks at a stream's first bytes, `scan` examines the whole stream."""

    name: ClassVar[str]
    # Lower runs first: exact magic numbers before the weak pickle heuristics.
    priority: ClassVar[int] = 50
    # Holds a model (weights, a graph, a serialised estimator), not only wraps other streams:
    # the CycloneDX output calls such a file a machine-learning-model.
    holds_model: ClassVar[bool] = False

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        """`complete` is True when `head` is the whole stream."""
        raise NotImplementedError

    @classmethod
    def scan(cls, ctx: ScanContext, source: Source, location: Location, depth: int) -> None:
        raise NotImplementedError


def format_handler(cls: type[FormatHandler]) -> type[FormatHandler]:
    """Class decorator: register a format handler under its `name`."""
    FORMATS.register(cls.name, priority=cls.priority)(cls)
    _ordered.clear()
    return cls


_ordered: list[type[FormatHandler]] = []


def handlers() -> list[type[FormatHandler]]:
    """Every format handler, in the order they are tried (priority, then name)."""
    if not _ordered:
        _ordered.extend(sorted(FORMATS.values(), key=lambda h: (h.priority, h.name)))
    return _ordered


def model_formats() -> set[str]:
    return {h.name for h in handlers() if h.holds_model}


def detect(head: bytes, complete: bool) -> type[FormatHandler] | None:
    for handler in handlers():
        if handler.sniff(head, complete):
            return handler
    return None


# Formats marked by so little that a stream may pass several of their tests at once (a zlib
# stream whose first byte reads as a pickle opcode, a chat template that opens with "N.", a
# pickle's NONE and STOP): each that claims a stream examines it.
WEAK = {"pickle", "zlib", "lzma", "jinja"}


def weak_rivals(first: type[FormatHandler], head: bytes, complete: bool) -> list:
    """The other weakly marked formats that also claim a stream `first` claimed. Whatever
    `first` is, pickle is among them when an unpickler would get anywhere with the stream:
    `pickle.load` and `torch.load` read any file from its first byte, and a pickle whose
    opening opcodes swallow another format's magic number (BINFLOAT takes TFLite's "TFL3" as
    its argument) runs under them while the other format's reader sees only its own (a red
    team's polyglot)."""
    weak = first.name in WEAK
    return [h for h in handlers() if h is not first and h.name in WEAK and
            (weak or h.name == "pickle") and h.sniff(head, complete)]
