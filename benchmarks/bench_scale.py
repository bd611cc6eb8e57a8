"""`trojanscope scan` at hub scale: one process, Ray, and the result cache, on a synthetic mirror.

    python benchmarks/bench_scale.py [--files 20000] [--seed 0] [--folder DIR] [--keep]
                                     [--skip-ray] [--json OUT]

A mirror of `--files` files (attacks.mirror.build_mirror: safetensors, GGUF, .npy, torch zips,
pickles, configs, tars, and about 1% harmful files of every payload format; log-normal sizes,
about 1.5 GB for 20,000 files) is built under `--folder` (default: a temporary folder, deleted
at the end unless --keep). Building is not timed. Every run reads the same bytes from the page
cache (they were just written, then read by the anchors), so the figures are of the CPU work,
not of the disk. Each scan is run once; its time is the wall time of the call, walk included.

Printed, with the same bytes' anchors measured in the same run (a plain read in Python, and
`sha256sum` over every file, one process): files/s and MB/s of
- one process (`artifacts.scan`);
- Ray on this machine with 1 and with 2 workers (`cluster.scan(ray="local")`); the time includes
  starting and stopping Ray, as the command line does, which is also timed alone just before (a
  no-op start, then its stop); then the same scan on a Ray started before the call (a cluster's
  case: `connected` reuses the instance), so that the reader sees both. Each Ray measurement
  runs in a child process of its own, timed inside it (Ray's core worker ends its process
  without an exception when its raylet dies, e.g. under another user's `ray stop`); a failed
  one is tried once more, and the failure is printed and makes the exit status 1;
- the result cache (single process, a fresh SQLite file): a first, cold run; a second on the
  unchanged mirror hashing every file (the default), a third trusting inode stamps
  (--trust-stamps; goal, issue: >= 20x faster than the first); a fourth after 1% of the files
  (harmless pickles) were rewritten with new bytes.
Checked on the way: every report has the same findings and no errors, every harmful file has a
finding at HIGH or above and no harmless file has one (exit status 1 otherwise). Then a per-file
cost table for a capacity model: scan seconds by kind (the files' own `seconds`, which the
report rounds to 0.1 ms), hashing per MB, stat+lookup per file of a cached run, walk per file.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import anchors
import numpy as np

import trojanscope
from trojanscope.artifacts import GlobalsPolicy, Limits
from trojanscope.artifacts import scan as scan_here
from trojanscope.artifacts.scanner import plan_scan
from trojanscope.attacks.mirror import HARMLESS, build_mirror
from trojanscope.cluster import ResultCache, scanner_key
from trojanscope.cluster import scan as cluster_scan
from trojanscope.cluster.result_cache import RACY_SECONDS, stamp
from trojanscope.findings import Severity
from trojanscope.provenance.manifest import sha256_file

MEDIAN_BYTES = 24 << 10  # with sigma 1.6: about 75 KB a file on average, 1.5 GB for 20,000
SIGMA = 1.6
HARMFUL_SHARE = 0.01
CHANGED_SHARE = 0.01
READ_CHUNK = 1 << 20


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def load() -> str:
    """The 1-minute load average: what else ran on the machine shows here."""
    return f"{os.getloadavg()[0]:.2f}"


def kind_of(relative: str) -> str:
    """The kind in the mirror's file name NNNNNN-KIND.ext."""
    return Path(relative).name.split("-", 1)[1].rsplit(".", 1)[0]


def read_all(files: list[str]) -> int:
    buffer = bytearray(READ_CHUNK)
    total = 0
    for path in files:
        with open(path, "rb", buffering=0) as handle:
            while read := handle.readinto(buffer):
                total += read
    return total


def findings_of(report) -> list[dict]:
    return [f.to_dict() for f in report.findings]


def outcome(report) -> tuple[list[dict], list[dict]]:
    """What the runs must agree on: the findings, and the errors (none)."""
    return findings_of(report), [e.to_dict() for e in report.errors]


