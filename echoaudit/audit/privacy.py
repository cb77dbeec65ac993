"""Privacy audit: calibrate a memorization threshold on real data and flag synthetic videos.

All functions are pure: they take the engine's long score table and return numbers,
dataclasses or data frames. No IO, no printing.

The score table (one row per shortlisted (query video, training video) pair):

==============  =======  ===============================================================
column          dtype    meaning
==============  =======  ===============================================================
query           str      the query video (synthetic or real held-out)
train_video     str      a training video
train_patient   str      the patient that training video belongs to
score           float    re-identification score in [0, 1] = P(same patient)
==============  =======  ===============================================================

Pairs absent from the table were not shortlisted and count as score 0.

Thresholds (see :func:`calibrate` for the whole procedure):

* ``heldout_to_train`` (the default): the threshold is the 95th percentile of each real
  held-out video's best score against the training set. That is the very statistic a
  synthetic video is judged by (its best score over the training set, on a clip of the
  same length and frame rate), so about 5 % of real unseen videos reach it, whatever the
  sizes of the training and held-out sets. The percentile is numpy's ``weibull`` method
  (position p/100 (n + 1) among the n sorted scores): a fresh video from the same
  distribution exceeds it with probability 1 - p/100 on average; the linear method
  (position p/100 (n - 1) + 1) overshoots that by (2 p/100 - 1) / (n + 1), 1.8 points
  for 50 calibration videos.
* ``train_to_heldout`` (the published EchoNet-Synthetic rule; Reynaud et al., MICCAI 2024;
  Dombrowski et al., arXiv 2411.04956): the 95th percentile (linear) of each *training*
  video's best score against the held-out videos. A synthetic video's best is a maximum
  over all training videos, so this flags more than the stated 5 % when there are more
  training than held-out videos (and fewer in the other case).

Held-out patients are split (:func:`calibration_split`) into a calibration part, which
sets the threshold, and a check part, on which :func:`false_flag_rate` measures the share
of real unseen videos the threshold actually flags. :func:`excess_over_null` turns the
flagged synthetic share into the headline: flagged share minus that measured rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from echoaudit.audit.scale import to_logit

__all__ = [
    "SCORE_COLUMNS",
    "THRESHOLD_RULES",
    "DEFAULT_RULE",
    "RULE_NAMES",
    "Threshold",
    "best_matches",
    "calibration_scores",
    "calibrate_threshold",
    "flag_videos",
    "flag_summary",
    "flags_per_patient",
    "filtered_list",
]

SCORE_COLUMNS: tuple[str, ...] = ("query", "train_video", "train_patient", "score")
THRESHOLD_RULES: tuple[str, ...] = ("heldout_to_train", "train_to_heldout")
DEFAULT_RULE: str = "heldout_to_train"
#: How each rule is named in sentences and on screen.
RULE_NAMES: dict[str, str] = {"heldout_to_train": "held-out-to-train rule", "train_to_heldout": "EchoNet-Synthetic rule"}
#: numpy percentile method of each rule (see the module docstring).
PERCENTILE_METHODS: dict[str, str] = {"heldout_to_train": "weibull", "train_to_heldout": "linear"}
FLAG_COLUMNS: tuple[str, ...] = ("query", "flagged", "score", "train_video", "train_patient")


# ---------------------------------------------------------------------------------------
# argument checks (shared with recall.py)
# ---------------------------------------------------------------------------------------


def _require_frame(table: object, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """Check that ``table`` is a DataFrame holding ``columns``; name every missing one."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {missing}; it has {list(map(str, table.columns))}, "
            f"required: {list(columns)}"
        )
    return table


def _check_score_column(table: pd.DataFrame, name: str, column: str = "score") -> None:
    """Scores must be real numbers in [0, 1] without NaN (absent pairs are 0, not NaN)."""
    col = table[column]
    if len(col) == 0:
        return
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise ValueError(f"{name}['{column}'] must be numeric scores in [0, 1], got dtype {col.dtype}")
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        raise ValueError(
            f"{name}['{column}'] has {n_nan} NaN value(s); allowed: scores in [0, 1] "
            "(leave unscored pairs out, they count as 0)"
        )
    bad = values[(values < 0.0) | (values > 1.0)]
    if bad.size:
        raise ValueError(
            f"{name}['{column}'] has {bad.size} value(s) outside [0, 1], e.g. {bad[:3].tolist()}; "
            "allowed: probabilities in [0, 1]"
        )


