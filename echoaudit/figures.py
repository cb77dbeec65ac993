"""Plotly figures of the audit, built from the tables of ``echoaudit.audit`` and the
workspace. Each builder takes plain arrays / DataFrames and returns a ``go.Figure`` with
labelled axes (units in brackets); the dashboard and the HTML report draw the same ones.

No Streamlit here. Colours: real data blue, synthetic orange, threshold red, the ideal
(uniform-draw) curve gray. Re-ID scores are drawn on the head's logit scale
(``echoaudit.audit.scale``: probabilities near 1 spread out), with the probability in
the hover text; builders take probabilities and convert.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from echoaudit.audit.scale import from_logit, logit_range, to_logit

__all__ = [
    "COLORS",
    "frame_similarity_strip",
    "score_histograms",
    "roc_figure",
    "recall_threshold_figure",
    "recall_n_figure",
    "pca_coordinates",
    "coverage_map",
    "coverage_bars",
    "temporal_curves_figure",
    "temporal_distribution_figure",
    "box_summary",
    "MAX_BOX_POINTS",
    "MAX_SCATTER_POINTS",
    "utility_errors_by_ef",
    "ef_agreement_scatter",
]

COLORS = {"real": "#1f77b4", "synthetic": "#ff7f0e", "threshold": "#d62728", "ideal": "#7f7f7f",
          "covered": "#2ca02c", "uncovered": "#bdbdbd"}
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2))


def _sample(n: int, cap: int) -> np.ndarray:
    from echoaudit.pickers import spread_sample

    return spread_sample(n, cap, seed=0)


def _fig(title: str, x: str, y: str, **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, **(_LAYOUT | layout))
    return fig


def _threshold_line(fig: go.Figure, t: float, *, vertical: bool, label: str | None = None) -> None:
    text = label or f"threshold {t:.3f}"
    if vertical:
        fig.add_vline(x=t, line=dict(color=COLORS["threshold"], dash="dash"), annotation_text=text,
                      annotation_position="top right")
    else:
        fig.add_hline(y=t, line=dict(color=COLORS["threshold"], dash="dash"), annotation_text=text,
                      annotation_position="top left")


def _logit_threshold_line(fig: go.Figure, t: float, *, vertical: bool) -> None:
    """The threshold ``t`` (a probability) as a line on a logit axis."""
    _threshold_line(fig, to_logit(float(t)), vertical=vertical,
                    label=f"threshold {to_logit(float(t)):.2f} (p = {float(t):.6f})")


def frame_similarity_strip(frames: Sequence[int], curve: Sequence[float], threshold: float,
                           *, title: str = "Per-frame re-identification", match: Sequence[float] | None = None,
                           match_label: str = "best training video") -> go.Figure:
    """Frame number vs the best same-patient score of that frame against any training
    frame (``VideoScores.frames`` / ``.frame_curve``, probabilities), drawn as re-ID
    logits with the probability on hover, and the threshold (a probability).

    ``match``: optionally the per-frame curve against one training video (``VideoScores.
    curves[v]``): its mean in logits is that video's clip score, what the threshold is
    compared with, drawn as a dashed line."""
    p = np.asarray(curve, dtype=np.float64)
    fig = _fig(title, "frame of the query video (number)", "same-patient score (re-ID logit)", height=280)
    fig.add_scatter(x=np.asarray(frames), y=to_logit(p), customdata=p, mode="lines+markers",
                    name="best match per frame (any training video)", line=dict(color=COLORS["synthetic"]),
                    hovertemplate="frame %{x}<br>re-ID logit %{y:.2f}<br>probability %{customdata:.6f}<extra></extra>")
    if match is not None:
        m = np.asarray(match, dtype=np.float64)
        fig.add_scatter(x=np.asarray(frames), y=to_logit(m), customdata=m, mode="lines+markers",
                        name=match_label, line=dict(color=COLORS["real"]),
                        hovertemplate="frame %{x}<br>re-ID logit %{y:.2f}<br>probability %{customdata:.6f}<extra></extra>")
        fig.add_hline(y=float(np.mean(to_logit(m))), line_dash="dash", line_color=COLORS["real"],
                      annotation_text="clip score (mean)", annotation_position="bottom left")
    _logit_threshold_line(fig, threshold, vertical=False)
    return fig


def score_histograms(heldout_best: Sequence[float], synthetic_best: Sequence[float], threshold: float,
                     *, synthetic_label: str = "synthetic", nbins: int = 40) -> go.Figure:
    """Histograms of each query's best re-ID score against the training set: real
    held-out videos (what unseen patients score) and synthetic videos, with the threshold.

    Inputs are probabilities; the x axis is the re-ID logit. Both sets share ``nbins``
    bins over :func:`scale.logit_range` of all values and the threshold; each bar is the
    share (%) of its set in that bin, its hover gives the bin's probability range.
    """
    held = to_logit(np.asarray(heldout_best, np.float64))
    syn = to_logit(np.asarray(synthetic_best, np.float64))
    lo, hi = logit_range(np.asarray(heldout_best, np.float64), np.asarray(synthetic_best, np.float64),
                         [float(threshold)], pad=0.5, step=0.5)
    edges = np.linspace(lo, hi, int(nbins) + 1)
    fig = _fig("Best re-identification score per video", "best same-patient score (re-ID logit)",
               "share of videos (%)", barmode="overlay", xaxis_range=[lo, hi], bargap=0)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    prob = np.stack([from_logit(edges[:-1]), from_logit(edges[1:])], axis=1)
    for values, name, color in ((held, "real held-out", COLORS["real"]), (syn, synthetic_label, COLORS["synthetic"])):
        counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
        share = 100.0 * counts / max(1, len(values))
        fig.add_bar(x=centers, y=share, width=width, name=name, marker_color=color, opacity=0.6,
                    customdata=np.column_stack([prob, counts]),
                    hovertemplate=("re-ID logit %{x:.2f}<br>probability %{customdata[0]:.6f} to %{customdata[1]:.6f}"
                                   "<br>%{y:.1f} % of videos (%{customdata[2]})<extra>" + name + "</extra>"))
    _logit_threshold_line(fig, threshold, vertical=True)
    return fig


def roc_figure(labels: Sequence[int], scores: Sequence[float], auc: Mapping | None = None) -> go.Figure:
    """ROC curve of the re-ID head on held-out frame pairs; ``auc``: dict value/low/high."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels, int), np.asarray(scores, float))
    name = "re-ID head"
    if auc:
        name += f" (AUC {auc['value']:.3f}, 95 % CI {auc['low']:.3f}-{auc['high']:.3f})"
    fig = _fig("Re-identification ROC (held-out patients)", "false positive rate (different-patient pairs)",
               "true positive rate (same-patient pairs)", xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(color=COLORS["ideal"], dash="dot"))
    fig.add_scatter(x=fpr, y=tpr, mode="lines", name=name, line=dict(color=COLORS["real"]))
    return fig


