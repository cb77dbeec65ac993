"""What to review next and what may be released: pure functions over the audit's flag
table and the current decisions. No IO, no database.

Inputs:

* ``flags``: :func:`echoaudit.audit.privacy.flag_videos` of one synthetic set, one row per
  synthetic video with its best training match: ``query``, ``train_video``,
  ``train_patient``, ``score`` (probability), ``flagged`` (bool, ``score >= threshold``).
* ``current``: :meth:`DecisionStore.current` of the same set: the latest decision per
  (synthetic_video, train_video) pair with ``verdict``, ``reviewer``, ``decided_at``, ``note``.

A synthetic video's verdict: ``confirmed_copy`` when any of its pairs is a confirmed copy
(one reproduced training video is enough), else the current verdict of its best-match pair
(the pair the flag is about), else none (undecided). A verdict on another pair does not
settle the flagged one.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from echoaudit.review.decision import VERDICTS

__all__ = ["QUEUE_COLUMNS", "STATUSES", "ReleaseList", "video_verdicts", "review_queue", "release_list", "pair_context"]

FLAG_COLUMNS = ("query", "train_video", "train_patient", "score", "flagged")
CURRENT_COLUMNS = ("synthetic_video", "train_video", "verdict", "reviewer", "decided_at", "note")
#: Columns of :func:`review_queue`.
QUEUE_COLUMNS = ("query", "train_video", "train_patient", "score", "flagged", "logit_gap", "status",
                 "verdict", "reviewer", "decided_at", "note")
#: Statuses of :func:`review_queue`, in queue order ("decided: <verdict>" stands for three).
STATUSES = ("undecided flagged", "borderline", "decided", "not flagged")


def _frame(table: object, name: str, columns: Iterable[str]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; it has {list(map(str, table.columns))}")
    return table


def _check_flags(flags: object) -> pd.DataFrame:
    table = _frame(flags, "flags", FLAG_COLUMNS)
    if not pd.api.types.is_bool_dtype(table["flagged"]):
        raise ValueError(f"flags['flagged'] must be bool, got dtype {table['flagged'].dtype}; use flag_videos()")
    if table["query"].duplicated().any():
        dup = table.loc[table["query"].duplicated(), "query"].unique()[:5].tolist()
        raise ValueError(f"flags must have one row per synthetic video; repeated: {dup}")
    return table


def _check_current(current: object) -> pd.DataFrame:
    table = _frame(current, "current", CURRENT_COLUMNS)
    if "synthetic_set" in table.columns and table["synthetic_set"].nunique() > 1:
        raise ValueError(f"current holds decisions of several sets {sorted(table['synthetic_set'].unique())}; "
                         "pass store.current(<the flags' set>)")
    bad = sorted(set(table["verdict"]) - set(VERDICTS))
    if bad:
        raise ValueError(f"current has verdicts {bad}; allowed: {list(VERDICTS)}")
    return table


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def video_verdicts(flags: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The verdict of each synthetic video of ``flags`` (see the module docstring).

    Returns:
        DataFrame indexed like ``flags``, columns ``verdict``, ``reviewer``, ``decided_at``,
        ``note``, ``decided_train_video`` (NA where undecided).
    """
    flags, current = _check_flags(flags), _check_current(current)
    cols = ["verdict", "reviewer", "decided_at", "note", "decided_train_video"]
    cur = current.rename(columns={"train_video": "decided_train_video"})[["synthetic_video"] + cols]
    cur = cur.astype({"synthetic_video": object, "decided_train_video": object})
    keys = pd.DataFrame({"query": flags["query"].astype(object).to_numpy(),
                         "train_video": flags["train_video"].astype(object).to_numpy()})
    # a confirmed copy on any pair (the latest confirmation names who and when) ...
    confirmed = (cur[cur["verdict"] == "confirmed_copy"].sort_values("decided_at", kind="mergesort")
                 .drop_duplicates("synthetic_video", keep="last"))
    by_copy = keys.merge(confirmed, how="left", left_on="query", right_on="synthetic_video")[cols]
    # ... else the current verdict on the best-match pair
    by_pair = keys.merge(cur, how="left", left_on=["query", "train_video"],
                         right_on=["synthetic_video", "decided_train_video"])[cols]
    copy = np.broadcast_to(by_copy["verdict"].notna().to_numpy()[:, None], by_copy.shape)
    out = by_copy.where(copy, by_pair)
    out.index = flags.index
    out["decided_at"] = pd.to_datetime(out["decided_at"], utc=True)
    return out


