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
OWN_TEXT = Rule("template.own-text", Severity.MEDIUM,
                "A chat template emits sentences of its own (a default system prompt or "
                "hidden instructions)",
                "Read the text: a default system prompt is common; instructions the model's "
                "documentation does not mention are not.")

MIN_WORDS = 5        # a literal of fewer words is markup, a role name, a separator
SENTENCE_WORDS = 3   # of a literal's sentences, those this long are compared
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
    triggers = sorted({text for test in _tests(tree, nodes)
                       for text in _content_strings(test, nodes)})
    if triggers:
        found.append(CONDITIONAL.finding(
            f"{key} branches on a message containing "
            f"{', '.join(repr(t) for t in triggers[:4])}", location,
            {"key": key, "strings": triggers}))
    family = family_of(source)
    texts = [t for t in dict.fromkeys(_emitted(tree, nodes)) if len(_words(t)) >= MIN_WORDS]
    if family is not None:
        unknown = [sentence for t in texts for sentence in _sentences(t)
                   if not _known(sentence, family)]
        if unknown:
            found.append(INJECTED.finding(
                f"{key} (a {family['name']} template) adds text its upstream template does "
                f"not have: {_shown(unknown)}", location,
                {"key": key, "family": family["name"], "texts": unknown}))
    elif texts:
        found.append(OWN_TEXT.finding(f"{key} emits: {_shown(texts)}", location,
                                      {"key": key, "texts": texts}))
    return found


def _shown(texts: list[str]) -> str:
    return "; ".join(repr(" ".join(t.split())[:120]) for t in texts[:3])


def _sentences(text: str) -> list[str]:
    """A literal's sentences of SENTENCE_WORDS words or more."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", SPECIAL.sub("\n", text))
    return [p.strip() for p in parts if len(_words(p)) >= SENTENCE_WORDS]


def _known(text: str, family: dict) -> bool:
    words = set(_words(text))
    return any(len(words & known) >= KNOWN_SHARE * len(words) for known in family["known"])


def _emitted(tree, nodes) -> list[str]:
    """The literal text the template can output: raw text between tags, and string constants
    inside {{ }} or assigned to variables, joined where they are concatenated."""
    texts = [data.data for data in tree.find_all(nodes.TemplateData)]
    for holder in (*tree.find_all(nodes.Output), *tree.find_all(nodes.Assign)):
        for node in holder.iter_child_nodes():
            texts.extend(_constants(node, nodes))
    return texts


def _constants(node, nodes) -> list[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (nodes.Concat, nodes.Add)):
        parts = node.nodes if isinstance(node, nodes.Concat) else [node.left, node.right]
        pieces = [p.value for p in parts if isinstance(p, nodes.Const) and
                  isinstance(p.value, str)]
        inner = [t for p in parts if not isinstance(p, nodes.Const) for t in
                 _constants(p, nodes)]
        return (["".join(pieces)] if pieces else []) + inner
    if isinstance(node, (nodes.Call, nodes.Compare, nodes.Test)):
        return []  # raise_exception("..."), tests: not output
    return [t for child in node.iter_child_nodes() for t in _constants(child, nodes)]


def _tests(tree, nodes):
    for node in tree.find_all((nodes.If, nodes.CondExpr)):
        yield node.test
    for node in tree.find_all(nodes.Filter):  # select / reject with a test on content
        if node.name in ("select", "reject", "selectattr", "rejectattr"):
            yield node


def _content_strings(test, nodes) -> set[str]:
    """The non-markup string constants a test compares a message's content with."""
    found: set[str] = set()
    within = [test, *test.find_all(nodes.Node)]
    for compare in (n for n in within if isinstance(n, nodes.Compare)):
        sides = [compare.expr, *(op.expr for op in compare.ops)]
        if any(_is_content(side, nodes) for side in sides):
            found |= {s.value for s in sides if isinstance(s, nodes.Const) and
                      isinstance(s.value, str) and _is_trigger(s.value)}
    for call in (n for n in within if isinstance(n, nodes.Call)):
        if isinstance(call.node, nodes.Getattr) and _is_content(call.node.node, nodes) and \
                call.node.attr in ("startswith", "endswith", "find", "count", "index",
                                   "__contains__"):
            found |= {a.value for a in call.args if isinstance(a, nodes.Const) and
                      isinstance(a.value, str) and _is_trigger(a.value)}
    return found


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
