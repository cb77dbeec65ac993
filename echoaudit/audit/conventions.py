"""Published scoring conventions, as named modes, so EchoAudit's numbers can be set beside
the ones users already know.

``"notebooks"`` (MischaD/UltrasoundPrivacy, arXiv 2411.04956): each query's **first
frame** is scored by the re-ID **head** against every given training frame; its best
match is the training video of the best-scoring frame::

    score(q) = max_j head(e_q, t_j),   best(q) = video(argmax_j head(e_q, t_j))

The threshold: each held-out first frame's best head score against the training set;
``tau`` = the 95th percentile of those. "Learned" = the best match of at least one
synthetic sample, no threshold (:func:`echoaudit.audit.coverage.coverage`).

``"echonet_synthetic"`` (HReynaud/EchoNet-Synthetic ``apply.py``, MICCAI 2024): first
frame only; pairs scored by the **Pearson correlation** of the embeddings::

    r(a, b) = <cn(a), cn(b)>,  cn(x) = (x - mean(x)) / ||x - mean(x)||

computed as an exact FAISS inner-product search over centred, normalised vectors. The
threshold: for each *training* item its best correlation with any held-out item;
``tau`` = the 95th percentile of those.

Inputs are embeddings (rows) with a video name per row; which frames they hold (first
frames only, or every indexed frame) is the caller's choice and is named in the rule.
The head is any callable ``head(e1 (B, D), e2 (B, D)) -> (B,)`` scores. Pure functions:
arrays in, tables and numbers out.

:func:`compare_modes` runs both on one synthetic set the way the report shows them: each
threshold set on the first frames of calibration patients, its false-flag rate measured
on those of check patients (patients that set no threshold), the synthetic videos it
flags counted with Wilson intervals.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "MODES",
    "notebook_best_matches",
    "notebook_threshold",
    "pearson_best_matches",
    "echonet_synthetic_threshold",
    "compare_modes",
]

MODES: dict[str, str] = {
    "notebooks": "re-ID head score, best training frame per query first frame (MischaD/UltrasoundPrivacy)",
    "echonet_synthetic": "Pearson correlation of re-ID embeddings, first frames (HReynaud/EchoNet-Synthetic)",
}
_CHUNK = 65536  # head evaluations per call: bounds memory for large training sets


def _check_emb(x: object, name: str, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] < 1 or (dim is not None and arr.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, D)"
        raise ValueError(f"{name} must be a {want} array with n >= 1, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold finite real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float32)


def _check_labels(labels: object, n: int, name: str) -> np.ndarray:
    if labels is None or isinstance(labels, (str, bytes)) or len(labels) != n:  # type: ignore[arg-type]
        got = "None" if labels is None else (repr(labels) if isinstance(labels, (str, bytes)) else len(labels))
        raise ValueError(f"{name} must hold one name per row ({n}), got {got}")
    return np.asarray([str(v) for v in labels])  # type: ignore[union-attr]


def _check_percentile(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0.0 < float(p) <= 100.0:
        raise ValueError(f"percentile must be a number in (0, 100], got {p!r}")
    return float(p)


def _best_head(queries: np.ndarray, train: np.ndarray, head: Callable) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: (best head score, index of the best training row), dense in chunks."""
    n_q, n_t = len(queries), len(train)
    best = np.full(n_q, -np.inf)
    arg = np.zeros(n_q, np.int64)
    rows = max(1, _CHUNK // n_t)
    for start in range(0, n_q, rows):
        q = queries[start:start + rows]
        qi = np.repeat(np.arange(len(q)), n_t)
        ti = np.tile(np.arange(n_t), len(q))
        s = np.asarray(head(q[qi], train[ti]), dtype=np.float64).reshape(len(q), n_t)
        best[start:start + len(q)] = s.max(axis=1)
        arg[start:start + len(q)] = s.argmax(axis=1)
    return best, arg


def notebook_best_matches(
    query_first: np.ndarray,
    query_names: Sequence[str],
    train_emb: np.ndarray,
    train_videos: Sequence[str],
    head: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> pd.DataFrame:
    """The notebooks' rule: each query's first frame, its best training frame by head score.

    Args:
        query_first: (Q, D) first-frame embeddings of the query videos.
        query_names: (Q,) their names.
        train_emb: (M, D) training frame embeddings; ``train_videos``: (M,) video per row.
        head: ``head(e1 (B, D), e2 (B, D)) -> (B,)`` scores (logits or probabilities).

    Returns:
        DataFrame, one row per query in input order: ``query``, ``train_video``,
        ``score`` (the best head score, float64), ``train_row`` (index into ``train_emb``).
    """
    q = _check_emb(query_first, "query_first")
    t = _check_emb(train_emb, "train_emb", q.shape[1])
    names = _check_labels(query_names, len(q), "query_names")
    videos = _check_labels(train_videos, len(t), "train_videos")
    best, arg = _best_head(q, t, head)
    return pd.DataFrame({"query": names, "train_video": videos[arg], "score": best, "train_row": arg})


def notebook_threshold(
    heldout_first: np.ndarray,
    train_emb: np.ndarray,
    head: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    percentile: float = 95.0,
) -> float:
    """``tau`` = percentile (numpy linear) of each held-out first frame's best head score
    against the training frames (the notebooks' 5 % rule)."""
    q = _check_emb(heldout_first, "heldout_first")
    t = _check_emb(train_emb, "train_emb", q.shape[1])
    best, _ = _best_head(q, t, head)
    return float(np.percentile(best, _check_percentile(percentile)))


def _pearson_search(queries: np.ndarray, base: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact max Pearson correlation: FAISS inner product over centre-normalised rows."""
    import faiss

    from echoaudit.index import center_normalize

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(center_normalize(base), dtype=np.float32))
    sims, ids = index.search(np.ascontiguousarray(center_normalize(queries), dtype=np.float32), k)
    return sims[:, 0].astype(np.float64), ids[:, 0].astype(np.int64)


def pearson_best_matches(
    query_first: np.ndarray,
    query_names: Sequence[str],
    train_emb: np.ndarray,
    train_videos: Sequence[str],
) -> pd.DataFrame:
    """EchoNet-Synthetic's scorer: each query's best training row by Pearson correlation.

    Returns:
        DataFrame, one row per query in input order: ``query``, ``train_video``, ``score``
        (the correlation in [-1, 1], float64), ``train_row``.
    """
    q = _check_emb(query_first, "query_first")
    t = _check_emb(train_emb, "train_emb", q.shape[1])
    names = _check_labels(query_names, len(q), "query_names")
    videos = _check_labels(train_videos, len(t), "train_videos")
    sims, ids = _pearson_search(q, t)
    return pd.DataFrame({"query": names, "train_video": videos[ids], "score": sims, "train_row": ids})


def echonet_synthetic_threshold(train_first: np.ndarray, heldout_first: np.ndarray, *, percentile: float = 95.0) -> float:
    """``tau`` = percentile (numpy linear) over training items of each one's best Pearson
    correlation with any held-out item (EchoNet-Synthetic ``apply.py``)."""
    t = _check_emb(train_first, "train_first")
    h = _check_emb(heldout_first, "heldout_first", t.shape[1])
    sims, _ = _pearson_search(t, h)
    return float(np.percentile(sims, _check_percentile(percentile)))


def _share(k: int, n: int, conf: float) -> dict:
    from echoaudit.audit.intervals import wilson_interval

    low, high = wilson_interval(int(k), int(n), conf)
    return {"k": int(k), "n": int(n), "share": k / n, "low": float(low), "high": float(high)}


def compare_modes(
    *,
    train_emb: np.ndarray,
    train_videos: Sequence[str],
    train_first: np.ndarray,
    train_first_videos: Sequence[str],
    calibration_first: np.ndarray,
    check_first: np.ndarray | None,
    synthetic_first: np.ndarray,
    synthetic_names: Sequence[str],
    head: Callable[[np.ndarray, np.ndarray], np.ndarray],
    percentile: float = 95.0,
    conf: float = 0.95,
    max_head_pairs: int = 200_000_000,
) -> dict[str, dict]:
    """Both published modes on one synthetic set, each with its threshold and what it flags.

    ``"notebooks"``: ``tau`` = :func:`notebook_threshold` of the calibration first frames
    against ``train_emb`` (every given training frame); a query is flagged when its
    :func:`notebook_best_matches` score is ``>= tau``. ``"echonet_synthetic"``: ``tau`` =
    :func:`echonet_synthetic_threshold` (each training first frame's best correlation with
    a calibration first frame); a query is flagged when its :func:`pearson_best_matches`
    correlation with the training first frames is ``>= tau``. Both thresholds are numpy
    ``linear`` percentiles, as published. Shares carry Wilson intervals.

    Args:
        train_emb: (M, D) training frame embeddings; ``train_videos``: (M,) video per row.
        train_first: (N, D) each training video's first frame; ``train_first_videos``: (N,).
        calibration_first: (C, D) first frames of the held-out videos that set thresholds.
        check_first: (K, D) first frames of held-out videos of other patients, or None
            (then no false-flag rate is measured).
        synthetic_first: (S, D) first frames of the synthetic videos; ``synthetic_names``: (S,).
        head: ``head(e1 (B, D), e2 (B, D)) -> (B,)`` scores (e.g. the re-ID head's logits).
        percentile: in (0, 100]; 95 = the published 5 % rule.
        conf: confidence level of the Wilson intervals, in (0, 1).
        max_head_pairs: the notebooks mode scores every (first frame, training frame) pair
            densely; above this many pairs it is skipped (``skipped`` says why).

    Returns:
        dict mode -> dict: ``mode``, ``description`` (:data:`MODES`), ``score`` (what the
        threshold is on), ``threshold`` (float, or None when skipped), ``percentile``,
        ``n_calibration``, ``flagged`` (``k``, ``n``, ``share``, ``low``, ``high``),
        ``check`` (the same for the check videos: the measured false-flag rate, or None),
        ``best`` (the synthetic videos' best matches: query, train_video, score,
        train_row, flagged), ``skipped`` (None or the reason).

    Raises:
        ValueError: arrays of other shapes or dimensions, names of other lengths, a bad
            percentile, conf or max_head_pairs.
    """
    t_all = _check_emb(train_emb, "train_emb")
    dim = t_all.shape[1]
    t_first = _check_emb(train_first, "train_first", dim)
    cal = _check_emb(calibration_first, "calibration_first", dim)
    chk = None if check_first is None or len(check_first) == 0 else _check_emb(check_first, "check_first", dim)
    syn = _check_emb(synthetic_first, "synthetic_first", dim)
    syn_names = _check_labels(synthetic_names, len(syn), "synthetic_names")
    _check_labels(train_videos, len(t_all), "train_videos")
    _check_labels(train_first_videos, len(t_first), "train_first_videos")
    percentile = _check_percentile(percentile)
    if isinstance(conf, bool) or not isinstance(conf, (int, float, np.number)) or not 0.0 < float(conf) < 1.0:
        raise ValueError(f"conf must be a number in (0, 1), got {conf!r}")
    if isinstance(max_head_pairs, bool) or not isinstance(max_head_pairs, (int, np.integer)) or max_head_pairs < 1:
        raise ValueError(f"max_head_pairs must be an integer >= 1, got {max_head_pairs!r}")

    def result(mode: str, score: str, tau: float | None, best: pd.DataFrame | None, check_scores, skipped=None) -> dict:
        out = {"mode": mode, "description": MODES[mode], "score": score, "threshold": tau, "percentile": percentile,
               "n_calibration": len(cal), "flagged": None, "check": None, "best": None, "skipped": skipped}
        if tau is not None:
            best = best.assign(flagged=best["score"].to_numpy() >= tau)
            out["best"] = best
            out["flagged"] = _share(int(best["flagged"].sum()), len(best), float(conf))
            if check_scores is not None:
                out["check"] = _share(int((check_scores >= tau).sum()), len(check_scores), float(conf))
        return out

    out = {}
    pairs = (len(cal) + (0 if chk is None else len(chk)) + len(syn)) * len(t_all)
    if pairs > max_head_pairs:
        out["notebooks"] = result("notebooks", "re-ID head", None, None, None,
                                  skipped=f"{pairs:,} head evaluations needed, over the limit of {max_head_pairs:,}")
    else:
        cal_best, _ = _best_head(cal, t_all, head)
        tau = float(np.percentile(cal_best, percentile))  # = notebook_threshold(cal, t_all, head, percentile)
        chk_best = None if chk is None else _best_head(chk, t_all, head)[0]
        best = notebook_best_matches(syn, syn_names, t_all, train_videos, head)
        out["notebooks"] = result("notebooks", "re-ID head", tau, best, chk_best)
    tau = echonet_synthetic_threshold(t_first, cal, percentile=percentile)
    chk_best = None if chk is None else _pearson_search(chk, t_first)[0]
    best = pearson_best_matches(syn, syn_names, t_first, train_first_videos)
    out["echonet_synthetic"] = result("echonet_synthetic", "Pearson correlation", tau, best, chk_best)
    return out
