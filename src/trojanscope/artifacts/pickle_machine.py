"""A symbolic pickle machine: runs the opcodes on a stack and a memo of inert values.

It never imports or calls anything. It tracks what the real unpickler would import (GLOBAL,
STACK_GLOBAL, INST, EXT) and call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, BUILD), so that names
assembled from memo entries, calls on computed objects and nested pickles are all seen.
"""

from __future__ import annotations

import codecs
import io
from encodings import aliases, normalize_encoding
from typing import Callable

from ..findings import Finding, Location, Rule, Severity, clipped
from .limits import ExpansionLimitExceeded, LimitExceeded, Limits
from .pickle_reader import OpcodeReader, PickleSyntaxError, Skipped
from .policy import GlobalsPolicy, python2_name

UNSAFE_GLOBAL = Rule("pickle.unsafe-global", Severity.CRITICAL,
                     "The pickle imports a known code-execution gadget",
                     "Do not load this file. Ask its author for a safetensors or ONNX export.")
UNKNOWN_GLOBAL = Rule("pickle.unknown-global", Severity.HIGH,
                      "The pickle imports a global that the policy does not allow: loading "
                      "it imports and runs code the file names (torch.load's safe default, "
                      "weights_only, refuses it too)",
                      "Load it only if you trust the named module and the file's author; "
                      "then add the name to an allowlist file (--allow). Better: ask for a "
                      "safetensors or ONNX export.")
DYNAMIC_GLOBAL = Rule("pickle.dynamic-global", Severity.HIGH,
                      "The pickle builds the name of a global at load time",
                      "Do not load this file: legitimate pickles name their globals with "
                      "constant strings.")
INDIRECT_CALL = Rule("pickle.indirect-call", Severity.HIGH,
                     "The pickle calls an object that is computed at load time",
                     "Do not load this file: the called object is hidden from static checks.")
BUILD_ON_GLOBAL = Rule("pickle.build-on-global", Severity.HIGH,
                       "The pickle sets state on a module, class or function",
                       "Do not load this file: BUILD on a global can replace code "
                       "(for example a function's __code__).")
EXTENSION_CODE = Rule("pickle.extension-code", Severity.HIGH,
                      "The pickle imports through the copyreg extension registry",
                      "Do not load this file: what an EXT code imports depends on the loading "
                      "process and cannot be checked.")
NESTED_UNRESOLVED = Rule("pickle.nested-unresolved", Severity.HIGH,
                         "A nested deserialiser is called with data computed at load time",
                         "Do not load this file: the nested payload cannot be examined.")
NESTED_PICKLE = Rule("pickle.nested", Severity.INFO,
                     "The pickle carries a nested serialised object, which was scanned too",
                     "None needed when the nested object has no findings of its own.")
MALFORMED = Rule("pickle.malformed", Severity.MEDIUM,
                 "The pickle stream is truncated or invalid",
                 "Re-download the file; a loader will fail on it.")
MALFORMED_WITH_IMPORTS = Rule("pickle.malformed-with-imports", Severity.HIGH,
                              "A truncated or invalid pickle stream that imports globals",
                              "Do not load this file: an unpickler runs the opcodes before "
                              "it reaches the error.")
FRAME_MISMATCH = Rule("pickle.frame-mismatch", Severity.MEDIUM,
                      "A FRAME opcode's length does not match the opcodes it frames",
                      "Treat the file as tampered with: lying frame lengths are used to "
                      "hide opcodes from scanners.")
RESOURCE_LIMIT = Rule("pickle.resource-limit", Severity.HIGH,
                      "The pickle exceeds a resource limit, so the rest was not examined",
                      "Raise the limit if the file is trusted to be this large; otherwise do "
                      "not load it.")