def review_queue(flags: pd.DataFrame, current: pd.DataFrame, threshold: float,
                 borderline_logits: float = 1.0) -> pd.DataFrame:
    """Every synthetic video in the order a reviewer should look at them.

    1. ``undecided flagged``: flagged, no verdict yet; highest score first;
    2. ``borderline``: not flagged, no verdict, and close to the threshold on the logit
       scale: ``|logit(score) - logit(threshold)| <= borderline_logits``; highest first;
    3. ``decided: <verdict>``: a verdict exists (including ``unsure``); highest first;
    4. ``not flagged``: the rest (undecided, clearly below the threshold); highest first.

    Ties go by video name. ``logit_gap = logit(score) - logit(threshold)``
    (:func:`echoaudit.audit.scale.to_logit`; > 0 above the threshold).

    Args:
        flags: :func:`~echoaudit.audit.privacy.flag_videos` at ``threshold``.
        current: the current decisions of the same set.
        threshold: the threshold the flags were made at, a probability in [0, 1].
        borderline_logits: half-width (>= 0) of the borderline band, in logit units.

    Returns:
        DataFrame with :data:`QUEUE_COLUMNS`, one row per synthetic video.

    Raises:
        ValueError: missing columns, a threshold outside [0, 1], a negative band, or flags
            that disagree with ``threshold`` (made at another one).
    """
    flags = _check_flags(flags)
    t = _probability("threshold", threshold)
    if (isinstance(borderline_logits, bool) or not isinstance(borderline_logits, numbers.Real)
            or not math.isfinite(borderline_logits) or borderline_logits < 0):
        raise ValueError(f"borderline_logits must be a finite number >= 0, got {borderline_logits!r}")
    score = flags["score"].to_numpy(dtype=np.float64)
    flagged = flags["flagged"].to_numpy(dtype=bool)
    disagree = flagged != (score >= t)
    if disagree.any():
        raise ValueError(f"flags disagree with threshold {t!r} on {int(disagree.sum())} video(s), e.g. "
                         f"{flags.loc[disagree, 'query'].iloc[0]!r}: make the flags at that threshold")
    from echoaudit.audit.scale import to_logit  # scipy: only when a queue is made

    verdicts = video_verdicts(flags, current)
    gap = to_logit(score) - to_logit(t) if len(score) else np.zeros(0)
    decided = verdicts["verdict"].notna().to_numpy()
    borderline = ~decided & ~flagged & (np.abs(gap) <= borderline_logits)
    group = np.select([~decided & flagged, borderline, decided], [0, 1, 2], default=3)
    status = np.select([group == 0, group == 1, group == 2],
                       ["undecided flagged", "borderline", ("decided: " + verdicts["verdict"].astype(str)).to_numpy()],
                       default="not flagged")
    out = flags[list(FLAG_COLUMNS)].assign(logit_gap=gap, status=status, _group=group).join(
        verdicts[["verdict", "reviewer", "decided_at", "note"]])
    out = out.sort_values(["_group", "score", "query"], ascending=[True, False, True], kind="mergesort")
    return out.drop(columns="_group").reset_index(drop=True)[list(QUEUE_COLUMNS)]


