"""Reviewer decisions end to end on the tiny workspace: the Privacy page's queue and
buttons write to the decision database, a second session sees the verdict, the filtered
set drops a confirmed copy whatever its score, and the report and ``echoaudit audit``
list who decided what and when."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from echoaudit.audit.privacy import flag_videos
from echoaudit.review import DecisionStore
from echoaudit.review.view import record_for_pair, review_view
from echoaudit.workspace import Workspace

APP = "../app.py"


@pytest.fixture(scope="module")
def ws(tiny_workspace):
    return Workspace(tiny_workspace)


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A fresh decision database for this test (the shared tiny workspace stays untouched)."""
    url = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    monkeypatch.setenv("ECHOAUDIT_DB", url)
    return url


@pytest.fixture
def session(ws, db, monkeypatch):
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(ws.root))

    def open_privacy() -> AppTest:
        at = AppTest.from_file(APP, default_timeout=90)
        at.run()
        at.switch_page("pages/privacy.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_privacy


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_reading_decisions_creates_no_file(ws):
    before = sorted(p.name for p in ws.root.iterdir())
    rev = review_view(ws, ws.synthetic_names[0], ws.threshold(95).value)
    assert rev["current"].empty and rev["counts"]["confirmed_copy"] == 0
    assert sorted(p.name for p in ws.root.iterdir()) == before


def test_privacy_queue_buttons_record_and_a_second_session_sees_it(session, ws, db):
    at = session()
    name = at.selectbox(key="synthetic_set").value
    # the lowest threshold: every video is flagged, so the queue has some whatever the micro
    # re-ID scores (this test is about the buttons, not about the model)
    at.slider(key="privacy_threshold").set_value(at.slider(key="privacy_threshold").min).run()
    t = at.session_state["audit_threshold"]
    flags = flag_videos(ws.synthetic_scores(name), t, queries=ws.synthetic(name).names)
    first = flags[flags["flagged"]].sort_values(["score", "query"], ascending=[False, True]).iloc[0]
    assert at.selectbox(key="review_video").value == first["query"]  # undecided flagged, highest first
    assert _button(at, "Confirmed copy").disabled  # no reviewer name yet
    at.text_input(key="reviewer_name").input("Dr. Ada").run()
    at.text_input(key="review_note").input("same septum and valve").run()
    _button(at, "Confirmed copy").click().run()
    assert not at.exception, [e.value for e in at.exception]

    with DecisionStore(db) as store:
        h = store.history(name)
    assert len(h) == 1
    d = h.iloc[0]
    assert (d["synthetic_video"], d["train_video"], d["verdict"], d["reviewer"], d["note"]) == (
        first["query"], first["train_video"], "confirmed_copy", "Dr. Ada", "same septum and valve")
    assert d["score"] == pytest.approx(first["score"], abs=1e-12) and d["threshold"] == pytest.approx(t, abs=1e-12)
    assert d["reid_fingerprint"] == ws.manifest["models"]["reid"]["sha256"] and d["rule"]
    assert any("Recorded: Confirmed copy" in s.value for s in at.success)

    other = session()  # another browser session on the same server
    queue = next(df.value for df in other.dataframe if "status" in df.value.columns)
    row = queue[queue["query"] == first["query"]].iloc[0]
    assert row["status"] == "decided: confirmed_copy" and row["reviewer"] == "Dr. Ada"
    assert "1 confirmed copies" in " ".join(m.value for m in other.markdown)
    assert other.session_state["reviewer_name"] == ""  # names are per session


def test_filtered_set_drops_a_confirmed_copy_below_the_threshold(session, ws, db):
    name = ws.synthetic_names[0]
    t = ws.threshold(95).value
    flags = flag_videos(ws.synthetic_scores(name), t, queries=ws.synthetic(name).names)
    unflagged = flags[~flags["flagged"]]
    assert len(unflagged), "the tiny workspace needs an unflagged synthetic video for this test"
    below = unflagged.iloc[0]
    with DecisionStore(db, workspace=str(ws.root)) as store:
        record_for_pair(ws, store, synthetic=name, synthetic_video=below["query"], train_video=below["train_video"],
                        verdict="confirmed_copy", reviewer="Dr. Bo", threshold=t, rule="test")
    rev = review_view(ws, name, t)
    assert below["query"] not in rev["release"].videos
    assert sorted(rev["release"].videos) == sorted(set(unflagged["query"]) - {below["query"]})
    at = session()
    label = next(b.label for b in at.get("download_button"))
    assert label == f"Download the filtered set ({len(unflagged) - 1} videos, CSV)"
    assert "minus 1 confirmed copy" in " ".join(c.value for c in at.caption)


def test_report_and_cli_list_decisions_with_reviewer_and_time(ws, db, tmp_path, capsys):
    from echoaudit.cli import main
    from echoaudit.report_files import write_report

    name = ws.synthetic_names[0]
    t = ws.threshold(95).value
    best = flag_videos(ws.synthetic_scores(name), t, queries=ws.synthetic(name).names).iloc[0]
    t = min(t, float(best["score"]))  # the reviewer's threshold flags at least the best-scoring video
    flagged = flag_videos(ws.synthetic_scores(name), t, queries=ws.synthetic(name).names)
    v = flagged.sort_values("score", ascending=False).iloc[0]
    with DecisionStore(db, workspace=str(ws.root)) as store:
        rec = record_for_pair(ws, store, synthetic=name, synthetic_video=v["query"], train_video=v["train_video"],
                              verdict="not_a_copy", reviewer="Dr. Cy", threshold=t, rule="test", note="different valve")
    paths = write_report(ws, tmp_path / "rep", synthetic=name, png=False, threshold=t)
    cur = pd.read_csv(paths["table_decisions_current"])
    assert cur[["synthetic_video", "verdict", "reviewer"]].values.tolist() == [[v["query"], "not_a_copy", "Dr. Cy"]]
    html = paths["html"].read_text()
    assert "Reviewer decisions" in html and "Dr. Cy" in html and f"{rec.decided_at:%Y-%m-%d %H:%M} UTC" in html
    summary = json.loads(paths["summary"].read_text())
    assert summary["review"]["counts"]["not_a_copy"] == 1
    release = pd.read_csv(paths["table_release"])["video"].tolist()
    assert v["flagged"], "the best-scoring synthetic video is flagged at the reviewer's threshold"
    assert v["query"] in release  # a flagged video judged a false alarm is kept, and the report says by whom
    assert pd.read_csv(paths["table_false_alarms"])["reviewer"].tolist() == ["Dr. Cy"]
    main(["review", "list", "--workspace", str(ws.root), "--set", name])
    out = capsys.readouterr().out
    assert v["query"] in out and "Dr. Cy" in out and "not_a_copy" in out


def test_open_in_inspect_shows_the_pair_and_its_verdict_buttons_record(session, ws, db):
    at = session()
    name = at.selectbox(key="synthetic_set").value
    video = at.selectbox(key="review_video").value
    _button(at, "Open in Inspect").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="inspect_source").value == "From the workspace"
    assert (at.selectbox(key="inspect_set").value, at.selectbox(key="inspect_video").value) == (name, video)
    at.switch_page("pages/inspect.py")  # AppTest follows st.switch_page for one run only; stay there
    best = at.selectbox(key="inspect_review_train").value
    assert best == ws.synthetic_scores(name).query("query == @video").sort_values("score").iloc[-1]["train_video"]
    at.text_input(key="reviewer_name").input("Dr. Eve").run()
    _button(at, "Not a copy").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with DecisionStore(db) as store:
        cur = store.current(name)
    assert cur[["synthetic_video", "train_video", "verdict", "reviewer"]].values.tolist() == [
        [video, best, "not_a_copy", "Dr. Eve"]]
    assert "threshold logit" in cur["rule"].iloc[0]
    assert any("Current verdict" in m.value and "Not a copy" in m.value for m in at.markdown)