class Figures:
    """The printed rows, kept for --json as well."""

    def __init__(self, files: int, megabytes: float, anchor: float | None):
        self.files, self.megabytes, self.anchor = files, megabytes, anchor
        self.rows: dict[str, dict] = {}

    def header(self, title: str) -> None:
        print(f"\n{title:46s} {'time (s)':>9s} {'files/s':>9s} {'MB/s':>8s} "
              f"{'/ sha256sum':>11s}  (load average {load()})", flush=True)

    def row(self, key: str, name: str, seconds: float, files: int | None = None,
            megabytes: float | None = None, rates: bool = True, **extra) -> None:
        """One timed run; `rates`: whether files/s and MB/s mean anything (not for a start)."""
        files = self.files if files is None else files
        megabytes = self.megabytes if megabytes is None else megabytes
        ratio = f"{seconds / self.anchor:10.2f}x" if self.anchor else f"{'-':>11s}"
        shown = (f"{files / seconds:9.0f} {megabytes / seconds:8.1f}" if rates
                 else f"{'-':>9s} {'-':>8s}")
        print(f"{name:46s} {seconds:9.2f} {shown} {ratio}" +
              "".join(f"  {k}={v}" for k, v in extra.items()), flush=True)
        self.rows[key] = {"seconds": round(seconds, 4), **({
            "files": files, "files_per_s": round(files / seconds, 1),
            "mb_per_s": round(megabytes / seconds, 1)} if rates else {}),
            "vs_sha256sum": round(seconds / self.anchor, 3) if self.anchor else None, **extra}


def check_detection(report, folder: Path, manifest: dict[str, bool]) -> dict:
    flagged = {Path(f.location.path).relative_to(folder).as_posix()
               for f in report.findings if f.severity >= Severity.HIGH}
    harmful = {path for path, bad in manifest.items() if bad}
    missed = sorted(harmful - flagged)
    false_alarms = sorted(flagged - harmful)
    print(f"detection: {len(harmful) - len(missed)}/{len(harmful)} harmful flagged, "
          f"{len(false_alarms)} false alarms", flush=True)
    for path in missed[:10]:
        print(f"  missed: {path}")
    for path in false_alarms[:10]:
        print(f"  false alarm: {path}")
    return {"harmful": len(harmful), "flagged": len(harmful) - len(missed),
            "missed": missed, "false_alarms": false_alarms}


def wait_until_settled(files: list[str]) -> float:
    """Sleep until every file last changed more than RACY_SECONDS ago (result_cache.settled):
    the cache keeps no stamp of a file that changed just now. Returns the seconds slept."""
    newest = max(os.stat(path).st_ctime_ns for path in files)
    wait = (newest + (RACY_SECONDS + 0.5) * 1e9 - time.time_ns()) / 1e9
    if wait > 0:
        time.sleep(wait)
    return max(wait, 0.0)


def rewrite_some(folder: Path, manifest: dict[str, bool], seed: int) -> list[str]:
    """Rewrite CHANGED_SHARE of the files: harmless pickles, with new random bytes of about the
    same size (still harmless pickles)."""
    pickles = sorted(p for p, bad in manifest.items() if not bad and kind_of(p) == "pickle")
    count = min(len(pickles), max(1, round(len(manifest) * CHANGED_SHARE)))
    rng = np.random.default_rng(seed + 1)
    chosen = sorted(rng.choice(len(pickles), size=count, replace=False))
    make = HARMLESS["pickle"][1]
    changed = []
    for index in chosen:
        path = folder / pickles[index]
        path.write_bytes(make(rng.bytes(max(64, path.stat().st_size - 64))))
        changed.append(pickles[index])
    return changed


