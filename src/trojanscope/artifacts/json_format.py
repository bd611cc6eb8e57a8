"""JSON configuration files that loaders act on: Keras model configs (config.json inside a
.keras archive, model.to_json() files), tokenizer configs with a Jinja chat template, and the
index of a sharded checkpoint (`*.index.json`: which files transformers loads the weights
from)."""

from __future__ import annotations

import codecs
import json
import re

from ..findings import Location, Rule, Severity
from .context import LIMIT_EXCEEDED
from .jinja_template import check_template
from .keras_config import check_keras_config
from .registry import FormatHandler, format_handler

MAX_JSON = 64 * 1024 * 1024

REMOTE_CODE = Rule("huggingface.remote-code", Severity.HIGH,
                   "The config names Python code that transformers imports and runs when the "
                   "model is loaded with trust_remote_code=True (auto_map, custom pipelines)",
                   "Read the named Python files before loading with trust_remote_code=True, "
                   "or load without it; code from another repository (\"repo--module\") is "
                   "fetched at load time and cannot be reviewed here.")
CODE_KEYS = ("auto_map", "custom_pipelines")
SHARD_OUTSIDE = Rule("huggingface.shard-outside", Severity.HIGH,
                     "The checkpoint's index names a weight file outside the model's folder "
                     "(an absolute path or one through '..'): transformers joins the name to "
                     "the folder and loads that file, which a scan of the folder does not read",
                     "Do not load the model: a shard from elsewhere on the machine can be a "
                     "pickle that runs code. Scan the named file too, or ask the publisher "
                     "for an index that names only files of the folder.")
_OUTSIDE = re.compile(r"^(?:[/\\]|[A-Za-z]:)|(?:^|[/\\])\.\.(?:[/\\]|$)")


@format_handler
class JsonHandler(FormatHandler):
    name = "json"
    priority = 80

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        # A key may be spelt with escapes ("auto\u005fmap" is auto_map to json.loads): a JSON
        # object with any escape is parsed and judged by its decoded keys.
        if text[:1] != b"{" or text[1:].lstrip(b" \t\r\n")[:1] not in (b'"', b"}"):
            return False  # a JSON object opens with a key (a marshal dict's "{" does not)
        return (b'"class_name"' in head or b'"chat_template"' in head or
                b'"auto_map"' in head or b'"custom_pipelines"' in head or
                b'"weight_map"' in head or
                b"\\u" in head or not complete)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        raw = source.read(MAX_JSON + 1)
        if len(raw) > MAX_JSON:  # a loader would still read it whole: unexamined is unsafe
            ctx.add(LIMIT_EXCEEDED.finding(
                f"a JSON document over {MAX_JSON // 2**20} MiB was not examined", location,
                {"limit": "json_bytes"}))
            return
        try:
            document = json.loads(raw.removeprefix(codecs.BOM_UTF8).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return  # not JSON after all: nothing a model loader would act on
        check_document(ctx, document, location)


def check_document(ctx, document: object, location: Location) -> None:
    if not isinstance(document, dict):
        return
    if "class_name" in document:
        for finding in check_keras_config(document, location, ctx.policy):
            ctx.add(finding)
    for key in CODE_KEYS:
        code = sorted(_code_references(document.get(key)))
        if code:
            ctx.add(REMOTE_CODE.finding(
                f"{key} runs {', '.join(code[:6])} under trust_remote_code", location,
                {"key": key, "code": code}))
    shards = document.get("weight_map")
    if isinstance(shards, dict):
        outside = sorted({name for name in shards.values()
                          if isinstance(name, str) and _OUTSIDE.search(name)})
        if outside:
            ctx.add(SHARD_OUTSIDE.finding(
                f"weight_map names {len(outside)} file(s) outside the folder: "
                f"{', '.join(map(repr, outside[:4]))}", location, {"shards": outside[:50]}))
    templates = document.get("chat_template")
    if isinstance(templates, str):
        templates = [{"name": "default", "template": templates}]
    elif isinstance(templates, dict):  # transformers keeps {name: template} as it is
        templates = [{"name": name, "template": text} for name, text in templates.items()]
    if isinstance(templates, list):
        for entry in templates:
            if isinstance(entry, dict) and isinstance(entry.get("template"), str):
                key = f"chat_template.{entry.get('name', '?')}"
                for finding in check_template(entry["template"], location, key):
                    ctx.add(finding)


def _code_references(value: object, depth: int = 0) -> set[str]:
    """The Python modules an auto_map (or custom_pipelines) entry names: "modeling_x.Model" is
    modeling_x.py beside the config; "org/repo--modeling_x.Model" is code in another repo."""
    found: set[str] = set()
    if depth > 8:
        return found
    if isinstance(value, str) and "." in value:
        repo, _, reference = value.rpartition("--")
        module = reference.rsplit(".", 1)[0]
        found.add(f"{repo}:{module}.py" if repo else f"{module}.py")
    elif isinstance(value, dict):
        for item in value.values():
            found |= _code_references(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            found |= _code_references(item, depth + 1)
    return found
