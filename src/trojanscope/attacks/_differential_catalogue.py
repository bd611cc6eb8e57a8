"""What the differential generator calls: real callables of the standard library, NumPy, torch,
scikit-learn and joblib, with arguments that aim every command and file write at `CANARY`
(a name relative to the loading process's working directory), and the tricks that reach and
invoke them.

Programs are a small tree of tuples (the IR below) that `differential._Encoder` writes as
opcodes; nothing here imports or pickles the callables it names.
"""

from __future__ import annotations

import _compat_pickle
import random
from dataclasses import dataclass, field
from typing import Callable

CANARY = "canary"

# --- the IR ------------------------------------------------------------------------------------
Node = tuple


def C(value: object) -> Node:  # a constant: str, bytes, int, float, bool or None
    return ("const", value)


def G(module: str, name: str) -> Node:
    return ("global", module, name)


def T(*items: Node) -> Node:
    return ("tuple", items)


def L(*items: Node) -> Node:
    return ("list", items)


def D(*pairs: tuple[Node, Node]) -> Node:
    return ("dict", pairs)


def CALL(func: Node, *args: Node) -> Node:
    return ("call", func, args)


def NEW(cls: Node, args: tuple[Node, ...], kwargs: tuple[tuple[str, Node], ...] = ()) -> Node:
    """cls.__new__(cls, *args, **kwargs): NEWOBJ, NEWOBJ_EX or copyreg's helpers."""
    return ("new", cls, args, kwargs)


def BUILD(obj: Node, state: Node) -> Node:
    return ("build", obj, state)


def SETITEMS(obj: Node, pairs: tuple[tuple[Node, Node], ...]) -> Node:
    return ("setitems", obj, pairs)


def SEQ(*nodes: Node) -> Node:
    """Each node in turn, all but the last popped."""
    return ("seq", nodes)


def PERSID(node: Node) -> Node:
    return ("persid", node)


def S(*texts: str) -> tuple[Node, ...]:
    return tuple(C(t) for t in texts)


@dataclass
class Ctx:
    """What an argument builder may use: the random source, the protocol, and `inner(kind)`,
    which returns the bytes of a nested harmful file ("pickle", "npy" or "torch-zip")."""

    rng: random.Random
    proto: int
    inner: Callable[[str], bytes]
    uses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    module: str
    name: str  # may be dotted: "Path.write_text" is an attribute of pathlib.Path
    args: Callable[[Ctx], tuple[Node, ...]]
    harmful: bool
    is_class: bool = False
    aliases: tuple[tuple[str, str], ...] = ()  # other (module, name) pairs for the same object
    kwargs: tuple[tuple[str, object], ...] = ()  # keyword constants: passed through a partial
    weight: float = 1.0
    nested: bool = False  # its argument is a nested harmful file
    raises: bool = False  # always raises (the load stops there): placed last


# --- arguments aimed at the canary -------------------------------------------------------------
def cmd(c: Ctx) -> str:
    return c.rng.choice([f"touch {CANARY}", f"echo x > {CANARY}", f"mkdir {CANARY}",
                         f": > {CANARY}", f"date > {CANARY}"])


def argv(c: Ctx) -> Node:
    return c.rng.choice([L(*S("touch", CANARY)), L(*S("sh", "-c", cmd(c))),
                         L(*S("mkdir", CANARY))])


def code(c: Ctx) -> str:
    return c.rng.choice([f"open({CANARY!r}, 'w').write('x')",
                         f"__import__('os').system('touch {CANARY}')",
                         f"import pathlib; pathlib.Path({CANARY!r}).touch()"])


def expr(c: Ctx) -> str:
    return c.rng.choice([f"open({CANARY!r}, 'w')", f"__import__('os').system('touch {CANARY}')",
                         f"__import__('pathlib').Path({CANARY!r}).mkdir()"])


def _path(c: Ctx) -> Node:
    return CALL(G("pathlib", c.rng.choice(["Path", "PosixPath"])), C(CANARY))


