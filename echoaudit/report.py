"""What a meeting sees: the audit tables of a workspace at a chosen threshold.

The ``*_view`` functions assemble, from a :class:`~echoaudit.workspace.Workspace`, the
tables and numbers one dashboard page shows; the dashboard caches them and
:func:`echoaudit.report_files.write_report` writes them, so the screen and the report
always agree. They call the pure functions of ``echoaudit.audit``; no Streamlit here.
Thumbnails and tiled videos: :mod:`echoaudit.media`.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from echoaudit.audit.privacy import (
    DEFAULT_RULE,
    RULE_NAMES,
    THRESHOLD_RULES,
    best_matches,
    calibration_scores,
    filtered_list,
    flag_summary,
    flag_videos,
    flags_per_patient,
)
from echoaudit.audit.calibration import excess_over_null, false_flag_rate, percentile_of_threshold
from echoaudit.audit.scale import from_logit, logit_range, to_logit
from echoaudit.audit.calibration import calibration_split
from echoaudit.audit.recall import coverage_by_group, covered_train_videos, recall_vs_n
from echoaudit.audit.summary import coverage_summary
from echoaudit.audit.temporal import sample_spread_over_patients, summarise_segments
from echoaudit.errors import EchoAuditError

__all__ = [
    "REAL_SET",
    "train_table",
    "calibration_view",
    "privacy_view",
    "reid_auc",
    "coverage_view",
    "temporal_view",
    "temporal_set_numbers",
    "conventions_view",
    "threshold_grid",
]

#: The ``set`` label the build gives real held-out videos in temporal / embedding tables.
REAL_SET = "real held-out"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def threshold_grid(*probabilities, n: int = 61) -> np.ndarray:
    """(n,) probabilities evenly spaced on the re-ID logit scale over
    :func:`~echoaudit.audit.scale.logit_range` of the given ones (half-unit padding):
    where a 0-1 grid would put one point in the last half percent, this spreads them
    over the scores that occur."""
    lo, hi = logit_range(*probabilities, pad=0.5, step=0.5)
    return from_logit(np.linspace(lo, hi, int(n)))


def _synthetic_name(ws, synthetic: str | None) -> str:
    names = ws.synthetic_names
    if not names:
        raise EchoAuditError(f"workspace {ws.root} has no synthetic set to audit; build one with `echoaudit demo`")
    if synthetic is None:
        return names[0]
    if synthetic not in names:
        raise EchoAuditError(f"no synthetic set {synthetic!r} in this workspace; it has: {', '.join(names)}")
    return synthetic


def train_table(ws) -> pd.DataFrame:
    """Training videos: train_video, train_patient, EF (%), View (one row per video)."""
    t = ws.train.table
    return pd.DataFrame({"train_video": t["FileName"].astype(str), "train_patient": t["PatientID"].astype(str),
                         "EF": t["EF"].astype(float), "View": t["View"].astype(str)})


# ---------------------------------------------------------------------------------------
# the tables behind each page


def calibration_view(ws, synthetic: str | None = None, *, percentile: float = 95.0, n_boot: int = 500,
                     seed: int = 0) -> dict:
    """The calibrated thresholds of every rule and the slider's logit range.

    Returns a dict: ``default`` (the default rule's name), ``rules`` (rule -> its
    :class:`~echoaudit.audit.calibration.Calibration` as a dict: value, logit, bootstrap
    interval, measured false-flag rate ``check`` (None: not measured), ``sentence``),
    ``table`` (one row per rule for the page: rule, logit, probability, stated and measured
    false-flag rates), and ``range`` ((lo, hi) in logit units holding every held-out and
    (when given) synthetic best score and both thresholds, see
    :func:`~echoaudit.audit.scale.logit_range`).
    """
    cals = {r: ws.calibration(percentile, r, n_boot=n_boot, seed=seed) for r in THRESHOLD_RULES}
    rules = {r: c.to_dict() for r, c in cals.items()}
    values = [best_matches(ws.heldout_scores, queries=ws.heldout.names)["score"].to_numpy()]
    if synthetic is not None:
        name = _synthetic_name(ws, synthetic)
        values.append(best_matches(ws.synthetic_scores(name), queries=ws.synthetic(name).names)["score"].to_numpy())
    rows = []
    for r, d in rules.items():
        chk = d["check"]
        rows.append({
            "rule": RULE_NAMES[r] + (" (default)" if r == DEFAULT_RULE else ""),
            "threshold (re-ID logit)": d["logit"], "probability": d["value"],
            "stated false-flag rate (%)": 100.0 - d["percentile"],
            "measured on check patients (%)": None if chk is None else 100 * chk["rate"],
            "95 % Wilson interval (%)": "not measured" if chk is None
            else f"{100 * chk['low']:.1f} to {100 * chk['high']:.1f} ({chk['k']} of {chk['n']} videos)",
        })
    return {"default": DEFAULT_RULE, "rules": rules, "table": pd.DataFrame(rows),
            "range": logit_range(*values, [d["value"] for d in rules.values()])}


def privacy_view(ws, synthetic: str | None, threshold: float, *, score_column: str = "score") -> dict:
    """Privacy numbers at threshold ``threshold`` (a probability) for one synthetic set.

    Returns a dict: ``synthetic`` (set name), ``threshold``, ``logit`` (the threshold as a
    re-ID logit), ``percentile`` (share in % of the calibration videos' best scores below
    it), ``calibration`` (Series: each calibration video's best score against the training
    set, the default rule's statistic), ``check`` (false_flag_rate at the threshold on the
    check patients, or None when the workspace has no check part), ``excess``
    (excess_over_null: flagged share minus that rate, with its interval and sentence),
    ``heldout_best`` / ``synthetic_best`` (best_matches tables, probabilities),
    ``flags`` (flag_videos), ``summary`` (flag_summary: n_flagged, share, Wilson
    low/high), ``per_patient`` (flags_per_patient), ``unflagged`` (names passing the filter).
    """
    name = _synthetic_name(ws, synthetic)
    held = ws.heldout_scores.assign(score=lambda d: d[score_column])
    syn = ws.synthetic_scores(name).assign(score=lambda d: d[score_column])
    syn_names = ws.synthetic(name).names
    split = ws.calibration_split
    cal_videos = list(split.calibration) if split is not None else ws.heldout.names
    calib = calibration_scores(held[held["query"].astype(str).isin(set(cal_videos))], rule=DEFAULT_RULE,
                               train_videos=ws.train.names, heldout_videos=cal_videos)
    check = (false_flag_rate(held, float(threshold), videos=list(split.check), n_patients=len(split.check_patients))
             if split is not None and split.check else None)
    flags = flag_videos(syn, float(threshold), queries=syn_names)
    summary = flag_summary(flags)
    return {
        "synthetic": name,
        "threshold": float(threshold),
        "logit": to_logit(float(threshold)),
        "percentile": percentile_of_threshold(float(threshold), calib.to_numpy()),
        "calibration": calib,
        "check": check,
        "excess": excess_over_null(summary, check),
        "heldout_best": best_matches(held, queries=ws.heldout.names),
        "synthetic_best": best_matches(syn, queries=syn_names),
        "flags": flags,
        "summary": summary,
        "per_patient": flags_per_patient(flags),
        "unflagged": filtered_list(flags),
    }


def reid_auc(ws, *, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """ROC AUC of the re-ID head on held-out pairs with a stratified bootstrap interval."""
    from echoaudit.audit.intervals import bootstrap_auc

    roc = ws.reid_roc
    if roc.empty or roc["label"].nunique() < 2:
        return None
    auc, low, high = bootstrap_auc(roc["label"].to_numpy(), roc["score"].to_numpy(), n_boot=n_boot, seed=seed)
    return {"value": auc, "low": low, "high": high, "n_pairs": len(roc),
            "rule": f"ROC AUC on {len(roc)} held-out frame pairs, stratified bootstrap {n_boot}x, 95 %"}


def _check_videos(ws) -> list[str]:
    """The real baseline's videos: the check part of the workspace's calibration split
    (the same split as the privacy check); for a workspace without one, the same
    :func:`~echoaudit.audit.calibration.calibration_split` (seed 0) of its held-out videos."""
    split = ws.calibration_split
    if split is None:
        split = calibration_split(ws.heldout.names, list(ws.heldout.patients), seed=0)
    return list(split.check)


def coverage_view(ws, synthetic: str | None, *, n_rep: int = 20, n_boot: int = 500, seed: int = 0) -> dict:
    """Coverage numbers for one synthetic set (no threshold: the paper's best-match rule).

    Returns a dict: ``synthetic``, ``n_train`` (videos), ``coverage``
    (:func:`~echoaudit.audit.summary.coverage_summary`: ``synthetic`` and ``real`` coverage at
    video and patient level with the occupancy limit, ``adjusted`` synthetic / real at equal
    n with its bootstrap interval, ``check_videos``), ``vs_n`` (label -> recall_vs_n table),
    ``learned`` (the synthetic set's video-level limit for the recall-vs-n figure, or
    None), ``covered`` (covered_train_videos), ``by_ef`` / ``by_view`` (coverage_by_group).
    """
    name = _synthetic_name(ws, synthetic)
    syn_names = ws.synthetic(name).names
    best_syn = best_matches(ws.synthetic_scores(name), queries=syn_names)
    check = _check_videos(ws)
    held = ws.heldout_scores
    best_check = best_matches(held[held["query"].astype(str).isin(set(check))], queries=check)
    train = train_table(ws)
    cov = coverage_summary(best_syn, best_check, train_videos=train["train_video"].tolist(),
                           train_patients=train["train_patient"].tolist(), check_videos=check, n_boot=n_boot,
                           seed=seed)
    n_train = len(train)
    vs_n = {}
    for label, best in {f"synthetic ({name})": best_syn, "real held-out (check)": best_check}.items():
        m = len(best)
        n_values = sorted({int(v) for v in np.unique(np.round(np.geomspace(1, m, min(m, 12))))})
        vs_n[label] = recall_vs_n(best, n_train, n_values, None, n_rep=n_rep, seed=seed)
    v = cov["synthetic"]["video"]
    learned = None if v["limit"] is None else {
        "recall_limit": v["limit"], "recall_low": v["limit_low"], "recall_high": v["limit_high"],
        "s_hat": v["s_hat"], "N": v["n_train"], "rule": v["limit_rule"]}
    covered = covered_train_videos(best_syn, train, None)
    return {
        "synthetic": name,
        "n_train": n_train,
        "coverage": cov,
        "vs_n": vs_n,
        "learned": learned,
        "covered": covered,
        "by_ef": coverage_by_group(covered, "ef_bin"),
        "by_view": coverage_by_group(covered, "View"),
    }


def _fps_of(ws, set_name: str) -> pd.Series:
    """FileName -> FPS of the videos of one set (the real held-out set or a synthetic one)."""
    ds = ws.heldout if set_name == REAL_SET else ws.synthetic(set_name)
    t = ds.table
    return pd.Series(pd.to_numeric(t["FPS"], errors="coerce").to_numpy(np.float64), index=t["FileName"].astype(str))


def temporal_view(ws, *, drop_at: float = 0.5, n_real: int = 48, seed: int = 0) -> dict:
    """Per-video consistency in seconds, real held-out vs each synthetic set.

    Real curves: a seeded sample of at most ``n_real`` held-out videos spread over patients
    (:func:`temporal.sample_spread_over_patients`) among those with curves. Times: the
    stored frame numbers over each video's FPS (its FileList), so sets of different
    rates share one axis in seconds.

    Returns a dict: ``curves`` (the long temporal table: set, video, frame, first,
    correlation, plus ``id`` = "set / video" and ``time_s``) and ``summary`` (one row per
    video and measure: set, name (the id), kind, measure, n_frames, mean and min over
    frames after the first, first_drop (position), drop_s (seconds); see
    :func:`temporal.summarise_curves`).
    """
    tmp = ws.temporal
    if tmp.empty:
        return {"curves": tmp, "summary": pd.DataFrame()}
    tmp = tmp.assign(set=tmp["set"].astype(str), video=tmp["video"].astype(str))
    real = tmp[tmp["set"] == REAL_SET]
    if not real.empty:
        have = sorted(set(real["video"]))
        patient_of = dict(zip(ws.heldout.names, ws.heldout.patients))
        keep = set(sample_spread_over_patients(have, [patient_of.get(v, v) for v in have], n_real, seed=seed))
        tmp = tmp[(tmp["set"] != REAL_SET) | tmp["video"].isin(keep)]
    fps = pd.Series(np.nan, index=tmp.index)
    for set_name, part in tmp.groupby("set"):
        try:
            fps.loc[part.index] = part["video"].map(_fps_of(ws, set_name)).to_numpy(np.float64)
        except EchoAuditError:
            pass  # a set the manifest no longer lists: its times stay unknown
    if fps.isna().any() or (fps <= 0).any():
        bad = tmp.loc[fps.isna() | (fps <= 0), "set"].unique().tolist()
        raise EchoAuditError(f"no frame rate (FileList FPS) for the temporal curves of {bad}; "
                             "rewrite those FileLists with an FPS column")
    # Synthetic sets may reuse video names (SYN_0_0000 in each): key curves by set and video.
    tmp = tmp.assign(id=tmp["set"] + " / " + tmp["video"], time_s=tmp["frame"].to_numpy(np.float64) / fps.to_numpy())
    # Curves end to end, each in frame order: one pass per measure over every video
    # (10,000-video sets), rather than one DataFrame per video.
    flat = tmp.sort_values(["id", "frame"], kind="mergesort")
    ids = flat["id"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    names = ids[starts].tolist()
    sets = pd.Series(flat["set"].to_numpy(dtype=object)[starts], index=names)
    kinds = ["real" if s_ == REAL_SET else "synthetic" for s_ in sets]
    parts = []
    for measure in ("first", "correlation"):
        s = summarise_segments(names, kinds, flat[measure].to_numpy(np.float64), starts,
                               drop_at=drop_at if measure == "first" else 0.5, times=flat["time_s"].to_numpy(np.float64))
        s.insert(0, "set", s["name"].map(sets).astype(str))
        s.insert(3, "measure", measure)
        parts.append(s)
    return {"curves": tmp.reset_index(drop=True), "summary": pd.concat(parts, ignore_index=True)}


def temporal_set_numbers(summary: pd.DataFrame, set_name: str, measure: str = "first") -> dict | None:
    """Numbers of one set only: its videos' mean consistency (frames after the first),
    with a normal 95 % interval over videos, and how many drop below the level and when.

    Returns None when the set has no curve; else a dict ``set``, ``n_videos``, ``mean``,
    ``low``, ``high``, ``n_dropped``, ``median_drop_s`` (NaN when none drops), ``rule``.
    """
    if summary.empty:
        return None
    part = summary[(summary["set"] == set_name) & (summary["measure"] == measure)]
    means = part["mean"].dropna().to_numpy(np.float64)
    if means.size == 0:
        return None
    low = high = float("nan")
    if means.size > 1 and np.ptp(means) > 0:
        from scipy.stats import bootstrap

        # Percentile bootstrap over videos: stays inside the scores' own range (a normal
        # interval on probabilities near 1 ran past 1). Resamples in batches of 200: at
        # 10,000 videos 0.3 s instead of 1.1 s, the same interval.
        ci = bootstrap((means,), np.mean, n_resamples=2000, method="percentile", random_state=0,
                       batch=200).confidence_interval
        low, high = float(ci.low), float(ci.high)
    elif means.size > 1:
        low = high = float(means[0])
    drops = part["drop_s"].dropna().to_numpy(np.float64)
    return {"set": set_name, "n_videos": int(means.size), "mean": float(means.mean()), "low": low, "high": high,
            "n_dropped": int(drops.size), "median_drop_s": float(np.median(drops)) if drops.size else float("nan"),
            "rule": f"mean over {means.size} videos of each video's mean after its first frame; percentile "
                    "bootstrap 95 % interval over videos"}


def conventions_view(ws, synthetic: str | None, *, percentile: float = 95.0, conf: float = 0.95,
                     max_head_pairs: int = 200_000_000) -> dict | None:
    """The published first-frame conventions beside the project's whole-video rule.

    Runs :func:`~echoaudit.audit.conventions.compare_modes` on the first-frame embeddings
    the build stored (``Workspace.first_frames``): thresholds set on the calibration
    patients' held-out videos, false-flag rates measured on the check patients' (every
    held-out video sets the threshold, and no rate is measured, in a workspace without a
    split). The notebooks mode scores with the re-ID head's logit against every indexed
    training frame; EchoNet-Synthetic's with the Pearson correlation against each training
    video's first frame.

    Returns None when the workspace stores no first frames for the held-out set or this
    synthetic set (built before they were stored). Else a dict: ``synthetic``,
    ``percentile``, ``modes`` (mode -> compare_modes result with ``scale``, the unit of
    its ``threshold``: "re-ID logit" or "Pearson correlation"; first ``"echoaudit"``, the
    default rule on whole videos), ``table`` (one row per
    mode for the report), ``rule`` (one sentence on how the rows were made).
    """
    name = _synthetic_name(ws, synthetic)
    held, syn = ws.first_frames("heldout"), ws.first_frames(name)
    if held is None or syn is None:
        return None
    from echoaudit.audit.conventions import compare_modes

    held_names, held_emb = held
    row_of = {v: i for i, v in enumerate(held_names)}
    split = ws.calibration_split
    cal_videos = [v for v in (split.calibration if split is not None else held_names) if v in row_of]
    check_videos = [v for v in (split.check if split is not None else []) if v in row_of]
    meta = ws.index.metadata
    train_emb = ws.engine.train_embeddings
    first = (meta["frame"].to_numpy() == 0)
    modes = compare_modes(
        train_emb=train_emb, train_videos=meta["video"].astype(str).tolist(),
        train_first=train_emb[first], train_first_videos=meta.loc[first, "video"].astype(str).tolist(),
        calibration_first=held_emb[[row_of[v] for v in cal_videos]],
        check_first=held_emb[[row_of[v] for v in check_videos]] if check_videos else None,
        synthetic_first=syn[1], synthetic_names=syn[0], head=ws.head_logits, percentile=percentile, conf=conf,
        max_head_pairs=max_head_pairs)
    cal = ws.calibration(percentile)
    flags = flag_summary(flag_videos(ws.synthetic_scores(name), cal.value, queries=ws.synthetic(name).names), conf)
    chk = cal.check
    own = {"mode": "echoaudit", "description": f"re-ID head, every queried frame of the whole clip "
                                               f"({RULE_NAMES[DEFAULT_RULE]}, EchoAudit's default)",
           "score": "re-ID head", "threshold": to_logit(cal.value), "percentile": percentile,
           "n_calibration": cal.threshold.n, "skipped": None, "best": None,
           "flagged": {"k": flags["n_flagged"], "n": flags["n_videos"], "share": flags["share"], "low": flags["low"],
                       "high": flags["high"]},
           "check": None if chk is None else {"k": chk["k"], "n": chk["n"], "share": chk["rate"], "low": chk["low"],
                                              "high": chk["high"]}}
    modes = {"echoaudit": own, **modes}
    rows = []
    for m in modes.values():
        m["scale"] = "re-ID logit" if m["score"] == "re-ID head" else m["score"]  # ws.head_logits: logits
        tau, f, c = m["threshold"], m["flagged"], m["check"]
        if tau is None:
            shown = f"skipped: {m['skipped']}"
        elif m["scale"] == "re-ID logit":
            shown = f"{tau:.2f} re-ID logit (p = {from_logit(tau):.6f})"
        else:
            shown = f"{tau:.4f} correlation"
        rows.append({
            "mode": m["mode"], "how a video is scored": m["description"], "threshold": shown,
            "set on (videos)": m["n_calibration"],
            "flagged synthetic videos": "" if f is None else
            f"{f['k']} of {f['n']} = {_pct(f['share'])} (95 % CI {_pct(f['low'])}-{_pct(f['high'])})",
            "false-flag rate on check patients": "" if tau is None else "not measured" if c is None else
            f"{c['k']} of {c['n']} = {_pct(c['share'])} (95 % CI {_pct(c['low'])}-{_pct(c['high'])})",
        })
    where = ("the calibration patients' held-out videos; false-flag rates on the check patients' videos"
             if split is not None else "every held-out video (no calibration / check split: rates not measured)")
    return {"synthetic": name, "percentile": percentile, "modes": modes, "table": pd.DataFrame(rows),
            "rule": f"Each threshold is the {percentile:g}th percentile of its rule's statistic on {where}. The "
                    "published modes score the first frame of each video only; EchoAudit scores every queried frame "
                    "of the whole clip."}
