"""Coverage and reproduction: two questions, two numbers.

*Coverage* (generative recall; Dombrowski et al., arXiv 2411.04956, the notebooks'
"learned" rule): the share of training videos, and of training patients, that are the best
match of at least one synthetic video. No threshold::

    coverage_video   = |{ best_video(q)   : q in Q }| / N_videos
    coverage_patient = |{ best_patient(q) : q in Q }| / N_patients

where ``best_patient(q)`` is the patient of ``best_video(q)`` (a patient's score is the
highest of its videos', so that is also the best-matching patient). The raw share grows
with |Q|; the occupancy model (:mod:`echoaudit.audit.occupancy`, the Image Retrieval
Score of arXiv 2411.16171) turns the number k of distinct items hit by n queries into the
limit ``s_hat / N`` reached with unlimited samples, with a likelihood-ratio interval.

*Adjusted coverage* compares a synthetic set with real held-out videos at an equal number
of queries ``n* = min(n_syn, n_real)`` through the same model, so no synthetic video is
discarded and the model only interpolates::

    adjusted = E[k](n*, s_syn) / E[k](n*, s_real),   E[k](n, s) = s (1 - (1 - 1/s)^n)

with ``s_x`` the occupancy MLE of set x fitted on all of its queries. 1 = the generator
covers the training set like new real data. Its interval resamples the query videos of
both sets with replacement; a query drawn twice is one video, not two draws from the
generator, so each resample keeps its distinct queries (about 63 % of them). That makes
each resample a subsample of ``m`` queries; the spread of the ratio over subsamples is
scaled back to ``n`` queries by ``sqrt(m / n)`` (subsampling, Politis and Romano 1994)::

    (low, high) = ratio - sqrt(f) (q_{1-a/2} - ratio),  ratio - sqrt(f) (q_{a/2} - ratio)

with ``f = 1 - (1 - 1/n)^n`` the expected kept share and ``q`` the bootstrap quantiles.
The plain bootstrap of a distinct count fails (a resample repeats queries, so it always
hits fewer items than the data did); this form does not.

*Reproduction* (a privacy number): training videos / patients that some synthetic video
re-identifies at or above the privacy threshold (its best match scores >= t).

The real baseline must not come from the held-out videos that set the threshold: pass the
check part of :func:`echoaudit.audit.calibration.calibration_split` (held-out videos split by
patient, fixed seed) as ``best_real``.

Input ``best`` tables have one row per query and columns ``query``, ``train_video``,
``score`` (``train_video`` NA = no match; such a query is no draw and is left out);
:func:`echoaudit.audit.privacy.best_matches` makes them. All functions are pure.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd

from echoaudit.audit.occupancy import _log_likelihood_s, estimate_learned, expected_distinct
from echoaudit.audit.privacy import _check_conf, _check_names, _check_threshold
from echoaudit.audit.recall import _check_best
from echoaudit.audit.scale import to_logit

__all__ = [
    "LEVELS",
    "coverage",
    "adjusted_coverage",
    "reproduction",
]

LEVELS: tuple[str, ...] = ("video", "patient")


# ---------------------------------------------------------------------------- checks


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _check_train(train_videos: object, train_patients: object) -> tuple[list[str], list[str]]:
    videos = _check_names(train_videos, "train_videos")
    if train_patients is None or isinstance(train_patients, (str, bytes)):
        raise ValueError(f"train_patients must be a list with one patient per training video, got {train_patients!r}")
    patients = [str(p) for p in train_patients]  # type: ignore[union-attr]
    if len(patients) != len(videos):
        raise ValueError(
            f"train_patients must hold one patient per training video: got {len(patients)} patients "
            f"for {len(videos)} videos"
        )
    if not videos:
        raise ValueError("train_videos is empty: coverage needs at least one training video")
    return videos, patients


def _codes(best: pd.DataFrame, name: str, videos: list[str], patients: list[str]) -> dict[str, np.ndarray]:
    """Per matched query: the index of its best video and of that video's patient."""
    hit = best["train_video"].dropna().astype(str)
    index = pd.Index(videos)
    pos = index.get_indexer(hit)
    if (pos < 0).any():
        unknown = sorted(set(hit[pos < 0]))
        raise ValueError(
            f"{name} names training videos missing from train_videos: {unknown[:5]} ({len(unknown)} in all)"
        )
    patient_codes, _ = pd.factorize(pd.Series(patients))
    return {"video": pos.astype(np.int64), "patient": patient_codes[pos].astype(np.int64)}


