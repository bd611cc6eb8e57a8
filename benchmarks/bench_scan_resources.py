"""Scan time and memory on pickles built to exhaust them (issue 17, "Bounded").

- time of a 4 MB and an 8 MB pickle of one-byte opcodes (goal: ratio <= 2.2, linear);
- peak memory of a scan of small compressed bombs, each in a fresh process (goal: <= 512 MB):
  twelve memoised 60 MB strings behind 0.7 MB of gzip, and the same folded through
  _codecs.encode.
Run: python benchmarks/bench_scan_resources.py
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trojanscope.artifacts import scan_bytes

MEASURE = r"""
import resource, sys, time
from trojanscope.artifacts import scan
started = time.perf_counter()
report = scan(sys.argv[1])
print(round(time.perf_counter() - started, 2), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
      // 1024, report.max_severity)
"""


def one_byte_opcodes(megabytes: int) -> bytes:
    return b"\x80\x04" + b"N0" * (megabytes * 1024 * 1024 // 2) + b"."


def bomb(path: Path, fold: bool) -> None:
    n = 60 * 1024 * 1024
    text = b"X" + struct.pack("<I", n) + b"\xc3\xa9" * (n // 2)
    encode = b"\x8c\x07_codecs\x8c\x06encode\x93" if fold else b""
    item = encode + text + (b"\x8c\x05utf-8\x86R" if fold else b"") + b"\x94" + b"0"
    with gzip.open(path, "wb", 9) as out:
        out.write(b"\x80\x04")
        for _ in range(12):
            out.write(item)
        out.write(b"N.")


def main() -> None:
    times = {}
    for size in (4, 8):
        data = one_byte_opcodes(size)
        started = time.perf_counter()
        scan_bytes(data)
        times[size] = time.perf_counter() - started
        print(f"{size} MB of one-byte opcodes: {times[size]:.2f} s")
    print(f"ratio 8 MB / 4 MB: {times[8] / times[4]:.2f} (goal <= 2.2)")
    with tempfile.TemporaryDirectory() as folder:
        for fold in (False, True):
            path = Path(folder) / f"bomb{'-fold' if fold else ''}.pkl.gz"
            bomb(path, fold)
            seconds, peak, severity = subprocess.run(
                [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                check=True).stdout.split()
            print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB of gzip, {seconds} s, "
                  f"peak memory {peak} MB (goal <= 512), worst finding {severity}")


if __name__ == "__main__":
    main()
