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
    best_matches, calibration_scores, filtered_list, flag_summary, flag_videos, flags_per_patient,
    percentile_of_threshold,
)
from echoaudit.audit.recall import (
    coverage_by_group, covered_train_videos, recall_vs_n, recall_vs_threshold, recall_with_baseline,
)
from echoaudit.audit.summary import learned_estimate
from echoaudit.audit.temporal import summarise_curves
from echoaudit.errors import EchoAuditError
from echoaudit.fileio import atomic_dir, write_json, write_text

__all__ = [
    "REAL_SET",
    "train_table",
    "privacy_view",
    "reid_auc",
    "coverage_view",
    "temporal_view",
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
THRESHOLD_GRID = np.round(np.linspace(0.0, 1.0, 51), 4)


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


def privacy_view(ws, synthetic: str | None, threshold: float, *, score_column: str = "score") -> dict:
    """Privacy numbers at threshold ``threshold`` for one synthetic set.

    Returns a dict: ``synthetic`` (set name), ``threshold``, ``percentile`` (share in % of
    the calibration best scores below it; 100 - it = % of real unseen videos flagged),
    ``calibration`` (Series: each training video's best score against held-out videos),
    ``heldout_best`` / ``synthetic_best`` (best_matches tables), ``flags`` (flag_videos),
    ``summary`` (flag_summary: n_flagged, share, Wilson low/high), ``per_patient``
    (flags_per_patient), ``unflagged`` (names passing the filter).
    """
    name = _synthetic_name(ws, synthetic)
    held = ws.heldout_scores.assign(score=lambda d: d[score_column])
    syn = ws.synthetic_scores(name).assign(score=lambda d: d[score_column])
    syn_names = ws.synthetic(name).names
    calib = calibration_scores(held, train_videos=ws.train.names, heldout_videos=ws.heldout.names)
    flags = flag_videos(syn, float(threshold), queries=syn_names)
    return {
        "synthetic": name,
        "threshold": float(threshold),
        "percentile": percentile_of_threshold(float(threshold), calib.to_numpy()),
        "calibration": calib,
        "heldout_best": best_matches(held, queries=ws.heldout.names),
        "synthetic_best": best_matches(syn, queries=syn_names),
        "flags": flags,
        "summary": flag_summary(flags),
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


def coverage_view(ws, synthetic: str | None, threshold: float | None, *, n_rep: int = 20, seed: int = 0) -> dict:
    """Coverage numbers for one synthetic set; ``threshold`` None = best match only.

    Returns a dict: ``synthetic``, ``threshold``, ``n_train``, ``recall`` (recall_with_baseline:
    synthetic and held-out recall over the same number of queries, adjusted recall),
    ``vs_threshold`` (label -> recall_vs_threshold table), ``vs_n`` (label -> recall_vs_n
    table), ``learned`` (occupancy estimate dict of the synthetic set, or None), ``covered``
    (covered_train_videos over the training table), ``by_ef`` / ``by_view`` (coverage_by_group).
    """
    name = _synthetic_name(ws, synthetic)
    syn_names = ws.synthetic(name).names
    best_syn = best_matches(ws.synthetic_scores(name), queries=syn_names)
    best_held = best_matches(ws.heldout_scores, queries=ws.heldout.names)
    n_train = len(ws.train.names)
    t = None if threshold is None else float(threshold)
    labels = {f"synthetic ({name})": best_syn, "real held-out": best_held}
    vs_n = {}
    for label, best in labels.items():
        m = len(best)
        n_values = sorted({int(v) for v in np.unique(np.round(np.geomspace(1, m, min(m, 12))))})
        vs_n[label] = recall_vs_n(best, n_train, n_values, t, n_rep=n_rep, seed=seed)
    covered = covered_train_videos(best_syn, train_table(ws), t)
    return {
        "synthetic": name,
        "threshold": t,
        "n_train": n_train,
        "recall": recall_with_baseline(best_syn, best_held, n_train, t, seed=seed),
        "vs_threshold": {k: recall_vs_threshold(b, n_train, THRESHOLD_GRID) for k, b in labels.items()},
        "vs_n": vs_n,
        "learned": learned_estimate(best_syn, n_train, t),
        "learned_heldout": learned_estimate(best_held, n_train, t),
        "covered": covered,
        "by_ef": coverage_by_group(covered, "ef_bin"),
        "by_view": coverage_by_group(covered, "View"),
    }


def temporal_view(ws, *, drop_at: float = 0.5) -> dict:
    """Per-video consistency summaries, real held-out vs each synthetic set.

    Returns a dict: ``curves`` (the long temporal table: set, video, frame, first,
    correlation, plus ``id`` = "set / video", since synthetic sets may share video names)
    and ``summary`` (one row per video and measure: set, name (the id), kind, measure,
    n_frames, mean, min, first_drop; see :func:`temporal.summarise_curves`).
    """
    tmp = ws.temporal
    if tmp.empty:
        return {"curves": tmp, "summary": pd.DataFrame()}
    # Synthetic sets may reuse video names (SYN_0_0000 in each): key curves by set and video.
    tmp = tmp.assign(id=tmp["set"].astype(str) + " / " + tmp["video"].astype(str))
    sets = tmp.groupby("id")["set"].first()
    parts = []
    for measure in ("first", "correlation"):
        curves = {v: g.sort_values("frame")[measure].to_numpy(np.float64) for v, g in tmp.groupby("id")}
        kind = {v: ("real" if sets[v] == REAL_SET else "synthetic") for v in curves}
        s = summarise_curves(curves, kind, drop_at=drop_at if measure == "first" else 0.5)
        s.insert(0, "set", s["name"].map(sets))
        s.insert(3, "measure", measure)
        parts.append(s)
    return {"curves": tmp, "summary": pd.concat(parts, ignore_index=True)}


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


def _numbers(ws, priv: dict, cov: dict, temp: dict, auc: dict | None, thr) -> list[tuple[str, str, str]]:
    """(name, value with interval, plain sentence for a clinician) per headline number."""
    s = priv["summary"]
    rows = [
        ("Memorization threshold", f"{thr.value:.3f} (95 % CI {thr.low:.3f}-{thr.high:.3f})", thr.describe()),
        ("Flagged synthetic videos",
         f"{s['n_flagged']} of {s['n_videos']} = {_pct(s['share'])} (95 % CI {_pct(s['low'])}-{_pct(s['high'])})",
         f"{s['n_flagged']} synthetic videos look so much like a training patient that the re-identification "
         f"model would pick that patient out more surely than it does for {thr.percentile:g} % of real, unseen patients; "
         f"they should be removed before sharing."),
        ("Patients re-identified", f"{len(priv['per_patient'])}",
         "Number of distinct training patients that at least one flagged synthetic video points to."),
    ]
    r = cov["recall"]
    rs, rh = r["synthetic"], r["heldout"]
    rows += [
        ("Generative recall (synthetic)",
         f"{_pct(rs['recall'])} (95 % CI {_pct(rs['low'])}-{_pct(rs['high'])}), {rs['n_queries']} videos",
         f"Of {rs['n_train']} training videos, {rs['matched']} are the closest match of at least one of "
         f"{rs['n_queries']} synthetic videos above the threshold: the share of the training variety the generator reproduces."),
        ("Recall of real held-out videos (baseline)",
         f"{_pct(rh['recall'])} (95 % CI {_pct(rh['low'])}-{_pct(rh['high'])})",
         "What the same number of real, unseen videos reaches under the same rule; perfect generators match it."),
        ("Adjusted recall", "n/a" if not np.isfinite(r["adjusted_recall"]) else f"{r['adjusted_recall']:.2f}",
         "Synthetic recall divided by the real baseline: 1 means the generator covers the training set as well as new real data."),
    ]
    if cov["learned"]:
        le = cov["learned"]
        rows.append(("Estimated recall limit s/N",
                     f"{_pct(le['recall_limit'])} (95 % CI {_pct(le['recall_low'])}-{_pct(le['recall_high'])})",
                     f"With unlimited samples the generator would reach about {le['s_hat']} of {le['N']} training videos "
                     "(occupancy estimate assuming each sample is a fresh, uniform draw over what it has learned)."))
    if auc:
        rows.append(("Re-ID model AUC", f"{auc['value']:.3f} (95 % CI {auc['low']:.3f}-{auc['high']:.3f})",
                     "How well the re-identification model tells frames of the same patient from different patients "
                     "(1 = perfect, 0.5 = chance), on held-out patients."))
    summ = temp["summary"]
    if not summ.empty:
        first = summ[summ["measure"] == "first"]
        for kind in ("real", "synthetic"):
            part = first[first["kind"] == kind]
            if len(part):
                rows.append((f"Temporal consistency, {kind} (mean)", f"{part['mean'].mean():.3f} over {len(part)} videos",
                             f"Average probability that a later frame of a {kind} video still shows the patient of its first "
                             "frame; a video that drifts to another identity scores low."))
    return rows


def _figures(ws, priv, cov, temp, auc) -> dict:
    from echoaudit import figures as F

    t = priv["threshold"]
    figs = {
        "score_histograms": F.score_histograms(priv["heldout_best"]["score"], priv["synthetic_best"]["score"], t,
                                               synthetic_label=f"synthetic ({priv['synthetic']})"),
        "recall_vs_threshold": F.recall_threshold_figure(cov["vs_threshold"], t),
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
        first = summ[summ["measure"] == "first"]
        figs["temporal_mean"] = F.temporal_distribution_figure(first, "mean", "mean same-patient probability vs frame 0")
        figs["temporal_min"] = F.temporal_distribution_figure(first, "min", "minimum same-patient probability vs frame 0")
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
    thr = ws.threshold(percentile)
    t = float(thr.value if threshold is None else threshold)
    priv = privacy_view(ws, name, t)
    say(0.2, "coverage")
    cov = coverage_view(ws, name, t)
    temp = temporal_view(ws)
    auc = reid_auc(ws)
    figs = _figures(ws, priv, cov, temp, auc)
    numbers = _numbers(ws, priv, cov, temp, auc, thr)
    if threshold is not None:
        numbers.insert(1, ("Threshold used", f"{t:.3f} ({priv['percentile']:.1f}th percentile of calibration scores)",
                           f"The reviewer moved the threshold; about {100 - priv['percentile']:.1f} % of real unseen "
                           "videos would be flagged at it."))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    flags = priv["flags"].copy()
    tables = {
        "flags": flags,
        "unflagged": pd.DataFrame({"video": priv["unflagged"]}),
        "per_patient": priv["per_patient"].assign(train_videos=lambda d: d["train_videos"].map(" ".join)),
        "coverage_training_videos": cov["covered"],
        "coverage_by_ef": cov["by_ef"],
        "coverage_by_view": cov["by_view"],
        "temporal_summary": temp["summary"],
        "models": ws.models_info(),
    }
    summary = {
        "created": created, "workspace": str(ws.root), "synthetic": name, "percentile": percentile,
        "threshold": thr.to_dict() | {"used": t}, "flags": priv["summary"],
        "recall": cov["recall"], "learned": cov["learned"], "reid_auc": auc,
        "numbers": [{"name": a, "value": b, "sentence": c} for a, b, c in numbers],
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
        write_text(tmp / "report.html", _html(ws, name, numbers, figs, tables, summary, png_error, created))
        written["html"] = out_dir / "report.html"
        write_json(tmp / "summary.json", summary | {"png_error": png_error})
        written["summary"] = out_dir / "summary.json"
    written["folder"] = out_dir
    if png_error:
        written["png_error"] = png_error  # type: ignore[assignment]
    say(1.0, "report written")
    return written


def _html(ws, name, numbers, figs, tables, summary, png_error, created) -> str:
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
