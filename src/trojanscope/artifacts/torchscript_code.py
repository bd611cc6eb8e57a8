"""The TorchScript code in a torch.jit.save archive (ARCHIVE/code/**.py).

torch.jit.load compiles this code and runs it: `__setstate__` methods while loading, `forward`
on every call. TorchScript has no imports and no open(); what code can do is call operators
(`torch.X` is aten::X, `ops.NS.X` is NS::X). Some reach files: `torch.save` (aten::save) writes
any path, `torch.from_file` reads one. Before PyTorch 2.6, torch.load(weights_only=True) handed
such an archive to torch.jit.load (CVE-2025-32434). Every operator call is judged against an
allowlist generated from PyTorch's operator registry (torchscript_operators.py): unlisted
operators of PyTorch's namespaces are high, operators of other namespaces need a compiled
library the loader must have registered (medium). The code is parsed with `ast`, never compiled
or run.
"""

from __future__ import annotations

import ast
import re

from ..findings import Location, Rule, Severity

FILE_ACCESS = Rule(
    "torchscript.file-access", Severity.CRITICAL,
    "The archive's TorchScript code calls an operator that writes or reads files",
    "Do not load or run this model: torch.jit.load compiles the code and runs it (while "
    "loading, in __setstate__, or on every forward call).")
UNLISTED_OPERATOR = Rule(
    "torchscript.unlisted-operator", Severity.HIGH,
    "The archive's TorchScript code calls a PyTorch operator that is not on the allowlist "
    "(operators without file, network or Python access, from PyTorch's registry)",
    "Do not load the model until the code file is reviewed: the operator may reach the network "
    "(distributed and remote-call operators) or Python, or be newer than the allowlist.")
CUSTOM_OPERATOR = Rule(
    "torchscript.custom-operator", Severity.MEDIUM,
    "The archive's TorchScript code calls an operator from outside PyTorch's own namespaces",
    "Loading needs the compiled library that registers it; review that library's source.")
UNPARSABLE = Rule(
    "torchscript.unparsable", Severity.HIGH,
    "A TorchScript code file could not be parsed, so what it calls was not examined (TorchScript "
    "compiles code Python's parser rejects: a NUL byte, deep nesting)",
    "Do not load the model: real torch.jit.save output parses, and code that cannot be read "
    "cannot be vouched for.")

CODE_MEMBER = re.compile(r"(^|/)code/.+\.py$")
MAX_CODE_BYTES = 16 * 1024 * 1024  # real code files are kilobytes
# Besides the registry's (FILE_OPERATORS there): names other torch versions give file access.
KNOWN_FILE_OPERATORS = {"load", "_load_for_mobile", "_nested_from_file"}


def is_code_member(name: str) -> bool:
    return CODE_MEMBER.search(name) is not None


def check_torchscript_code(text: str, location: Location) -> list:
    from .torchscript_operators import (  # imported when TorchScript is met: start-up
        FILE_OPERATORS,
        OPERATORS,
        UNLISTED_NAMESPACES,
    )

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [UNPARSABLE.finding(f"not parsable: {type(exc).__name__}", location,
                                   {"error": type(exc).__name__})]
    found, seen = [], set()
    for function, call, name in _calls(tree):
        namespace, operator = _operator(name.split("."))
        key = (name, function)
        if namespace is None or key in seen:
            continue  # not an operator: the archive's own classes and functions, a method
        seen.add(key)
        where = f"in {function or 'the module body'}"
        if operator == "<computed>" or operator in FILE_OPERATORS.get(namespace, ()) or (
                namespace == "aten" and operator in KNOWN_FILE_OPERATORS):
            when = "while the model loads" if function == "__setstate__" else where
            found.append(FILE_ACCESS.finding(
                f"line {call.lineno}: uses {name}({_first_argument(call)}) {when}", location,
                {"call": name, "function": function, "line": call.lineno}))
        elif namespace in UNLISTED_NAMESPACES or (namespace in OPERATORS and operator is not None
                                                  and operator not in OPERATORS[namespace]):
            found.append(UNLISTED_OPERATOR.finding(
                f"line {call.lineno}: calls {name} ({namespace}::{operator}) {where}",
                location, {"call": name, "operator": f"{namespace}::{operator}",
                           "function": function, "line": call.lineno}))
        elif namespace not in OPERATORS:
            found.append(CUSTOM_OPERATOR.finding(
                f"line {call.lineno}: calls {name} (operator namespace {namespace!r}) {where}",
                location, {"call": name, "namespace": namespace, "line": call.lineno}))
    return found


def _operator(parts: list[str]) -> tuple[str | None, str | None]:
    """(namespace, operator) that a dotted name calls, as TorchScript's importer resolves it:
    torch.X is aten::X, [torch.]ops.NS.X is NS::X, torch.classes.NS.C a class of NS. Another
    torch.A.B is judged as aten::B (fail closed). Names outside torch and ops: (None, '')."""
    if parts[0] == "torch":
        if len(parts) == 2:
            return "aten", parts[1]
        if parts[1] not in ("ops", "classes"):
            return "aten", parts[-1]
        parts = parts[1:]
    if parts[0] == "ops" and len(parts) >= 3:
        return parts[1], parts[2]  # a fourth part names an overload (ops.aten.add.Tensor)
    if parts[0] == "classes" and len(parts) >= 3:
        return parts[1], None  # a registered class: judged by its namespace
    return None, ""


def _calls(tree: ast.AST):
    """(enclosing function name, node, dotted name) for every use of a dotted name: calls,
    and references that may be called later (`_0 = torch.save` is how torch.jit.save itself
    writes a function it calls; a model may alias an operator the same way). getattr(torch,
    "save") counts as torch.save; with a name that is not a string literal, as torch.<?>."""
    stack = [(tree, None, False)]
    while stack:
        node, function, inner = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Attribute) and not inner:
            name = _dotted(node)
            if name is not None:
                yield function, node, name
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = _dotted(node.func)
            if name is not None:  # the call, so that its arguments are shown
                yield function, node, name
                inner_func = node.func
                stack.extend((child, function, child is inner_func)
                             for child in ast.iter_child_nodes(node))
                continue
        elif isinstance(node, ast.Call) and _dotted(node.func) == "getattr" and \
                len(node.args) >= 2:
            base = _dotted(node.args[0])
            attr = node.args[1]
            if base is not None:
                what = attr.value if isinstance(attr, ast.Constant) and \
                    isinstance(attr.value, str) else "<computed>"
                yield function, node, f"{base}.{what}"
        stack.extend((child, function, isinstance(node, ast.Attribute) and child is node.value)
                     for child in ast.iter_child_nodes(node))


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _first_argument(call: ast.AST) -> str:
    """The first string literal among a call's arguments: the path, when it is written out."""
    if not isinstance(call, ast.Call) or _dotted(call.func) == "getattr":
        return "..."
    literals = [a.value for a in call.args if isinstance(a, ast.Constant) and
                isinstance(a.value, str)]
    return repr(literals[0][:200]) if literals else "..."