def _check_no_missing_names(table: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    for c in columns:
        n_null = int(table[c].isna().sum())
        if n_null:
            raise ValueError(f"{name}['{c}'] has {n_null} missing value(s); every row needs a name")


def _check_scores(scores: object, name: str) -> pd.DataFrame:
    table = _require_frame(scores, name, SCORE_COLUMNS)
    _check_no_missing_names(table, name, ("query", "train_video"))
    _check_score_column(table, name)
    return table


def _check_threshold(threshold: object, name: str = "threshold") -> float:
    """A threshold is a real number in [0, 1]; a :class:`Threshold` gives its ``value``."""
    if isinstance(threshold, Threshold):
        threshold = threshold.value
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.number)):
        raise ValueError(f"{name} must be a number in [0, 1], got {threshold!r}")
    value = float(threshold)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def _check_conf(conf: object) -> float:
    if isinstance(conf, bool) or not isinstance(conf, (int, float, np.number)) or not (0.0 < float(conf) < 1.0):
        raise ValueError(f"conf must be a number in (0, 1), e.g. 0.95; got {conf!r}")
    return float(conf)


def _check_names(names: object, name: str) -> list[str]:
    if names is None or isinstance(names, (str, bytes)):
        raise ValueError(f"{name} must be a list of video names, got {names!r}")
    out = [str(v) for v in names]  # type: ignore[union-attr]
    if len(set(out)) != len(out):
        dup = pd.Series(out)[pd.Series(out).duplicated()].unique()[:5].tolist()
        raise ValueError(f"{name} has duplicate names, e.g. {dup}; each video must appear once")
    return out


def _unknown(names: Iterable[str], allowed: Iterable[str]) -> list[str]:
    allowed_set = set(allowed)
    # unique first: a score table repeats each name once per shortlisted pair
    distinct = pd.unique(pd.Series(list(names) if not isinstance(names, pd.Series) else names).astype(str))
    return sorted(set(distinct) - allowed_set)


def _ordinal(p: float) -> str:
    """95 -> '95th', 97.5 -> '97.5th', 1 -> '1st', 22 -> '22nd'."""
    if float(p).is_integer():
        n = int(p)
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix}"
    return f"{p:g}th"


# ---------------------------------------------------------------------------------------
# best matches
# ---------------------------------------------------------------------------------------


def best_matches(scores: pd.DataFrame, *, queries: Sequence[str] | None = None) -> pd.DataFrame:
    """The best training video of every query.

    ``best(q) = argmax_v score(q, v)`` over the shortlisted training videos ``v``; ties go
    to the training video whose name sorts first, so the result does not depend on row order.

    Args:
        scores: the long score table (columns ``query, train_video, train_patient, score``).
        queries: optional full list of query names. Queries with no shortlisted pair get
            a row with score 0 and no matched video (``train_video``/``train_patient`` NA).

    Returns:
        DataFrame, one row per query sorted by query, columns ``query`` (str),
        ``train_video`` (str), ``train_patient`` (str), ``score`` (float64).

    Raises:
        ValueError: missing columns, scores outside [0, 1] or NaN, or ``queries`` that do
            not cover every query of ``scores``.
    """
    table = _check_scores(scores, "scores")
    wanted = None if queries is None else _check_names(queries, "queries")
    if wanted is not None:
        extra = _unknown(table["query"], wanted)
        if extra:
            raise ValueError(f"scores has queries not in `queries`: {extra[:5]} ({len(extra)} in all)")

    ordered = table.sort_values(
        ["query", "score", "train_video"], ascending=[True, False, True], kind="mergesort"
    )
    best = ordered.drop_duplicates("query", keep="first")[list(SCORE_COLUMNS)].copy()
    best["query"] = best["query"].astype(str)
    best["score"] = best["score"].astype(np.float64)
    if wanted is not None:
        # A query never shortlisted has best score 0 (absent pairs count as 0).
        best = best.set_index("query").reindex(pd.Index(wanted, name="query"))
        best["score"] = best["score"].fillna(0.0)
        best = best.reset_index().sort_values("query", kind="mergesort")
    return best.reset_index(drop=True)[list(SCORE_COLUMNS)]


