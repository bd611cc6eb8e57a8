"""Writes the differential generator's IR (`_differential_catalogue`) as pickle opcodes of one
protocol, choosing at random among the encodings a loader accepts for the same operation:
GLOBAL, STACK_GLOBAL, INST or OBJ; STRING, UNICODE, BINSTRING, SHORT_BINSTRING, BINUNICODE,
SHORT_BINUNICODE or BINUNICODE8; memo PUT, BINPUT, LONG_BINPUT or MEMOIZE and the matching
GETs; NEWOBJ, NEWOBJ_EX or copyreg's helpers; bytes as BINBYTES or, below protocol 3, as
_codecs.encode(text, latin1); FRAMEs around whole opcodes.
"""

from __future__ import annotations

import random
import struct

from ._differential_catalogue import CALL, C, D, G, Node, T


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
