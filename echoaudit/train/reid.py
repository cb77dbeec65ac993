"""Training loop for the re-identification network, in latent or image space.

Pairs come from a *pair source*: an object with ``n_videos``, ``patients`` (V,) str,
``splits`` (V,) str, ``n_frames`` (V,) int, ``n_copies`` (K, the disguised copies per
video; 0 = none), ``augment_stride`` (copies exist for every s-th frame), ``frame_shape``
(C, S, S), ``space`` ("latent" / "image"), ``fingerprint`` (str) and
``get_frames(video_idx, frame_idxs, copy) -> torch (n, C, S, S) float32`` (copy 0 = the
original frames, 1..K = a disguised copy).
:class:`LatentPairSource` reads the latent cache's arrays (never re-encodes);
:class:`ImagePairSource` decodes frames from the AVI files each time, as an image-space
pipeline does for a user, and augments them on the fly.

Pairs (:func:`sample_pairs`) depend only on the source's patients, splits, frame
counts and copies and on the seed, so a latent and an image source of one data set get
the same pairs. Half are positives (same patient): a *copy* (the same video within a few
frames, its second side disguised: what a leaked training video looks like), two frames
of one video at any temporal offset, or frames of two videos of one patient; half are
negatives (different patients). On every kind but the copy, the second frame comes from
a disguised copy ``augmented_fraction`` of the time, so a disguise alone never tells the
classes apart (negatives are disguised as often as positives overall).

Loop (nanoGPT order, one epoch per turn): lr, sample the epoch's pairs, steps
(gather frames -> forward -> BCE-with-logits -> backward -> step), validation ROC AUC on
pairs of VAL patients, ``best/`` when the AUC improves, ``latest/`` + trainer state
every epoch, early stopping after ``patience`` epochs without improvement,
``metrics.json`` with per-epoch seconds (data / compute / validation) and AUC.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from echoaudit.errors import CheckpointError, DatasetError, VideoError
from echoaudit.fileio import write_json
from echoaudit.data.attacks import random_disguise
from echoaudit.models.reid import ReIDNet, load_reid
from echoaudit.train.checkpoint import close_epoch, cosine_lr, load_trainer_state

__all__ = [
    "ReIDTrainConfig",
    "LatentPairSource",
    "ImagePairSource",
    "Pairs",
    "sample_pairs",
    "gather_frames",
    "pair_scores",
    "train_reid",
    "nearest_other_patients",
]

# Config fields that may change when a run is resumed (more epochs, more patience).
_RESUMABLE = ("epochs", "patience")


@dataclass(frozen=True)
class ReIDTrainConfig:
    epochs: int = 60
    pairs_per_epoch: int = 8192  # half positives, half negatives, fresh each epoch
    batch_size: int = 128  # pairs per step (2 x batch_size frames through the backbone)
    lr: float = 1e-3  # peak; cosine to lr / 10 over ``epochs``
    weight_decay: float = 1e-4
    patience: int = 10  # epochs without a better validation AUC before stopping
    width: int = 64
    embed_dim: int = 128
    head_hidden: int = 128
    mirror_invariant: bool = False  # embed a frame and its left-right mirror identically (see ReIDNet; opt-in)
    val_pairs: int = 1024  # fixed pairs of VAL patients, scored after every epoch
    same_video_fraction: float = 0.5  # of non-copy positives: two frames of one video (else two videos of one patient)
    augmented_fraction: float = 0.5  # of non-copy pairs: second frame from a disguised copy
    copy_fraction: float = 0.4  # of positives: disguised copies (same video, within copy_max_offset frames)
    copy_max_offset: int = 4  # frames: a query frame's distance to the nearest indexed frame
    hard_fraction: float = 0.3  # of negatives, from epoch 2: one of the anchor's nearest other-patient videos
    hard_neighbours: int = 5  # how many nearest other-patient videos count as hard
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "pairs_per_epoch", "batch_size", "patience", "width", "embed_dim", "head_hidden"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ReIDTrainConfig.{name} must be an int >= 1; got {v!r}")
        if self.val_pairs < 2:
            raise ValueError(f"ReIDTrainConfig.val_pairs must be >= 2 (a positive and a negative); got {self.val_pairs}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"ReIDTrainConfig.lr must be a finite number > 0; got {self.lr}")
        if not isinstance(self.copy_max_offset, (int, np.integer)) or self.copy_max_offset < 0:
            raise ValueError(f"ReIDTrainConfig.copy_max_offset must be an int >= 0; got {self.copy_max_offset!r}")
        for name in ("same_video_fraction", "augmented_fraction", "copy_fraction", "hard_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"ReIDTrainConfig.{name} must be in [0, 1]; got {v}")


# ---------------------------------------------------------------------------------------
# pair sources


def _video_meta(table: pd.DataFrame, n_videos: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(table) != n_videos:
        raise DatasetError(f"{where}: {n_videos} videos of frames but {len(table)} table rows")
    if "Split" not in table:
        raise DatasetError(f"{where}: the table needs a Split column; it has {list(table.columns)}")
    split = table["Split"].astype(str).str.upper().to_numpy(dtype=str)
    key = "PatientID" if "PatientID" in table else "FileName"  # no PatientID: each video its own patient
    patients = table[key].astype(str).to_numpy(dtype=str)
    return patients, split


class LatentPairSource:
    """Frames from the latent cache's arrays (in memory or memory-mapped .npy).

    Args:
        latents: (V, T, C, h, w) float16/float32 cached latents (``LatentCache.latents``).
        augmented: (V, K, T_a, C, h, w) latents of K disguised copies of every
            ``augment_stride``-th frame, or (V, T, C, h, w) for one copy of every frame
            (older caches), or None.
        augment_stride: frame f of a video is frame f // augment_stride of its copies.
        table: one row per video with Split and PatientID (``LatentCache.table``).
        fingerprint: what the latents were made from (the VAE fingerprint), recorded.
    """

    space = "latent"

    def __init__(self, latents: np.ndarray, augmented: np.ndarray | None, table: pd.DataFrame, *, fingerprint: str = "",
                 augment_stride: int = 1):
        if getattr(latents, "ndim", 0) != 5:
            raise ValueError(f"latents must be (V, T, C, h, w); got shape {getattr(latents, 'shape', None)}")
        if augmented is not None and augmented.ndim == 5:
            if augmented.shape != latents.shape:
                raise ValueError(f"augmented must have the latents' shape {latents.shape}; got {augmented.shape}")
            augmented, augment_stride = augmented[:, None], 1
        if augmented is not None:
            v, t = latents.shape[:2]
            want = (v, augmented.shape[1], len(range(0, t, augment_stride)), *latents.shape[2:])
            if augmented.ndim != 6 or augmented.shape != want:
                raise ValueError(f"augmented must be (V, K, T_a, C, h, w) = {want} for stride {augment_stride}; "
                                 f"got {augmented.shape}")
        if latents.shape[3] != latents.shape[4]:
            raise ValueError(f"latent frames must be square; got {latents.shape[3]}x{latents.shape[4]}")
        self.latents, self.augmented, self.augment_stride = latents, augmented, int(augment_stride)
        self.patients, self.splits = _video_meta(table, latents.shape[0], "latent pair source")
        self.n_frames = np.full(latents.shape[0], latents.shape[1], dtype=np.int64)
        self.fingerprint = fingerprint

    @classmethod
    def from_cache(cls, cache) -> "LatentPairSource":
        """From a ``LatentCache`` or its folder (arrays stay memory-mapped: read per batch)."""
        from echoaudit.latents import LatentCache

        if not isinstance(cache, LatentCache):
            cache = LatentCache.load(cache)
        return cls(cache.latents, cache.augmented, cache.table, fingerprint=cache.vae_fingerprint,
                   augment_stride=cache.augment_stride)

    @property
    def n_videos(self) -> int:
        return int(self.latents.shape[0])

    @property
    def n_copies(self) -> int:
        return 0 if self.augmented is None else int(self.augmented.shape[1])

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.latents.shape[2:])

    def get_frames(self, video_idx: int, frame_idxs, copy: int = 0) -> torch.Tensor:
        """(n, C, h, w) float32 latents of frames ``frame_idxs`` of video ``video_idx``
        (``copy`` 0: the original; k >= 1: disguised copy k, frame f // augment_stride)."""
        idx = np.asarray(frame_idxs, dtype=np.int64)
        copy = int(copy)
        if copy == 0:
            return torch.from_numpy(np.asarray(self.latents[int(video_idx)][idx], dtype=np.float32))
        if not 1 <= copy <= self.n_copies:
            raise ValueError(f"copy must be 0 (original) or 1..{self.n_copies} (the cache's disguised copies); got {copy}")
        arr = self.augmented[int(video_idx), copy - 1]
        return torch.from_numpy(np.asarray(arr[idx // self.augment_stride], dtype=np.float32))


class ImagePairSource:
    """Gray frames decoded from an ``EchoNetDataset``'s videos on every request.

    Only the most recently decoded video is kept (:func:`gather_frames` asks for each
    video of a batch once), as an image-space training pipeline reads its data.
    Disguised frames (any ``copy`` >= 1) get :func:`echoaudit.data.attacks.random_disguise`
    drawn fresh on each request: the same family of edits as the latent cache's copies.

    Args:
        dataset: an ``EchoNetDataset`` (all splits: pairs pick their split themselves).
        size: side of the frames the model sees (frames are resized on load).
        max_frames: use only the first ``max_frames`` frames of each video (the latent
            cache's T, so both spaces draw the same frame indices).
        seed: seed of the augmentation draws.
        n_copies: how many copy numbers pairs draw from (as many as the latent cache has,
            for pairs identical to a latent source's).
    """

    space = "image"

    def __init__(self, dataset, size: int = 112, *, max_frames: int | None = None, seed: int = 0, n_copies: int = 8):
        if not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
            raise ValueError(f"size must be an int in [8, 1024]; got {size!r}")
        self.dataset, self.size = dataset, int(size)
        table = dataset.table
        self.patients, self.splits = _video_meta(table, len(dataset), f"data set {dataset.root}")
        counts = table["NumberOfFrames"].to_numpy(dtype=np.int64) if "NumberOfFrames" in table else np.full(len(table), -1)
        for i in np.flatnonzero(counts < 1):  # not listed: decode once to count
            counts[i] = dataset.load(int(i)).frames.shape[0]
        if max_frames is not None:
            counts = np.minimum(counts, int(max_frames))
        self.n_frames = counts
        self.fingerprint = ""
        self.n_copies = int(n_copies)  # copy numbers pairs may name; each request draws a fresh disguise
        self._rng = np.random.default_rng(seed)
        self._cached: tuple[int, np.ndarray] | None = None

    @property
    def n_videos(self) -> int:
        return len(self.dataset)

    augment_stride = 1  # copies are drawn fresh for any frame

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (1, self.size, self.size)

    def get_frames(self, video_idx: int, frame_idxs, copy: int = 0) -> torch.Tensor:
        """(n, 1, size, size) float32 frames in [0, 1] of video ``video_idx``."""
        v = int(video_idx)
        if self._cached is None or self._cached[0] != v:
            self._cached = None  # drop the previous video before decoding the next
            self._cached = (v, self.dataset.load(v, size=self.size).frames)
        frames = self._cached[1]
        idx = np.asarray(frame_idxs, dtype=np.int64)
        if idx.size and idx.max() >= len(frames):
            raise VideoError(
                f"video {self.dataset.names[v]!r} has {len(frames)} frames; frame {int(idx.max())} was asked for "
                "(NumberOfFrames in FileList.csv is larger than the file)"
            )
        x = frames[idx]
        if copy:
            x = random_disguise(x, self._rng)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)[:, None])


# ---------------------------------------------------------------------------------------
# pairs


@dataclass(frozen=True)
class Pairs:
    """Frame pairs: video (int64), frame (int64) and copy (int64: 0 = original frame, k >= 1
    = disguised copy k) of each side, (P,) each; ``label`` (P,) float32, 1 = same patient."""

    v1: np.ndarray
    f1: np.ndarray
    a1: np.ndarray
    v2: np.ndarray
    f2: np.ndarray
    a2: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, s: slice) -> "Pairs":
        return Pairs(*(getattr(self, f.name)[s] for f in fields(self)))


def sample_pairs(
    source,
    *,
    split: str,
    n_pairs: int,
    seed: int | Sequence[int] | np.random.Generator = 0,
    same_video_fraction: float = 0.5,
    augmented_fraction: float = 0.5,
    copy_fraction: float = 0.0,
    copy_max_offset: int = 4,
    hard_negatives: dict[int, np.ndarray] | None = None,
    hard_fraction: float = 0.0,
) -> Pairs:
    """Balanced, shuffled pairs of frames from the videos of one split.

    Positives (``n_pairs // 2``), anchor video drawn uniformly:

    * ``copy_fraction`` of them are disguised copies (only when the source has copies): the
      second frame is the anchor video's frame ``f1 + d``, ``|d| <= copy_max_offset``,
      taken from a random disguised copy;
    * of the rest, ``same_video_fraction`` are the same video at offset ``1..T-1``
      (cyclic; offset 0 allowed when the second side is disguised), else a frame of
      another video of the same patient (the same video when the patient has only one).

    Negatives: anchor and other video of different patients; ``hard_fraction`` of them
    take the other video from ``hard_negatives[anchor]`` (video indices of other patients,
    e.g. :func:`nearest_other_patients`) when the anchor has an entry. Outside the copies, the
    second frame comes from a random disguised copy with probability
    ``augmented_fraction``, on positives and negatives alike. A disguised side's frame
    number is a multiple of the source's ``augment_stride`` (the frames its copies hold).

    Raises:
        DatasetError: fewer than two patients in ``split``.
    """
    if n_pairs < 2:
        raise ValueError(f"n_pairs must be >= 2 (a positive and a negative); got {n_pairs}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    vids = np.flatnonzero(source.splits == split.upper())
    pats = source.patients[vids]
    uniq, code = np.unique(pats, return_inverse=True)
    if len(uniq) < 2:
        raise DatasetError(
            f"re-ID pairs need videos of at least 2 patients in split {split!r}; it has {len(uniq)} patient(s) "
            f"in {len(vids)} video(s) (splits present: {sorted(set(source.splits.tolist()))})"
        )
    by_patient = [vids[code == k] for k in range(len(uniq))]
    code_of = dict(zip(vids.tolist(), code.tolist()))
    n_pos, n_neg = n_pairs // 2, n_pairs - n_pairs // 2
    n_frames = np.asarray(source.n_frames)
    k_copies = int(getattr(source, "n_copies", 0))
    stride = int(getattr(source, "augment_stride", 1))

    # positives
    a = rng.choice(vids, n_pos)
    b = a.copy()
    copy = (rng.random(n_pos) < copy_fraction) if k_copies else np.zeros(n_pos, bool)
    same = copy | (rng.random(n_pos) < same_video_fraction)
    for i in np.flatnonzero(~same):
        others = by_patient[code_of[int(a[i])]]
        others = others[others != a[i]]
        if len(others):
            b[i] = rng.choice(others)
    # negatives: redraw the other video until its patient differs from the anchor's
    na = rng.choice(vids, n_neg)
    nb = rng.choice(vids, n_neg)
    clash = source.patients[na] == source.patients[nb]
    while clash.any():
        nb[clash] = rng.choice(vids, int(clash.sum()))
        clash = source.patients[na] == source.patients[nb]
    if hard_negatives is not None and hard_fraction > 0:
        # Hard negatives: the other video is one of the anchor's nearest other-patient videos
        # (by the current model), the pairs that decide a best-over-the-training-set score.
        hard = np.flatnonzero(rng.random(n_neg) < hard_fraction)
        for i in hard:
            near = hard_negatives.get(int(na[i]))
            if near is not None and len(near):
                nb[i] = rng.choice(near)

    v1, v2 = np.concatenate([a, na]), np.concatenate([b, nb])
    is_copy = np.concatenate([copy, np.zeros(n_neg, bool)])
    aug = is_copy | (rng.random(n_pairs) < augmented_fraction) if k_copies else np.zeros(n_pairs, bool)
    c2 = np.where(aug, rng.integers(1, max(k_copies, 1) + 1, n_pairs), 0).astype(np.int64)
    f1 = rng.integers(0, n_frames[v1])
    f2 = rng.integers(0, n_frames[v2])
    t = n_frames[v1[:n_pos]]
    off = rng.integers(np.where(aug[:n_pos], 0, 1), np.maximum(t, 2))  # 1..T-1 (0..T-1 when disguised)
    f2[:n_pos] = np.where(v1[:n_pos] == v2[:n_pos], (f1[:n_pos] + off) % t, f2[:n_pos])
    d = rng.integers(-copy_max_offset, copy_max_offset + 1, n_pos)
    f2[:n_pos] = np.where(copy, np.clip(f1[:n_pos] + d, 0, t - 1), f2[:n_pos])
    # A disguised side shows one of the frames its copies hold (multiples of the stride);
    # a copy's anchor moves with it so that the two frames stay within copy_max_offset.
    snapped = f2 - f2 % stride
    f1[:n_pos] = np.where(copy, np.clip(f1[:n_pos] + snapped[:n_pos] - f2[:n_pos], 0, t - 1), f1[:n_pos])
    f2 = np.where(aug, snapped, f2)
    label = np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_neg, np.float32)])
    order = rng.permutation(n_pairs)
    return Pairs(v1[order], f1[order], np.zeros(n_pairs, np.int64), v2[order], f2[order], c2[order], label[order])


