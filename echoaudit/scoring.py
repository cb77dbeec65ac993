"""Scoring a set of videos against a workspace's training index: what the build does for
the real held-out videos and for each synthetic set (:func:`audit_synthetic_set`), the
clips they are scored on (:func:`clip_load_kwargs`), the held-out videos given temporal
curves (:func:`temporal_sample`) and the re-ID ROC of held-out frame pairs. Split out of
:mod:`echoaudit.build`, which re-exports these names."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from echoaudit.audit.temporal import sample_spread_over_patients
from echoaudit.data.clips import ClipSpec
from echoaudit.engine import AuditEngine
from echoaudit.fileio import atomic_path
from echoaudit.workspace import clip_source_frames

__all__ = ["SetAudit", "audit_synthetic_set", "embed_video_frames", "clip_load_kwargs", "temporal_sample"]

Progress = Callable[[float, str], None]


def embed_video_frames(vae, reid, frames: np.ndarray) -> np.ndarray:
    """(T, H, W) in [0, 1] -> (T, D) re-ID embeddings of the VAE latents."""
    with torch.no_grad():
        return reid.embed(vae.encode(frames)).numpy().astype(np.float32)


def clip_load_kwargs(clip: ClipSpec | None, frame_stride: int) -> tuple[dict, int | None]:
    """How to read a video as the engine queries a clip of ``clip``: (``dataset.load``
    keyword arguments, how many of the loaded frames to keep).

    ``load(fps=clip.fps, frame_step=s)[:ceil(clip.frames / s)]`` equals
    ``conform_clip(frames, fps, clip)[::s]`` (resample to the clip's rate, keep its first
    frames, query every s-th), but decodes only the frames queried when no resampling is
    needed. ``clip`` None: every s-th frame of the video as stored, all of them.
    """
    if clip is None:
        return {"frame_step": int(frame_stride)}, None
    return {"fps": float(clip.fps), "frame_step": int(frame_stride)}, -(-int(clip.frames) // int(frame_stride))


def temporal_sample(dataset, n: int, seed: int) -> list[str]:
    """The held-out videos given temporal curves: a seeded sample of ``n`` spread over
    patients (:func:`~echoaudit.audit.temporal.sample_spread_over_patients`), so the real
    curves are not the first rows of the FileList (a handful of patients). ``n`` = 0: none.

    Raises:
        ValueError: ``n`` not an integer >= 0 (or a bad seed).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"temporal_heldout must be an integer >= 0 (held-out videos given curves), got {n!r}")
    if n == 0 or len(dataset) == 0:
        return []
    return sample_spread_over_patients(dataset.names, [str(p) for p in dataset.patients], int(n), seed=seed)


def _save_parquet(df: pd.DataFrame, path: Path) -> str:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return str(path)


@dataclass
class SetAudit:
    """What :func:`audit_synthetic_set` computes for one set of V query videos.

    Attributes:
        scores: long table (SCORE_COLUMNS), each video's ``top`` best training videos.
        temporal: long table set / video / frame / first / correlation, one row per
            queried frame of each video given curves (empty when none is).
        embeddings: V rows set / video / emb: the unit-normalised mean frame embedding.
        first_frames: V rows set / video / emb: the (D,) float32 embedding of the video's
            first frame (frame 0 as stored: every clip starts there).
    """

    scores: pd.DataFrame
    temporal: pd.DataFrame
    embeddings: pd.DataFrame
    first_frames: pd.DataFrame


