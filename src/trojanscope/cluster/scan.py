"""`trojanscope scan` with a result cache, on Ray, or both. The report is the one a
single-process scan of the same files gives (artifacts.scanner.assemble makes both); only
timings differ."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace

from ..artifacts.limits import Limits
from ..artifacts.policy import GlobalsPolicy
from ..artifacts.scanner import FileScan, assemble, plan_scan, scan_handle, scan_path
from ..findings import Report
from .result_cache import ResultCache, as_url, scanner_key, settled, snapshot, stamp

LOCAL = "local"  # `ray=`: start a Ray instance on this machine
PER_FILE_BYTES = 64 << 10  # a file's fixed cost (open, sniff, parse) in bytes of reading
MAX_BATCH_FILES = 256
LOCAL_BATCH_FILES = 512  # without Ray: files per cache lookup


def scan(paths: str | os.PathLike | Iterable[str | os.PathLike], *,
         policy: GlobalsPolicy | None = None, limits: Limits | None = None,
         ray: str | None = None, workers: int | None = None, cache: str | None = None,
         trust_stamps: bool = False, progress: bool = False,
         stats: dict | None = None) -> Report:
    """Scan `paths` as `artifacts.scan` does. `ray`: a cluster's address, or LOCAL to start
    one here with `workers` CPUs. `cache`: a database URL or a file for the result cache
    (LOCAL: the default file, result_cache.default_url). `trust_stamps`: a file whose inode
    stamp is unchanged since it was hashed is taken as unchanged, without hashing it
    (result_cache: faster, weaker). `stats`, when given, is filled with counts: files, cached
    (results reused), and on Ray tasks and failed (tasks lost). Files settled by their stamp
    never go to Ray (which is not started when there are none)."""
    from .. import progress as bars

    plan = plan_scan(paths)
    policy, limits = policy or GlobalsPolicy.default(), limits or Limits()
    started = time.perf_counter()
    files = list(plan.files)
    results: dict[str, FileScan] = {}
    cache_url = None
    if cache is not None:
        store = _open_cache(None if cache == LOCAL else cache)
        cache_url = store.url
        if trust_stamps:
            results = _unchanged_files(store, files, scanner_key(policy, limits))
    todo = [path for path in files if path not in results]
    stats = {} if stats is None else stats
    if ray is None or not todo:
        done = _local(todo, policy, limits, cache_url, trust_stamps)
    else:
        from .ray_scan import scan_on_ray

        done = scan_on_ray(todo, policy, limits, cache_url, ray, workers, stats, trust_stamps)
    for result in bars.track(done, "scanning", total=len(todo)) if progress else done:
        results[result.path] = result
    stats.update(files=len(files), cached=sum(r.cached for r in results.values()))
    return assemble(plan, [results[path] for path in files], policy, limits,
                    time.perf_counter() - started)


def _unchanged_files(store: ResultCache, files: list[str], key: str) -> dict[str, FileScan]:
    """The cached results of files whose stamp is the one kept with their SHA-256."""
    stamps = {}
    for path in files:
        try:
            stamps[path] = stamp(path)
        except OSError:
            pass  # scanned, which says why it cannot be read
    return {path: _reused(result, path)
            for path, result in store.unchanged(key, stamps).items()}


def _reused(result: FileScan, path: str) -> FileScan:
    return replace(result.moved(path), cached=True, seconds=0.0)


def _local(files: list[str], policy, limits, cache_url: str | None,
           trust_stamps: bool) -> Iterator[FileScan]:
    if cache_url is None:
        for path in files:
            yield scan_path(path, policy, limits)
        return
    for i in range(0, len(files), LOCAL_BATCH_FILES):
        yield from scan_batch(files[i:i + LOCAL_BATCH_FILES], policy, limits, cache_url,
                              trust_stamps)


def scan_batch(paths: list[str], policy: GlobalsPolicy, limits: Limits,
               cache_url: str | None, trust_stamps: bool = False) -> list[FileScan]:
    """Scan `paths`, reusing the cache's results for bytes scanned before (under any path),
    keeping the new ones (and, `trust_stamps`, each file's stamp and SHA-256). The unit of
    work of a Ray task, and of a cached local scan.

    First every file is hashed (result_cache.snapshot: regular files up to SNAPSHOT_BYTES)
    and the digests looked up together; a file found is the bytes hashed, which were scanned
    before. A file not found is read again into memory, and those bytes are both hashed and
    scanned: what is kept under a digest is the result of those very bytes."""
    if cache_url is None:
        return [scan_path(path, policy, limits) for path in paths]
    cache, key = _open_cache(cache_url), scanner_key(policy, limits)
    digests = {}
    for path in paths:
        read = snapshot(path)
        if read is not None:
            digests[path] = read[1:]  # (sha256, stamp); the bytes are not held
    kept = cache.get_many(key, (sha for sha, _ in digests.values()))
    results, fresh, stamped = [], {}, {}
    for path in paths:
        sha, seen = digests.get(path, (None, None))
        if sha in kept:
            results.append(_reused(kept[sha], path))
        else:
            read = snapshot(path)
            if read is None:  # not a regular file, too large, or unreadable: as it is
                results.append(scan_path(path, policy, limits))
                continue
            data, sha, seen = read
            results.append(scan_handle(io.BytesIO(data), path, policy, limits))
            fresh[sha] = results[-1]
        if trust_stamps and settled(seen):
            stamped[path] = (seen, sha)
    cache.put_many(key, fresh)
    cache.put_digests(stamped)
    return results


_caches: dict[str, ResultCache] = {}


def _open_cache(where: str | None) -> ResultCache:
    """One ResultCache (one engine) per database per process: Ray reuses its workers."""
    url = as_url(where)
    if url not in _caches:
        _caches[url] = ResultCache(url)
    return _caches[url]


def batches(paths: list[str], parts: int) -> list[list[str]]:
    """`paths` cut, in order, into batches of about equal work (bytes plus a fixed cost per
    file), about `parts` of them, none over MAX_BATCH_FILES files."""
    weights = [_size(path) + PER_FILE_BYTES for path in paths]
    target = max(sum(weights) / max(parts, 1), PER_FILE_BYTES)
    out: list[list[str]] = []
    batch: list[str] = []
    load = 0
    for path, weight in zip(paths, weights):
        batch.append(path)
        load += weight
        if load >= target or len(batch) >= MAX_BATCH_FILES:
            out.append(batch)
            batch, load = [], 0
    if batch:
        out.append(batch)
    return out


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


__all__ = ["LOCAL", "batches", "scan", "scan_batch"]