# Allowed callables that call one of their arguments: (module, name) -> (position of the
# callable, position of its argument tuple, or None: the arguments after the callable).
# Their inner call is judged like any call, so a nested loader reached through them is
# scanned and a computed callable is an indirect call.
APPLIERS = {
    ("torch._utils", "_rebuild_from_type"): (0, 2),      # func(*args)
    ("torch._utils", "_rebuild_from_type_v2"): (0, 2),
    ("torch._tensor", "_rebuild_from_type"): (0, 2),
    ("torch._tensor", "_rebuild_from_type_v2"): (0, 2),
    ("numpy.random._pickle", "__generator_ctor"): (1, None),   # ctor(bit_generator_name)
    ("numpy.random._pickle", "__randomstate_ctor"): (1, None),
}
# Makes a callable that calls its first argument with the rest, and more, when it is called.
PARTIALS = {("functools", "partial"), ("_functools", "partial")}
MAX_WRAPPING = 64  # partials of partials unwrapped before the call counts as hidden
HANDLERS = {"strict", "ignore", "replace", "backslashreplace", "xmlcharrefreplace",
            "namereplace", "surrogateescape", "surrogatepass"}
# Text codecs a nested pickle may be written through, looked up once at import (a scan
# imports nothing); any other codec leaves the bytes unknown, which fails closed.
TEXT_CODECS = {name: codecs.lookup(name) for name in (
    "utf_8", "latin_1", "ascii", "utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le",
    "utf_32_be", "utf_7", "cp1252", "cp437", "raw_unicode_escape", "unicode_escape")}

