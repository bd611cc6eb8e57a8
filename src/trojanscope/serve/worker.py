"""A worker: claims jobs from the database, runs each check, hands in its JSON report. Run as
`trojanscope worker` or as the pool that `serve --workers N` starts; never in the server's
process. scan reads bytes only; vet and inspect run in a child process with time and memory
limits (jobs.run_in_child, api.inspect), after scan passed the file.

While a job runs, a thread renews its lease; a worker killed mid-job stops renewing, and the job
goes back to the queue when the lease ends.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from .. import __version__
from ..findings import Severity
from . import queue
from .db import Artifact, Job, open_database
from .storage import BlobStore

POLL = 0.5  # seconds between looks at an empty queue


class JobFailed(Exception):
    """The check could not be done: its one-line reason."""


def run_worker(data_dir: Path, db_url: str | None = None, name: str | None = None,
               stop: threading.Event | None = None, once: bool = False,
               lease: float = queue.LEASE.total_seconds(), parent: int | None = None) -> None:
    """Claim and run jobs until `stop` is set (or, `once`, until the queue is empty); a job is
    held `lease` seconds at a time. `parent`: the server that started this worker; when it is
    gone (however it ended: uvicorn re-raises the signal that stopped it), so is the worker."""
    import datetime as dt

    from ..artifacts.policy import GlobalsPolicy

    data_dir = Path(data_dir).resolve()  # jobs run inside a folder of their own
    sessions = open_database(data_dir, db_url, migrate=False)
    store = BlobStore(data_dir)
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    policy = GlobalsPolicy.default().digest()
    stop = stop or threading.Event()
    while not stop.is_set():
        if parent is not None and os.getppid() != parent:
            return
        with sessions() as db:
            job = queue.claim(db, name, dt.timedelta(seconds=lease))
        if job is None:
            if once:
                return
            stop.wait(POLL)
            continue
        held = threading.Event()
        keeper = threading.Thread(target=_keep_lease,
                                  args=(sessions, job.id, name, held, lease), daemon=True)
        keeper.start()
        try:
            with sessions() as db:
                job = db.get(Job, job.id)
                report, images = run_job(db, store, job, data_dir)
            error = None
        except JobFailed as exc:
            report, images, error = None, None, str(exc)
        except Exception as exc:  # a bug of ours: the job fails, the worker goes on
            import traceback

            traceback.print_exc()
            report, images, error = None, None, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            held.set()
            keeper.join()
        with sessions() as db:
            queue.finish(db, job.id, name, report=report, images=images, error=error,
                         version=__version__, policy=policy)


def _keep_lease(sessions, job_id: int, name: str, done: threading.Event,
                lease: float) -> None:
    import datetime as dt

    while not done.wait(lease / 3):
        with sessions() as db:
            if not queue.renew(db, job_id, name, dt.timedelta(seconds=lease)):
                return


def run_job(db, store: BlobStore, job: Job, data_dir: Path) -> tuple[dict, dict | None]:
    """(JSON report, images by caption as base64 or None) of one job; JobFailed if it cannot."""
    from ..render.json import report_to_dict

    artifact: Artifact = job.artifact
    if job.kind == "scan":
        from ..artifacts import scan_stream

        with open(store.path(artifact.sha256), "rb") as handle:
            return report_to_dict(scan_stream(handle, artifact.name)), None
    if job.kind in queue.AFTER_SCAN:
        _scan_passed(artifact)
    with tempfile.TemporaryDirectory(prefix="trojanscope-job-") as scratch, _inside(scratch):
        # The checks read files by name (a data set's type, a signature's statement): the
        # stored bytes under a safe form of the uploaded name, in a folder of their own, named
        # relative to it, so that reports (and the findings a reviewer accepts) say
        # "train.npz", the same on every run, not a temporary path.
        path = _materialise(store, artifact.sha256, Path("."), safe_name(artifact.name))
        if job.kind == "verify":
            return _verify(store, artifact, path, data_dir), None
        if job.kind == "vet":
            return _vet(path)
        if job.kind == "inspect":
            data = _materialise(store, artifact.data_sha256, Path("clean-data"), "clean.npz")
            return _inspect(path, data)
    raise JobFailed(f"unknown job kind {job.kind!r}")


@contextlib.contextmanager
def _inside(folder: str):
    """Work in `folder` (a worker runs one job at a time; its lease thread uses no paths)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _scan_passed(artifact: Artifact) -> None:
    scan = next((j for j in artifact.jobs if j.kind == "scan"), None)
    if scan is None or scan.status != "done":
        raise JobFailed("scan has not passed the file")
    worst = [f for f in scan.report["findings"]
             if Severity.parse(f["severity"]) >= Severity.HIGH]
    if worst:
        raise JobFailed(f"refused: scan found {len(worst)} finding(s) at or above high "
                        f"({worst[0]['rule']}); the file is not loaded")


