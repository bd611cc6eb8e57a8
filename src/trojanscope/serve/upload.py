"""Reading a multipart upload as it arrives: each file part goes straight to the blob store
(hashed and counted on the way), each plain field is kept if short. Nothing is held whole in
memory, and an upload past the limit stops there (413), with nothing kept."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .storage import BlobStore, TooLarge

FIELD_LIMIT = 4096  # bytes of a plain (non-file) field
MAX_PARTS = 16      # fields and files of one upload
IDLE_SECONDS = 60   # a client that sends nothing for this long is dropped (408)
FILE_FIELDS = ("file", "signature", "data")


class BadUpload(ValueError):
    """Not a multipart form this service reads: the reason."""


@dataclass
class StoredFile:
    filename: str
    sha256: str
    size: int


@dataclass
class Upload:
    files: dict[str, StoredFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


class Stalled(BadUpload):
    """The client stopped sending in the middle of its upload."""


async def _with_idle_limit(chunks):
    import asyncio

    iterator = chunks.__aiter__()
    while True:
        try:
            yield await asyncio.wait_for(iterator.__anext__(), IDLE_SECONDS)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise Stalled(f"the upload sent nothing for {IDLE_SECONDS} s") from None


class _Part:
    def __init__(self, name: str, filename: str | None, folder: Path):
        self.name, self.filename = name, filename
        self.size = 0
        self.digest = hashlib.sha256()
        self.text = bytearray()
        self.handle = None
        self.path = None
        if filename is not None:
            fd, self.path = tempfile.mkstemp(dir=folder, prefix=".upload-")
            self.handle = os.fdopen(fd, "wb")

    def write(self, data: bytes, limit: int) -> None:
        self.size += len(data)
        if self.handle is None:
            if self.size > FIELD_LIMIT:
                raise BadUpload(f"form field {self.name!r} is longer than {FIELD_LIMIT} bytes")
            self.text += data
            return
        if self.size > limit:
            raise TooLarge(f"larger than the limit of {limit:,} bytes")
        self.digest.update(data)
        self.handle.write(data)

    def discard(self) -> None:
        if self.handle is not None:
            self.handle.close()
            if self.path and os.path.exists(self.path):
                os.unlink(self.path)


async def read_upload(request, store: BlobStore, limit: int) -> Upload:
    """The files and fields of `request`'s multipart body. Raises TooLarge or BadUpload."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise BadUpload("send multipart/form-data with the file in the field 'file'")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + (1 << 20):
        raise TooLarge(f"larger than the limit of {limit:,} bytes")  # said before reading
    upload, parts, current, total = Upload(), [], {}, {"bytes": 0}
    headers: dict[bytes, bytes] = {}
    header = {"field": b"", "value": b""}

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        headers[header["field"].lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_headers_finished():
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if filename is not None and name not in FILE_FIELDS:
            raise BadUpload(f"unexpected file field {name!r} (expected {', '.join(FILE_FIELDS)})")
        if len(parts) >= MAX_PARTS:
            raise BadUpload(f"more than {MAX_PARTS} form fields")
        if name in current or any(p.name == name for p in parts):
            raise BadUpload(f"field {name!r} given twice")
        current["part"] = _Part(name, None if filename is None else
                                filename.decode("utf-8", "replace"), store.root)
        headers.clear()

    def on_part_data(data, start, end):
        total["bytes"] += end - start  # the limit holds for the whole upload, all parts
        if total["bytes"] > limit:
            raise TooLarge(f"larger than the limit of {limit:,} bytes")
        current["part"].write(data[start:end], limit)

    def on_part_end():
        parts.append(current.pop("part"))

    try:
        parser = MultipartParser(options[b"boundary"], {
            "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data, "on_part_end": on_part_end})
        async for chunk in _with_idle_limit(request.stream()):
            parser.write(chunk)
        parser.finalize()
        for part in parts:
            if part.handle is None:
                upload.fields[part.name] = part.text.decode("utf-8", "replace")
                continue
            part.handle.close()
            if not part.filename and part.size == 0:  # a form's file input left empty
                continue
            sha256 = store.keep(Path(part.path), part.digest.hexdigest())
            upload.files[part.name] = StoredFile(part.filename or "upload", sha256, part.size)
    except Exception as exc:
        for part in parts + list(current.values()):
            part.discard()
        if isinstance(exc, (TooLarge, BadUpload)):
            raise
        if type(exc).__name__ == "ClientDisconnect":  # starlette's: the client went away
            raise Stalled("the client went away in the middle of its upload") from None
        raise BadUpload(f"not a readable multipart form: {exc}") from None
    finally:
        for part in parts + list(current.values()):
            part.discard()
    if "file" not in upload.files:
        raise BadUpload("no file: send it in the multipart field 'file'")
    return upload
