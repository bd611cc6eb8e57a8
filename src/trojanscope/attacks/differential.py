"""Random, loader-valid model files for differential testing of scan against the real loaders.

`generate(seed, count)` returns `Sample`s: pickles assembled opcode by opcode, in a random
protocol (0-5) with random encodings of the same operation (GLOBAL, STACK_GLOBAL, INST or OBJ;
STRING, BINSTRING, BINUNICODE, SHORT_BINUNICODE or UNICODE; memo PUT/GET/MEMOIZE; FRAME),
calling real callables (`_differential_catalogue`) harmless or harmful, the harmful ones aimed
at `CANARY`, inside every container a loader opens: raw pickle, torch zip, legacy torch, NumPy
object arrays, joblib and the compressed and archive wrappers of `model_files.WRAPPERS`.
Everything is decided by `random.Random(seed)`; no live object is pickled.
`differential_oracle` loads the samples with the real loaders.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
from dataclasses import dataclass
from typing import Callable

from . import model_files as mf
from ._differential_catalogue import (
    BUILD,
    CALL,
    CANARY,
    HARMFUL,
    HARMLESS,
    PERSID,
    SEQ,
    SETITEMS,
    C,
    Ctx,
    D,
    Entry,
    G,
    L,
    Node,
    T,
    invoke,
    reach,
)

__all__ = ["CANARY", "CONTAINERS", "Sample", "encode", "generate"]


@dataclass(frozen=True)
class Sample:
    index: int
    container: str  # a key of CONTAINERS
    loader: str  # "pickle", "torch", "numpy" or "joblib"
    data: bytes  # the file
    payload: bytes  # the pickle inside it (for pickletools.dis)
    protocol: int
    harmful: bool  # what the generator meant; the oracle decides what the file does
    uses: tuple[str, ...]  # the callables it names and the tricks it uses

    @property
    def name(self) -> str:
        return f"{self.index:05d}-{self.container}"


# --- the encoder -------------------------------------------------------------------------------
class _Encoder:
    """Writes IR nodes as opcodes of one protocol, choosing among equivalent encodings."""

    def __init__(self, rng: random.Random, proto: int):
        self.rng, self.proto = rng, proto
        self.ops: list[bytes] = []  # whole opcodes, so that frames never split one
        self.memo: dict[Node, int] = {}  # constants and globals already memoised
        self.memo_size = 0

    def pickle(self, node: Node) -> bytes:
        if self.proto >= 4 and self.rng.random() < 0.3:  # names memoised up front, popped
            for module, name in list(_globals_in(node))[:3]:
                self._string(module if self.rng.random() < 0.5 else name)
                self.ops.append(b"0")
        self.node(node)
        self.ops.append(b".")
        head = b"\x80" + bytes([self.proto]) if self.proto >= 2 else b""
        return head + self._frames()

    def _frames(self) -> bytes:
        if self.proto < 4 or self.rng.random() < 0.4:
            return b"".join(self.ops)
        out, i = [], 0
        while i < len(self.ops):
            n = self.rng.randint(1, 12)
            chunk = b"".join(self.ops[i:i + n])
            out.append(b"\x95" + struct.pack("<Q", len(chunk)) + chunk)
            i += n
        return b"".join(out)

    # memo
    def _remember(self, node: Node | None) -> None:
        """Memoise the value on top of the stack (sometimes), for GET to fetch it again."""
        if self.rng.random() < 0.5:
            return
        index, self.memo_size = self.memo_size, self.memo_size + 1
        if node is not None:
            self.memo.setdefault(node, index)
        if self.proto >= 4 and self.rng.random() < 0.6:
            self.ops.append(b"\x94")
        elif self.proto == 0:
            self.ops.append(b"p%d\n" % index)
        elif index < 256 and self.rng.random() < 0.7:
            self.ops.append(b"q" + bytes([index]))
        else:
            self.ops.append(b"r" + struct.pack("<I", index))

    def _recall(self, node: Node) -> bool:
        index = self.memo.get(node)
        if index is None or self.rng.random() < 0.3:
            return False
        if self.proto == 0:
            self.ops.append(b"g%d\n" % index)
        elif index < 256 and self.rng.random() < 0.7:
            self.ops.append(b"h" + bytes([index]))
        else:
            self.ops.append(b"j" + struct.pack("<I", index))
        return True

    # constants
    def _string(self, text: str) -> None:
        key = ("const", text)
        if self._recall(key):
            return
        data = text.encode("utf-8")
        ascii_ = text.isascii()
        ways = ["V"] + (["S"] if ascii_ and "\n" not in text else [])
        if self.proto >= 1:
            ways += ["X"] + (["T", "U"] if ascii_ and len(data) < 256 else [])
        if self.proto >= 4:
            ways += ["\x8c", "\x8c", "\x8d"] if len(data) < 256 else ["\x8d"]
        way = self.rng.choice(ways)
        if way == "S":
            self.ops.append(b"S" + repr(text).encode() + b"\n")
        elif way == "V":
            escaped = (text.replace("\\", "\\u005c").replace("\0", "\\u0000")
                       .replace("\n", "\\u000a").replace("\r", "\\u000d")
                       .replace("\x1a", "\\u001a"))
            self.ops.append(b"V" + escaped.encode("raw-unicode-escape") + b"\n")
        elif way == "U":
            self.ops.append(b"U" + bytes([len(data)]) + data)
        elif way == "T":
            self.ops.append(b"T" + struct.pack("<i", len(data)) + data)
        elif way == "X":
            self.ops.append(b"X" + struct.pack("<I", len(data)) + data)
        elif way == "\x8c":
            self.ops.append(b"\x8c" + bytes([len(data)]) + data)
        else:
            self.ops.append(b"\x8d" + struct.pack("<Q", len(data)) + data)
        self._remember(key)

    def _bytes(self, data: bytes) -> None:
        if self.proto < 3:  # as pickle writes bytes for Python 2: _codecs.encode(text, latin1)
            codec = self.rng.choice(["latin1", "latin-1", "iso-8859-1"])
            self.node(CALL(G("_codecs", "encode"), C(data.decode("latin-1")), C(codec)))
            return
        if len(data) < 256 and self.rng.random() < 0.6:
            self.ops.append(b"C" + bytes([len(data)]) + data)
        elif self.proto >= 4 and self.rng.random() < 0.3:
            self.ops.append(b"\x8e" + struct.pack("<Q", len(data)) + data)
        else:
            self.ops.append(b"B" + struct.pack("<I", len(data)) + data)

    def _int(self, value: int) -> None:
        if self.proto == 0 or self.rng.random() < 0.1:
            self.ops.append(b"I%d\n" % value if self.rng.random() < 0.7 else b"L%dL\n" % value)
        elif 0 <= value < 256:
            self.ops.append(b"K" + bytes([value]))
        elif 0 <= value < 65536:
            self.ops.append(b"M" + struct.pack("<H", value))
        else:
            self.ops.append(b"J" + struct.pack("<i", value))

    def _const(self, value: object) -> None:
        if value is None:
            self.ops.append(b"N")
        elif isinstance(value, bool):
            if self.proto >= 2:
                self.ops.append(b"\x88" if value else b"\x89")
            else:
                self.ops.append(b"I01\n" if value else b"I00\n")
        elif isinstance(value, int):
            self._int(value)
        elif isinstance(value, float):
            if self.proto == 0:
                self.ops.append(b"F" + repr(value).encode() + b"\n")
            else:
                self.ops.append(b"G" + struct.pack(">d", value))
        elif isinstance(value, str):
            self._string(value)
        else:
            self._bytes(value)  # type: ignore[arg-type]

    # containers and calls
    def _items(self, items: tuple[Node, ...]) -> None:
        for item in items:
            self.node(item)

    def _tuple(self, items: tuple[Node, ...]) -> None:
        if self.proto >= 2 and len(items) <= 3 and self.rng.random() < 0.7:
            self._items(items)
            self.ops.append([b")", b"\x85", b"\x86", b"\x87"][len(items)])
        elif self.proto >= 1 and not items:
            self.ops.append(b")")
        else:
            self.ops.append(b"(")
            self._items(items)
            self.ops.append(b"t")

    def _list(self, items: tuple[Node, ...]) -> None:
        if self.proto == 0 or self.rng.random() < 0.2:
            self.ops.append(b"(")
            self._items(items)
            self.ops.append(b"l")
            return
        self.ops.append(b"]")
        self._remember(None)
        if self.rng.random() < 0.5:
            for item in items:
                self.node(item)
                self.ops.append(b"a")
        else:
            self.ops.append(b"(")
            self._items(items)
            self.ops.append(b"e")

    def _setitems(self, pairs: tuple[tuple[Node, Node], ...]) -> None:
        if self.proto >= 1 and self.rng.random() < 0.5:
            self.ops.append(b"(")
            for key, value in pairs:
                self.node(key)
                self.node(value)
            self.ops.append(b"u")
        else:
            for key, value in pairs:
                self.node(key)
                self.node(value)
                self.ops.append(b"s")

    def _dict(self, pairs: tuple[tuple[Node, Node], ...]) -> None:
        if self.proto == 0 and self.rng.random() < 0.5:
            self.ops.append(b"(")
            for key, value in pairs:
                self.node(key)
                self.node(value)
            self.ops.append(b"d")
            return
        self.ops.append(b"}" if self.proto >= 1 else b"(d")
        self._setitems(pairs)

    def _global(self, node: Node) -> None:
        if self._recall(node):
            return
        module, name = node[1], node[2]
        if self.proto >= 4 and self.rng.random() < 0.6:
            self._string(module)
            self._string(name)
            self.ops.append(b"\x93")
        else:
            self.ops.append(b"c" + module.encode() + b"\n" + name.encode() + b"\n")
        self._remember(node)

    def _call(self, func: Node, args: tuple[Node, ...]) -> None:
        way = self.rng.random()
        if func[0] == "global" and way < 0.15:  # INST: import and call in one opcode
            self.ops.append(b"(")
            self._items(args)
            self.ops.append(b"i" + func[1].encode() + b"\n" + func[2].encode() + b"\n")
        elif self.proto >= 1 and way < 0.3:  # OBJ
            self.ops.append(b"(")
            self.node(func)
            self._items(args)
            self.ops.append(b"o")
        else:
            self.node(func)
            self._tuple(args)
            self.ops.append(b"R")

    def _new(self, cls: Node, args: tuple[Node, ...], kwargs: tuple) -> None:
        kw = D(*((C(k), v) for k, v in kwargs))
        if kwargs and self.proto >= 4:
            self.node(cls)
            self._tuple(args)
            self.node(kw)
            self.ops.append(b"\x92")
        elif kwargs:
            self._call(G("copyreg", "__newobj_ex__"), (cls, T(*args), kw))
        elif self.proto >= 2:
            self.node(cls)
            self._tuple(args)
            self.ops.append(b"\x81")
        else:
            self._call(G("copyreg", "__newobj__"), (cls, *args))

    def node(self, node: Node) -> None:
        kind = node[0]
        if kind == "const":
            self._const(node[1])
        elif kind == "global":
            self._global(node)
        elif kind == "tuple":
            self._tuple(node[1])
        elif kind == "list":
            self._list(node[1])
        elif kind == "dict":
            self._dict(node[1])
        elif kind == "call":
            self._call(node[1], node[2])
        elif kind == "new":
            self._new(node[1], node[2], node[3])
        elif kind == "build":
            self.node(node[1])
            self.node(node[2])
            self.ops.append(b"b")
        elif kind == "setitems":
            self.node(node[1])
            self._setitems(node[2])
        elif kind == "persid":
            self.node(node[1])
            self.ops.append(b"Q")
        elif kind == "seq":
            for item in node[1][:-1]:
                self.node(item)
                self.ops.append(b"0")
            self.node(node[1][-1])
        else:
            raise ValueError(f"unknown IR node {kind!r}")


def _globals_in(node: object):
    if isinstance(node, tuple):
        if len(node) == 3 and node[0] == "global":
            yield node[1], node[2]
        else:
            for part in node:
                yield from _globals_in(part)


def encode(node: Node, rng: random.Random, proto: int) -> bytes:
    return _Encoder(rng, proto).pickle(node)


# --- programs ----------------------------------------------------------------------------------
def _pick(c: Ctx, entries: list[Entry], nested_ok: bool = True) -> Entry:
    pool = [e for e in entries if nested_ok or not e.nested]
    return c.rng.choices(pool, [e.weight for e in pool])[0]


def _statement(c: Ctx, entry: Entry) -> Node:
    if entry.harmful:
        c.uses.append(f"payload {entry.module}.{entry.name}")
    func = reach(c, entry)  # uses: "payload X", then the name that reaches X
    return invoke(c, entry, func, entry.args(c))


def _array(c: Ctx) -> Node:
    """A float64 NumPy array, written as NumPy pickles one."""
    n = c.rng.randint(1, 4)
    raw = struct.pack(f"<{n}d", *(round(c.rng.uniform(-1, 1), 3) for _ in range(n)))
    dtype = BUILD(CALL(G("numpy", "dtype"), C("f8"), C(False), C(True)),
                  T(C(3), C("<"), C(None), C(None), C(None), C(-1), C(-1), C(0)))
    module = c.rng.choice(["numpy._core.multiarray", "numpy.core.multiarray"])
    empty = CALL(G(module, "_reconstruct"), G("numpy", "ndarray"), T(C(0)), C(b"b"))
    return BUILD(empty, T(C(1), T(C(n)), dtype, C(False), C(raw)))


def _tensor() -> Node:
    """A torch tensor of the 4 floats in a torch zip's archive/data/0, as torch.save writes."""
    storage = PERSID(T(C("storage"), G("torch", "FloatStorage"), C("0"), C("cpu"), C(4)))
    return CALL(G("torch._utils", "_rebuild_tensor_v2"), storage, C(0), T(C(4)), T(C(1)),
                C(False), CALL(G("collections", "OrderedDict")))


