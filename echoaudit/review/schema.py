"""Schema migrations of the decision database with Alembic, run in code on open.

The Alembic environment ships inside the package (``migrations/``: ``env.py``,
``script.py.mako``, ``versions/``); :func:`alembic_config` points a ``Config`` built in
code at it, so no ``alembic.ini`` is needed and logging is never reconfigured.

Opening a database that is already at :data:`HEAD` reads one row and returns: Alembic is
not even imported. Otherwise the upgrade runs inside one write transaction (SQLite:
``BEGIN IMMEDIATE``), and the revision is read again once the lock is held, so several
processes opening a new database at once migrate it exactly once.

To add a revision: ``command.revision(alembic_config(url), "message", autogenerate=True)``
against a database at head, edit the generated file in ``migrations/versions``, then set
:data:`HEAD` to its id (a test checks that they agree).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from echoaudit.errors import ReviewError

__all__ = ["MIGRATIONS", "HEAD", "VERSION_TABLE", "alembic_config", "current_revision", "head_revision", "ensure_schema"]

#: The folder holding env.py, script.py.mako and versions/.
MIGRATIONS: Path = Path(__file__).resolve().with_name("migrations")
#: The newest revision in ``migrations/versions`` (checked against Alembic by the tests).
HEAD: str = "0001"
VERSION_TABLE: str = "alembic_version"


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
    with (write_engine or engine).begin() as conn:
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
