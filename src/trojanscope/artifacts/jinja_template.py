"""Chat templates are Jinja that a loader renders: check one for sandbox escapes, and for text
and branches it adds to the conversation (template_intent), without rendering it (parsed into
a syntax tree with jinja2, never compiled or run)."""

from __future__ import annotations

import functools
import re
from dataclasses import replace

from ..findings import Finding, Location, Rule, Severity
from .template_intent import check_intent

ESCAPE = Rule("template.sandbox-escape", Severity.CRITICAL,
              "A Jinja template reaches Python internals (dunder attributes), the way template "
              "injection runs code",
              "Do not load the model with a loader that renders its chat template; replace "
              "the template with a known one.")
SUSPICIOUS = Rule("template.suspicious", Severity.HIGH,
                  "A Jinja template uses names or attribute tricks that chat templates do not "
                  "need (private attributes, which Jinja's sandbox refuses, among them)",
                  "Read the template before use; replace it with a known one if in doubt.")
UNPARSEABLE = Rule("template.unparseable", Severity.MEDIUM,
                   "A Jinja template does not parse, so it was checked as text only",
                   "A loader will fail on it; inspect it by hand.")

KEPT_TEMPLATE_CHARS = 64 << 10
DUNDER = re.compile(r"__\w+__")
RISKY_ATTRS = {"popen", "eval", "exec", "import_module", "load_module", "mro",
               "subclasses", "globals", "builtins", "func_globals", "f_globals", "f_back",
               "gi_frame", "cr_frame", "tb_frame", "modules", "getattr", "spawn", "fork"}
RISKY_NAMES = {"lipsum", "cycler", "joiner", "os", "subprocess", "sys", "builtins", "config",
               "request", "self", "__import__", "eval", "exec", "getattr", "open"}


def check_template(source: str, location: Location, key: str) -> list[Finding]:
    """The template's findings at `location`. Parsing is the slow part of a scan of many
    configs, and hubs repeat a few templates: the findings of recent templates are kept."""
    if len(source) > KEPT_TEMPLATE_CHARS:  # a huge template is not held on to
        return _check(source, location, key)
    return [replace(finding, location=location) for finding in _checked(source, key)]


@functools.lru_cache(maxsize=256)
def _checked(source: str, key: str) -> tuple[Finding, ...]:
    return tuple(_check(source, Location(""), key))


