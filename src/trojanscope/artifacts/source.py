"""A forward-only view of bytes to examine, with its start kept for format sniffing.

Bytes that come out of a decompressor or an archive are counted against one budget per
top-level file, so nested wrappers and zip bombs cannot make a scan read without end.
"""

from __future__ import annotations

import time
from typing import BinaryIO

from .limits import ExpansionLimitExceeded, Limits


class Budget:
    """Bytes expanded so far for one top-level file."""

    def __init__(self, limit: int, seconds: int | None = None):
        self.limit = limit
        self.used = 0
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise ExpansionLimitExceeded("bytes expanded from compressed or archived data",
                                         self.limit)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ExpansionLimitExceeded("seconds spent expanding compressed or archived data",
                                         self.seconds)


class Source:
    """Reads `raw` from its current position; `head` holds its first bytes for sniffing."""

    def __init__(self, raw: BinaryIO, head_size: int, budget: Budget | None = None,
                 cheap_seek: bool = False):
        self.raw = raw
        self.budget = budget
        # A plain file or an in-memory buffer: random access needs no copy.
        self.cheap_seek = cheap_seek
        self.start = raw.tell() if cheap_seek else 0
        self.head = self._raw_read(head_size)
        # Bytes read from raw but not yet handed out: _back[_at:]. An index, not a slice per
        # read, so that reading a large pushed-back buffer a byte at a time stays linear.
        self._back, self._at = self.head, 0
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        left = len(self._back) - self._at
        if not left:
            data = self._raw_read(n)
        elif 0 <= n < left:
            data = self._back[self._at:self._at + n]
            self._at += n
        else:
            data, self._back, self._at = self._back[self._at:], b"", 0
            if n != len(data):
                data += self._raw_read(-1 if n < 0 else n - len(data))
        self.pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        if self._at < len(self._back):
            end = self._back.find(b"\n", self._at)
            stop = len(self._back) if end < 0 else end + 1
            if 0 <= limit < stop - self._at:
                stop = self._at + limit
            line = self._back[self._at:stop]
            self._at = stop
            if self._at == len(self._back):
                self._back, self._at = b"", 0
            self.pos += len(line)
            if line.endswith(b"\n") or len(line) == limit or self._back:
                return line
            return line + self.readline(-1 if limit < 0 else limit - len(line))
        line = self.raw.readline(limit)
        if self.budget is not None:
            self.budget.spend(len(line))
        self.pos += len(line)
        return line

    def unread(self, data: bytes) -> None:
        """Push bytes back, to be read again (a look ahead at what follows)."""
        self._back, self._at = data + self._back[self._at:], 0
        self.pos -= len(data)

    def _raw_read(self, n: int) -> bytes:
        data = self.raw.read(n) if n >= 0 else self.raw.read()
        if self.budget is not None:
            self.budget.spend(len(data))
        return data

    def whole(self) -> memoryview:
        """All of the content as one buffer: a read-only map of a plain file, else the bytes."""
        if self.pos == 0 and self.cheap_seek:
            try:
                fileno = self.raw.fileno()
            except (OSError, AttributeError, ValueError):
                fileno = None
            if fileno is not None:
                import mmap

                size = self.raw.seek(0, 2)
                if size > self.start:
                    return memoryview(mmap.mmap(fileno, 0, access=mmap.ACCESS_READ))[self.start:]
        return memoryview(self.read())

    def random_access(self, limits: Limits) -> BinaryIO:
        """A seekable file of the whole content: the original file when it is one, else a spool."""
        if self.pos == 0 and self.cheap_seek:
            self.raw.seek(self.start)
            return self.raw
        import tempfile  # only archives inside compressed streams need a spool

        spool = tempfile.SpooledTemporaryFile(max_size=limits.spool_in_memory)
        self.pos = 0
        while True:
            chunk = self.read(1 << 20)
            if not chunk:
                break
            spool.write(chunk)
        spool.seek(0)
        return spool
