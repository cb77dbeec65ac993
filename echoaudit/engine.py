"""The audit engine: embed videos with the VAE + re-ID backbone, shortlist training frames
with the FAISS index, and rescore the shortlisted pairs with the siamese head.

For a query video (every ``frame_stride``-th frame):

1. encode its frames to latents (VAE) and embed them (re-ID backbone, unit vectors);
2. per query frame, the ``k`` nearest training frames by inner product (FAISS), widened
   until they come from at least ``rescore_videos`` different training videos (a long
   video's many similar frames cannot fill the shortlist alone);
3. the head's same-patient logit for each shortlisted (query frame, training frame): the
   shortlisted training videos, ranked by their best pair;
4. the ``rescore_videos`` best of them are rescored on *every* indexed frame: per query
   frame q, ``c_v(q) = max_f logit(q, f)`` over video v's frames (the curve), and

   * ``score`` (the clip score) = ``sigmoid(mean_q c_v(q))``: how well video v matches the
     query *throughout*. A copy of v (shifted, re-encoded, reversed, cropped...) matches v
     at every frame; a real look-alike of another patient matches at a few frames, which
     is what a best-over-all-frames score rewards. On the copy-attack benchmark this
     raised the disguised copies flagged at a 5 % false-flag rate from 93 % to 97 %;
   * ``score_peak`` = ``sigmoid(max_q c_v(q))``, the best single frame pair (the paper's
     frame-level rule);
   * ``score_robust`` = mean of the top ``robust_top`` share of ``sigmoid(c_v)``.

Probabilities are float64 ``expit`` of the head's logits: near 1 they keep the differences
the logit scale of the dashboard shows (``echoaudit.audit.scale``).

The exact mode runs the head on every (query frame, indexed training frame) pair, to check
the shortlist. The published EchoNet-Synthetic scorer (max Pearson correlation of
embeddings) is ``pearson_scores``: an exact FAISS search over centred, normalised vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from echoaudit.index import EmbeddingIndex, IndexConfig, build_index_resumable, center_normalize

__all__ = ["EngineConfig", "VideoScores", "AuditEngine", "build_training_index", "index_vectors",
           "index_item_metadata", "SCORE_COLUMNS"]

# The shortlist widens (see AuditEngine._shortlist) to at most this many frames per query frame.
MAX_SHORTLIST = 4096
SCORE_COLUMNS = ["query", "train_video", "train_patient", "score", "score_peak", "score_robust", "best_query_frame",
                 "best_train_frame"]


@dataclass(frozen=True)
class EngineConfig:
    frame_stride: int = 2  # query every k-th frame of a video
    index_stride: int = 4  # index every k-th frame of each training video
    k: int = 32  # shortlist: nearest training frames per query frame
    robust_top: float = 0.1  # robust clip score: mean of the top 10 % of frames
    rescore_videos: int = 16  # shortlisted videos rescored on all their frames (the clip score)
    batch_size: int = 512
    size: int = 112  # frame side the VAE takes; videos are resized to it

    def __post_init__(self):
        if self.frame_stride < 1 or self.index_stride < 1:
            raise ValueError(f"strides must be >= 1; got frame_stride={self.frame_stride}, index_stride={self.index_stride}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1; got {self.k}")
        if not 0 < self.robust_top <= 1:
            raise ValueError(f"robust_top must be in (0, 1]; got {self.robust_top}")
        if self.rescore_videos < 1:
            raise ValueError(f"rescore_videos must be >= 1; got {self.rescore_videos}")
        # Videos are resized to size x size before encoding: a manifest's 2**40 must not reach it.
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or not 8 <= self.size <= 4096:
            raise ValueError(f"size (frame side in pixels) must be an integer from 8 to 4096; got {self.size!r}")


@dataclass
class VideoScores:
    """One query video against the training set.

    Attributes:
        name: the query's name.
        per_train: DataFrame with SCORE_COLUMNS, one row per rescored training video (the
            ``rescore_videos`` best shortlisted; every video in exact mode), best first.
        frame_curve: (T',) float64, at each queried frame the best head probability over all
            shortlisted and rescored training frames.
        frames: (T',) int, the query frame numbers behind ``frame_curve``.
        head_evaluations: how many (query frame, training frame) pairs the head scored.
        curves: training video -> (T',) float64 per-frame best probability against every
            indexed frame of that video (rescored videos).
    """

    name: str
    per_train: pd.DataFrame
    frame_curve: np.ndarray
    frames: np.ndarray
    head_evaluations: int
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def best(self) -> pd.Series:
        return self.per_train.iloc[0]


def model_device(model) -> torch.device:
    """Where a torch model's weights are (the CPU here; a GPU in a Ray worker that has one)."""
    p = next(model.parameters(), None)
    return torch.device("cpu") if p is None else p.device


class AuditEngine:
    """Scores query videos against an indexed training set (see the module docstring)."""

    def __init__(self, vae, reid, index: EmbeddingIndex, train_embeddings: np.ndarray,
                 config: EngineConfig = EngineConfig()):
        if len(train_embeddings) != index.ntotal:
            raise ValueError(f"train_embeddings has {len(train_embeddings)} rows but the index holds {index.ntotal}")
        self.vae, self.reid, self.index, self.config = vae, reid.eval(), index, config
        self.train_embeddings = np.ascontiguousarray(train_embeddings, dtype=np.float32)
        meta = index.metadata
        self._video = meta["video"].astype(str).to_numpy()
        self._patient = meta["patient"].astype(str).to_numpy()
        self._frame = meta["frame"].to_numpy()
        # Precomputed once: a query's cost then depends on the search and the rescoring only.
        order = np.argsort(self._video, kind="stable")
        uniq, starts = np.unique(self._video[order], return_index=True)
        self._rows_of = dict(zip(uniq, np.split(order, starts[1:])))
        self._patient_of = dict(zip(self._video, self._patient))
        self._pearson: EmbeddingIndex | None = None

    # --- embeddings ---------------------------------------------------------------------
    @torch.no_grad()
    def embed_latents(self, latents) -> np.ndarray:
        """(T, C, h, w) scaled latents -> (T, D) unit embeddings."""
        z = torch.as_tensor(np.asarray(latents, dtype=np.float32))
        dev = model_device(self.reid)
        out = [self.reid.embed(z[i : i + self.config.batch_size].to(dev)).cpu()
               for i in range(0, len(z), self.config.batch_size)]
        return torch.cat(out).numpy().astype(np.float32)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W) frames in [0, 1] -> (T, C, h, w) float32 scaled VAE latents."""
        return self.vae.encode(frames).numpy()

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W) frames in [0, 1] -> (T, D) embeddings (VAE encode, then re-ID)."""
        return self.embed_latents(self.encode(frames))

    def query_frames(self, n_frames: int) -> np.ndarray:
        return np.arange(0, n_frames, self.config.frame_stride)

    # --- scoring ------------------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, q: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(B,) float64 head logits of embedding pairs, in chunks."""
        dev = model_device(self.reid)
        out = [self.reid.head_logits(torch.from_numpy(q[i : i + 65536]).to(dev), torch.from_numpy(t[i : i + 65536]).to(dev))
               .cpu().numpy().astype(np.float64) for i in range(0, len(q), 65536)]
        return np.concatenate(out) if out else np.zeros(0, np.float64)

    @torch.no_grad()
    def _head(self, q: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(B,) float64 same-patient probabilities of embedding pairs.

        The head's logits go through float64 ``expit``: the probabilities of real pairs sit
        at 0.99+, where float32 (step 6e-8 below 1) would merge them and a logit of 17 or
        more would read as exactly 1."""
        from scipy.special import expit

        dev = model_device(self.reid)
        z = self.reid.head_logits(torch.from_numpy(q).to(dev), torch.from_numpy(t).to(dev)).cpu()
        return expit(z.numpy().astype(np.float64))

    def _shortlist(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query frame, indexed frame) pairs of the shortlist: each query frame's ``k``
        nearest indexed frames, widened (k x 4 at a time, up to ``MAX_SHORTLIST`` frames)
        until they come from at least ``rescore_videos`` different training videos, so the
        shortlist cannot collapse onto the many frames of one or two long videos."""
        n, want = self.index.ntotal, min(self.config.rescore_videos, len(self._rows_of))
        k = min(self.config.k, n)
        # One search answers the usual widenings: its results are sorted, so the first k of
        # them are the k nearest (flat and IVF; HNSW's wider beam finds at least as good
        # ones). A search costs about the same for k = 32 or 512 (IVF at 330k frames: 4.7
        # and 6.2 ms); searching again at each widening cost 2-3 of them a query.
        _, fetched = self.index.search(emb, min(n, MAX_SHORTLIST, 16 * k))
        while True:
            if k > fetched.shape[1]:
                _, fetched = self.index.search(emb, min(n, MAX_SHORTLIST))
            ids = fetched[:, :k]
            ti = ids.reshape(-1)
            qi = np.repeat(np.arange(len(emb)), ids.shape[1])
            keep = ti >= 0
            qi, ti = qi[keep], ti[keep]
            if k >= min(n, MAX_SHORTLIST) or len(np.unique(self._video[ti])) >= want:
                return qi, ti
            k = min(n, MAX_SHORTLIST, 4 * k)

    def score_embeddings(self, emb: np.ndarray, name: str = "query", *, exact: bool = False,
                         keep_curves: bool = False) -> VideoScores:
        """Score (T, D) embeddings of one video's frames (already strided by the caller).

        ``exact``: every indexed frame is a candidate and every training video is rescored
        (to check the shortlist)."""
        from scipy.special import expit

        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.index.dim or len(emb) == 0:
            raise ValueError(f"embeddings must be (T, {self.index.dim}) with T >= 1; got {emb.shape}")
        t = len(emb)
        # 1. Shortlist: the k nearest indexed frames of each query frame, scored by the head.
        if exact or self.config.rescore_videos >= len(self._rows_of):
            # every training video is rescored anyway (exact mode, or no more videos than
            # rescore_videos): a shortlist would add head calls and change nothing
            candidates = np.array(sorted(self._rows_of))
            n_short, frame_best = 0, np.full(t, -np.inf)
        else:
            qi, ti = self._shortlist(emb)
            z = self._logits(emb[qi], self.train_embeddings[ti])
            n_short = len(z)
            frame_best = np.full(t, -np.inf)
            np.maximum.at(frame_best, qi, z)
            peak = pd.Series(z).groupby(self._video[ti]).max().sort_values(ascending=False, kind="stable")
            candidates = peak.index.to_numpy()[: self.config.rescore_videos]
        # 2. Rescore the candidate videos on all their indexed frames: per-frame curves.
        rows = [self._rows_of[v] for v in candidates]
        all_rows = np.concatenate(rows)
        z = self._logits(np.repeat(emb, len(all_rows), axis=0), np.tile(self.train_embeddings[all_rows], (t, 1)))
        z = z.reshape(t, len(all_rows))
        starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
        curves = np.maximum.reduceat(z, starts, axis=1).T  # (V, t) logits
        arg = np.stack([z[:, a:a + len(r)].argmax(axis=1) for a, r in zip(starts, rows)])  # (V, t)
        frame_best = np.maximum(frame_best, curves.max(axis=0))
        probs = expit(curves)
        n_top = max(1, int(np.ceil(self.config.robust_top * t)))
        best_q = curves.argmax(axis=1)
        per_train = pd.DataFrame({
            "query": name,
            "train_video": candidates,
            "train_patient": [self._patient_of[v] for v in candidates],
            "score": expit(curves.mean(axis=1)),
            "score_peak": probs.max(axis=1),
            "score_robust": -np.sort(-probs, axis=1)[:, :n_top].mean(axis=1),
            "best_query_frame": best_q * self.config.frame_stride,
            "best_train_frame": [self._frame[r[arg[i, q]]] for i, (r, q) in enumerate(zip(rows, best_q))],
        }).sort_values(["score", "score_peak"], ascending=False, kind="stable").reset_index(drop=True)
        curve_of = {v: probs[i] for i, v in enumerate(candidates)} if keep_curves else {}
        return VideoScores(name, per_train, expit(frame_best), np.arange(t) * self.config.frame_stride,
                           int(n_short + z.size), curve_of)

    def score_frames(self, frames: np.ndarray, name: str = "query", **kw) -> VideoScores:
        """Score a (T, H, W) video: every ``frame_stride``-th frame is queried."""
        sel = frames[:: self.config.frame_stride]
        return self.score_embeddings(self.embed_frames(sel), name, **kw)

    def score_latents(self, latents: np.ndarray, name: str = "query", **kw) -> VideoScores:
        sel = np.asarray(latents)[:: self.config.frame_stride]
        return self.score_embeddings(self.embed_latents(sel), name, **kw)

    def score_dataset(self, dataset, *, top: int = 10, latents=None,
                      progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
        """Long table (SCORE_COLUMNS) of each video's ``top`` best training videos.

        ``latents``: optional (V, T, C, h, w) array aligned with ``dataset`` rows (a latent
        cache) to skip decoding and VAE encoding.
        """
        rows = []
        n = len(dataset)
        for i in tqdm(range(n), desc="scoring videos", unit="video", leave=False):
            name = dataset.names[i]
            if latents is not None:
                s = self.score_latents(latents[i], name)
            else:
                s = self.score_frames(dataset.load(i, size=self.config.size).frames, name)
            rows.append(s.per_train.head(top))
            if progress is not None:
                progress((i + 1) / n, f"scored {i + 1}/{n} videos")
        if not rows:
            return pd.DataFrame(columns=SCORE_COLUMNS)
        return pd.concat(rows, ignore_index=True)

    # --- the published scorer and temporal consistency ----------------------------------
    def pearson_scores(self, emb: np.ndarray, name: str = "query", k: int | None = None) -> pd.DataFrame:
        """Published EchoNet-Synthetic scorer: per training video, the max Pearson correlation
        between a query frame's embedding and that video's indexed frames."""
        if self._pearson is None:
            self._pearson = EmbeddingIndex.build(center_normalize(self.train_embeddings), self.index.metadata,
                                                 fingerprint=self.index.fingerprint, config=IndexConfig(kind="flat"))
        k = min(k or self.config.k, self.index.ntotal)
        sims, ids = self._pearson.search(center_normalize(np.asarray(emb, dtype=np.float32)), k)
        df = pd.DataFrame({"train_video": self._video[ids.reshape(-1)], "train_patient": self._patient[ids.reshape(-1)],
                           "pearson": sims.reshape(-1)})
        out = df.groupby(["train_video", "train_patient"], as_index=False)["pearson"].max()
        out.insert(0, "query", name)
        return out.sort_values("pearson", ascending=False, kind="stable").reset_index(drop=True)

    def temporal_curves(self, emb: np.ndarray) -> dict[str, np.ndarray]:
        """Same-patient probability of frame 0 vs every frame, of consecutive frames, and the
        Pearson correlation of each frame's embedding with frame 0's (the paper's measure)."""
        from echoaudit.audit.temporal import embedding_correlation

        emb = np.asarray(emb, dtype=np.float32)
        first = self._head(np.repeat(emb[:1], len(emb), axis=0), emb)
        consecutive = self._head(emb[:-1], emb[1:]) if len(emb) > 1 else np.zeros(0, np.float64)
        return {"first": first, "consecutive": consecutive, "correlation": embedding_correlation(emb)}


def build_training_index(dataset, folder: str | Path, *, embed_video: Callable[[int], np.ndarray],
                         fingerprint: dict, index_stride: int = 4, config: IndexConfig = IndexConfig(),
                         progress=None) -> tuple[EmbeddingIndex, np.ndarray]:
    """Index every ``index_stride``-th frame of each training video.

    ``embed_video(i) -> (T_i, D)`` embeds frames 0, s, 2s, ... (s = ``index_stride``) of
    video ``i``, from the videos or from a latent cache. Resumable: an interrupted build
    continues from the finished chunks. Returns the index and its vectors (the head
    rescoring needs them; ``index_vectors`` gets them back from a loaded index).
    """
    table = dataset.table.reset_index(drop=True)

    def embed_fn(i: int):
        emb = embed_video(i)
        return emb.astype(np.float32), index_item_metadata(table.iloc[i], len(emb), index_stride)

    index = build_index_resumable(folder, len(table), embed_fn, fingerprint=fingerprint, config=config,
                                  progress=progress)
    return index, index_vectors(index)


def index_item_metadata(row: pd.Series, n: int, index_stride: int) -> pd.DataFrame:
    """The index's metadata rows of the ``n`` indexed frames of one training video (its
    FileList row): frames 0, s, 2s, ... (s = ``index_stride``)."""
    return pd.DataFrame({
        "video": str(row["FileName"]), "patient": str(row["PatientID"]),
        "frame": np.arange(n) * index_stride, "split": str(row["Split"]),
        "ef": float(row["EF"]), "view": str(row.get("View", "unknown")),
    })


def index_vectors(index: EmbeddingIndex) -> np.ndarray:
    """All vectors of the index (memory-mapped from the saved index; see ``EmbeddingIndex.vectors``)."""
    return index.vectors()


def config_dict(cfg: EngineConfig) -> dict:
    return asdict(cfg)
