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
                "A chat template of a known model family emits instructions its upstream "
                "template does not have",
                "Read the text it adds; replace the template with the family's upstream one.")
INVISIBLE_TEXT = Rule("template.invisible-text", Severity.HIGH,
                      "A chat template carries invisible characters (Unicode tags, zero-width "
                      "or bidirectional controls) that a model reads and a reviewer does not",
                      "Replace the template with the upstream one of its model family.")
OWN_TEXT = Rule("template.own-text", Severity.MEDIUM,
                "A chat template emits sentences of its own (a default system prompt or "
                "hidden instructions)",
                "Read the text: a default system prompt is common; instructions the model's "
                "documentation does not mention are not.")

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
KNOWN_SHARE = 0.8    # a literal is upstream text when this share of its words is in one
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
    sentences = list(dict.fromkeys(_sentences(_emitted(tree, nodes))))
    if family is not None:
        unknown = [t for t in sentences if not _known(t, family)]
        if unknown:
            found.append(INJECTED.finding(
                f"{key} (a {family['name']} template) adds text its upstream template does "
                f"not have: {_shown(unknown)}", location,
                {"key": key, "family": family["name"], "texts": unknown}))
    else:
        own = [t for t in sentences if len(_words(t)) >= MIN_WORDS]
        if own:
            found.append(OWN_TEXT.finding(f"{key} emits: {_shown(own)}", location,
                                          {"key": key, "texts": own}))
    return found


def _shown(texts: list[str]) -> str:
    return "; ".join(repr(" ".join(t.split())[:120]) for t in texts[:3])


def _shown_invisible(text: str) -> str:
    """The text with Unicode tag characters spelled out (they mirror ASCII) and other
    invisible characters named."""
    spelled = "".join(chr(ord(c) - 0xE0000) if 0xE0020 <= ord(c) <= 0xE007E else
                      (f"<U+{ord(c):04X}>" if INVISIBLE.match(c) else c) for c in text)
    return repr(" ".join(spelled.split())[:160])


def _sentences(text: str) -> list[str]:
    """The sentences of SENTENCE_WORDS words or more in `text`, markup and JSON aside."""
    parts = re.split(r"(?<=[.!?:])\s+|\n+", SPECIAL.sub("\n", text))
    return [p.strip() for p in parts if not JSON_LIKE.search(p) and
            len([w for w in _words(p) if w not in SCHEMA_WORDS]) >= SENTENCE_WORDS]


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
    return bool(text.strip()) and not MARKUP.match(text)


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