def _bytes_io(c: Ctx, kind: str) -> Node:
    return CALL(G(c.rng.choice(["io", "_io"]), "BytesIO"), C(c.inner(kind)))


def _thread_class(c: Ctx) -> str:
    return c.rng.choice(["threading", "sklearn.callback._progressbar"])


def _dict_config(c: Ctx) -> tuple[Node, ...]:
    if c.rng.random() < 0.5:
        handler = D((C("()"), C("os.system")), (C("command"), C(cmd(c))))
    else:
        handler = D((C("class"), C("logging.FileHandler")), (C("filename"), C(CANARY)))
    return (D((C("version"), C(1)), (C("handlers"), D((C("h"), handler)))),)


def _one(*args: Node) -> Callable[[Ctx], tuple[Node, ...]]:
    return lambda c: args


FILE = _one(C(CANARY))
HARMFUL = [
    Entry("os", "system", lambda c: (C(cmd(c)),), True, weight=2, aliases=(
        ("posix", "system"), ("pathlib", "os.system"), ("shutil", "os.system"),
        ("subprocess", "os.system"), ("tempfile", "_os.system"),
        ("torch.serialization", "os.system"))),
    Entry("os", "popen", lambda c: (C(cmd(c)),), True),
    Entry("subprocess", "call", lambda c: (argv(c),), True),
    Entry("subprocess", "run", lambda c: (argv(c),), True),
    Entry("subprocess", "run", lambda c: (C(cmd(c)),), True, kwargs=(("shell", True),)),
    Entry("subprocess", "check_call", lambda c: (argv(c),), True),
    Entry("subprocess", "check_output", lambda c: (argv(c),), True,
          aliases=(("sklearn.utils._testing", "check_output"),)),
    Entry("subprocess", "Popen", lambda c: (argv(c),), True, is_class=True),
    Entry("subprocess", "getoutput", lambda c: (C(cmd(c)),), True),
    Entry("subprocess", "getstatusoutput", lambda c: (C(cmd(c)),), True),
    Entry("os", "spawnlp", _one(C(0), *S("touch", "touch", CANARY)), True),
    Entry("os", "spawnv", _one(C(0), C("/usr/bin/touch"), L(*S("touch", CANARY))), True),
    Entry("os", "posix_spawnp", _one(C("touch"), L(*S("touch", CANARY)), D()), True),
    Entry("pydoc", "pipepager", lambda c: (C("x"), C(cmd(c))), True),
    Entry("builtins", "exec", lambda c: (C(code(c)),), True, weight=2),
    Entry("builtins", "eval", lambda c: (C(expr(c)),), True),
    Entry("builtins", "exec", lambda c: (CALL(G("builtins", "compile"), C(code(c)),
                                              *S("<x>", "exec")),), True),
    Entry("runpy", "_run_code", lambda c: (C(code(c)), D()), True),
    Entry("timeit", "timeit", lambda c: (C(code(c)), C("pass"), G("time", "perf_counter"),
                                         C(1)), True),
    Entry("cProfile", "run", lambda c: (C(code(c)),), True, aliases=(("profile", "run"),)),
    Entry("code", "InteractiveInterpreter.runsource",
          lambda c: (CALL(G("code", "InteractiveInterpreter"), C(None)), C(code(c))), True),
    Entry("logging.config", "dictConfig", _dict_config, True),
    Entry("logging", "FileHandler", FILE, True, is_class=True,
          aliases=(("logging.handlers", "RotatingFileHandler"),)),
    Entry("logging", "basicConfig", _one(), True, kwargs=(("filename", CANARY),)),
    Entry("shutil", "copyfile", _one(*S("/etc/passwd", CANARY)), True,
          aliases=(("shutil", "copy"), ("shutil", "copy2"))),
    Entry("shutil", "make_archive", _one(*S(CANARY, "zip")), True),
    Entry("shutil", "rmtree", _one(C(CANARY + "-missing")), True),
    Entry("shutil", "move", _one(*S(CANARY + "-missing", CANARY)), True),
    Entry("os", "remove", FILE, True, aliases=(("os", "unlink"), ("posix", "remove"))),
    Entry("os", "rename", _one(*S(CANARY + "-missing", CANARY)), True),
    Entry("os", "mkdir", FILE, True, aliases=(("os", "makedirs"), ("posix", "mkdir"))),
    Entry("os", "symlink", _one(*S("/etc/passwd", CANARY)), True),
    Entry("os", "open", _one(C(CANARY), C(65)), True),  # O_WRONLY | O_CREAT
    Entry("os", "putenv", _one(*S("TROJANSCOPE_CANARY", "1")), True),
    Entry("builtins", "open", _one(*S(CANARY, "w")), True,
          aliases=(("io", "open"), ("_io", "open"), ("codecs", "open"))),
    Entry("io", "FileIO", _one(*S(CANARY, "w")), True, is_class=True,
          aliases=(("_io", "FileIO"),)),
    Entry("pathlib", "Path.write_text", lambda c: (_path(c), C("x")), True,
          aliases=(("sklearn.datasets._base", "Path.write_text"),)),
    Entry("pathlib", "Path.touch", lambda c: (_path(c),), True,
          aliases=(("sklearn.utils.discovery", "Path.touch"),)),
    Entry("pathlib", "Path.mkdir", lambda c: (_path(c),), True,
          aliases=(("sklearn.datasets._openml", "Path.mkdir"),)),
    Entry("tempfile", "mkstemp", _one(*S("", CANARY, ".")), True,
          aliases=(("tempfile", "mkdtemp"),)),
    Entry("tempfile", "NamedTemporaryFile", _one(
        *S("w"), C(-1), C(None), C(None), *S("", CANARY, "."), C(False)), True,
        aliases=(("sklearn.datasets._base", "NamedTemporaryFile"),), weight=2),
    Entry("tempfile", "TemporaryDirectory", _one(*S("", CANARY, ".")), True, is_class=True,
          aliases=(("sklearn.datasets._covtype", "TemporaryDirectory"),
                   ("sklearn.datasets._openml", "TemporaryDirectory")), weight=2),
    Entry("gzip", "GzipFile", _one(*S(CANARY, "wb")), True, is_class=True, weight=2,
          aliases=(("sklearn.datasets._covtype", "GzipFile"),
                   ("sklearn.datasets._kddcup99", "GzipFile"),
                   ("sklearn.datasets._rcv1", "GzipFile"))),
    Entry("bz2", "open", _one(*S(CANARY, "wb")), True, aliases=(("lzma", "open"),)),
    Entry("zipfile", "ZipFile", _one(*S(CANARY, "w")), True, is_class=True),
    Entry("tarfile", "open", _one(*S(CANARY, "w")), True),
    Entry("dbm.dumb", "open", _one(*S(CANARY, "c")), True),
    Entry("shelve", "open", FILE, True),
    Entry("sqlite3", "connect", FILE, True),
    Entry("mailbox", "mbox", FILE, True, is_class=True, aliases=(("mailbox", "Maildir"),)),
    Entry("multiprocessing.connection", "Client", _one(T(C("127.0.0.1"), C(9))), True,
          aliases=(("sklearn.callback._transport", "Client"),)),
    Entry("multiprocessing.connection", "Listener", _one(T(C("127.0.0.1"), C(0))), True,
          is_class=True, aliases=(("sklearn.callback._transport", "Listener"),)),
    Entry("socket", "create_connection", _one(T(C("127.0.0.1"), C(9))), True),
    Entry("socket", "gethostbyname", _one(C("localhost")), True),
    Entry("webbrowser", "open", _one(C("http://127.0.0.1:9/")), True),
    Entry("ctypes", "CDLL", _one(C(None)), True, is_class=True),
    Entry("ctypes.util", "find_library", _one(C("c")), True),
    Entry("numpy", "save", _one(C(CANARY), L(C(1), C(2))), True,
          aliases=(("numpy", "savetxt"),)),
    Entry("numpy", "memmap", _one(*S(CANARY, "uint8", "w+"), C(0), T(C(4))), True,
          is_class=True),
    Entry("numpy.lib.format", "open_memmap", _one(*S(CANARY, "w+", "uint8"), T(C(4))), True),
    Entry("numpy", "ndarray.tofile", _one(CALL(G("numpy", "zeros"), C(2)), C(CANARY)), True),
    Entry("torch", "save", _one(L(C(1)), C(CANARY)), True),
    Entry("joblib", "dump", _one(L(C(1)), C(CANARY)), True),
    Entry("joblib", "Memory", FILE, True, is_class=True,
          aliases=(("sklearn.datasets._lfw", "Memory"),)),
    Entry("pickle", "loads", lambda c: (C(c.inner("pickle")),), True, weight=2,
          aliases=(("_pickle", "loads"),), nested=True),
    Entry("pickle", "load", lambda c: (_bytes_io(c, "pickle"),), True, nested=True),
    Entry("torch.storage", "_load_from_bytes", lambda c: (C(c.inner("pickle")),), True,
          weight=2, nested=True),
    Entry("joblib", "load", lambda c: (_bytes_io(c, "pickle"),), True, nested=True),
    Entry("numpy", "load", lambda c: (_bytes_io(c, "npy"), C(None), C(True)), True, nested=True),
    Entry("torch", "load", lambda c: (_bytes_io(c, "torch-zip"),), True,
          kwargs=(("weights_only", False),), nested=True),
    Entry("threading", "Thread.run", lambda c: (CALL(
        G(_thread_class(c), "Thread"), C(None), G("os", "system"), C(None), T(C(cmd(c)))),),
        True, aliases=(("sklearn.callback._progressbar", "Thread.run"),)),
]

