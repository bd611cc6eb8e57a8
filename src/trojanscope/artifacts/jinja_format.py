"""Chat templates kept as their own file (`chat_template.jinja`, which transformers reads beside
tokenizer_config.json and renders for every conversation): the same checks as a template inside
a tokenizer config or a GGUF. Tried last, so a text that another format claims (a protocol-0
pickle) is never taken for a template."""

from __future__ import annotations

import re

from ..findings import Location
from .context import LIMIT_EXCEEDED
from .jinja_template import check_template
from .registry import FormatHandler, format_handler

MAX_TEMPLATE = 64 * 1024 * 1024
DELIMITERS = (b"{%", b"{{", b"{#")
# what a chat template renders: the conversation, or the tokens around it
CHAT_NAMES = re.compile(r"\b(messages|add_generation_prompt|bos_token|eos_token)\b")


@format_handler
class JinjaHandler(FormatHandler):
    name = "jinja"
    priority = 99

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return any(mark in head for mark in DELIMITERS)  # a NUL may sit in a {# comment #}

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        raw = source.read(MAX_TEMPLATE + 1)
        if len(raw) > MAX_TEMPLATE and _text(raw[:1 << 16]):  # a loader would render it whole
            ctx.add(LIMIT_EXCEEDED.finding(
                f"a Jinja template over {MAX_TEMPLATE // 2**20} MiB was not examined",
                location, {"limit": "template_bytes"}))
            return
        if len(raw) > MAX_TEMPLATE:
            return  # binary (a big pickle with braces in its head): not a template
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return  # not a text a loader renders
        if CHAT_NAMES.search(text):  # a Jinja file that is not a chat template is no concern
            for finding in check_template(text, location, "chat_template"):
                ctx.add(finding)


def _text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the end
    return True