def gather_frames(source, videos: np.ndarray, frames: np.ndarray, copies: np.ndarray) -> torch.Tensor:
    """(n, C, S, S) float32 frames for parallel (n,) arrays of video, frame and copy index.

    Requests are grouped by (video, copy) in video order, so a decoding source decodes each
    video once per call.
    """
    videos, frames = np.asarray(videos, np.int64), np.asarray(frames, np.int64)
    copies = np.asarray(copies, np.int64)
    out = torch.empty((len(videos), *source.frame_shape), dtype=torch.float32)
    base = int(copies.max(initial=0)) + 1
    keys = videos * base + copies
    for key in np.unique(keys):
        pos = np.flatnonzero(keys == key)
        out[torch.from_numpy(pos)] = source.get_frames(int(key // base), frames[pos], int(key % base))
    return out


@torch.no_grad()
def pair_scores(model: ReIDNet, source, pairs: Pairs, *, batch_size: int = 256) -> np.ndarray:
    """(P,) float64 same-patient probabilities ``sigmoid(head(e1, e2))`` of ``pairs``."""
    _check_model_source(model, source)
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(pairs), batch_size):
        b = pairs[s : s + batch_size]
        x = gather_frames(source, np.concatenate([b.v1, b.v2]), np.concatenate([b.f1, b.f2]), np.concatenate([b.a1, b.a2]))
        e = model.embed(x)
        out.append(model.pair_proba(e[: len(b)], e[len(b) :]).double().numpy())
    model.train(was_training)
    return np.concatenate(out)


def _check_model_source(model: ReIDNet, source) -> None:
    c, s = model.config.in_channels, model.config.input_size
    if tuple(source.frame_shape) != (c, s, s):
        raise CheckpointError(
            f"the re-ID model takes frames of shape ({c}, {s}, {s}) but the {source.space} source gives "
            f"{tuple(source.frame_shape)}: use a model trained in the same space and size"
        )


# ---------------------------------------------------------------------------------------
# training


@torch.no_grad()
def nearest_other_patients(model: ReIDNet, source, split: str, n: int, *, frames: int = 4) -> dict[int, np.ndarray]:
    """Video index -> its ``n`` nearest videos of other patients in ``split``, by the cosine
    of per-video embeddings (the mean unit embedding of ``frames`` evenly spaced frames)."""
    vids = np.flatnonzero(source.splits == split.upper())
    was_training = model.training
    model.eval()
    embs = []
    for v in vids:
        t = int(source.n_frames[v])
        idx = np.linspace(0, t - 1, min(frames, t)).round().astype(np.int64)
        embs.append(F.normalize(model.embed(source.get_frames(int(v), idx)).mean(0), dim=0))
    model.train(was_training)
    e = torch.stack(embs).numpy()
    sim = e @ e.T
    pats = source.patients[vids]
    sim[pats[:, None] == pats[None, :]] = -np.inf  # the same patient is no negative
    k = min(n, len(vids) - 1)
    order = np.argsort(-sim, axis=1)[:, :k]
    return {int(v): vids[row][np.isfinite(sim[i, row])] for i, (v, row) in enumerate(zip(vids, order))}




def train_reid(
    source,
    out_dir: str | Path,
    cfg: ReIDTrainConfig = ReIDTrainConfig(),
    *,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Train (or resume, when ``out_dir/latest`` holds a trainer state) a re-ID model.

    Args:
        source: a pair source (see the module docstring) with TRAIN and VAL patients.
        out_dir: run folder: ``latest/``, ``best/`` (``save_pretrained`` + safetensors)
            and ``metrics.json``.
        cfg: the run's configuration, saved in the record; on resume only ``epochs``
            and ``patience`` may differ from the saved one.
        progress: optional ``progress(fraction, message)`` callback.

    Returns:
        The record: ``epoch``, ``best_auc``, ``best_epoch``, ``stopped_early``,
        ``history`` (per epoch: loss, val_auc, lr, seconds, data_seconds,
        compute_seconds, val_seconds), ``seconds``, ``config``, ``space``,
        ``frame_shape``, ``source_fingerprint``.

    Raises:
        DatasetError: fewer than two patients in TRAIN or VAL.
        CheckpointError: a resume whose saved configuration or input shape differs.
    """
    out_dir = Path(out_dir)
    latest, best_dir = out_dir / "latest", out_dir / "best"
    c, s, _ = source.frame_shape
    resume = (latest / "trainer_state.json").exists()
    torch.manual_seed(cfg.seed)
    if resume:
        model = load_reid(latest)
        _check_model_source(model, source)
    else:
        model = ReIDNet(in_channels=c, input_size=s, width=cfg.width, embed_dim=cfg.embed_dim, head_hidden=cfg.head_hidden,
                        mirror_invariant=cfg.mirror_invariant)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    record = {"epoch": 0, "best_auc": -1.0, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False, "history": [],
              "seconds": 0.0, "config": asdict(cfg), "space": source.space, "frame_shape": [c, s, s],
              "source_fingerprint": source.fingerprint}
    if resume:
        saved, _ = load_trainer_state(latest, opt)
        saved["config"].setdefault("mirror_invariant", False)  # runs from before the option
        diff = {k: (saved["config"].get(k), v) for k, v in asdict(cfg).items()
                if k not in _RESUMABLE and saved["config"].get(k) != v}
        if diff:
            raise CheckpointError(
                f"cannot resume {out_dir}: its run used other settings ({', '.join(f'{k}: saved {a!r}, given {b!r}' for k, (a, b) in diff.items())}); "
                "use a new output folder or the saved settings"
            )
        record = {**saved, "config": asdict(cfg)}
        if record["bad_epochs"] < cfg.patience:
            record["stopped_early"] = False  # more patience given: go on

    pair_kw = dict(same_video_fraction=cfg.same_video_fraction, augmented_fraction=cfg.augmented_fraction,
                   copy_fraction=cfg.copy_fraction, copy_max_offset=cfg.copy_max_offset)
    val_pairs = sample_pairs(source, split="VAL", n_pairs=cfg.val_pairs, seed=[cfg.seed, 1], **pair_kw)
    steps = math.ceil(cfg.pairs_per_epoch / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps, initial=record["epoch"] * steps, desc=f"train re-ID ({source.space})", unit="step")
    while record["epoch"] < cfg.epochs and not record["stopped_early"]:
        epoch = record["epoch"]
        t_epoch = time.perf_counter()
        lr = cosine_lr(epoch, cfg.lr, cfg.epochs)
        for g in opt.param_groups:
            g["lr"] = lr
        hard = nearest_other_patients(model, source, "TRAIN", cfg.hard_neighbours) if cfg.hard_fraction and epoch else None
        pairs = sample_pairs(source, split="TRAIN", n_pairs=cfg.pairs_per_epoch, seed=[cfg.seed, 0, epoch], **pair_kw,
                             hard_negatives=hard, hard_fraction=cfg.hard_fraction)
        model.train()
        data_s = compute_s = loss_sum = 0.0
        for step, start in enumerate(range(0, len(pairs), cfg.batch_size)):
            b = pairs[start : start + cfg.batch_size]
            t0 = time.perf_counter()
            x = gather_frames(source, np.concatenate([b.v1, b.v2]), np.concatenate([b.f1, b.f2]), np.concatenate([b.a1, b.a2]))
            t1 = time.perf_counter()
            e = model.embed(x)
            loss = F.binary_cross_entropy_with_logits(model.head_logits(e[: len(b)], e[len(b) :]), torch.from_numpy(b.label))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            compute_s += time.perf_counter() - t1
            data_s += t1 - t0
            loss_sum += loss.item() * len(b)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if progress is not None:
                progress((epoch + (step + 1) / steps) / cfg.epochs, f"re-ID epoch {epoch + 1}/{cfg.epochs}, step {step + 1}/{steps}")

        t_val = time.perf_counter()
        auc = float(roc_auc_score(val_pairs.label, pair_scores(model, source, val_pairs, batch_size=2 * cfg.batch_size)))
        now = time.perf_counter()
        record["epoch"] = epoch + 1
        record["history"].append({
            "epoch": epoch + 1, "loss": loss_sum / len(pairs), "val_auc": auc, "lr": lr,
            "seconds": now - t_epoch, "data_seconds": data_s, "compute_seconds": compute_s, "val_seconds": now - t_val,
        })
        record["seconds"] += now - t_epoch
        improved = auc > record["best_auc"]
        if improved:
            record.update(best_auc=auc, best_epoch=epoch + 1)
        close_epoch(model, record, improved=improved, patience=cfg.patience, best_dir=best_dir, latest=latest, opt=opt,
                    metrics_path=out_dir / "metrics.json")
        bar.set_postfix(val_auc=f"{auc:.3f}")
    bar.close()
    write_json(out_dir / "metrics.json", record)
    return record