JOBLIB_WRAPPERS = {("joblib.numpy_pickle", "NumpyArrayWrapper"),
                   ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper")}
PLAIN_PREFIX = 1 << 20  # bytes of a joblib array region also run as pickle.load runs them
KEEP_ITEMS = 256  # items of a list or dict kept for inspection; the rest are only counted

MARK = object()
# Findings that say a stream breaks off: under pickle.load an array region that does so has
# run nothing more than what its other findings name.
JOBLIB_IN_FRAME = Rule(
    "pickle.joblib-array-in-frame", Severity.HIGH,
    "A joblib array sits inside a FRAME: joblib.load reads the array from after the frame and "
    "the rest of the frame as opcodes, other readers read it in place; the two run different "
    "programs",
    "Do not load the file: joblib ends the frame before each array it writes.")
NOT_RUN_RULES = {"pickle.malformed", "pickle.malformed-with-imports", "pickle.frame-mismatch",
                 "pickle.resource-limit"}


class Unknown:
    """A value whose content the machine does not model (a buffer, a persistent id, ...)."""

    __slots__ = ()


UNKNOWN = Unknown()


# Plain classes with slots, not dataclasses: made by the million, and cheap to import.
class Global:
    """A global the unpickler would import."""

    __slots__ = ("module", "name", "offset")

    def __init__(self, module: str, name: str, offset: int):
        self.module, self.name, self.offset = module, name, offset


class Call:
    """The result of a call the unpickler would make, and the state BUILD would set on it."""

    __slots__ = ("func", "args", "offset", "state")

    def __init__(self, func: object, args: object, offset: int):
        self.func, self.args, self.offset, self.state = func, args, offset, None


class Outcome:
    __slots__ = ("findings", "stopped", "imports", "opcodes")

    def __init__(self):
        self.findings: list[Finding] = []
        self.stopped = False  # reached STOP
        self.imports = self.opcodes = 0


NestedScan = Callable[[bytes, Location], None]


class PickleMachine:
    def __init__(self, reader: OpcodeReader, location: Location, policy: GlobalsPolicy,
                 limits: Limits, nested: NestedScan, joblib: bool = True):
        self.joblib = joblib  # read array regions as joblib.load does (else as pickle.load)
        self.named = 0  # globals imported by name (GLOBAL, STACK_GLOBAL, INST)
        self.r = reader
        self.loc = location
        self.policy = policy
        self.limits = limits
        self.nested = nested
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: dict = {}
        self.out = Outcome()
        self._seen: dict[tuple, list] = {}  # (rule, key) -> [finding args, count]
        self.frame_end: int | None = None

    # --- driving -------------------------------------------------------------------------------

    def run(self) -> Outcome:
        ops = _DISPATCH
        budget = self.limits.max_opcodes
        read = self.r.next
        count = 0
        try:
            while True:
                name, arg, offset = read()
                count += 1
                if self.frame_end is not None:
                    self._check_frame(name, offset)
                if name == "STOP":
                    self.out.stopped = True
                    if self.frame_end is not None and self.r.pos != self.frame_end:
                        self._add(FRAME_MISMATCH, f"the last FRAME declares it ends at byte "
                                  f"{self.frame_end}, but STOP ends at {self.r.pos}", offset,
                                  {"frame_end": self.frame_end})
                    break
                handler = ops.get(name)
                if handler is not None:
                    handler(self, arg, offset)
                if not count & 0xFFF:
                    self.out.opcodes = count
                    self._check_limits(budget)
        except PickleSyntaxError as exc:
            self._malformed(str(exc), exc.offset)
        except ExpansionLimitExceeded:
            self._flush()  # keep what was found before the whole file stops
            raise
        except LimitExceeded as exc:
            self._add(RESOURCE_LIMIT, f"stopped examining the pickle: {exc}",
                      self.r.pos, {"limit": exc.what})
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            self._malformed(f"invalid opcode sequence ({_describe(exc)})", self.r.pos)
        self.out.opcodes = count
        self._flush()
        return self.out

    def _check_limits(self, budget: int) -> None:
        if self.out.opcodes > budget:
            raise LimitExceeded("opcode count", budget)
        if len(self.stack) + len(self.memo) > self.limits.max_stack:
            raise LimitExceeded("values on the stack and memo", self.limits.max_stack)

    def _check_frame(self, name: str, offset: int) -> None:
        end = self.frame_end
        if offset == end:
            self.frame_end = None
        elif offset > end or self.r.pos > end or name == "FRAME":
            self._add(FRAME_MISMATCH, f"a FRAME declares it ends at byte {end}, but an opcode "
                      f"spans {offset}..{self.r.pos}", offset, {"frame_end": end})
            self.frame_end = None

    def _malformed(self, message: str, offset: int) -> None:
        if self.out.imports:
            self._add(MALFORMED_WITH_IMPORTS, f"{message}, after {self.out.imports} import(s)",
                      offset, {})
        else:
            self._add(MALFORMED, message, offset, {})

    def _add(self, rule: Rule, message: str, offset: int, evidence: dict, key: object = None,
             severity: Severity | None = None) -> None:
        slot = self._seen.get((rule.id, key if key is not None else offset))
        if slot is not None:  # the same global imported again: count it, keep the first place
            slot[1] += 1
            return
        self._seen[(rule.id, key if key is not None else offset)] = [
            (rule, message, offset, evidence, severity), 1]

    def _flush(self) -> None:
        for (rule, message, offset, evidence, severity), count in self._seen.values():
            if count > 1:
                evidence = {**evidence, "occurrences": count}
            self.out.findings.append(rule.finding(message, self.loc.at(offset), evidence,
                                                  severity))
        self._seen.clear()

    # --- stack helpers -------------------------------------------------------------------------

    def pop_mark(self) -> list:
        items = self.stack
        self.stack = self.marks.pop()
        return items

    def import_global(self, module: str, name: str, offset: int) -> Global:
        if not all(part.isidentifier() for text in (module, name) for part in text.split(".")):
            # The unpickler's import fails here and nothing after it runs (text read as
            # protocol 0: "import {" is INST of module "mport {").
            raise PickleSyntaxError(f"cannot import {clipped(module, 40)!r}, "
                                    f"{clipped(name, 40)!r}: not Python names", offset)
        self.out.imports += 1
        self.named += 1
        verdict = self.policy.classify(module, name)
        if not verdict.allowed:
            rule = UNSAFE_GLOBAL if verdict.severity == Severity.CRITICAL else UNKNOWN_GLOBAL
            self._add(rule, f"imports {module}.{name}: {verdict.reason}", offset,
                      {"module": module, "name": name, "matched": verdict.matched},
                      key=(module, name), severity=verdict.severity)
        return Global(module, name, offset)

    def call(self, func: object, args: object, offset: int, opcode: str) -> object:
        made = Call(func, args, offset)
        wrapped, called = func, args
        for _ in range(MAX_WRAPPING):  # a partial called: its callable called, more arguments
            if not (isinstance(wrapped, Call) and _named(wrapped.func) in PARTIALS):
                break
            extra = called if isinstance(called, tuple) else (UNKNOWN,)
            inner, bound = _partial_parts(wrapped)
            wrapped, called = inner, bound + extra
            opcode = f"{opcode} of a functools.partial"
        if not isinstance(wrapped, Global):
            self._add(INDIRECT_CALL, f"{opcode} calls {_kind(wrapped)}, not a named global",
                      offset, {"opcode": opcode})
            return made
        module, name = python2_name(wrapped.module, wrapped.name)
        if self.policy.is_nested_loader(module, name):
            self._nested(wrapped, called, offset)
        elif (module, name) == ("_codecs", "encode") and wrapped is func:
            encoded = _encoded(called, self.limits.max_item_bytes)
            if encoded is None or not self.r.hold(len(encoded)):
                return made
            return encoded
        elif (module, name) in APPLIERS and isinstance(called, tuple):
            at, rest = APPLIERS[(module, name)]
            if len(called) > at:
                inner = called[rest] if rest is not None and len(called) > rest else \
                    (called[:at] if rest is None else UNKNOWN)
                self.call(called[at], inner if isinstance(inner, tuple) else (UNKNOWN,),
                          offset, f"{module}.{name}")
        return made

    def _nested(self, func: Global, args: object, offset: int) -> None:
        data = args[0] if isinstance(args, tuple) and args else None
        if isinstance(data, str):
            data = data.encode("latin-1", "replace")
        if not isinstance(data, (bytes, bytearray)):
            self._add(NESTED_UNRESOLVED, f"{func.module}.{func.name} is called with "
                      f"{_kind(data)}, which cannot be examined", offset, {})
            return
        where = self.loc.inside(f"<nested pickle at {offset}>")
        self._add(NESTED_PICKLE, f"{func.module}.{func.name} deserialises {len(data):,} bytes; "
                  "scanned in place", offset, {"bytes": len(data)})
        self.nested(bytes(data), where)

    def build(self, state: object, offset: int) -> None:
        target = self.stack[-1]
        if isinstance(target, Global):
            self._add(BUILD_ON_GLOBAL, f"BUILD sets state on {target.module}.{target.name} "
                      "itself", offset, {"module": target.module, "name": target.name})
        elif self.joblib and isinstance(target, Call) and isinstance(target.func, Global) and \
                (target.func.module, target.func.name) in JOBLIB_WRAPPERS:
            self._joblib_array(state, offset)

    def _joblib_array(self, state: object, offset: int) -> None:
        """joblib writes array bytes right after the wrapper's BUILD; the loader reads past them."""
        info = dict(state) if isinstance(state, _Dict) else {}
        dtype = info.get("dtype")
        shape = info.get("shape")
        size = _dtype_size(dtype)
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape) \
                or size is None:
            raise PickleSyntaxError("joblib array wrapper whose size cannot be worked out", offset)
        if self.frame_end is not None and self.frame_end != self.r.pos:
            # joblib's unpickler reads the array from its file, which is past the frame
            self._add(JOBLIB_IN_FRAME, f"the array's BUILD at byte {offset} is inside a FRAME "
                      f"that ends at byte {self.frame_end}", offset,
                      {"frame_end": self.frame_end})
        if size == 0 and self.frame_end == self.r.pos:
            self.frame_end = None
        if size == 0:  # object array: a complete pickle follows, read by a fresh unpickler
            inner = PickleMachine(self.r, self.loc, self.policy, self.limits, self.nested)
            outcome = inner.run()
            self.out.findings.extend(outcome.findings)
            self.out.imports += outcome.imports
            if not outcome.stopped:
                raise PickleSyntaxError("object array inside joblib file is truncated", self.r.pos)
            return
        if self.frame_end == self.r.pos:  # joblib ends the frame before the raw bytes
            self.frame_end = None
        count = 1
        for d in shape:
            count *= d
        lead = b""  # the padding joblib reads first; pickle.load reads it as opcodes
        if info.get("numpy_array_alignment_bytes") is not None:
            lead = self.r._read(1)
            lead += self.r._read(lead[0])
        self._as_plain_pickle(lead, count * size, offset)


    def _as_plain_pickle(self, lead: bytes, size: int, offset: int) -> None:
        """joblib.load reads `lead` and the next `size` bytes as the array; pickle.load of the
        same file reads them as opcodes, until the first that fails. A file must be safe under
        both: the region's start is run as a pickle too, and what it imports is reported."""
        prefix = lead + (self.r._read(min(size, PLAIN_PREFIX)) if size else b"")
        inner = PickleMachine(OpcodeReader(io.BytesIO(prefix), self.limits, self.r.pos -
                                           len(prefix), self.r.shared), self.loc, self.policy,
                              self.limits, self.nested, joblib=False)
        try:
            outcome = inner.run()
        finally:
            inner.r.release()
        if inner.named:  # a region that names no global cannot run anything
            self.out.findings.extend(f for f in outcome.findings if f.rule not in NOT_RUN_RULES)
        if size > PLAIN_PREFIX and inner.named and not outcome.stopped and \
                inner.r.pos >= self.r.pos:
            self._add(MALFORMED_WITH_IMPORTS, f"a joblib array region of {size:,} bytes still "
                      f"reads as pickle opcodes after {PLAIN_PREFIX:,}: pickle.load of this "
                      "file would run what it holds", offset, {})
        self.r.skip(size + len(lead) - len(prefix))