HARMLESS = [
    Entry("collections", "OrderedDict", _one(), False, is_class=True),
    Entry("builtins", "set", _one(L(C(1), C(2))), False, is_class=True,
          aliases=(("builtins", "frozenset"), ("builtins", "list"), ("builtins", "tuple"))),
    Entry("datetime", "date", _one(C(2020), C(1), C(2)), False, is_class=True),
    Entry("datetime", "timedelta", _one(C(1)), False, is_class=True),
    Entry("decimal", "Decimal", _one(C("1.5")), False, is_class=True),
    Entry("fractions", "Fraction", _one(C(1), C(3)), False, is_class=True),
    Entry("uuid", "UUID", _one(C("12345678123456781234567812345678")), False, is_class=True),
    Entry("pathlib", "PurePosixPath", _one(C("a")), False, is_class=True,
          aliases=(("pathlib", "Path"),)),
    Entry("re", "_compile", _one(C("a+"), C(0)), False),
    Entry("numpy", "dtype", _one(C("f4")), False, is_class=True),
    Entry("torch", "Size", _one(T(C(2), C(3))), False, is_class=True),
    Entry("torch", "device", _one(C("cpu")), False, is_class=True),
    Entry("torch.nn.modules.linear", "Linear", _one(C(2), C(2)), False, is_class=True,
          aliases=(("torch.nn.modules.linear", "Identity"),)),
    Entry("sklearn.linear_model._logistic", "LogisticRegression", _one(), False,
          is_class=True, aliases=(("sklearn.preprocessing._data", "StandardScaler"),)),
    Entry("numpy.random._pickle", "__randomstate_ctor", _one(C("MT19937")), False),
    # Not on the allowlist, harmless all the same: "unknown global that did nothing".
    Entry("collections", "ChainMap", _one(), False, is_class=True),
    Entry("math", "sqrt", _one(C(2.0)), False, aliases=(("math", "floor"),)),
    Entry("statistics", "mean", _one(L(C(1), C(2))), False),
    Entry("textwrap", "dedent", _one(C(" x")), False),
    Entry("json", "loads", _one(C('{"a": 1}')), False),
    Entry("base64", "b64decode", _one(C("eA==")), False),
    Entry("binascii", "hexlify", _one(C(b"x")), False),
    Entry("zlib", "crc32", _one(C(b"x")), False),
    Entry("copy", "deepcopy", _one(L(C(1))), False),
    Entry("heapq", "nlargest", _one(C(1), L(C(1), C(2))), False),
    Entry("struct", "pack", _one(C("<I"), C(1)), False),
    Entry("colorsys", "rgb_to_hsv", _one(C(0.1), C(0.2), C(0.3)), False),
    Entry("string", "capwords", _one(C("a b")), False),
    Entry("ast", "literal_eval", _one(C("[1, 2]")), False),
    Entry("numpy", "zeros", _one(C(3)), False, aliases=(("numpy", "arange"),)),
    Entry("numpy", "array", _one(L(C(1), C(2))), False),
    Entry("torch", "zeros", _one(C(2)), False, aliases=(("torch", "ones"),)),
    Entry("torch", "tensor", _one(L(C(1.0))), False),
    Entry("joblib", "hash", _one(L(C(1))), False),
    # On the critical list, harmless in this use.
    Entry("builtins", "print", _one(C("x")), False),
    Entry("builtins", "getattr", _one(C("abc"), C("upper")), False),
    Entry("os", "getcwd", _one(), False),
    Entry("posixpath", "join", _one(*S("a", "b")), False, aliases=(("os", "path.join"),)),
    Entry("shutil", "which", _one(C("sh")), False),
    Entry("operator", "add", _one(C(1), C(2)), False),
    Entry("io", "BytesIO", _one(C(b"x")), False, is_class=True),
    Entry("numpy", "load", _one(C("/nonexistent/x.npy")), False, raises=True),
    Entry("torch", "load", _one(C("/nonexistent/x.pt")), False, raises=True),
    Entry("platform", "system", _one(), False),
]


