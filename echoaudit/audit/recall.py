"""Coverage audit: generative recall and which training videos a generator never makes.

Generative recall (Dombrowski et al., arXiv 2411.04956) is the share of training videos
that at least one synthetic video matches. Here "matches" means: the training video is
the query's best match (:func:`echoaudit.audit.privacy.best_matches`) and, unless the
threshold is None, that best score reaches the threshold t:

    recall = |{ best(q) : q in Q, score(q) >= t }| / n_train

The raw number grows with the number of queries |Q|, so it is shown against |Q|
(:func:`recall_vs_n`). With the threshold None this is *coverage* (the paper's rule);
with a threshold it counts training videos *reproduced* above the privacy threshold, a
privacy number. :mod:`echoaudit.audit.coverage` gives both at video and patient level, the
sample-size-corrected limit and the comparison with real held-out videos.

Input ``best`` tables have one row per query and columns ``query``, ``train_video``,
``score`` (``train_video`` NA = no match); :func:`privacy.best_matches` makes them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from echoaudit.audit.privacy import (
    _check_conf,
    _check_score_column,
    _check_threshold,
    _require_frame,
)
from echoaudit.audit.scale import to_logit

__all__ = [
    "DEFAULT_EF_BINS",
    "generative_recall",
    "recall_vs_threshold",
    "recall_vs_n",
    "covered_train_videos",
    "coverage_by_group",
]

DEFAULT_EF_BINS: tuple[float, ...] = (0, 30, 40, 50, 60, 70, 100)
BEST_COLUMNS: tuple[str, ...] = ("query", "train_video", "score")


def _check_best(best: object, name: str = "best") -> pd.DataFrame:
    table = _require_frame(best, name, BEST_COLUMNS)
    dup = table["query"][table["query"].duplicated()]
    if len(dup):
        raise ValueError(
            f"{name} must have one row per query (use privacy.best_matches), but "
            f"{dup.nunique()} queries repeat, e.g. {dup.astype(str).unique()[:3].tolist()}"
        )
    _check_score_column(table, name)
    return table


def _check_n_train(n_train: object) -> int:
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
        raise ValueError(f"n_train must be an integer >= 1 (number of training videos), got {n_train!r}")
    return int(n_train)


def _check_optional_threshold(threshold: object) -> float | None:
    return None if threshold is None else _check_threshold(threshold)


def _matched_codes(table: pd.DataFrame, threshold: float | None) -> np.ndarray:
    """Per query: an integer code of its matched training video, or -1 (no match)."""
    names = table["train_video"]
    ok = names.notna().to_numpy()
    if threshold is not None:
        ok = ok & (table["score"].to_numpy(dtype=np.float64) >= threshold)
    codes, _ = pd.factorize(names)  # NA -> -1
    return np.where(ok, codes, -1)


def _n_distinct(codes: np.ndarray) -> int:
    kept = codes[codes >= 0]
    return int(np.unique(kept).size)


def _rule(threshold: float | None, n_queries: int, n_train: int) -> str:
    cond = ("best match only, no threshold" if threshold is None
            else f"best-match score >= {to_logit(threshold):.2f} re-ID logit (probability {threshold:.6f})")
    return (
        f"share of {n_train} training videos that are the best match of at least one of "
        f"{n_queries} queries ({cond})"
    )


def _recall_from_codes(codes: np.ndarray, n_train: int, threshold: float | None, conf: float) -> dict:
    matched = _n_distinct(codes)
    if matched > n_train:
        raise ValueError(
            f"{matched} distinct training videos are matched but n_train is {n_train}; "
            "n_train must count every training video"
        )
    from echoaudit.audit.intervals import wilson_interval

    low, high = wilson_interval(matched, n_train, conf)
    return {
        "matched": matched,
        "n_train": n_train,
        "n_queries": int(codes.size),
        "recall": matched / n_train,
        "low": float(low),
        "high": float(high),
        "conf": conf,
        "threshold": threshold,
        "rule": _rule(threshold, int(codes.size), n_train),
    }


def generative_recall(
    best: pd.DataFrame, n_train: int, threshold: float | None, *, conf: float = 0.95
) -> dict:
    """Generative recall: the share of training videos some query's best match hits.

    ``recall = |{best(q) : score(q) >= t}| / n_train`` (no score condition when
    ``threshold`` is None: the loose best-match-only variant). Interval: Wilson.

    Args:
        best: one row per query (``query``, ``train_video``, ``score``).
        n_train: number of training videos (including those never matched).
        threshold: t in [0, 1], or None.
        conf: confidence level of the Wilson interval.

    Returns:
        dict with ``matched``, ``n_train``, ``n_queries``, ``recall``, ``low``, ``high``,
        ``conf``, ``threshold``, ``rule``.
    """
    table = _check_best(best)
    n_train = _check_n_train(n_train)
    t = _check_optional_threshold(threshold)
    conf = _check_conf(conf)
    return _recall_from_codes(_matched_codes(table, t), n_train, t, conf)


def recall_vs_threshold(
    best: pd.DataFrame, n_train: int, thresholds: Sequence[float], *, conf: float = 0.95
) -> pd.DataFrame:
    """Generative recall at each threshold (one row per threshold, input order).

    Returns:
        DataFrame with columns ``threshold``, ``matched``, ``recall``, ``low``, ``high``.
    """
    table = _check_best(best)
    n_train = _check_n_train(n_train)
    conf = _check_conf(conf)
    if thresholds is None or isinstance(thresholds, (str, bytes)) or len(thresholds) == 0:
        raise ValueError(f"thresholds must be a non-empty list of numbers in [0, 1], got {thresholds!r}")
    values = [_check_threshold(t, "thresholds") for t in thresholds]
    rows = []
    for t in values:
        r = _recall_from_codes(_matched_codes(table, t), n_train, t, conf)
        rows.append({k: r[k] for k in ("threshold", "matched", "recall", "low", "high")})
    return pd.DataFrame(rows, columns=["threshold", "matched", "recall", "low", "high"])


def recall_vs_n(
    best: pd.DataFrame,
    n_train: int,
    n_values: Sequence[int],
    threshold: float | None,
    *,
    n_rep: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Generative recall as a function of how many queries were drawn.

    For each n, ``n_rep`` random subsets of n queries (without replacement, one
    ``np.random.default_rng(seed)`` for the whole call) give recalls r_1..r_rep; the row
    holds their mean and the 5th / 95th percentiles (numpy linear interpolation).

    Returns:
        DataFrame with columns ``n_queries``, ``mean``, ``p05``, ``p95``, ``n_rep``, one
        row per n in input order.
    """
    table = _check_best(best)
    n_train = _check_n_train(n_train)
    t = _check_optional_threshold(threshold)
    if isinstance(n_rep, bool) or not isinstance(n_rep, (int, np.integer)) or n_rep < 1:
        raise ValueError(f"n_rep must be an integer >= 1, got {n_rep!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    n_total = len(table)
    if n_values is None or isinstance(n_values, (str, bytes)) or len(n_values) == 0:
        raise ValueError(f"n_values must be a non-empty list of query counts, got {n_values!r}")
    for n in n_values:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (1 <= n <= n_total):
            raise ValueError(f"n_values must be integers in [1, {n_total}] (the number of queries), got {n!r}")

    codes = _matched_codes(table, t)
    if _n_distinct(codes) > n_train:
        raise ValueError(f"more distinct training videos are matched than n_train={n_train}")
    rng = np.random.default_rng(int(seed))
    rows = []
    for n in n_values:
        recalls = np.array(
            [_n_distinct(codes[rng.choice(n_total, size=int(n), replace=False)]) / n_train for _ in range(n_rep)]
        )
        p05, p95 = np.percentile(recalls, [5.0, 95.0])
        rows.append({"n_queries": int(n), "mean": float(recalls.mean()), "p05": float(p05), "p95": float(p95),
                     "n_rep": int(n_rep)})
    return pd.DataFrame(rows, columns=["n_queries", "mean", "p05", "p95", "n_rep"])


def covered_train_videos(
    best: pd.DataFrame,
    train_table: pd.DataFrame,
    threshold: float | None,
    *,
    video_col: str = "train_video",
) -> pd.DataFrame:
    """Mark which training videos the queries reach (coverage drill-down).

    ``n_hits(v) = #{q : best(q) = v and score(q) >= t}``; ``covered = n_hits > 0``.

    Args:
        best: one row per query (``query``, ``train_video``, ``score``).
        train_table: one row per training video, any extra columns (EF, view, patient).
        threshold: t in [0, 1], or None for best-match only.
        video_col: the column of ``train_table`` holding the video names.

    Returns:
        a copy of ``train_table`` (same row order) with columns ``n_hits`` (int64),
        ``covered`` (bool) and ``best_score`` (float64: highest hitting score, NaN if none).
    """
    table = _check_best(best)
    train = _require_frame(train_table, "train_table", [video_col])
    t = _check_optional_threshold(threshold)
    names = train[video_col].astype(str)
    if names.duplicated().any():
        dup = names[names.duplicated()].unique()[:3].tolist()
        raise ValueError(f"train_table['{video_col}'] has duplicate videos, e.g. {dup}")
    hits = table[table["train_video"].notna()]
    if t is not None:
        hits = hits[hits["score"].to_numpy(dtype=np.float64) >= t]
    hit_names = hits["train_video"].astype(str)
    unknown = sorted(set(hit_names) - set(names))
    if unknown:
        raise ValueError(
            f"best matches name training videos missing from train_table['{video_col}']: "
            f"{unknown[:5]} ({len(unknown)} in all)"
        )
    n_hits = hit_names.value_counts()
    top = hits["score"].groupby(hit_names).max()
    out = train.copy()
    out["n_hits"] = names.map(n_hits).fillna(0).astype(np.int64).to_numpy()
    out["covered"] = out["n_hits"].to_numpy() > 0
    out["best_score"] = names.map(top).astype(np.float64).to_numpy()
    return out


def _ef_labels(edges: np.ndarray) -> list[str]:
    labels = [f"[{a:g}, {b:g})" for a, b in zip(edges[:-2], edges[1:-1])]
    labels.append(f"[{edges[-2]:g}, {edges[-1]:g}]")
    return labels


def coverage_by_group(
    covered_table: pd.DataFrame,
    by: str = "ef_bin",
    *,
    ef_bins: Sequence[float] = DEFAULT_EF_BINS,
    ef_col: str = "EF",
    conf: float = 0.95,
) -> pd.DataFrame:
    """Coverage per group of training videos: where the generator's hidden subspaces lie.

    ``coverage(g) = #{covered videos in g} / #{videos in g}``, Wilson interval per group.

    Args:
        covered_table: output of :func:`covered_train_videos`.
        by: ``"ef_bin"`` (bins of ``ef_col`` with edges ``ef_bins``: [e0, e1), ...,
            [e_{k-1}, e_k], last bin closed) or the name of any column (e.g. ``"view"``).
        ef_bins: increasing bin edges, at least two.
        ef_col: the EF column used when ``by="ef_bin"``.
        conf: confidence level.

    Returns:
        DataFrame with columns ``group`` (str), ``n_train``, ``n_covered``, ``coverage``,
        ``low``, ``high``; EF bins in bin order (empty bins kept), other groups sorted.
    """
    table = _require_frame(covered_table, "covered_table", ["covered"])
    conf = _check_conf(conf)
    if not pd.api.types.is_bool_dtype(table["covered"]):
        raise ValueError(f"covered_table['covered'] must be bool, got {table['covered'].dtype}; "
                         "use covered_train_videos()")
    if not isinstance(by, str):
        raise ValueError(f"by must be 'ef_bin' or a column name, got {by!r}")
    if by == "ef_bin":
        _require_frame(table, "covered_table", [ef_col])
        edges = np.asarray(ef_bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
            raise ValueError(f"ef_bins must be at least two strictly increasing finite edges, got {tuple(ef_bins)!r}")
        ef = pd.to_numeric(table[ef_col], errors="coerce").to_numpy(dtype=np.float64)
        outside = ef[~((ef >= edges[0]) & (ef <= edges[-1]))]  # NaN lands here too
        if outside.size:
            raise ValueError(
                f"covered_table['{ef_col}'] has {outside.size} value(s) outside "
                f"[{edges[0]:g}, {edges[-1]:g}] or missing, e.g. {outside[:3].tolist()}; widen ef_bins"
            )
        idx = np.clip(np.searchsorted(edges, ef, side="right") - 1, 0, edges.size - 2)
        labels = _ef_labels(edges)
        groups = pd.Series(pd.Categorical.from_codes(idx, categories=labels), index=table.index)
        order = labels
    else:
        _require_frame(table, "covered_table", [by])
        if table[by].isna().any():
            raise ValueError(f"covered_table['{by}'] has {int(table[by].isna().sum())} missing value(s)")
        groups = table[by].astype(str)
        order = sorted(groups.unique())
    from echoaudit.audit.intervals import wilson_interval

    covered = table["covered"].to_numpy()
    rows = []
    for g in order:
        mask = (groups == g).to_numpy()
        n, k = int(mask.sum()), int(covered[mask].sum())
        low, high = wilson_interval(k, n, conf) if n else (float("nan"), float("nan"))
        rows.append({"group": str(g), "n_train": n, "n_covered": k,
                     "coverage": k / n if n else float("nan"), "low": float(low), "high": float(high)})
    return pd.DataFrame(rows, columns=["group", "n_train", "n_covered", "coverage", "low", "high"])
