"""Reviewer decisions on PostgreSQL (psycopg 3): the store's behaviours of test_review.py,
several writer processes, several processes migrating a brand-new database at once, the
advisory lock that serialises the migration, and the URL / driver handling.

A session fixture runs a throwaway PostgreSQL server from the Debian binaries
(``/usr/lib/postgresql/<version>/bin``), listening only on a Unix socket in a temporary
folder, with fsync off (nothing here tests durability on PostgreSQL); as root it runs them
as the ``postgres`` user. No binaries is a failure, not a skip:
``apt-get install -y postgresql`` (scripts/test.sh does it).
"""

from __future__ import annotations

import csv
import glob
import multiprocessing
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from echoaudit.errors import ReviewError
from echoaudit.review import CSV_COLUMNS, DecisionStore
from echoaudit.review.schema import HEAD, PG_LOCK_KEY

try:
    import psycopg
except ImportError:  # failed with a message by the server fixture, not skipped
    psycopg = None

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
N_PROCS = 4


def _pair(**kw) -> dict:
    base = dict(synthetic_set="gen", synthetic_video="s0", train_video="t0", train_patient="p0",
                verdict="unsure", reviewer="ann", score=0.97, threshold=0.95, rule="heldout_to_train p95")
    base.update(kw)
    return base


# --- the server -------------------------------------------------------------------------