class _Dict(list):
    """A dict under construction: a list of (key, value) pairs, so unhashable keys are fine."""


def _dtype_size(dtype: object) -> int | None:
    """Item size in bytes of a pickled numpy dtype; 0 for object dtypes; None if unknown."""
    if not (isinstance(dtype, Call) and isinstance(dtype.args, tuple) and dtype.args
            and isinstance(dtype.args[0], str)):
        return None
    code = dtype.args[0]
    state = dtype.state
    if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        return state[5]
    if code[:1] == "O":
        return 0
    digits = code.lstrip("<>|=").lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ?")
    return int(digits) if digits.isdigit() and int(digits) > 0 else None


def _partial_parts(made: Call) -> tuple[object, tuple]:
    """(callable, bound arguments) of a partial: as made, or as BUILD set them (its
    __setstate__ takes (func, args, keywords, dict) and replaces both)."""
    state = made.state
    if state is not None:
        if isinstance(state, tuple) and len(state) >= 2:
            return state[0], state[1] if isinstance(state[1], tuple) else (UNKNOWN,)
        return UNKNOWN, ()
    if isinstance(made.args, tuple) and made.args:
        return made.args[0], made.args[1:]
    return UNKNOWN, ()


def _named(value: object) -> tuple[str, str] | None:
    return python2_name(value.module, value.name) if isinstance(value, Global) else None


