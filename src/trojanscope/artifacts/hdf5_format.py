"""Legacy Keras HDF5 models (.h5): the model_config attribute holds the layer configuration.

Read with h5py when it is installed (the `hdf5` extra); otherwise the JSON is found in the raw
bytes, where HDF5 stores small attributes uncompressed."""

from __future__ import annotations

import json

from ..findings import Location, Rule, Severity
from .keras_config import check_keras_config, configs_in_bytes
from .registry import FormatHandler

MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_ATTRIBUTE = 64 * 1024 * 1024
MAX_RAW_SEARCH = 256 * 1024 * 1024

NO_CONFIG = Rule("keras.config-unreadable", Severity.MEDIUM,
                 "An HDF5 model's configuration could not be read, so its layers were not checked",
                 "Install trojanscope[hdf5] (h5py) and scan again, or inspect the file by hand.")


class Hdf5Handler(FormatHandler):
    name = "hdf5"
    priority = 10

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        return head.startswith(MAGIC)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        try:
            import h5py
        except ImportError:
            h5py = None
        if h5py is None:
            configs = configs_in_bytes(source.read(MAX_RAW_SEARCH))
            how = "raw bytes (h5py not installed)"
        else:
            configs, how = _h5py_configs(h5py, source.random_access(ctx.limits)), "h5py"
        if configs is None:
            ctx.add(NO_CONFIG.finding(f"model_config could not be read ({how})", location))
            return
        for config in configs:
            for finding in check_keras_config(config, location, ctx.policy):
                ctx.add(finding)


def _h5py_configs(h5py, handle) -> list | None:
    try:
        with h5py.File(handle, "r") as h5:
            if "model_config" not in h5.attrs:
                return []  # a weights-only file
            if h5.attrs.get_id("model_config").get_storage_size() > MAX_ATTRIBUTE:
                return None
            value = h5.attrs["model_config"]
    except (OSError, ValueError, KeyError, RuntimeError, TypeError):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return [json.loads(str(value))]
    except (ValueError, RecursionError):
        return None