def _n_items(patients: list[str]) -> dict[str, int]:
    return {"video": len(patients), "patient": len(set(patients))}


# ---------------------------------------------------------------------------- coverage


def _share(k: int, n_items: int, conf: float) -> tuple[float, float]:
    from echoaudit.audit.intervals import wilson_interval

    return wilson_interval(k, n_items, conf)


def _level_record(codes: np.ndarray, n_items: int, level: str, conf: float) -> dict:
    k, n = int(np.unique(codes).size), int(codes.size)
    low, high = _share(k, n_items, conf)
    rec = {"level": level, "matched": k, "n_train": n_items, "n_queries": n, "share": k / n_items,
           "low": float(low), "high": float(high), "conf": conf}
    if n == 0:
        rec.update({"s_hat": None, "s_low": None, "s_high": None, "limit": None, "limit_low": None,
                    "limit_high": None, "limit_rule": "no query has a best match: nothing to estimate"})
        return rec
    est = estimate_learned(k, n, n_items, conf=conf)
    rec.update({"s_hat": est.s_hat, "s_low": est.s_low, "s_high": est.s_high, "limit": est.recall_limit,
                "limit_low": est.recall_low, "limit_high": est.recall_high, "limit_rule": est.rule})
    return rec


def coverage(
    best: pd.DataFrame, train_videos: Sequence[str], train_patients: Sequence[str], *, conf: float = 0.95
) -> dict:
    """Coverage of the training set by a query set, at video and at patient level.

    Raw share ``k / N`` (Wilson interval) and the occupancy limit ``s_hat / N`` with its
    likelihood-ratio interval (module docstring), no threshold.

    Args:
        best: one row per query (``query``, ``train_video``, ``score``).
        train_videos: (N,) every training video, unique.
        train_patients: (N,) the patient of each training video.
        conf: confidence level in (0, 1).

    Returns:
        dict with ``video`` and ``patient``, each a dict: ``matched`` (k), ``n_train`` (N
        videos or patients), ``n_queries`` (n, queries with a match), ``share``, ``low``,
        ``high``, ``s_hat``, ``s_low``, ``s_high``, ``limit``, ``limit_low``,
        ``limit_high`` (None when n = 0), ``limit_rule``, ``conf``; and ``rule``.

    Raises:
        ValueError: a malformed table, matches naming unknown training videos, lists of
            different lengths, a bad ``conf``.
    """
    table = _check_best(best)
    videos, patients = _check_train(train_videos, train_patients)
    conf = _check_conf(conf)
    codes = _codes(table, "best", videos, patients)
    sizes = _n_items(patients)
    out = {level: _level_record(codes[level], sizes[level], level, conf) for level in LEVELS}
    out["rule"] = ("share of training videos / patients that are the best match of at least one query "
                   "(no threshold), Wilson interval; limit with unlimited queries: occupancy MLE s/N, "
                   f"likelihood-ratio interval, {100 * conf:g} %")
    return out


@lru_cache(maxsize=65536)
def _s_mle(k: int, n: int, N: int) -> int:
    """Occupancy MLE of s (as :func:`occupancy.estimate_learned`, without its interval)."""
    if k == n:
        return N
    s = np.arange(k, N + 1, dtype=np.float64)
    return k + int(np.argmax(_log_likelihood_s(k, n, s)))


