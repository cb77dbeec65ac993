"""Micro models and a tiny workspace, trained in seconds from a small phantom set.

Shared by the end-to-end, app and browser tests: phantom data -> VAE -> latent cache ->
re-ID -> generators -> index -> audit. The models are weak on purpose (tests never rely
on the shipped demo checkpoints); what they must do is run the real code paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from echoaudit.build import BuildConfig, create_workspace
from echoaudit.data.echonet import EchoNetDataset
from echoaudit.data.phantom import PhantomConfig, generate_phantom
from echoaudit.engine import EngineConfig
from echoaudit.latents import encode_dataset
from echoaudit.models.vae import FrameVAE
from echoaudit.train.reid import LatentPairSource, ReIDTrainConfig, train_reid
from echoaudit.train.vae import VAETrainConfig, sample_frames, train_vae

SIZE = 64
PHANTOM = PhantomConfig(n_patients=16, videos_per_patient=2, frames=16, fps=25.0, size=SIZE, seed=0)


def micro_models(root: Path) -> dict[str, Path]:
    """Train the micro VAE and re-ID (and generators, when available) under ``root``."""
    torch.manual_seed(0)
    data = generate_phantom(root / "data", PHANTOM)
    ds = EchoNetDataset.open(data)
    frames = sample_frames(ds.split("TRAIN"), frames_per_video=4, seed=0, size=SIZE)
    val = sample_frames(ds.split("TEST"), frames_per_video=2, seed=1, size=SIZE)
    vcfg = VAETrainConfig(steps=120, batch_size=16, lr=2e-3, eval_every=120, block_out_channels=(8, 16, 16, 16),
                          crop=None)
    train_vae(frames, val, root / "vae", vcfg)
    vae = FrameVAE.from_pretrained(root / "vae" / "best")
    cache = encode_dataset(ds, vae, root / "latents", size=SIZE)
    source = LatentPairSource(np.asarray(cache.latents), np.asarray(cache.augmented), cache.table,
                              fingerprint=cache.vae_fingerprint, augment_stride=cache.augment_stride)
    rcfg = ReIDTrainConfig(epochs=25, pairs_per_epoch=1024, batch_size=128, width=16, embed_dim=32, head_hidden=32,
                           val_pairs=256, lr=3e-3, patience=25)
    train_reid(source, root / "reid", rcfg)
    out = {"data": data, "vae": root / "vae" / "best", "reid": root / "reid" / "best", "cache": root / "latents"}
    out.update(micro_generators(root, cache))
    return out


def micro_generators(root: Path, cache) -> dict[str, Path]:
    try:
        from echoaudit.train.diffusion import DiffusionTrainConfig, train_diffusion
    except ImportError:
        return {}
    train = (cache.table["Split"] == "TRAIN").to_numpy()
    lat = np.asarray(cache.latents)[train]
    ef = cache.table.loc[train, "EF"].to_numpy()
    gens = {}
    for name, subset, steps in (("regular", None, 6), ("memorizing", 2, 6)):
        cfg = DiffusionTrainConfig(steps=steps, batch_size=4, num_frames=8, frame_stride=1,
                                   block_out_channels=(32, 32), subset=subset, seed=0)
        train_diffusion(lat, ef, root / f"gen_{name}", cfg)
        gens[f"gen_{name}"] = root / f"gen_{name}" / "best"
    return gens


TINY_CFG = BuildConfig(n_synthetic=6, synthetic_frames=8, steps=3, top=5, temporal_heldout=8,
                       engine=EngineConfig(size=SIZE, k=8, index_stride=2, frame_stride=2))


def tiny_inputs(models: Path) -> dict:
    """create_workspace's inputs of the tiny workspace, from the micro models under ``models``."""
    gens = {g: models / f"gen_{g}" / "best" for g in ("regular", "memorizing") if (models / f"gen_{g}" / "best").is_dir()}
    return {"data": models / "data", "vae": models / "vae" / "best", "reid": models / "reid" / "best",
            "generators": gens, "cfg": TINY_CFG}


def tiny_workspace(root: Path) -> Path:
    micro_models(root / "models")
    ws = create_workspace(root / "ws", **tiny_inputs(root / "models"))
    return ws.root
