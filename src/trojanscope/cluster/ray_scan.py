"""scan's files as Ray tasks: size-balanced batches (scan.batches), results streamed back as
each task ends. A task whose worker dies is tried again: a batch of several files is halved
(so that one file that kills workers is cornered), a single file is tried MAX_TRIES times and
then reported as `scan.crashed`. Every file ends with a result. Ray only carries work and
results between our own processes; the scanned bytes are read by the workers from the same
paths (a cluster's nodes need the files at the paths given: a shared file system)."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterator

from ..api import InputError
from ..artifacts.limits import Limits
from ..artifacts.policy import GlobalsPolicy
from ..artifacts.scanner import FileScan
from .result_cache import scanner_key
from .scan import LOCAL, batches, scan_batch

MAX_TRIES = 3
BATCHES_PER_CPU = 8
IN_FLIGHT_PER_CPU = 2
LOCAL_OBJECT_STORE = 256 << 20  # results are small; a local instance needs little


def need_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'trojanscope[ray]'") from None
    return ray


@contextlib.contextmanager
def connected(address: str, workers: int | None = None):
    """Ray, joined to the cluster at `address`, or to a new instance on this machine (LOCAL,
    with `workers` CPUs) that ends with the block. An instance already joined is used as is."""
    ray = need_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address != LOCAL:
        reachable(address)
    try:
        if address == LOCAL:
            ray.init(address="local", num_cpus=workers, object_store_memory=LOCAL_OBJECT_STORE,
                     **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as exc:  # noqa: BLE001 - every way Ray fails to start or join (network,
        # authentication, versions) is the user's to fix: one line, not a traceback
        where = "on this machine" if address == LOCAL else f"at {address}"
        raise InputError(f"cannot start or join Ray {where}: {str(exc).splitlines()[0]}"
                         ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def reachable(address: str, timeout: float = 5.0) -> None:
    """Ray waits minutes on an address where nothing answers: ask first."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"{address}: a Ray address is HOST:PORT (the head's GCS port)")
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as exc:
        raise InputError(f"{address}: no Ray cluster answers there ({exc.strerror or exc})"
                         ) from None


def scan_on_ray(files: list[str], policy: GlobalsPolicy, limits: Limits,
                cache_url: str | None, address: str, workers: int | None = None,
                stats: dict | None = None, trust_stamps: bool = False
                ) -> Iterator[FileScan]:
    """Each file's result, in the order the tasks end. `stats` (when given) counts the
    tasks run and the ones that failed. The workers get absolute paths (their working folder
    is not the caller's); the results name the files as given."""
    stats = {} if stats is None else stats
    stats.update(tasks=0, failed=0)
    given = {os.path.abspath(path): path for path in files}
    with connected(address, workers) as ray:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(max_retries=0, num_cpus=1)(_scan_task)
        shared = ray.put((policy, limits, cache_url, trust_stamps))
        ours = scanner_key(policy, limits)
        waiting = deque((batch, 1) for batch in batches(list(given), cpus * BATCHES_PER_CPU))
        running: dict = {}
        try:
            while waiting or running:
                while waiting and len(running) < cpus * IN_FLIGHT_PER_CPU + 2:
                    batch, tries = waiting.popleft()
                    running[task.remote(batch, shared)] = (batch, tries)
                    stats["tasks"] += 1
                ready, _ = ray.wait(list(running), num_returns=1)
                batch, tries = running.pop(ready[0])
                try:
                    scanner, rows = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    stats["failed"] += 1
                    yield from _after_failure(batch, tries, exc, waiting, given)
                    continue
                if scanner != ours:
                    raise InputError("a node of the Ray cluster runs another trojanscope (its "
                                     "version, scan's code or policy differ from this one's): "
                                     "install the same one on every node")
                for row in rows:
                    result = FileScan.from_dict(row)
                    yield result.moved(given[result.path])
        except KeyboardInterrupt:  # a partial report: what was done, and what was not
            # (the tasks running are left to end: Ray 2.60 aborts when a task is cancelled
            # as it completes)
            for batch, _ in [*running.values(), *waiting]:
                yield from (FileScan(given[path], error="not scanned: the scan was "
                                     "interrupted") for path in batch)


def _after_failure(batch: list[str], tries: int, exc: Exception, waiting: deque,
                   given: dict[str, str] | None = None) -> Iterator[FileScan]:
    if len(batch) > 1:
        half = len(batch) // 2
        waiting.extend([(batch[:half], 1), (batch[half:], 1)])
    elif tries < MAX_TRIES:
        waiting.append((batch, tries + 1))
    else:
        yield FileScan.crashed((given or {}).get(batch[0], batch[0]), tries, _reason(exc))


def _reason(exc: Exception) -> str:
    """The worker died (WorkerCrashedError, a node lost), or the scan raised (RayTaskError):
    what, in a few words."""
    cause = getattr(exc, "cause", None)
    if cause is None:
        return f"its worker died: {type(exc).__name__}"
    return f"it raised {type(cause).__name__}: {str(cause).splitlines()[0][:120]}"


def _scan_task(paths: list[str], shared) -> tuple[str, list[dict]]:
    """In a Ray worker: the scanner it runs (scanner_key) and a batch's results; plain data
    back, never our objects."""
    policy, limits, cache_url, trust_stamps = shared
    return scanner_key(policy, limits), [result.to_dict() for result in scan_batch(
        paths, policy, limits, cache_url, trust_stamps)]