def _state_dict(c: Ctx, tensors: bool) -> Node:
    def weight() -> Node:
        way = c.rng.random()
        if tensors and way < 0.5:
            return _tensor()
        if way < 0.8:
            return _array(c)
        return L(*(C(round(c.rng.uniform(-1, 1), 3)) for _ in range(3)))
    pairs = tuple((C(name), weight()) for name in ("layer.weight", "layer.bias")[
        :c.rng.randint(1, 2)])
    return SETITEMS(CALL(G("collections", "OrderedDict")), pairs)


def _estimator() -> Node:
    made = CALL(G("copyreg", "_reconstructor"),
                G("sklearn.linear_model._logistic", "LogisticRegression"),
                G("builtins", "object"), C(None))
    return BUILD(made, D((C("C"), C(1.0)), (C("max_iter"), C(100))))


def _program(c: Ctx, harmful: bool, tensors: bool, nested_ok: bool = True) -> Node:
    rng = c.rng
    harmless = [_pick(c, HARMLESS) for _ in range(rng.choice([0, 1, 1, 2]))]
    statements = [_statement(c, entry) for entry in harmless]
    raising = [s for s, e in zip(statements, harmless) if e.raises]
    if harmful:
        entry = _pick(c, HARMFUL, nested_ok)
        statements.insert(rng.randrange(len(statements) + 1), _statement(c, entry))
    elif not statements:
        statements.append(_statement(c, _pick(c, HARMLESS)))
    statements.sort(key=lambda s: s in raising)  # a statement that raises ends the load
    shape = rng.random()
    if shape < 0.25:
        return SEQ(*statements)
    if shape < 0.4:
        return L(*statements)
    if shape < 0.5:
        return T(*statements)
    pairs = [(C(f"item{i}"), s) for i, s in enumerate(statements)]
    if rng.random() < 0.7:
        pairs.insert(rng.randrange(len(pairs) + 1), (C("state_dict"), _state_dict(c, tensors)))
    if rng.random() < 0.2:
        pairs.insert(rng.randrange(len(pairs) + 1), (C("estimator"), _estimator()))
    return D(*pairs)


