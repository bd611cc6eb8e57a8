"""Legacy Keras HDF5 models (.h5): the model_config attribute holds the layer configuration.

HDF5 stores small attributes as plain bytes, so the JSON is first looked for in the raw file.
Only when that finds nothing but the file names a model_config is h5py (the `hdf5` extra) asked,
and then in a separate process with a time and memory limit: fuzzing showed the HDF5 library
hanging for good on a two-byte change to a variable-length string attribute.
"""

from __future__ import annotations

import json
import sys

from ..findings import Location, Rule, Severity
from .keras_config import check_keras_config, configs_in_bytes
from .registry import FormatHandler, format_handler

MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_RAW_SEARCH = 256 * 1024 * 1024
H5PY_MEMORY = 2 * 1024 ** 3

NO_CONFIG = Rule("keras.config-unreadable", Severity.HIGH,
                 "An HDF5 model names a model_config that could not be read, so its layers were "
                 "not checked",
                 "Do not load it: the HDF5 library failed or hung on this file. Inspect it by "
                 "hand.")

READER = """
import io, json, sys
import h5py
with h5py.File(io.BytesIO(sys.stdin.buffer.read()), "r") as h5:
    value = h5.attrs.get("model_config")
if isinstance(value, bytes):
    value = value.decode("utf-8", "replace")
print(json.dumps(None if value is None else str(value)))
"""


@format_handler
class Hdf5Handler(FormatHandler):
    holds_model = True
    name = "hdf5"
    priority = 10

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head.startswith(MAGIC)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        data = source.read(MAX_RAW_SEARCH)
        configs = configs_in_bytes(data)
        if not configs and b"model_config" in data:
            configs, why = _isolated_h5py(data, ctx.limits.parser_seconds)
            if configs is None:
                ctx.add(NO_CONFIG.finding(f"model_config could not be read: {why}", location))
                return
        for config in configs:
            for finding in check_keras_config(config, location, ctx.policy):
                ctx.add(finding)


def _isolated_h5py(data: bytes, seconds: int) -> tuple[list | None, str]:
    import subprocess  # only when an HDF5 file is met: start-up

    try:
        result = subprocess.run([sys.executable, "-c", READER], input=data, capture_output=True,
                                timeout=seconds, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        return None, f"h5py did not finish in {seconds} s"
    if result.returncode != 0:
        last = (result.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1]
        if "No module named 'h5py'" in last:
            return None, "install trojanscope[hdf5] (h5py) to read it"
        return None, f"h5py failed ({last[:120]})"
    try:
        value = json.loads(result.stdout)
        return ([] if value is None else [json.loads(value)]), ""
    except (ValueError, RecursionError):
        return None, "model_config is not JSON"


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (H5PY_MEMORY, H5PY_MEMORY))
    except (ImportError, ValueError, OSError):
        pass
