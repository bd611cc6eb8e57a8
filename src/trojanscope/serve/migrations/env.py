"""Alembic's entry: runs the migrations on the connection `upgrade` hands over."""

from alembic import context

from trojanscope.cluster.result_cache import CacheBase
from trojanscope.serve.db import Base

connection = context.config.attributes.get("connection")
if connection is None:  # the alembic command line: -x url=...
    from sqlalchemy import create_engine

    url = context.get_x_argument(as_dictionary=True)["url"]
    connection = create_engine(url).connect()
context.configure(connection=connection, target_metadata=[Base.metadata, CacheBase.metadata],
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
