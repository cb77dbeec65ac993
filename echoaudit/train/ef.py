"""Training loop for the EF regressor, on latent videos.

Data: :class:`EFVideos`, latent videos (each (T, C, h, w), float32) with their EF,
frame rate, patient and split; from a latent cache (:meth:`EFVideos.from_cache`, the
arrays ``echoaudit encode`` writes) joined with the data set's ``FileList.csv``, which
decides EF, patient and split. :func:`cached_latents` encodes a data set (a synthetic
set, typically) with the frame VAE the first time and reuses the cache afterwards.

Loop (nanoGPT order, one "epoch" per turn): lr (cosine from ``lr`` to ``lr / 10``),
``steps_per_epoch`` steps (random clips: a random start, ``clip_frames`` frames at
``clip_fps``; optional left-right mirroring -> forward -> MSE on standardised EF ->
backward -> step), validation MAE on the VAL videos (the mean over ``eval_crops``
evenly spaced clips of each video), ``best/`` when the validation MAE improves,
``latest/`` + trainer state every epoch, early stopping after ``patience`` epochs
without improvement, ``metrics.json`` (atomic) with per-epoch figures.

``steps_per_epoch`` 0 means one pass over the training videos. The downstream-utility
comparison sets it to the real training set's pass for every training set, so that a
small synthetic set gets the same optimisation budget as the real one.

Randomness: the model's initial weights from ``torch.manual_seed(seed)``; epoch ``e``'s
clips, order and mirroring from ``default_rng([seed, e])``, so a resumed run continues
as an unbroken one would.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from echoaudit.errors import CheckpointError, DatasetError
from echoaudit.fileio import read_json, write_json
from echoaudit.models.ef import EFRegressor, clip_indices, crop_starts, load_ef
from echoaudit.train.checkpoint import close_epoch, cosine_lr, load_trainer_state

__all__ = ["EFTrainConfig", "EFVideos", "cached_latents", "batch_clips", "predict_ef", "train_ef", "finished_run",
           "videos_digest"]

# Config fields that may change when a run is resumed (more epochs, more patience).
_RESUMABLE = ("epochs", "patience")
_SOURCE_JSON = "source.json"  # beside a cache made by cached_latents: what it was encoded from


@dataclass(frozen=True)
class EFTrainConfig:
    epochs: int = 30
    steps_per_epoch: int = 0  # 0: one pass over the training videos
    batch_size: int = 16  # clips per step
    lr: float = 5e-3  # peak; cosine to lr / 10 over ``epochs`` (2e-3 sat at the mean EF for 4+ epochs)
    weight_decay: float = 1e-2
    patience: int = 8  # epochs without a better validation MAE before stopping
    width: int = 24
    temporal_layers: int = 2
    clip_frames: int = 32  # EchoNet-Dynamic's clip: 32 frames at 25 fps (stride 2 of 50 fps)
    clip_fps: float = 25.0
    eval_crops: int = 3  # evenly spaced clips averaged per video at validation and test
    # Probability of mirroring a training clip left-right (EF does not change). Off: the
    # latents of a mirrored frame are not the mirrored latents, and at 0.5 the demo's
    # validation MAE after 8 epochs was 7.6 against 6.2 without (model without its volume path).
    mirror: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name, low in (("epochs", 1), ("steps_per_epoch", 0), ("batch_size", 1), ("patience", 1), ("width", 2),
                          ("temporal_layers", 0), ("clip_frames", 1), ("eval_crops", 1), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ValueError(f"EFTrainConfig.{name} must be an int >= {low}; got {v!r}")
        for name in ("lr", "clip_fps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"EFTrainConfig.{name} must be a finite number > 0; got {v!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"EFTrainConfig.weight_decay must be a finite number >= 0; got {self.weight_decay!r}")
        if not 0.0 <= self.mirror <= 1.0:
            raise ValueError(f"EFTrainConfig.mirror must be in [0, 1]; got {self.mirror!r}")


# ---------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class EFVideos:
    """Latent videos with EF labels; row ``i`` of every field is video ``i``.

    Attributes:
        latents: V arrays (T_i, C, h, w) float32 (lengths may differ; C, h, w may not).
        ef: (V,) float64 EF in percent.
        fps: (V,) float64 frame rate of each latent video.
        names: (V,) str FileName.
        patients: (V,) str PatientID (a video without one is its own patient).
        splits: (V,) str TRAIN / VAL / TEST, upper-case.
        origin: (V,) str where the video comes from (``"real"``, ``"synthetic"``).
    """

    latents: tuple
    ef: np.ndarray
    fps: np.ndarray
    names: np.ndarray
    patients: np.ndarray
    splits: np.ndarray
    origin: np.ndarray

    def __post_init__(self):
        v = len(self.latents)
        for name in ("ef", "fps", "names", "patients", "splits", "origin"):
            if len(getattr(self, name)) != v:
                raise ValueError(f"EFVideos.{name} has {len(getattr(self, name))} entries for {v} videos")
        shapes = {tuple(x.shape[1:]) for x in self.latents}
        if len(shapes) > 1 or any(x.ndim != 4 or len(x) < 1 for x in self.latents):
            raise ValueError(f"EFVideos latents must all be (T, C, h, w) with one (C, h, w); got {sorted(shapes)[:3]}")
        if v and not (np.all(np.isfinite(self.ef)) and np.all((self.ef >= 0) & (self.ef <= 100))):
            raise DatasetError("EF labels must be finite numbers in [0, 100] percent")
        if v and not (np.all(np.isfinite(self.fps)) and np.all(self.fps > 0)):
            raise DatasetError("every latent video needs a frame rate > 0 (the FPS column)")

    def __len__(self) -> int:
        return len(self.latents)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.latents[0].shape[1:])

    @classmethod
    def from_cache(cls, cache, table: pd.DataFrame | None = None, *, origin: str = "real") -> EFVideos:
        """The videos of ``table`` (a data set's table: FileName, EF, Split, PatientID, FPS;
        default the cache's own ``videos.csv``) from a ``LatentCache`` or its folder.

        Raises:
            DatasetError: a video of ``table`` the cache does not hold.
        """
        from echoaudit.latents import LatentCache

        if not isinstance(cache, LatentCache):
            cache = LatentCache.load(cache)
        table = cache.table if table is None else table
        pos = {n: i for i, n in enumerate(cache.table["FileName"].astype(str))}
        names = table["FileName"].astype(str).to_numpy()
        missing = [n for n in names if n not in pos]
        if missing:
            raise DatasetError(f"latent cache {cache.folder} lacks {len(missing)} of the {len(names)} videos "
                               f"(e.g. {missing[:3]}); re-encode it with `echoaudit encode` or give another cache")
        rows = np.array([pos[n] for n in names], dtype=np.int64)
        arr = np.asarray(cache.latents[np.sort(rows)] if len(rows) else cache.latents[:0], dtype=np.float32)
        by_row = {r: arr[k] for k, r in enumerate(np.sort(rows))}
        fps_col = table["FPS"] if "FPS" in table else cache.table["FPS"].iloc[rows] if "FPS" in cache.table else None
        fps = (np.full(len(names), 50.0) if fps_col is None else pd.to_numeric(fps_col, errors="coerce").to_numpy(np.float64))
        patients = table["PatientID"].astype(str).to_numpy() if "PatientID" in table else names.copy()
        return cls(tuple(by_row[r] for r in rows), table["EF"].to_numpy(np.float64), fps, names.astype(str),
                   patients.astype(str), table["Split"].astype(str).str.upper().to_numpy().astype(str),
                   np.full(len(names), origin).astype(str))

    def take(self, idx: Sequence[int] | np.ndarray) -> EFVideos:
        idx = np.asarray(idx, dtype=np.int64)
        return EFVideos(tuple(self.latents[i] for i in idx), self.ef[idx], self.fps[idx], self.names[idx],
                        self.patients[idx], self.splits[idx], self.origin[idx])

    def split(self, name: str | Sequence[str]) -> EFVideos:
        names = [name] if isinstance(name, str) else list(name)
        return self.take(np.flatnonzero(np.isin(self.splits, [n.upper() for n in names])))

    def select(self, names: Sequence[str]) -> EFVideos:
        """The videos named ``names``, in that order.

        Raises:
            DatasetError: a name that is not one of these videos.
        """
        pos = {n: i for i, n in enumerate(self.names)}
        unknown = [n for n in names if n not in pos]
        if unknown:
            raise DatasetError(f"{len(unknown)} video name(s) not in this set, e.g. {unknown[:3]}")
        return self.take([pos[n] for n in names])

    @staticmethod
    def concat(*parts: EFVideos) -> EFVideos:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("EFVideos.concat needs at least one non-empty part")
        return EFVideos(tuple(x for p in parts for x in p.latents),
                        *(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("ef", "fps", "names", "patients", "splits", "origin")))


def _data_fingerprint(dataset) -> str:
    """sha256 over FileList.csv and each video's name, size and modification time: cheap,
    and changed by a regenerated set even when its names are the same."""
    h = hashlib.sha256()
    for csv in sorted(Path(dataset.root).rglob("FileList.csv")):
        h.update(csv.read_bytes())
    for name, path in zip(dataset.table["FileName"], dataset.table["path"]):
        st = Path(path).stat()
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cached_latents(dataset, vae, folder: str | Path, *, size: int = 112):
    """A ``LatentCache`` of every video of ``dataset`` (no disguised copies), encoded with
    ``vae`` into ``folder`` unless the folder already holds one made by this function from
    the same files with the same VAE at the same size.

    Videos are cut to the shortest one's length (as ``echoaudit encode`` does); frames
    whose count FileList.csv does not give are counted by decoding.
    """
    from echoaudit.latents import LatentCache, encode_dataset

    folder = Path(folder)
    want = {"data": _data_fingerprint(dataset), "vae": vae.fingerprint, "size": int(size)}
    if (folder / _SOURCE_JSON).is_file() and (folder / "cache.json").is_file():
        try:
            if read_json(folder / _SOURCE_JSON, what="latent cache source", error=CheckpointError) == want:
                return LatentCache.load(folder, expected_vae=vae.fingerprint)
        except CheckpointError:
            pass  # unreadable or stale: encode again
    counts = dataset.table["NumberOfFrames"].to_numpy(np.int64) if "NumberOfFrames" in dataset.table else None
    if counts is None or (counts < 1).any():
        counts = np.array([len(dataset.load(i, size=size).frames) for i in range(len(dataset))])
    cache = encode_dataset(dataset, vae, folder, frames=int(counts.min()), augment=False, size=size)
    write_json(folder / _SOURCE_JSON, want)
    return cache


# ---------------------------------------------------------------------------------------
# clips and prediction


def batch_clips(videos: EFVideos, idx: np.ndarray, starts: np.ndarray, clip_frames: int, clip_fps: float,
                mirror: np.ndarray | None = None) -> torch.Tensor:
    """(B, clip_frames, C, h, w) float32 clips of videos ``idx`` from frames ``starts``
    (mirrored left-right where ``mirror`` is True)."""
    out = np.empty((len(idx), clip_frames, *videos.frame_shape), dtype=np.float32)
    for k, (i, s) in enumerate(zip(idx, starts)):
        lat = videos.latents[int(i)]
        out[k] = lat[clip_indices(len(lat), float(videos.fps[i]), clip_frames, clip_fps, int(s))]
        if mirror is not None and mirror[k]:
            out[k] = out[k, ..., ::-1]
    return torch.from_numpy(out)


def _last_start(videos: EFVideos, i: int, clip_frames: int, clip_fps: float) -> int:
    return int(crop_starts(len(videos.latents[i]), float(videos.fps[i]), clip_frames, clip_fps, 2)[-1])


@torch.no_grad()
def predict_ef(model: EFRegressor, videos: EFVideos, *, crops: int = 3, batch_size: int = 32) -> np.ndarray:
    """(V,) float64 EF in percent of each video: the mean over up to ``crops`` evenly
    spaced clips (:func:`~echoaudit.models.ef.crop_starts`)."""
    _check_model_videos(model, videos)
    cf, fps = model.config.clip_frames, model.config.clip_fps
    jobs = [(i, s) for i in range(len(videos))
            for s in crop_starts(len(videos.latents[i]), float(videos.fps[i]), cf, fps, crops)]
    if not jobs:
        return np.zeros(0)
    preds = []
    for b in range(0, len(jobs), batch_size):
        idx, starts = map(np.asarray, zip(*jobs[b : b + batch_size]))
        preds.append(model.predict_ef(batch_clips(videos, idx, starts, cf, fps)).double().numpy())
    owner = np.array([i for i, _ in jobs])
    flat = np.concatenate(preds)
    return np.bincount(owner, flat, minlength=len(videos)) / np.bincount(owner, minlength=len(videos))


def _check_model_videos(model: EFRegressor, videos: EFVideos) -> None:
    if len(videos) and videos.frame_shape[0] != model.config.in_channels:
        raise CheckpointError(f"the EF model takes latents of {model.config.in_channels} channels but the videos have "
                              f"{videos.frame_shape[0]}: use a model trained on the same VAE's latents")


# ---------------------------------------------------------------------------------------
# training




def videos_digest(videos: EFVideos) -> str:
    """sha256 of the videos' names, origins and EF labels, in order: which videos a run trained on."""
    h = hashlib.sha256()
    for name, origin, ef in zip(videos.names, videos.origin, videos.ef):
        h.update(f"{origin}\0{name}\0{ef:.6g}\n".encode())
    return h.hexdigest()


def finished_run(out_dir: str | Path) -> dict | None:
    """The record of a finished run in ``out_dir`` (its metrics.json says so), else None."""
    path = Path(out_dir) / "metrics.json"
    if not (path.is_file() and (Path(out_dir) / "best" / "config.json").is_file()):
        return None
    try:
        rec = read_json(path, what="EF training record", error=CheckpointError)
    except CheckpointError:
        return None
    return rec if rec.get("finished") is True else None


def _epoch_plan(n: int, steps: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """(steps, batch) video indices: successive shuffled passes over the n videos."""
    need = steps * batch
    order = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])
    return order[:need].reshape(steps, batch)


