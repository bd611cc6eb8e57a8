"""Renderers: each turns a Report into text for one audience. Only render/ and cli.py print.

Imported lazily, so that JSON output does not pay for rich's import.
"""

from __future__ import annotations

__all__ = ["FORMATS", "render_html", "render_json", "render_sarif", "render_text"]
FORMATS = ["text", "json", "sarif", "html"]  # html: one self-contained page


def __getattr__(name: str):
    if name == "render_json":
        from .json import render_json
        return render_json
    if name == "render_sarif":
        from .sarif import render_sarif
        return render_sarif
    if name == "render_html":
        from .html import render_html
        return render_html
    if name == "render_text":
        from .text import render_text
        return render_text
    raise AttributeError(name)