def _encoded(args: object, max_bytes: int) -> bytes | None:
    """What `_codecs.encode(text, encoding="utf-8", errors="strict")` returns, for text
    encodings (how protocol 2 writes bytes: latin-1); None when it is not worked out here."""
    if not (isinstance(args, tuple) and args and isinstance(args[0], str)):
        return None
    encoding, errors = (list(args[1:3]) + ["utf-8", "strict"][len(args) - 1:])[:2]
    if not (isinstance(encoding, str) and isinstance(errors, str) and
            4 * len(args[0]) <= max_bytes and errors in HANDLERS):
        return None
    name = normalize_encoding(encoding.lower())
    info = TEXT_CODECS.get(aliases.aliases.get(name, name))
    if info is None:
        return None
    try:
        return info.encode(args[0], errors)[0]
    except (UnicodeError, TypeError, ValueError):
        return None


def _kind(value: object) -> str:
    if isinstance(value, Call):
        return "the result of another call"
    if isinstance(value, Global):
        return f"{value.module}.{value.name}"
    if value is UNKNOWN or isinstance(value, Skipped):
        return "a value that cannot be examined"
    return f"a {type(value).__name__}"


def _describe(exc: Exception) -> str:
    return {IndexError: "stack underflow", KeyError: "missing memo entry or mark"}.get(
        type(exc), f"{type(exc).__name__}: {exc}")


