"""Reviewer decisions in a real database: :class:`DecisionStore`.

One store = one SQLAlchemy URL. A workspace's store is the SQLite file
``<workspace>/decisions.sqlite``, or the URL in the environment variable ``ECHOAUDIT_DB``
when it is set (e.g. ``postgresql://user@host/echoaudit`` shared by a team; a PostgreSQL
URL without a driver uses psycopg 3, ``pip install 'psycopg[binary]'``).

SQLite is set up for several processes at once (the app's sessions, CLI calls, scripts):

* WAL journal: readers never block the writer and the writer never blocks readers;
* a busy timeout (30 s): a writer waits for the lock instead of failing with
  "database is locked";
* every write is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock up front,
  so a read-then-write (an import) cannot hit a lock upgrade conflict, and a process
  killed mid-write (SIGKILL, power cut) leaves the decision either fully there or not at
  all (``synchronous = FULL``: a committed decision survives a power cut too).

pysqlite's own transaction handling is switched off (``isolation_level = None``) and the
store emits ``BEGIN`` itself, as the SQLAlchemy documentation recommends for SQLite.

The schema is migrated by Alembic on open (:func:`echoaudit.review.schema.ensure_schema`).
"""

from __future__ import annotations

import csv
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine, event, func, insert, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

from echoaudit.errors import ReviewError
from echoaudit.fileio import atomic_path
from echoaudit.review.decision import CSV_COLUMNS, Decision, check_decision, new_uid
from echoaudit.review.models import DecisionRow
from echoaudit.review.schema import ensure_schema

__all__ = ["DecisionStore", "DB_ENV", "DB_FILE", "HISTORY_COLUMNS"]

#: Environment variable holding a SQLAlchemy URL that replaces every workspace's file.
DB_ENV = "ECHOAUDIT_DB"
#: The default database file inside a workspace.
DB_FILE = "decisions.sqlite"
#: Columns of :meth:`DecisionStore.history` and :meth:`DecisionStore.current`.
HISTORY_COLUMNS: tuple[str, ...] = ("id",) + CSV_COLUMNS

_TABLE = DecisionRow.__table__
_BEGIN_OPTION = "echoaudit_sqlite_begin"
_CHUNK = 500  # uids per IN (...) query, well under every backend's parameter limit
#: Drivers used for URLs that name none (SQLAlchemy's own default for PostgreSQL is psycopg2).
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
#: How to install the driver of a dialect+driver name, for the missing-driver message.
_DRIVER_HINTS = {"postgresql+psycopg": "psycopg 3: pip install 'psycopg[binary]' (see requirements.txt)",
                 "postgresql+psycopg2": "psycopg2: pip install psycopg2-binary, or use postgresql+psycopg://"}