def per_file_table(report, folder: Path, manifest: dict[str, bool], sizes: dict[str, int]
                   ) -> dict:
    by_kind: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
    for entry in report.results.files:
        relative = Path(entry["path"]).relative_to(folder).as_posix()
        kind = kind_of(relative)
        label = f"harmful:{kind}" if manifest[relative] else kind
        by_kind[label].append((entry["seconds"], sizes[relative]))
    harmful_all = [item for label, items in by_kind.items() if label.startswith("harmful:")
                   for item in items]
    table = {}
    print(f"\n{'scan cost by kind (one process)':32s} {'files':>6s} {'MB':>8s} {'KB/file':>8s} "
          f"{'mean ms':>8s} {'median ms':>10s} {'total s':>8s}")
    rows = sorted((label, items) for label, items in by_kind.items()
                  if not label.startswith("harmful:"))
    kinds = {label for label in by_kind if label.startswith("harmful:")}
    rows.append((f"harmful ({len(kinds)} payload formats)", harmful_all))
    rows.append(("all files", [item for items in by_kind.values() for item in items]))
    for label, items in rows:
        seconds = [s for s, _ in items]
        size = sum(b for _, b in items)
        figures = {"files": len(items), "mb": round(size / 1e6, 2),
                   "mean_ms": round(statistics.fmean(seconds) * 1e3, 4),
                   "median_ms": round(statistics.median(seconds) * 1e3, 4),
                   "total_s": round(sum(seconds), 3)}
        table[label] = figures
        print(f"{label:32s} {len(items):6d} {size / 1e6:8.1f} {size / len(items) / 1e3:8.1f} "
              f"{figures['mean_ms']:8.3f} {figures['median_ms']:10.3f} {sum(seconds):8.2f}")
    for label in sorted(kinds):  # in the JSON only
        seconds = [s for s, _ in by_kind[label]]
        table[label] = {"files": len(seconds),
                        "mb": round(sum(b for _, b in by_kind[label]) / 1e6, 3),
                        "mean_ms": round(statistics.fmean(seconds) * 1e3, 4),
                        "median_ms": round(statistics.median(seconds) * 1e3, 4)}
    print("(a file's seconds are rounded to 0.1 ms in the report: medians of small files are "
          "coarse)")
    return table


RAY_TIMEOUT = 900  # seconds one Ray measurement may take, start included


def ray_runs(folder: Path, figures: Figures, reports: dict, plain_seconds: float,
             problems: list[str]) -> dict:
    """For 1 and 2 workers: a no-op start and stop of Ray (timed apart), the scan that starts
    and stops Ray itself (the command line's case), and the scan on a Ray already started.
    Each in a child process of its own (ray_measure): Ray's core worker ends the process it
    runs in, without an exception, when its raylet goes away, and the other runs must go on.
    A measurement that fails is tried once more; both are printed."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        print("Ray is not installed: its rows are skipped")
        return {}
    found: dict = {}
    labels = {"start": "  Ray start alone, {} worker(s)",
              "scan": "Ray, {} worker(s), start+stop included",
              "started": "Ray, {} worker(s), on a started Ray"}
    for workers in (1, 2):
        for kind, label in labels.items():
            label = label.format(workers)
            key = {"start": f"ray_start_{workers}", "scan": f"ray_{workers}",
                   "started": f"ray_{workers}_started"}[kind]
            for attempt in (1, 2):
                result = in_child(kind, folder, workers)
                found.setdefault("import_seconds", result.get("import_seconds"))
                if "error" not in result:
                    break
                line = f"{label.strip()}: failed after {result['wall']:.1f} s: {result['error']}"
                print(line + ("; trying once more" if attempt == 1 else ""), flush=True)
                problems.append(line)
            else:
                continue
            if kind == "start":
                figures.row(key, label, result["start"], rates=False,
                            stop_s=round(result["stop"], 2))
                found[f"start_{workers}"] = result["start"]
                found[f"stop_{workers}"] = result["stop"]
                continue
            stats = result["stats"]
            reports[key] = (result["findings"], result["errors"])
            found[key] = result["seconds"]
            figures.row(key, label, result["seconds"], tasks=stats.get("tasks"),
                        failed=stats.get("failed"))
            if stats.get("failed"):
                problems.append(f"{label}: {stats['failed']} task(s) failed")
    pairs = {"2_over_1": ("ray_1", "ray_2"), "2_over_1_started": ("ray_1_started", "ray_2_started")}
    speedup = {name: found[a] / found[b] for name, (a, b) in pairs.items()
               if a in found and b in found}
    for name in ("ray_2", "ray_2_started"):
        if name in found:
            speedup[name.replace("ray_2", "2_over_one_process")] = plain_seconds / found[name]
    found["speedup"] = {k: round(v, 3) for k, v in speedup.items()}
    for suffix, case in (("", "start included"), ("_started", "on a started Ray")):
        shown = [f"{what} {speedup[k]:.2f}x" for what, k in
                 (("over 1 worker", f"2_over_1{suffix}"),
                  ("over one process", f"2_over_one_process{suffix}")) if k in speedup]
        print(f"speed-up of 2 workers, {case}: " + (", ".join(shown) or "-"), flush=True)
    if found.get("import_seconds") is not None:
        print(f"(import ray, in each measurement's process before its clock starts: "
              f"{found['import_seconds']:.2f} s)", flush=True)
    return found


def in_child(kind: str, folder: Path, workers: int) -> dict:
    """ray_measure in a spawned process: its result, or {"error": why} (and "wall": the
    seconds it took, start of the process included)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=ray_measure, args=(kind, str(folder), workers, send))
    started = time.perf_counter()
    process.start()
    send.close()
    result, answered = None, receive.poll(RAY_TIMEOUT)
    try:
        if answered:
            result = receive.recv()
    except EOFError:  # the process ended without a word
        pass
    process.join(60)
    if process.is_alive():
        process.kill()
        process.join()
    if result is None:
        result = {"error": f"its process ended with exit code {process.exitcode} and no result"
                  if answered else f"no result in {RAY_TIMEOUT} s: its process was killed"}
    result["wall"] = time.perf_counter() - started
    return result