def audit_synthetic_set(engine: AuditEngine, dataset, set_name: str, *, top: int = 10,
                        temporal_videos: Collection[str] | None = None, progress: Progress | None = None,
                        frame_embeddings: dict[str, np.ndarray] | None = None,
                        clip: ClipSpec | None = None) -> SetAudit:
    """Score every video of ``dataset`` against the training set (see :class:`SetAudit`).

    ``temporal_videos``: the names of the videos given temporal curves (None: every video).
    ``frame_embeddings``: if given, filled with each video's (T', D) frame embeddings.
    ``clip``: score each video conformed to this clip spec (:func:`clip_load_kwargs`);
    None scores the videos as stored. Frame numbers in both tables (``best_query_frame``,
    ``frame``) are frames of the stored video either way (:func:`clip_source_frames`, from
    the FileList's FPS and NumberOfFrames), so frame / FPS is the time in the video.
    """
    from echoaudit.data.prefetch import VideoPrefetcher

    scores, temporal, embs, firsts = [], [], [], []
    wanted = None if temporal_videos is None else {str(v) for v in temporal_videos}
    n = len(dataset)
    stride = engine.config.frame_stride
    load_kwargs, keep = clip_load_kwargs(clip, stride)
    # Only every frame_stride-th frame is scored: only those are decoded.
    with VideoPrefetcher(dataset, size=engine.config.size, **load_kwargs) as videos:
        for i in tqdm(range(n), desc=f"auditing {set_name}", unit="video", leave=False):
            name = dataset.names[i]
            emb = engine.embed_frames(videos.get(i).frames[:keep])
            if frame_embeddings is not None:
                frame_embeddings[name] = emb
            frames = _stored_frames(dataset.row(i), clip, stride, len(emb))
            per_train = engine.score_embeddings(emb, name).per_train.head(top)
            scores.append(per_train.assign(best_query_frame=frames[per_train["best_query_frame"].to_numpy() // stride]))
            if wanted is None or name in wanted:
                curves = engine.temporal_curves(emb)
                temporal.append(pd.DataFrame({
                    "set": set_name, "video": name, "frame": frames,
                    "first": curves["first"], "correlation": curves["correlation"],
                }))
            m = emb.mean(axis=0)
            embs.append({"set": set_name, "video": name, "emb": (m / (np.linalg.norm(m) + 1e-8)).tolist()})
            firsts.append({"set": set_name, "video": name, "emb": emb[0].astype(np.float32).tolist()})
            if progress is not None:
                progress((i + 1) / n, f"{set_name}: {i + 1}/{n} videos")
    return SetAudit(scores=pd.concat(scores, ignore_index=True),
                    temporal=pd.concat(temporal, ignore_index=True) if temporal else pd.DataFrame(),
                    embeddings=pd.DataFrame(embs), first_frames=pd.DataFrame(firsts))


def _stored_frames(row: pd.Series, clip: ClipSpec | None, stride: int, n: int) -> np.ndarray:
    """(n,) frame numbers in the stored video of the n queried frames of its clip."""
    fps = float(row.get("FPS", np.nan))
    if clip is None or not np.isfinite(fps) or fps <= 0:  # as stored (or no rate to map from)
        return np.arange(n) * stride
    n_frames = int(row.get("NumberOfFrames", -1))
    source = clip_source_frames(fps, clip, n_frames if n_frames > 0 else None)[::stride]
    if len(source) < n:  # the FileList's NumberOfFrames was short of the file: extend at the clip's rate
        source = clip_source_frames(fps, clip, None)[::stride]
    return source[:n]


def _reid_roc(engine: AuditEngine, dataset, emb_by_video: dict[str, np.ndarray], *, n_pairs: int, seed: int) -> pd.DataFrame:
    """Same-patient probability of frame pairs of held-out patients: labels + scores."""
    rng = np.random.default_rng(seed)
    names = [n for n in dataset.names if n in emb_by_video]
    patients = dict(zip(dataset.names, dataset.patients))
    by_patient: dict[str, list[str]] = {}
    for v in names:
        by_patient.setdefault(patients[v], []).append(v)
    q, t, y = [], [], []
    for _ in range(n_pairs):
        a = names[rng.integers(len(names))]
        if rng.random() < 0.5:
            b = by_patient[patients[a]][rng.integers(len(by_patient[patients[a]]))]
            label = 1
        else:
            b = names[rng.integers(len(names))]
            label = int(patients[a] == patients[b])
        ea, eb = emb_by_video[a], emb_by_video[b]
        i, j = rng.integers(len(ea)), rng.integers(len(eb))
        if a == b and len(ea) > 1:
            while j == i:
                j = rng.integers(len(eb))
        q.append(ea[i]), t.append(eb[j]), y.append(label)
    p = engine._head(np.asarray(q, np.float32), np.asarray(t, np.float32))
    return pd.DataFrame({"label": y, "score": p})