def train_ef(
    train: EFVideos,
    val: EFVideos,
    out_dir: str | Path,
    cfg: EFTrainConfig = EFTrainConfig(),
    *,
    progress: Callable[[float, str], None] | None = None,
    desc: str = "train EF",
) -> dict:
    """Train (or resume, when ``out_dir/latest`` holds a trainer state) an EF regressor.

    Args:
        train: the training videos (all of them are used, whatever their split).
        val: the videos early stopping watches (their MAE picks ``best/``).
        out_dir: run folder: ``latest/``, ``best/`` (``save_pretrained``) and ``metrics.json``.
        cfg: the run's configuration; on resume only ``epochs`` and ``patience`` may differ.
        progress: optional ``progress(fraction, message)`` callback.

    Returns:
        The record: ``epoch``, ``best_val_mae``, ``best_epoch``, ``stopped_early``,
        ``finished``, ``history`` (per epoch: loss, val_mae, val_rmse, lr, seconds),
        ``seconds``, ``config``, ``ef_mean``, ``ef_std``, ``n_train``, ``n_val``,
        ``train_videos`` and ``val_videos`` (:func:`videos_digest`).

    Raises:
        DatasetError: fewer than 2 training videos, or no validation video.
        CheckpointError: a resume whose saved configuration, videos or latent shape differ.
    """
    if len(train) < 2:
        raise DatasetError(f"an EF model needs at least 2 training videos; got {len(train)}")
    if len(val) < 1:
        raise DatasetError("an EF model needs VAL videos for early stopping; the validation set is empty")
    if val.frame_shape != train.frame_shape:
        raise DatasetError(f"training latents are {train.frame_shape} per frame but validation latents "
                           f"{val.frame_shape}: encode both with the same VAE at the same size")
    out_dir = Path(out_dir)
    latest, best_dir = out_dir / "latest", out_dir / "best"
    resume = (latest / "trainer_state.json").exists()
    torch.manual_seed(cfg.seed)
    ef_mean, ef_std = float(train.ef.mean()), float(max(train.ef.std(), 1.0))  # 1 point: a floor for constant EFs
    if resume:
        model = load_ef(latest)
    else:
        model = EFRegressor(in_channels=train.frame_shape[0], width=cfg.width, temporal_layers=cfg.temporal_layers,
                            clip_frames=cfg.clip_frames, clip_fps=float(cfg.clip_fps), ef_mean=ef_mean, ef_std=ef_std)
    _check_model_videos(model, train)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    record = {"epoch": 0, "best_val_mae": None, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False,
              "finished": False, "history": [], "seconds": 0.0, "config": asdict(cfg),
              "ef_mean": float(model.config.ef_mean), "ef_std": float(model.config.ef_std),
              "n_train": len(train), "n_val": len(val), "frame_shape": list(train.frame_shape),
              "train_videos": videos_digest(train), "val_videos": videos_digest(val)}
    if resume:
        saved, _ = load_trainer_state(latest, opt)
        diff = {k: (saved["config"].get(k), v) for k, v in asdict(cfg).items()
                if k not in _RESUMABLE and saved["config"].get(k) != v}
        for key, now in (("train_videos", record["train_videos"]), ("val_videos", record["val_videos"]),
                         ("frame_shape", record["frame_shape"])):
            if saved.get(key) != now:
                diff[key] = (str(saved.get(key))[:12], str(now)[:12])
        if diff:
            raise CheckpointError(
                f"cannot resume {out_dir}: its run used other settings "
                f"({', '.join(f'{k}: saved {a!r}, given {b!r}' for k, (a, b) in diff.items())}); "
                "use a new output folder or the saved settings")
        record = {**saved, "config": asdict(cfg), "finished": False}
        if record["bad_epochs"] < cfg.patience:
            record["stopped_early"] = False  # more patience given: go on

    steps = cfg.steps_per_epoch or -(-len(train) // cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps, initial=record["epoch"] * steps, desc=desc, unit="step", leave=False)
    last = np.array([_last_start(train, i, cfg.clip_frames, cfg.clip_fps) for i in range(len(train))])
    target = model.to_standard(torch.from_numpy(train.ef).float())
    while record["epoch"] < cfg.epochs and not record["stopped_early"]:
        epoch = record["epoch"]
        t_epoch = time.perf_counter()
        lr = cosine_lr(epoch, cfg.lr, cfg.epochs)
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([cfg.seed, epoch])
        plan = _epoch_plan(len(train), steps, cfg.batch_size, rng)
        starts = rng.integers(0, last[plan] + 1)
        mirror = rng.random(plan.shape) < cfg.mirror
        model.train()
        loss_sum = 0.0
        for step in range(steps):
            x = batch_clips(train, plan[step], starts[step], cfg.clip_frames, cfg.clip_fps, mirror[step])
            loss = F.mse_loss(model(x), target[torch.from_numpy(plan[step])])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if progress is not None:
                progress((epoch + (step + 1) / steps) / cfg.epochs, f"EF epoch {epoch + 1}/{cfg.epochs}, step {step + 1}/{steps}")

        err = predict_ef(model, val, crops=cfg.eval_crops) - val.ef
        mae, rmse = float(np.abs(err).mean()), float(np.sqrt((err ** 2).mean()))
        now = time.perf_counter()
        record["epoch"] = epoch + 1
        record["history"].append({"epoch": epoch + 1, "loss": loss_sum / steps, "val_mae": mae, "val_rmse": rmse,
                                  "lr": lr, "seconds": now - t_epoch})
        record["seconds"] += now - t_epoch
        improved = record["best_val_mae"] is None or mae < record["best_val_mae"]
        if improved:
            record.update(best_val_mae=mae, best_epoch=epoch + 1)
        close_epoch(model, record, improved=improved, patience=cfg.patience, best_dir=best_dir, latest=latest, opt=opt,
                    metrics_path=out_dir / "metrics.json")
        bar.set_postfix(val_mae=f"{mae:.2f}")
    bar.close()
    record["finished"] = True
    write_json(out_dir / "metrics.json", record)
    return record