def ray_measure(kind: str, folder: str, workers: int, send) -> None:
    """In a child process: "start" (a no-op start, then the stop, timed apart), "scan"
    (cluster.scan starting Ray itself) or "started" (cluster.scan on a Ray started before)."""
    try:
        _, import_seconds = timed(lambda: __import__("ray"))
        from trojanscope.cluster.ray_scan import connected

        if kind == "start":
            started = time.perf_counter()
            with connected("local", workers) as ray:
                start = time.perf_counter() - started
                started = time.perf_counter()
                ray.shutdown()  # connected's own, after the block, is then a no-op
                stop = time.perf_counter() - started
            send.send({"import_seconds": import_seconds, "start": start, "stop": stop})
            return
        stats: dict = {}
        with connected("local", workers) if kind == "started" else nullcontext():
            report, seconds = timed(lambda: cluster_scan(folder, ray="local", workers=workers,
                                                         stats=stats))
        send.send({"import_seconds": import_seconds, "seconds": seconds, "stats": stats,
                   "findings": findings_of(report), "errors": outcome(report)[1]})
    except Exception as exc:  # noqa: BLE001 - said to the parent, which goes on
        send.send({"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=None,
                        help="where to build the mirror (absent or empty); default: a "
                             "temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the mirror at the end")
    parser.add_argument("--skip-ray", action="store_true", help="no Ray runs (quicker)")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here too")
    args = parser.parse_args()

    if args.folder is not None and args.folder.exists() and any(args.folder.iterdir()):
        parser.error(f"{args.folder}: not empty (the mirror is built in an empty folder)")
    made = args.folder is None or not args.folder.exists()
    folder = (args.folder or Path(tempfile.mkdtemp(prefix="bench-scale-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-cache-"))  # the cache, beside the mirror
    try:
        return run(args, folder, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.keep:
            print(f"\nmirror kept in {folder} (1% of its pickles rewritten after the build)")
        elif made:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for child in folder.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()


def run(args, folder: Path, work: Path) -> int:
    out: dict = {"python": platform.python_version(), "trojanscope": trojanscope.__version__,
                 "cpus": os.cpu_count(), "seed": args.seed}
    problems: list[str] = []

    manifest, built = timed(lambda: build_mirror(folder, args.files, seed=args.seed,
                                                 harmful_share=HARMFUL_SHARE,
                                                 median_bytes=MEDIAN_BYTES, sigma=SIGMA))
    sizes = {p: (folder / p).stat().st_size for p in manifest}
    files = [str(folder / p) for p in manifest]
    total = sum(sizes.values())
    megabytes = total / 1e6
    harmful = sum(manifest.values())
    print(f"mirror: {len(manifest)} files, {megabytes:.1f} MB, {harmful} harmful (seed "
          f"{args.seed}, harmful_share {HARMFUL_SHARE}, median {MEDIAN_BYTES >> 10} KB, sigma "
          f"{SIGMA}, largest {max(sizes.values()) / 1e6:.1f} MB); built in {built:.1f} s "
          f"(not timed as a scan)", flush=True)
    print(f"python {out['python']}, trojanscope {out['trojanscope']}, {out['cpus']} CPUs, "
          f"load average {load()} before the runs")
    out["mirror"] = {"files": len(manifest), "mb": round(megabytes, 1), "harmful": harmful,
                     "median_bytes": MEDIAN_BYTES, "sigma": SIGMA,
                     "harmful_share": HARMFUL_SHARE, "build_seconds": round(built, 2)}

    # --- anchors: the same bytes, read and hashed -----------------------------------------
    read_all(files)  # warm the page cache
    read_bytes, read_seconds = timed(lambda: read_all(files))
    assert read_bytes == total
    anchor = None
    listing = work / "files.list"
    listing.write_bytes(b"\0".join(f.encode() for f in files))
    if shutil.which("sha256sum") and shutil.which("xargs"):
        code, anchor, _ = anchors.run(["xargs", "-0", "-a", str(listing), "sha256sum"])
        if code != 0:
            problems.append(f"sha256sum anchor exited {code}")
            anchor = None
    _, hash_seconds = timed(lambda: [sha256_file(Path(f)) for f in files])
    walks = [timed(lambda: plan_scan(folder)) for _ in range(3)]
    plan, walk_seconds = walks[-1][0], min(s for _, s in walks)
    assert len(plan.files) == len(files), (len(plan.files), len(files))

    figures = Figures(len(files), megabytes, anchor)
    figures.header("anchors (same bytes, page cache warm)")
    figures.row("read", "read every file (python, 1 MB chunks)", read_seconds)
    if anchor:
        figures.row("sha256sum", "sha256sum, every file (xargs, one process)", anchor)
    figures.row("file_sha256", "provenance sha256_file, every file", hash_seconds)
    figures.row("walk", "walk (artifacts.scanner.plan_scan), best of 3", walk_seconds)

    # --- scans ---------------------------------------------------------------------------
    reports: dict[str, object] = {}
    figures.header("scan")
    plain, plain_seconds = timed(lambda: scan_here(folder))
    reports["one process"] = outcome(plain)
    figures.row("one_process", "one process (artifacts.scan)", plain_seconds)

    if not args.skip_ray:
        out["ray"] = ray_runs(folder, figures, reports, plain_seconds, problems)

    # --- the result cache ----------------------------------------------------------------
    slept = wait_until_settled(files)
    cache = str(work / "results.sqlite")
    figures.header("result cache (one process, a fresh SQLite file)")
    print(f"(waited {slept:.1f} s first, until every file was written over {RACY_SECONDS:.0f} s "
          "ago: the cache keeps no stamp of a file changed just now)")
    cache_runs = {}
    for key, name, trust in (
            ("cold", "first run, cold cache (stamps kept)", True),
            ("warm_hashed", "second run, unchanged, every file hashed (default)", False),
            ("warm", "third run, unchanged, --trust-stamps", True)):
        stats = {}
        report, seconds = timed(lambda stats=stats, trust=trust: cluster_scan(
            folder, cache=cache, stats=stats, trust_stamps=trust))
        reports[f"cache {key}"] = outcome(report)
        cache_runs[key] = seconds
        figures.row(f"cache_{key}", name, seconds, cached=stats["cached"])
        if key != "cold" and stats["cached"] != len(files):
            problems.append(f"cached run reused {stats['cached']} of {len(files)} files")
    print(f"first / second run (every file hashed): "
          f"{cache_runs['cold'] / cache_runs['warm_hashed']:.1f}x")

    # stat + lookup alone, as the cached run does them (cluster.scan._unchanged_files)
    store, key = ResultCache(cache), scanner_key(GlobalsPolicy.default(), Limits())

    def stat_and_lookup():
        return store.unchanged(key, {path: stamp(path) for path in plan.files})
    found, lookup_seconds = timed(stat_and_lookup)
    assert len(found) == len(files), len(found)

    changed = rewrite_some(folder, manifest, args.seed)
    stats = {}
    report, changed_seconds = timed(lambda: cluster_scan(folder, cache=cache, stats=stats,
                                                         trust_stamps=True))
    reports["cache after change"] = outcome(report)
    cache_runs["changed"] = changed_seconds
    figures.row("cache_changed", f"fourth run, {len(changed)} pickles rewritten "
                f"({CHANGED_SHARE:.0%})", changed_seconds, megabytes=sum(
                    (folder / p).stat().st_size for p in manifest) / 1e6, cached=stats["cached"])
    if stats["cached"] != len(files) - len(changed):
        problems.append(f"after rewriting {len(changed)} files the cache reused "
                        f"{stats['cached']} of {len(files)}")
    goal = cache_runs["cold"] / cache_runs["warm"]
    out["cache"] = {"cold_over_warm": round(goal, 2),
                    "cold_over_warm_hashed": round(cache_runs["cold"] / cache_runs["warm_hashed"],
                                                   2),
                    "warm_over_one_process": round(cache_runs["warm"] / plain_seconds, 4),
                    "cold_over_one_process": round(cache_runs["cold"] / plain_seconds, 3),
                    "changed_files": len(changed), "changed_cached": stats["cached"],
                    "changed_over_warm": round(changed_seconds / cache_runs["warm"], 2)}
    print(f"first / second run: {goal:.1f}x (goal >= 20x: {'met' if goal >= 20 else 'MISSED'});"
          f" cold cache / one process {cache_runs['cold'] / plain_seconds:.2f}; cached / one "
          f"process {cache_runs['warm'] / plain_seconds:.3f}; after the change / unchanged "
          f"{changed_seconds / cache_runs['warm']:.2f}", flush=True)

    # --- correctness ---------------------------------------------------------------------
    print()
    expected = findings_of(plain)
    agree = {}
    for name, (found, errors) in reports.items():
        agree[name] = found == expected
        if not agree[name]:
            problems.append(f"{name}: findings differ from the one-process report")
        if errors:
            problems.append(f"{name}: {len(errors)} error(s), e.g. {errors[0]}")
    print("same findings as one process: " + ", ".join(
        f"{name} {'yes' if same else 'NO'}" for name, same in agree.items() if name !=
        "one process") + f" ({len(expected)} findings); errors: "
        f"{sum(len(errors) for _, errors in reports.values())}")
    detection = check_detection(plain, folder, manifest)
    if detection["missed"] or detection["false_alarms"]:
        problems.append("detection: missed harmful files or false alarms")
    out["checks"] = {"same_findings": agree, "findings": len(expected),
                     "errors": {name: len(errors) for name, (_, errors) in reports.items()}}
    out["detection"] = detection

    # --- per-file costs, for a capacity model ---------------------------------------------
    out["per_file"] = per_file_table(plain, folder, manifest, sizes)
    capacity = {
        "hash_ms_per_mb": round(hash_seconds / megabytes * 1e3, 4),
        "hash_mb_per_s": round(megabytes / hash_seconds, 1),
        "stat_lookup_us_per_file": round(lookup_seconds / len(files) * 1e6, 2),
        "cached_run_us_per_file": round(cache_runs["warm"] / len(files) * 1e6, 2),
        "walk_us_per_file": round(walk_seconds / len(files) * 1e6, 2),
        "scan_ms_per_file_one_process": round(plain_seconds / len(files) * 1e3, 4),
    }
    out["capacity"] = capacity
    print(f"hashing (sha256_file): {capacity['hash_ms_per_mb']:.3f} ms per MB "
          f"({capacity['hash_mb_per_s']:.0f} MB/s)")
    print(f"cached run: stat + lookup {capacity['stat_lookup_us_per_file']:.1f} us per file "
          f"(timed alone); the whole cached run {capacity['cached_run_us_per_file']:.1f} us "
          f"per file")
    print(f"walk (plan_scan): {capacity['walk_us_per_file']:.1f} us per file; one-process "
          f"scan, all in: {capacity['scan_ms_per_file_one_process']:.3f} ms per file")

    out["runs"] = figures.rows
    out["load_average_end"] = load()
    print(f"load average {load()} at the end")
    out["problems"] = problems
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems))
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
