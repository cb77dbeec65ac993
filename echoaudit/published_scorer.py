"""The published EchoNet-Synthetic privacy filter as a scoring mode ("published"), next to
EchoAudit's whole-video head scorer.

What ``echosyn/privacy/apply.py`` (HReynaud/EchoNet-Synthetic) computes, step by step,
and what this module does at each step:

1. **Inputs.** Real videos: the data set's ``TRAIN`` rows (training items) and ``TEST``
   rows (held-out items), in ``FileList.csv`` order. Each *real video* is rescaled to
   [-1, 1] by the min and max of the **whole video** (their data set applies
   ``(x - x.min()) / (x.max() - x.min()) * 2 - 1`` to the loaded (T, C, h, w) tensor),
   then its first frame is taken. The **synthetic** inputs are stacked and rescaled by
   the min and max of the **whole synthetic batch** (``normalization(torch.cat(...))``).
   Their synthetic inputs are latent images (one frame each); here the batch is the
   synthetic videos' first frames, which is the same thing for one-frame inputs.
   (:func:`normalize_per_video`, :func:`normalize_batch`.) A constant video or batch
   (0 / 0 there) is refused.
2. **Features.** ``forward_once``: the 128 sigmoid features of the ResNet-50, no further
   normalisation (:func:`published_features`).
3. **Threshold.** ``torch.corrcoef`` of training and held-out features; for each
   training item its highest correlation with any held-out item; ``tau =
   np.percentile(..., 95)`` (numpy's default ``linear`` method)
   (:func:`published_threshold`).
4. **Scores.** Each synthetic item's highest correlation with any training item and
   that item's index (``argmax``) (:func:`published_best_matches`).
5. **Flags.** ``is_public = closest_test < tau``: a synthetic item is **flagged
   (withheld) when its score >= tau** (:func:`published_flags`).
6. **CSV.** ``privacy_scores.csv`` with columns ``real_path, tau, synth_path, img_idx``
   (``index=False``): the best training item's ``FileName``, **the sample's own score**
   (in the column named ``tau``), the synthetic item's name and the training item's row
   among the training items (:func:`privacy_scores_table`, :func:`write_privacy_scores`).

Differences, on purpose: correlations are computed in float64 (centred, normalised
rows; dense, in chunks) rather than float32 on a GPU, so they do not depend on the
device's summation order; the CSV holds those float64 values (theirs are float32 values
printed as float64). The synthetic items are scored in the order given (they use
``os.listdir`` order; the folder reader here sorts the names). Latents from a project
latent cache are the cached frames (cut to the cache's length, float16), so a "whole
video" there is the cached part. ``apply.py`` also copies the unflagged latents to an
output folder; this module only scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echoaudit.errors import DatasetError

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_PERCENTILE",
    "PublishedScores",
    "best_correlations",
    "load_real_first_frames",
    "load_synthetic_first_frames",
    "normalize_batch",
    "normalize_per_video",
    "pearson_matrix",
    "privacy_scores_table",
    "published_best_matches",
    "published_features",
    "published_flags",
    "published_threshold",
    "run_published",
    "score_published",
    "write_privacy_scores",
]

CSV_COLUMNS = ("real_path", "tau", "synth_path", "img_idx")
DEFAULT_PERCENTILE = 95.0
_CHUNK = 4096  # query rows per dense block


# --------------------------------------------------------------------------- normalisation

def _minmax(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"{what} must be a non-empty array of finite numbers")
    lo, hi = x.min(), x.max()
    if not hi > lo:
        raise ValueError(f"{what} is constant ({float(lo):g}); its min-max rescaling to [-1, 1] is undefined (0 / 0)")
    return ((x - lo) / (hi - lo) * np.float32(2) - np.float32(1)).astype(np.float32)


def normalize_per_video(video: np.ndarray, *, name: str = "video") -> np.ndarray:
    """One real video (T, C, h, w) rescaled to [-1, 1] by its own min and max, as the
    published data set does before the first frame is taken.

    Raises:
        ValueError: not 4-D, empty, non-finite or constant.
    """
    v = np.asarray(video)
    if v.ndim != 4 or v.shape[0] < 1:
        raise ValueError(f"{name} must be a (T, C, h, w) array with T >= 1, got shape {v.shape}")
    return _minmax(v, name)


def normalize_batch(frames: np.ndarray, *, name: str = "synthetic batch") -> np.ndarray:
    """All synthetic frames (S, C, h, w) rescaled together to [-1, 1] by the min and max of
    the whole batch, as ``apply.py`` does with the stacked synthetic latents.

    Raises:
        ValueError: not 4-D, empty, non-finite or constant.
    """
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"{name} must be an (S, C, h, w) array with S >= 1, got shape {x.shape}")
    return _minmax(x, name)


# --------------------------------------------------------------------------- features and correlations

def published_features(model, frames: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """(N, C, h, w) frames, already normalised -> (N, n_features) float32 raw sigmoid
    features: the published ``forward_once``, no further input normalisation (whatever
    ``model.input_norm`` says). ``model`` is a
    :class:`~echoaudit.models.published.PublishedReID` (eval mode)."""
    import torch

    x = np.asarray(frames, dtype=np.float32)
    if not hasattr(model, "net") or not hasattr(model.net, "forward_once"):
        raise ValueError(f"the published scorer needs a published re-ID network (PublishedReID), got {type(model).__name__}")
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            b = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))
            model._check_input(b)
            out.append(model.net.forward_once(b).float().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.n_features), np.float32)


def _check_features(f: object, what: str, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(f)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2 or (dim is not None and arr.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, D) with D >= 2"
        raise ValueError(f"{what} must be a {want} array with n >= 1, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must hold finite real numbers")
    return arr.astype(np.float64)


def _centre_normalise(f: np.ndarray, what: str) -> np.ndarray:
    c = f - f.mean(axis=1, keepdims=True)
    n = np.linalg.norm(c, axis=1, keepdims=True)
    flat = np.flatnonzero(n[:, 0] == 0)
    if len(flat):
        raise ValueError(f"{what}: rows {flat[:10].tolist()} have constant features; their Pearson correlation is "
                         "undefined (the published tool would give NaN)")
    return c / n


def pearson_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) float64 Pearson correlations of the rows of ``a`` (N, D) with those of ``b``
    (M, D): ``torch.corrcoef(cat([a, b]))[:N, N:]`` of the published code. Dense; for
    small sets and tests (:func:`best_correlations` works in chunks)."""
    fa = _check_features(a, "a")
    fb = _check_features(b, "b", fa.shape[1])
    return _centre_normalise(fa, "a") @ _centre_normalise(fb, "b").T