@functools.lru_cache(maxsize=1)
def jinja_environment():
    """Jinja as transformers renders chat templates: with {% break %} and {% continue %}, and
    its {% generation %} block (which marks the assistant's tokens)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    return jinja2.Environment(extensions=["jinja2.ext.loopcontrols", Generation])


def _check(source: str, location: Location, key: str) -> list[Finding]:
    try:
        import jinja2
        from jinja2 import nodes
    except ImportError:  # pragma: no cover - jinja2 is a dependency
        return _text_only(source, location, key, "jinja2 is not installed")
    try:
        tree = jinja_environment().parse(source)
    except (jinja2.TemplateSyntaxError, RecursionError) as exc:
        found = _text_only(source, location, key, str(exc))
        return found + [UNPARSEABLE.finding(f"{key} does not parse: {exc}", location,
                                            {"key": key})]
    escapes: set = set()
    suspicious: set = set()
    bound = {node.target.name: node.node for node in tree.find_all(nodes.Assign)
             if isinstance(node.target, nodes.Name)}
    # {% set a %}text{% endset %}: a string made at render time, whatever its text
    for block in tree.find_all(nodes.AssignBlock):
        if isinstance(block.target, nodes.Name):
            bound[block.target.name] = block
        for data in block.find_all(nodes.TemplateData):
            if DUNDER.search(data.data):
                escapes.add(repr(data.data.strip()[:60]))
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Concat):
            joined = _constant_text(node)
            if joined is not None and DUNDER.search(joined):
                escapes.add(repr(joined))
        if isinstance(node, nodes.Getitem) and _computed_text(node.arg, bound, nodes):
            suspicious.add("a subscript with a computed string")
        if isinstance(node, nodes.Getattr):
            _judge(node.attr, escapes, suspicious)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            if DUNDER.search(node.value):
                escapes.add(repr(node.value))
        elif isinstance(node, nodes.Name) and node.name in RISKY_NAMES:
            suspicious.add(node.name)
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            if not all(isinstance(a, nodes.Const) for a in node.args):
                suspicious.add("|attr with a computed name")
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and \
                isinstance(node.arg.value, str):
            _judge(node.arg.value, escapes, suspicious)
        elif isinstance(node, nodes.Keyword) and DUNDER.search(node.key):
            escapes.add(repr(node.key))  # dict(__class__=1)|list spells a dunder
        if isinstance(node, nodes.Filter) and node.name == "format" and \
                isinstance(node.node, nodes.Const) and "%c" in str(node.node.value):
            suspicious.add("text built from character codes ('%c'|format)")
        if isinstance(node, nodes.Filter) and node.name == "reverse" and (
                isinstance(node.node, nodes.Const) and isinstance(node.node.value, str) or
                node.node is None):  # {% filter reverse %}text{% endfilter %}
            suspicious.add("text stored reversed (|reverse on a string)")
    found = check_intent(tree, source, location, key)
    if escapes:
        found.append(ESCAPE.finding(f"{key} reaches {', '.join(sorted(escapes)[:6])}", location,
                                    {"key": key, "names": sorted(escapes)}))
    if suspicious:
        found.append(SUSPICIOUS.finding(f"{key} uses {', '.join(sorted(suspicious)[:6])}",
                                        location, {"key": key, "names": sorted(suspicious)}))
    return found


STRING_FILTERS = {"join", "format", "replace", "string", "reverse", "lower", "upper", "title",
                  "capitalize", "trim", "striptags", "urlencode", "first", "last", "safe",
                  "e", "escape", "forceescape", "center", "indent", "truncate", "wordwrap"}
STRING_METHODS = {"format", "join", "replace", "lower", "upper", "strip", "lstrip", "rstrip",
                  "title", "capitalize", "swapcase", "translate", "removeprefix",
                  "removesuffix", "zfill", "center", "ljust", "rjust", "decode", "encode"}


def _computed_text(node, bound: dict, nodes, depth: int = 0) -> bool:
    """Is this expression a string built at render time (joined, formatted, filtered)? Such a
    key reaches any attribute: Jinja's subscript falls back to getattr."""
    if depth > 20:
        return True
    if isinstance(node, (nodes.Concat, nodes.AssignBlock)):
        return True
    if isinstance(node, (nodes.Add, nodes.Mod)):
        return any(isinstance(side, nodes.Const) and isinstance(side.value, str) or
                   _computed_text(side, bound, nodes, depth + 1)
                   for side in (node.left, node.right))
    if isinstance(node, nodes.Filter):
        return node.name in STRING_FILTERS
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        return node.node.attr in STRING_METHODS
    if isinstance(node, nodes.Name) and node.name in bound:
        return _computed_text(bound[node.name], bound, nodes, depth + 1)
    return False


def _constant_text(node) -> str | None:
    """The string a `~` of constants makes, or None."""
    from jinja2 import nodes

    parts = []
    for part in node.nodes:
        if isinstance(part, nodes.Const) and isinstance(part.value, (str, int)):
            parts.append(str(part.value))
        elif isinstance(part, nodes.Concat):
            inner = _constant_text(part)
            if inner is None:
                return None
            parts.append(inner)
        else:
            return None
    return "".join(parts)


def _judge(name: str, escapes: set, suspicious: set) -> None:
    if DUNDER.fullmatch(name):
        escapes.add(name)
    elif name in RISKY_ATTRS or name.startswith("_"):
        # Jinja's sandbox refuses every attribute that starts with "_" (a macro's
        # _environment reaches the compiler); only an unsandboxed renderer gets there.
        suspicious.add(name)


def _text_only(source: str, location: Location, key: str, why: str) -> list[Finding]:
    names = sorted(set(DUNDER.findall(source)))
    if names:
        return [ESCAPE.finding(f"{key} mentions {', '.join(names[:6])}", location,
                               {"key": key, "names": names, "checked_as": f"text ({why})"})]
    return []