# --- reaching a callable -----------------------------------------------------------------------
ALWAYS_LOADED = {"os", "posix", "builtins", "sys", "subprocess", "io", "pickle", "pathlib"}
_PY2_MODULES: dict[str, list[str]] = {}
for _old, _new in _compat_pickle.IMPORT_MAPPING.items():
    _PY2_MODULES.setdefault(_new, []).append(_old)
_PY2_NAMES: dict[tuple[str, str], list[tuple[str, str]]] = {}
for _old_pair, _new_pair in _compat_pickle.NAME_MAPPING.items():
    _PY2_NAMES.setdefault(_new_pair, []).append(_old_pair)


def _getattr(c: Ctx, obj: Node, name: str) -> Node:
    way = c.rng.randrange(2)
    if way == 0:
        return CALL(G("builtins", "getattr"), obj, C(name))
    return CALL(CALL(G("operator", "attrgetter"), C(name)), obj)


def _module(c: Ctx, module: str) -> Node:
    ways = ["import_module"]
    if "." not in module:
        ways.append("__import__")
    if module in ALWAYS_LOADED:
        ways.append("sys.modules")
    way = c.rng.choice(ways)
    if way == "__import__":
        return CALL(G("builtins", "__import__"), C(module))
    if way == "sys.modules":
        return CALL(G("operator", "getitem"), G("sys", "modules"), C(module))
    return CALL(G("importlib", "import_module"), C(module))