# --- opcode handlers -------------------------------------------------------------------------


def _push(m: PickleMachine, arg, offset):
    m.stack.append(UNKNOWN if isinstance(arg, Skipped) else arg)


def _push_const(value):
    return lambda m, arg, offset: m.stack.append(value)


def _mark(m, arg, offset):
    m.marks.append(m.stack)
    m.stack = []


def _pop(m, arg, offset):
    if m.stack:
        m.stack.pop()
    else:
        m.pop_mark()


def _tuple_n(n):
    def op(m, arg, offset):
        if n:
            items = tuple(m.stack[-n:])
            if len(items) != n:
                raise IndexError
            del m.stack[-n:]
            m.stack.append(items)
        else:
            m.stack.append(())
    return op


# Pop the mark before touching m.stack: pop_mark replaces the list that m.stack names.
def _tuple(m, arg, offset):
    items = tuple(m.pop_mark()[:KEEP_ITEMS])
    m.stack.append(items)


def _list(m, arg, offset):
    items = m.pop_mark()[:KEEP_ITEMS]
    m.stack.append(items)


def _dict(m, arg, offset):
    items = m.pop_mark()
    m.stack.append(_Dict(zip(items[0::2], items[1::2])))


def _append(m, arg, offset):
    value = m.stack.pop()
    _extend(m.stack[-1], [value])


def _extend(target, items):
    if isinstance(target, list) and not isinstance(target, _Dict) and len(target) < KEEP_ITEMS:
        target.extend(items[: KEEP_ITEMS - len(target)])


def _setitem(m, arg, offset):
    value = m.stack.pop()
    key = m.stack.pop()
    _set(m.stack[-1], [key, value])


def _setitems(m, arg, offset):
    items = m.pop_mark()
    _set(m.stack[-1], items)


def _set(target, items):
    if isinstance(target, _Dict) and len(target) < KEEP_ITEMS:
        target.extend(zip(items[0::2], items[1::2]))


def _additems(m, arg, offset):
    m.pop_mark()


def _frozenset(m, arg, offset):
    m.pop_mark()
    m.stack.append(UNKNOWN)  # after pop_mark, on the outer stack


def _put(m, arg, offset):
    m.memo[arg] = m.stack[-1]


def _memoize(m, arg, offset):
    m.memo[len(m.memo)] = m.stack[-1]


def _get(m, arg, offset):
    m.stack.append(m.memo[arg])


def _global(m, arg, offset):
    module, name = arg
    m.stack.append(m.import_global(module, name, offset))


def _stack_global(m, arg, offset):
    name = m.stack.pop()
    module = m.stack.pop()
    if isinstance(module, str) and isinstance(name, str):
        m.stack.append(m.import_global(module, name, offset))
        return
    m.out.imports += 1
    m._add(DYNAMIC_GLOBAL, f"STACK_GLOBAL takes its module and name from {_kind(module)} and "
           f"{_kind(name)}", offset, {})
    m.stack.append(UNKNOWN)