def _expected(n: int, s: int) -> float:
    """E[k](n, s) = s (1 - (1 - 1/s)^n), as :func:`occupancy.expected_distinct` (scalar, unchecked)."""
    return -s * math.expm1(n * math.log1p(-1.0 / s)) if s > 1 else 1.0


def _ratio_at(n_star: int, k_syn: int, n_syn: int, k_real: int, n_real: int, N: int) -> float:
    return _expected(n_star, _s_mle(k_syn, n_syn, N)) / _expected(n_star, _s_mle(k_real, n_real, N))


def _distinct(codes: np.ndarray) -> int:
    # codes are positions >= 0: a bincount is the O(n) np.unique(codes).size (bootstraps of
    # 10,000-query sets call this thousands of times)
    return int(np.count_nonzero(np.bincount(codes))) if codes.size else 0


def _drawn(rng: np.random.Generator, n: int) -> np.ndarray:
    """The distinct positions of n draws with replacement from range(n), sorted: what
    ``np.unique(rng.integers(n, size=n))`` returns, without the sort."""
    return np.flatnonzero(np.bincount(rng.integers(n, size=n), minlength=n))


def adjusted_coverage(
    best_synthetic: pd.DataFrame,
    best_real: pd.DataFrame,
    train_videos: Sequence[str],
    train_patients: Sequence[str],
    *,
    n_boot: int = 500,
    conf: float = 0.95,
    seed: int = 0,
) -> dict:
    """Synthetic coverage relative to real held-out coverage at an equal number of queries.

    ``adjusted = E[k](n*, s_syn) / E[k](n*, s_real)`` with ``n* = min(n_syn, n_real)``
    (module docstring), at video and at patient level, with the subsampling-scaled
    bootstrap interval that resamples the query videos of both sets (the same resamples
    for both levels).

    Args:
        best_synthetic: one row per synthetic video (``query``, ``train_video``, ``score``).
        best_real: one row per real held-out (check) video, same columns.
        train_videos: (N,) every training video; ``train_patients``: the patient of each.
        n_boot: bootstrap resamples, integer >= 50.
        conf: confidence level in (0, 1).
        seed: integer >= 0 for ``np.random.default_rng``.

    Returns:
        dict with ``video`` and ``patient``, each a dict: ``value``, ``low``, ``high``,
        ``n_star``, ``synthetic_at_n`` and ``real_at_n`` (``E[k](n*, s) / N``), ``s_synthetic``,
        ``s_real``, ``n_synthetic``, ``n_real``; and ``rule``, ``conf``, ``n_boot``.

    Raises:
        ValueError: a set without any matched query, bad ``n_boot`` / ``conf`` / ``seed``,
            matches naming unknown training videos.
    """
    syn = _check_best(best_synthetic, "best_synthetic")
    real = _check_best(best_real, "best_real")
    videos, patients = _check_train(train_videos, train_patients)
    conf = _check_conf(conf)
    seed = _check_seed(seed)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 50:
        raise ValueError(f"n_boot must be an integer >= 50, got {n_boot!r}")
    c_syn = _codes(syn, "best_synthetic", videos, patients)
    c_real = _codes(real, "best_real", videos, patients)
    n_syn, n_real = int(c_syn["video"].size), int(c_real["video"].size)
    if n_syn == 0 or n_real == 0:
        raise ValueError(
            f"adjusted coverage needs at least one matched query in each set, got {n_syn} synthetic and "
            f"{n_real} real queries with a best match"
        )
    sizes = _n_items(patients)
    n_star = min(n_syn, n_real)
    rng = np.random.default_rng(seed)
    boot = {level: np.empty(int(n_boot)) for level in LEVELS}
    kept = np.empty((int(n_boot), 2))
    for b in range(int(n_boot)):
        # A query drawn twice is one video: keep each resample's distinct queries.
        i_syn = _drawn(rng, n_syn)
        i_real = _drawn(rng, n_real)
        kept[b] = i_syn.size, i_real.size
        for level in LEVELS:
            boot[level][b] = _ratio_at(n_star, _distinct(c_syn[level][i_syn]), i_syn.size,
                                       _distinct(c_real[level][i_real]), i_real.size, sizes[level])
    # sqrt(m / n) scales the subsample spread back to n queries (module docstring).
    scale = float(np.sqrt(np.mean(kept[:, 0] / n_syn + kept[:, 1] / n_real) / 2.0))
    alpha = 1.0 - conf
    out: dict = {}
    for level in LEVELS:
        N = sizes[level]
        k_syn, k_real = _distinct(c_syn[level]), _distinct(c_real[level])
        value = _ratio_at(n_star, k_syn, n_syn, k_real, n_real, N)
        q_lo, q_hi = np.quantile(boot[level], [alpha / 2.0, 1.0 - alpha / 2.0])
        low = max(0.0, value - scale * (q_hi - value))
        high = value - scale * (q_lo - value)
        s_syn, s_real = _s_mle(k_syn, n_syn, N), _s_mle(k_real, n_real, N)
        out[level] = {
            "level": level, "value": value, "low": float(low), "high": float(high), "n_star": n_star,
            "synthetic_at_n": float(expected_distinct(n_star, s_syn) / N),
            "real_at_n": float(expected_distinct(n_star, s_real) / N),
            "s_synthetic": s_syn, "s_real": s_real, "n_synthetic": n_syn, "n_real": n_real, "n_train": N,
        }
    out.update({
        "conf": conf, "n_boot": int(n_boot),
        "rule": (f"coverage each set would reach with n* = {n_star} queries under its occupancy fit "
                 f"(E[k](n*, s) = s(1-(1-1/s)^n*)), synthetic over real; {100 * conf:g} % interval: "
                 f"bootstrap of both sets' query videos ({int(n_boot)}x, distinct queries kept, "
                 "spread scaled by sqrt(m/n))"),
    })
    return out


