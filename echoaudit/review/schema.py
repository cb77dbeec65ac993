"""Schema migrations of the decision database with Alembic, run in code on open.

The Alembic environment ships inside the package (``migrations/``: ``env.py``,
``script.py.mako``, ``versions/``); :func:`alembic_config` points a ``Config`` built in
code at it, so no ``alembic.ini`` is needed and logging is never reconfigured.

Opening a database that is already at :data:`HEAD` reads one row and returns: Alembic is
not even imported. Otherwise the upgrade runs under a lock that serialises it across
processes, inside one transaction, and the revision is read again once the lock is held, so
several processes opening a new database at once migrate it exactly once:

* SQLite: the transaction begins with ``BEGIN IMMEDIATE`` (the store's write engine), which
  takes the database's write lock up front; the others wait on the busy timeout.
* PostgreSQL: the connection first takes the session-level advisory lock
  ``pg_advisory_lock(PG_LOCK_KEY)`` (per database: other databases on the server are not
  blocked), then begins the migration transaction, so its snapshot is taken with the lock
  held (correct at any isolation level), and releases the lock after the commit. Should the
  release fail, the connection is invalidated: closing the session releases it too.
* Other backends: one transaction, no lock across processes.

To add a revision: ``command.revision(alembic_config(url), "message", autogenerate=True)``
against a database at head, edit the generated file in ``migrations/versions``, then set
:data:`HEAD` to its id (a test checks that they agree).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from echoaudit.errors import ReviewError

__all__ = ["MIGRATIONS", "HEAD", "VERSION_TABLE", "PG_LOCK_KEY", "alembic_config", "current_revision", "head_revision",
           "migration_lock", "ensure_schema"]

#: The folder holding env.py, script.py.mako and versions/.
MIGRATIONS: Path = Path(__file__).resolve().with_name("migrations")
#: The newest revision in ``migrations/versions`` (checked against Alembic by the tests).
HEAD: str = "0001"
VERSION_TABLE: str = "alembic_version"
#: Key of the PostgreSQL advisory lock held while migrating: a fixed signed 64-bit number
#: (the ASCII bytes of "EchoAudt"); every echoaudit version must use the same one.
PG_LOCK_KEY: int = 0x4563686F41756474


def alembic_config(url: str | None = None):
    """An Alembic ``Config`` for the packaged migrations (and ``url``, if given)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
    return cfg


def head_revision() -> str:
    """The head revision as Alembic reads it from the scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    """The revision a database is at, or None (no version table: a new database)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction, holding the lock that serialises migrations
    across processes (see the module docstring); the transaction commits on a normal exit
    and rolls back on an exception, and the lock is released either way."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE through the store's write engine
            yield conn
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        conn.commit()  # a session lock: it outlives this transaction, and the next one's snapshot is newer
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()
            except Exception:  # a broken connection: never pool it with the lock held
                conn.invalidate()


def ensure_schema(engine: Engine, write_engine: Engine | None = None) -> str:
    """Bring the database to :data:`HEAD`; return the revision it is at.

    Args:
        engine: for the read that finds an up-to-date database.
        write_engine: for the upgrade (the store passes one that begins with
            ``BEGIN IMMEDIATE`` on SQLite); ``engine`` when None.

    Raises:
        ReviewError: the database is at a revision this version of echoaudit does not
            know (written by a newer one), or the migration failed.
    """
    with engine.connect() as conn:
        if current_revision(conn) == HEAD:
            return HEAD
    url = engine.url.render_as_string(hide_password=False)
    with migration_lock(write_engine or engine) as conn:
        found = current_revision(conn)  # again under the lock: another process may have migrated
        if found != HEAD:
            from alembic import command  # imported only by the process that migrates
            from alembic.util import CommandError

            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:
                raise ReviewError(
                    f"the decision database {engine.url!r} is at schema revision {found!r}, which this "
                    f"echoaudit does not know (its newest is {HEAD!r}); upgrade echoaudit ({exc})"
                ) from exc
    return HEAD