def _inst(m, arg, offset):
    module, name = arg
    func = m.import_global(module, name, offset)
    args = tuple(m.pop_mark())
    m.stack.append(m.call(func, args, offset, "INST"))


def _obj(m, arg, offset):
    items = m.pop_mark()
    m.stack.append(m.call(items[0], tuple(items[1:]), offset, "OBJ"))


def _reduce(m, arg, offset):
    args = m.stack.pop()
    func = m.stack.pop()
    m.stack.append(m.call(func, args, offset, "REDUCE"))


def _newobj(m, arg, offset):
    args = m.stack.pop()
    cls = m.stack.pop()
    m.stack.append(m.call(cls, args, offset, "NEWOBJ"))


def _newobj_ex(m, arg, offset):
    m.stack.pop()  # kwargs
    args = m.stack.pop()
    cls = m.stack.pop()
    m.stack.append(m.call(cls, args, offset, "NEWOBJ_EX"))


def _build(m, arg, offset):
    state = m.stack.pop()
    target = m.stack[-1]
    if isinstance(target, Call):
        target.state = state
    m.build(state, offset)


def _ext(m, arg, offset):
    m.out.imports += 1
    m._add(EXTENSION_CODE, f"EXT opcode imports extension code {arg}", offset, {"code": arg})
    m.stack.append(UNKNOWN)


def _persid(m, arg, offset):
    m.stack.append(UNKNOWN)


def _binpersid(m, arg, offset):
    m.stack.pop()
    m.stack.append(UNKNOWN)


def _dup(m, arg, offset):
    m.stack.append(m.stack[-1])


def _frame(m, arg, offset):
    m.frame_end = m.r.pos + arg


def _proto(m, arg, offset):
    if not 0 <= arg <= 5:
        raise PickleSyntaxError(f"unsupported pickle protocol {arg}", offset)


_DISPATCH: dict[str, Callable] = {
    "MARK": _mark, "POP": _pop, "POP_MARK": lambda m, a, o: m.pop_mark(), "DUP": _dup,
    "NONE": _push_const(None), "NEWTRUE": _push_const(True), "NEWFALSE": _push_const(False),
    "EMPTY_TUPLE": _tuple_n(0), "TUPLE1": _tuple_n(1), "TUPLE2": _tuple_n(2),
    "TUPLE3": _tuple_n(3), "TUPLE": _tuple,
    "EMPTY_LIST": lambda m, a, o: m.stack.append([]), "LIST": _list,
    "APPEND": _append, "APPENDS": lambda m, a, o: _extend_after_mark(m),
    "EMPTY_DICT": lambda m, a, o: m.stack.append(_Dict()), "DICT": _dict,
    "SETITEM": _setitem, "SETITEMS": _setitems,
    "EMPTY_SET": lambda m, a, o: m.stack.append(UNKNOWN), "ADDITEMS": _additems,
    "FROZENSET": _frozenset,
    "PUT": _put, "BINPUT": _put, "LONG_BINPUT": _put, "MEMOIZE": _memoize,
    "GET": _get, "BINGET": _get, "LONG_BINGET": _get,
    "GLOBAL": _global, "STACK_GLOBAL": _stack_global, "INST": _inst, "OBJ": _obj,
    "REDUCE": _reduce, "NEWOBJ": _newobj, "NEWOBJ_EX": _newobj_ex, "BUILD": _build,
    "EXT1": _ext, "EXT2": _ext, "EXT4": _ext,
    "PERSID": _persid, "BINPERSID": _binpersid,
    "NEXT_BUFFER": _push_const(UNKNOWN), "READONLY_BUFFER": lambda m, a, o: None,
    "FRAME": _frame, "PROTO": _proto,
}
for _name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING",
              "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
              "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
              "FLOAT", "BINFLOAT"):
    _DISPATCH[_name] = _push


def _extend_after_mark(m):
    items = m.pop_mark()
    _extend(m.stack[-1], items)
