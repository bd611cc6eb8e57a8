"""Random, loader-valid model files for differential testing of scan against the real loaders.

`generate(seed, count)` returns `Sample`s: pickles assembled opcode by opcode, in a random
protocol (0-5) with random encodings of the same operation (`_differential_encoder`: GLOBAL,
STACK_GLOBAL, INST or OBJ; STRING, BINSTRING, BINUNICODE, SHORT_BINUNICODE or UNICODE; memo
PUT/GET/MEMOIZE; FRAME),
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
from ._differential_encoder import encode

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
