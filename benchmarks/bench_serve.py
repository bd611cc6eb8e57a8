"""The platform under load and under failure, on loopback, for SQLite and PostgreSQL.

    python benchmarks/bench_serve.py [--uploads 500] [--clients 20] [--workers 2]

For each database: a fresh server (`trojanscope serve`, N workers) takes `--uploads` uploads
from `--clients` concurrent clients (distinct small model files, a tenth of them harmful
pickles); every upload's result is awaited. Printed: uploads/s while uploading, p50 and p95
latency of an upload call, time until every job finished, and the checks of the result: each
upload has exactly one artifact with one finished scan, none lost or duplicated, every harmful
one blocked by the gate and every harmless one allowed.

Then the failures: a worker killed with SIGKILL in the middle of a job (the job completes on a
second attempt), and a server stopped with 50 jobs queued and started again (all 50 complete).
PostgreSQL comes from Debian's package (skipped when absent), started on a loopback port.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import Server, postgres, postgres_bin  # noqa: E402


def harmless(i: int) -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    return len(header).to_bytes(8, "little") + header + i.to_bytes(8, "little")


def harmful(i: int) -> bytes:
    arg = f"echo {i}".encode()
    return (b"\x80\x02cos\nsystem\nq\x00X" + len(arg).to_bytes(4, "little") + arg +
            b"q\x01\x85q\x02Rq\x03.")


def load(server: Server, uploads: int, clients: int) -> dict:
    files = [(f"m{i}.pkl", harmful(i)) if i % 10 == 0 else (f"m{i}.safetensors", harmless(i))
             for i in range(uploads)]
    latencies = []

    def send(item):
        name, content = item
        started = time.perf_counter()
        answer = server.upload("reviewer", name, content)
        latencies.append(time.perf_counter() - started)
        answer.raise_for_status()
        return name, content, answer.json()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        sent = list(pool.map(send, files))
    upload_seconds = time.perf_counter() - started
    settled = {}
    for name, content, body in sent:
        settled[name] = (content, server.settled(body["id"], timeout=600))
    all_seconds = time.perf_counter() - started
    listed = requests.get(server.url + "/api/v1/artifacts?limit=500",
                          headers=server.headers("viewer"), timeout=60).json()
    ids = [a["id"] for a in listed]
    problems = []
    if len(ids) != len(set(ids)) or len(ids) != min(uploads, 500):
        problems.append(f"{len(ids)} artifacts listed for {uploads} uploads")
    for name, (content, artifact) in settled.items():
        jobs = artifact["jobs"]
        if artifact["sha256"] != hashlib.sha256(content).hexdigest():
            problems.append(f"{name}: wrong digest")
        if [(j["kind"], j["status"]) for j in jobs] != [("scan", "done")]:
            problems.append(f"{name}: jobs {jobs}")
        allowed = server.gate(artifact["sha256"])["allowed"]
        if allowed != name.endswith(".safetensors"):
            problems.append(f"{name}: gate said allowed={allowed}")
    ordered = sorted(latencies)
    return {"uploads": uploads, "upload_per_s": uploads / upload_seconds,
            "p50_ms": 1000 * statistics.median(ordered),
            "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
            "all_done_s": all_seconds, "problems": problems}


def kill_mid_job(folder: Path, db: str | None) -> str:
    import io

    import numpy as np

    from trojanscope.data.datasets import digits

    server = Server(folder, db, workers=0, lease=2.0).start()
    try:
        data = digits()
        buffer = io.BytesIO()
        np.savez(buffer, x=np.tile(data.x, (4, 1, 1, 1)), y=np.tile(data.y, 4))  # a longer job
        artifact = server.upload("reviewer", "train.npz", buffer.getvalue()).json()
        where = ["--data-dir", str(folder)] + (["--db", db] if db else [])
        command = [sys.executable, "-m", "trojanscope", "worker", *where, "--lease", "2"]
        first = subprocess.Popen(command, start_new_session=True)
        while server.artifact(artifact["id"])["jobs"][1]["status"] != "running":
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = subprocess.Popen(command, start_new_session=True)
        started = time.perf_counter()
        vet = server.settled(artifact["id"], timeout=600)["jobs"][1]
        os.killpg(second.pid, signal.SIGTERM)
        second.wait()
        return (f"vet job {vet['status']} after the first worker was killed, attempt "
                f"{vet['attempts']}, {time.perf_counter() - started:.1f} s after the kill")
    finally:
        server.stop()


def restart_with_queue(folder: Path, db: str | None, jobs: int = 50) -> str:
    server = Server(folder, db, workers=0).start()
    sent = [server.upload("reviewer", f"q{i}.safetensors", harmless(10_000 + i)).json()
            for i in range(jobs)]
    server.stop()
    server = Server(folder, db, workers=2).start()
    try:
        started = time.perf_counter()
        done = sum(all(j["status"] == "done" for j in server.settled(s["id"])["jobs"])
                   for s in sent)
        return f"{done}/{jobs} queued jobs done after the restart, in " \
               f"{time.perf_counter() - started:.1f} s"
    finally:
        server.stop()


def run_one(label: str, db_factory, args) -> None:
    with tempfile.TemporaryDirectory(prefix="trojanscope-bench-serve-") as scratch:
        root = Path(scratch)
        server = Server(root / "load", db_factory(), workers=args.workers,
                        max_upload_mb=16).start()
        try:
            figures = load(server, args.uploads, args.clients)
        finally:
            server.stop()
        print(f"{label:10s} {figures['uploads']:7d} {figures['upload_per_s']:9.1f} "
              f"{figures['p50_ms']:8.1f} {figures['p95_ms']:8.1f} {figures['all_done_s']:9.1f}  "
              f"{'ok' if not figures['problems'] else '; '.join(figures['problems'][:3])}")
        print(f"{'':10s} kill -9: {kill_mid_job(root / 'kill', db_factory())}")
        print(f"{'':10s} restart: {restart_with_queue(root / 'restart', db_factory())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"{args.uploads} uploads from {args.clients} clients, {args.workers} workers, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'database':10s} {'uploads':>7s} {'upload/s':>9s} {'p50 ms':>8s} {'p95 ms':>8s} "
          f"{'all done s':>9s}  checks")
    if "sqlite" in args.databases:
        run_one("sqlite", lambda: None, args)
    if "postgresql" in args.databases:
        if postgres_bin() is None:
            print("postgresql: skipped (apt-get install postgresql)")
            return
        with postgres() as new_database:
            run_one("postgresql", new_database, args)


if __name__ == "__main__":
    main()
