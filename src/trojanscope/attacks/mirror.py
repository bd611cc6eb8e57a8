"""A synthetic model-hub mirror: many files across the formats scan reads, most harmless, some
harmful (every payload format of payload_files), for the scale tests and benchmarks. Built from
bytes with numpy's seeded generator only: no torch, onnx or h5py; the same seed gives the same
files. Payload sizes are log-normal (most files small, a few large), so that the mirror looks
like a hub: many configs and small checkpoints, few big weights."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np

from . import model_files as mf
from . import payload_files as pf

SAFE_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
NEEDS_EXTRAS = {"keras-h5"}  # h5py writes it


def _safetensors(raw: bytes) -> bytes:
    count = len(raw) // 4
    header = json.dumps({"weight": {"dtype": "F32", "shape": [count],
                                    "data_offsets": [0, 4 * count]}}).encode()
    return struct.pack("<Q", len(header)) + header + raw[:4 * count]


def _gguf(raw: bytes) -> bytes:
    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    entries = [("general.architecture", 8, string("llama")),
               ("tokenizer.chat_template", 8, string(SAFE_TEMPLATE))]
    body = b"".join(string(k) + struct.pack("<I", t) + v for k, t, v in entries)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + body + raw


def _npy(raw: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(raw[:len(raw) // 4 * 4], dtype=np.float32))
    return buffer.getvalue()


def _torch(raw: bytes) -> bytes:
    state = pickle.dumps({"weight": ("storage", "0", len(raw))}, protocol=2)
    return mf.zip_of({"archive/data.pkl": state, "archive/data/0": raw,
                      "archive/version": b"3\n"}, 0)


HARMLESS = {  # format: (file suffix, bytes from random payload bytes)
    "safetensors": (".safetensors", _safetensors),
    "gguf": (".gguf", _gguf),
    "numpy": (".npy", _npy),
    "torch": (".pt", _torch),
    "pickle": (".pkl", lambda raw: pickle.dumps({"weights": raw, "epochs": 3}, protocol=4)),
    "config": (".json", lambda raw: json.dumps({"hidden": len(raw), "vocab": raw[:64].hex(),
                                                "chat_template": SAFE_TEMPLATE}).encode()),
    "tar": (".tar", lambda raw: mf.tar_of({"model/weights.safetensors": _safetensors(raw)})),
}


def build_mirror(folder: str | Path, files: int, *, seed: int = 0, harmful_share: float = 0.01,
                 median_bytes: int = 8 << 10, sigma: float = 1.6, max_bytes: int = 64 << 20
                 ) -> dict[str, bool]:
    """Write `files` files under `folder` (in org/model/ folders, as hubs lay them out); return
    each file's path relative to `folder` and whether it is harmful."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    harmful = [name for name in pf.GENERATORS if name not in NEEDS_EXTRAS]
    kinds = list(HARMLESS)
    manifest: dict[str, bool] = {}
    for i in range(files):
        where = Path(f"org{i % 97:02d}") / f"model{i // 97:04d}"
        bad = bool(rng.random() < harmful_share)
        if bad:
            name = harmful[int(rng.integers(len(harmful)))]
            data = pf.GENERATORS[name](f"echo mirror-{i}")
            relative = where / f"{i:06d}-{name}.bin"
        else:
            kind = kinds[int(rng.integers(len(kinds)))]
            suffix, make = HARMLESS[kind]
            size = int(min(max_bytes, max(64, rng.lognormal(np.log(median_bytes), sigma))))
            data = make(rng.bytes(size))
            relative = where / f"{i:06d}-{kind}{suffix}"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
        manifest[relative.as_posix()] = bad
    return manifest
