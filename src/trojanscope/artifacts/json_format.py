"""JSON configuration files that loaders act on: Keras model configs (config.json inside a
.keras archive, model.to_json() files) and tokenizer configs with a Jinja chat template."""

from __future__ import annotations

import json

from ..findings import Location
from .jinja_template import check_template
from .keras_config import check_keras_config
from .registry import FormatHandler

MAX_JSON = 64 * 1024 * 1024


class JsonHandler(FormatHandler):
    name = "json"
    priority = 80

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        return text[:1] == b"{" and (b'"class_name"' in head or b'"chat_template"' in head or
                                     not complete)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        raw = source.read(MAX_JSON + 1)
        if len(raw) > MAX_JSON:
            return  # larger JSON is data, not a model config
        try:
            document = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return  # not JSON after all: nothing a model loader would act on
        check_document(ctx, document, location)


def check_document(ctx, document: object, location: Location) -> None:
    if not isinstance(document, dict):
        return
    if "class_name" in document:
        for finding in check_keras_config(document, location, ctx.policy):
            ctx.add(finding)
    templates = document.get("chat_template")
    if isinstance(templates, str):
        templates = [{"name": "default", "template": templates}]
    if isinstance(templates, list):
        for entry in templates:
            if isinstance(entry, dict) and isinstance(entry.get("template"), str):
                key = f"chat_template.{entry.get('name', '?')}"
                for finding in check_template(entry["template"], location, key):
                    ctx.add(finding)
