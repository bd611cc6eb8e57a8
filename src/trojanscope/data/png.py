"""PNG images from arrays, with the standard library only (recovered triggers, thumbnails)."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def encode_png(image: np.ndarray) -> bytes:
    """(H, W) grey, (H, W, 3) RGB or (C, H, W) with C in {1, 3}; values in [0, 1] or uint8."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        array = np.clip(np.round(np.asarray(array, dtype=np.float64) * 255), 0, 255)
        array = array.astype(np.uint8)
    if array.ndim not in (2, 3):
        raise ValueError(f"cannot encode an image of shape {array.shape}")
    height, width = array.shape[:2]
    colour = 0 if array.ndim == 2 else 2
    rows = array.reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def most_suspicious(x: np.ndarray, y: np.ndarray, vet_results,
                    count: int = 32) -> dict[str, bytes]:
    """Thumbnails of the highest-scoring samples of a vet report, captioned, for HTML pages."""
    scores = np.asarray(vet_results.scores)
    flagged = set(vet_results.suspicious_indices)
    return {f"#{i} class {y[i]} score {scores[i]:.2f}{' flagged' if i in flagged else ''}":
            encode_png(x[i]) for i in np.argsort(-scores, kind="stable")[:count]}
