"""The meeting report: the views of :mod:`echoaudit.report` written out as one folder
(self-contained HTML with the plotly figures inline, PNG figures, CSV tables, a JSON
summary), zipped for download."""

from __future__ import annotations

import html
import io
import json
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from echoaudit.audit.coverage import reproduction
from echoaudit.audit.privacy import DEFAULT_RULE, RULE_NAMES
from echoaudit.audit.recall import recall_vs_threshold
from echoaudit.audit.scale import to_logit
from echoaudit.audit.utility import ARM_LABELS
from echoaudit.errors import EchoAuditError
from echoaudit.fileio import atomic_dir, write_json, write_text
from echoaudit.review.view import review_view
from echoaudit.report import (
    REAL_SET,
    _pct,
    _synthetic_name,
    calibration_view,
    conventions_view,
    coverage_view,
    privacy_view,
    reid_auc,
    temporal_set_numbers,
    temporal_view,
    threshold_grid,
    train_table,
)
from echoaudit.filters import filters_view
from echoaudit.utility_view import display_table, finite, utility_results

__all__ = ["write_report", "zip_folder", "report_folder", "HTML_ROWS", "FILTER_ROWS"]

#: Disagreements of a second filter shown (with thumbnails) in report.html.
FILTER_ROWS = 200


def _rate(check: dict | None) -> str:
    if check is None:
        return "not measured"
    return f"{_pct(check['rate'])} (95 % CI {_pct(check['low'])}-{_pct(check['high'])}), {check['k']} of {check['n']} videos"


def _review_numbers(rev: dict) -> list[tuple[str, str, str]]:
    """Rows of the review: where the decisions stand and what the filtered set holds."""
    c = rev["counts"]
    return [("Reviewer decisions", f"{c['confirmed_copy']} confirmed copies, {c['not_a_copy']} not a copy, "
             f"{c['unsure']} unsure; {c['undecided_flagged']} flagged undecided", rev["sentence"]),
            ("Filtered set (release list)", f"{len(rev['release'].videos)} of {c['n_videos']} videos",
             rev["release_sentence"])]


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


#: Rows of a table shown in report.html; every row is in tables/<name>.csv beside it, so the
#: HTML's size does not grow with the number of videos.
HTML_ROWS = 50


def _csv_link(csv: str) -> str:
    path = f"tables/{csv}.csv"
    return f"<a href='{html.escape(path)}'>{html.escape(path)}</a>"


def _table_html(df: pd.DataFrame, max_rows: int = HTML_ROWS, csv: str | None = None) -> str:
    """The first ``max_rows`` rows as an HTML table, with a note of how many there are and
    the CSV (``tables/<csv>.csv``) that holds them all when rows were left out."""
    out = df.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
    if len(df) > max_rows:
        where = f"; all of them in {_csv_link(csv)}" if csv else ""
        out = f"<p class='note'>The first {max_rows:,} of {len(df):,} rows{where}.</p>" + out
    return out


def _tables_html(tables: dict[str, pd.DataFrame]) -> str:
    """The CSV files beside the report, with their row counts."""
    rows = "".join(f"<tr><td>{_csv_link(k)}</td><td>{len(df):,}</td></tr>" for k, df in tables.items())
    return ("<h2>Tables (CSV, beside this file)</h2><p class='note'>Every row of every table; the sections above "
            f"show the first rows.</p><table><tr><th>file</th><th>rows</th></tr>{rows}</table>")