def best_correlations(queries: np.ndarray, base: np.ndarray, *, what: tuple[str, str] = ("queries", "base")
                      ) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, its highest Pearson correlation with any base row (float64) and
    the index of that row (the first one on ties, as ``argmax``), dense in chunks."""
    q = _centre_normalise(_check_features(queries, what[0]), what[0])
    b = _centre_normalise(_check_features(base, what[1], q.shape[1]), what[1])
    best = np.empty(len(q), np.float64)
    arg = np.empty(len(q), np.int64)
    for i in range(0, len(q), _CHUNK):
        r = q[i : i + _CHUNK] @ b.T
        arg[i : i + len(r)] = r.argmax(axis=1)
        best[i : i + len(r)] = r[np.arange(len(r)), arg[i : i + len(r)]]
    return best, arg


def _check_percentile(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0.0 <= float(p) <= 100.0:
        raise ValueError(f"percentile must be a number in [0, 100], got {p!r}")
    return float(p)


def published_threshold(train_features: np.ndarray, heldout_features: np.ndarray, *,
                        percentile: float = DEFAULT_PERCENTILE) -> tuple[float, np.ndarray]:
    """``tau`` = ``np.percentile`` (default ``linear`` method) over **training** items of
    each one's highest correlation with any held-out item; returns (tau, those per-item
    correlations in training order)."""
    p = _check_percentile(percentile)
    closest, _ = best_correlations(train_features, heldout_features, what=("train_features", "heldout_features"))
    return float(np.percentile(closest, p)), closest


def published_best_matches(synthetic_features: np.ndarray, train_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each synthetic item's score (highest correlation with any training item) and the
    index of that training item (``img_idx``)."""
    return best_correlations(synthetic_features, train_features, what=("synthetic_features", "train_features"))


