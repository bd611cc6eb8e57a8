"""The differential oracle: does loading a generated file with its real loader run code?

`run_oracle(samples, workdir)` writes each sample (wrapped ones decompressed first, as a user
would before pickle.load), then loads them in batches in child processes
(`_differential_child`) under an audit hook, each file in its own empty working directory. A
file ran code when its load raised a dangerous audit event or left anything in that directory
(the canary). A child that stops answering for `timeout` seconds is killed, its file counted
as a timeout, and a fresh child goes on with the next.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import selectors
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .differential import Sample

STARTUP_SECONDS = 180  # importing torch, NumPy, scikit-learn and joblib, on a busy machine


@dataclass
class Verdict:
    index: int
    status: str = "ok"  # "ok", "error" (the loader raised), "timeout", "crash" or "not-run"
    error: str | None = None
    events: list[tuple[str, str]] = field(default_factory=list)  # dangerous audit events
    canary: bool = False  # the load left something in its working directory
    globals: list[str] = field(default_factory=list)  # what pickle.find_class resolved
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the load's, in the child

    @property
    def ran_code(self) -> bool:
        return bool(self.events) or self.canary

    @property
    def import_only(self) -> bool:
        """Ran code only by importing a module outside the loaders' packages."""
        return not self.canary and bool(self.events) and all(
            name == "import" for name, _ in self.events)


# --- what a user does before pickle.load -------------------------------------------------------
def _first_member_of_zip(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(archive.namelist()[0])


def _first_member_of_tar(data: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.getmembers()[0]
        return archive.extractfile(member).read()  # type: ignore[union-attr]


def _first_member_of_7z(data: bytes) -> bytes:
    import py7zr
    from py7zr.io import BytesIOFactory

    with py7zr.SevenZipFile(io.BytesIO(data)) as archive:
        factory = BytesIOFactory(64 << 20)
        archive.extractall(factory=factory)
        product = next(iter(factory.products.values()))
        product.seek(0)
        return product.read()


UNWRAP = {
    "gzip": gzip.decompress, "bz2": bz2.decompress, "bz2-empty-first-stream": bz2.decompress,
    "xz": lzma.decompress, "lzma": lzma.decompress, "lzma-odd-dictionary": lzma.decompress,
    "zlib": zlib.decompress, "zlib-small-window": zlib.decompress,
    "joblib-zfile": lambda data: zlib.decompress(data[21:]),
    "zip": _first_member_of_zip,
    "zip-in-zip": lambda data: _first_member_of_zip(_first_member_of_zip(data)),
    "tar": _first_member_of_tar,
    "tar.gz": lambda data: _first_member_of_tar(gzip.decompress(data)),
    "7z": _first_member_of_7z,
}


def loader_input(sample: Sample) -> bytes:
    """The bytes the sample's loader opens: wrapped pickles decompressed or extracted."""
    if sample.container.startswith("wrap-"):
        return UNWRAP[sample.container[len("wrap-"):]](sample.data)
    return sample.data


# --- running the children ----------------------------------------------------------------------
def _child_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONBREAKPOINT="0", PYTHONWARNINGS="ignore",
               BROWSER="true", HOME=str(workdir / "home"), TMPDIR=str(workdir / "tmp"),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


class _Child:
    """One child process and the lines it has written so far."""

    def __init__(self, jobs_file: Path, workdir: Path, log):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trojanscope.attacks._differential_child", str(jobs_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            env=_child_env(workdir), cwd=workdir, start_new_session=True)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        self.buffer = b""

    def lines(self, timeout: float) -> list[dict] | None:
        """The next complete lines: [] on timeout, None once the child has exited."""
        until = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if not self.selector.select(max(until - time.monotonic(), 0.0)):
                return []
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)  # type: ignore[union-attr]
            if not chunk:
                return None
            self.buffer += chunk
        *done, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in done if line.strip()]

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.selector.close()
        self.proc.stdout.close()  # type: ignore[union-attr]


def _write_jobs(samples: list[Sample], workdir: Path) -> list[dict]:
    jobs = []
    for sample in samples:
        path = workdir / "files" / sample.name
        path.write_bytes(loader_input(sample))
        cwd = workdir / "cwd" / str(sample.index)
        cwd.mkdir(parents=True, exist_ok=True)
        jobs.append({"i": sample.index, "path": str(path), "loader": sample.loader,
                     "cwd": str(cwd)})
    return jobs


def _record(line: dict, verdicts: dict[int, Verdict]) -> bool:
    """Files one line of the child's; True when it ends a file."""
    if "ev" in line:
        verdicts[line["i"]].events.append((line["ev"], line["arg"]))
        return False
    verdict = verdicts[line["i"]]
    verdict.status = "error" if line["error"] else "ok"
    verdict.error, verdict.globals, verdict.notes = line["error"], line["globals"], line["notes"]
    verdict.seconds = line["seconds"]
    return True


def _run_batch(jobs: list[dict], workdir: Path, verdicts: dict[int, Verdict], timeout: float,
               deadline: float, number: int) -> int:
    """Runs one child on the jobs until it ends; returns how many jobs it got through."""
    jobs_file = workdir / f"jobs-{number}.json"
    jobs_file.write_text(json.dumps(jobs))
    log_path = workdir / f"child-{number}.log"
    with open(log_path, "wb") as log:
        child = _Child(jobs_file, workdir, log)
    try:
        started = time.monotonic()
        ready = False
        done = 0
        while done < len(jobs):
            limit = timeout if ready else STARTUP_SECONDS
            wait = min(started + limit, deadline) - time.monotonic()
            lines = child.lines(wait)
            if not lines:  # timed out, or the child exited
                if not ready:
                    raise RuntimeError(f"the oracle's child did not start: see {log_path}")
                if lines == [] and time.monotonic() >= deadline:
                    return done  # out of budget: the rest stay "not-run"
                verdicts[jobs[done]["i"]].status = "crash" if lines is None else "timeout"
                return done + 1
            for line in lines:
                if line.get("ready"):
                    ready, started = True, time.monotonic()
                elif _record(line, verdicts):
                    done, started = done + 1, time.monotonic()
                    if line["restart"]:
                        return done
        return done
    finally:
        child.kill()


def run_oracle(samples: list[Sample], workdir: Path, *, timeout: float = 10.0,
               batch: int = 500, budget_seconds: float = 3600.0) -> dict[int, Verdict]:
    """Loads every sample with its loader; a sample left when the budget runs out is
    "not-run"."""
    deadline = time.monotonic() + budget_seconds
    workdir = Path(workdir)
    for name in ("files", "cwd", "home", "tmp"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    jobs = _write_jobs(samples, workdir)
    verdicts = {s.index: Verdict(s.index, status="not-run") for s in samples}
    start, number = 0, 0
    while start < len(jobs) and time.monotonic() < deadline:
        start += _run_batch(jobs[start:start + batch], workdir, verdicts, timeout, deadline,
                            number)
        number += 1
    for job in jobs:
        verdict = verdicts[job["i"]]
        if verdict.status != "not-run":
            verdict.canary = any(Path(job["cwd"]).iterdir())
    return verdicts
