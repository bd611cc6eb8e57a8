"""Renderers: each turns a Report into text for one audience. Only render/ and cli.py print."""

from .json import render_json
from .sarif import render_sarif
from .text import render_text

RENDERERS = {"text": render_text, "json": render_json, "sarif": render_sarif}

__all__ = ["RENDERERS", "render_json", "render_sarif", "render_text"]