def published_flags(scores: np.ndarray, tau: float) -> np.ndarray:
    """Flagged (withheld) = ``not (score < tau)`` = ``score >= tau``: ``apply.py`` keeps a
    sample when ``closest_test < tau``."""
    s = np.asarray(scores, dtype=np.float64)
    if isinstance(tau, bool) or not np.isfinite(float(tau)):
        raise ValueError(f"tau must be a finite number, got {tau!r}")
    return ~(s < float(tau))


def privacy_scores_table(scores: np.ndarray, img_idx: np.ndarray, train_names: Sequence[str],
                         synthetic_names: Sequence[str]) -> pd.DataFrame:
    """The published ``privacy_scores.csv`` as a DataFrame, one row per synthetic item in
    input order: ``real_path`` (the best training item's name), ``tau`` (**the item's own
    score**, as the published tool writes it), ``synth_path``, ``img_idx``."""
    s = np.asarray(scores, dtype=np.float64)
    idx = np.asarray(img_idx, dtype=np.int64)
    train_names = [str(n) for n in train_names]
    synthetic_names = [str(n) for n in synthetic_names]
    if s.ndim != 1 or idx.shape != s.shape or len(synthetic_names) != len(s):
        raise ValueError(f"scores ({s.shape}), img_idx ({idx.shape}) and synthetic_names ({len(synthetic_names)}) "
                         "must be one per synthetic item")
    if len(idx) and (idx.min() < 0 or idx.max() >= len(train_names)):
        raise ValueError(f"img_idx must index the {len(train_names)} training items")
    return pd.DataFrame({"real_path": [train_names[i] for i in idx], "tau": s, "synth_path": synthetic_names,
                         "img_idx": idx}, columns=list(CSV_COLUMNS))


