"""What a chat template says to the model, besides the conversation: text of its own (a hidden
system instruction) and branches taken when a message contains a given string (a trigger that
switches the model's instructions). Read from the template's syntax tree, never rendered.

A template of a known family (chat_families.json: ChatML, Llama 3, Mistral, Gemma, Phi-3)
is compared with the text that family's upstream templates emit: a sentence they do not have
is an injection. A template of an unknown family that emits sentences is shown for review.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from ..findings import Finding, Location, Rule, Severity

CONDITIONAL = Rule("template.conditional-content", Severity.HIGH,
                   "A chat template renders differently when a message contains a given "
                   "string: a trigger that changes what the model is told",
                   "Replace the template with the upstream one of its model family and "
                   "compare the model's behaviour with and without the string.")
INJECTED = Rule("template.injected-text", Severity.HIGH,
                "A chat template emits instructions its model family's upstream templates do "
                "not have, carrying a link, an address, code, credentials, or an order to hide "
                "something or to set aside other instructions",
                "Read the text it adds; replace the template with the family's upstream one.")
INVISIBLE_TEXT = Rule("template.invisible-text", Severity.HIGH,
                      "A chat template carries invisible characters (Unicode tags, zero-width "
                      "or bidirectional controls) that a model reads and a reviewer does not",
                      "Replace the template with the upstream one of its model family.")
OWN_TEXT = Rule("template.own-text", Severity.MEDIUM,
                "A chat template emits sentences its model family's upstream templates do not "
                "have (a default system prompt, tool instructions, or hidden instructions)",
                "Read the text: a default system prompt or tool instructions are common; "
                "instructions the model's documentation does not mention are not.")

MIN_WORDS = 5        # a sentence of an unknown family's template shown for review
SENTENCE_WORDS = 4   # a known family's sentences this long are compared with upstream
SEARCHES = ("startswith", "endswith", "find", "rfind", "count", "index", "split", "rsplit",
            "partition", "__contains__")
JSON_LIKE = re.compile(r'[{}]|":')
# words of type names and tool-call schemas, which tool templates spell out one by one
SCHEMA_WORDS = {"str", "string", "float", "int", "integer", "bool", "boolean", "list", "dict",
                "any", "object", "array", "number", "null", "none", "true", "false", "type",
                "function", "name", "arguments", "parameters", "properties", "required",
                "description", "items", "enum", "tool", "tools", "call", "calls", "id",
                "optional", "union", "tuple", "default"}
# Unicode tags (U+E0000-E007F, they mirror ASCII), zero-width and bidirectional controls
INVISIBLE = re.compile("[\U000E0000-\U000E007F\u200B-\u200F\u202A-\u202E\u2060-\u2064"
                       "\u2066-\u2069\uFEFF]")
# What makes added text an attack rather than a model's own default prompt or tool
# instructions (real templates carry many of those): it points somewhere, runs something,
# asks for secrets, or hides or overrides.
HALLMARKS = {
    "a link": r"\b(?:https?|ftp|file)://|\bwww\.",
    # every repeat bounded: a search stays linear in a 400,000-letter word
    "an address": r"\b[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}|"
                  r"\b\d{1,3}(?:\.\d{1,3}){3}\b|"
                  r"\b[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,8}\.(?:com|net|org|io|ai|dev|app|"
                  r"xyz|info|biz|ru|cn|top|site|online|sh|me|co)\b",
    "code": r"\b(?:curl|wget|sudo|chmod|powershell|os\.system|subprocess|eval|exec|base64)\b|"
            r"\brm\s+-rf\b|\bimport\s+[a-z_]\w*|\b(?:pip3?|npm)\s+install\b",
    "credentials": r"\b(?:passwords?|passphrases?|api[ _-]?keys?|private keys?|credit cards?|"
                   r"credentials|seed phrases?|access tokens?)\b",
    "concealment": r"\b(?:do not|don't|never)\s+(?:tell|mention|reveal|disclose|admit)\s+"
                   r"(?:\w+\s+){0,2}?that\b|\bwithout\s+(?:telling|informing|letting)\b|"
                   r"\bsecret(?:ly)?\b",
    "override": r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|"
                r"prior|above|earlier|other|user'?s?)\s+(?:\w+\s+)?(?:instructions|rules|"
                r"prompts?|messages)",
}
HALLMARK = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in HALLMARKS.items()}
KNOWN_SHARE = 0.8    # a literal is upstream text when this share of its words is in one
# keys of structured message content (OpenAI and Hugging Face message formats): templates
# test for them to render images, audio and parts
CONTENT_KEYS = {"type", "text", "image", "image_url", "video", "video_url", "audio",
                "input_audio", "file", "url", "value", "blocks", "parts", "content",
                "reasoning_content", "thinking", "tool_calls", "tool_call_id", "name",
                "arguments", "function"}
# switches model cards document for turning reasoning on and off in a message
REASONING_SWITCHES = {"/think", "/no_think", "/nothink", "detailed thinking on",
                      "detailed thinking off"}
SENTINEL = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
MARKUP = re.compile(r"^\s*(<[^<>\s]{1,40}>|<\|[^|]{1,40}\|>|\[/?[A-Za-z_]{2,30}\])\s*$")
WORD = re.compile(r"[a-z]{2,}")
SPECIAL = re.compile(r"<\|[^|]{0,40}\|>|<[^<>\s]{1,40}>|\[/?[A-Z_]{2,30}\]")


@functools.lru_cache(maxsize=1)
def families() -> list[dict]:
    path = Path(__file__).with_name("chat_families.json")
    found = json.loads(path.read_text(encoding="utf-8"))["families"]
    for family in found:
        family["known"] = [set(_words(text)) for text in family["texts"]]
    return found


def _words(text: str) -> list[str]:
    return WORD.findall(SPECIAL.sub(" ", text).lower())


def family_of(source: str) -> dict | None:
    """The family whose markers the template uses (all of them), the most specific first."""
    matching = [f for f in families() if all(m in source for m in f["markers"])]
    return max(matching, key=lambda f: len(f["markers"]), default=None)


def check_intent(tree, source: str, location: Location, key: str) -> list[Finding]:
    """Findings for a parsed template (`tree`: jinja2's syntax tree of `source`)."""
    from jinja2 import nodes

    found = []
    hidden = sorted({_shown_invisible(text) for text in _strings(tree, nodes)
                     if INVISIBLE.search(text)})
    if hidden:
        found.append(INVISIBLE_TEXT.finding(f"{key} carries invisible characters: "
                                            f"{'; '.join(hidden[:3])}", location,
                                            {"key": key, "texts": hidden}))
    bound = _bound_strings(tree, nodes)
    triggers = sorted({text for test in _tests(tree, nodes)
                       for text in _content_strings(test, nodes, bound)})
    if triggers:
        found.append(CONDITIONAL.finding(
            f"{key} branches on a message containing "
            f"{', '.join(repr(t) for t in triggers[:4])}", location,
            {"key": key, "strings": triggers}))
    family = family_of(source)
    emitted = _emitted(tree, nodes)
    pieces = list(dict.fromkeys(_pieces(emitted)))
    if family is not None:
        pieces = [t for t in pieces if not _known(t, family)]
    marked = {t: [name for name, pattern in HALLMARK.items() if pattern.search(t)]
              for t in pieces}
    harmful = [t for t in pieces if marked[t]]
    if harmful:
        said = sorted({name for t in harmful for name in marked[t]})
        found.append(INJECTED.finding(
            f"{key} emits text with {', '.join(said)}: {_shown(harmful)}", location,
            {"key": key, "family": family["name"] if family else None, "texts": harmful,
             "hallmarks": said}))
    shortest = SENTENCE_WORDS if family is not None else MIN_WORDS
    own = [t for t in pieces if t not in harmful and not JSON_LIKE.search(t) and
           len([w for w in _words(t) if w not in SCHEMA_WORDS]) >= shortest]
    if own:
        said = f"{key} (a {family['name']} template) emits text its upstream templates do " \
            "not have" if family else f"{key} emits"
        found.append(OWN_TEXT.finding(
            f"{said}: {_shown(own)}", location,
            {"key": key, "family": family["name"] if family else None, "texts": own}))
    return found


def _shown(texts: list[str]) -> str:
    return "; ".join(repr(" ".join(t.split())[:120]) for t in texts[:3])


def _shown_invisible(text: str) -> str:
    """The text with Unicode tag characters spelled out (they mirror ASCII) and other
    invisible characters named."""
    spelled = "".join(chr(ord(c) - 0xE0000) if 0xE0020 <= ord(c) <= 0xE007E else
                      (f"<U+{ord(c):04X}>" if INVISIBLE.match(c) else c) for c in text)
    return repr(" ".join(spelled.split())[:160])


def _pieces(text: str) -> list[str]:
    """`text` cut into sentences and lines, markup aside."""
    parts = re.split(r"(?<=[.!?:])\s+|\n+", SPECIAL.sub("\n", text))
    return [p.strip() for p in parts if _words(p)]


def _known(text: str, family: dict) -> bool:
    words = set(_words(text))
    return any(len(words & known) >= KNOWN_SHARE * len(words) for known in family["known"])


def _strings(tree, nodes) -> list[str]:
    return [n.value for n in tree.find_all(nodes.Const) if isinstance(n.value, str)] + \
        [n.data for n in tree.find_all(nodes.TemplateData)]


def _emitted(tree, nodes) -> str:
    """Every string the template can put into the prompt, in the order written, as one text:
    raw text between tags and string constants wherever they stand (output, assignments,
    lists, dictionaries' values, macros and their defaults), but not the constants that are
    only compared, used as keys or as a filter's options, or passed to raise_exception.
    Pieces are joined with spaces: a sentence split over many constants reads as one."""
    skipped: set[int] = set()
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Getitem):
            skipped.add(id(node.arg))
        elif isinstance(node, nodes.Pair):
            skipped.add(id(node.key))
        elif isinstance(node, nodes.Compare):
            skipped.update(id(side) for side in (node.expr, *(op.expr for op in node.ops)))
        elif isinstance(node, (nodes.Filter, nodes.Test)) and \
                node.name not in ("replace", "format"):
            skipped.update(id(a) for a in (*node.args, *(k.value for k in node.kwargs)))
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and \
                node.node.name == "raise_exception":
            skipped.update(id(c) for c in node.find_all(nodes.Const))
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            skipped.update(id(a) for a in node.args)  # content.split('x'), .get('key')
    pieces = []
    for node in tree.find_all((nodes.Const, nodes.TemplateData)):
        if isinstance(node, nodes.TemplateData):
            pieces.append(node.data)
        elif isinstance(node.value, str) and id(node) not in skipped:
            pieces.append(node.value)
    return " ".join(pieces)


