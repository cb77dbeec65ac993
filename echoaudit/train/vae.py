"""Training loop for the frame VAE (nanoGPT order: lr, eval + checkpoint, step, log).

Loss: MSE + L1 on pixels in [-1, 1] plus a tiny KL term (1e-6), which measured best on
speckled echo frames (STACK_NOTES.md). After training, the latent scaling factor
(1 / std of the latents on training frames) is written into the VAE config, so that
diffusion models see latents of roughly unit variance.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from echoaudit.audit.image_quality import reconstruction_metrics
from echoaudit.fileio import atomic_dir, write_json
from echoaudit.models.vae import DEMO_VAE_CHANNELS, FrameVAE, build_vae
from echoaudit.train.checkpoint import load_trainer_state, save_trainer_state

__all__ = ["VAETrainConfig", "train_vae", "sample_frames"]


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 20
    kl_weight: float = 1e-6
    l1_weight: float = 1.0
    eval_every: int = 100
    block_out_channels: tuple[int, ...] = DEMO_VAE_CHANNELS
    layers_per_block: int = 1
    frames_per_video: int = 8  # frames sampled from each training video
    crop: int | None = 64  # train on random crops (the VAE is convolutional): ~3x cheaper steps
    seed: int = 0


def sample_frames(dataset, *, frames_per_video: int, seed: int, size: int = 112) -> np.ndarray:
    """Evenly spaced frames (with a seeded offset) from every video: (N, H, W) float32."""
    rng = np.random.default_rng(seed)
    out = []
    for i in tqdm(range(len(dataset)), desc="reading frames", unit="video", leave=False):
        frames = dataset.load(i, size=size).frames
        step = max(1, len(frames) // frames_per_video)
        start = int(rng.integers(step))
        out.append(frames[start::step][:frames_per_video])
    return np.concatenate(out).astype(np.float32)


def _lr(step: int, cfg: VAETrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(vae: AutoencoderKL, frames: np.ndarray) -> dict[str, float]:
    model = FrameVAE(vae)
    recon = model.decode(model.encode(frames)).numpy()
    vae.train()
    return reconstruction_metrics(frames, recon)


def train_vae(
    train_frames: np.ndarray,
    val_frames: np.ndarray,
    out_dir: str | Path,
    cfg: VAETrainConfig = VAETrainConfig(),
    *,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Train (or resume) a VAE on (N, H, W) frames; write ``out_dir/{latest,best}``.

    Returns the final record: step, validation metrics, best low-passed PSNR, seconds.
    """
    out_dir = Path(out_dir)
    latest, best_dir = out_dir / "latest", out_dir / "best"
    torch.manual_seed(cfg.seed)
    if (latest / "trainer_state.json").exists():
        from echoaudit.fileio import check_model_configs
        from echoaudit.models.limits import check_vae_config

        config = check_model_configs(latest, ("config.json",)).get("config.json")
        if config is not None:  # sizes first: diffusers builds the VAE before it reads a weight
            check_vae_config(latest / "config.json", config)
        vae = AutoencoderKL.from_pretrained(latest, use_safetensors=True)
    else:
        vae = build_vae(cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
                        sample_size=train_frames.shape[-1], seed=cfg.seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    record = {"step": 0, "best_psnr_lowpass": -1.0, "history": [], "seconds": 0.0, "config": asdict(cfg)}
    if (latest / "trainer_state.json").exists():
        record, _ = load_trainer_state(latest, opt)

    gen = np.random.default_rng([cfg.seed, record["step"]])
    data = torch.from_numpy(train_frames)
    vae.train()
    t0 = time.time() - record["seconds"]
    bar = tqdm(total=cfg.steps, initial=record["step"], desc="train vae", unit="step")
    while record["step"] < cfg.steps:
        step = record["step"]
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        x = data[gen.integers(len(data), size=cfg.batch_size)]
        if cfg.crop is not None and cfg.crop < x.shape[-1]:
            i, j = gen.integers(0, x.shape[-2] - cfg.crop + 1), gen.integers(0, x.shape[-1] - cfg.crop + 1)
            x = x[:, i : i + cfg.crop, j : j + cfg.crop]
        x = x[:, None] * 2 - 1
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample()).sample
        loss = torch.nn.functional.mse_loss(recon, x) + cfg.l1_weight * (recon - x).abs().mean()
        loss = loss + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        record["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if progress is not None:
            progress(record["step"] / cfg.steps, f"VAE step {record['step']}/{cfg.steps}")

        if record["step"] % cfg.eval_every == 0 or record["step"] == cfg.steps:
            metrics = evaluate(vae, val_frames)
            record["seconds"] = time.time() - t0
            record["history"].append({"step": record["step"], **metrics, "seconds": record["seconds"]})
            if metrics["psnr_lowpass"] > record["best_psnr_lowpass"]:
                record["best_psnr_lowpass"] = metrics["psnr_lowpass"]
                record["best"] = {"step": record["step"], **metrics}
                _save_model(vae, best_dir, train_frames)
            _save_model(vae, latest, None)
            save_trainer_state(latest, opt, record)
    bar.close()
    write_json(out_dir / "metrics.json", record)
    return record


def _save_model(vae: AutoencoderKL, folder: Path, frames_for_scale: np.ndarray | None) -> None:
    if frames_for_scale is not None:
        # Latent scaling: 1/std of posterior means over a sample of training frames.
        vae.register_to_config(scaling_factor=1.0)
        z = FrameVAE(vae).encode(frames_for_scale[:512])
        vae.train()
        vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    with atomic_dir(folder) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        if (folder / "trainer_state.json").exists():
            for name in ("trainer_state.json", "trainer_state.safetensors"):
                (tmp / name).write_bytes((folder / name).read_bytes())