def _band(fig: go.Figure, x, low, high, color: str, name: str) -> None:
    fig.add_scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([high, low[::-1]]), fill="toself", mode="lines",
                    fillcolor=color, opacity=0.2, line=dict(width=0), name=name, hoverinfo="skip",
                    showlegend=False)


def recall_threshold_figure(curves: Mapping[str, pd.DataFrame], threshold: float | None = None) -> go.Figure:
    """Reproduction vs threshold (training videos some query's best match reaches at or
    above t: a privacy number), one line (+ Wilson band) per query set.

    ``curves``: label -> :func:`recall.recall_vs_threshold` table (threshold, recall, low,
    high), thresholds as probabilities; the x axis is their re-ID logit, the probability
    in the hover text. ``threshold``: the threshold in use (a probability), drawn as a line.
    """
    fig = _fig("Training videos reproduced vs threshold", "threshold on the best-match score (re-ID logit)",
               "reproduced (% of training videos)")
    for label, df in curves.items():
        color = COLORS["real"] if "real" in label or "held" in label else COLORS["synthetic"]
        p = df["threshold"].to_numpy(np.float64)
        x = to_logit(p)
        _band(fig, x, 100 * df["low"].to_numpy(), 100 * df["high"].to_numpy(), color, label)
        fig.add_scatter(x=x, y=100 * df["recall"].to_numpy(), customdata=p, mode="lines", name=label,
                        line=dict(color=color),
                        hovertemplate=("re-ID logit %{x:.2f}<br>probability %{customdata:.6f}<br>"
                                       "%{y:.1f} % of training videos<extra>" + label + "</extra>"))
    if threshold is not None:
        _logit_threshold_line(fig, threshold, vertical=True)
    return fig


