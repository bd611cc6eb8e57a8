"""The program in a torch.export archive (.pt2: ARCHIVE/models/*.json), read as JSON, never
loaded.

torch.export.load does more than read weights:
- every symbolic size (`expr_str`) goes to `sympy.sympify`, which evaluates it as Python:
  a string such as `__import__('os').system(...)` runs while the archive loads;
- `guards_code` strings become the source of a Python function the loaded module runs;
- each graph node names an operator (`target`), which runs on every forward call: an ATen
  operator that reads or writes files (`aten.from_file`, `aten.save`) reaches the disk.
  Operators are judged against the allowlist that TorchScript code is (torchscript_operators.py).
Expressions and guards are judged by their syntax tree against what torch itself writes
(sympy constructors and arithmetic; size, stride and comparisons of the inputs); anything else
is critical. Operators off the allowlist, and those from outside PyTorch's own namespaces, are
high: they run code a library registered, which the scan cannot see. Pickles inside the archive
are examined as every pickle is; the loader may unpickle them without `weights_only`, so the
gate (ml/gate.py) refuses a .pt2 on any pickle finding at all.
"""

from __future__ import annotations

import ast
import json
import re

from ..findings import Location, Rule, Severity
from .torchscript_code import KNOWN_FILE_OPERATORS

UNSAFE_EXPRESSION = Rule(
    "torch-export.unsafe-expression", Severity.CRITICAL,
    "A symbolic size in a torch.export archive is not an arithmetic expression: torch.export.load "
    "passes it to sympy.sympify, which evaluates it as Python",
    "Do not load this archive: the code in the expression runs while it loads.")
UNSAFE_GUARD = Rule(
    "torch-export.unsafe-guard", Severity.CRITICAL,
    "A guard in a torch.export archive is not a check of the inputs' sizes: the loaded module "
    "compiles the guards into Python code it runs",
    "Do not load this archive: the guard's code runs when the module is built or called.")
FILE_OPERATOR = Rule(
    "torch-export.file-access", Severity.CRITICAL,
    "A node of the exported graph calls an operator that reads or writes files",
    "Do not run this model: the operator runs on every forward call.")
FOREIGN_OPERATOR = Rule(
    "torch-export.custom-operator", Severity.HIGH,
    "A node of the exported graph calls an operator from outside PyTorch's own namespaces",
    "Run the model only with the library that registers the operator, after reviewing it.")
UNREADABLE_PROGRAM = Rule(
    "torch-export.unreadable", Severity.HIGH,
    "The program of a torch.export archive is not readable JSON, so it was not examined",
    "Do not load the archive until it scans cleanly; torch.export.save writes readable JSON.")

PROGRAM_MEMBER = re.compile(r"(^|/)models/[^/]+\.json$")
MAX_PROGRAM_BYTES = 256 * 1024 * 1024
# PyTorch's namespaces whose operators Python registers (not in the generated allowlist).
EXPORT_NAMESPACES = {"higher_order", "quantized_decomposed", "_c10d_functional", "c10d",
                     "_c10d_functional_autograd"}
SYMPY_NAMES = {
    "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Max", "Min", "Mod", "Abs",
    "FloorDiv", "CeilDiv", "CleanDiv", "PythonMod", "TruncToInt", "FloorToInt", "CeilToInt",
    "IntTrueDiv", "FloatTrueDiv", "ToFloat", "TruncToFloat", "RoundToInt", "RoundDecimal",
    "Identity", "PowByNatural", "FloatPow", "ModularIndexing", "Where", "LShift", "RShift",
    "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "BitwiseFn_bitwise_xor",
    "IsNonOverlappingAndDenseIndicator", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not",
    "Equality", "Unequality", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
    "Piecewise", "ExprCondPair", "sqrt", "true", "false", "oo", "zoo", "nan", "S", "Tuple",
    "True", "False", "None"}
SYMPY_KEYWORDS = {"positive", "integer", "real", "nonnegative", "negative", "nonpositive",
                  "zero", "finite", "evaluate", "commutative", "prime", "even", "odd"}
ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub,
              ast.UAdd, ast.Not, ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
              ast.GtE, ast.BitAnd, ast.BitOr)
SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
GUARD_METHODS = {"size", "stride", "storage_offset", "dim", "numel"}


def is_program_member(name: str) -> bool:
    return PROGRAM_MEMBER.search(name) is not None


def check_program(text: bytes, location: Location) -> list:
    try:
        program = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [UNREADABLE_PROGRAM.finding(f"not JSON: {type(exc).__name__}", location)]
    findings: list = []
    seen: set = set()
    for key, value in _items(program):
        if key == "expr_str" and isinstance(value, str) and not safe_expression(value):
            _once(findings, seen, UNSAFE_EXPRESSION, value, location,
                  f"symbolic size {value[:120]!r} is not an arithmetic expression")
        elif key == "guards_code" and isinstance(value, list):
            for guard in value:
                if not (isinstance(guard, str) and safe_guard(guard)):
                    _once(findings, seen, UNSAFE_GUARD, str(guard), location,
                          f"guard {str(guard)[:120]!r} is not a check of the inputs' sizes")
        elif key == "target" and isinstance(value, str):
            _check_target(value, findings, seen, location)
    return findings


