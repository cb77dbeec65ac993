"""Training loop for the latent video diffusion model (nanoGPT order: lr, checkpoint,
forward/backward, step, EMA, log).

Data: random clips of ``num_frames`` latent frames, every ``frame_stride``-th frame of one
video, from a (V, T, C, h, w) array (the latent cache's ``latents.npy``, memory-mapped).
Loss: MSE between the UNet output and the v-prediction target at a uniform random
timestep; the EF condition is dropped to the null id with probability ``cond_dropout``
(classifier-free guidance). AdamW, linear warmup then cosine decay to 10 % of ``lr``,
gradient norm clipped at 1, EMA of the weights (diffusers ``EMAModel``, decay warming up
as (1 + k) / (10 + k) to ``ema_decay``).

Run folder::

    out_dir/latest/unet/      raw weights (diffusers folder, safetensors)
    out_dir/latest/ema/       EMA weights (same format)
    out_dir/latest/scheduler/ the DDPM training schedule
    out_dir/latest/trainer_state.{json,safetensors}   optimizer + record (step, losses, config)
    out_dir/best/             the generator: an EchoVideoPipeline folder (model_index.json,
                              unet/ = EMA weights, scheduler/ = DDIM) + training.json
    out_dir/metrics.json      the final record

``best/`` holds the EMA weights of the latest checkpoint (the final EMA once training
ends), not a pick by training loss: the diffusion loss at random timesteps is noisy and a
weak guide to sample quality, and the EMA of the last steps is what samples best.

Every step draws its clips, timesteps, noise and dropout from generators seeded with
(seed, step), so a resumed run continues exactly as an unbroken one would.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import DDPMScheduler, UNetSpatioTemporalConditionModel
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from echoaudit.errors import CheckpointError, EchoAuditError
from echoaudit.fileio import atomic_dir, write_json
from echoaudit.models.diffusion import (
    DEMO_UNET_CHANNELS,
    EF_NULL,
    EchoVideoPipeline,
    build_unet,
    condition_ids,
    sampling_scheduler,
    train_scheduler,
    context_tokens,
)
from echoaudit.train.checkpoint import load_trainer_state, save_trainer_state

__all__ = ["DiffusionTrainConfig", "train_diffusion", "train_diffusion_from_cache", "get_clips", "TRAINING_JSON"]

TRAINING_JSON = "training.json"
# Fields that may change when a run is resumed; any other difference is refused.
_RESUMABLE = ("steps", "checkpoint_every")


@dataclass(frozen=True)
class DiffusionTrainConfig:
    steps: int = 1500
    batch_size: int = 4  # clips per step
    lr: float = 5e-4
    warmup: int = 50
    num_frames: int = 32  # latent frames per clip
    frame_stride: int = 2  # take every 2nd source frame: 50 fps videos -> 25 fps clips
    block_out_channels: tuple[int, ...] = DEMO_UNET_CHANNELS
    layers_per_block: int = 1
    attention_levels: int = 0  # outer levels with transformer blocks (the middle block always has one)
    cond_dropout: float = 0.1  # probability of training a clip unconditionally (for guidance)
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    seed: int = 0
    subset: int | None = None  # train on the first `subset` training videos only: the deliberately memorizing demo


def _check(latents, ef: np.ndarray, cfg: DiffusionTrainConfig) -> tuple[int, int]:
    shape = tuple(getattr(latents, "shape", ()))
    if len(shape) != 5:
        raise EchoAuditError(f"latents must be a (V, T, C, h, w) array of latent videos; got shape {shape}")
    if ef.shape != (shape[0],):
        raise EchoAuditError(f"ef must have one value per video, shape ({shape[0]},); got {ef.shape}")
    if not np.all((ef >= 0) & (ef <= 100)):
        raise EchoAuditError(f"ef must be percentages in [0, 100]; got values {ef[(ef < 0) | (ef > 100) | np.isnan(ef)][:5]}")
    for name in ("steps", "batch_size", "num_frames", "frame_stride"):
        if getattr(cfg, name) < 1:
            raise EchoAuditError(f"DiffusionTrainConfig.{name} must be >= 1; got {getattr(cfg, name)}")
    if not 0 <= cfg.cond_dropout < 1:
        raise EchoAuditError(f"cond_dropout must be in [0, 1); got {cfg.cond_dropout}")
    videos = shape[0] if cfg.subset is None else cfg.subset
    if not 1 <= videos <= shape[0]:
        raise EchoAuditError(f"subset must be between 1 and the {shape[0]} videos given; got {cfg.subset}")
    span = (cfg.num_frames - 1) * cfg.frame_stride + 1
    if shape[1] < span:
        raise EchoAuditError(
            f"clips of {cfg.num_frames} frames at stride {cfg.frame_stride} span {span} frames, but the videos "
            f"have only T = {shape[1]}; lower num_frames or frame_stride"
        )
    return videos, span


def get_clips(latents, rng: np.random.Generator, *, videos: int, batch_size: int, num_frames: int, frame_stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Random clips from the first ``videos`` videos: ((B, F, C, h, w) float32, (B,) video index)."""
    span = (num_frames - 1) * frame_stride + 1
    idx = rng.integers(0, videos, size=batch_size)
    starts = rng.integers(0, latents.shape[1] - span + 1, size=batch_size)
    clips = np.stack([np.asarray(latents[v, s : s + span : frame_stride], dtype=np.float32) for v, s in zip(idx, starts)])
    return clips, idx


