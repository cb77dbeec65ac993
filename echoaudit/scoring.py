"""Scoring a set of videos against a workspace's training index: what the build does for
the real held-out videos and for each synthetic set (:func:`audit_synthetic_set`), the
clips they are scored on (:func:`clip_load_kwargs`), the held-out videos given temporal
curves (:func:`temporal_sample`) and the re-ID ROC of held-out frame pairs. Split out of
:mod:`echoaudit.build`, which re-exports these names.

A large set (EchoNet scale: 10,000-100,000 videos at a few videos a second) is scored in
chunks that survive an interruption (:func:`audit_synthetic_set_chunked`, fingerprinted by
:func:`set_audit_fingerprint`): the same layout and rules as the resumable index build
(:func:`echoaudit.index.build_index_resumable`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from echoaudit.audit.temporal import sample_spread_over_patients
from echoaudit.data.clips import ClipSpec
from echoaudit.engine import AuditEngine
from echoaudit.fileio import atomic_dir, atomic_path, read_json, remove_tree, sha256_file, write_json
from echoaudit.workspace import clip_source_frames

__all__ = ["SetAudit", "audit_synthetic_set", "audit_synthetic_set_chunked", "set_audit_fingerprint",
           "open_set_partial", "score_chunk", "write_set_chunk", "latent_store_for",
           "train_latent_store", "stored_latents", "embed_video_latents",
           "embed_video_frames", "clip_load_kwargs", "temporal_sample"]

Progress = Callable[[float, str], None]


def embed_video_frames(vae, reid, frames: np.ndarray) -> np.ndarray:
    """(T, H, W) in [0, 1] -> (T, D) re-ID embeddings of the VAE latents."""
    return embed_video_latents(reid, vae.encode(frames).numpy())


def embed_video_latents(reid, latents: np.ndarray) -> np.ndarray:
    """(T, C, h, w) latents of one video -> (T, D) re-ID embeddings, in one batch (as the
    training index embeds a video, whether its latents were just encoded or stored)."""
    from echoaudit.engine import model_device

    with torch.no_grad():
        return reid.embed(torch.from_numpy(np.asarray(latents, np.float32)).to(model_device(reid))).cpu().numpy() \
            .astype(np.float32)


def train_latent_store(root: str | Path, train, *, vae_sha256: str, engine_config):
    """The :class:`~echoaudit.latent_store.LatentStore` at ``root/latents/train`` of the
    TRAIN videos' indexed frames (every ``index_stride``-th)."""
    from echoaudit.latent_store import LatentStore

    return LatentStore(Path(root) / "latents" / "train", train, vae_sha256=vae_sha256, size=engine_config.size,
                       load_kwargs={"frame_step": int(engine_config.index_stride)}, keep=None)


def stored_latents(store, videos, i: int, encode) -> np.ndarray:
    """Video ``i``'s latents from ``store`` when there, else ``encode(frames)`` of
    ``videos.get(i)`` (a VideoPrefetcher), stored on the way."""
    if store.has(i):
        return store.get(i)
    lat = encode(videos.get(i).frames)
    store.put(i, lat)
    return lat


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


def latent_store_for(root: str | Path, key: str, dataset, *, vae_sha256: str, engine_config,
                     clip: ClipSpec | None):
    """The :class:`~echoaudit.latent_store.LatentStore` at ``root/latents/<key>`` of
    ``dataset`` read as the audit reads a query video: conformed to ``clip``, every
    ``frame_stride``-th frame (:func:`clip_load_kwargs`)."""
    from echoaudit.latent_store import LatentStore

    load_kwargs, keep = clip_load_kwargs(clip, engine_config.frame_stride)
    return LatentStore(Path(root) / "latents" / key, dataset, vae_sha256=vae_sha256, size=engine_config.size,
                       load_kwargs=load_kwargs, keep=keep)


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
                        clip: ClipSpec | None = None, latents=None) -> SetAudit:
    """Score every video of ``dataset`` against the training set (see :class:`SetAudit`).

    ``temporal_videos``: the names of the videos given temporal curves (None: every video).
    ``frame_embeddings``: if given, filled with each video's (T', D) frame embeddings.
    ``latents``: a :class:`~echoaudit.latent_store.LatentStore` of ``dataset`` read this
    way (:func:`latent_store_for`): stored latents are used, missing ones stored.
    ``clip``: score each video conformed to this clip spec (:func:`clip_load_kwargs`);
    None scores the videos as stored. Frame numbers in both tables (``best_query_frame``,
    ``frame``) are frames of the stored video either way (:func:`clip_source_frames`, from
    the FileList's FPS and NumberOfFrames), so frame / FPS is the time in the video.
    """
    from echoaudit.data.prefetch import VideoPrefetcher

    wanted = None if temporal_videos is None else {str(v) for v in temporal_videos}
    n = len(dataset)
    load_kwargs, _ = clip_load_kwargs(clip, engine.config.frame_stride)
    # Only every frame_stride-th frame is scored: only those are decoded.
    with VideoPrefetcher(dataset, size=engine.config.size, **load_kwargs) as videos:
        rows = []
        for i in tqdm(range(n), desc=f"auditing {set_name}", unit="video", leave=False):
            rows.append(_score_video(engine, videos, dataset, i, set_name, top=top, wanted=wanted, clip=clip,
                                     frame_embeddings=frame_embeddings, latents=latents))
            if progress is not None:
                progress((i + 1) / n, f"{set_name}: {i + 1}/{n} videos")
    return _set_audit(rows)


