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
import logging
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
log = logging.getLogger(__name__)


class JobFailed(Exception):
    """The check could not be done: its one-line reason."""


def run_worker(data_dir: Path, db_url: str | None = None, name: str | None = None,
               stop: threading.Event | None = None, once: bool = False,
               lease: float = queue.LEASE.total_seconds(), parent: int | None = None,
               ray: str | None = None) -> None:
    """Claim and run jobs until `stop` is set (or, `once`, until the queue is empty); a job is
    held `lease` seconds at a time. `parent`: the server that started this worker; when it is
    gone (however it ended: uvicorn re-raises the signal that stopped it), so is the worker.
    `ray`: the address of the Ray cluster that runs vet and inspect."""
    if ray is None:
        return _work(data_dir, db_url, name, stop, once, lease, parent, None)
    from ..cluster.ray_scan import connected

    with connected(ray) as joined:
        return _work(data_dir, db_url, name, stop, once, lease, parent, joined)


def _work(data_dir, db_url, name, stop, once, lease, parent, ray) -> None:
    import datetime as dt

    from ..artifacts.policy import GlobalsPolicy
    from ..cluster import ResultCache
    from .db import database_url

    data_dir = Path(data_dir).resolve()  # jobs run inside a folder of their own
    sessions = open_database(data_dir, db_url, migrate=False)
    cache = ResultCache(database_url(data_dir, db_url))
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
                report, images = run_job(db, store, job, data_dir, cache, ray)
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


def run_job(db, store: BlobStore, job: Job, data_dir: Path, cache=None, ray=None
            ) -> tuple[dict, dict | None]:
    """(JSON report, images by caption as base64 or None) of one job; JobFailed if it cannot.
    `cache`: the scan results kept in the platform's database (cluster.ResultCache); `ray`:
    Ray, joined, to run vet and inspect on (cluster.ray_jobs)."""
    artifact: Artifact = job.artifact
    if job.kind == "scan":
        return _scan(store, artifact, cache), None
    if job.kind in queue.AFTER_SCAN:
        _scan_passed(artifact)
    if job.kind == "verify":
        with tempfile.TemporaryDirectory(prefix="trojanscope-job-") as scratch, \
                _inside(scratch):
            path = _materialise(store.path(artifact.sha256), Path("."),
                                safe_name(artifact.name))
            return _verify(store, artifact, path, data_dir), None
    if job.kind not in ("vet", "inspect"):
        raise JobFailed(f"unknown job kind {job.kind!r}")
    inputs = {"main": (artifact.name, _stored(store, artifact.sha256))}
    if job.kind == "inspect":
        inputs["data"] = ("clean.npz", _stored(store, artifact.data_sha256))
    if ray is None:
        return check_files(job.kind, inputs)
    from ..cluster.ray_jobs import run_on_ray

    inputs = {role: (name, path.read_bytes()) for role, (name, path) in inputs.items()}
    report, images, node = run_on_ray(ray, job.kind, inputs)
    log.info("job %d (%s) ran on Ray node %s", job.id, job.kind, node[:12])
    return report, images


def check_files(kind: str, inputs: dict[str, tuple[str, Path | bytes]]
                ) -> tuple[dict, dict | None]:
    """vet or inspect on files given as (uploaded name, stored path or bytes) by role: main,
    and data (inspect's clean data). Here, or in a Ray task on another node."""
    with tempfile.TemporaryDirectory(prefix="trojanscope-job-") as scratch, _inside(scratch):
        # The checks read files by name (a data set's type): the bytes under a safe form of
        # the uploaded name, in a folder of their own, named relative to it, so that reports
        # (and the findings a reviewer accepts) say "train.npz", the same on every run.
        name, content = inputs["main"]
        path = _materialise(content, Path("."), safe_name(name))
        if kind == "vet":
            return _vet(path)
        data = _materialise(inputs["data"][1], Path("clean-data"), "clean.npz")
        return _inspect(path, data)


def _scan(store: BlobStore, artifact: Artifact, cache) -> dict:
    """scan's report of the stored bytes, from the cache when the same bytes were scanned by
    the same scanner before (by this service or by `scan --cache` on its database)."""
    from ..artifacts import GlobalsPolicy, Limits
    from ..artifacts.scanner import file_report, scan_handle
    from ..render.json import report_to_dict

    policy, limits = GlobalsPolicy.default(), Limits()
    key = None
    if cache is not None:
        from ..cluster import scanner_key

        key = scanner_key(policy, limits)
        kept = cache.get_many(key, [artifact.sha256]).get(artifact.sha256)
        if kept is not None:
            return report_to_dict(file_report(kept.moved(artifact.name), policy, limits))
    with open(store.path(artifact.sha256), "rb") as handle:
        result = scan_handle(handle, artifact.name, policy, limits)
    if cache is not None:
        cache.put_many(key, {artifact.sha256: result})
    return report_to_dict(file_report(result, policy, limits))


def _stored(store: BlobStore, sha256: str | None) -> Path:
    if sha256 is None:
        raise JobFailed("a file this check needs was not uploaded")
    return store.path(sha256)


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
    signature = _materialise(_stored(store, artifact.signature_sha256), path.parent,
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


def _materialise(content: Path | bytes, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if isinstance(content, bytes):
        target.write_bytes(content)
        return target
    try:
        os.link(content, target)
    except OSError:
        shutil.copyfile(content, target)
    return target


def safe_name(name: str) -> str:
    """The uploaded name as a plain file name: its last part, safe characters only."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:120]
    return cleaned or "upload"


def pool_worker(*args, **kwargs) -> None:
    """A worker process of the pool: what it logs goes to the server's standard error."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_worker(*args, **kwargs)


class WorkerPool:
    """`count` worker processes (spawned: nothing of the server's state goes with them), each
    started again when it dies (a job that killed its worker runs again when its lease ends)."""

    CHECK = 2.0  # seconds between looks at the workers

    def __init__(self, count: int, data_dir: Path, db_url: str | None, lease: float,
                 ray: str | None = None):
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._args = (data_dir, db_url)
        self._kwargs = {"lease": lease, "parent": os.getpid(), "ray": ray}
        self.processes = [self._start(i) for i in range(count)]
        self.restarts = 0
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._supervise, daemon=True)
        self._watch.start()

    def _start(self, i: int):
        # not daemonic: a worker starts child processes for the model and data checks
        process = self._context.Process(target=pool_worker, args=self._args,
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
