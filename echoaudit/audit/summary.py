"""The headline numbers of one synthetic set, as one dict: threshold, flags, recall next
to the real baseline, and the sample-size-corrected estimate of how many training videos
the generator has learned. Pure: tables in, numbers out; every number carries its
interval and the rule that made it.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from echoaudit.audit.intervals import bootstrap_auc
from echoaudit.audit.occupancy import estimate_learned
from echoaudit.audit.prdc import compute_prdc
from echoaudit.audit.privacy import best_matches, calibrate_threshold, flag_summary, flag_videos, flags_per_patient
from echoaudit.audit.recall import generative_recall, recall_with_baseline

__all__ = ["audit_summary", "learned_estimate"]


def learned_estimate(best: pd.DataFrame, n_train: int, threshold: float | None, conf: float = 0.95) -> dict | None:
    """Occupancy estimate of the number of learned training videos from best matches.

    k = distinct training videos hit by the queries whose best match counts (reaches the
    threshold, or all queries when ``threshold`` is None), n = those queries.
    """
    hits = best.dropna(subset=["train_video"])
    if threshold is not None:
        hits = hits[hits["score"] >= threshold]
    n, k = len(hits), int(hits["train_video"].nunique())
    if n == 0:
        return None
    est = estimate_learned(k, n, n_train, conf=conf)
    return est.to_dict()


def audit_summary(
    heldout_scores: pd.DataFrame,
    synthetic_scores: pd.DataFrame,
    *,
    train_videos: Sequence[str],
    heldout_videos: Sequence[str],
    synthetic_videos: Sequence[str],
    percentile: float = 95.0,
    rule: str = "train_to_heldout",
    score_column: str = "score",
    roc: pd.DataFrame | None = None,
    embeddings: tuple | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Headline numbers for one synthetic set (see the module docstring).

    ``*_scores``: long tables (query, train_video, train_patient, score, ...) from the engine.
    ``score_column``: "score" (max over frames) or "score_robust" (mean of the top frames).
    ``roc``: optional table (label, score) of re-ID pairs for the AUC with its interval.
    ``embeddings``: optional (train (N, D), synthetic (M, D)) per-video embeddings for
    precision / recall / density / coverage (Naeem et al. 2020, k = 5).
    """
    def use(df: pd.DataFrame) -> pd.DataFrame:
        if score_column not in df:
            raise ValueError(f"score_column must be a column of the score tables; got {score_column!r}")
        return df.assign(score=df[score_column])[["query", "train_video", "train_patient", "score"]]

    held, syn = use(heldout_scores), use(synthetic_scores)
    n_train = len(train_videos)
    thr = calibrate_threshold(held, rule=rule, percentile=percentile, train_videos=list(train_videos),
                              heldout_videos=list(heldout_videos), n_boot=n_boot, seed=seed)
    flags = flag_videos(syn, thr.value, queries=list(synthetic_videos))
    best_syn = best_matches(syn, queries=list(synthetic_videos))
    best_held = best_matches(held, queries=list(heldout_videos))
    out = {
        "score_column": score_column,
        "threshold": thr.to_dict() | {"describe": thr.describe()},
        "flags": flag_summary(flags),
        "top_patients": flags_per_patient(flags).head(10).to_dict(orient="records"),
        "recall": {
            "thresholded": recall_with_baseline(best_syn, best_held, n_train, thr.value, seed=seed),
            "best_match": recall_with_baseline(best_syn, best_held, n_train, None, seed=seed),
            "raw_thresholded": generative_recall(best_syn, n_train, thr.value),
        },
        "learned": {
            "synthetic": learned_estimate(best_syn, n_train, thr.value),
            "heldout": learned_estimate(best_held, n_train, thr.value),
            "synthetic_best_match": learned_estimate(best_syn, n_train, None),
            "heldout_best_match": learned_estimate(best_held, n_train, None),
        },
        "n_train": n_train,
        "n_synthetic": len(synthetic_videos),
        "n_heldout": len(heldout_videos),
    }
    if embeddings is not None:
        real, fake = embeddings
        k = min(5, len(real) - 1, len(fake) - 1)
        if k >= 1:
            out["prdc"] = {**compute_prdc(real, fake, nearest_k=k), "nearest_k": k,
                           "rule": f"Naeem et al. 2020 on per-video mean re-ID embeddings, k = {k}"}
    if roc is not None and len(roc) and roc["label"].nunique() == 2:
        auc, lo, hi = bootstrap_auc(roc["label"].to_numpy(), roc["score"].to_numpy(), n_boot=n_boot, seed=seed)
        out["reid_auc"] = {"value": auc, "low": lo, "high": hi,
                           "rule": f"ROC AUC of the re-ID head on {len(roc)} held-out frame pairs, bootstrap {n_boot}x"}
    return out
