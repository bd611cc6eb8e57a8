"""The TorchScript code in a torch.jit.save archive (ARCHIVE/code/**.py).

torch.jit.load compiles this code and runs it: `__setstate__` methods while loading, `forward`
on every call. TorchScript has no imports and no open(), but some of its operators reach files:
`torch.save` (aten::save) writes any path, `torch.from_file` reads one. Before PyTorch 2.6,
torch.load(weights_only=True) handed such an archive to torch.jit.load (CVE-2025-32434). Calls
into operator namespaces outside PyTorch need a compiled library the loader must have
registered. The code is parsed with `ast`, never compiled or run.
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
FILE_OPERATORS = {"save", "from_file", "load", "_load_for_mobile", "_nested_from_file"}
PYTORCH_NAMESPACES = {"aten", "prim", "quantized", "_quantized", "prepacked", "mkldnn",
                      "mkldnn_prepacked", "_caffe2", "profiler", "sparse", "xnnpack", "cuda",
                      "_c10d_functional", "c10d", "_dtensor", "fbgemm", "torchvision",
                      "torchaudio"}


def is_code_member(name: str) -> bool:
    return CODE_MEMBER.search(name) is not None


def check_torchscript_code(text: str, location: Location) -> list:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [UNPARSABLE.finding(f"not parsable: {type(exc).__name__}", location,
                                   {"error": type(exc).__name__})]
    found, seen = [], set()
    for function, call, name in _calls(tree):
        parts = name.split(".")
        operator, namespace = parts[-1], _namespace(parts)
        key = (name, function)
        if key in seen:
            continue
        if namespace in ("torch", "aten") and (operator in FILE_OPERATORS or
                                               operator == "<computed>"):
            seen.add(key)
            when = "while the model loads" if function == "__setstate__" else \
                f"in {function or 'the module body'}"
            found.append(FILE_ACCESS.finding(
                f"line {call.lineno}: uses {name}({_first_argument(call)}) {when}", location,
                {"call": name, "function": function, "line": call.lineno}))
        elif namespace not in (None, "torch") and namespace not in PYTORCH_NAMESPACES:
            seen.add(key)
            found.append(CUSTOM_OPERATOR.finding(
                f"line {call.lineno}: calls {name} (operator namespace {namespace!r}) in "
                f"{function or 'the module body'}", location,
                {"call": name, "namespace": namespace, "line": call.lineno}))
    return found


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


def _namespace(parts: list[str]) -> str | None:
    """'torch' for torch.save, the operator namespace for [torch.]ops.NS.op, else None."""
    if parts[0] == "torch" and len(parts) == 2:
        return "torch"
    rest = parts[1:] if parts[0] == "torch" else parts
    if len(rest) == 3 and rest[0] == "ops":
        return rest[1]
    return None


def _first_argument(call: ast.AST) -> str:
    """The first string literal among a call's arguments: the path, when it is written out."""
    if not isinstance(call, ast.Call) or _dotted(call.func) == "getattr":
        return "..."
    literals = [a.value for a in call.args if isinstance(a, ast.Constant) and
                isinstance(a.value, str)]
    return repr(literals[0][:200]) if literals else "..."
