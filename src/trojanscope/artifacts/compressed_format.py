"""Compressed streams (gzip, bz2, xz, lzma-alone, zlib): what joblib and people wrap models in."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

from ..findings import Location
from .registry import FormatHandler


class ZlibReader(io.RawIOBase):
    """A raw zlib stream as a readable file (joblib's default compressor writes these)."""

    def __init__(self, raw):
        self.raw = raw
        self.z = zlib.decompressobj()
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending and not self.z.eof:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                raise EOFError("compressed stream ends before its end marker")
            self.pending = self.z.decompress(chunk, 1 << 20)
            while self.z.unconsumed_tail and not self.pending:
                self.pending = self.z.decompress(self.z.unconsumed_tail, 1 << 20)
        if not self.pending and self.z.unconsumed_tail:
            self.pending = self.z.decompress(self.z.unconsumed_tail, 1 << 20)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class CompressedHandler(FormatHandler):
    """One handler per compression; subclasses give the magic test and the decompressor."""

    name = "compressed"
    priority = 20

    @classmethod
    def open(cls, raw):
        raise NotImplementedError

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return False

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        inner = cls.open(source)
        ctx.examine_stream(inner, location.inside(f"<{cls.name}>"), depth + 1)


class GzipHandler(CompressedHandler):
    name = "gzip"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head[:3] == b"\x1f\x8b\x08"

    @classmethod
    def open(cls, raw):
        return gzip.GzipFile(fileobj=raw, mode="rb")


class Bzip2Handler(CompressedHandler):
    name = "bz2"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY"

    @classmethod
    def open(cls, raw):
        return bz2.BZ2File(raw, mode="rb")


class XzHandler(CompressedHandler):
    name = "xz"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head[:6] == b"\xfd7zXZ\x00"

    @classmethod
    def open(cls, raw):
        return lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_XZ)


class LzmaAloneHandler(CompressedHandler):
    name = "lzma"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        # props byte 0x5d (lc=3, lp=0, pb=2, what every encoder writes), a power-of-two
        # dictionary size, and an unknown (-1) or plausible uncompressed size.
        if len(head) < 13 or head[0] != 0x5D:
            return False
        dict_size = int.from_bytes(head[1:5], "little")
        size = int.from_bytes(head[5:13], "little")
        return dict_size & (dict_size - 1) == 0 and dict_size >= 1 << 12 and (
            size == (1 << 64) - 1 or size < 1 << 48)

    @classmethod
    def open(cls, raw):
        return lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_ALONE)


class ZlibHandler(CompressedHandler):
    name = "zlib"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        if len(head) < 2 or head[0] != 0x78 or (head[0] << 8 | head[1]) % 31:
            return False
        try:  # a real zlib stream decompresses its first bytes without error
            zlib.decompressobj().decompress(head[:512], 64)
        except zlib.error:
            return False
        return True

    @classmethod
    def open(cls, raw):
        return io.BufferedReader(ZlibReader(raw), 1 << 16)