@dataclass(frozen=True)
class ReleaseList:
    """What a filtered synthetic set may contain.

    Attributes:
        videos: sorted names of the synthetic videos to release.
        false_alarms: flagged videos a reviewer judged ``not_a_copy`` (current verdict on
            their best-match pair): ``query``, ``train_video``, ``train_patient``,
            ``score``, ``reviewer``, ``decided_at``, ``note``, ``released`` (bool).
        withheld: every video not released, with ``query``, ``score``, ``flagged`` and
            ``reason`` ("confirmed copy", "flagged, not reviewed", "flagged, unsure",
            "flagged, false alarm not kept").
    """

    videos: list[str]
    false_alarms: pd.DataFrame
    withheld: pd.DataFrame


def release_list(flags: pd.DataFrame, current: pd.DataFrame, confirmed: Iterable[str], *,
                 keep_false_alarms: bool = True) -> ReleaseList:
    """The synthetic videos to release after review.

    ``videos = (unflagged - confirmed) | false alarms`` where ``confirmed`` are the
    confirmed copies (removed whatever their score: a reviewer found a copy the threshold
    missed) and false alarms are flagged videos whose current verdict is ``not_a_copy``
    and that are not confirmed copies on another pair. ``keep_false_alarms=False``
    releases only ``unflagged - confirmed`` (the false alarms are then still listed).

    Args:
        flags: :func:`~echoaudit.audit.privacy.flag_videos` of the set at the threshold used.
        current: :meth:`DecisionStore.current` of the set.
        confirmed: :meth:`DecisionStore.confirmed_copies` of the set.
        keep_false_alarms: release flagged videos judged not a copy.

    Returns:
        :class:`ReleaseList`.
    """
    flags = _check_flags(flags)
    if isinstance(confirmed, str):
        raise ValueError(f"confirmed must be a collection of video names, got the string {confirmed!r}")
    confirmed = {str(v) for v in confirmed}
    verdicts = video_verdicts(flags, current)
    name = flags["query"].astype(str)
    is_confirmed = name.isin(confirmed) | (verdicts["verdict"] == "confirmed_copy")
    flagged = flags["flagged"].astype(bool)
    false_alarm = flagged & ~is_confirmed & (verdicts["verdict"] == "not_a_copy")
    release = (~flagged & ~is_confirmed) | (false_alarm & keep_false_alarms)

    fa = flags.loc[false_alarm, ["query", "train_video", "train_patient", "score"]].join(
        verdicts.loc[false_alarm, ["reviewer", "decided_at", "note"]]).assign(released=bool(keep_false_alarms))
    fa = fa.sort_values(["score", "query"], ascending=[False, True], kind="mergesort").reset_index(drop=True)

    reason = np.select(
        [is_confirmed.to_numpy(), false_alarm.to_numpy(), (verdicts["verdict"] == "unsure").to_numpy()],
        ["confirmed copy", "flagged, false alarm not kept", "flagged, unsure"], default="flagged, not reviewed")
    withheld = flags[["query", "score", "flagged"]].assign(reason=reason)[~release.to_numpy()]
    withheld = withheld.sort_values(["score", "query"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    return ReleaseList(videos=sorted(name[release]), false_alarms=fa, withheld=withheld)


def pair_context(scores: pd.DataFrame, synthetic_video: str, train_video: str,
                 score_column: str = "score") -> tuple[float, str | None]:
    """The score a reviewer sees for one pair, and the training video's patient.

    Args:
        scores: the engine's long score table of the set (``query``, ``train_video``,
            ``train_patient`` and ``score_column``).
        synthetic_video, train_video: the pair.
        score_column: ``score`` (clip score), ``score_peak`` or ``score_robust``.

    Returns:
        ``(score, train_patient)``: the pair's score (0.0 when the pair was never
        shortlisted: absent pairs count as 0) and the patient of ``train_video`` as the
        table names it (None when the table never mentions that training video).
    """
    table = _frame(scores, "scores", ("query", "train_video", "train_patient", score_column))
    of_train = table[table["train_video"].astype(str) == str(train_video)]
    pair = of_train[of_train["query"].astype(str) == str(synthetic_video)]
    score = float(pair[score_column].max()) if len(pair) else 0.0
    patient = str(of_train["train_patient"].iloc[0]) if len(of_train) else None
    return score, patient
