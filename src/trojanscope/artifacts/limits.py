"""Resource limits for a scan: every untrusted length, count and depth is checked against these."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    # Bytes produced by decompression for one top-level file, all wrappers together (zip bombs).
    max_expanded_bytes: int = 4 * GiB
    # Wrappers inside wrappers (gzip in zip in tar ...).
    max_depth: int = 8
    # Members examined in one archive.
    max_members: int = 100_000
    # A single pickle constant (bytes/str) held in memory; larger ones are skipped, not read whole.
    max_item_bytes: int = 256 * MiB
    # All constants of one pickle held in memory together, decoded text and folded constants
    # (_codecs.encode) included; past it, constants are skipped (unknown to the scan).
    max_held_bytes: int = 320 * MiB
    # Opcodes simulated in one pickle, and values held on its stack and memo.
    max_opcodes: int = 50_000_000
    max_stack: int = 5_000_000
    # A decompressed stream that must be seekable (a zip inside gzip) is spooled to disk past this.
    spool_in_memory: int = 16 * MiB
    # Bytes of a stream's start read to recognise its format.
    sniff_bytes: int = 4096
    # Wall time for a third-party parser run in a child process (h5py on HDF5 files).
    parser_seconds: int = 20
    # Wall time for one top-level file while it expands compressed or archived data (a small
    # file of cheap opcodes behind many compressed streams takes hours otherwise).
    max_seconds: int = 600

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class LimitExceeded(Exception):
    """Raised when an untrusted input asks for more than a `Limits` field allows."""

    def __init__(self, what: str, limit: int):
        super().__init__(f"{what} exceeds the limit of {limit:,}")
        self.what = what
        self.limit = limit


class ExpansionLimitExceeded(LimitExceeded):
    """The budget of expanded bytes for one top-level file is spent: the whole file stops."""
