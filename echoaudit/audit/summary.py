"""The headline numbers of one synthetic set, as one dict: threshold, flags, reproduction
(training videos / patients re-identified above the threshold), coverage at video and
patient level with its sample-size-corrected limit, and coverage relative to real held-out
videos that did not set anything. Pure: tables in, numbers out; every number carries its
interval and the rule that made it.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from echoaudit.audit.coverage import adjusted_coverage, coverage, reproduction
from echoaudit.audit.intervals import bootstrap_auc
from echoaudit.audit.prdc import compute_prdc
from echoaudit.audit.privacy import (
    DEFAULT_RULE,
    THRESHOLD_RULES,
    best_matches,
    flag_summary,
    flag_videos,
    flags_per_patient,
)
from echoaudit.audit.calibration import CalibrationSplit, calibrate, calibration_split, excess_over_null

__all__ = ["audit_summary", "coverage_summary"]


def coverage_summary(
    best_synthetic: pd.DataFrame,
    best_heldout: pd.DataFrame,
    *,
    train_videos: Sequence[str],
    train_patients: Sequence[str],
    check_videos: Sequence[str],
    n_boot: int = 500,
    seed: int = 0,
) -> dict:
    """Coverage of one synthetic set next to the real baseline (no threshold anywhere).

    The real baseline is the check part of the by-patient split of held-out videos
    (:func:`calibration.calibration_split`): ``check_videos``, never the part that calibrates
    the threshold. ``best_heldout`` may hold every held-out video; only the check videos
    are used.

    Returns:
        dict with ``synthetic`` and ``real`` (:func:`coverage.coverage` of the whole
        synthetic set and of the check videos), ``adjusted``
        (:func:`coverage.adjusted_coverage`), ``check_videos`` and ``rule``.
    """
    check = [str(v) for v in check_videos]
    missing = sorted(set(check) - set(best_heldout["query"].astype(str)))
    if missing:
        raise ValueError(f"check_videos must be queries of best_heldout; missing: {missing[:5]} ({len(missing)} in all)")
    best_check = best_heldout[best_heldout["query"].astype(str).isin(set(check))]
    return {
        "synthetic": coverage(best_synthetic, train_videos, train_patients),
        "real": coverage(best_check, train_videos, train_patients),
        "adjusted": adjusted_coverage(best_synthetic, best_check, train_videos, train_patients,
                                      n_boot=n_boot, seed=seed),
        "check_videos": check,
        "rule": f"real baseline: the {len(check)} held-out videos of the check part (split by patient), "
                "not the part that sets the threshold",
    }


def audit_summary(
    heldout_scores: pd.DataFrame,
    synthetic_scores: pd.DataFrame,
    *,
    train_videos: Sequence[str],
    train_patients: Sequence[str],
    heldout_videos: Sequence[str],
    heldout_patients: Sequence[str],
    synthetic_videos: Sequence[str],
    split: CalibrationSplit | None = None,
    clip: object = None,
    percentile: float = 95.0,
    rule: str = DEFAULT_RULE,
    score_column: str = "score",
    roc: pd.DataFrame | None = None,
    embeddings: tuple | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    split_seed: int = 0,
) -> dict:
    """Headline numbers for one synthetic set (see the module docstring).

    ``*_scores``: long tables (query, train_video, train_patient, score, ...) from the engine.
    ``train_patients`` / ``heldout_patients``: the patient of each listed video (coverage
    at patient level, and the by-patient split that gives the real baseline; ``split_seed``
    seeds :func:`calibration.calibration_split`).
    ``split``: the workspace's calibration / check split of the held-out videos: the
    threshold is set on its calibration part and its false-flag rate measured on its check
    part (the real baseline of coverage too). None (a workspace built before the split):
    the threshold is set on every held-out video, its false-flag rate and the excess over
    it are "not measured", and coverage takes the split ``split_seed`` makes.
    ``clip``: the clip spec the scores were computed on (named in the threshold sentence).
    ``rule``: the threshold rule of the flags; ``rules`` holds both rules' calibrations,
    each with its measured false-flag rate, for comparison.
    ``score_column``: "score" (the clip score: mean over query frames of each frame's best logit),
    "score_peak" (best single frame pair) or "score_robust" (mean of the top frames).
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
    rules = (rule,) + tuple(r for r in THRESHOLD_RULES if r != rule)
    calibrations = {r: calibrate(held, train_videos=list(train_videos), heldout_videos=list(heldout_videos),
                                 split=split, rule=r, percentile=percentile, clip=clip, n_boot=n_boot, seed=seed)
                    for r in rules}
    cal = calibrations[rule]
    thr = cal.threshold
    flags = flag_videos(syn, thr.value, queries=list(synthetic_videos))
    flagged = flag_summary(flags)
    best_syn = best_matches(syn, queries=list(synthetic_videos))
    best_held = best_matches(held, queries=list(heldout_videos))
    if split is None:
        split = calibration_split(list(heldout_videos), list(heldout_patients), seed=split_seed)
    out = {
        "score_column": score_column,
        "threshold": cal.to_dict(),
        "flags": flagged,
        "excess": excess_over_null(flagged, cal.check),
        "rules": {r: c.to_dict() for r, c in calibrations.items()},
        "top_patients": flags_per_patient(flags).head(10).to_dict(orient="records"),
        "reproduction": reproduction(best_syn, thr.value, list(train_videos), list(train_patients)),
        "coverage": coverage_summary(best_syn, best_held, train_videos=list(train_videos),
                                     train_patients=list(train_patients), check_videos=split.check,
                                     n_boot=max(50, n_boot), seed=seed),
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
