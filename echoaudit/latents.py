"""The latent cache: every frame of every video of a data set, encoded once by the VAE.

Re-identification training in latent space is fast because it reads these small arrays
instead of decoding videos (the paper's 3 s vs 3 min an epoch); the diffusion model trains
on them too. Folder layout:

- ``latents.npy``   float16 (V, T, C, h, w): scaled VAE latents of each video's frames.
- ``augmented.npy`` float16 (V, K, T_a, C, h, w): latents of K disguised copies of each
  video (:func:`echoaudit.data.attacks.random_disguise`: geometry, mirror, blur/sharpen,
  gamma/contrast, speckle/noise, JPEG, overlays, sector/depth), made in image space
  *before* encoding, so training sees what a disguised copy's latents look like. Only
  every ``augment_stride``-th frame is kept (frame f of the video is copy frame
  f // augment_stride), which keeps K copies cheap to encode and to store.
  Caches written before K existed hold (V, T, C, h, w): K = 1, stride 1.
- ``videos.csv``    one row per video: FileName, PatientID, Split, EF, View, FPS.
- ``cache.json``    VAE fingerprint, frames per video, size, augmentation seed, K, stride.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.ndimage import shift as nd_shift
from tqdm.auto import tqdm

from echoaudit.errors import CheckpointError, IndexMismatchError
from echoaudit.fileio import atomic_dir, read_json

__all__ = ["LatentCache", "augment_video", "encode_dataset"]


def augment_video(frames: np.ndarray, rng: np.random.Generator, *, max_shift: float = 4.0) -> np.ndarray:
    """A copy of (T, H, W) frames in [0, 1] as a leaking generator might produce it."""
    dy, dx = rng.uniform(-max_shift, max_shift, size=2)
    out = nd_shift(frames, (0, dy, dx), order=1, mode="constant")
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-0.06, 0.06)
    out = out * contrast + brightness
    out = out + rng.normal(0, rng.uniform(0.0, 0.04), size=out.shape)
    return np.clip(out, 0, 1).astype(np.float32)


@dataclass
class LatentCache:
    folder: Path
    latents: np.ndarray  # (V, T, C, h, w) float16
    augmented: np.ndarray | None
    table: pd.DataFrame
    meta: dict

    @property
    def vae_fingerprint(self) -> str:
        return self.meta["vae_fingerprint"]

    @property
    def augment_stride(self) -> int:
        return int(self.meta.get("augment_stride", 1))

    @classmethod
    def load(cls, folder: str | Path, *, expected_vae: str | None = None, mmap: bool = True) -> "LatentCache":
        folder = Path(folder)
        try:
            meta = _read_meta(folder)
            table = pd.read_csv(folder / "videos.csv", dtype={"FileName": str, "PatientID": str})
            mode = "r" if mmap else None
            lat = np.load(folder / "latents.npy", mmap_mode=mode)
            aug = np.load(folder / "augmented.npy", mmap_mode=mode) if (folder / "augmented.npy").exists() else None
        except (OSError, ValueError, CheckpointError) as exc:
            raise CheckpointError(f"latent cache {folder} is missing or corrupt ({exc}); rebuild it with `echoaudit encode`") from exc
        if len(lat) != len(table):
            raise CheckpointError(f"latent cache {folder}: {len(lat)} latent videos but {len(table)} rows in videos.csv")
        if expected_vae is not None and meta["vae_fingerprint"] != expected_vae:
            raise IndexMismatchError(
                f"latent cache {folder} was encoded with VAE {meta['vae_fingerprint'][:12]}, not the loaded VAE "
                f"{expected_vae[:12]}; re-encode with `echoaudit encode`"
            )
        return cls(folder, lat, aug, table, meta)


def _read_meta(folder: Path) -> dict:
    """``cache.json``, strictly: a JSON object whose known keys have their types.

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    path = folder / "cache.json"
    meta = read_json(path, what="latent cache record", expect=dict, error=CheckpointError)
    if not isinstance(meta.get("vae_fingerprint"), str):
        raise CheckpointError(f"latent cache record {str(path)!r} has no vae_fingerprint string; "
                              f"got {meta.get('vae_fingerprint')!r:.80}")
    for key in ("augment_stride", "augment_copies", "frames", "size", "n_videos"):
        value = meta.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (key == "augment_stride" and value < 1):
            raise CheckpointError(f"latent cache record {str(path)!r}: {key} must be a whole number "
                                  f"(>= 1 for augment_stride); got {value!r:.80}")
    return meta


def encode_dataset(
    dataset,
    vae,
    out: str | Path,
    *,
    frames: int | None = None,
    augment: bool = True,
    augment_copies: int = 8,
    augment_stride: int = 8,
    seed: int = 0,
    size: int = 112,
    progress: Callable[[float, str], None] | None = None,
) -> LatentCache:
    """Encode every video of an ``EchoNetDataset`` with a ``FrameVAE`` into a cache folder.

    Videos are cut (or must reach) ``frames`` frames so the array is rectangular; by default
    the shortest video's length. With ``augment``, ``augment_copies`` disguised copies of
    every ``augment_stride``-th frame are encoded too (see the module docstring); copy k of
    video i is drawn from ``default_rng([seed, i, k])``, so a cache's copies do not depend
    on the order or number of videos encoded.
    """
    from echoaudit.data.attacks import random_disguise

    n = len(dataset)
    if n == 0:
        raise ValueError("cannot encode an empty data set")
    if augment and (augment_copies < 1 or augment_stride < 1):
        raise ValueError(f"augment_copies and augment_stride must be >= 1; got {augment_copies}, {augment_stride}")
    t = int(frames or dataset.table["NumberOfFrames"].min())
    c, h, w = vae.latent_shape(size)
    lat = np.zeros((n, t, c, h, w), dtype=np.float16)
    t_aug = len(range(0, t, augment_stride))
    aug = np.zeros((n, augment_copies, t_aug, c, h, w), dtype=np.float16) if augment else None
    fps = dataset.table["FPS"].to_numpy(dtype=np.float64) if "FPS" in dataset.table else np.full(n, 50.0)
    for i in tqdm(range(n), desc="encoding latents", unit="video"):
        x = dataset.load(i, size=size, num_frames=t).frames
        lat[i] = vae.encode(x).numpy().astype(np.float16)
        if aug is not None:
            copies = [random_disguise(x, np.random.default_rng([seed, i, k]), fps=float(fps[i]), stride=augment_stride)
                      for k in range(augment_copies)]
            aug[i] = vae.encode(np.concatenate(copies)).numpy().astype(np.float16).reshape(augment_copies, t_aug, c, h, w)
        if progress is not None:
            progress((i + 1) / n, f"encoded {i + 1}/{n} videos")
    cols = [col for col in ("FileName", "PatientID", "Split", "EF", "View", "FPS") if col in dataset.table]
    table = dataset.table[cols].reset_index(drop=True)
    meta = {"vae_fingerprint": vae.fingerprint, "frames": t, "size": size, "augment_seed": seed,
            "latent_shape": [c, h, w], "n_videos": n,
            "augment_copies": augment_copies if augment else 0, "augment_stride": augment_stride,
            "augment": "echoaudit.data.attacks.random_disguise"}
    out = Path(out)
    with atomic_dir(out) as tmp:
        np.save(tmp / "latents.npy", lat)
        if aug is not None:
            np.save(tmp / "augmented.npy", aug)
        table.to_csv(tmp / "videos.csv", index=False)
        (tmp / "cache.json").write_text(json.dumps(meta, indent=2))
    return LatentCache.load(out)