def _named(c: Ctx, module: str, name: str) -> Node:
    """A global, written so that this protocol's loader resolves it: a dotted name needs
    protocol 4; below it the attributes are walked with getattr or attrgetter."""
    head, *rest = name.split(".")
    if rest and c.proto >= 4 and c.rng.random() < 0.7:
        return G(module, name)
    node = G(module, head)
    if c.proto < 3 and c.rng.random() < 0.5:
        old = _PY2_NAMES.get((module, head)) or [(m, head) for m in _PY2_MODULES.get(module, ())]
        if old:
            node = G(*c.rng.choice(old))
    for part in rest:
        node = _getattr(c, node, part)
    return node


def reach(c: Ctx, entry: Entry) -> Node:
    """A node that evaluates to the entry's callable, by one of several routes."""
    module, name = entry.module, entry.name
    if entry.aliases and c.rng.random() < 0.4:
        module, name = c.rng.choice(entry.aliases)
    c.uses.append(f"{module}.{name}")
    if "." not in name and c.rng.random() < 0.15:
        return _getattr(c, _module(c, module), name)
    return _named(c, module, name)


# --- invoking it -------------------------------------------------------------------------------
def _partial(c: Ctx, func: Node, args: tuple[Node, ...],
             kwargs: tuple[tuple[str, object], ...] = ()) -> Node:
    """functools.partial(func, *args, **kwargs), as pickle writes it (REDUCE, then BUILD with
    the state) or through __new__ (the only way to pass keywords without a call opcode)."""
    partial = G(c.rng.choice(["functools", "_functools"]), "partial")
    if kwargs:
        return NEW(partial, (func, *args), tuple((k, C(v)) for k, v in kwargs))
    way = c.rng.randrange(3)
    if way == 0:
        return CALL(partial, func, *args)
    if way == 1:
        return NEW(partial, (func, *args))
    return BUILD(CALL(partial, G("builtins", "int")), T(func, T(*args), D(), C(None)))


