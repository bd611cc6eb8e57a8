"""Renderers: each turns a Report into text for one audience. Only render/ and cli/ print.

A renderer is a module of this package named after its format, holding one function
registered with @renderer: a new output format is a new module. A module is imported when its
format is asked for (JSON output does not pay for rich's import); `names()` lists the formats
without importing any.
"""

from __future__ import annotations

import importlib
import math
import os
from typing import Callable, Mapping, NamedTuple

from ..findings import Report, Severity
from ..plugins import Registry


class RenderOptions(NamedTuple):  # NamedTuple, not a dataclass: the command line's start-up
    min_severity: Severity = Severity.LOW  # text: the lowest severity listed
    color: bool = False  # text: for a terminal
    # html: caption -> PNG bytes (recovered triggers, the most suspicious samples)
    images: Mapping[str, bytes] = {}
    gallery: str = "Images"  # html: the images' heading


Renderer = Callable[[Report, RenderOptions], str]
# Filled as the modules are imported, one when its format is asked for (`get`); `names()` lists
# them all without importing any.
RENDERERS: Registry[Renderer] = Registry("output format")


def renderer(name: str, summary: str):
    """Register the decorated `function(report, options) -> str` as format `name` (the name
    of its module)."""
    return RENDERERS.register(name, summary=summary)


def names() -> list[str]:
    """Every format, text first (the default), without importing the renderers."""
    found = sorted(name[:-3] for name in os.listdir(os.path.dirname(__file__))
                   if name.endswith(".py") and not name.startswith("_"))
    return sorted(found, key=lambda name: name != "text")


def get(name: str) -> Renderer:
    if name not in RENDERERS:
        if name not in names():
            raise ValueError(f"no output format {name!r}: one of {', '.join(names())}")
        importlib.import_module(f"{__name__}.{name}")
    return RENDERERS[name]


# Characters that steer a terminal or reorder what it shows: C0 and C1 controls (ESC starts
# colour, title and hyperlink sequences; CR overwrites a line, LF starts a forged one) and
# the bidirectional overrides of "Trojan Source" (CVE-2021-42574). File and archive-member
# names, pickle globals and signers' names are the attacker's, and reach the terminal in
# findings and errors.
_STEERING = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_STEERING.update({c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                              0x200E, 0x200F, 0x061C)})


def printable(text: str) -> str:
    """`text` with every character that steers a terminal written as its escape (\\x1b,
    \\u202e): what a terminal shows is what the text says. A newline too: a file named
    "m.pkl\\nscan: no findings" would forge a line of the report (a red team's)."""
    return text.translate(_STEERING)


def json_safe(value):
    """`value` with every NaN and infinity made None, in dicts, lists and tuples at any depth.
    JSON has neither: Python writes a bare NaN that JavaScript's, Go's and GitHub's readers
    reject with the whole report, and a model file's config may hold one (a red team's)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def render(report: Report, name: str, options: RenderOptions | None = None) -> str:
    return get(name)(report, options or RenderOptions())


def __getattr__(name: str):  # render_text and the like, imported on first use
    if name.startswith("render_") and name[7:] in names():
        return getattr(importlib.import_module(f"{__name__}.{name[7:]}"), name)
    raise AttributeError(name)