def _bound_strings(tree, nodes) -> dict[str, set[str]]:
    """Variables set to string constants ({% set t = 'dep' ~ 'loy' %}): their values."""
    bound: dict[str, set[str]] = {}
    for node in tree.find_all(nodes.Assign):
        if isinstance(node.target, nodes.Name):
            bound.setdefault(node.target.name, set()).update(_values(node.node, nodes, {}))
    return {name: values for name, values in bound.items() if values}


def _tests(tree, nodes):
    for node in tree.find_all((nodes.If, nodes.CondExpr)):
        yield node.test
    for node in tree.find_all(nodes.Filter):  # select / reject with a test on content
        if node.name in ("select", "reject", "selectattr", "rejectattr"):
            yield node


def _content_strings(test, nodes, bound: dict[str, set[str]]) -> set[str]:
    """The non-markup strings a test looks for in a message's content: compared with it,
    searched in it (startswith, find, split, count...), directly or through a variable."""
    found: set[str] = set()
    within = [test, *test.find_all(nodes.Node)]
    for compare in (n for n in within if isinstance(n, nodes.Compare)):
        sides = [compare.expr, *(op.expr for op in compare.ops)]
        if any(_is_content(side, nodes) for side in sides):
            found |= {text for side in sides for text in _values(side, nodes, bound)}
    for call in (n for n in within if isinstance(n, nodes.Call)):
        if isinstance(call.node, nodes.Getattr) and _is_content(call.node.node, nodes) and \
                call.node.attr in SEARCHES:
            found |= {text for a in call.args for text in _values(a, nodes, bound)}
    return {text for text in found if _is_trigger(text)}


