"""Scan results kept by content: a file whose bytes (SHA-256) were scanned before by the same
scanner (tool version, the scanner's own source, the globals policy, the limits) is not scanned
again. A file's SHA-256 is itself kept under its path and a stamp of its inode (device, inode,
size, modification and change times, in ns): re-scanning an unchanged mirror costs a stat per
file, and a hash per file that changed. The change time (ctime) cannot be set back from user
space (setting the modification time back moves it), so a file written since is hashed again.

The cache is a table in a database: a local SQLite file by default, or the platform's database
(`serve --db URL`), so that `scan --cache URL` and the service share results. Only complete
results are kept: never a file that could not be opened or whose time limit ran out."""

from __future__ import annotations

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
from ..artifacts.scanner import FileScan

HASH_CHUNK = 1 << 20
LOOKUP_BATCH = 500  # SHA-256s per query
RACY_SECONDS = 2.0


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
    """A file's SHA-256 when it had this stamp (result_cache.stamp)."""
    __tablename__ = "file_digests"
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    stamp: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))


def stamp(path: str | Path) -> str:
    """What changes when the file's bytes may have: raises OSError when it cannot be read."""
    status = os.stat(path)
    return (f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}:"
            f"{status.st_ctime_ns}")


def settled(path: str | Path) -> bool:
    """Whether the file last changed more than RACY_SECONDS ago. File systems keep times in
    coarse ticks: a file written again within the same tick keeps its stamp, so the stamp of
    a file that changed just now is not kept (git's "racily clean" entries)."""
    return time.time_ns() - os.stat(path).st_ctime_ns > RACY_SECONDS * 1e9


def default_url() -> str:
    from ..cache import cache_dir

    return f"sqlite:///{cache_dir() / 'scan-results.sqlite'}"


def as_url(where: str | Path | None) -> str:
    """A database URL from `--cache`'s value: none (the default file), a URL, or a file path."""
    if where is None:
        return default_url()
    text = str(where)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


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


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
    """The cache at `url` (SQLAlchemy; the table is made when missing)."""

    def __init__(self, url: str | Path | None = None):
        from ..serve.db import make_engine

        self.url = as_url(url)
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = make_engine(self.url)
            CacheBase.metadata.create_all(engine)
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise CacheError(f"{_shown(self.url)}: cannot open the result cache: "
                             f"{str(exc).splitlines()[0]}") from None
        self._sessions = sessionmaker(engine)

    def get_many(self, scanner: str, digests: Iterable[str]) -> dict[str, FileScan]:
        """The kept results among `digests` (their paths empty: FileScan.moved names them)."""
        digests = sorted(set(digests))
        found: dict[str, FileScan] = {}
        with self._sessions() as db:
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
        given = {os.path.abspath(path): path for path in stamps}
        paths = sorted(given)
        found: dict[str, FileScan] = {}
        with self._sessions() as db:
            for i in range(0, len(paths), LOOKUP_BATCH):
                rows = db.execute(
                    select(FileDigest.path, FileDigest.stamp, ScanResult.result)
                    .join(ScanResult, ScanResult.sha256 == FileDigest.sha256)
                    .where(ScanResult.scanner == scanner,
                           FileDigest.path.in_(paths[i:i + LOOKUP_BATCH])))
                for path, kept, result in rows:
                    if stamps[given[path]] == kept and (done := _parsed(result)) is not None:
                        found[given[path]] = done
        return found

    def put_digests(self, digests: dict[str, tuple[str, str]]) -> None:
        """Keep each path's (stamp, SHA-256), replacing what was kept for it."""
        if not digests:
            return
        digests = {os.path.abspath(path): kept for path, kept in digests.items()}
        with self._sessions() as db:
            paths = list(digests)
            for i in range(0, len(paths), LOOKUP_BATCH):
                db.execute(delete(FileDigest).where(
                    FileDigest.path.in_(paths[i:i + LOOKUP_BATCH])))
            db.execute(insert(FileDigest), [{"path": path, "stamp": kept, "sha256": sha}
                                            for path, (kept, sha) in digests.items()])
            try:
                db.commit()
            except SQLAlchemyError:  # another process wrote them first: theirs stand
                db.rollback()

    def put_many(self, scanner: str, results: dict[str, FileScan]) -> None:
        """Keep each complete result (a result already kept is left as it is)."""
        rows = {sha: r.moved("").to_dict() for sha, r in results.items() if keepable(r)}
        if not rows:
            return
        with self._sessions() as db:
            have = {sha for (sha,) in db.execute(select(ScanResult.sha256).where(
                ScanResult.scanner == scanner, ScanResult.sha256.in_(list(rows))))}
            created = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            new = [{"sha256": sha, "scanner": scanner, "result": row, "created": created}
                   for sha, row in rows.items() if sha not in have]
            if new:
                db.execute(insert(ScanResult), new)
            try:
                db.commit()
            except SQLAlchemyError:  # another process kept the same result first: it stands
                db.rollback()