def _verify(store: BlobStore, artifact: Artifact, path: Path, data_dir: Path) -> dict:
    from .. import api
    from ..render.json import report_to_dict

    keys = sorted((data_dir / "trusted_keys").glob("*.pem"))
    if not keys:
        raise JobFailed("no trusted public key: an admin puts the publishers' public keys "
                        "(PEM) in trusted_keys/ of the service's data folder")
    signature = _materialise(store, artifact.signature_sha256, path.parent,
                             path.name + ".sig")
    last = None
    for key in keys:  # the first key that verifies, else the last key's report
        try:
            last = api.verify(path, key=key, signature=signature)
        except api.InputError as exc:
            raise JobFailed(str(exc)) from None
        if last.results.verified:
            break
    return report_to_dict(last)


def _vet(path: Path) -> tuple[dict, dict]:
    from ..jobs import JobError, run_in_child

    try:
        answer = run_in_child("vet", {"data": str(path)})
    except JobError as exc:
        raise JobFailed(str(exc)) from None
    return answer["report"], answer["images"]


def _inspect(model: Path, data: Path) -> tuple[dict, dict]:
    from .. import api
    from ..render.html import captioned_triggers
    from ..render.json import report_to_dict

    try:
        report = api.inspect(model, data)
    except api.InputError as exc:
        raise JobFailed(str(exc)) from None
    images = {caption: base64.b64encode(png).decode()
              for caption, png in captioned_triggers(report.results).items()}
    return report_to_dict(report), images


def _materialise(store: BlobStore, sha256: str | None, folder: Path, name: str) -> Path:
    if sha256 is None:
        raise JobFailed("a file this check needs was not uploaded")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    try:
        os.link(store.path(sha256), target)
    except OSError:
        shutil.copyfile(store.path(sha256), target)
    return target


def safe_name(name: str) -> str:
    """The uploaded name as a plain file name: its last part, safe characters only."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:120]
    return cleaned or "upload"


class WorkerPool:
    """`count` worker processes (spawned: nothing of the server's state goes with them), each
    started again when it dies (a job that killed its worker runs again when its lease ends)."""

    CHECK = 2.0  # seconds between looks at the workers

    def __init__(self, count: int, data_dir: Path, db_url: str | None, lease: float):
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._args = (data_dir, db_url)
        self._kwargs = {"lease": lease, "parent": os.getpid()}
        self.processes = [self._start(i) for i in range(count)]
        self.restarts = 0
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._supervise, daemon=True)
        self._watch.start()

    def _start(self, i: int):
        # not daemonic: a worker starts child processes for the model and data checks
        process = self._context.Process(target=run_worker, args=self._args,
                                        kwargs=self._kwargs, name=f"trojanscope-worker-{i}")
        process.start()
        return process

    def _supervise(self) -> None:
        """Start a dead worker again, waiting longer each time it dies young (a database
        that is gone kills every new worker at once: no busy loop of restarts)."""

        wait = [0.0] * len(self.processes)
        due = [0.0] * len(self.processes)
        born = [time.monotonic()] * len(self.processes)
        while not self._stop.wait(self.CHECK):
            for i, process in enumerate(self.processes):
                if process.is_alive() or time.monotonic() < due[i]:
                    continue
                if process.exitcode is not None and not due[i]:
                    process.join()
                    young = time.monotonic() - born[i] < 60
                    wait[i] = min(300.0, max(self.CHECK, 2 * wait[i])) if young else 0.0
                    due[i] = time.monotonic() + wait[i]
                    if wait[i]:
                        continue
                due[i] = 0.0
                self.processes[i] = self._start(i)
                born[i] = time.monotonic()
                self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        self._watch.join()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(10)
