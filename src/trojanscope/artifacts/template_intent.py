"""What a chat template says to the model, besides the conversation: text of its own (a hidden
system instruction) and what it does when a message contains a given string (a trigger that
switches the model's instructions). Read from the template's syntax tree, never rendered.

A trigger: a string a message's content is searched for, compared with or rewritten at
(through variables, `is in`, loop conditions, slices and string methods), or a date the
clock is compared with; not markup the template writes itself, keys of structured content or
documented reasoning switches. Text: what the template can emit (output, variables, lists,
dictionaries, macros, filter and `.get` defaults, joined constants), cut into sentences. A
sentence of a known family's template (chat_families.json: ChatML, Llama 3, Mistral, Gemma,
Phi-3) that its upstream templates have is not shown; other text is shown for review, and is
an alarm when it points somewhere, runs something, asks for secrets, or hides or overrides
(HALLMARKS): real derived models ship their own default prompts and tool instructions.
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
                       "\u2066-\u2069\uFEFF]|"
                       # runs of variation selectors carry bytes (one follows an emoji)
                       "[\uFE00-\uFE0F\U000E0100-\U000E01EF]{2,}")
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
                "audio_url", "input_audio", "file", "url", "value", "blocks", "parts", "content",
                "reasoning_content", "thinking", "tool_calls", "tool_call_id", "name",
                "arguments", "function"}
# switches model cards document for turning reasoning on and off in a message
REASONING_SWITCHES = {"/think", "/no_think", "/nothink", "detailed thinking on",
                      "detailed thinking off", "/system_override"}
WORD = re.compile(r"[a-z]{2,}")
# a marker the template writes itself and then looks for in the model's answers
# ('[BEGIN FINAL RESPONSE]'): bracketed, and emitted verbatim
MARKER = re.compile(r"^\s*[\[<].*[\]>]\s*$", re.DOTALL)
# the markup of reasoning and tool use that templates look for in what the model wrote
KNOWN_TAGS = {"<think>", "<tool_call>", "<tool_response>", "<tool_calls>", "<image>",
              "<audio>", "<video>"}
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
    emitted = _emitted(tree, nodes)
    own_tags = {_tag(t) for t in SPECIAL.findall(emitted)}
    names = _content_names(tree, nodes)
    tests = list(_tests(tree, nodes))
    searched = {text for test in tests for text in _content_strings(test, nodes, bound, names)}
    searched |= _rewritten(tree, nodes, bound, names) | _clock_checks(tests, nodes)
    triggers = sorted(text for text in searched if _is_trigger(text, own_tags) and
                      not (MARKER.search(text) and text.strip() in emitted))
    if triggers:
        found.append(CONDITIONAL.finding(
            f"{key} branches on a message containing "
            f"{', '.join(repr(t) for t in triggers[:4])}", location,
            {"key": key, "strings": triggers}))
    family = family_of(source)
    pieces = list(dict.fromkeys(_pieces(emitted)))
    marked = {t: [name for name, pattern in HALLMARK.items() if pattern.search(t)]
              for t in pieces}
    # marked text is judged even in a sentence mostly of upstream words
    harmful = [t for t in pieces if marked[t]]
    if family is not None:
        pieces = [t for t in pieces if not _known(t, family)]
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
        elif isinstance(node, nodes.Pair) and not (
                isinstance(node.key, nodes.Const) and isinstance(node.key.value, str) and
                len(node.key.value.split()) >= SENTENCE_WORDS):
            skipped.add(id(node.key))  # keys, but not sentences a loop over them writes out
        elif isinstance(node, nodes.Compare):
            skipped.update(id(side) for side in (node.expr, *(op.expr for op in node.ops)))
        elif isinstance(node, (nodes.Filter, nodes.Test)) and \
                node.name not in ("replace", "format", "default", "d"):
            skipped.update(id(a) for a in (*node.args, *(k.value for k in node.kwargs)))
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and \
                node.node.name == "raise_exception":
            skipped.update(id(c) for c in node.find_all(nodes.Const))
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            # content.split('x'), .get('key'); but .get('key', 'the default') emits it
            searched = node.args[:1] if node.node.attr == "get" else node.args
            skipped.update(id(a) for a in searched)
    pieces = []
    for node in tree.find_all((nodes.Const, nodes.TemplateData, nodes.Concat, nodes.Add)):
        if isinstance(node, nodes.TemplateData):
            pieces.append(node.data)
        elif isinstance(node, (nodes.Concat, nodes.Add)):
            # 'pass' ~ 'word': also read as the one string it makes
            pieces.extend(text for text in _values(node, nodes, {}) if text)
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
    for node in tree.find_all(nodes.For):  # {% for x in y if 'word' in m.content %}
        if node.test is not None:
            yield node.test
    for node in tree.find_all(nodes.Filter):  # select / reject with a test on content
        if node.name in ("select", "reject", "selectattr", "rejectattr"):
            yield node


def _content_strings(test, nodes, bound: dict[str, set[str]], names: set[str]) -> set[str]:
    """The strings a test looks for in a message's content: compared with it, searched in it
    (`in`, `is in`, startswith, find, split, count...), directly or through a variable."""
    found: set[str] = set()
    within = [test, *test.find_all(nodes.Node)]
    for compare in (n for n in within if isinstance(n, nodes.Compare)):
        sides = [compare.expr, *(op.expr for op in compare.ops)]
        content = [_is_content(side, nodes, names) for side in sides]
        if any(content):  # what content is compared with, not what it may hold
            found |= {text for side, is_content in zip(sides, content) if not is_content
                      for text in _values(side, nodes, bound)}
    for check in (n for n in within if isinstance(n, nodes.Test) and n.name == "in"):
        if any(_is_content(a, nodes, names) for a in check.args):
            found |= _values(check.node, nodes, bound)
    for call in (n for n in within if isinstance(n, nodes.Call)):
        if isinstance(call.node, nodes.Getattr) and \
                _is_content(call.node.node, nodes, names) and call.node.attr in SEARCHES:
            found |= {text for a in call.args for text in _values(a, nodes, bound)}
    return found


def _rewritten(tree, nodes, bound: dict[str, set[str]], names: set[str]) -> set[str]:
    """Strings replaced in a message's content (content|replace('word', 'an instruction')):
    a trigger with no branch at all."""
    found: set[str] = set()
    for node in tree.find_all((nodes.Filter, nodes.Call)):
        if isinstance(node, nodes.Filter) and node.name == "replace" and node.args and \
                _is_content(node.node, nodes, names):
            found |= _values(node.args[0], nodes, bound)
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and \
                node.node.attr == "replace" and node.args and \
                _is_content(node.node.node, nodes, names):
            found |= _values(node.args[0], nodes, bound)
    return found


def _clock_checks(tests, nodes) -> set[str]:
    """Dates a test compares the clock with (strftime_now('%Y-%m-%d') >= '2026-12-01'): a
    time bomb. Templates that only print the date pass."""
    found: set[str] = set()
    for test in tests:
        for compare in [test, *test.find_all(nodes.Compare)]:
            if isinstance(compare, nodes.Compare) and any(
                    isinstance(c.node, nodes.Name) and c.node.name == "strftime_now"
                    for c in compare.find_all(nodes.Call)):
                found |= {f"the date {c.value}" for c in compare.find_all(nodes.Const)
                          if isinstance(c.value, str) and not c.value.startswith("%")}
    return found


def _content_names(tree, nodes) -> set[str]:
    """Variables set to a message's content ({% set c = message['content'] %})."""
    names: set[str] = set()
    for _ in range(3):  # aliases of aliases
        for node in tree.find_all(nodes.Assign):
            if isinstance(node.target, nodes.Name) and _is_content(node.node, nodes, names):
                names.add(node.target.name)
    return names