def _check_target(target: str, findings: list, seen: set, location: Location) -> None:
    parts = target.split(".")
    if parts[0] == "_operator" and len(parts) == 2:  # operator.getitem and the like
        return
    if parts[:2] != ["torch", "ops"] or len(parts) < 4:
        _once(findings, seen, FOREIGN_OPERATOR, target, location,
              f"node calls {target!r}, not an operator of torch.ops")
        return
    from .torchscript_operators import FILE_OPERATORS, OPERATORS

    namespace, operator = parts[2], parts[3]
    if operator in FILE_OPERATORS.get(namespace, ()) or (
            namespace == "aten" and operator in KNOWN_FILE_OPERATORS):
        _once(findings, seen, FILE_OPERATOR, target, location,
              f"node calls {target}, which reaches files, on every forward call")
    elif namespace in OPERATORS and operator not in OPERATORS[namespace]:
        _once(findings, seen, FOREIGN_OPERATOR, target, location,
              f"node calls {target}, which is not on the allowlist of PyTorch's operators")
    elif namespace not in OPERATORS and namespace not in EXPORT_NAMESPACES:
        _once(findings, seen, FOREIGN_OPERATOR, target, location,
              f"node calls {target}, from the namespace {namespace!r}")


def _once(findings: list, seen: set, rule: Rule, key: str, location: Location,
          message: str) -> None:
    if (rule.id, key) in seen or len(seen) >= 50:
        return
    seen.add((rule.id, key))
    findings.append(rule.finding(message, location, {"value": key[:200]}))


def _items(node, depth: int = 0):
    """Every (key, value) pair of a JSON document, depth first (bounded)."""
    stack = [(node, 0)]
    while stack:
        current, level = stack.pop()
        if level > 200:
            continue
        if isinstance(current, dict):
            for key, value in current.items():
                yield key, value
                stack.append((value, level + 1))
        elif isinstance(current, list):
            stack.extend((item, level + 1) for item in current)


def safe_expression(text: str) -> bool:
    """Only what torch writes: sympy constructors (by name) with numbers, symbol names and
    boolean keyword assumptions, combined by arithmetic and comparisons."""
    return _every_node(text, _expression_node)


def _expression_node(node) -> bool:
    if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
                         ast.Load, ast.Tuple)) or isinstance(node, ARITHMETIC):
        return True
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name)
    if isinstance(node, ast.Name):
        return node.id in SYMPY_NAMES or bool(re.fullmatch(r"[a-z]+[0-9]+", node.id))
    if isinstance(node, ast.keyword):
        return node.arg in SYMPY_KEYWORDS
    if isinstance(node, ast.Attribute):  # S.One, S.Infinity
        return isinstance(node.value, ast.Name) and node.value.id == "S" and \
            bool(re.fullmatch(r"[A-Z][A-Za-z]{0,30}", node.attr))
    if isinstance(node, ast.Constant):
        value = node.value
        return isinstance(value, (int, float, bool)) or value is None or \
            (isinstance(value, str) and bool(SYMBOL.match(value)))
    return False


def safe_guard(text: str) -> bool:
    """Checks of the inputs as torch writes them: L['x'].size()[1] == 3 and the like."""
    return _every_node(text, _guard_node)


def _guard_node(node) -> bool:
    if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
                         ast.Load, ast.Subscript)) or isinstance(node, ARITHMETIC):
        return True
    if isinstance(node, ast.Name):
        return node.id == "L"
    if isinstance(node, ast.Attribute):
        return node.attr in GUARD_METHODS
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Attribute) and node.func.attr in GUARD_METHODS
    if isinstance(node, ast.Constant):
        value = node.value
        return isinstance(value, (int, float, bool)) or \
            (isinstance(value, str) and bool(SYMBOL.match(value)))
    return False


def _every_node(text: str, allowed) -> bool:
    """Whether `text` parses as one short expression whose every node is `allowed`."""
    if len(text) > 10_000 or "\x00" in text:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return all(allowed(node) for node in ast.walk(tree))


PAYLOAD_CONFIG = re.compile(r"^(.*/)?data/(weights|constants)/[^/]+_config\.json$")


def raw_tensor_members(archive, members) -> set[str]:
    """The archive's members that its payload configs list as raw tensor bytes
    (`use_pickle` false): torch.export.load reads them as bytes, never unpickles them, so they
    are not examined as files (a float block can start like a pickle). Members listed as
    pickled, or not listed, are examined as every member is."""
    names = {info.filename for info in members}
    raw: set[str] = set()
    for info in members:
        match = PAYLOAD_CONFIG.match(info.filename)
        if not match or info.file_size > MAX_PROGRAM_BYTES:
            continue
        try:
            config = json.loads(archive.read(info))["config"]
        except (ValueError, KeyError, TypeError, OSError, RecursionError):
            continue
        folder = f"{match.group(1) or ''}data/{match.group(2)}/"
        for entry in config.values() if isinstance(config, dict) else ():
            if isinstance(entry, dict) and entry.get("use_pickle") is False and \
                    isinstance(entry.get("path_name"), str):
                member = folder + entry["path_name"]
                if member in names:
                    raw.add(member)
    return raw