def write_report(ws, out_dir: str | Path, *, percentile: float = 95.0, synthetic: str | None = None,
                 threshold: float | None = None, png: bool = True,
                 progress: Callable[[float, str], None] | None = None) -> dict[str, Path]:
    """Write the meeting report of one synthetic set into ``out_dir`` (atomically, whole).

    Contents: ``report.html`` (self-contained: plotly.js inline once, every number with its
    interval and one plain sentence, settings, model fingerprints), ``figures/<name>.png``
    (kaleido; skipped with a note in the HTML and ``png_error`` in the result if it fails),
    ``tables/*.csv`` (flags, unflagged list, the release list after review with what was
    withheld and the false alarms kept, reviewer decisions current and history,
    per-patient leaks, coverage, temporal),
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
    from echoaudit import figures as F  # import errors surface before writing

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
    say(0.3, "reviewer decisions")
    rev = review_view(ws, name, t)
    say(0.35, "published conventions (first frames)")
    conv = conventions_view(ws, name, percentile=percentile)
    util, util_error = _utility(ws, name)
    say(0.4, "second filters")
    filt = filters_view(ws, name, t, n_boot=1000)
    figs = _figures(ws, priv, cov, temp, auc)
    if util is not None and util["by_ef"] is not None:
        figs["utility_by_ef"] = F.utility_errors_by_ef(util["by_ef"], ARM_LABELS)
    numbers = (_privacy_numbers(priv, cals, moved=threshold is not None) + _review_numbers(rev)
               + _numbers(ws, priv, cov, temp, auc, thr))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    flags = priv["flags"].copy()
    flags.insert(flags.columns.get_loc("score"), "logit", to_logit(flags["score"].to_numpy()))
    tables = {
        "flags": flags,
        "unflagged": pd.DataFrame({"video": priv["unflagged"]}),
        "release": pd.DataFrame({"video": rev["release"].videos}),
        "withheld": rev["release"].withheld,
        "false_alarms": rev["release"].false_alarms,
        "decisions_current": rev["current"],
        "decisions_history": rev["history"],
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
    for f in filt:
        if "disagreements" in f:
            tables[f"filter_{f['name']}_disagreements"] = f["disagreements"]
    if util is not None and util["table"] is not None:
        tables["utility"] = util["table"]
        tables["utility_by_ef"] = util["by_ef"]
    summary = {
        "created": created, "workspace": str(ws.root), "synthetic": name, "percentile": percentile,
        "threshold": cals[DEFAULT_RULE] | {"used": t, "used_logit": to_logit(t)}, "rules": cals,
        "check_at_threshold": priv["check"], "excess": priv["excess"], "flags": priv["summary"],
        "review": {"counts": rev["counts"], "sentence": rev["sentence"], "release": len(rev["release"].videos),
                   "release_sentence": rev["release_sentence"], "store": rev["store_url"]},
        "coverage": {k: v for k, v in cov["coverage"].items() if k != "check_videos"},
        "reproduction": cov["reproduction"], "reid_auc": auc,
        "temporal": {set_name: temporal_set_numbers(temp["summary"], set_name) for set_name in (REAL_SET, name)},
        "numbers": [{"name": a, "value": b, "sentence": c} for a, b, c in numbers],
        "conventions": None if conv is None else {
            "rule": conv["rule"], "modes": {k: {f: v for f, v in m.items() if f != "best"} for k, m in conv["modes"].items()}},
        "index": ws.manifest.get("index", {}), "engine": ws.manifest.get("engine", {}),
        "utility": None if util is None else finite({
            "folder": str(util["folder"]), "sentence": util["sentence"],
            "table": None if util["table"] is None else util["table"].to_dict(orient="records"),
            "ef_agreement": util["agreement"]}),
        "utility_error": util_error,
        "filters": [{"name": f["name"], "scorer": f["info"]["scorer"], "threshold": f["info"]["threshold"],
                     "scale": f["info"]["scale"], "rule": f["info"]["rule"],
                     **({"missing": f["missing"]} if "missing" in f else
                        {"agreement": f["agreement"], "sentence": f["sentence"]})} for f in filt],
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
        write_text(tmp / "report.html", _html(ws, name, numbers, figs, tables, summary, png_error, created, conv,
                                              util, util_error, _filters_html(ws, name, filt)))
        written["html"] = out_dir / "report.html"
        write_json(tmp / "summary.json", summary | {"png_error": png_error})
        written["summary"] = out_dir / "summary.json"
    written["folder"] = out_dir
    if png_error:
        written["png_error"] = png_error  # type: ignore[assignment]
    say(1.0, "report written")
    return written


def _utility(ws, name: str) -> tuple[dict | None, str | None]:
    """The set's downstream-utility results (None when not computed) and, when its files
    are damaged, the reason (the rest of the report is still written)."""
    try:
        return utility_results(ws.root, name), None
    except EchoAuditError as exc:
        return None, f"The downstream-utility results could not be read: {exc}"


def _utility_html(util: dict | None, util_error: str | None) -> str:
    if util_error:
        return f"<h2>Downstream utility (EF model)</h2><p class='note'>{html.escape(util_error)}</p>"
    if util is None:
        return ""
    parts = ["<h2>Downstream utility (EF model)</h2>"]
    if util["table"] is not None:
        test = (util["record"] or {}).get("test") or {}
        parts.append(f"<p><b>{html.escape(util['sentence'])}</b></p>"
                     f"<p class='note'>Each row: an EF model trained on that set, tested on the same "
                     f"{html.escape(str(test.get('videos', '?')))} real TEST videos "
                     f"({html.escape(str(test.get('patients', '?')))} patients); 95 % intervals by percentile "
                     "bootstrap over TEST patients, the difference against (a) paired (positive = worse).</p>")
        parts.append(_table_html(display_table(util["table"])))
    agr = util["agreement"]
    if agr is not None:
        parts.append(f"<h3>EF agreement of the generator</h3><p>{html.escape(agr['sentence'])}</p>")
    return "\n".join(parts)


def _filters_html(ws, name: str, filt: list[dict]) -> str:
    """Each second filter: its rule, the agreement sentence and the videos only one filter
    flags, with thumbnails of the video and of both filters' best training matches."""
    if not filt:
        return ""
    from echoaudit.media import video_thumbnails

    parts = ["<h2>Second privacy filters</h2><p class='note'>Another re-ID network's verdicts beside this "
             "workspace's (`echoaudit filters add`); the workspace filter at the threshold of this report, the other "
             "at its own calibrated threshold.</p>"]
    for f in filt:
        info = f["info"]
        parts.append(f"<h3>{html.escape(f['name'])}: {html.escape(info['scorer'])} scorer "
                     f"({html.escape(info['kind'])})</h3><p class='note'>{html.escape(info['rule'])}</p>")
        if "missing" in f:
            parts.append(f"<p>{html.escape(f['missing'])}</p>")
            continue
        parts.append(f"<p><b>{html.escape(f['sentence'])}</b></p>")
        d = f["disagreements"]
        if d.empty:
            continue
        # thumbnails of the rows shown only; every disagreement is in the CSV
        n_all, d = len(d), d.head(FILTER_ROWS)
        syn = video_thumbnails(ws.synthetic(name), list(d["query"]))
        train = video_thumbnails(ws.train, list(pd.unique(pd.concat([d["train_first"], d["train_second"]]))))
        img = lambda uri: f"<img src='{uri}' width='64' height='64'>"
        if n_all > len(d):
            csv = _csv_link(f"filter_{f['name']}_disagreements")
            parts.append(f"<p class='note'>The first {len(d):,} of {n_all:,} disagreements; all of them in {csv}.</p>")
        rows = ["<table><tr><th>synthetic</th><th>video</th><th>flagged by</th><th>workspace logit</th>"
                "<th>best match (workspace)</th><th>other score</th><th>best match (other)</th></tr>"]
        for r in d.itertuples():
            who = "this workspace only" if r.flagged_first else f"{f['name']} only"
            rows.append(f"<tr><td>{img(syn[r.query])}</td><td>{html.escape(r.query)}</td><td>{html.escape(who)}</td>"
                        f"<td>{to_logit(r.score_first):.2f}</td><td>{img(train[r.train_first])}<br>"
                        f"{html.escape(r.train_first)}</td><td>{r.score_second:.4f}</td>"
                        f"<td>{img(train[r.train_second])}<br>{html.escape(r.train_second)}</td></tr>")
        parts.append("\n".join(rows) + "</table>")
    return "\n".join(parts)


