"""Reviewer decisions: the store (SQLite, WAL, Alembic), CSV exchange, crash safety,
several writers at once, the review queue, the release list and the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echoaudit.audit.privacy import flag_videos
from echoaudit.errors import EchoAuditError, ReviewError
from echoaudit.review import (
    CSV_COLUMNS,
    HISTORY_COLUMNS,
    DecisionStore,
    pair_context,
    release_list,
    review_queue,
)
from echoaudit.review.schema import HEAD, head_revision

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TESTS = Path(__file__).resolve().parent


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _pair(**kw) -> dict:
    base = dict(synthetic_set="gen", synthetic_video="s0", train_video="t0", train_patient="p0",
                verdict="unsure", reviewer="ann", score=0.97, threshold=0.95, rule="heldout_to_train p95")
    base.update(kw)
    return base


def _count(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]


@pytest.fixture()
def store(tmp_path):
    s = DecisionStore(_url(tmp_path / "d.sqlite"), workspace="ws")
    yield s
    s.close()


# --- record / history / current ---------------------------------------------------------

def test_record_history_and_current_latest_wins(store):
    first = store.record(**_pair(verdict="confirmed_copy", reviewer="ann", decided_at=T0))
    assert first.id == 1 and first.verdict == "confirmed_copy" and first.workspace == "ws"
    assert first.decided_at == T0 and first.decided_at.tzinfo is not None and len(first.decision_uid) == 32
    store.record(**_pair(verdict="not_a_copy", reviewer="bob", decided_at=T0 + timedelta(hours=1), note="ok"))
    # same time as bob's: the tie goes to the later id
    store.record(**_pair(verdict="unsure", reviewer="cy", decided_at=T0 + timedelta(hours=1)))
    # recorded last but decided earlier (an import of an old decision): not current
    store.record(**_pair(verdict="confirmed_copy", reviewer="old", decided_at=T0 - timedelta(days=1)))
    store.record(**_pair(train_video="t1", train_patient="p1", verdict="confirmed_copy", reviewer="dee",
                         decided_at=T0 + timedelta(hours=2, minutes=30)))
    store.record(**_pair(synthetic_set="other", verdict="confirmed_copy", decided_at=T0))

    hist = store.history("gen")
    assert list(hist.columns) == list(HISTORY_COLUMNS)
    assert hist["reviewer"].tolist() == ["old", "ann", "bob", "cy", "dee"]  # oldest first
    assert str(hist["decided_at"].dt.tz) == "UTC" and hist["decided_at"].is_monotonic_increasing
    assert len(store.history()) == 6 and store.history("gen", "s0")["train_video"].tolist().count("t1") == 1
    assert store.history("gen", "nope").empty

    cur = store.current("gen")
    assert list(zip(cur["train_video"], cur["verdict"], cur["reviewer"])) == [
        ("t0", "unsure", "cy"), ("t1", "confirmed_copy", "dee")]
    assert cur.loc[cur["train_video"] == "t1", "decided_at"].iloc[0] == pd.Timestamp(T0 + timedelta(hours=2, minutes=30))
    assert len(store.current()) == 3  # the other set's pair too
    assert store.confirmed_copies("gen") == {"s0"}  # through t1, whatever t0 says
    store.record(**_pair(train_video="t1", train_patient="p1", verdict="not_a_copy", decided_at=T0 + timedelta(hours=3)))
    assert store.confirmed_copies("gen") == set() and store.confirmed_copies("other") == {"s0"}


def test_decided_at_defaults_to_now_utc_and_converts_offsets(store):
    before = datetime.now(timezone.utc)
    d = store.record(**_pair())
    assert before <= d.decided_at <= datetime.now(timezone.utc)
    paris = timezone(timedelta(hours=2))
    d2 = store.record(**_pair(decided_at=datetime(2024, 5, 1, 14, 0, tzinfo=paris)))
    assert d2.decided_at == T0 and d2.decided_at.utcoffset() == timedelta(0)
    assert store.history()["decided_at"].iloc[0] == pd.Timestamp(T0)


@pytest.mark.parametrize("bad, match", [
    ({"verdict": "maybe"}, "verdict must be one of confirmed_copy, not_a_copy, unsure; got 'maybe'"),
    ({"verdict": None}, "verdict must be one of"),
    ({"reviewer": "   "}, "reviewer must be a non-empty name"),
    ({"synthetic_video": ""}, "synthetic_video must be a non-empty name"),
    ({"train_video": None}, "train_video must be a non-empty name"),
    ({"synthetic_set": 3}, "synthetic_set must be a non-empty name"),
    ({"score": float("nan")}, r"score must be a finite probability in \[0, 1\], got nan"),
    ({"score": 1.5}, r"score must be a finite probability in \[0, 1\], got 1.5"),
    ({"score": True}, "score must be a probability"),
    ({"threshold": -0.1}, "threshold must be a finite probability"),
    ({"threshold": float("inf")}, "threshold must be a finite probability"),
    ({"decided_at": datetime(2024, 5, 1, 12)}, "has no time zone"),
    ({"note": 5}, "note must be text"),
    ({"decision_uid": "not-a-uuid"}, "decision_uid must be a UUID"),
])
def test_bad_decisions_raise_and_write_nothing(store, tmp_path, bad, match):
    store.record(**_pair())
    before = store.history()
    with pytest.raises(ReviewError, match=match):
        store.record(**_pair(**bad))
    pd.testing.assert_frame_equal(store.history(), before)
    assert _count(tmp_path / "d.sqlite") == 1
    assert issubclass(ReviewError, EchoAuditError)


def test_a_uid_is_recorded_once_and_the_table_checks_its_rules(store, tmp_path):
    d = store.record(**_pair())
    with pytest.raises(ReviewError, match="already recorded"):
        store.record(**_pair(decision_uid=d.decision_uid))
    assert _count(tmp_path / "d.sqlite") == 1
    with sqlite3.connect(tmp_path / "d.sqlite") as con:  # the database itself refuses bad rows
        row = dict(_pair(verdict="maybe"), decision_uid="f" * 32, decided_at="2024-05-01 12:00:00.000000",
                   note="", reid_fingerprint="", index_fingerprint="", workspace="")
        with pytest.raises(sqlite3.IntegrityError, match="ck_decisions_verdict"):
            con.execute(f"INSERT INTO decisions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))


# --- database set-up --------------------------------------------------------------------

def test_sqlite_is_wal_with_busy_timeout_and_at_alembic_head(tmp_path):
    root_handlers = list(logging.getLogger().handlers)
    alembic_level = logging.getLogger("alembic").level
    store = DecisionStore(_url(tmp_path / "d.sqlite"))  # a new file: migrated on open
    assert logging.getLogger().handlers == root_handlers  # Alembic did not configure logging
    assert logging.getLogger("alembic").level == alembic_level
    with sqlite3.connect(tmp_path / "d.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        index = {r[1] for r in con.execute("PRAGMA index_list(decisions)")}
        assert "ix_decisions_set_video" in index
        cols = [r[2] for r in con.execute("PRAGMA index_info(ix_decisions_set_video)")]
        assert cols == ["synthetic_set", "synthetic_video"]
    assert HEAD == head_revision() == store.revision
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        # the model describes exactly the table the migrations made
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        from echoaudit.review.models import Base

        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    store.close()
    t = time.perf_counter()
    again = DecisionStore(_url(tmp_path / "d.sqlite"))  # up to date: no migration
    assert time.perf_counter() - t < 0.3
    assert again.history().empty
    again.close()


def test_a_database_from_a_newer_echoaudit_is_refused(tmp_path):
    DecisionStore(_url(tmp_path / "d.sqlite")).close()
    with sqlite3.connect(tmp_path / "d.sqlite") as con:
        con.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(ReviewError, match="revision '9999', which this echoaudit does not know"):
        DecisionStore(_url(tmp_path / "d.sqlite"))


def test_bad_urls_and_folders_raise_review_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("ECHOAUDIT_DB", raising=False)
    with pytest.raises(ReviewError, match="not a usable database URL"):
        DecisionStore("nonsense://")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ReviewError, match="could not open the decision database"):
        DecisionStore(_url(tmp_path / "junk.sqlite"))
    with pytest.raises(ReviewError, match="does not exist"):
        DecisionStore.for_workspace(tmp_path / "missing")


def test_for_workspace_uses_the_folder_or_the_env_url(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.delenv("ECHOAUDIT_DB", raising=False)
    with DecisionStore.for_workspace(ws) as s:
        s.record(**_pair())
        assert s.history()["workspace"].tolist() == [str(ws.resolve())]
    assert _count(ws / "decisions.sqlite") == 1

    shared = tmp_path / "shared.sqlite"
    monkeypatch.setenv("ECHOAUDIT_DB", _url(shared))
    with DecisionStore.for_workspace(ws) as s:
        assert s.history().empty  # not the workspace's file
        s.record(**_pair(reviewer="bob"))
    assert _count(shared) == 1 and _count(ws / "decisions.sqlite") == 1


# --- CSV exchange -----------------------------------------------------------------------

def _varied(store) -> None:
    store.record(**_pair(note='a note, with "quotes",\nand a second line; ünïcode', score=0.1 + 0.2,
                         threshold=1 - 2**-53, decided_at=T0))
    store.record(**_pair(synthetic_video="s1", verdict="confirmed_copy", score=1.0, threshold=0.0,
                         decided_at=T0 + timedelta(microseconds=1)))
    store.record(**_pair(synthetic_set="other", verdict="not_a_copy", reviewer="bob", workspace="",
                         decided_at=T0 + timedelta(days=3)))


def test_export_then_import_reproduces_rows_and_a_second_import_adds_nothing(store, tmp_path):
    _varied(store)
    out = tmp_path / "exports" / "decisions.csv"
    assert store.export_csv(out) == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["decisions.csv"]  # no temporary file left
    with open(out, newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == list(CSV_COLUMNS)

    with DecisionStore(_url(tmp_path / "fresh.sqlite")) as fresh:
        assert fresh.import_csv(out) == (3, 0)
        a, b = store.history().drop(columns="id"), fresh.history().drop(columns="id")
        pd.testing.assert_frame_equal(a, b)
        assert b["score"].iloc[0] == 0.1 + 0.2 and b["threshold"].iloc[0] == 1 - 2**-53  # exact floats
        assert fresh.import_csv(out) == (0, 3)
        assert len(fresh.history()) == 3
        # one set only; importing it again into the original adds nothing either
        assert store.export_csv(tmp_path / "gen.csv", synthetic_set="gen") == 2
        assert store.import_csv(tmp_path / "gen.csv") == (0, 2)
        # a file with new and known decisions: only the new ones go in
        fresh.record(**_pair(synthetic_video="s9", reviewer="eve"))
        fresh.export_csv(tmp_path / "more.csv")
        assert store.import_csv(tmp_path / "more.csv") == (1, 3)
        assert store.current("gen")["synthetic_video"].tolist() == ["s0", "s1", "s9"]


def _rows_of(store, tmp_path) -> list[dict]:
    store.export_csv(tmp_path / "src.csv")
    with open(tmp_path / "src.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict], columns=CSV_COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize("column, value, match", [
    ("verdict", "maybe", r"row 2 \(line 3\), verdict must be one of .*got 'maybe'"),
    ("score", "high", r"row 2 \(line 3\), score must be a probability in \[0, 1\], got 'high'"),
    ("threshold", "1.2", r"row 2 \(line 3\), threshold must be a finite probability"),
    ("reviewer", "", r"row 2 \(line 3\), reviewer must be a non-empty name"),
    ("decided_at", "yesterday", r"row 2 \(line 3\), decided_at: 'yesterday' is not an ISO 8601 time"),
    ("decided_at", "2024-05-01T12:00:00", r"row 2 \(line 3\), decided_at: .* has no time zone"),
    ("decision_uid", "xyz", r"row 2 \(line 3\), decision_uid must be a UUID"),
])
def test_a_bad_row_is_named_and_nothing_is_imported(store, tmp_path, column, value, match):
    for i in range(3):
        store.record(**_pair(synthetic_video=f"s{i}"))
    rows = _rows_of(store, tmp_path)
    rows[1][column] = value
    bad = _write_rows(tmp_path / "bad.csv", rows)
    with DecisionStore(_url(tmp_path / "fresh.sqlite")) as fresh:
        with pytest.raises(ReviewError, match=match) as err:
            fresh.import_csv(bad)
        assert "1 bad row(s), nothing imported" in str(err.value)
        assert fresh.history().empty


def test_import_rejects_missing_columns_clashing_uids_and_lists_every_bad_row(store, tmp_path):
    for i in range(3):
        store.record(**_pair(synthetic_video=f"s{i}"))
    rows = _rows_of(store, tmp_path)
    with pytest.raises(ReviewError, match=r"missing column\(s\) \['verdict'\]"):
        store.import_csv(_write_rows(tmp_path / "a.csv", rows, [c for c in CSV_COLUMNS if c != "verdict"]))
    clash = [rows[0], dict(rows[0], note="changed")]
    with pytest.raises(ReviewError, match="row 2 .*is also row 1 with different contents"):
        store.import_csv(_write_rows(tmp_path / "b.csv", clash))
    many = [dict(r, verdict="nope") for r in rows]
    with pytest.raises(ReviewError, match=r"(?s)3 bad row\(s\).*row 1 .*row 2 .*row 3 ") as err:
        store.import_csv(_write_rows(tmp_path / "c.csv", many))
    assert str(err.value).count("verdict must be one of") == 3
    with pytest.raises(ReviewError, match="does not exist"):
        store.import_csv(tmp_path / "none.csv")
    # an exact repeat inside a file, and extra columns such as a source id, are fine
    extra = [dict(r, id="7") for r in rows] + [dict(rows[0], id="7")]
    with DecisionStore(_url(tmp_path / "fresh.sqlite")) as fresh:
        assert fresh.import_csv(_write_rows(tmp_path / "d.csv", extra, ("id",) + CSV_COLUMNS)) == (3, 1)
    assert len(store.history()) == 3


# --- several processes ------------------------------------------------------------------

def _write_batch(url: str, worker: int, n: int) -> int:
    with DecisionStore(url) as s:
        for i in range(n):
            s.record(**_pair(synthetic_video=f"w{worker}_{i:02d}", reviewer=f"reviewer{worker}",
                             verdict=("confirmed_copy", "not_a_copy", "unsure")[i % 3]))
    return n


def test_four_processes_write_concurrently_into_a_new_database(tmp_path):
    url = _url(tmp_path / "d.sqlite")  # does not exist yet: all four migrate it at once
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        done = pool.starmap(_write_batch, [(url, w, 25) for w in range(4)])
    assert done == [25] * 4
    with DecisionStore(url) as s:
        hist = s.history()
    assert len(hist) == 100 and hist["decision_uid"].is_unique
    assert sorted(hist["synthetic_video"]) == sorted(f"w{w}_{i:02d}" for w in range(4) for i in range(25))
    assert hist.groupby("reviewer").size().tolist() == [25] * 4
    with sqlite3.connect(tmp_path / "d.sqlite") as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


def _planned(i: int) -> dict:
    """The i-th decision of the crash test, fully determined by i."""
    return _pair(decision_uid=f"{i + 1:032x}", synthetic_video=f"s{i:04d}", train_video=f"t{i % 7}",
                 train_patient=f"p{i % 7}", verdict=("confirmed_copy", "not_a_copy", "unsure")[i % 3],
                 reviewer=f"r{i % 5}", score=(i % 101) / 100, threshold=0.95, note=f"note {i} " + "x" * (i % 50),
                 decided_at=T0 + timedelta(seconds=i), workspace="crash")


def _write_planned(url: str, n: int) -> None:
    """Write the planned decisions 0..n-1 that are not stored yet, one transaction each."""
    with DecisionStore(url) as s:
        present = set(s.history()["decision_uid"])
        for i in range(n):
            d = _planned(i)
            if d["decision_uid"] not in present:
                s.record(**d)


def test_sigkill_mid_write_leaves_a_readable_database_and_a_rerun_completes_it(tmp_path):
    db, n = tmp_path / "d.sqlite", 400
    url = _url(db)
    DecisionStore(url).close()
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_review; test_review._write_planned({url!r}, {n})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rng = random.Random(20240501)
    wait_for = rng.randint(20, 120)
    try:
        deadline = time.monotonic() + 30
        while _count(db) < wait_for:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.03))
        assert proc.poll() is None, "the writer finished before it was killed: nothing was tested"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with DecisionStore(url) as s:
        hist = s.history()
    k = len(hist)
    assert wait_for <= k < n
    assert hist["decision_uid"].tolist() == [_planned(i)["decision_uid"] for i in range(k)]  # commits in order
    for row, i in zip(hist.to_dict("records"), range(k)):  # every stored decision is whole
        want = _planned(i)
        assert {c: row[c] for c in want if c != "decided_at"} == {c: want[c] for c in want if c != "decided_at"}
        assert row["decided_at"] == pd.Timestamp(want["decided_at"])

    _write_planned(url, n)  # the rerun writes what is missing
    with DecisionStore(url) as s:
        hist = s.history()
    assert len(hist) == n and hist["decision_uid"].is_unique
    assert set(hist["decision_uid"]) == {_planned(i)["decision_uid"] for i in range(n)}


# --- queue and release list -------------------------------------------------------------

THRESHOLD = 0.9


def _flags() -> pd.DataFrame:
    best = {"a": 0.99, "b": 0.95, "c": 0.97, "d": 0.92, "e": 0.88, "f": 0.80, "g": 0.50, "h": 0.60, "i": 0.85}
    rows = [{"query": q, "train_video": f"T_{q}", "train_patient": f"P_{q}", "score": s} for q, s in best.items()]
    rows += [{"query": q, "train_video": "T_other", "train_patient": "P_other", "score": s / 2} for q, s in best.items()]
    return flag_videos(pd.DataFrame(rows), THRESHOLD)


@pytest.fixture()
def reviewed(store):
    def rec(video, verdict, hours, train=None, reviewer="ann"):
        train = train or f"T_{video}"
        return store.record(**_pair(synthetic_video=video, train_video=train, train_patient="P", verdict=verdict,
                                    reviewer=reviewer, decided_at=T0 + timedelta(hours=hours)))

    rec("c", "confirmed_copy", 0)
    c_final = rec("c", "not_a_copy", 1, reviewer="bob")  # the latest wins
    rec("d", "not_a_copy", 2, train="T_other")  # another pair: the flagged one is still open
    rec("h", "confirmed_copy", 3)  # below the threshold, but a copy
    rec("i", "unsure", 4)
    return store, c_final


def test_review_queue_orders_flagged_then_borderline_then_decided(reviewed):
    store, _ = reviewed
    q = review_queue(_flags(), store.current("gen"), THRESHOLD)
    assert q["query"].tolist() == ["a", "b", "d", "e", "f", "c", "i", "h", "g"]
    assert q["status"].tolist() == ["undecided flagged"] * 3 + ["borderline"] * 2 + [
        "decided: not_a_copy", "decided: unsure", "decided: confirmed_copy", "not flagged"]
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    e = q.set_index("query").loc["e"]
    assert e["logit_gap"] == pytest.approx(logit(0.88) - logit(0.9))
    assert q.set_index("query").loc["c", "reviewer"] == "bob"
    assert q.loc[q["status"] == "undecided flagged", "verdict"].isna().all()

    narrow = review_queue(_flags(), store.current("gen"), THRESHOLD, borderline_logits=0.1)
    assert "borderline" not in set(narrow["status"])  # e is 0.21 logits below
    wide = review_queue(_flags(), store.current("gen"), THRESHOLD, borderline_logits=3.0)
    assert wide.loc[wide["status"] == "borderline", "query"].tolist() == ["e", "f", "g"]
    with pytest.raises(ValueError, match="disagree with threshold 0.95"):
        review_queue(_flags(), store.current("gen"), 0.95)
    with pytest.raises(ValueError, match="borderline_logits must be a finite number >= 0"):
        review_queue(_flags(), store.current("gen"), THRESHOLD, borderline_logits=-1)


def test_review_queue_with_no_decisions_yet(store):
    q = review_queue(_flags(), store.current("gen"), THRESHOLD)
    assert q["query"].tolist()[:4] == ["a", "c", "b", "d"] and set(q["status"].iloc[:4]) == {"undecided flagged"}
    assert q["verdict"].isna().all() and len(q) == 9


def test_release_list_removes_confirmed_copies_below_the_threshold_and_keeps_false_alarms(reviewed):
    store, c_final = reviewed
    flags, current, confirmed = _flags(), store.current("gen"), store.confirmed_copies("gen")
    assert confirmed == {"h"}
    rel = release_list(flags, current, confirmed)
    assert rel.videos == ["c", "e", "f", "g", "i"]  # unflagged minus h, plus the false alarm c
    fa = rel.false_alarms
    assert fa["query"].tolist() == ["c"] and fa["reviewer"].tolist() == ["bob"] and fa["released"].all()
    assert fa["decided_at"].iloc[0] == pd.Timestamp(c_final.decided_at) and fa["train_video"].iloc[0] == "T_c"
    assert dict(zip(rel.withheld["query"], rel.withheld["reason"])) == {
        "a": "flagged, not reviewed", "b": "flagged, not reviewed", "d": "flagged, not reviewed",
        "h": "confirmed copy"}

    strict = release_list(flags, current, confirmed, keep_false_alarms=False)
    assert strict.videos == ["e", "f", "g", "i"] and not strict.false_alarms["released"].any()
    assert strict.withheld.set_index("query").loc["c", "reason"] == "flagged, false alarm not kept"
    # a confirmed copy named only in `confirmed` (another pair, another reviewer's store) is removed too
    assert "g" not in release_list(flags, current, {"g"}).videos
    assert release_list(flags, current.iloc[:0], set()).videos == ["e", "f", "g", "h", "i"]


def test_pair_context_reads_the_pair_score():
    scores = pd.DataFrame({"query": ["s1", "s1", "s2"], "train_video": ["t1", "t2", "t3"],
                           "train_patient": ["p1", "p2", "p3"], "score": [0.9, 0.4, 0.7]})
    assert pair_context(scores, "s1", "t2") == (0.4, "p2")
    assert pair_context(scores, "s2", "t1") == (0.0, "p1")  # not shortlisted: 0
    assert pair_context(scores, "s1", "t9") == (0.0, None)


# --- CLI --------------------------------------------------------------------------------

def _fake_workspace(root: Path) -> dict:
    """A workspace with data, one synthetic set and score tables, without models."""
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.data.phantom import PhantomConfig, generate_phantom

    data = generate_phantom(root / "data", PhantomConfig(n_patients=8, videos_per_patient=2, frames=4, size=16))
    syn = generate_phantom(root / "synthetic" / "gen",
                           PhantomConfig(n_patients=2, videos_per_patient=2, frames=4, size=16, view="psax", seed=1))
    ds = EchoNetDataset.open(data)
    train, held = ds.split("TRAIN"), ds.split(["VAL", "TEST"])
    rng = np.random.default_rng(0)
    patient = dict(zip(train.names, train.patients))
    train_names = train.names[:-1]  # the last training video is never shortlisted
    heldout = pd.DataFrame([{"query": h, "train_video": t, "train_patient": patient[t], "score": rng.uniform(0.5, 0.99)}
                            for h in held.names for t in train_names])
    synthetic = pd.DataFrame([{"query": s, "train_video": t, "train_patient": patient[t], "score": rng.uniform(0.5, 1.0)}
                              for s in EchoNetDataset.open(syn).names for t in train_names[:3]])
    (root / "scores").mkdir()
    heldout.to_parquet(root / "scores" / "heldout.parquet")
    synthetic.to_parquet(root / "scores" / "synthetic_gen.parquet")
    manifest = {
        "version": 3, "data": {"path": "data"}, "engine": {"size": 16},
        "models": {"vae": {"path": "models/vae"}, "reid": {"path": "models/reid", "sha256": "ab" * 32}},
        "index": {"path": "index", "fingerprint": {"reid": "ab" * 32, "data": "cd" * 32, "index_stride": 2}},
        "synthetic": {"gen": {"path": "synthetic/gen"}},
        "scores": {"heldout": "scores/heldout.parquet", "synthetic_gen": "scores/synthetic_gen.parquet"},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    best = heldout.groupby("query")["score"].max().reindex(held.names).fillna(0.0).to_numpy()
    return {"manifest": manifest, "synthetic": synthetic, "train": train, "unlisted": train.names[-1],
            "threshold": float(np.percentile(best, 95, method="weibull"))}


def test_cli_review_decide_list_export_import(tmp_path, capsys, monkeypatch):
    from echoaudit.cli import main

    monkeypatch.delenv("ECHOAUDIT_DB", raising=False)
    ws = tmp_path / "ws"
    info = _fake_workspace(ws)
    pair = info["synthetic"].iloc[4]
    video, train_video = pair["query"], pair["train_video"]
    base = ["review", "decide", "--workspace", str(ws), "--set", "gen", "--video", video]
    assert main(base + ["--train-video", train_video, "--verdict", "unsure", "--reviewer", "ann"]) == 0
    assert main(base + ["--train-video", train_video, "--verdict", "confirmed_copy", "--reviewer", "bob",
                        "--note", "same speckle"]) == 0
    assert f"recorded confirmed_copy for gen/{video} vs {train_video}" in capsys.readouterr().out
    # a training video no synthetic video was shortlisted against: score 0, patient from the data
    assert main(base + ["--train-video", info["unlisted"], "--verdict", "not_a_copy", "--reviewer", "cy",
                        "--threshold", "0.97"]) == 0
    capsys.readouterr()

    with DecisionStore.for_workspace(ws) as s:
        hist = s.history("gen")
    assert hist["reviewer"].tolist() == ["ann", "bob", "cy"]
    bob = hist.iloc[1]
    assert bob["score"] == pair["score"] and bob["train_patient"] == pair["train_patient"]
    assert bob["threshold"] == pytest.approx(info["threshold"], abs=1e-12)
    assert bob["rule"] == "heldout_to_train p95, score" and bob["note"] == "same speckle"
    assert bob["reid_fingerprint"] == "ab" * 32 and bob["workspace"] == str(ws.resolve())
    fp = json.dumps(info["manifest"]["index"]["fingerprint"], sort_keys=True).encode()
    assert bob["index_fingerprint"] == hashlib.sha256(fp).hexdigest()
    cy = hist.iloc[2]
    patient = dict(zip(info["train"].names, info["train"].patients))[info["unlisted"]]
    assert (cy["score"], cy["threshold"], cy["rule"], cy["train_patient"]) == (0.0, 0.97, "manual, score", patient)

    assert main(["review", "list", "--workspace", str(ws), "--set", "gen"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if video in line]
    assert len(lines) == 2 and "confirmed_copy" in lines[0] and "bob" in lines[0] and " UTC" in lines[0]
    assert "unsure" not in out and "2 current verdicts" in out
    assert main(["review", "list", "--workspace", str(ws), "--history"]) == 0
    assert "unsure" in capsys.readouterr().out

    csv_path = tmp_path / "out" / "decisions.csv"
    assert main(["review", "export", "--workspace", str(ws), "--out", str(csv_path), "--set", "gen"]) == 0
    assert f"wrote 3 decisions to {csv_path}" in capsys.readouterr().out
    other = tmp_path / "ws2"
    other.mkdir()
    (other / "manifest.json").write_text((ws / "manifest.json").read_text())
    assert main(["review", "import", "--workspace", str(other), str(csv_path)]) == 0
    assert "imported 3 decisions" in capsys.readouterr().out
    assert main(["review", "import", "--workspace", str(other), str(csv_path)]) == 0
    assert "imported 0 decisions" in capsys.readouterr().out and _count(other / "decisions.sqlite") == 3

    # errors: one line on stderr, exit code 2, nothing written
    assert main(base + ["--train-video", train_video, "--verdict", "maybe", "--reviewer", "ann"]) == 2
    assert "verdict must be one of confirmed_copy, not_a_copy, unsure" in capsys.readouterr().err
    assert main(["review", "decide", "--workspace", str(ws), "--set", "gen", "--video", "nope", "--train-video",
                 train_video, "--verdict", "unsure", "--reviewer", "ann"]) == 2
    assert "no video 'nope' in synthetic set 'gen'" in capsys.readouterr().err
    assert main(base + ["--train-video", "T404", "--verdict", "unsure", "--reviewer", "ann"]) == 2
    assert "'T404' is not a training video" in capsys.readouterr().err
    assert main(["review", "list", "--workspace", str(tmp_path / "nowhere")]) == 2
    assert "is not an EchoAudit workspace" in capsys.readouterr().err
    bad = _write_rows(tmp_path / "bad.csv", [{c: "" for c in CSV_COLUMNS}])
    assert main(["review", "import", "--workspace", str(other), str(bad)]) == 2
    assert "row 1 (line 2), verdict must be one of" in capsys.readouterr().err
    assert _count(ws / "decisions.sqlite") == 3 and _count(other / "decisions.sqlite") == 3