# ---------------------------------------------------------------------------------------
# threshold calibration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """A memorization threshold calibrated on real held-out data.

    Attributes:
        value: the threshold t in [0, 1] (a probability; :func:`scale.to_logit` gives the
            re-ID logit it is shown as); a synthetic video is flagged when its best
            score is >= t.
        rule: ``"heldout_to_train"`` (best score of each calibration video against the
            training set; the default) or ``"train_to_heldout"`` (best score of each
            training video against the calibration videos; EchoNet-Synthetic).
        percentile: the percentile p in (0, 100] of the best scores that gives ``value``.
        n: how many best scores the percentile was taken over.
        low, high: percentile-bootstrap interval of ``value`` (resampling the n best scores).
        conf: confidence level of ``low``/``high``.
        n_heldout: number of held-out (calibration) videos the calibration used.
        method: numpy's percentile method (``"weibull"`` or ``"linear"``).
    """

    value: float
    rule: str
    percentile: float
    n: int
    low: float
    high: float
    conf: float = 0.95
    n_heldout: int = 0
    method: str = "linear"

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready) of all fields."""
        return asdict(self)

    def describe(self) -> str:
        """The threshold sentence without a check part
        (:func:`echoaudit.audit.calibration.threshold_sentence`)."""
        from echoaudit.audit.calibration import threshold_sentence

        return threshold_sentence(self)


def _check_rule(rule: object) -> str:
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"rule must be one of {list(THRESHOLD_RULES)}, got {rule!r}")
    return str(rule)


def _check_percentile(percentile: object) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.number)):
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile!r}")
    p = float(percentile)
    if not (0.0 < p <= 100.0):
        raise ValueError(f"percentile must be in (0, 100], got {p!r} (95 = the published 5 % rule)")
    return p


def _calibration_inputs(
    heldout_scores: object,
    rule: object,
    train_videos: Sequence[str] | None,
    heldout_videos: Sequence[str] | None,
) -> tuple[pd.DataFrame, str, list[str], list[str]]:
    """Validate and return (table, rule, training video names, held-out video names)."""
    table = _check_scores(heldout_scores, "heldout_scores")
    rule = _check_rule(rule)
    train_names = sorted(table["train_video"].astype(str).unique())
    if train_videos is not None:
        listed = _check_names(train_videos, "train_videos")
        extra = _unknown(train_names, listed)
        if extra:
            raise ValueError(
                f"heldout_scores has training videos not in train_videos: {extra[:5]} ({len(extra)} in all)"
            )
        train_names = listed
    heldout_names = sorted(table["query"].astype(str).unique())
    if heldout_videos is not None:
        listed = _check_names(heldout_videos, "heldout_videos")
        extra = _unknown(heldout_names, listed)
        if extra:
            raise ValueError(
                f"heldout_scores has queries not in heldout_videos: {extra[:5]} ({len(extra)} in all)"
            )
        heldout_names = listed
    if not train_names or not heldout_names:
        raise ValueError(
            "heldout_scores is empty and no train_videos/heldout_videos were given: "
            "a threshold needs at least one training and one held-out video"
        )
    return table, rule, train_names, heldout_names


def calibration_scores(
    heldout_scores: pd.DataFrame,
    *,
    rule: str = DEFAULT_RULE,
    train_videos: Sequence[str] | None = None,
    heldout_videos: Sequence[str] | None = None,
) -> pd.Series:
    """The best scores a threshold is a percentile of.

    * ``rule="train_to_heldout"`` (EchoNet-Synthetic): ``b(v) = max_h score(h, v)`` for
      every training video v over the held-out videos h (the queries).
    * ``rule="heldout_to_train"``: ``b(h) = max_v score(h, v)`` for every held-out video h.

    Unscored pairs count as 0, so videos listed in ``train_videos`` / ``heldout_videos``
    that never appear in the table get b = 0.

    Args:
        heldout_scores: score table whose queries are real held-out videos.
        rule: one of ``THRESHOLD_RULES``.
        train_videos: all training videos (needed for the default rule, else those never
            shortlisted are silently left out).
        heldout_videos: all held-out videos (needed for ``heldout_to_train``, same reason).

    Returns:
        float64 Series ``best_score`` indexed by video name (index name ``train_video`` or
        ``query``), sorted by name.
    """
    table, rule, train_names, heldout_names = _calibration_inputs(
        heldout_scores, rule, train_videos, heldout_videos
    )
    key, names = ("train_video", train_names) if rule == "train_to_heldout" else ("query", heldout_names)
    best = table.groupby(table[key].astype(str))["score"].max()
    best = best.reindex(pd.Index(sorted(names), name=key)).fillna(0.0).astype(np.float64)
    best.name = "best_score"
    return best


