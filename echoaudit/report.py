"""What a meeting sees: the audit tables of a workspace at a chosen threshold, and the
report that writes them out (self-contained HTML with the plotly figures inline, PNG
figures, CSV tables).

The ``*_view`` functions assemble, from a :class:`~echoaudit.workspace.Workspace`, the
tables and numbers one dashboard page shows; the dashboard caches them and
:func:`write_report` writes them, so the screen and the report always agree. They call the
pure functions of ``echoaudit.audit``; no Streamlit here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

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
from echoaudit.audit.coverage import reproduction
from echoaudit.audit.calibration import calibration_split
from echoaudit.audit.recall import coverage_by_group, covered_train_videos, recall_vs_n, recall_vs_threshold
from echoaudit.audit.summary import coverage_summary
from echoaudit.audit.temporal import sample_spread_over_patients, summarise_curves
from echoaudit.errors import EchoAuditError
from echoaudit.fileio import atomic_dir, write_json, write_text

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
    "frame_to_png",
    "thumbnail_data_uri",
    "tile_videos",
    "video_thumbnails",
    "write_report",
    "zip_folder",
    "report_folder",
]

#: The ``set`` label the build gives real held-out videos in temporal / embedding tables.
REAL_SET = "real held-out"


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
    sets = tmp.groupby("id")["set"].first()
    groups = {v: g.sort_values("frame") for v, g in tmp.groupby("id")}
    times = {v: g["time_s"].to_numpy(np.float64) for v, g in groups.items()}
    parts = []
    for measure in ("first", "correlation"):
        curves = {v: g[measure].to_numpy(np.float64) for v, g in groups.items()}
        kind = {v: ("real" if sets[v] == REAL_SET else "synthetic") for v in curves}
        s = summarise_curves(curves, kind, drop_at=drop_at if measure == "first" else 0.5, times=times)
        s.insert(0, "set", s["name"].map(sets))
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
        # interval on probabilities near 1 ran past 1).
        ci = bootstrap((means,), np.mean, n_resamples=2000, method="percentile", random_state=0).confidence_interval
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


# ---------------------------------------------------------------------------------------
# images


def frame_to_png(frame: np.ndarray, size: int | None = 64) -> bytes:
    """PNG bytes of one (H, W) gray frame (float in [0, 1] or uint8), resized to ``size``."""
    from PIL import Image

    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(arr)
    if size is not None:
        img = img.resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail_data_uri(frame: np.ndarray, size: int | None = 64) -> str:
    """``data:image/png;base64,...`` of one frame (for st.column_config.ImageColumn / HTML)."""
    return "data:image/png;base64," + base64.b64encode(frame_to_png(frame, size)).decode()


def tile_videos(videos: Sequence[np.ndarray], captions: Sequence[str], *, tile: int = 224, columns: int = 5,
                caption_px: int = 40, n_frames: int | None = None) -> np.ndarray:
    """Tile several videos into one, side by side, each with a caption band above it.

    Every video is resized to ``tile`` x ``tile`` (real and synthetic the same size) and
    looped to the first video's length (``n_frames`` overrides it): frame t of the result
    shows frame ``t mod T_i`` of video i, so all tiles restart together. Tiles fill rows
    of ``columns``; captions may hold two lines separated by a newline.

    Args:
        videos: list of (T_i, H_i, W_i) float in [0, 1] or uint8.
        captions: one string per video.

    Returns:
        (T, rows * (caption_px + tile), min(n, columns) * tile) uint8, gray.
    """
    from PIL import Image, ImageDraw, ImageFont

    from echoaudit.data.video import resize_frames, to_uint8

    if len(videos) == 0 or len(videos) != len(captions):
        raise ValueError(f"tile_videos needs one caption per video and at least one video; got "
                         f"{len(videos)} videos and {len(captions)} captions")
    T = int(n_frames or len(videos[0]))
    cols = min(columns, len(videos))
    rows = -(-len(videos) // cols)
    cell_h = caption_px + tile
    out = np.zeros((T, rows * cell_h, cols * tile), np.uint8)
    try:
        font = ImageFont.load_default(size=max(10, caption_px // 2 - 4))
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    for i, (v, cap) in enumerate(zip(videos, captions)):
        r, c = divmod(i, cols)
        y, x = r * cell_h, c * tile
        frames = to_uint8(resize_frames(np.asarray(v), (tile, tile)))
        out[:, y + caption_px:y + cell_h, x:x + tile] = frames[np.arange(T) % len(frames)]
        band = Image.new("L", (tile, caption_px), 30)
        ImageDraw.Draw(band).multiline_text((4, 2), str(cap), fill=255, font=font, spacing=1)
        out[:, y:y + caption_px, x:x + tile] = np.asarray(band)[None]
    return out


def video_thumbnails(dataset, names: Sequence[str], *, size: int = 64, frame: str = "middle") -> dict[str, str]:
    """name -> data-URI thumbnail (the middle frame, or the first) of each listed video."""
    out = {}
    for n in names:
        frames = dataset.load(n).frames
        out[n] = thumbnail_data_uri(frames[len(frames) // 2 if frame == "middle" else 0], size)
    return out


# ---------------------------------------------------------------------------------------
# the report


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _rate(check: dict | None) -> str:
    if check is None:
        return "not measured"
    return f"{_pct(check['rate'])} (95 % CI {_pct(check['low'])}-{_pct(check['high'])}), {check['k']} of {check['n']} videos"


def _privacy_numbers(priv: dict, cals: dict, *, moved: bool) -> list[tuple[str, str, str]]:
    """Headline rows of the privacy part: threshold (default rule) with its measured
    false-flag rate, the EchoNet-Synthetic rule beside it, the threshold used when the
    reviewer moved it, flags and the excess over chance at the threshold used."""
    d = cals[DEFAULT_RULE]
    s, ex = priv["summary"], priv["excess"]
    rows = [
        ("Memorization threshold",
         f"{d['logit']:.2f} re-ID logit (probability {d['value']:.6f}; 95 % CI {d['logit_low']:.2f}-{d['logit_high']:.2f})",
         d["sentence"]),
        ("Measured false-flag rate (check patients)", _rate(d["check"]),
         "The share of real videos of patients the threshold never saw that it flags: what the stated "
         f"{100 - d['percentile']:g} % should be."),
    ]
    for rule, c in cals.items():
        if rule != DEFAULT_RULE:
            rows.append((f"{RULE_NAMES[rule]} (for comparison)",
                         f"{c['logit']:.2f} re-ID logit; measured false-flag rate {_rate(c['check'])}", c["sentence"]))
    if moved:
        rows.append(("Threshold used", f"{priv['logit']:.2f} re-ID logit (probability {priv['threshold']:.6f})",
                     "The reviewer moved the threshold; at it the real false-flag rate measured on check patients is "
                     f"{_rate(priv['check'])}."))
    rows += [
        ("Flagged synthetic videos",
         f"{s['n_flagged']} of {s['n_videos']} = {_pct(s['share'])} (95 % CI {_pct(s['low'])}-{_pct(s['high'])})",
         f"{s['n_flagged']} synthetic videos look so much like a training patient that the re-identification "
         "model scores them at or above the threshold; they should be removed before sharing."),
        ("Excess over chance",
         "not measured" if not ex["measured"] else
         f"{ex['videos']:.1f} videos = {_pct(ex['excess'])} (95 % CI {_pct(ex['low'])} to {_pct(ex['high'])})",
         ex["sentence"]),
        ("Patients re-identified", f"{len(priv['per_patient'])}",
         "Number of distinct training patients that at least one flagged synthetic video points to."),
    ]
    return rows


def _numbers(ws, priv: dict, cov: dict, temp: dict, auc: dict | None, thr) -> list[tuple[str, str, str]]:
    """(name, value with interval, plain sentence for a clinician) per headline number
    after the privacy ones (:func:`_privacy_numbers`)."""
    rows = []
    rep = cov.get("reproduction")
    if rep is not None:
        rv, rp = rep["video"], rep["patient"]
        rows.append((
            "Training patients / videos reproduced (privacy)",
            f"{rp['matched']} of {rp['n_train']} patients = {_pct(rp['share'])} (95 % CI {_pct(rp['low'])}-"
            f"{_pct(rp['high'])}); {rv['matched']} of {rv['n_train']} videos = {_pct(rv['share'])} (95 % CI "
            f"{_pct(rv['low'])}-{_pct(rv['high'])})",
            "Training patients (and videos) that at least one synthetic video re-identifies at or above the privacy "
            "threshold: what leaks, counted per person. A privacy number, not coverage."))
    c = cov["coverage"]
    for level, unit in (("patient", "patients"), ("video", "videos")):
        cs, cr, adj = c["synthetic"][level], c["real"][level], c["adjusted"][level]
        rows.append((
            f"Coverage, {level} level (synthetic)",
            f"{cs['matched']} of {cs['n_train']} {unit} = {_pct(cs['share'])} (95 % CI {_pct(cs['low'])}-"
            f"{_pct(cs['high'])}), {cs['n_queries']} synthetic videos",
            f"Training {unit} that are the closest match of at least one synthetic video (no threshold, the paper's "
            "rule): how much of the training variety the generator makes."))
        if cs["limit"] is not None:
            rows.append((
                f"Coverage limit, {level} level (synthetic)",
                f"{_pct(cs['limit'])} (95 % CI {_pct(cs['limit_low'])}-{_pct(cs['limit_high'])})",
                f"With unlimited samples the generator would reach about {cs['s_hat']} of {cs['n_train']} training "
                f"{unit} (occupancy estimate: each sample a fresh draw over what it has learned)."))
        rows.append((
            f"Coverage, {level} level (real held-out, check patients)",
            f"{cr['matched']} of {cr['n_train']} {unit} = {_pct(cr['share'])} (95 % CI {_pct(cr['low'])}-"
            f"{_pct(cr['high'])}), {cr['n_queries']} real videos",
            "The same rule on real videos of patients that did not set the threshold: what new real data reaches."))
        rows.append((
            f"Adjusted coverage, {level} level (synthetic / real)",
            f"{adj['value']:.2f} (95 % CI {adj['low']:.2f}-{adj['high']:.2f}) at n = {adj['n_star']} videos each",
            f"Coverage the generator would reach with {adj['n_star']} videos divided by what {adj['n_star']} real "
            "videos reach (occupancy model, every synthetic video used): 1 = covers the training set like new real "
            "data, 0.5 = half as much."))
    if auc:
        rows.append(("Re-ID model AUC", f"{auc['value']:.3f} (95 % CI {auc['low']:.3f}-{auc['high']:.3f})",
                     "How well the re-identification model tells frames of the same patient from different patients "
                     "(1 = perfect, 0.5 = chance), on held-out patients."))
    for set_name, label in ((REAL_SET, "real held-out"), (cov["synthetic"], f"synthetic ({cov['synthetic']})")):
        tn = temporal_set_numbers(temp["summary"], set_name)
        if tn is None:
            continue
        ci = "" if not np.isfinite(tn["low"]) else f" (95 % CI {tn['low']:.3f}-{tn['high']:.3f})"
        drop = ("none" if tn["n_dropped"] == 0 else
                f"{tn['n_dropped']} of {tn['n_videos']}, median after {tn['median_drop_s']:.2f} s")
        rows.append((f"Temporal consistency, {label} (mean)", f"{tn['mean']:.3f}{ci} over {tn['n_videos']} videos",
                     f"Average probability that a later frame of a {label} video still shows the patient of its "
                     "first frame (the first frame itself left out); this set's videos only."))
        rows.append((f"Videos drifting to another identity, {label}", drop,
                     "Videos whose same-patient probability against their first frame falls below 0.5, and when "
                     "(seconds from the start)."))
    return rows


def _figures(ws, priv, cov, temp, auc) -> dict:
    from echoaudit import figures as F

    t = priv["threshold"]
    figs = {
        "score_histograms": F.score_histograms(priv["heldout_best"]["score"], priv["synthetic_best"]["score"], t,
                                               synthetic_label=f"synthetic ({priv['synthetic']})"),
        "reproduction_vs_threshold": F.recall_threshold_figure(
            {f"synthetic ({priv['synthetic']})": recall_vs_threshold(
                priv["synthetic_best"], cov["n_train"],
                threshold_grid(priv["synthetic_best"]["score"].to_numpy(np.float64), [t]))}, t),
        "recall_vs_n": F.recall_n_figure(cov["vs_n"], cov["n_train"], learned=cov["learned"]),
        "coverage_by_ef": F.coverage_bars(cov["by_ef"], by_label="EF bin (%)"),
        "coverage_by_view": F.coverage_bars(cov["by_view"], by_label="view"),
    }
    roc = ws.reid_roc
    if auc:
        figs["reid_roc"] = F.roc_figure(roc["label"], roc["score"], auc)
    try:
        coords = F.pca_coordinates(ws.video_embeddings)
        figs["coverage_map"] = F.coverage_map(coords, cov["covered"], priv["synthetic"])
    except EchoAuditError:
        pass
    summ = temp["summary"]
    if not summ.empty:
        # This report's set and the real one only: other synthetic sets are other reports.
        sets = {REAL_SET, priv["synthetic"]}
        first = summ[(summ["measure"] == "first") & summ["set"].isin(sets)]
        curves = temp["curves"]
        shown = [v for s_ in sorted(sets) for v in sorted(curves.loc[curves["set"] == s_, "id"].unique())[:4]]
        figs["temporal_curves"] = F.temporal_curves_figure(curves, shown, "first")
        figs["temporal_mean"] = F.temporal_distribution_figure(first, "mean", "mean same-patient probability vs frame 0 (later frames)")
        figs["temporal_min"] = F.temporal_distribution_figure(first, "min", "minimum same-patient probability vs frame 0 (later frames)")
    return figs


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.note{color:#555}"""


