"""Renderers: each turns a Report into text for one audience. Only render/ and cli.py print."""

from .json import render_json
from .sarif import render_sarif
from .text import render_text

__all__ = ["render_json", "render_sarif", "render_text"]