def calibrate_threshold(
    heldout_scores: pd.DataFrame,
    *,
    rule: str = DEFAULT_RULE,
    percentile: float = 95.0,
    train_videos: Sequence[str] | None = None,
    heldout_videos: Sequence[str] | None = None,
    n_boot: int = 1000,
    conf: float = 0.95,
    seed: int = 0,
) -> Threshold:
    """Calibrate the memorization threshold on real held-out videos.

    ``t = percentile_p({b_i})`` with ``b_i`` from :func:`calibration_scores`. With
    ``heldout_to_train`` (default) the percentile is numpy's ``weibull`` method (position
    p (n + 1) / 100 among the sorted b_i, clamped to the ends): a fresh real video, scored
    like the calibration videos, reaches t with probability 1 - p/100 on average. With
    ``train_to_heldout`` it is numpy's linear method, as published (EchoNet-Synthetic).
    Pass only the calibration part of the held-out videos (see :func:`calibrate`, which
    also measures the false-flag rate on the check part).

    Interval: percentile bootstrap of the percentile over the n best scores
    (``intervals.bootstrap_quantile_interval``, ``n_boot`` resamples, ``seed``). For
    ``heldout_to_train`` these are the held-out videos; for ``train_to_heldout`` they are
    the training videos' best scores with the held-out set fixed. Resampling the held-out
    videos instead would be the bootstrap's known failure on maxima: a training video's
    best score over a resample can only fall, so every resampled threshold would be
    <= the estimate and the interval would sit below it.

    Args:
        heldout_scores: score table whose queries are real held-out videos.
        rule: ``"heldout_to_train"`` (default) or ``"train_to_heldout"``.
        percentile: p in (0, 100].
        train_videos: all training videos; those never shortlisted count with best score 0.
        heldout_videos: all held-out videos; those never shortlisted count with best score 0.
        n_boot: bootstrap resamples (>= 10).
        conf: confidence level of the interval, in (0, 1).
        seed: seed (>= 0) of the bootstrap's ``np.random.Generator``.

    Returns:
        :class:`Threshold`.

    Raises:
        ValueError: unknown rule, percentile outside (0, 100], missing columns, scores
            outside [0, 1], names in the table that the given lists lack, bad n_boot/conf.
    """
    table, rule, train_names, heldout_names = _calibration_inputs(
        heldout_scores, rule, train_videos, heldout_videos
    )
    p = _check_percentile(percentile)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 10:
        raise ValueError(f"n_boot must be an integer >= 10, got {n_boot!r}")
    conf = _check_conf(conf)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")

    best = calibration_scores(
        table, rule=rule, train_videos=train_names, heldout_videos=heldout_names
    ).to_numpy()
    if best.size < 2:
        raise ValueError(f"a threshold needs at least 2 best scores for its interval, got {best.size} (rule={rule!r})")
    method = PERCENTILE_METHODS[rule]
    value = float(np.percentile(best, p, method=method))
    from echoaudit.audit.intervals import bootstrap_quantile_interval

    low, high = bootstrap_quantile_interval(best, p / 100.0, n_boot=int(n_boot), conf=conf, seed=int(seed),
                                            method=method)
    return Threshold(
        value=value,
        rule=rule,
        percentile=p,
        n=int(best.size),
        low=float(low),
        high=float(high),
        conf=conf,
        n_heldout=len(heldout_names),
        method=method,
    )


# ---------------------------------------------------------------------------------------
# flags
# ---------------------------------------------------------------------------------------