def _table_html(df: pd.DataFrame, max_rows: int = 50) -> str:
    return df.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)


def write_report(ws, out_dir: str | Path, *, percentile: float = 95.0, synthetic: str | None = None,
                 threshold: float | None = None, png: bool = True,
                 progress: Callable[[float, str], None] | None = None) -> dict[str, Path]:
    """Write the meeting report of one synthetic set into ``out_dir`` (atomically, whole).

    Contents: ``report.html`` (self-contained: plotly.js inline once, every number with its
    interval and one plain sentence, settings, model fingerprints), ``figures/<name>.png``
    (kaleido; skipped with a note in the HTML and ``png_error`` in the result if it fails),
    ``tables/*.csv`` (flags, unflagged list, per-patient leaks, coverage, temporal),
    ``summary.json``.

    Args:
        ws: an opened Workspace.
        out_dir: the folder to create (replaced if it exists).
        percentile: calibration percentile of the threshold (95 = the published 5 % rule).
        synthetic: which synthetic set (default: the first).
        threshold: use this threshold value instead of the calibrated one (the dashboard's slider).
        png: also write PNG figures.
        progress: optional callback (fraction, message).

    Returns:
        dict name -> Path of everything written (``html``, ``summary``, ``zip``-ready
        ``folder``, ``table_<name>``, ``figure_<name>``), plus ``png_error`` (str) if any.
    """
    from echoaudit import figures as F  # noqa: F401  (import errors surface before writing)

    def say(f, m):
        if progress is not None:
            progress(f, m)

    out_dir = Path(out_dir)
    name = _synthetic_name(ws, synthetic)
    say(0.05, "calibrating the threshold")
    cal_view = calibration_view(ws, percentile=percentile)
    cals = cal_view["rules"]
    thr = ws.threshold(percentile)
    t = float(thr.value if threshold is None else threshold)
    priv = privacy_view(ws, name, t)
    say(0.2, "coverage")
    cov = coverage_view(ws, name)
    train = train_table(ws)
    cov["reproduction"] = reproduction(priv["synthetic_best"], t, train["train_video"].tolist(),
                                       train["train_patient"].tolist())
    temp = temporal_view(ws)
    auc = reid_auc(ws)
    say(0.35, "published conventions (first frames)")
    conv = conventions_view(ws, name, percentile=percentile)
    figs = _figures(ws, priv, cov, temp, auc)
    numbers = _privacy_numbers(priv, cals, moved=threshold is not None) + _numbers(ws, priv, cov, temp, auc, thr)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    flags = priv["flags"].copy()
    flags.insert(flags.columns.get_loc("score"), "logit", to_logit(flags["score"].to_numpy()))
    tables = {
        "flags": flags,
        "unflagged": pd.DataFrame({"video": priv["unflagged"]}),
        "per_patient": priv["per_patient"].assign(train_videos=lambda d: d["train_videos"].map(" ".join),
                                                  max_logit=lambda d: to_logit(d["max_score"].to_numpy(np.float64))),
        "coverage_training_videos": cov["covered"],
        "coverage_by_ef": cov["by_ef"],
        "coverage_by_view": cov["by_view"],
        "temporal_summary": temp["summary"],
        "models": ws.models_info(),
    }
    if conv is not None:
        tables["conventions"] = conv["table"]
    summary = {
        "created": created, "workspace": str(ws.root), "synthetic": name, "percentile": percentile,
        "threshold": cals[DEFAULT_RULE] | {"used": t, "used_logit": to_logit(t)}, "rules": cals,
        "check_at_threshold": priv["check"], "excess": priv["excess"], "flags": priv["summary"],
        "coverage": {k: v for k, v in cov["coverage"].items() if k != "check_videos"},
        "reproduction": cov["reproduction"], "reid_auc": auc,
        "temporal": {set_name: temporal_set_numbers(temp["summary"], set_name) for set_name in (REAL_SET, name)},
        "numbers": [{"name": a, "value": b, "sentence": c} for a, b, c in numbers],
        "conventions": None if conv is None else {
            "rule": conv["rule"], "modes": {k: {f: v for f, v in m.items() if f != "best"} for k, m in conv["modes"].items()}},
        "index": ws.manifest.get("index", {}), "engine": ws.manifest.get("engine", {}),
    }

    written: dict[str, Path] = {}
    png_error = None
    with atomic_dir(out_dir) as tmp:
        for key, df in tables.items():
            p = tmp / "tables" / f"{key}.csv"
            p.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(p, index=False)
            written[f"table_{key}"] = out_dir / "tables" / p.name
        if png:
            say(0.5, "PNG figures (kaleido)")
            (tmp / "figures").mkdir(exist_ok=True)
            try:
                import plotly.io as pio

                keys = list(figs)
                pio.write_images([figs[k] for k in keys], [tmp / "figures" / f"{k}.png" for k in keys],
                                 width=900, height=500)
                written.update({f"figure_{k}": out_dir / "figures" / f"{k}.png" for k in keys})
            except Exception as exc:  # noqa: BLE001 - kaleido/Chromium missing or broken: keep HTML/CSV
                png_error = f"PNG figures were not written: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        say(0.8, "HTML")
        write_text(tmp / "report.html", _html(ws, name, numbers, figs, tables, summary, png_error, created, conv))
        written["html"] = out_dir / "report.html"
        write_json(tmp / "summary.json", summary | {"png_error": png_error})
        written["summary"] = out_dir / "summary.json"
    written["folder"] = out_dir
    if png_error:
        written["png_error"] = png_error  # type: ignore[assignment]
    say(1.0, "report written")
    return written