def _inner(rng: random.Random, uses: list[str], kind: str) -> bytes:
    """A nested harmful file: a pickle, a .npy object array or a torch zip."""
    proto = rng.randint(0, 5)
    c = Ctx(rng, proto, inner=lambda k: b"", uses=uses)
    payload = encode(_program(c, True, False, nested_ok=False), rng, proto)
    if kind == "npy":
        return mf.npy_object(payload)
    if kind == "torch-zip":
        return _torch_zip(payload)
    return payload


# --- containers --------------------------------------------------------------------------------
def _zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """model_files.zip_of with a fixed timestamp, so that the bytes depend on the seed only."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            archive.writestr(info, data)
    return buffer.getvalue()


def _torch_zip(payload: bytes) -> bytes:
    """model_files.torch_zip with a fixed timestamp."""
    return _zip_of({"archive/data.pkl": payload, "archive/byteorder": b"little",
                    "archive/data/0": struct.pack("<4f", 1, 2, 3, 4), "archive/version": b"3\n"},
                   zipfile.ZIP_STORED)


def _sevenzip_of(members: dict[str, bytes]) -> bytes:
    """model_files.sevenzip_of with fixed timestamps."""
    import py7zr
    from py7zr.helpers import ArchiveTimestamp

    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(data, name)
            for key in ("creationtime", "lastwritetime", "lastaccesstime"):
                archive.header.files_info.files[-1][key] = ArchiveTimestamp(UNIX_EPOCH)
    return buffer.getvalue()


UNIX_EPOCH = 116444736000000000  # in Windows FILETIME units
TORCH_MAGIC = mf.TORCH_MAGIC
LEGACY_PARTS = (  # torch.save's legacy layout: magic, protocol version 1001, sys_info, object,
    b"\x80\x02\x8a\x0a" + TORCH_MAGIC.to_bytes(10, "little") + b".",  # storage keys
    b"\x80\x02M\xe9\x03.",
    b"\x80\x02}(X\x10\x00\x00\x00protocol_versionM\xe9\x03X\r\x00\x00\x00little_endian\x88"
    b"X\n\x00\x00\x00type_sizes}(X\x05\x00\x00\x00shortK\x02X\x03\x00\x00\x00intK\x04"
    b"X\x04\x00\x00\x00longK\x04uu.",
    b"\x80\x02}X\x01\x00\x00\x00wK\x01s.",
    b"\x80\x02].",
)


def _torch_legacy(payload: bytes, rng: random.Random) -> bytes:
    """Legacy torch.save, the payload in one of its five pickles (mostly the object's).

    model_files.torch_legacy writes protocol version 3, which torch.load rejects before the
    object's pickle; this writes 1001, as torch does."""
    parts = list(LEGACY_PARTS)
    parts[rng.choices(range(5), [1, 1, 1, 6, 1])[0]] = payload
    return b"".join(parts)


Wrap = Callable[[bytes, random.Random], bytes]
_WRAPPERS: dict[str, Callable[[bytes], bytes]] = {
    **mf.WRAPPERS,
    "zip": lambda data: _zip_of({"model.bin": data}),
    "zip-in-zip": lambda data: _zip_of({"inner.zip": _zip_of({"weights/model.bin": data})}),
    "7z": lambda data: _sevenzip_of({"model.bin": data}),
}
JOBLIB_COMPRESSIONS = ("zlib", "gzip", "bz2", "xz", "lzma", "joblib-zfile")


def _wrapped(name: str) -> Wrap:
    return lambda data, rng: _WRAPPERS[name](data)


# name -> (loader, wrap, weight)
CONTAINERS: dict[str, tuple[str, Wrap, float]] = {
    "pickle": ("pickle", lambda data, rng: data, 20),
    "torch-zip": ("torch", lambda data, rng: _torch_zip(data), 18),
    "torch-legacy": ("torch", _torch_legacy, 10),
    "npy": ("numpy", lambda data, rng: mf.npy_object(data), 12),
    "joblib": ("joblib", lambda data, rng: data, 4),
    **{f"joblib-{name}": ("joblib", _wrapped(name), 10 / len(JOBLIB_COMPRESSIONS))
       for name in JOBLIB_COMPRESSIONS},
    **{f"wrap-{name}": ("pickle", _wrapped(name), 26 / len(_WRAPPERS)) for name in _WRAPPERS},
}


# --- samples -----------------------------------------------------------------------------------
def _sample(rng: random.Random, index: int, harmful_share: float,
            containers: list[str]) -> Sample:
    container = rng.choices(containers, [CONTAINERS[n][2] for n in containers])[0]
    loader, wrap, _ = CONTAINERS[container]
    proto = rng.randint(0, 5)
    harmful = rng.random() < harmful_share
    uses: list[str] = []
    c = Ctx(rng, proto, inner=lambda kind: _inner(rng, uses, kind), uses=uses)
    payload = encode(_program(c, harmful, tensors=container == "torch-zip"), rng, proto)
    return Sample(index, container, loader, wrap(payload, rng), payload, proto, harmful,
                  tuple(uses))


def generate(seed: int, count: int, *, harmful_share: float = 0.6,
             containers: list[str] | None = None) -> list[Sample]:
    """`count` samples, the same for the same seed and arguments."""
    rng = random.Random(seed)
    names = list(containers or CONTAINERS)
    unknown = set(names) - set(CONTAINERS)
    if unknown:
        raise ValueError(f"unknown containers: {sorted(unknown)}")
    return [_sample(rng, i, harmful_share, names) for i in range(count)]