def _engine(url: str | URL) -> Engine:
    """An engine for ``url`` (``postgresql://`` and ``postgres://`` mapped to psycopg 3).

    Raises:
        ReviewError: a URL SQLAlchemy cannot parse or has no dialect for, or a driver that is
            not installed (naming the package to install).
    """
    try:
        parsed = make_url(url)
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS.get(parsed.drivername, parsed.drivername))
    except (ArgumentError, ValueError) as exc:
        raise ReviewError(f"{url!r} is not a usable database URL ({exc}); e.g. sqlite:///decisions.sqlite") from exc
    shown = parsed.render_as_string(hide_password=True)
    try:
        return create_engine(parsed)
    except ImportError as exc:  # the dialect is known, its DB-API module is not installed
        hint = _DRIVER_HINTS.get(parsed.drivername, f"the Python package of the {parsed.drivername!r} driver")
        raise ReviewError(f"cannot open the decision database {shown}: its driver is not installed "
                          f"({exc}); install {hint}") from None
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ReviewError(f"{shown!r} is not a usable database URL ({exc}); e.g. sqlite:///decisions.sqlite") from exc


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # BEGIN is ours (see _on_begin), not pysqlite's
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # first: the next PRAGMA may wait
            if not memory and str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get(_BEGIN_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def _db_error(action: str, url: str, exc: DBAPIError) -> ReviewError:
    return ReviewError(f"could not {action} the decision database {url}: {exc.orig}")


def _frame(rows) -> pd.DataFrame:
    df = pd.DataFrame([tuple(r) for r in rows], columns=list(HISTORY_COLUMNS))
    df["id"] = df["id"].astype("int64")
    for c in ("score", "threshold"):
        df[c] = df[c].astype("float64")
    df["decided_at"] = pd.to_datetime(df["decided_at"], utc=True)
    return df


def _number_text(v: float) -> str:
    return repr(float(v))  # shortest text that reads back to the same float


class DecisionStore:
    """The append-only history of reviewer decisions in one database.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path/decisions.sqlite``, ``postgresql://...``;
            a PostgreSQL URL without a driver uses psycopg 3).
        workspace: recorded with each decision that does not name its own.
        busy_timeout_s: how long a SQLite writer waits for another one's lock.

    Raises:
        ReviewError: a URL SQLAlchemy cannot use, a driver that is not installed, a
            database that cannot be opened, or one at a schema revision this version does
            not know.
    """

    def __init__(self, url: str | URL, *, workspace: str = "", busy_timeout_s: float = 30.0):
        self.engine = _engine(url)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.workspace = str(workspace)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            _sqlite_setup(self.engine, int(busy_timeout_s * 1000))
            self._write_engine = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        else:
            self._write_engine = self.engine
        try:
            self.revision = ensure_schema(self.engine, self._write_engine)
        except DBAPIError as exc:
            self.engine.dispose()
            raise _db_error("open", self.url, exc) from exc
        except ReviewError:
            self.engine.dispose()
            raise

    @classmethod
    def for_workspace(cls, root: str | os.PathLike) -> "DecisionStore":
        """The store of a workspace folder: ``$ECHOAUDIT_DB`` if set, else
        ``<root>/decisions.sqlite``.

        Raises:
            ReviewError: ``root`` is not a folder (and no ``ECHOAUDIT_DB`` is set).
        """
        root = Path(root).resolve()
        url = os.environ.get(DB_ENV, "").strip()
        if not url:
            if not root.is_dir():
                raise ReviewError(f"workspace folder {str(root)!r} does not exist; decisions are stored in it")
            url = URL.create("sqlite", database=str(root / DB_FILE))
        return cls(url, workspace=str(root))

    def close(self) -> None:
        """Close every pooled connection (the store can still be used: it reconnects)."""
        self.engine.dispose()

    def __enter__(self) -> "DecisionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DecisionStore({self.url!r})"

    # --- writing ------------------------------------------------------------------------
    def record(
        self,
        *,
        synthetic_set: str,
        synthetic_video: str,
        train_video: str,
        train_patient: str,
        verdict: str,
        reviewer: str,
        score: float,
        threshold: float,
        rule: str = "",
        reid_fingerprint: str = "",
        index_fingerprint: str = "",
        note: str = "",
        workspace: str | None = None,
        decided_at: datetime | None = None,
        decision_uid: str | None = None,
    ) -> Decision:
        """Append one decision in its own transaction and return it (with its ``id``).

        ``decided_at`` defaults to now (UTC); a given one must be timezone-aware.
        ``decision_uid`` defaults to a fresh uuid4; giving one lets a writer that may be
        interrupted rerun safely (a uid already stored raises, it never duplicates).

        Raises:
            ReviewError: a verdict not in ``VERDICTS``, an empty reviewer or pair name, a
                score or threshold that is not a finite probability, a uid already
                stored, or a database error. Nothing is written then.
        """
        fields = check_decision({
            "decision_uid": new_uid() if decision_uid is None else decision_uid,
            "synthetic_set": synthetic_set, "synthetic_video": synthetic_video, "train_video": train_video,
            "train_patient": train_patient, "verdict": verdict, "reviewer": reviewer,
            "decided_at": datetime.now(timezone.utc) if decided_at is None else decided_at,
            "note": note, "score": score, "threshold": threshold, "rule": rule,
            "reid_fingerprint": reid_fingerprint, "index_fingerprint": index_fingerprint,
            "workspace": self.workspace if workspace is None else workspace,
        })
        try:
            with self._write_engine.begin() as conn:
                new_id = conn.execute(insert(_TABLE), fields).inserted_primary_key[0]
        except IntegrityError as exc:
            raise ReviewError(f"decision {fields['decision_uid']} is already recorded in {self.url} "
                              f"(or breaks a table rule: {exc.orig})") from exc
        except DBAPIError as exc:
            raise _db_error("write to", self.url, exc) from exc
        return Decision(id=int(new_id), **fields)

    # --- reading ------------------------------------------------------------------------
    def _read(self, stmt) -> pd.DataFrame:
        try:
            with self.engine.connect() as conn:
                return _frame(conn.execute(stmt).all())
        except DBAPIError as exc:
            raise _db_error("read", self.url, exc) from exc

    def history(self, synthetic_set: str | None = None, synthetic_video: str | None = None) -> pd.DataFrame:
        """Every decision (optionally of one set / one synthetic video), oldest first
        (by ``decided_at``, ties by ``id``).

        Returns:
            DataFrame with :data:`HISTORY_COLUMNS`: ``id`` int64, ``score`` and
            ``threshold`` float64, ``decided_at`` datetime64 in UTC, the rest str.
        """
        t = _TABLE.c
        stmt = select(*[t[c] for c in HISTORY_COLUMNS])
        if synthetic_set is not None:
            stmt = stmt.where(t.synthetic_set == synthetic_set)
        if synthetic_video is not None:
            stmt = stmt.where(t.synthetic_video == synthetic_video)
        return self._read(stmt.order_by(t.decided_at, t.id))

    def current(self, synthetic_set: str | None = None) -> pd.DataFrame:
        """The current verdict of every decided pair: for each (synthetic_set,
        synthetic_video, train_video), its latest decision (``decided_at``, ties by ``id``).

        Returns:
            DataFrame as :meth:`history`, one row per pair, sorted by set, synthetic video,
            training video.
        """
        t = _TABLE.c
        rank = func.row_number().over(
            partition_by=(t.synthetic_set, t.synthetic_video, t.train_video),
            order_by=(t.decided_at.desc(), t.id.desc()),
        ).label("rank")
        inner = select(*[t[c] for c in HISTORY_COLUMNS], rank)
        if synthetic_set is not None:
            inner = inner.where(t.synthetic_set == synthetic_set)
        sub = inner.subquery()
        stmt = (select(*[sub.c[c] for c in HISTORY_COLUMNS]).where(sub.c.rank == 1)
                .order_by(sub.c.synthetic_set, sub.c.synthetic_video, sub.c.train_video))
        return self._read(stmt)

    def confirmed_copies(self, synthetic_set: str) -> set[str]:
        """Synthetic videos of the set whose current verdict is ``confirmed_copy`` on at
        least one training video."""
        cur = self.current(synthetic_set)
        return set(cur.loc[cur["verdict"] == "confirmed_copy", "synthetic_video"].astype(str))

    # --- exchange -----------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike, synthetic_set: str | None = None) -> int:
        """Write the history (of one set, or all) to a CSV with :data:`CSV_COLUMNS`;
        return the number of decisions written.

        Atomic: written to a temporary file in the same folder, then renamed onto ``path``.
        Times are ISO 8601 with the UTC offset, numbers in their shortest exact form, so
        :meth:`import_csv` reads back the same values.
        """
        hist = self.history(synthetic_set)
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(CSV_COLUMNS)
                for row in hist.itertuples(index=False):
                    rec = row._asdict()
                    rec["decided_at"] = rec["decided_at"].to_pydatetime().isoformat()
                    rec["score"], rec["threshold"] = _number_text(rec["score"]), _number_text(rec["threshold"])
                    writer.writerow([rec[c] for c in CSV_COLUMNS])
        return len(hist)

    def import_csv(self, path: str | os.PathLike) -> tuple[int, int]:
        """Add the decisions of a CSV written by :meth:`export_csv` (another reviewer's,
        another workspace's); return ``(n_added, n_skipped)``.

        Every row is checked before anything is written; one bad row rejects the file.
        Rows whose ``decision_uid`` is already stored are skipped (so importing the same
        file twice adds nothing), as are exact repeats inside the file. Columns other than
        :data:`CSV_COLUMNS` (such as ``id``) are ignored. All rows go in one transaction.

        Raises:
            ReviewError: a missing file or column, or bad rows (each named by row number,
                line and column, up to ten of them), or a uid repeated with different
                contents; nothing is imported then.
        """
        path = Path(path)
        decisions, n_rows = _read_csv(path)
        try:
            with self._write_engine.begin() as conn:
                present: set[str] = set()
                uids = list(decisions)
                for i in range(0, len(uids), _CHUNK):
                    chunk = uids[i:i + _CHUNK]
                    present.update(conn.execute(select(_TABLE.c.decision_uid)
                                                .where(_TABLE.c.decision_uid.in_(chunk))).scalars())
                new = [d for uid, d in decisions.items() if uid not in present]
                if new:
                    conn.execute(insert(_TABLE), new)
        except DBAPIError as exc:
            raise _db_error(f"import {path} into", self.url, exc) from exc
        return len(new), n_rows - len(new)


def _read_csv(path: Path) -> tuple[dict[str, dict], int]:
    """(checked decisions of a CSV by uid (first occurrence), number of data rows)."""
    if not path.is_file():
        raise ReviewError(f"{path} does not exist or is not a file")
    problems: list[str] = []
    by_uid: dict[str, dict] = {}
    first_row: dict[str, int] = {}
    n_rows = 0
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise ReviewError(f"{path} is missing column(s) {missing}; a decision CSV has {list(CSV_COLUMNS)} "
                              f"(write one with `echoaudit review export`)")
        line = reader.line_num + 1
        for n_rows, raw in enumerate(reader, start=1):
            where = f"row {n_rows} (line {line}), "
            line = reader.line_num + 1
            if None in raw:
                problems.append(f"{where}has more fields than the header")
                continue
            try:
                d = check_decision({c: raw[c] for c in CSV_COLUMNS}, where=where)
            except ReviewError as exc:
                problems.append(str(exc))
                continue
            uid = d["decision_uid"]
            if uid in by_uid:
                if by_uid[uid] != d:
                    problems.append(f"{where}decision_uid {uid} is also row {first_row[uid]} with different contents")
                continue
            by_uid[uid], first_row[uid] = d, n_rows
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ReviewError(f"cannot import {path}: {len(problems)} bad row(s), nothing imported:\n  {shown}{more}")
    return by_uid, n_rows