def invoke(c: Ctx, entry: Entry, func: Node, args: tuple[Node, ...]) -> Node:
    """A node that calls func(*args), by one of several routes."""
    if entry.kwargs:
        return CALL(_partial(c, func, args, entry.kwargs))
    ways = ["plain"] * 6 + ["partial", "starmap", "operator.call"]
    if entry.harmful:  # these run the call later, or fail after it: no use for harmless ones
        ways += ["rebuild_from_type", "thread", "atexit"] + ["generator_ctor"] * (len(args) == 1)
    if len(args) == 1:
        ways.append("map")
        if entry.is_class:
            ways.append("reconstructor")
    if len(args) == 2:
        ways.append("reduce")
    if "." in entry.name and args:
        ways.append("methodcaller")
    way = c.rng.choice(ways)
    c.uses.append(f"via {way}")
    if way == "plain":
        return CALL(func, *args)
    if way == "partial":
        return CALL(_partial(c, func, args))
    if way == "starmap":
        return CALL(G("builtins", "list"), CALL(G("itertools", "starmap"), func, L(T(*args))))
    if way == "map":
        return CALL(G("builtins", "list"), CALL(G("builtins", "map"), func, L(*args)))
    if way == "operator.call":
        return CALL(G("operator", "call"), func, *args)
    if way == "reduce":
        return CALL(G("functools", "reduce"), func, L(*args))
    if way == "rebuild_from_type":
        return CALL(G("torch._tensor", "_rebuild_from_type_v2"), func, G("torch", "Tensor"),
                    T(*args), D())
    if way == "generator_ctor":
        name = c.rng.choice(["__generator_ctor", "__randomstate_ctor"])
        return CALL(G("numpy.random._pickle", name), args[0], func)
    if way == "reconstructor":
        return CALL(G("copyreg", "_reconstructor"), func, func, args[0])
    if way == "thread":  # runs in another thread, after the call returns
        thread = CALL(G(_thread_class(c), "Thread"), C(None), func, C(None), T(*args))
        return CALL(CALL(G("operator", "methodcaller"), C("start")), thread)
    if way == "atexit":  # runs when the loading process exits
        return CALL(G("atexit", "register"), func, *args)
    method = entry.name.rsplit(".", 1)[1]  # methodcaller: args[0] is the instance
    return CALL(CALL(G("operator", "methodcaller"), C(method), *args[1:]), args[0])
