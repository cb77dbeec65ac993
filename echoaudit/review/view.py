"""What a reviewer and a meeting see of the decisions on one synthetic set at a threshold:
the review queue, the current verdicts with who made them and when, the full history,
and the release list (the filtered set) that the decisions and the threshold give.

The dashboard's Privacy and Inspect pages, ``echoaudit audit``/``echoaudit review`` and
the report all call :func:`review_view`, so they agree. No Streamlit here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from echoaudit.audit.privacy import flag_videos
from echoaudit.errors import ReviewError
from echoaudit.review.decision import check_verdict
from echoaudit.review.store import DB_ENV, DB_FILE, DecisionStore
from echoaudit.review.tables import pair_context, release_list, review_queue

__all__ = ["review_view", "decision_counts", "decisions_sentence", "release_sentence", "open_store", "record_for_pair",
           "decision_context", "index_fingerprint"]


def open_store(ws, *, create: bool = True) -> DecisionStore:
    """The decision store of a workspace ($ECHOAUDIT_DB, else ``decisions.sqlite`` in it).
    With ``create=False`` a workspace without a decision file gets an empty in-memory
    store instead, so that reading (a report, a page) never creates a file."""
    if not create and not os.environ.get(DB_ENV, "").strip() and not (Path(ws.root) / DB_FILE).exists():
        return DecisionStore("sqlite://", workspace=str(ws.root))
    return DecisionStore.for_workspace(Path(ws.root))


def decision_counts(queue: pd.DataFrame) -> dict:
    """Counts a reviewer needs at a glance, from :func:`review_queue`'s table."""
    status = queue["status"].astype(str)
    flagged = queue["flagged"].astype(bool)
    verdict = queue["verdict"]
    return {
        "n_videos": int(len(queue)),
        "n_flagged": int(flagged.sum()),
        "undecided_flagged": int((status == "undecided flagged").sum()),
        "borderline": int((status == "borderline").sum()),
        "confirmed_copy": int((verdict == "confirmed_copy").sum()),
        "not_a_copy": int((verdict == "not_a_copy").sum()),
        "unsure": int((verdict == "unsure").sum()),
    }


def decisions_sentence(counts: dict) -> str:
    """One plain sentence on where the review stands."""
    return (f"{counts['confirmed_copy']} confirmed copies, {counts['not_a_copy']} judged not a copy and "
            f"{counts['unsure']} unsure; {counts['undecided_flagged']} of {counts['n_flagged']} flagged videos "
            f"still wait for a reviewer ({counts['borderline']} borderline unflagged videos are queued after them).")


def release_sentence(release, n_videos: int) -> str:
    """One plain sentence on the filtered set."""
    fa = release.false_alarms
    kept = fa[fa["released"]] if len(fa) else fa
    who = sorted(set(kept["reviewer"].astype(str))) if len(kept) else []
    confirmed = int((release.withheld["reason"] == "confirmed copy").sum()) if len(release.withheld) else 0
    s = (f"{len(release.videos)} of {n_videos} synthetic videos may be released: unflagged at the threshold, minus "
         f"{confirmed} confirmed cop{'y' if confirmed == 1 else 'ies'} (removed whatever their score)")
    if len(kept):
        s += f", plus {len(kept)} flagged video{'s' if len(kept) != 1 else ''} kept as false alarm{'s' if len(kept) != 1 else ''} by {', '.join(who)}"
    return s + "."


def review_view(ws, synthetic: str, threshold: float, *, store: DecisionStore | None = None,
                borderline_logits: float = 1.0, score_column: str = "score") -> dict:
    """The review state of synthetic set ``synthetic`` at ``threshold`` (a probability).

    Returns a dict: ``synthetic``, ``threshold``, ``flags`` (flag_videos), ``queue``
    (review_queue: undecided flagged first, then borderline, then decided),
    ``current`` (latest decision per pair), ``history`` (every decision, oldest first),
    ``counts`` (:func:`decision_counts`), ``sentence``, ``release`` (ReleaseList),
    ``release_sentence``, ``store_url`` (where the decisions live, password hidden).
    """
    own = store is None
    store = open_store(ws, create=False) if own else store
    try:
        scores = ws.synthetic_scores(synthetic).assign(score=lambda d: d[score_column])
        flags = flag_videos(scores, float(threshold), queries=ws.synthetic(synthetic).names)
        current = store.current(synthetic)
        history = store.history(synthetic_set=synthetic)
        confirmed = store.confirmed_copies(synthetic)
        url = store.url
    finally:
        if own:
            store.close()
    queue = review_queue(flags, current, float(threshold), borderline_logits=borderline_logits)
    release = release_list(flags, current, confirmed)
    counts = decision_counts(queue)
    return {"synthetic": synthetic, "threshold": float(threshold), "flags": flags, "queue": queue, "current": current,
            "history": history, "counts": counts, "sentence": decisions_sentence(counts), "release": release,
            "release_sentence": release_sentence(release, len(flags)), "store_url": url}


def index_fingerprint(manifest: dict) -> str:
    """sha256 of the index fingerprint (the models and data the index was built from)."""
    fp = manifest.get("index", {}).get("fingerprint")
    return "" if fp is None else hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def decision_context(ws, synthetic: str, synthetic_video: str, train_video: str, *, threshold: float, rule: str,
                     score_column: str = "score") -> dict:
    """What the reviewer saw of one pair: its score, the training patient, the threshold and
    rule in use, the model and index fingerprints, all read from the workspace.

    Raises:
        ReviewError: a video that is not in the set, or not a training video.
    """
    names = ws.synthetic(synthetic).names
    if synthetic_video not in names:
        raise ReviewError(f"no video {synthetic_video!r} in synthetic set {synthetic!r}; it has {len(names)}, "
                          f"e.g. {', '.join(names[:3])}")
    score, patient = pair_context(ws.synthetic_scores(synthetic), synthetic_video, train_video, score_column)
    if patient is None:  # never shortlisted for any synthetic video: ask the data set
        train = dict(zip(ws.train.names, ws.train.patients))
        if train_video not in train:
            raise ReviewError(f"{train_video!r} is not a training video of this workspace")
        patient = train[train_video]
    return {"score": score, "train_patient": patient, "threshold": float(threshold), "rule": f"{rule}, {score_column}",
            "reid_fingerprint": ws.manifest["models"]["reid"].get("sha256", ""),
            "index_fingerprint": index_fingerprint(ws.manifest), "workspace": str(ws.root)}


def record_for_pair(ws, store: DecisionStore, *, synthetic: str, synthetic_video: str, train_video: str,
                    verdict: str, reviewer: str, threshold: float, rule: str, note: str = "",
                    score_column: str = "score"):
    """Record a verdict on one (synthetic video, training video) pair with what the
    reviewer saw (:func:`decision_context`). Returns the stored Decision."""
    check_verdict(verdict)
    ctx = decision_context(ws, synthetic, synthetic_video, train_video, threshold=threshold, rule=rule,
                           score_column=score_column)
    return store.record(synthetic_set=synthetic, synthetic_video=synthetic_video, train_video=train_video,
                        verdict=verdict, reviewer=reviewer, note=note, **ctx)
