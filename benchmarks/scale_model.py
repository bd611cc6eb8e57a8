"""A model of `scan` over a hub of a million files on N nodes, from the per-file costs that
bench_scale.py measured on this machine (its --json output).

    python benchmarks/scale_model.py /tmp/bench_scale_full.json [--files 1000000]
        [--mean-mb 0.078] [--cores 16] [--node-gbps 1.0] [--storage-gbps 10.0]
        [--stat-us 200] [--scan-read 0.05]

The work of a scan splits three ways, and they overlap (results stream while tasks run), so the
time is the largest of them plus Ray's start:
- the driver, serial: listing the files (a stat each: --stat-us on a network file system,
  where bench_scale measured a local disk), cutting batches, and taking in each file's result
  (what a cached run costs per file beyond its stat, measured);
- the cluster's CPUs: scanning (the measured mean per file of a mirror like bench_scale's) and,
  with the cache, hashing every byte (measured ms per MB), over N x --cores CPUs;
- the storage: the bytes read, over min(N x --node-gbps, --storage-gbps). scan alone reads a
  part of each file (--scan-read: headers and pickles, not tensor data: an assumption, not a
  measurement); the first run with the cache reads every byte, to hash it.
A second run with the cache, on an unchanged hub, is the driver alone: a stat and a lookup per
file, serial, whatever N is. The table says which term bounds each case.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NODES = (1, 2, 4, 8, 16, 32, 64, 128)


def model(measured: dict, args: argparse.Namespace) -> list[dict]:
    capacity, runs = measured["capacity"], measured["runs"]
    scan_s = capacity["scan_ms_per_file_one_process"] / 1e3 - capacity["walk_us_per_file"] / 1e6
    hash_s_per_mb = capacity["hash_ms_per_mb"] / 1e3
    take_in_s = max(0.0, capacity["cached_run_us_per_file"] - capacity["stat_lookup_us_per_file"]
                    - capacity["walk_us_per_file"]) / 1e6
    lookup_s = capacity["stat_lookup_us_per_file"] / 1e6
    start_s = runs.get("ray_start_2", runs.get("ray_start_1", {})).get("seconds", 15.0)
    stat_s = args.stat_us / 1e6
    total_mb = args.files * args.mean_mb
    rows = []
    for nodes in NODES:
        cpus = nodes * args.cores
        bandwidth = min(nodes * args.node_gbps, args.storage_gbps) * 1e3  # MB/s
        for case, cpu, read_mb in (
                ("scan", args.files * scan_s, total_mb * args.scan_read),
                ("scan, cache cold", args.files * scan_s + total_mb * hash_s_per_mb, total_mb)):
            terms = {"driver": args.files * (stat_s + take_in_s), "CPU": cpu / cpus,
                     "storage": read_mb / bandwidth}
            bound = max(terms, key=terms.get)
            rows.append({"nodes": nodes, "case": case, "seconds": start_s + terms[bound],
                         "bound": bound, **{k: round(v, 1) for k, v in terms.items()}})
        rows.append({"nodes": nodes, "case": "scan, cache warm",
                     "seconds": args.files * (stat_s + lookup_s + take_in_s), "bound": "driver",
                     "driver": round(args.files * (stat_s + lookup_s + take_in_s), 1),
                     "CPU": 0.0, "storage": 0.0})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measured", type=Path, help="bench_scale.py --json output")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--mean-mb", type=float, default=None,
                        help="mean file size in MB (default: the measured mirror's)")
    parser.add_argument("--cores", type=int, default=16, help="CPUs per node")
    parser.add_argument("--node-gbps", type=float, default=1.0, help="GB/s one node reads")
    parser.add_argument("--storage-gbps", type=float, default=10.0,
                        help="GB/s the shared storage serves in all")
    parser.add_argument("--stat-us", type=float, default=200.0,
                        help="microseconds per stat on the shared file system")
    parser.add_argument("--scan-read", type=float, default=0.05,
                        help="the share of each file's bytes that scan reads (assumed)")
    args = parser.parse_args()
    measured = json.loads(args.measured.read_text())
    mirror = measured["mirror"]
    if args.mean_mb is None:
        args.mean_mb = mirror["mb"] / mirror["files"]
    capacity = measured["capacity"]
    print(f"measured on this machine ({mirror['files']} files, {mirror['mb']} MB): scan "
          f"{capacity['scan_ms_per_file_one_process']:.3f} ms/file, hashing "
          f"{capacity['hash_ms_per_mb']:.3f} ms/MB, a cached run "
          f"{capacity['cached_run_us_per_file']:.1f} us/file")
    print(f"a hub of {args.files:,} files of {args.mean_mb:.3f} MB on average "
          f"({args.files * args.mean_mb / 1e6:.2f} TB); {args.cores} CPUs and "
          f"{args.node_gbps} GB/s a node, storage {args.storage_gbps} GB/s, a stat "
          f"{args.stat_us:.0f} us, scan reads {args.scan_read:.0%} of the bytes\n")
    print(f"{'nodes':>5}  {'case':18} {'time':>10}  {'bound by':9} {'driver s':>10} "
          f"{'CPU s':>10} {'storage s':>10}")
    for row in model(measured, args):
        print(f"{row['nodes']:5d}  {row['case']:18} {_human(row['seconds']):>10}  "
              f"{row['bound']:9} {row['driver']:10.1f} {row['CPU']:10.1f} "
              f"{row['storage']:10.1f}")
    return 0


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    raise SystemExit(main())