def _html(ws, name, numbers, figs, tables, summary, png_error, created, conv=None, util=None,
          util_error=None, filters_html: str = "") -> str:
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
    parts.append(_table_html(flagged, csv="flags") if len(flagged) else "<p>None at this threshold.</p>")
    parts.append("<h2>Reviewer decisions</h2>")
    cur = tables["decisions_current"]
    parts.append(f"<p>{html.escape(summary['review']['sentence'])} {html.escape(summary['review']['release_sentence'])}</p>")
    if len(cur):
        shown = cur[["synthetic_video", "train_video", "train_patient", "verdict", "reviewer", "decided_at", "score",
                     "threshold", "note"]].assign(decided_at=lambda d: d["decided_at"].dt.strftime("%Y-%m-%d %H:%M UTC"))
        parts.append(_table_html(shown, max_rows=200, csv="decisions_current"))
    else:
        parts.append("<p>No decisions recorded yet.</p>")
    fa = tables["false_alarms"]
    if len(fa):
        parts.append("<h3>Flagged videos kept as false alarms</h3>" + _table_html(fa, max_rows=200, csv="false_alarms"))
    parts.append("<h2>Training patients re-identified</h2>")
    parts.append(_table_html(tables["per_patient"], csv="per_patient") if len(tables["per_patient"]) else "<p>None.</p>")
    parts.append(filters_html)
    if conv is not None:
        parts.append("<h2>Published conventions (first frame only)</h2>"
                     "<p>The same synthetic set under the rules of the authors' notebooks (MischaD/UltrasoundPrivacy) "
                     "and of EchoNet-Synthetic, beside EchoAudit's whole-video rule. "
                     f"{html.escape(conv['rule'])}</p>" + _table_html(conv["table"]))
    parts.append("<h2>Coverage by EF and view</h2>" + _table_html(tables["coverage_by_ef"]) + _table_html(tables["coverage_by_view"]))
    parts.append(_utility_html(util, util_error))
    parts.append("<h2>Models (fingerprints)</h2>" + _table_html(tables["models"]))
    parts.append(_tables_html(tables))
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