def recall_n_figure(curves: Mapping[str, pd.DataFrame], n_train: int, *, learned: Mapping | None = None,
                    n_max: int | None = None) -> go.Figure:
    """Recall vs number of query videos: measured curves (mean and 5-95 % band of random
    subsets, :func:`recall.recall_vs_n`), the ideal uniform-draw curve ``1 - (1 - 1/N)^n``,
    and the estimated limit ``s_hat / N`` with its interval (``learned``: a
    :class:`occupancy.LearnedEstimate` dict)."""
    from echoaudit.audit.occupancy import ideal_recall_curve

    fig = _fig("Recall vs number of videos", "number of query videos n", "recall (% of training videos)")
    top = n_max or max(int(df["n_queries"].max()) for df in curves.values())
    n = np.unique(np.round(np.linspace(0, max(top, 1), 60)).astype(int))
    fig.add_scatter(x=n, y=100 * ideal_recall_curve(n, n_train), mode="lines", name="ideal: 1-(1-1/N)^n",
                    line=dict(color=COLORS["ideal"], dash="dash"))
    for label, df in curves.items():
        color = COLORS["real"] if "real" in label or "held" in label else COLORS["synthetic"]
        x = df["n_queries"].to_numpy()
        _band(fig, x, 100 * df["p05"].to_numpy(), 100 * df["p95"].to_numpy(), color, label)
        fig.add_scatter(x=x, y=100 * df["mean"].to_numpy(), mode="lines+markers", name=label, line=dict(color=color))
    if learned:
        fig.add_hrect(y0=100 * learned["recall_low"], y1=100 * learned["recall_high"],
                      fillcolor=COLORS["synthetic"], opacity=0.12, line_width=0)
        fig.add_hline(y=100 * learned["recall_limit"], line=dict(color=COLORS["synthetic"], dash="dot"),
                      annotation_text=f"estimated limit s/N = {100 * learned['recall_limit']:.1f} %",
                      annotation_position="top left")
    return fig


