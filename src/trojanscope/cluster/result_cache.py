"""Scan results kept by content: a file whose bytes (SHA-256) were scanned before by the same
scanner (tool version, the scanner's own source, the globals policy, the limits) is not scanned
again. The bytes hashed are the bytes scanned: a file is read once into memory (up to
SNAPSHOT_BYTES; a larger one, or one that is not a regular file, is scanned as it is and not
kept), hashed, and scanned from that copy, so that a file changing under the scan cannot leave
a harmless result under a harmful file's digest.

By default every file is hashed on every run: re-scanning an unchanged mirror costs a hash per
file. With `trust_stamps` a file's SHA-256 is also kept under its path and a stamp of its inode
(device, inode, size, modification and change times, in ns), and an unchanged stamp stands for
unchanged bytes: a `stat` per file. That is faster and weaker: a writer can change a file
without changing its times (through a shared memory map; a network file system reports what
its server says), so use it only where whoever writes the files is trusted.

The cache is a table in a database: a local SQLite file by default, or the platform's database
(`serve --db URL`), so that `scan --cache URL` and the service share results. Only complete
results are kept: never a file that could not be opened or whose time limit ran out. The cache
is best effort: a database that fails mid-run costs a scan, not the run. Whoever can write the
cache's database can say that a file is clean: it is as trusted as the scanner."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import JSON, DateTime, String, delete, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from .. import __version__
from ..artifacts.limits import Limits
from ..artifacts.policy import GlobalsPolicy
from ..artifacts.scanner import FileScan, open_regular
from ..paths import cache_file

LOOKUP_BATCH = 500  # SHA-256s per query
RACY_SECONDS = 2.0
SNAPSHOT_BYTES = 256 << 20  # larger files are scanned as they are, and not kept


class CacheError(ValueError):
    """The cache's database cannot be opened: the message names it and says why."""


class CacheBase(DeclarativeBase):
    pass


class ScanResult(CacheBase):
    """One file's scan (FileScan.to_dict, its path left empty), by content and scanner."""
    __tablename__ = "scan_results"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    scanner: Mapped[str] = mapped_column(String(64), primary_key=True)
    result: Mapped[dict] = mapped_column(JSON)
    created: Mapped[dt.datetime] = mapped_column(DateTime)


class FileDigest(CacheBase):
    """A file's SHA-256 when it had this stamp (result_cache.stamp), by the SHA-256 of its
    absolute path's bytes (paths may be longer than an index allows, and not UTF-8)."""
    __tablename__ = "file_digests"
    path_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    stamp: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))


def path_key(path: str) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()


def stamp(path: str | Path) -> str:
    """What changes when the file's bytes change through write(2): raises OSError when it
    cannot be read."""
    return _stamp_of(os.stat(path))


def _stamp_of(status: os.stat_result) -> str:
    return (f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}:"
            f"{status.st_ctime_ns}")


def settled(kept_stamp: str) -> bool:
    """Whether the file had last changed more than RACY_SECONDS before: file systems keep
    times in coarse ticks, and a file written again within the same tick keeps its stamp, so
    the stamp of a file that changed just now is not kept (git's "racily clean" entries)."""
    ctime_ns = int(kept_stamp.rsplit(":", 1)[1])
    return time.time_ns() - ctime_ns > RACY_SECONDS * 1e9


def default_url() -> str:
    return f"sqlite:///{cache_file('local')}"


def as_url(where: str | Path | None) -> str:
    """A database URL from `--cache`'s value: none (the default file), a URL, or a file path."""
    if where is None:
        return default_url()
    text = str(where)
    if "://" not in text:
        try:
            return f"sqlite:///{cache_file(text).resolve()}"
        except (OSError, RuntimeError) as exc:  # a loop of links (RuntimeError before 3.13)
            raise CacheError(f"{text}: cannot be followed to a file ({exc})") from None
    if text.rstrip("/") == "sqlite:" or text.startswith("sqlite:///:memory:"):
        raise CacheError(f"{text}: an in-memory database keeps nothing between runs: give a "
                         "file")
    return text