# ---------------------------------------------------------------------------- reproduction


def reproduction(
    best: pd.DataFrame,
    threshold: float,
    train_videos: Sequence[str],
    train_patients: Sequence[str],
    *,
    conf: float = 0.95,
) -> dict:
    """Training videos and patients that some synthetic video re-identifies (a privacy number).

    ``reproduced_video = |{ best_video(q) : score(q) >= t }|``, likewise per patient;
    shares of all training videos / patients with Wilson intervals.

    Args:
        best: one row per synthetic video (``query``, ``train_video``, ``score``).
        threshold: t in [0, 1], the privacy threshold.
        train_videos: (N,) every training video; ``train_patients``: the patient of each.
        conf: confidence level in (0, 1).

    Returns:
        dict with ``video`` and ``patient`` (each: ``matched``, ``n_train``, ``share``,
        ``low``, ``high``), ``n_flagged`` (synthetic videos at or above t), ``threshold``,
        ``conf``, ``rule``.
    """
    table = _check_best(best)
    t = _check_threshold(threshold)
    videos, patients = _check_train(train_videos, train_patients)
    conf = _check_conf(conf)
    above = table[table["score"].to_numpy(dtype=np.float64) >= t]
    codes = _codes(above, "best", videos, patients)
    sizes = _n_items(patients)
    out: dict = {}
    for level in LEVELS:
        k = _distinct(codes[level])
        low, high = _share(k, sizes[level], conf)
        out[level] = {"level": level, "matched": k, "n_train": sizes[level], "share": k / sizes[level],
                      "low": float(low), "high": float(high)}
    out.update({"n_flagged": int(codes["video"].size), "threshold": t, "conf": conf,
                "rule": (f"training videos / patients that are the best match of a synthetic video scoring "
                         f">= {to_logit(t):.2f} re-ID logit (probability {t:.6f}); Wilson {100 * conf:g} % interval")})
    return out
