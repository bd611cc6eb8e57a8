"""Hashing throughput of sign/verify against sha256sum (and the model-signing library when it is
installed), on the same 1 GB file and on a folder of eight 128 MB shards; the page cache is
warmed first so every tool reads from memory. Also the peak memory Python allocated while
hashing (tracemalloc), which stays at a few chunks whatever the file size.

Run: python benchmarks/bench_hashing.py [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from trojanscope.provenance.manifest import manifest, sha256_file

CHUNK = 64 << 20


def _write(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with open(path, "wb") as handle:
        for start in range(0, size, CHUNK):
            handle.write(block[:min(CHUNK, size - start)])


def _best(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def _row(name: str, seconds: float, megabytes: float, anchor: float | None) -> None:
    ratio = f"{anchor / seconds:6.2f}x" if anchor else "      -"
    print(f"{name:44s} {seconds:7.2f} s {megabytes / seconds:8.0f} MB/s  {ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mb << 20
    with tempfile.TemporaryDirectory(prefix="bench-hashing-") as folder:
        folder = Path(folder)
        one = folder / "model.bin"
        _write(one, size)
        shards = folder / "shards"
        shards.mkdir()
        for i in range(8):
            _write(shards / f"model-{i:05d}-of-00008.safetensors", size // 8)
        for path in [one, *shards.iterdir()]:
            sha256_file(path)  # warm the page cache
        megabytes = size / 1e6
        print(f"{'one file / a folder of 8 shards':44s} {'time':>9s} {'rate':>13s}  vs sha256sum")
        reference = None
        if shutil.which("sha256sum"):
            reference = _best(lambda: subprocess.run(["sha256sum", str(one)], check=True,
                                                     capture_output=True))
            _row("sha256sum, one file", reference, megabytes, reference)
        _row("trojanscope, one file", _best(lambda: sha256_file(one)), megabytes, reference)
        folder_reference = None
        if shutil.which("sha256sum"):
            files = sorted(str(p) for p in shards.iterdir())
            folder_reference = _best(lambda: subprocess.run(["sha256sum", *files], check=True,
                                                            capture_output=True))
            _row("sha256sum, 8 shards (one process)", folder_reference, megabytes,
                 folder_reference)
        _row(f"trojanscope, 8 shards ({min(8, os.cpu_count() or 1)} threads)",
             _best(lambda: manifest(shards)), megabytes, folder_reference)
        _row("trojanscope, 8 shards (1 thread)", _best(lambda: manifest(shards, workers=1)),
             megabytes, folder_reference)
        tracemalloc.start()
        sha256_file(one)
        single = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        manifest(shards)
        several = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"peak memory allocated while hashing: one {size >> 20} MB file "
              f"{single / 2**20:.1f} MB, eight shards in parallel {several / 2**20:.1f} MB")
        try:
            from model_signing import hashing
        except ImportError:
            print("model-signing is not installed: its row is skipped")
            return
        config = hashing.Config().use_file_serialization(hashing_algorithm="sha256")
        _row("model-signing library, 8 shards", _best(lambda: config.hash(shards)),
             megabytes, folder_reference)


if __name__ == "__main__":
    main()