def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); the PostgreSQL tests "
                    "start a throwaway server from them. Install them with `apt-get install -y postgresql` "
                    "(scripts/test.sh does this when they are missing)", pytrace=False)
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def pg_socket():
    """Start a PostgreSQL server on a Unix socket only; yield the socket folder; stop it."""
    if psycopg is None:
        pytest.fail("psycopg 3 (the PostgreSQL driver, in requirements.txt) is not installed: "
                    ".venv/bin/pip install 'psycopg[binary]'", pytrace=False)
    bindir = _pg_bin()
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, the PostgreSQL tests start the server as the `postgres` user, which does "
                        "not exist; `apt-get install -y postgresql` creates it", pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="echoaudit-pg-"))  # /tmp: the postgres user cannot enter pytest's tmp
    data, sock, log = tmp / "data", tmp / "sock", tmp / "server.log"
    sock.mkdir()
    if as_root:
        for p in (tmp, sock):
            os.chown(p, pg_user.pw_uid, pg_user.pw_gid)

    def run(*args, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = (["runuser", "-u", "postgres", "--"] if as_root else []) + [str(a) for a in args]
        return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)

    try:
        r = run(bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8", "-N")
        if r.returncode:
            pytest.fail(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
        opts = (f"-c listen_addresses='' -k '{sock}' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=50")
        r = run(bindir / "pg_ctl", "start", "-w", "-t", "30", "-D", data, "-l", log, "-o", opts)
        if r.returncode:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"pg_ctl start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{tail}", pytrace=False)
        yield sock
    finally:
        if (data / "postmaster.pid").exists():
            run(bindir / "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(tmp, ignore_errors=True)


class PgDB:
    """One fresh, empty database of the test server."""

    def __init__(self, sock: Path):
        self.sock, self.name = sock, f"t_{uuid.uuid4().hex[:12]}"
        with self.connect("postgres") as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        # no driver named: the store maps postgresql:// to psycopg 3
        self.url = f"postgresql://postgres@/{self.name}?host={sock}"

    def connect(self, dbname: str | None = None):
        return psycopg.connect(host=str(self.sock), dbname=dbname or self.name, user="postgres", autocommit=True)

    def rows(self, sql: str, params=None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params).fetchall()

    def advisory_locks(self) -> list[tuple]:
        """(granted, pid) of each of our migration lock's holders and waiters in this database."""
        return self.rows(
            "SELECT granted, pid FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s "
            "AND objid::bigint = %s AND objsubid = 1 AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())", (PG_LOCK_KEY >> 32, PG_LOCK_KEY & 0xFFFFFFFF))


@pytest.fixture()
def pg_db(pg_socket) -> PgDB:
    return PgDB(pg_socket)


@pytest.fixture()
def store(pg_db):
    s = DecisionStore(pg_db.url, workspace="ws")
    yield s
    s.close()


# --- the store's behaviours -------------------------------------------------------------

def test_new_database_is_migrated_to_head_with_psycopg_and_the_lock_is_released(pg_db):
    with DecisionStore(pg_db.url) as s:  # keeps its pooled connection: the lock must be released explicitly
        assert s.engine.dialect.name == "postgresql" and s.engine.dialect.driver == "psycopg"
        assert s.url.startswith("postgresql+psycopg://") and s.revision == HEAD
        assert pg_db.advisory_locks() == []
        with s.engine.connect() as conn:
            from alembic.autogenerate import compare_metadata
            from alembic.migration import MigrationContext

            from echoaudit.review.models import Base

            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert pg_db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert pg_db.rows("SELECT data_type FROM information_schema.columns WHERE table_name = 'decisions' "
                      "AND column_name = 'decided_at'") == [("timestamp with time zone",)]
    assert pg_db.rows("SELECT indexdef LIKE '%(synthetic_set, synthetic_video)' FROM pg_indexes "
                      "WHERE indexname = 'ix_decisions_set_video'") == [(True,)]
    with DecisionStore(pg_db.url) as again:  # at head: opens without migrating
        assert again.revision == HEAD and again.history().empty


def test_record_history_append_only_and_latest_verdict_wins(store):
    first = store.record(**_pair(verdict="confirmed_copy", reviewer="ann", decided_at=T0))
    assert first.id >= 1 and first.workspace == "ws" and first.decided_at == T0
    store.record(**_pair(verdict="not_a_copy", reviewer="bob", decided_at=T0 + timedelta(hours=1), note="ok"))
    store.record(**_pair(verdict="unsure", reviewer="cy", decided_at=T0 + timedelta(hours=1)))  # tie: later id wins
    store.record(**_pair(verdict="confirmed_copy", reviewer="old", decided_at=T0 - timedelta(days=1)))
    store.record(**_pair(train_video="t1", train_patient="p1", verdict="confirmed_copy", reviewer="dee",
                         decided_at=T0 + timedelta(hours=2, minutes=30)))
    store.record(**_pair(synthetic_set="other", verdict="confirmed_copy", decided_at=T0))
    paris = timezone(timedelta(hours=2))
    d = store.record(**_pair(synthetic_set="tz", decided_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=paris)))
    assert d.decided_at == T0 + timedelta(microseconds=123456)

    hist = store.history("gen")
    assert hist["reviewer"].tolist() == ["old", "ann", "bob", "cy", "dee"]  # every decision kept, oldest first
    assert str(hist["decided_at"].dt.tz) == "UTC" and hist["decided_at"].is_monotonic_increasing
    assert store.history("tz")["decided_at"].iloc[0] == pd.Timestamp(T0 + timedelta(microseconds=123456))
    cur = store.current("gen")
    assert list(zip(cur["train_video"], cur["verdict"], cur["reviewer"])) == [
        ("t0", "unsure", "cy"), ("t1", "confirmed_copy", "dee")]
    assert len(store.current()) == 4 and store.confirmed_copies("gen") == {"s0"}
    store.record(**_pair(train_video="t1", train_patient="p1", verdict="not_a_copy", decided_at=T0 + timedelta(hours=3)))
    assert store.confirmed_copies("gen") == set() and store.confirmed_copies("other") == {"s0"}
    assert len(store.history()) == 8  # a changed mind is a new row, never an update


def test_bad_decisions_and_repeated_uids_write_nothing_and_the_table_checks_its_rules(store, pg_db):
    d = store.record(**_pair())
    with pytest.raises(ReviewError, match="verdict must be one of"):
        store.record(**_pair(verdict="maybe"))
    with pytest.raises(ReviewError, match="score must be a finite probability"):
        store.record(**_pair(score=1.5))
    with pytest.raises(ReviewError, match="already recorded"):
        store.record(**_pair(decision_uid=d.decision_uid))
    assert pg_db.rows("SELECT count(*) FROM decisions") == [(1,)]
    row = dict(_pair(verdict="maybe"), decision_uid="f" * 32, decided_at=T0, note="", reid_fingerprint="",
               index_fingerprint="", workspace="")
    with pytest.raises(psycopg.errors.CheckViolation, match="ck_decisions_verdict"):
        pg_db.rows(f"INSERT INTO decisions ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                   list(row.values()))


def test_export_import_round_trip_between_postgresql_and_sqlite(store, pg_socket, tmp_path):
    store.record(**_pair(note='a note, with "quotes",\nand a second line; ünïcode', score=0.1 + 0.2,
                         threshold=1 - 2**-53, decided_at=T0))
    store.record(**_pair(synthetic_video="s1", verdict="confirmed_copy", score=1.0, threshold=0.0,
                         decided_at=T0 + timedelta(microseconds=1)))
    store.record(**_pair(synthetic_set="other", verdict="not_a_copy", reviewer="bob", workspace="",
                         decided_at=T0 + timedelta(days=3)))
    out = tmp_path / "decisions.csv"
    assert store.export_csv(out) == 3
    with open(out, newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == list(CSV_COLUMNS)
    with DecisionStore(PgDB(pg_socket).url) as fresh, DecisionStore(f"sqlite:///{tmp_path / 'd.sqlite'}") as lite:
        for other in (fresh, lite):
            assert other.import_csv(out) == (3, 0)
            pd.testing.assert_frame_equal(store.history().drop(columns="id"), other.history().drop(columns="id"))
            assert other.import_csv(out) == (0, 3)
        b = fresh.history()
        assert b["score"].iloc[0] == 0.1 + 0.2 and b["threshold"].iloc[0] == 1 - 2**-53  # exact floats
        lite.record(**_pair(synthetic_video="s9", reviewer="eve"))
        lite.export_csv(tmp_path / "more.csv")
        assert store.import_csv(tmp_path / "more.csv") == (1, 3)
        assert store.current("gen")["synthetic_video"].tolist() == ["s0", "s1", "s9"]


def test_a_database_from_a_newer_echoaudit_is_refused(pg_db):
    DecisionStore(pg_db.url).close()
    pg_db.rows("UPDATE alembic_version SET version_num = '9999' RETURNING 1")
    with pytest.raises(ReviewError, match="revision '9999', which this echoaudit does not know"):
        DecisionStore(pg_db.url)
    assert pg_db.advisory_locks() == []


# --- URLs and drivers -------------------------------------------------------------------

def test_for_workspace_takes_a_postgresql_url_without_a_driver_from_the_env(pg_db, tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOAUDIT_DB", pg_db.url.replace("postgresql://", "postgres://"))
    with DecisionStore.for_workspace(tmp_path) as s:
        assert s.engine.dialect.driver == "psycopg"
        s.record(**_pair())
        assert s.history()["workspace"].tolist() == [str(tmp_path.resolve())]
    assert not (tmp_path / "decisions.sqlite").exists()


def test_a_missing_driver_is_a_review_error_naming_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(ReviewError, match=r"driver is not installed .*pip install 'psycopg\[binary\]'") as err:
        DecisionStore("postgresql://ann:secret@db.example/echoaudit")
    assert "secret" not in str(err.value) and "postgresql+psycopg://ann:***@db.example/echoaudit" in str(err.value)
    with pytest.raises(ReviewError, match="driver is not installed"):
        DecisionStore("postgresql+psycopg://ann@db.example/echoaudit")


# --- several processes ------------------------------------------------------------------

_BARRIER = None


def _init_worker(barrier) -> None:
    global _BARRIER
    _BARRIER = barrier


def _open_and_write(url: str, worker: int, n: int) -> tuple[str, int] | str:
    """(revision, n) on success, else the error as text (every worker's shows in the assertion)."""
    try:
        _BARRIER.wait(timeout=30)  # every worker opens (and migrates) at the same moment
        with DecisionStore(url) as s:
            _BARRIER.wait(timeout=30)  # and writes at the same time
            for i in range(n):
                s.record(**_pair(synthetic_video=f"w{worker}_{i:02d}", reviewer=f"reviewer{worker}",
                                 verdict=("confirmed_copy", "not_a_copy", "unsure")[i % 3]))
            return s.revision, n
    except BaseException as exc:  # noqa: BLE001 - returned to the test
        _BARRIER.abort()  # the others fail at once instead of waiting out the timeout
        return f"worker {worker}: {type(exc).__name__}: {exc}"


@pytest.fixture(scope="module")
def in_processes():
    """``run(url, n)``: N_PROCS spawned processes open ``url`` at once, then each records n
    decisions at once; returns their (revision, n)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)

    def run(url: str, n: int) -> list:
        barrier.reset()  # a previous test's failure leaves it broken
        return pool.starmap(_open_and_write, [(url, w, n) for w in range(N_PROCS)], chunksize=1)

    with ctx.Pool(N_PROCS, initializer=_init_worker, initargs=(barrier,)) as pool:
        yield run


def test_processes_opening_a_brand_new_database_at_once_migrate_it_exactly_once(in_processes, pg_db):
    assert pg_db.rows("SELECT to_regclass('alembic_version')") == [(None,)]
    done = in_processes(pg_db.url, 0)
    assert done == [(HEAD, 0)] * N_PROCS, done
    assert pg_db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert pg_db.rows("SELECT count(*) FROM pg_tables WHERE tablename = 'decisions'") == [(1,)]
    assert pg_db.advisory_locks() == []


def test_concurrent_writer_processes_lose_no_decision(in_processes, pg_db):
    n = 25
    done = in_processes(pg_db.url, n)
    assert done == [(HEAD, n)] * N_PROCS, done
    with DecisionStore(pg_db.url) as s:
        hist = s.history()
    assert len(hist) == N_PROCS * n and hist["decision_uid"].is_unique and hist["id"].is_unique
    assert sorted(hist["synthetic_video"]) == sorted(f"w{w}_{i:02d}" for w in range(N_PROCS) for i in range(n))
    assert hist.groupby("reviewer").size().tolist() == [n] * N_PROCS
    assert pg_db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_a_migration_waits_for_the_advisory_lock(pg_db):
    opened: dict = {}

    def open_store():
        try:
            opened["store"] = DecisionStore(pg_db.url)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            opened["error"] = exc

    with pg_db.connect() as holder:  # another process in the middle of a migration
        holder.execute("SELECT pg_advisory_lock(%s)", (PG_LOCK_KEY,))
        thread = threading.Thread(target=open_store, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while sorted(g for g, _ in pg_db.advisory_locks()) != [False, True]:
            assert thread.is_alive() and time.monotonic() < deadline, f"the store did not wait for the lock: {opened}"
            time.sleep(0.02)
        time.sleep(0.2)
        assert thread.is_alive() and pg_db.rows("SELECT to_regclass('decisions')") == [(None,)]
        holder.execute("SELECT pg_advisory_unlock(%s)", (PG_LOCK_KEY,))
        thread.join(30)
    assert not thread.is_alive() and "error" not in opened, opened
    store = opened["store"]
    try:
        assert store.revision == HEAD and pg_db.advisory_locks() == []
        assert pg_db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
    finally:
        store.close()