def flag_videos(
    synthetic_scores: pd.DataFrame,
    threshold: float | Threshold,
    *,
    queries: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Flag every synthetic video whose best match reaches the threshold.

    ``flagged(q) = max_v score(q, v) >= t``.

    Args:
        synthetic_scores: score table whose queries are synthetic videos.
        threshold: t in [0, 1] (or a :class:`Threshold`).
        queries: optional list of all synthetic videos; those never shortlisted get score 0.

    Returns:
        DataFrame, one row per synthetic video, highest score first (ties by name),
        columns ``query`` (str), ``flagged`` (bool), ``score`` (float64),
        ``train_video`` and ``train_patient`` (str, the best match).
    """
    t = _check_threshold(threshold)
    best = best_matches(synthetic_scores, queries=queries)
    best["flagged"] = best["score"].to_numpy() >= t
    best = best.sort_values(["score", "query"], ascending=[False, True], kind="mergesort")
    return best.reset_index(drop=True)[list(FLAG_COLUMNS)]


def _check_flags(flags: object) -> pd.DataFrame:
    table = _require_frame(flags, "flags", FLAG_COLUMNS)
    if not pd.api.types.is_bool_dtype(table["flagged"]):
        raise ValueError(f"flags['flagged'] must be bool, got dtype {table['flagged'].dtype}; use flag_videos()")
    return table


def flag_summary(flags: pd.DataFrame, conf: float = 0.95) -> dict:
    """How many synthetic videos are flagged, with a Wilson interval on the share.

    ``share = k / n`` with k flagged of n videos; interval = Wilson score interval.

    Returns:
        dict with ``n_videos``, ``n_flagged``, ``share``, ``low``, ``high``, ``conf``, ``rule``.
    """
    table = _check_flags(flags)
    conf = _check_conf(conf)
    n = len(table)
    if n == 0:
        raise ValueError("flags is empty: a flagged share needs at least one synthetic video")
    k = int(table["flagged"].sum())
    from echoaudit.audit.intervals import wilson_interval

    low, high = wilson_interval(k, n, conf)
    return {
        "n_videos": n,
        "n_flagged": k,
        "share": k / n,
        "low": float(low),
        "high": float(high),
        "conf": conf,
        "rule": f"flagged share k/n with Wilson {conf * 100:g} % interval",
    }


def flags_per_patient(flags: pd.DataFrame) -> pd.DataFrame:
    """Training patients ranked by how many synthetic videos flag them (who leaks most).

    Only flagged rows count. Per patient: ``n_flagged`` = synthetic videos whose best
    match is one of the patient's videos, ``n_train_videos`` = distinct training videos
    of the patient hit, ``max_score`` = the highest such score.

    Returns:
        DataFrame sorted by ``n_flagged`` desc, then ``max_score`` desc, then patient,
        columns ``train_patient``, ``n_flagged`` (int64), ``n_train_videos`` (int64),
        ``max_score`` (float64), ``train_videos`` (sorted list of str).
    """
    table = _check_flags(flags)
    hit = table[table["flagged"]]
    columns = ["train_patient", "n_flagged", "n_train_videos", "max_score", "train_videos"]
    if hit.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).astype(
            {"n_flagged": np.int64, "n_train_videos": np.int64, "max_score": np.float64}
        )
    grouped = hit.groupby(hit["train_patient"].astype(str))
    out = pd.DataFrame(
        {
            "n_flagged": grouped.size().astype(np.int64),
            "n_train_videos": grouped["train_video"].nunique().astype(np.int64),
            "max_score": grouped["score"].max().astype(np.float64),
            "train_videos": grouped["train_video"].agg(lambda s: sorted(set(map(str, s)))),
        }
    )
    out.index.name = "train_patient"
    out = out.reset_index().sort_values(
        ["n_flagged", "max_score", "train_patient"], ascending=[False, False, True], kind="mergesort"
    )
    return out.reset_index(drop=True)[columns]


def filtered_list(flags: pd.DataFrame) -> list[str]:
    """Names of the synthetic videos that pass the filter (not flagged), sorted."""
    table = _check_flags(flags)
    return sorted(map(str, table.loc[~table["flagged"], "query"]))