def _lr(step: int, cfg: DiffusionTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _loss(unet, sched: DDPMScheduler, clips: torch.Tensor, ef: torch.Tensor, keep: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """v-prediction MSE on one batch; ``keep`` False rows are trained unconditionally."""
    noise = torch.randn(clips.shape, generator=gen)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(clips),), generator=gen)
    noisy = sched.add_noise(clips, noise, t)
    target = sched.get_velocity(clips, noise, t)
    ids = condition_ids(ef, keep)
    out = unet(noisy, t, encoder_hidden_states=context_tokens(unet, len(clips), clips), added_time_ids=ids).sample
    return torch.nn.functional.mse_loss(out, target)


def train_diffusion(
    latents,
    ef,
    out_dir: str | Path,
    cfg: DiffusionTrainConfig = DiffusionTrainConfig(),
    *,
    fps: float = 50.0,
    vae_fingerprint: str = "",
    view: str = "unknown",
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Train (or resume) the EF-conditioned video diffusion model; write ``out_dir/{latest,best}``.

    Args:
        latents: (V, T, C, h, w) scaled VAE latents of V training videos (float16/32
            array or memmap; only the clips drawn are read).
        ef: (V,) EF in percent of each video.
        out_dir: run folder; resumed from ``latest/`` when it holds a trainer state.
        cfg: hyper-parameters; ``cfg.subset`` keeps the first ``subset`` videos only.
        fps: frame rate of the source videos (clips get fps / frame_stride).
        vae_fingerprint: sha256 of the VAE that made ``latents`` (recorded for decoding).
        view: the training videos' echo view, recorded in the generator.
        progress: ``progress(fraction, message)`` after every step.

    Returns:
        The final record: step, loss history [{step, loss, lr, seconds}], seconds,
        config, train_videos, train_ef.

    Raises:
        EchoAuditError: bad shapes, EF values, or config values (named in the message).
        CheckpointError: a ``latest/`` that does not load, was trained on other latent
            shapes, or with another config (only ``steps`` and ``checkpoint_every`` may change).
    """
    ef = np.asarray(ef, dtype=np.float64)
    videos, _ = _check(latents, ef, cfg)
    _, _, c, h, w = latents.shape
    out_dir = Path(out_dir)
    latest, best_dir = out_dir / "latest", out_dir / "best"
    sched = train_scheduler()

    resume = (latest / "trainer_state.json").exists()
    if resume:
        unet, ema_unet = _load_unet(latest / "unet"), _load_unet(latest / "ema")
        saved = (unet.config.in_channels, unet.config.sample_size)
        if saved != (c, h):
            raise CheckpointError(
                f"{latest} was trained on latents with C={saved[0]} channels of {saved[1]}x{saved[1]}; "
                f"these latents have shape (C, h, w) = {(c, h, w)}"
            )
    else:
        unet = build_unet(cfg.block_out_channels, latent_channels=c, sample_size=h, num_frames=cfg.num_frames,
                          layers_per_block=cfg.layers_per_block, attention_levels=cfg.attention_levels, seed=cfg.seed)
        ema_unet = None
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    ema = EMAModel((ema_unet or unet).parameters(), decay=cfg.ema_decay, model_cls=UNetSpatioTemporalConditionModel,
                   model_config=unet.config)
    record = {"step": 0, "history": [], "seconds": 0.0, "config": asdict(cfg), "ema_step": 0}
    if resume:
        record, _ = load_trainer_state(latest, opt)
        _check_same_config(record["config"], asdict(cfg), latest)
        record["config"] = asdict(cfg)
        ema.optimization_step = int(record["ema_step"])
    meta = {
        "num_frames": cfg.num_frames, "frame_stride": cfg.frame_stride, "fps": float(fps) / cfg.frame_stride,
        "source_fps": float(fps), "vae_fingerprint": vae_fingerprint, "view": view, "train_videos": int(videos),
        "train_ef": [float(v) for v in ef[:videos]], "latent_shape": [int(c), int(h), int(w)],
        "ef_conditioning": {"via": "added_time_ids", "units": "percent", "null_id": EF_NULL, "cond_dropout": cfg.cond_dropout},
        "prediction_type": sched.config.prediction_type,
    }

    ef_all = torch.from_numpy(ef.astype(np.float32))
    unet.train()
    t0 = time.time() - record["seconds"]
    window: list[float] = []
    bar = tqdm(total=cfg.steps, initial=record["step"], desc="train diffusion", unit="step")
    while record["step"] < cfg.steps:
        step = record["step"]
        lr = _lr(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([cfg.seed, step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        clips, idx = get_clips(latents, rng, videos=videos, batch_size=cfg.batch_size,
                               num_frames=cfg.num_frames, frame_stride=cfg.frame_stride)
        keep = torch.from_numpy(rng.random(cfg.batch_size) >= cfg.cond_dropout)
        loss = _loss(unet, sched, torch.from_numpy(clips), ef_all[idx], keep, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        record["step"] = step + 1
        record["ema_step"] = ema.optimization_step
        window.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{window[-1]:.4f}")
        if progress is not None:
            progress(record["step"] / cfg.steps, f"diffusion step {record['step']}/{cfg.steps}, loss {window[-1]:.4f}")

        if record["step"] % cfg.checkpoint_every == 0 or record["step"] == cfg.steps:
            record["seconds"] = time.time() - t0
            record["history"].append({"step": record["step"], "loss": float(np.mean(window)), "lr": lr, "seconds": record["seconds"]})
            window = []
            _save(unet, ema, opt, record, sched, latest, best_dir, meta)
    bar.close()
    final = {**record, **meta}
    write_json(out_dir / "metrics.json", final)
    return final


def train_diffusion_from_cache(cache, out_dir: str | Path, cfg: DiffusionTrainConfig = DiffusionTrainConfig(), *,
                               split: str = "TRAIN", progress: Callable[[float, str], None] | None = None) -> dict:
    """:func:`train_diffusion` on the ``split`` rows of a ``LatentCache`` (``.latents``, ``.table``).

    The rows keep the cache's order, so ``cfg.subset`` takes the first training videos.
    Raises EchoAuditError when the split has no videos.
    """
    table = cache.table.reset_index(drop=True)
    rows = np.flatnonzero(table["Split"].astype(str).str.upper().to_numpy() == split.upper())
    if len(rows) == 0:
        raise EchoAuditError(f"the latent cache {cache.folder} has no {split.upper()} videos (splits: {sorted(table['Split'].unique())})")
    # Contiguous rows (the usual case) stay a memmap view; otherwise read them once.
    latents = cache.latents[rows[0] : rows[-1] + 1] if np.all(np.diff(rows) == 1) else np.asarray(cache.latents[rows])
    fps = table["FPS"].iloc[rows].median() if "FPS" in table else 50.0
    views = table["View"].iloc[rows].unique() if "View" in table else []
    return train_diffusion(
        latents, table["EF"].to_numpy(dtype=np.float64)[rows], out_dir, cfg,
        fps=float(fps) if np.isfinite(fps) else 50.0, vae_fingerprint=cache.vae_fingerprint,
        view=str(views[0]) if len(views) == 1 else "unknown", progress=progress,
    )


def _load_unet(folder: Path) -> UNetSpatioTemporalConditionModel:
    from echoaudit.fileio import check_model_configs
    from echoaudit.models.limits import check_unet_config

    config = check_model_configs(folder, ("config.json",)).get("config.json")
    if config is not None:  # sizes first: diffusers builds the UNet before it reads a weight
        check_unet_config(folder / "config.json", config)
    try:
        return UNetSpatioTemporalConditionModel.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False)
    except Exception as exc:  # diffusers raises several types for missing/mismatched files
        raise CheckpointError(f"cannot resume: the UNet in {folder} does not load ({exc})") from exc


def _check_same_config(saved: dict, now: dict, folder: Path) -> None:
    diff = {k: (saved.get(k), v) for k, v in now.items() if k not in _RESUMABLE and _norm(saved.get(k)) != _norm(v)}
    if diff:
        text = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"cannot resume from {folder} with a different config ({text}); use a new out_dir or the same settings")


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _save(unet, ema: EMAModel, opt, record: dict, sched: DDPMScheduler, latest: Path, best_dir: Path, meta: dict) -> None:
    ema_unet = copy.deepcopy(unet)  # not from_config: that would draw a fresh init from the global RNG
    ema.copy_to(ema_unet.parameters())
    with atomic_dir(latest) as tmp:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        ema_unet.save_pretrained(tmp / "ema", safe_serialization=True)
        sched.save_pretrained(tmp / "scheduler")
        save_trainer_state(tmp, opt, record)
    pipe = EchoVideoPipeline(
        ema_unet.eval(), sampling_scheduler(sched), num_frames=meta["num_frames"], frame_stride=meta["frame_stride"],
        fps=meta["fps"], vae_fingerprint=meta["vae_fingerprint"], train_videos=meta["train_videos"], view=meta["view"],
    )
    with atomic_dir(best_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        summary = {k: record[k] for k in ("step", "seconds", "history", "config")}
        (tmp / TRAINING_JSON).write_text(json.dumps({**summary, **meta}, indent=2, sort_keys=True, default=str) + "\n")
