"""Chat templates kept as their own file (`chat_template.jinja`, which transformers reads beside
tokenizer_config.json and renders for every conversation): the same checks as a template inside
a tokenizer config or a GGUF. Recognised by its braces and the names a chat template renders
(tried last, and beside a pickle that claims the same bytes), or by a name ending in .jinja
(the scanner's call) however it begins; another text with braces is judged only if it parses
as Jinja (source code and text corpora do not)."""

from __future__ import annotations

import codecs
import re

from ..findings import Location
from .context import LIMIT_EXCEEDED
from .jinja_template import check_template, jinja_environment
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
            text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
        except UnicodeDecodeError:
            return  # not a text a loader renders
        if not CHAT_NAMES.search(text):  # a Jinja file that is not a chat template
            return
        if not location.path.lower().endswith(".jinja") and not parses(text):
            return  # source code or a text corpus with braces: no loader renders it
        for finding in check_template(text, location, "chat_template"):
            ctx.add(finding)


def parses(text: str) -> bool:
    """Does the text parse as a template transformers would render?"""
    import jinja2

    try:
        jinja_environment().parse(text)
    except (jinja2.TemplateSyntaxError, RecursionError):
        return False
    return True


def _text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the end
    return True
