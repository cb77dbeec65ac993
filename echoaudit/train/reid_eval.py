"""Evaluation of re-ID models on held-out patients, and the cross-view (cross-data-set) table.

The paper's cross-data-set table: a model trained on one view (data set) scores pairs of
held-out patients of every view; AUC per (train view, test view). Latent models are
expected to transfer better than image models (Dombrowski et al., arXiv 2411.04956).

ROC AUC = P(score of a random positive pair > score of a random negative pair), ties
counted 1/2 (``sklearn.metrics.roc_auc_score``); its 95 % interval is a stratified
bootstrap (:func:`echoaudit.audit.intervals.bootstrap_auc`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from echoaudit.audit.intervals import bootstrap_auc
from echoaudit.fileio import atomic_path, write_text
from echoaudit.models.reid import ReIDNet, load_reid
from echoaudit.train.reid import ImagePairSource, LatentPairSource, pair_scores, sample_pairs

__all__ = ["evaluate_reid", "cross_view_matrix", "cross_view_figure", "run_eval"]


def evaluate_reid(model: ReIDNet, source, split: str = "TEST", n_pairs: int = 2000, seed: int = 0, *, batch_size: int = 256) -> dict:
    """Score balanced pairs of ``split``'s patients (see ``sample_pairs``) with the head.

    Returns:
        dict with ``auc`` (float), ``auc_low`` / ``auc_high`` (95 % bootstrap interval),
        ``n_pairs`` (int), ``labels`` (P,) float32 (1 = same patient) and ``scores`` (P,)
        float64 same-patient probabilities.

    Raises:
        DatasetError: fewer than two patients in ``split``.
        CheckpointError: a model whose input shape is not the source's.
    """
    pairs = sample_pairs(source, split=split, n_pairs=n_pairs, seed=[seed, 2])
    scores = pair_scores(model, source, pairs, batch_size=batch_size)
    auc, low, high = bootstrap_auc(pairs.label, scores, n_boot=500, seed=seed)
    return {"auc": auc, "auc_low": low, "auc_high": high, "n_pairs": len(pairs), "labels": pairs.label, "scores": scores}


def cross_view_matrix(
    models: Mapping[str, ReIDNet],
    sources: Mapping[str, object],
    *,
    split: str = "TEST",
    n_pairs: int = 2000,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> pd.DataFrame:
    """AUC of each view's model (rows, "train view") on each view's held-out pairs (columns, "test view").

    Every model must take the sources' frame shape (all latent, or all image at one size).
    Each test view's pairs are the same for every model (same seed).
    """
    if not models or not sources:
        raise ValueError(f"need at least one model and one source; got {len(models)} model(s), {len(sources)} source(s)")
    out = pd.DataFrame(index=pd.Index(list(models), name="train view"), columns=pd.Index(list(sources), name="test view"), dtype=float)
    total, done = len(models) * len(sources), 0
    for tv, model in models.items():
        for sv, source in sources.items():
            out.loc[tv, sv] = evaluate_reid(model, source, split=split, n_pairs=n_pairs, seed=seed)["auc"]
            done += 1
            if progress is not None:
                progress(done / total, f"model {tv} on {sv}")
    return out


def cross_view_figure(df_latent: pd.DataFrame, df_image: pd.DataFrame | None = None):
    """Plotly heatmaps (train view x test view AUC), latent and image side by side, one colour scale [0.5, 1]."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [("latent space", df_latent)] + ([("image space", df_image)] if df_image is not None else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.12)
    for k, (title, df) in enumerate(panels, start=1):
        z = df.to_numpy(dtype=float)
        fig.add_trace(
            go.Heatmap(
                z=z, x=[str(c) for c in df.columns], y=[str(i) for i in df.index], zmin=0.5, zmax=1.0,
                colorscale="Viridis", showscale=k == len(panels), text=np.vectorize(lambda v: f"{v:.3f}")(z),
                texttemplate="%{text}", hovertemplate="train %{y}, test %{x}: AUC %{z:.3f}<extra>" + title + "</extra>",
                colorbar={"title": "AUC"},
            ),
            row=1, col=k,
        )
        fig.update_xaxes(title_text="test view", row=1, col=k)
        fig.update_yaxes(title_text="train view", autorange="reversed", row=1, col=k)
    fig.update_layout(title="Re-identification ROC AUC across views (held-out patients)", height=420, width=420 * len(panels) + 80)
    return fig


def _as_model(m) -> ReIDNet:
    return m if isinstance(m, ReIDNet) else load_reid(m)


def run_eval(
    out_dir: str | Path,
    latent_models: Mapping[str, object],
    latent_sources: Mapping[str, object],
    image_models: Mapping[str, object] | None = None,
    image_sources: Mapping[str, object] | None = None,
    *,
    split: str = "TEST",
    n_pairs: int = 2000,
    seed: int = 0,
    image_size: int = 112,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Path]:
    """Write ``cross_view_latent.csv``, ``cross_view_image.csv`` (when image models are
    given) and ``cross_view.html`` (the figure) into ``out_dir``, each atomically.

    Models are ``ReIDNet`` or model folders; latent sources are pair sources or latent
    cache folders; image sources are pair sources, ``EchoNetDataset`` or data set folders.
    Returns the paths written, by name ("latent", "image", "figure").
    """
    from echoaudit.data.echonet import EchoNetDataset

    out_dir = Path(out_dir)
    lat_m = {v: _as_model(m) for v, m in latent_models.items()}
    lat_s = {v: s if hasattr(s, "get_frames") else LatentPairSource.from_cache(s) for v, s in latent_sources.items()}
    df_lat = cross_view_matrix(lat_m, lat_s, split=split, n_pairs=n_pairs, seed=seed,
                               progress=None if progress is None else (lambda f, m: progress(f / 2 if image_models else f, m)))
    paths = {"latent": out_dir / "cross_view_latent.csv"}
    df_img = None
    if image_models:
        if not image_sources:
            raise ValueError("image_models were given without image_sources (data sets to evaluate them on)")
        img_m = {v: _as_model(m) for v, m in image_models.items()}
        img_s = {}
        for v, s in image_sources.items():
            if not hasattr(s, "get_frames"):
                s = ImagePairSource(s if isinstance(s, EchoNetDataset) else EchoNetDataset.open(s), size=image_size, seed=seed)
            img_s[v] = s
        df_img = cross_view_matrix(img_m, img_s, split=split, n_pairs=n_pairs, seed=seed,
                                   progress=None if progress is None else (lambda f, m: progress(0.5 + f / 2, m)))
        paths["image"] = out_dir / "cross_view_image.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(paths["latent"], df_lat.to_csv())
    if df_img is not None:
        write_text(paths["image"], df_img.to_csv())
    paths["figure"] = out_dir / "cross_view.html"
    with atomic_path(paths["figure"]) as tmp:
        cross_view_figure(df_lat, df_img).write_html(tmp, include_plotlyjs=True, full_html=True)
    return paths
