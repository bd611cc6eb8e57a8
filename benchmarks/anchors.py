"""Finding and running the anchor scanners (picklescan, modelscan) beside trojanscope.

The anchors are looked up on PATH, then in the folder named by TROJANSCOPE_ANCHORS_BIN
(default /opt/anchors/bin: `python -m venv /opt/anchors && /opt/anchors/bin/pip install
picklescan==1.0.5 modelscan==0.8.8`), so they never share an environment with trojanscope.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ANCHOR_DIR = Path(os.environ.get("TROJANSCOPE_ANCHORS_BIN", "/opt/anchors/bin"))


def find(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    candidate = ANCHOR_DIR / tool
    return str(candidate) if candidate.exists() else None


def command(tool: str, path: Path) -> list[str] | None:
    """The command line that scans one path with `tool`, or None when the tool is missing."""
    if tool == "trojanscope":  # TROJANSCOPE_PYTHON: e.g. a venv's python, like the anchors'
        python = os.environ.get("TROJANSCOPE_PYTHON", sys.executable)
        return [python, "-m", "trojanscope", "scan", str(path), "--format", "json"]
    exe = find(tool)
    if exe is None:
        return None
    if tool == "picklescan":
        return [exe, "--path", str(path)]
    if tool == "modelscan":
        return [exe, "-p", str(path)]
    raise ValueError(tool)


def version(tool: str) -> str:
    exe = find(tool)
    if exe is None:
        return "not installed"
    pip = Path(exe).with_name("pip")
    out = subprocess.run([str(pip), "show", tool], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split()[1]
    return "unknown"


def run(cmd: list[str], timeout: float = 600) -> tuple[int, float, str]:
    """Exit code, wall seconds, and output of one run."""
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return out.returncode, time.perf_counter() - started, out.stdout + out.stderr


def best_time(cmd: list[str], repeats: int) -> float:
    return min(run(cmd)[1] for _ in range(repeats))


# Times one tool's own Python API on a file, best of N after a warm-up, in the tool's interpreter.
IN_PROCESS = {
    "picklescan": "from picklescan.scanner import scan_file_path as f; call = lambda p: f(p)",
    "modelscan": "from modelscan.modelscan import ModelScan; call = lambda p: ModelScan().scan(p)",
}
TIMER = """
import sys, time
{setup}
path, repeats = sys.argv[1], int(sys.argv[2])
call(path)
best = float("inf")
for _ in range(repeats):
    t = time.perf_counter(); call(path); best = min(best, time.perf_counter() - t)
print(best)
"""


def in_process_time(tool: str, path: Path, repeats: int) -> float | None:
    exe = find(tool)
    if exe is None:
        return None
    python = str(Path(exe).with_name("python"))
    code = TIMER.format(setup=IN_PROCESS[tool])
    out = subprocess.run([python, "-c", code, str(path), str(repeats)], capture_output=True,
                         text=True, timeout=600)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def flagged(tool: str, code: int, output: str) -> bool | None:
    """Did the tool call the file dangerous? None when it failed to scan it."""
    if tool == "trojanscope":
        return {0: False, 1: True}.get(code)
    if tool == "picklescan":  # 1: dangerous globals found; 2: scan error
        return {0: False, 1: True}.get(code)
    if tool == "modelscan":  # 0: no issues, 1: issues found, 2: error, 3: nothing supported
        if code == 1:
            return True
        if code in (0, 3):
            return False
        return None
    raise ValueError(tool)
