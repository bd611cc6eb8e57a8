"""Scan time against checkpoint size, and against picklescan and modelscan on the same files.

Goal (issue 2): scan time does not grow with tensor bytes (400 MB / 1 MB ratio <= 2), and
trojanscope is faster than both anchors. Run: python benchmarks/bench_scan_speed.py
Checkpoints are cached in benchmarks/.cache (made once with torch.save).
"""

from __future__ import annotations

import argparse
import compileall
import sys
import time
from pathlib import Path

import anchors

import trojanscope
from trojanscope.artifacts import scan

CACHE = Path(__file__).parent / ".cache"
LAYERS = 10


def checkpoint(width: int) -> Path:
    """A torch.save'd state dict of LAYERS square linear layers: same pickle, other tensor bytes."""
    path = CACHE / f"mlp_{LAYERS}x{width}.pt"
    if not path.exists():
        import torch

        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(LAYERS)])
        CACHE.mkdir(exist_ok=True)
        torch.save(model.state_dict(), path)
    return path


def in_process(path: Path, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        report = scan(path)
        best = min(best, time.perf_counter() - started)
        assert report.exit_code() == 0, report.findings
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    big, small = checkpoint(3162), checkpoint(158)
    sizes = {p: p.stat().st_size / 1e6 for p in (big, small)}
    print(f"files: {big.name} {sizes[big]:.1f} MB, {small.name} {sizes[small]:.2f} MB "
          f"(python {sys.version.split()[0]})")

    t_big, t_small = in_process(big, args.repeats), in_process(small, args.repeats)
    print(f"\nscan call in-process, best of {args.repeats} (each tool's own Python API):")
    print(f"{'tool':12s} {'version':9s} {'400 MB (ms)':>12s} {'1 MB (ms)':>10s} "
          f"{'400MB/1MB':>10s} {'trojanscope / tool':>19s}")
    rows = {"trojanscope": (t_big, t_small)}
    for tool in ("picklescan", "modelscan"):
        rows[tool] = (anchors.in_process_time(tool, big, args.repeats),
                      anchors.in_process_time(tool, small, args.repeats))
    for tool, (b, s) in rows.items():
        ver = "dev" if tool == "trojanscope" else anchors.version(tool)
        if b is None or s is None:
            print(f"{tool:12s} {ver:9s} {'not installed or failed':>23s}")
            continue
        print(f"{tool:12s} {ver:9s} {b * 1e3:12.2f} {s * 1e3:10.2f} {b / s:10.2f} "
              f"{f'{t_big / b:.2f} / {t_small / s:.2f}':>19s}")
    print(f"goal: trojanscope 400MB/1MB ratio <= 2: {t_big / t_small:.2f}")

    # pip compiles a package's bytecode when it installs it; an editable install run with
    # PYTHONDONTWRITEBYTECODE never gets any. Compile it here so that the comparison is of
    # installed tools (the anchors were installed by pip).
    compileall.compile_dir(Path(trojanscope.__file__).parent, quiet=1)
    print(f"\ncommand line, best of {args.repeats} (includes interpreter start-up; "
          "bytecode compiled, as pip installs it):")
    print(f"{'tool':12s} {'version':9s} {'400 MB (s)':>11s} {'1 MB (s)':>9s} {'size ratio':>10s} "
          f"{'trojanscope / tool':>19s}")
    times = {}
    for tool in ("trojanscope", "picklescan", "modelscan"):
        row = {}
        for path in (big, small):
            cmd = anchors.command(tool, path)
            row[path] = None if cmd is None else anchors.best_time(cmd, args.repeats)
        times[tool] = row
    for tool, row in times.items():
        ver = "dev" if tool == "trojanscope" else anchors.version(tool)
        if row[big] is None:
            print(f"{tool:12s} {ver:9s} {'not installed':>11s}")
            continue
        ours = times["trojanscope"]
        vs = f"{ours[big] / row[big]:.2f} / {ours[small] / row[small]:.2f}"
        print(f"{tool:12s} {ver:9s} {row[big]:11.3f} {row[small]:9.3f} "
              f"{row[big] / row[small]:10.2f} {vs:>19s}")
    print("\n'trojanscope / tool' is trojanscope's time over the tool's (400 MB / 1 MB); "
          "below 1 means trojanscope is faster.")


if __name__ == "__main__":
    main()