_VideoRows = tuple[pd.DataFrame, "pd.DataFrame | None", dict, dict]


def _score_video(engine: AuditEngine, videos, dataset, i: int, set_name: str, *, top: int,
                 wanted: set[str] | None, clip: ClipSpec | None,
                 frame_embeddings: dict[str, np.ndarray] | None = None, latents=None) -> _VideoRows:
    """Video ``i`` of ``dataset`` (decoded by ``videos``, a VideoPrefetcher): its rows of
    the four :class:`SetAudit` tables (scores, temporal or None, embedding, first frame).
    ``latents``: the data set's :class:`~echoaudit.latent_store.LatentStore` (read with
    the same clip and stride): its latents are used when stored, and stored when not."""
    stride = engine.config.frame_stride
    _, keep = clip_load_kwargs(clip, stride)
    name = dataset.names[i]
    if latents is None:
        emb = engine.embed_frames(videos.get(i).frames[:keep])
    else:  # encoded before: no decoding, no VAE
        emb = engine.embed_latents(stored_latents(latents, videos, i, lambda f: engine.encode(f[:keep])))
    if frame_embeddings is not None:
        frame_embeddings[name] = emb
    frames = _stored_frames(dataset.row(i), clip, stride, len(emb))
    per_train = engine.score_embeddings(emb, name).per_train.head(top)
    scores = per_train.assign(best_query_frame=frames[per_train["best_query_frame"].to_numpy() // stride])
    temporal = None
    if wanted is None or name in wanted:
        curves = engine.temporal_curves(emb)
        temporal = pd.DataFrame({
            "set": set_name, "video": name, "frame": frames,
            "first": curves["first"], "correlation": curves["correlation"],
        })
    m = emb.mean(axis=0)
    return (scores, temporal,
            {"set": set_name, "video": name, "emb": (m / (np.linalg.norm(m) + 1e-8)).tolist()},
            {"set": set_name, "video": name, "emb": emb[0].astype(np.float32).tolist()})


def _set_audit(rows: list[_VideoRows]) -> SetAudit:
    """The :class:`SetAudit` of videos' rows (:func:`_score_video`), in their order."""
    temporal = [r[1] for r in rows if r[1] is not None]
    return SetAudit(scores=pd.concat([r[0] for r in rows], ignore_index=True),
                    temporal=pd.concat(temporal, ignore_index=True) if temporal else pd.DataFrame(),
                    embeddings=pd.DataFrame([r[2] for r in rows]), first_frames=pd.DataFrame([r[3] for r in rows]))


def _join_audits(parts: list[SetAudit]) -> SetAudit:
    """One :class:`SetAudit` of consecutive parts (chunks), equal to the audit of all their
    videos at once: a part without temporal curves adds none."""
    temporal = [p.temporal for p in parts if len(p.temporal.columns)]
    return SetAudit(scores=pd.concat([p.scores for p in parts], ignore_index=True),
                    temporal=pd.concat(temporal, ignore_index=True) if temporal else pd.DataFrame(),
                    embeddings=pd.concat([p.embeddings for p in parts], ignore_index=True),
                    first_frames=pd.concat([p.first_frames for p in parts], ignore_index=True))


# --------------------------------------------------------------------------- resumable


#: The tables of a chunk: SetAudit field -> file in the chunk's folder.
_CHUNK_TABLES = {"scores": "scores.parquet", "temporal": "temporal.parquet",
                 "embeddings": "embeddings.parquet", "first_frames": "first_frames.parquet"}
_CHUNK_JSON = "chunk.json"
_PARTIAL_JSON = "manifest.json"


def set_audit_fingerprint(engine: AuditEngine, dataset, set_name: str, *, index_fingerprint: dict,
                          top: int, clip: ClipSpec | None, temporal_videos: Collection[str] | None) -> dict:
    """What the scores of ``dataset`` as set ``set_name`` depend on, for
    :func:`audit_synthetic_set_chunked`: the training index (its fingerprint: models and
    training data), the engine config, the clip spec, ``top``, the set name, the sha256 of
    the set's FileList.csv, its videos (name, size and modification time of each file: a
    set generated again under the same FileList) and the videos given temporal curves
    (None: all of them)."""
    from echoaudit.latent_store import videos_digest

    filelist = Path(dataset.root) / "FileList.csv"
    return {
        "index": index_fingerprint,
        "engine": asdict(engine.config),
        "clip": None if clip is None else clip.to_dict(),
        "top": int(top),
        "set": str(set_name),
        "filelist_sha256": sha256_file(filelist) if filelist.is_file() else None,
        "n_videos": len(dataset),
        "videos": videos_digest(dataset),
        "temporal_videos": None if temporal_videos is None else sorted(str(v) for v in temporal_videos),
    }


def emb_as_lists(df: pd.DataFrame) -> pd.DataFrame:
    """``df["emb"]`` back as lists of floats, as scoring makes them (parquet gives arrays); in place."""
    df["emb"] = pd.Series([np.asarray(e).tolist() for e in df["emb"]], index=df.index, dtype=object)
    return df


def _read_set_chunk(path: Path, fingerprint: dict, first: int, names: list[str]) -> SetAudit | None:
    """A finished chunk of videos ``names`` (from position ``first``), or None when it is
    missing, unreadable, damaged or made from other inputs."""
    try:
        info = read_json(path / _CHUNK_JSON, what="scoring chunk record", expect=dict)
        if info.get("fingerprint") != fingerprint or info.get("first") != first or info.get("videos") != names:
            return None
        tables = {k: pd.read_parquet(path / f) for k, f in _CHUNK_TABLES.items()}
        for k in ("embeddings", "first_frames"):
            df = tables[k]
            if list(df.columns) != ["set", "video", "emb"] or df["video"].tolist() != names:
                return None
            emb_as_lists(df)
        wanted = set(names)
        if len(tables["scores"]) != info.get("score_rows") or not set(tables["scores"]["query"]) <= wanted:
            return None
        temporal = tables["temporal"]
        if len(temporal) != info.get("temporal_rows") or (len(temporal) and not set(temporal["video"]) <= wanted):
            return None
    except Exception:  # any damage means: score this chunk again
        return None
    return SetAudit(**tables)


def open_set_partial(chunk_dir: Path, set_name: str, names: list[str], chunk: int, fingerprint: dict,
                     note: Progress) -> tuple[list[tuple[int, int]], list[SetAudit | None]]:
    """The chunks of a set's partial scoring in ``chunk_dir``: its record written (what
    was there discarded when made from other inputs), each chunk's (first, end) positions
    and its :class:`SetAudit` when finished, else None. Shared by
    :func:`audit_synthetic_set_chunked` and the Ray path (:mod:`echoaudit.raypath`)."""
    from echoaudit.errors import EchoAuditError
    from echoaudit.index import _chunk_name

    n = len(names)
    if n < 1:
        raise EchoAuditError(f"{set_name}: no videos to score")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise EchoAuditError(f"chunk must be an integer >= 1; got {chunk!r}")
    chunk = int(chunk)
    record = {"fingerprint": fingerprint, "n_items": n, "chunk": chunk}
    if chunk_dir.exists():
        try:
            old = read_json(chunk_dir / _PARTIAL_JSON, what="partial scores record", expect=dict)
        except Exception:
            old = None
        if old != record:  # other models / set / settings: those scores are of no use
            remove_tree(chunk_dir)
            note(0.0, f"{set_name}: discarded partial scores made from other inputs; starting over")
    write_json(chunk_dir / _PARTIAL_JSON, record)
    bounds = [(c * chunk, min((c + 1) * chunk, n)) for c in range(-(-n // chunk))]
    parts = [_read_set_chunk(chunk_dir / _chunk_name(c), fingerprint, a, names[a:b]) for c, (a, b) in enumerate(bounds)]
    return bounds, parts


def score_chunk(engine: AuditEngine, videos, dataset, a: int, b: int, set_name: str, *, top: int,
                wanted: set[str] | None, clip: ClipSpec | None, tick: Callable[[], None] = lambda: None,
                latents=None) -> SetAudit:
    """The :class:`SetAudit` of videos ``a`` .. ``b - 1`` of ``dataset`` (decoded by
    ``videos``, a VideoPrefetcher made with :func:`clip_load_kwargs`); ``tick()`` after each."""
    rows = []
    for i in range(a, b):
        rows.append(_score_video(engine, videos, dataset, i, set_name, top=top, wanted=wanted, clip=clip,
                                 latents=latents))
        tick()
    return _set_audit(rows)


def write_set_chunk(chunk_dir: Path, c: int, part: SetAudit, fingerprint: dict, first: int,
                    names: list[str]) -> SetAudit:
    """Write finished chunk ``c`` (videos ``names`` from position ``first``) atomically."""
    from echoaudit.index import _chunk_name

    with atomic_dir(chunk_dir / _chunk_name(c)) as tmp:
        for k, f in _CHUNK_TABLES.items():
            getattr(part, k).to_parquet(tmp / f, index=False)
        write_json(tmp / _CHUNK_JSON, {"fingerprint": fingerprint, "first": first, "videos": names,
                                       "score_rows": len(part.scores), "temporal_rows": len(part.temporal)})
    return part


def audit_synthetic_set_chunked(engine: AuditEngine, dataset, set_name: str, *, chunk_dir: str | Path,
                                fingerprint: dict, chunk: int = 256, top: int = 10,
                                temporal_videos: Collection[str] | None = None, progress: Progress | None = None,
                                clip: ClipSpec | None = None, latents=None) -> SetAudit:
    """:func:`audit_synthetic_set`, scored in chunks of ``chunk`` videos (in dataset order)
    that a later call resumes from; the result is the same DataFrames.

    Each finished chunk is written atomically to ``chunk_dir/chunk_NNNNNN/``: the four
    tables of its videos (scores, temporal, embeddings, first_frames .parquet) and
    ``chunk.json`` (the fingerprint, the chunk's first position, its video names, row
    counts). ``chunk_dir/manifest.json`` records the fingerprint, the number of videos and
    ``chunk``. A call with the same of these reuses the finished chunks and scores only
    the others; a chunk that is damaged or does not match is scored again; when the
    record differs (another fingerprint, set size or chunk size) everything under
    ``chunk_dir`` is discarded first. ``fingerprint``: what the scores depend on, usually
    :func:`set_audit_fingerprint` (a JSON-able dict). The caller removes ``chunk_dir`` once
    it has stored the result.

    Progress: a tqdm bar over videos, and ``progress(frac, message)`` over the whole set
    ("resuming: N of M videos already scored" when chunks are reused).

    Raises:
        EchoAuditError: an empty data set or ``chunk`` < 1.
    """
    from echoaudit.data.prefetch import VideoPrefetcher
    from echoaudit.index import _normalize_fingerprint

    n = len(dataset)
    chunk_dir = Path(chunk_dir)
    fingerprint = _normalize_fingerprint(fingerprint)
    note = progress or (lambda frac, msg: None)
    names = list(dataset.names)
    bounds, parts = open_set_partial(chunk_dir, set_name, names, chunk, fingerprint, note)
    done = sum(b - a for (a, b), p in zip(bounds, parts) if p is not None)
    if done:
        note(done / n, f"resuming: {done} of {n} videos already scored")

    wanted = None if temporal_videos is None else {str(v) for v in temporal_videos}
    load_kwargs, _ = clip_load_kwargs(clip, engine.config.frame_stride)
    with VideoPrefetcher(dataset, size=engine.config.size, **load_kwargs) as videos, \
            tqdm(total=n, initial=done, desc=f"auditing {set_name}", unit="video", leave=False) as bar:
        scored = done

        def tick() -> None:
            nonlocal scored
            scored += 1
            bar.update(1)
            note(scored / n, f"{set_name}: {scored}/{n} videos")

        for c, (a, b) in enumerate(bounds):
            if parts[c] is not None:
                continue
            part = score_chunk(engine, videos, dataset, a, b, set_name, top=top, wanted=wanted, clip=clip, tick=tick,
                               latents=latents)
            parts[c] = write_set_chunk(chunk_dir, c, part, fingerprint, a, names[a:b])
    return _join_audits(parts)


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