def _shown(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: say it as given
        return url


@functools.cache
def source_digest() -> str:
    """A SHA-256 of the scanner's own code (artifacts/ and the policy it ships): a result
    made by other code is not reused, even under the same version number."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent / "artifacts"
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".toml", ".json") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def scanner_key(policy: GlobalsPolicy, limits: Limits) -> str:
    """What a cached result must have been made under to be reused."""
    parts = [__version__, source_digest(), policy.digest(),
             json.dumps(limits.to_dict(), sort_keys=True)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def snapshot(path: str) -> tuple[bytes, str, str] | None:
    """(bytes, their SHA-256, the stamp they were read under) of a regular file of at most
    SNAPSHOT_BYTES, read once; None for anything else (scanned as it is, not kept)."""
    try:
        with open_regular(path) as handle:
            status = os.fstat(handle.fileno())
            if status.st_size > SNAPSHOT_BYTES:
                return None
            data = handle.read(status.st_size + 1)
    except OSError:
        return None
    if len(data) != status.st_size:  # it grew or shrank while read
        return None
    return data, hashlib.sha256(data).hexdigest(), _stamp_of(status)


def keepable(result: FileScan) -> bool:
    """A complete result: opened, and not stopped by the clock (which a busy machine hits)."""
    return result.error is None and not any(
        f.rule == "scan.limit-exceeded" and "seconds" in str(f.evidence.get("limit"))
        for f in result.findings)


def _parsed(row) -> FileScan | None:
    try:
        return FileScan.from_dict(row)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a damaged row: the file is scanned again


class ResultCache:
    """The cache at `url` (SQLAlchemy; its tables are made when missing). Reads and writes
    are best effort: a failing database reads as empty, and writes that fail (another process
    kept the same rows first; the database went away) are dropped."""

    def __init__(self, url: str | Path | None = None):
        from ..serve.db import make_engine

        self.url = as_url(url)
        if self.url == default_url():  # the default file's folder; one the user named must exist
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = make_engine(self.url)
            try:
                CacheBase.metadata.create_all(engine)
            except SQLAlchemyError:  # another process made the tables at the same moment
                CacheBase.metadata.create_all(engine)
        except (SQLAlchemyError, OSError, ValueError, ImportError) as exc:
            raise CacheError(f"{_shown(self.url)}: cannot open the result cache: "
                             f"{str(exc).splitlines()[0] or type(exc).__name__}") from None
        self._sessions = sessionmaker(engine)

    def get_many(self, scanner: str, digests: Iterable[str]) -> dict[str, FileScan]:
        """The kept results among `digests` (their paths empty: FileScan.moved names them)."""
        digests = sorted(set(digests))
        found: dict[str, FileScan] = {}
        with self._reading() as db:
            for i in range(0, len(digests), LOOKUP_BATCH):
                rows = db.execute(select(ScanResult.sha256, ScanResult.result).where(
                    ScanResult.scanner == scanner,
                    ScanResult.sha256.in_(digests[i:i + LOOKUP_BATCH])))
                for sha, result in rows:
                    if (done := _parsed(result)) is not None:
                        found[sha] = done
        return found

    def unchanged(self, scanner: str, stamps: dict[str, str]) -> dict[str, FileScan]:
        """The kept result of each path whose stamp is the one kept with its SHA-256 (one
        query per LOOKUP_BATCH paths: the whole cost of an unchanged file)."""
        given = {path_key(path): path for path in stamps}
        keys = sorted(given)
        found: dict[str, FileScan] = {}
        with self._reading() as db:
            for i in range(0, len(keys), LOOKUP_BATCH):
                rows = db.execute(
                    select(FileDigest.path_key, FileDigest.stamp, ScanResult.result)
                    .join(ScanResult, ScanResult.sha256 == FileDigest.sha256)
                    .where(ScanResult.scanner == scanner,
                           FileDigest.path_key.in_(keys[i:i + LOOKUP_BATCH])))
                for key, kept, result in rows:
                    if stamps[given[key]] == kept and (done := _parsed(result)) is not None:
                        found[given[key]] = done
        return found

    def put_digests(self, digests: dict[str, tuple[str, str]]) -> None:
        """Keep each path's (stamp, SHA-256), replacing what was kept for it."""
        rows = {path_key(path): kept for path, kept in digests.items()}
        if not rows:
            return
        keys = list(rows)
        with self._writing() as db:
            for i in range(0, len(keys), LOOKUP_BATCH):
                db.execute(delete(FileDigest).where(
                    FileDigest.path_key.in_(keys[i:i + LOOKUP_BATCH])))
            db.execute(insert(FileDigest), [{"path_key": key, "stamp": kept, "sha256": sha}
                                            for key, (kept, sha) in rows.items()])

    def put_many(self, scanner: str, results: dict[str, FileScan]) -> None:
        """Keep each complete result (a result already kept is left as it is)."""
        rows = {sha: r.moved("").to_dict() for sha, r in results.items() if keepable(r)}
        if not rows:
            return
        with self._writing() as db:
            have = {sha for (sha,) in db.execute(select(ScanResult.sha256).where(
                ScanResult.scanner == scanner, ScanResult.sha256.in_(list(rows))))}
            created = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            new = [{"sha256": sha, "scanner": scanner, "result": row, "created": created}
                   for sha, row in rows.items() if sha not in have]
            if new:
                db.execute(insert(ScanResult), new)

    @contextlib.contextmanager
    def _reading(self):
        """A session whose database errors end the reading: what was found so far stands."""
        with self._sessions() as db:
            try:
                yield db
            except SQLAlchemyError:
                db.rollback()

    @contextlib.contextmanager
    def _writing(self):
        """A session committed at the end; a database error drops the writing."""
        with self._sessions() as db:
            try:
                yield db
                db.commit()
            except SQLAlchemyError:
                db.rollback()
