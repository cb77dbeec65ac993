"""Streamlit pieces of the review: the decision buttons for one (synthetic video, training
video) pair, the review queue, and the release-list download. The decisions live in the
workspace's decision database (``echoaudit.review``); every session reads it afresh after
a decision, so what one reviewer records shows in every other session on its next rerun.

Session keys: ``reviewer_name`` (who is deciding; asked once per session),
``review_*`` (this module's widgets).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

import widgets
from echoaudit.audit.scale import to_logit
from echoaudit.errors import EchoAuditError
from echoaudit.pickers import MAX_OPTIONS
from echoaudit.review import DB_ENV, DB_FILE, VERDICTS
from echoaudit.review.view import open_store, record_for_pair, review_view

__all__ = ["VERDICT_LABELS", "decisions_version", "rule_in_use", "review_data", "decision_history", "reviewer_name",
           "decision_panel", "review_queue_panel", "release_download"]

VERDICT_LABELS = {"confirmed_copy": "Confirmed copy", "not_a_copy": "Not a copy", "unsure": "Unsure"}
assert set(VERDICT_LABELS) == set(VERDICTS)


def rule_in_use(threshold: float) -> str:
    """The threshold rule a verdict is made under, as stored with it: the Privacy page's
    calibration rule and the threshold in re-ID logit units."""
    from echoaudit.audit.privacy import DEFAULT_RULE

    return f"{st.session_state.get('privacy_rule_applied', DEFAULT_RULE)}, threshold logit {to_logit(threshold):.2f}"


def decisions_version(ws) -> tuple:
    """Changes whenever a decision is added in any session or process, or the database
    changes: (database URL, rows, last id)."""
    if not os.environ.get(DB_ENV, "").strip() and not (Path(ws.root) / DB_FILE).exists():
        return ("", 0, 0)
    with open_store(ws) as store:
        h = store.history()
        return (store.url, len(h), int(h["id"].max()) if len(h) else 0)


@st.cache_data(show_spinner=False, max_entries=32)
def _review_data(root: str, synthetic: str, threshold: float, version: tuple, score_column: str) -> dict:
    return review_view(widgets.open_workspace(root), synthetic, threshold, score_column=score_column)


def review_data(ws, synthetic: str, threshold: float, score_column: str = "score") -> dict:
    """review_view of the set at the threshold, cached until the next decision."""
    return _review_data(str(ws.root), synthetic, float(threshold), decisions_version(ws), score_column)


@st.cache_data(show_spinner=False, max_entries=32)
def _history(root: str, synthetic: str, version: tuple) -> pd.DataFrame:
    with open_store(widgets.open_workspace(root), create=False) as store:
        return store.history(synthetic_set=synthetic)


def decision_history(ws, synthetic: str) -> pd.DataFrame:
    """Every decision on the set, oldest first (what one pair's verdict panel needs; not
    the whole review view, whose flags and queue cost seconds at 100,000 videos)."""
    return _history(str(ws.root), synthetic, decisions_version(ws))


def reviewer_name() -> str:
    """The reviewer's name (a text box, remembered for the session)."""
    if "reviewer_name" not in st.session_state:
        st.session_state["reviewer_name"] = ""
    return st.text_input("Reviewer", key="reviewer_name", placeholder="your name, as the record should show it",
                         help="Stored with every decision you make, with the time, the score and threshold you saw, "
                              "and the fingerprints of the models and index.").strip()


