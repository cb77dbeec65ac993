"""Alembic environment of the decision database.

Run by :func:`echoaudit.review.schema.upgrade`, which builds the Alembic ``Config`` in
code and passes an open connection (already inside a write transaction) as
``config.attributes["connection"]``. Without one (a developer running ``alembic`` by
hand with ``-x url=...`` or ``sqlalchemy.url``), an engine is made from the URL.

Logging is left alone on purpose: no ``fileConfig``, so migrating never reconfigures the
application's loggers.
"""

from alembic import context
from sqlalchemy import create_engine

from echoaudit.review.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