def _values(node, nodes, bound: dict[str, set[str]]) -> set[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, nodes.Name):
        return bound.get(node.name, set())
    if isinstance(node, (nodes.Concat, nodes.Add)):
        pieces = [c.value for c in node.find_all(nodes.Const) if isinstance(c.value, str)]
        return {"".join(pieces)}
    return set()


def _is_trigger(text: str) -> bool:
    """A string whose presence in a message is a trigger: not markup (special tokens with at
    most a word between them: '<|channel|>analysis<|message|>', '<think></think>'), not a
    sentinel (CONTINUE_FINAL_MESSAGE_TAG), not a key of structured content ('image_url')
    and not a documented reasoning switch ('/no_think')."""
    bare = text.strip()
    if not bare or MARKUP.match(text) or SENTINEL.match(bare):
        return False
    if bare.lower() in CONTENT_KEYS or bare.lower() in REASONING_SWITCHES:
        return False
    between = SPECIAL.sub(" ", text).split()
    return not (SPECIAL.search(text) and len(between) <= 1)


def _is_content(node, nodes, depth: int = 0) -> bool:
    """message['content'], message.content, content, or a filter of them (lower, trim)."""
    if depth > 8:
        return False
    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const) and node.arg.value == "content"
    if isinstance(node, nodes.Getattr):
        return node.attr == "content"
    if isinstance(node, nodes.Name):
        return "content" in node.name
    if isinstance(node, (nodes.Filter, nodes.Call)):
        inner = node.node if isinstance(node, nodes.Filter) else getattr(node.node, "node", None)
        return inner is not None and _is_content(inner, nodes, depth + 1)
    return False
