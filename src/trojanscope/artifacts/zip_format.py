"""Zip archives: PyTorch checkpoints, .npz, .keras and plain zips. Every member is examined by
content, whatever its name, so a pickle hidden under any name is found."""

from __future__ import annotations

import zipfile

from ..findings import Location
from .context import LIMIT_EXCEEDED, READ_ERRORS
from .registry import FormatHandler, format_handler
from .torch_export import (
    MAX_PROGRAM_BYTES,
    check_program,
    is_program_member,
    raw_tensor_members,
)
from .torchscript_code import MAX_CODE_BYTES, check_torchscript_code, is_code_member
from .zip_consistency import ambiguities


@format_handler
class ZipHandler(FormatHandler):
    name = "zip"
    priority = 10

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        handle = source.random_access(ctx.limits)
        archive = zipfile.ZipFile(handle)
        for finding in ambiguities(handle, archive, location):
            ctx.add(finding)
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > ctx.limits.max_members:
            ctx.add(LIMIT_EXCEEDED.finding(
                f"{len(members):,} members; only the first {ctx.limits.max_members:,} examined",
                location, {"limit": "max_members"}))
            members = members[: ctx.limits.max_members]
        # torch.jit.save archives: the loader compiles and runs their code/ files; torch.export
        # archives: the loader evaluates parts of their program
        torchscript = any(info.filename.endswith("constants.pkl") for info in members)
        exported = any(info.filename.endswith("archive_format") for info in members)
        raw = raw_tensor_members(archive, members) if exported else set()
        for info in members:
            where = location.inside(info.filename)
            if info.filename in raw:  # tensor bytes torch.export.load reads as bytes
                continue
            if info.flag_bits & 0x1:
                ctx.unreadable(where, RuntimeError("member is encrypted"))
                continue
            try:
                member = archive.open(info)
            except READ_ERRORS as exc:
                ctx.unreadable(where, exc)
                continue
            with member:
                ctx.examine_stream(member, where, depth + 1)
            if torchscript and is_code_member(info.filename):
                _check_member(ctx, archive, info, where, "TorchScript code", MAX_CODE_BYTES,
                              lambda code, at: check_torchscript_code(
                                  code.decode("utf-8", "replace"), at))
            if exported and is_program_member(info.filename):
                _check_member(ctx, archive, info, where, "torch.export program",
                              MAX_PROGRAM_BYTES, check_program)


def _check_member(ctx, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: Location,
                  what: str, limit: int, check) -> None:
    """`check(bytes, where)`'s findings on a member read up to `limit` bytes; over it, a
    limit finding and nothing examined."""
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except READ_ERRORS as exc:
        ctx.unreadable(where, exc)
        return
    if len(data) > limit:
        ctx.add(LIMIT_EXCEEDED.finding(f"{what} over {limit:,} bytes; not examined", where,
                                       {"limit": what}))
        return
    for finding in check(data, where):
        ctx.add(finding)
