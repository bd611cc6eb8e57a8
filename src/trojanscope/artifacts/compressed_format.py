"""Compressed streams (gzip, bz2, xz, lzma-alone, zlib): what joblib and people wrap models in."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

from ..findings import Location
from .registry import FormatHandler, detect, format_handler


class ZlibReader(io.RawIOBase):
    """A raw zlib stream as a readable file (joblib's default compressor writes these)."""

    def __init__(self, raw, carry: bytes = b""):
        self.raw = raw
        self.z = zlib.decompressobj()
        self.pending = b""
        self.carry = carry  # compressed bytes already read from `raw`

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending and not self.z.eof:
            chunk, self.carry = self.carry or self.raw.read(1 << 16), b""
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


@format_handler
class GzipHandler(CompressedHandler):
    name = "gzip"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head[:3] == b"\x1f\x8b\x08"

    @classmethod
    def open(cls, raw):
        return gzip.GzipFile(fileobj=raw, mode="rb")


@format_handler
class Bzip2Handler(CompressedHandler):
    name = "bz2"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        # a first block, or the end of an empty first stream (bz2 reads the streams after it)
        return head[:3] == b"BZh" and head[3:4].isdigit() and \
            head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")

    @classmethod
    def open(cls, raw):
        return bz2.BZ2File(raw, mode="rb")


@format_handler
class XzHandler(CompressedHandler):
    name = "xz"

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head[:6] == b"\xfd7zXZ\x00"

    @classmethod
    def open(cls, raw):
        return lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_XZ)


@format_handler
class LzmaAloneHandler(CompressedHandler):
    """lzma-alone (.lzma): liblzma's decoder accepts any valid properties byte, any dictionary
    size and any stated size, so the header alone proves little; the first bytes must also
    decompress into the start of a format scan reads. Tried after the other formats (the
    pickle's weak test included), since so little marks it.

    The decoder allocates the dictionary size the header states (up to 4 GiB, from 13 bytes).
    Decoding needs no more dictionary than the bytes decoded so far, so the header is read
    with the size capped (DICTIONARY_CAP, what xz -9 uses): the same output, bounded memory.
    A stream that refers further back fails to decode, and is reported unreadable (high)."""

    name = "lzma"
    priority = 95
    DICTIONARY_CAP = 64 * 1024 * 1024

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        if len(head) < 14 or head[0] >= 225 or head[13] != 0:  # the range coder starts at 0
            return False
        try:
            out = lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(
                _capped_dictionary(head, 4096), 64)
        except (lzma.LZMAError, EOFError, ValueError):
            return False
        if not out:  # a real stream yields its first bytes from its first 4 KiB; a run of
            return False  # zeros (a zeroed tensor) states an empty stream and yields none
        # Random bytes (a float tensor in an archive) often decode for a while: claimed only
        # when what comes out starts like a format scan reads (a pickle, an archive).
        return detect(out, complete=False) is not None

    @classmethod
    def open(cls, raw):
        return lzma.LZMAFile(io.BufferedReader(_CappedHeader(raw, cls.DICTIONARY_CAP)),
                             mode="rb", format=lzma.FORMAT_ALONE)


def _capped_dictionary(data: bytes, cap: int) -> bytes:
    """lzma-alone bytes whose header states a dictionary of at most `cap` bytes."""
    stated = int.from_bytes(data[1:5], "little")
    return data[:1] + min(stated, cap).to_bytes(4, "little") + data[5:]


class _CappedHeader(io.RawIOBase):
    """A stream read through, its lzma-alone header's dictionary size capped."""

    def __init__(self, raw, cap: int):
        self._raw = raw
        self._head = _capped_dictionary(raw.read(13), cap)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._head[:len(buffer)] if self._head else self._raw.read(len(buffer))
        self._head = self._head[len(data):]
        buffer[:len(data)] = data
        return len(data)


@format_handler
class ZlibHandler(CompressedHandler):
    """zlib streams with any window size the header may state (joblib writes 0x78; zlib
    reads 0x08 to 0x78), checked by decompressing the first bytes. Tried after the pickle."""

    name = "zlib"
    priority = 95

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        if len(head) < 2 or head[0] & 0x0F != 8 or head[0] >> 4 > 7 or head[1] & 0x20 or \
                (head[0] << 8 | head[1]) % 31:
            return False
        try:
            out = zlib.decompressobj().decompress(head[:512], 64)
        except zlib.error:
            return False
        if not out:
            return not (complete and len(head) <= 512)
        # Random bytes (a tensor in a checkpoint: one in 2,800 of a synthetic mirror's) pass
        # the two-byte header test and can decode for a while: claimed only when what comes
        # out starts like a format scan reads, as for lzma-alone.
        return detect(out, complete=False) is not None

    @classmethod
    def open(cls, raw):
        return io.BufferedReader(ZlibReader(raw), 1 << 16)


@format_handler
class JoblibZfileHandler(CompressedHandler):
    """joblib's legacy container (before 0.10, still read by joblib.load): "ZF", the
    uncompressed length in hex over 19 characters (and a space in the oldest), then zlib."""
    holds_model = True

    name = "joblib-zfile"
    HEADER = 21

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        if head[:2] != b"ZF" or len(head) < cls.HEADER + 2:
            return False
        try:
            int(head[2:cls.HEADER], 16)
        except ValueError:
            return False
        return True

    @classmethod
    def open(cls, raw):
        header = raw.read(cls.HEADER + 1)
        carry = b"" if header[-1:] == b" " else header[cls.HEADER:]
        return io.BufferedReader(ZlibReader(raw, carry), 1 << 16)