def _values(node, nodes, bound: dict[str, set[str]]) -> set[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, nodes.Name):
        return bound.get(node.name, set())
    if isinstance(node, (nodes.Concat, nodes.Add)):
        pieces = [c.value for c in node.find_all(nodes.Const) if isinstance(c.value, str)]
        return {"".join(pieces)}
    return set()


def _is_trigger(text: str, own_tags: set[str]) -> bool:
    """A string whose presence in a message is a trigger: not markup the template writes
    itself (special tokens with at most a word between them: '<|channel|>analysis<|message|>',
    '</think>'), not a key of structured content ('image_url') and not a documented reasoning
    switch ('/no_think')."""
    bare = text.strip()
    if not bare or bare.lower() in CONTENT_KEYS or bare.lower() in REASONING_SWITCHES:
        return False
    tags = SPECIAL.findall(text)
    between = SPECIAL.sub(" ", text).split()
    # markup the template writes itself ('</think>' where it emits '<think>'); a tag it never
    # writes ('<admin>') is a trigger like any word
    return not (tags and len(between) <= 1 and
                all(_tag(t) in own_tags or _tag(t) in KNOWN_TAGS for t in tags))


def _tag(text: str) -> str:
    return text.replace("/", "").strip()


def _is_content(node, nodes, names: set[str] = frozenset(), depth: int = 0) -> bool:
    """message['content'], message.content, message.get('content'), content, a variable set
    to one of them (`names`), a slice or a filter of them (lower, trim)."""
    if depth > 8:
        return False
    if isinstance(node, nodes.Getitem):
        if isinstance(node.arg, nodes.Slice):
            return _is_content(node.node, nodes, names, depth + 1)
        return isinstance(node.arg, nodes.Const) and node.arg.value == "content"
    if isinstance(node, nodes.Getattr):
        return node.attr == "content"
    if isinstance(node, nodes.Name):
        return "content" in node.name or node.name in names
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and \
            node.node.attr == "get" and node.args and isinstance(node.args[0], nodes.Const):
        return node.args[0].value == "content"
    if isinstance(node, (nodes.Filter, nodes.Call)):
        inner = node.node if isinstance(node, nodes.Filter) else getattr(node.node, "node", None)
        return inner is not None and _is_content(inner, nodes, names, depth + 1)
    return False