def pca_coordinates(embeddings: pd.DataFrame, *, fit_on: str = "train") -> pd.DataFrame:
    """2-D PCA of per-video embeddings (columns set, video, emb), fitted on ``fit_on`` rows.

    ``z = (e - mean_fit) @ V[:, :2]`` with V the right singular vectors of the centred
    fitting rows. Returns the input's set/video columns plus ``pc1``, ``pc2`` (float64).
    """
    if embeddings.empty:
        return pd.DataFrame(columns=["set", "video", "pc1", "pc2"])
    e = np.stack([np.asarray(v, np.float64) for v in embeddings["emb"]])
    fit = e[(embeddings["set"] == fit_on).to_numpy()]
    if len(fit) < 2:
        fit = e
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps)])
    # Fix each component's sign so the map does not flip between runs.
    comps = comps * np.where(comps[np.arange(2), np.abs(comps).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    z = (e - mean) @ comps.T
    out = embeddings[["set", "video"]].reset_index(drop=True).copy()
    out["pc1"], out["pc2"] = z[:, 0], z[:, 1]
    return out


def coverage_map(coords: pd.DataFrame, covered: pd.DataFrame, synthetic_set: str | None = None) -> go.Figure:
    """PCA map: training videos coloured covered / not covered, synthetic videos overlaid.

    ``coords``: :func:`pca_coordinates`; ``covered``: :func:`recall.covered_train_videos`
    output with ``train_video``, ``covered`` (and EF, PatientID if present). Each training
    point carries its video name as ``customdata`` (for selection events).
    """
    fig = _fig("Training videos in re-ID embedding space (PCA)", "principal component 1 (a.u.)",
               "principal component 2 (a.u.)", height=520, dragmode="lasso")
    train = coords[coords["set"] == "train"].merge(covered, left_on="video", right_on="train_video", how="left")
    train["covered"] = train["covered"].fillna(False).astype(bool)
    for flag, label in ((True, "covered training video"), (False, "not covered")):
        part = train[train["covered"] == flag]
        extra = [f"EF {ef:.0f} %" if pd.notna(ef) else "" for ef in part.get("EF", pd.Series([np.nan] * len(part)))]
        fig.add_scattergl(x=part["pc1"], y=part["pc2"], mode="markers", name=label,
                          marker=dict(color=COLORS["covered" if flag else "uncovered"], size=8,
                                      line=dict(width=0.5, color="#555")),
                          customdata=part["video"], text=extra,
                          hovertemplate="%{customdata}<br>%{text}<extra>" + label + "</extra>")
    if synthetic_set is not None:
        syn = coords[coords["set"] == synthetic_set]
        name = f"synthetic ({synthetic_set})"
        if len(syn) > MAX_SCATTER_POINTS:  # a seeded sample: the map shows where they fall, not each one
            name += f": {MAX_SCATTER_POINTS:,} of {len(syn):,} drawn"
            syn = syn.iloc[_sample(len(syn), MAX_SCATTER_POINTS)]
        fig.add_scattergl(x=syn["pc1"], y=syn["pc2"], mode="markers", name=name,
                          marker=dict(color=COLORS["synthetic"], symbol="x", size=8), customdata=syn["video"],
                          hovertemplate="%{customdata}<extra>synthetic</extra>")
    return fig


def coverage_bars(groups: pd.DataFrame, *, by_label: str) -> go.Figure:
    """Coverage per group (:func:`recall.coverage_by_group`) with Wilson error bars."""
    fig = _fig(f"Coverage by {by_label}", by_label, "covered training videos (%)", yaxis_range=[0, 105])
    g = groups.dropna(subset=["coverage"])
    fig.add_bar(x=g["group"], y=100 * g["coverage"], marker_color=COLORS["covered"],
                error_y=dict(type="data", symmetric=False, array=100 * (g["high"] - g["coverage"]),
                             arrayminus=100 * (g["coverage"] - g["low"])),
                text=[f"{c}/{n}" for c, n in zip(g["n_covered"], g["n_train"])], textposition="outside",
                name="coverage (Wilson 95 % CI)")
    return fig


def temporal_curves_figure(temporal: pd.DataFrame, videos: Sequence[str], measure: str = "first",
                           *, drop_at: float | None = 0.5) -> go.Figure:
    """Per-frame consistency curves of the chosen videos.

    ``temporal``: long table (set, video, frame, first, correlation; optional ``id``,
    then ``videos`` name ids rather than videos; optional ``time_s``, then the x axis is
    seconds, so sets of different frame rates share it); ``measure``:
    ``"first"`` (same-patient probability of frame t vs frame 0) or ``"correlation"``
    (Pearson correlation of embeddings, the paper's measure).
    """
    ylab = {"first": "same-patient probability vs first frame (0-1)",
            "correlation": "embedding correlation with first frame (-1 to 1)"}[measure]
    xcol = "time_s" if "time_s" in temporal else "frame"
    fig = _fig("Consistency over time", "time from the first frame (s)" if xcol == "time_s" else "frame (number)", ylab)
    col = "id" if "id" in temporal else "video"
    for name in videos:
        part = temporal[temporal[col] == name].sort_values("frame")
        if part.empty:
            continue
        kind = "real" if str(part["set"].iloc[0]).startswith("real") else "synthetic"
        label = name if col == "id" else f"{name} ({part['set'].iloc[0]})"
        fig.add_scatter(x=part[xcol], y=part[measure], mode="lines", name=label,
                        line=dict(color=COLORS[kind], dash="solid" if kind == "synthetic" else "dot"))
    if drop_at is not None and measure == "first":
        _threshold_line(fig, drop_at, vertical=False, label=f"decision level {drop_at:g}")
    return fig


#: Box plots draw every video's point up to this many videos (EchoNet-size sets: quartiles + outliers).
MAX_BOX_POINTS = 2000
#: Scatter plots draw at most this many points of a set (a seeded sample beyond, said in the legend).
MAX_SCATTER_POINTS = 2000


def box_summary(values: Sequence[float], *, max_outliers: int = MAX_BOX_POINTS) -> dict:
    """The numbers a box plot draws, computed here so a figure of n values holds O(1) of them.

    ``q1``, ``median``, ``q3``: the 25th, 50th and 75th percentiles (linear interpolation,
    plotly's default ``quartilemethod``); ``lowerfence`` / ``upperfence``: the smallest /
    largest value within 1.5 IQR of the box (IQR = q3 - q1, Tukey's whiskers, as plotly
    draws them from a sample); ``mean``; ``n``; ``outliers``: the values beyond the fences,
    sorted, at most ``max_outliers`` of them (evenly spaced by rank, the extremes kept);
    ``n_outliers``: how many there are. NaN values are left out; n = 0 gives NaNs."""
    v = np.asarray(values, dtype=np.float64)
    v = np.sort(v[np.isfinite(v)])
    if v.size == 0:
        nan = float("nan")
        return {"n": 0, "q1": nan, "median": nan, "q3": nan, "lowerfence": nan, "upperfence": nan, "mean": nan,
                "outliers": np.zeros(0), "n_outliers": 0}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    iqr = q3 - q1
    inside = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
    out = v[(v < q1 - 1.5 * iqr) | (v > q3 + 1.5 * iqr)]
    n_out = int(out.size)
    if n_out > max_outliers:
        out = out[np.unique(np.round(np.linspace(0, n_out - 1, max_outliers)).astype(np.int64))]
    return {"n": int(v.size), "q1": float(q1), "median": float(med), "q3": float(q3),
            "lowerfence": float(inside.min()), "upperfence": float(inside.max()), "mean": float(v.mean()),
            "outliers": out, "n_outliers": n_out}


def temporal_distribution_figure(summary: pd.DataFrame, column: str, ylabel: str) -> go.Figure:
    """Box plots of a per-video summary column, real vs synthetic: every video's point up
    to :data:`MAX_BOX_POINTS` videos a set; beyond, the quartiles, whiskers and outliers
    computed here (:func:`box_summary`), so the figure's size does not grow with the set.

    ``summary``: :func:`temporal.summarise_curves` output with an extra ``set`` column.
    """
    fig = _fig(f"{ylabel}: real vs synthetic", "video set", ylabel, showlegend=False)
    for set_name, part in summary.groupby("set", sort=False):
        values = pd.to_numeric(part[column], errors="coerce").dropna()
        kind = "real" if str(set_name).startswith("real") else "synthetic"
        label = f"{set_name} (n={len(values)})"
        if len(values) <= MAX_BOX_POINTS:
            fig.add_box(y=values, name=label, boxpoints="all", jitter=0.4, marker_color=COLORS[kind])
            continue
        b = box_summary(values)
        # the q1/median/q3 signature: the sample (a list per box) holds the outliers only;
        # an empty sample would hide the box in plotly.js, so none is given then
        sample = {"y": [b["outliers"].tolist()]} if b["n_outliers"] else {}
        fig.add_box(x=[label], name=label, q1=[b["q1"]], median=[b["median"]], q3=[b["q3"]],
                    lowerfence=[b["lowerfence"]], upperfence=[b["upperfence"]], mean=[b["mean"]],
                    **sample, boxpoints="outliers", jitter=0.4, marker_color=COLORS[kind],
                    hovertext=f"{b['n_outliers']:,} outliers" + ("" if b["n_outliers"] <= len(b["outliers"]) else
                                                                 f" ({len(b['outliers']):,} drawn)"))
    return fig


_ARM_COLORS = {"real": COLORS["real"], "synthetic": COLORS["synthetic"], "synthetic_filtered": "#9467bd",
               "synthetic_random": "#8c564b", "real_plus_synthetic": COLORS["covered"]}


def utility_errors_by_ef(by_ef: pd.DataFrame, labels: Mapping[str, str] | None = None) -> go.Figure:
    """MAE of the EF model per bin of the true EF, one bar group per training set, with the
    patient-bootstrap interval (:func:`echoaudit.audit.utility.errors_by_ef_bin` rows with
    an ``arm`` column); bins are those of coverage by EF bin, so the two sit side by side."""
    fig = _fig("EF model error by EF bin (real TEST patients)", "EF bin (%)", "MAE (EF points)", barmode="group")
    labels = dict(labels or {})
    for arm, part in by_ef.groupby("arm", sort=False):
        g = part.dropna(subset=["mae"])
        fig.add_bar(x=g["group"].astype(str), y=g["mae"], name=labels.get(arm, str(arm)),
                    marker_color=_ARM_COLORS.get(arm, COLORS["ideal"]),
                    error_y=dict(type="data", symmetric=False, array=(g["mae_high"] - g["mae"]).clip(lower=0),
                                 arrayminus=(g["mae"] - g["mae_low"]).clip(lower=0)),
                    customdata=g["n_videos"], hovertemplate="%{x}: MAE %{y:.1f} (%{customdata} videos)")
    return fig


def ef_agreement_scatter(points: pd.DataFrame, agreement: Mapping | None = None) -> go.Figure:
    """EF asked of the generator against the EF the real-trained model measures in each
    generated video (columns FileName, EF_requested, EF_predicted), with the identity line."""
    title = "EF agreement of the generator"
    if agreement:
        m = agreement["mae"]
        title += f": MAE {m['value']:.1f} [{m['low']:.1f}, {m['high']:.1f}]"
    fig = _fig(title, "EF asked for (%)", "EF measured by the real-trained model (%)")
    lo = float(min(points["EF_requested"].min(), points["EF_predicted"].min(), 0.0)) if len(points) else 0.0
    hi = float(max(points["EF_requested"].max(), points["EF_predicted"].max(), 100.0)) if len(points) else 100.0
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="measured = asked for",
                    line=dict(color=COLORS["ideal"], dash="dash"))
    name = "generated video"
    if len(points) > MAX_SCATTER_POINTS:
        name += f" ({MAX_SCATTER_POINTS:,} of {len(points):,} drawn)"
        points = points.iloc[_sample(len(points), MAX_SCATTER_POINTS)]
    fig.add_scatter(x=points["EF_requested"], y=points["EF_predicted"], mode="markers", name=name,
                    marker=dict(color=COLORS["synthetic"], size=7), customdata=points["FileName"],
                    hovertemplate="%{customdata}<br>asked %{x:.1f}, measured %{y:.1f}<extra></extra>")
    return fig