def _html(ws, name, numbers, figs, tables, summary, png_error, created, conv=None) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>EchoAudit report: {html.escape(name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>EchoAudit report: synthetic set <code>{html.escape(name)}</code></h1>",
             f"<p class='note'>Written {created} from workspace <code>{html.escape(str(ws.root))}</code>.</p>",
             "<h2>Headline numbers</h2><table><tr><th>number</th><th>value (95 % interval)</th><th>what it means</th></tr>"]
    for a, b, c in numbers:
        parts.append(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>")
    parts.append("</table>")
    if png_error:
        parts.append(f"<p class='note'>{html.escape(png_error)}</p>")
    parts.append("<h2>Figures</h2>")
    first = True
    for key, fig in figs.items():
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if first else False, div_id=f"fig-{key}"))
        first = False
    parts.append("<h2>Flagged synthetic videos</h2>")
    flagged = tables["flags"][tables["flags"]["flagged"]]
    parts.append(_table_html(flagged) if len(flagged) else "<p>None at this threshold.</p>")
    parts.append("<h2>Training patients re-identified</h2>")
    parts.append(_table_html(tables["per_patient"]) if len(tables["per_patient"]) else "<p>None.</p>")
    if conv is not None:
        parts.append("<h2>Published conventions (first frame only)</h2>"
                     "<p>The same synthetic set under the rules of the authors' notebooks (MischaD/UltrasoundPrivacy) "
                     "and of EchoNet-Synthetic, beside EchoAudit's whole-video rule. "
                     f"{html.escape(conv['rule'])}</p>" + _table_html(conv["table"]))
    parts.append("<h2>Coverage by EF and view</h2>" + _table_html(tables["coverage_by_ef"]) + _table_html(tables["coverage_by_view"]))
    parts.append("<h2>Models (fingerprints)</h2>" + _table_html(tables["models"]))
    settings = {"threshold": summary["threshold"], "engine": summary["engine"],
                "index": {k: v for k, v in summary["index"].items() if k != "path"},
                "build": ws.manifest.get("build", {}), "data": ws.manifest.get("data", {})}
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(settings, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def zip_folder(folder: str | Path) -> bytes:
    """The bytes of a zip of every file under ``folder`` (paths relative to it)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


def report_folder(ws) -> Path:
    """``<workspace>/reports/<UTC timestamp>``, a new name each second."""
    return ws.root / "reports" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
