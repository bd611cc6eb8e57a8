"""7z archives, read with py7zr into spooled files whose every byte is charged to the budget."""

from __future__ import annotations

import tempfile

from ..findings import Location
from .limits import ExpansionLimitExceeded, LimitExceeded
from .registry import FormatHandler, format_handler

MAGIC = b"7z\xbc\xaf\x27\x1c"


@format_handler
class SevenZipHandler(FormatHandler):
    name = "7z"
    priority = 10

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head.startswith(MAGIC)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        import py7zr
        import py7zr.io

        class Spool(py7zr.io.Py7zIO):
            def __init__(self):
                self.file = tempfile.SpooledTemporaryFile(max_size=ctx.limits.spool_in_memory)

            def write(self, data):
                ctx.budget.spend(len(data))
                return self.file.write(data)

            def read(self, size=None):
                return self.file.read(-1 if size is None else size)

            def seek(self, offset, whence=0):
                return self.file.seek(offset, whence)

            def flush(self):
                self.file.flush()

            def size(self):
                return self.file.tell()

        class Factory(py7zr.io.WriterFactory):
            def __init__(self):
                self.products: dict[str, Spool] = {}

            def create(self, filename):
                self.products[filename] = Spool()
                return self.products[filename]

        try:
            archive = py7zr.SevenZipFile(source.random_access(ctx.limits), mode="r")
        except py7zr.exceptions.PasswordRequired as exc:
            ctx.unreadable(location, exc)
            return
        except (py7zr.exceptions.ArchiveError, py7zr.exceptions.Bad7zFile) as exc:
            ctx.unreadable(location, exc)
            return
        with archive:
            infos = [i for i in archive.list() if not i.is_directory]
            declared = sum(i.uncompressed or 0 for i in infos)
            left = ctx.budget.limit - ctx.budget.used
            if declared > left:
                raise ExpansionLimitExceeded("bytes expanded from compressed or archived data",
                                    ctx.budget.limit)
            if archive.needs_password():
                ctx.unreadable(location, RuntimeError("archive is encrypted"))
                return
            factory = Factory()
            try:
                archive.extractall(factory=factory)
            except LimitExceeded:
                raise
            except Exception as exc:  # py7zr raises many types for corrupt input
                ctx.unreadable(location, exc)
        for name, spool in sorted(factory.products.items()):
            spool.file.seek(0)
            ctx.examine_stream(spool.file, location.inside(name), depth + 1, counted=False,
                               cheap_seek=True)