def decision_panel(ws, synthetic: str, video: str, train_video: str, threshold: float, rule: str, *, key: str) -> None:
    """Verdict buttons for one pair, its current verdict and its history."""
    hist = decision_history(ws, synthetic)
    pair = hist[(hist["synthetic_video"] == video) & (hist["train_video"] == train_video)]
    if len(pair):
        last = pair.iloc[-1]
        st.markdown(f"Current verdict on **{video}** vs **{train_video}**: **{VERDICT_LABELS[last['verdict']]}** "
                    f"by {last['reviewer']} at {last['decided_at']:%Y-%m-%d %H:%M} UTC"
                    + (f" ({last['note']})" if last["note"] else "") + f"; {len(pair)} decision(s) in its history.")
    else:
        st.markdown(f"No verdict yet on **{video}** vs **{train_video}**.")
    who = reviewer_name()
    note = st.text_input("Note (optional)", key=f"{key}_note")
    cols = st.columns(len(VERDICT_LABELS))
    for col, (verdict, label) in zip(cols, VERDICT_LABELS.items()):
        if col.button(label, key=f"{key}_{verdict}", disabled=not who, width="stretch",
                      type="primary" if verdict == "confirmed_copy" else "secondary"):
            try:
                with open_store(ws) as store:
                    d = record_for_pair(ws, store, synthetic=synthetic, synthetic_video=video, train_video=train_video,
                                        verdict=verdict, reviewer=who, threshold=threshold, rule=rule, note=note)
                st.session_state["review_last"] = (f"Recorded: {VERDICT_LABELS[d.verdict]} on {d.synthetic_video} vs "
                                                   f"{d.train_video} by {d.reviewer} at {d.decided_at:%H:%M:%S} UTC.")
                st.rerun()
            except EchoAuditError as exc:
                st.error(str(exc))
    if not who:
        st.caption("Enter your name above to record a verdict.")
    if st.session_state.get("review_last"):
        st.success(st.session_state.pop("review_last"))


def review_queue_panel(ws, synthetic: str, threshold: float, rule: str) -> None:
    """The queue (undecided flagged first, then borderline, then decided) and the decision
    buttons for the video chosen in it."""
    rev = review_data(ws, synthetic, threshold)
    q = rev["queue"]
    st.markdown(rev["sentence"])
    todo = q[q["status"] != "not flagged"]
    if todo.empty:
        st.caption("Nothing to review at this threshold: no flagged or borderline video.")
        return
    # Thousands may wait at EchoNet size: one page of the queue, the whole of it as CSV.
    page = widgets.table_page(todo, key="review_queue", what="videos in the queue",
                              csv_name=f"{synthetic}_review_queue.csv")
    shown = page.assign(logit=to_logit(page["score"].to_numpy(dtype=float)),
                        decided_at=page["decided_at"].dt.strftime("%Y-%m-%d %H:%M UTC"))
    st.dataframe(shown[["status", "query", "train_video", "train_patient", "logit", "verdict", "reviewer", "decided_at"]],
                 hide_index=True, width="stretch", key="review_queue_table",
                 column_config={"query": "synthetic video", "train_video": "best training match",
                                "train_patient": "patient", "logit": st.column_config.NumberColumn("re-ID logit", format="%.2f")})
    status = dict(zip(todo["query"], todo["status"]))
    video = widgets.video_picker(
        "Review", todo["query"].tolist(), todo["query"].head(MAX_OPTIONS), key="review_video",
        also=todo["train_patient"].astype(str).tolist(),
        shortlist_note="The queue's first videos (undecided flagged ones first); type a video or training patient "
                       "to find any other", format_func=lambda v: f"{v} ({status.get(v, '')})")
    if video is None:
        return
    row = todo.set_index("query").loc[video]
    c1, c2 = st.columns([3, 1])
    c1.caption(f"Best training match {row['train_video']} (patient {row['train_patient']}), re-ID logit "
               f"{to_logit(float(row['score'])):.2f}. Watch them side by side on Inspect.")
    if c2.button("Open in Inspect", key="review_open_inspect"):
        st.session_state.update(inspect_source="From the workspace", inspect_set=synthetic, inspect_video=video)
        st.switch_page("pages/inspect.py")
    decision_panel(ws, synthetic, video, str(row["train_video"]), threshold, rule, key="review")


def release_download(ws, synthetic: str, threshold: float, logit: float) -> None:
    """The filtered set after review: unflagged minus confirmed copies, plus false alarms kept."""
    rev = review_data(ws, synthetic, threshold)
    rel = rev["release"]
    csv = pd.DataFrame({"video": rel.videos}).to_csv(index=False).encode()
    st.download_button(f"Download the filtered set ({len(rel.videos)} videos, CSV)", csv,
                       file_name=f"{synthetic}_release_logit{logit:.2f}.csv", mime="text/csv", key="privacy_download")
    st.caption(rev["release_sentence"])
    if len(rel.false_alarms):
        fa = widgets.table_page(rel.false_alarms, key="review_false_alarms", what="false alarms",
                                csv_name=f"{synthetic}_false_alarms.csv")
        st.dataframe(fa.assign(decided_at=fa["decided_at"].dt.strftime("%Y-%m-%d %H:%M UTC")),
                     hide_index=True, width="stretch", key="review_false_alarms")
