"""The database's schema over time, as Alembic revisions (versions/). `upgrade` brings a
database to the newest; a new revision is written with
`alembic -x url=sqlite:///new.db revision --autogenerate -m WHAT` from this folder's parent,
or by hand, and checked by tests/test_serve_db.py against the models."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine


def config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(config(connection), revision)