def write_privacy_scores(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as the published tool does (``to_csv(index=False)``), atomically."""
    from echoaudit.fileio import atomic_path

    if list(table.columns) != list(CSV_COLUMNS):
        raise ValueError(f"privacy_scores table must have the columns {list(CSV_COLUMNS)}, got {list(table.columns)}")
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


# --------------------------------------------------------------------------- the whole filter

@dataclass
class PublishedScores:
    """What the published filter decides for one synthetic set.

    Attributes:
        tau: the threshold (a Pearson correlation).
        percentile: the percentile it was set at.
        closest_train: (N,) each training item's best correlation with a held-out item.
        table: the ``privacy_scores.csv`` rows (:data:`CSV_COLUMNS`).
        flagged: (S,) bool, ``score >= tau``.
        n_train, n_heldout: the items that set ``tau``.
    """

    tau: float
    percentile: float
    closest_train: np.ndarray
    table: pd.DataFrame
    flagged: np.ndarray
    n_train: int
    n_heldout: int

    def summary(self) -> dict:
        return {"mode": "published", "tau": self.tau, "percentile": self.percentile, "n_train": self.n_train,
                "n_heldout": self.n_heldout, "n_synthetic": len(self.flagged), "n_flagged": int(self.flagged.sum()),
                "rule": "flagged when the first frame's best Pearson correlation of re-ID features with a training "
                        "first frame is >= tau (EchoNet-Synthetic apply.py)"}


def score_published(model, *, train_first: np.ndarray, train_names: Sequence[str], heldout_first: np.ndarray,
                    synthetic_first: np.ndarray, synthetic_names: Sequence[str],
                    percentile: float = DEFAULT_PERCENTILE, batch_size: int = 256) -> PublishedScores:
    """The published filter on first frames that are **already normalised** (real ones per
    video, synthetic ones across their batch: :func:`normalize_per_video`,
    :func:`normalize_batch`).

    Raises:
        ValueError: arrays of other shapes, names of other lengths, a bad percentile,
            constant features.
    """
    names = [str(n) for n in train_names]
    syn_names = [str(n) for n in synthetic_names]
    for what, x, n in (("train_first", train_first, len(names)), ("heldout_first", heldout_first, None),
                       ("synthetic_first", synthetic_first, len(syn_names))):
        shape = np.shape(x)
        if len(shape) != 4 or shape[0] < 1 or (n is not None and shape[0] != n):
            raise ValueError(f"{what} must be an (n, C, h, w) array with n >= 1"
                             + (f" and one name per row ({n})" if n is not None else "") + f"; got shape {shape}")
    percentile = _check_percentile(percentile)
    f_train = published_features(model, train_first, batch_size=batch_size)
    f_held = published_features(model, heldout_first, batch_size=batch_size)
    f_syn = published_features(model, synthetic_first, batch_size=batch_size)
    tau, closest = published_threshold(f_train, f_held, percentile=percentile)
    scores, idx = published_best_matches(f_syn, f_train)
    return PublishedScores(tau=tau, percentile=percentile, closest_train=closest,
                           table=privacy_scores_table(scores, idx, names, syn_names),
                           flagged=published_flags(scores, tau), n_train=len(f_train), n_heldout=len(f_held))


# --------------------------------------------------------------------------- reading the data

def _first_frames_normalised(videos: Callable[[int], np.ndarray], names: Sequence[str], where: str) -> np.ndarray:
    out = []
    for i, name in enumerate(names):
        try:
            out.append(normalize_per_video(videos(i), name=f"{where} video {name!r}")[0])
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
    return np.stack(out)


def load_real_first_frames(latents: str | Path, *, train_split: str = "TRAIN", heldout_split: str = "TEST",
                           shape: Sequence[int] = (4, 14, 14)) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Training and held-out first frames, each video normalised over itself, from a
    published latents folder (``FileList.csv`` + ``Latents/``) or a project latent cache
    (``latents.npy`` + ``videos.csv`` + ``cache.json``); in list order.

    Returns:
        (train_first (N, C, h, w) float32, train names, heldout_first (K, C, h, w), heldout names).

    Raises:
        DatasetError: neither layout, no videos in a split, a bad or constant video (named).
        CheckpointError: a corrupt latent cache.
    """
    from echoaudit.published_latents import FILELIST, PublishedLatents

    folder = Path(latents)
    if (folder / FILELIST).is_file():
        src = PublishedLatents.open(folder, shape=shape)
        parts = []
        for split in (train_split, heldout_split):
            sub = src.split(split)
            if len(sub) == 0:
                raise DatasetError(f"published latents {folder} list no {split.upper()} videos "
                                   f"(splits there: {sorted(set(src.table['Split']))})")
            parts += [_first_frames_normalised(sub.get, sub.names, str(folder)), sub.names]
        return parts[0], parts[1], parts[2], parts[3]
    if (folder / "cache.json").is_file():
        from echoaudit.latents import LatentCache

        cache = LatentCache.load(folder)
        if "Split" not in cache.table or "FileName" not in cache.table:
            raise DatasetError(f"latent cache {folder}: videos.csv needs FileName and Split columns")
        splits = cache.table["Split"].astype(str).str.strip().str.upper().to_numpy()
        parts = []
        for split in (train_split, heldout_split):
            rows = np.flatnonzero(splits == split.upper())
            if len(rows) == 0:
                raise DatasetError(f"latent cache {folder} holds no {split.upper()} videos (splits there: {sorted(set(splits))})")
            names = [str(n) for n in cache.table["FileName"].iloc[rows]]
            parts += [_first_frames_normalised(lambda i, rows=rows: np.asarray(cache.latents[rows[i]], np.float32),
                                               names, str(folder)), names]
        return parts[0], parts[1], parts[2], parts[3]
    raise DatasetError(f"{folder} holds neither published latents ({FILELIST} + Latents/) nor a latent cache "
                       "(cache.json + latents.npy + videos.csv)")


def _load_pt_frame(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """First frame of one synthetic ``.pt``: a (C, h, w) image or a (T, C, h, w) video,
    read with ``weights_only=True`` (the published latent reader's checks)."""
    import pickle

    import torch

    from echoaudit.models.published import _looks_like_torch_file
    from echoaudit.published_latents import MAX_LATENT_FILE_BYTES

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"synthetic latent file {path} cannot be read ({exc.strerror or exc})") from None
    if size > MAX_LATENT_FILE_BYTES:
        raise DatasetError(f"synthetic latent file {path} is {size:,} bytes; at most {MAX_LATENT_FILE_BYTES:,} are read")
    if not _looks_like_torch_file(path):
        raise DatasetError(f"synthetic latent file {path} is not a torch .pt file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DatasetError(f"refused synthetic latent file {path}: not a plain tensor file (torch.load with "
                           "weights_only=True rejected it); it is never loaded otherwise") from None
    except Exception as exc:  # noqa: BLE001  (a truncated zip or foreign file: torch raises many types)
        raise DatasetError(f"synthetic latent file {path} is corrupt ({type(exc).__name__})") from None
    if not isinstance(obj, torch.Tensor) or obj.layout != torch.strided or not obj.is_floating_point():
        raise DatasetError(f"synthetic latent file {path} holds no dense floating-point tensor")
    if obj.ndim == 3:
        obj = obj.unsqueeze(0)
    if obj.ndim != 4 or tuple(obj.shape[1:]) != shape or obj.shape[0] < 1:
        raise DatasetError(f"synthetic latent file {path} holds shape {tuple(obj.shape)}; expected "
                           f"{shape} or (T, {', '.join(map(str, shape))})")
    x = obj[0].to(torch.float32).numpy()
    if not np.all(np.isfinite(x)):
        raise DatasetError(f"synthetic latent file {path} holds NaN or infinite values")
    return x


def load_synthetic_first_frames(source: str | Path, *, shape: Sequence[int] = (4, 14, 14)) -> tuple[np.ndarray, list[str]]:
    """Synthetic first frames, **not yet normalised**, and their names, from:

    * a ``.npy`` file: (S, T, C, h, w) videos or (S, C, h, w) frames; names ``<stem>_<i>``
      (five digits);
    * a latent cache folder (``cache.json``): its videos, named by ``FileName``;
    * a folder of ``.pt`` files (the published ``--synthetic`` layout): one (C, h, w)
      image or (T, C, h, w) video each, named by file name, sorted.

    Raises:
        DatasetError: none of these, nothing in it, shapes other than ``shape``, a file
            refused by ``weights_only``, NaN.
    """
    shape = tuple(int(s) for s in shape)
    src = Path(source)
    if src.is_file() and src.suffix == ".npy":
        try:
            arr = np.load(src, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"synthetic latents {src} cannot be read as a .npy array ({exc})") from None
        if arr.ndim == 5 and tuple(arr.shape[2:]) == shape and arr.shape[1] >= 1:
            first = np.asarray(arr[:, 0], np.float32)
        elif arr.ndim == 4 and tuple(arr.shape[1:]) == shape:
            first = np.asarray(arr, np.float32)
        else:
            raise DatasetError(f"synthetic latents {src} have shape {arr.shape}; expected (S, T, "
                               f"{', '.join(map(str, shape))}) or (S, {', '.join(map(str, shape))})")
        names = [f"{src.stem}_{i:05d}" for i in range(len(first))]
    elif src.is_dir() and (src / "cache.json").is_file():
        from echoaudit.latents import LatentCache

        cache = LatentCache.load(src)
        if tuple(cache.latents.shape[2:]) != shape:
            raise DatasetError(f"latent cache {src} holds latents of shape {cache.latents.shape[2:]}, not {shape}")
        first = np.asarray(cache.latents[:, 0], np.float32)
        names = [str(n) for n in cache.table["FileName"]]
    elif src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix == ".pt" and p.is_file())
        if not files:
            raise DatasetError(f"synthetic latents folder {src} holds no .pt files (nor cache.json)")
        first = np.stack([_load_pt_frame(p, shape) for p in files])
        names = [p.name for p in files]
    else:
        raise DatasetError(f"synthetic latents {src}: not a .npy file, a latent cache or a folder of .pt files")
    if len(first) == 0:
        raise DatasetError(f"synthetic latents {src} hold no samples")
    if not np.all(np.isfinite(first)):
        raise DatasetError(f"synthetic latents {src} hold NaN or infinite values")
    return first, names


def run_published(reid: str | Path | object, latents: str | Path, synthetic: str | Path | np.ndarray, out: str | Path | None,
                  *, synthetic_names: Sequence[str] | None = None, percentile: float = DEFAULT_PERCENTILE,
                  train_split: str = "TRAIN", heldout_split: str = "TEST") -> PublishedScores:
    """The published filter from files: ``reid`` (a published re-ID folder, or a loaded
    :class:`~echoaudit.models.published.PublishedReID`), the real latents (published
    folder or latent cache: :func:`load_real_first_frames`), the synthetic latents (a path
    for :func:`load_synthetic_first_frames`, or an (S, C, h, w) / (S, T, C, h, w) array
    with ``synthetic_names``); writes ``out`` (``privacy_scores.csv``) unless None.

    Raises:
        CheckpointError: a re-ID folder that is not in the published format or does not load.
        DatasetError: problems with the latents (see the readers).
        ValueError: a bad percentile, names of another length.
    """
    from echoaudit.errors import CheckpointError
    from echoaudit.models.published import (
        PublishedReID,
        is_published_reid,
        load_published_reid,
    )

    if isinstance(reid, PublishedReID):
        model = reid.eval()
    else:
        if not is_published_reid(reid):
            raise CheckpointError(f"{reid} is not a published re-ID folder (config.json naming a siamese_architecture "
                                  "and <name>_best_network.pth); the published scorer needs the 128 sigmoid features")
        model = load_published_reid(reid)
    shape = (model.config.n_channels, model.config.image_size, model.config.image_size)
    train_first, train_names, held_first, _ = load_real_first_frames(latents, train_split=train_split,
                                                                     heldout_split=heldout_split, shape=shape)
    if isinstance(synthetic, (str, Path)):
        syn_first, names = load_synthetic_first_frames(synthetic, shape=shape)
        if synthetic_names is not None:
            names = [str(n) for n in synthetic_names]
    else:
        arr = np.asarray(synthetic, np.float32)
        syn_first = arr[:, 0] if arr.ndim == 5 else arr
        if syn_first.ndim != 4 or tuple(syn_first.shape[1:]) != shape:
            raise ValueError(f"synthetic latents must be (S, {', '.join(map(str, shape))}) or (S, T, ...); got {arr.shape}")
        names = [str(n) for n in synthetic_names] if synthetic_names is not None else [f"synthetic_{i:05d}" for i in range(len(arr))]
    if len(names) != len(syn_first):
        raise ValueError(f"synthetic_names must hold one name per synthetic sample ({len(syn_first)}), got {len(names)}")
    try:
        syn_norm = normalize_batch(syn_first)
    except ValueError as exc:
        raise DatasetError(f"synthetic latents: {exc}") from None
    result = score_published(model, train_first=train_first, train_names=train_names, heldout_first=held_first,
                             synthetic_first=syn_norm, synthetic_names=names, percentile=percentile)
    if out is not None:
        write_privacy_scores(result.table, out)
    return result
