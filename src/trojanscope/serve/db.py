"""The platform's records (SQLAlchemy 2): users, tokens and sessions, projects, artifacts, their
jobs (the queue lives here), accepted findings and the audit log. The schema is made and moved
by Alembic (serve/migrations); `open_database` brings a database to the newest revision.

SQLite (a file under the data folder) is the default; PostgreSQL when a postgresql:// URL is
given. Every query runs on both.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

ROLES = ("viewer", "reviewer", "admin")  # each may do what the ones before it may


def now() -> dt.datetime:
    """UTC, without tzinfo: both databases store it as given."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2; None: tokens only
    role: Mapped[str] = mapped_column(String(20))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


class Token(Base):
    """An API token: only its SHA-256 is kept; the token itself is shown once."""
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    user: Mapped[User] = relationship()


class LoginSession(Base):
    """A browser's session after a password login: the cookie's SHA-256, and the CSRF token
    that its forms carry."""
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    expires: Mapped[dt.datetime] = mapped_column(DateTime)
    user: Mapped[User] = relationship()


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class Artifact(Base):
    """An upload: its bytes are stored once, under their SHA-256 (the same bytes uploaded
    again are a new artifact record, a new version, sharing the blob)."""
    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))  # as the uploader named it: display only
    kind: Mapped[str] = mapped_column(String(20))   # model or data
    size: Mapped[int] = mapped_column(BigInteger)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    signature_sha256: Mapped[str | None] = mapped_column(String(64))  # a signature given with it
    data_sha256: Mapped[str | None] = mapped_column(String(64))  # clean data given with a model
    project: Mapped[Project] = relationship()
    uploader: Mapped[User] = relationship()
    jobs: Mapped[list[Job]] = relationship(back_populates="artifact", order_by="Job.id")


class Job(Base):
    """One check of an artifact. Workers claim queued jobs, or running ones whose lease ran
    out (their worker died), by a compare-and-set on (status, lease_until)."""
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # scan, verify, vet, inspect
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    started: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime)
    report: Mapped[dict | None] = mapped_column(JSON)  # the command line's JSON report
    images: Mapped[dict | None] = mapped_column(JSON)  # caption -> PNG in base64
    error: Mapped[str | None] = mapped_column(Text)
    tool_version: Mapped[str | None] = mapped_column(String(40))
    policy_digest: Mapped[str | None] = mapped_column(String(64))
    artifact: Mapped[Artifact] = relationship(back_populates="jobs")


class Acceptance(Base):
    """A reviewer's decision that a finding is acceptable for this artifact, until `expires`."""
    __tablename__ = "acceptances"
    __table_args__ = (UniqueConstraint("artifact_id", "rule", "location"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    rule: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(1000))
    reason: Mapped[str] = mapped_column(Text)
    expires: Mapped[dt.datetime] = mapped_column(DateTime)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    user: Mapped[User] = relationship()


class AuditEntry(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict] = mapped_column(JSON)
    user: Mapped[User | None] = relationship()


def database_url(data_dir: Path, url: str | None) -> str:
    return url or f"sqlite:///{Path(data_dir).resolve() / 'trojanscope.db'}"


def open_database(data_dir: Path, url: str | None = None, migrate: bool = True
                  ) -> sessionmaker:
    """A session factory on the database, brought to the newest schema first."""
    engine = make_engine(database_url(data_dir, url))
    if migrate:
        from .migrations import upgrade

        upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)


def make_engine(url: str) -> Engine:
    """An engine on `url` (sqlite:///FILE, or postgresql:// through psycopg 3), SQLite with
    the pragmas that let several processes share the file."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers beside the one writer
    cursor.execute("PRAGMA busy_timeout=30000")  # writers wait their turn, not fail
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


__all__ = ["Base", "User", "Token", "LoginSession", "Project", "Artifact", "Job", "Acceptance",
           "AuditEntry", "ROLES", "make_engine", "open_database", "now"]
