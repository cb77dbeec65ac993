"""Generate synthetic echo videos with a trained generator and describe how they compare.

- :func:`generate_videos`: n clips in memory, uint8 frames (for the dashboard).
- :func:`generate_dataset`: the same, written as an EchoNet-format data set (FileList.csv
  with the EF each video was asked for, ``Videos/SYN_<seed>_<i>.avi``) plus
  ``generator.json`` (checkpoint, its hash, seed, steps, guidance) beside FileList.csv.
- :func:`generator_quality`: simple image statistics of synthetic vs real videos.

Determinism: video i starts from noise drawn with its own generator seeded by
``SeedSequence([seed, i])`` and DDIM (eta = 0) adds no noise after that, so the same
seed gives the same frames whatever ``n`` or ``batch_size``. EFs that are not given are
drawn (with replacement) from the training EFs recorded in the generator's
``training.json``, with ``default_rng([seed, 1])``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from echoaudit.data.echonet import SPLITS, EchoNetDataset, EchoNetWriter
from echoaudit.errors import CheckpointError, EchoAuditError
from echoaudit.fileio import model_fingerprint, write_json
from echoaudit.models.diffusion import EchoVideoPipeline
from echoaudit.train.diffusion import TRAINING_JSON

__all__ = [
    "GENERATOR_JSON",
    "SYNTHETIC_SOURCE",
    "load_generator",
    "training_efs",
    "draw_efs",
    "video_seed",
    "generate_latents",
    "generate_videos",
    "generate_dataset",
    "sector_mask",
    "video_statistics",
    "generator_quality",
]

GENERATOR_JSON = "generator.json"
SYNTHETIC_SOURCE = "synthetic"  # value of the FileList `Source` column of generated videos


def load_generator(pipeline: EchoVideoPipeline | str | Path) -> EchoVideoPipeline:
    """A pipeline object as is, or the pipeline folder loaded (CheckpointError if it does not load)."""
    return pipeline if isinstance(pipeline, EchoVideoPipeline) else EchoVideoPipeline.from_folder(pipeline)


def training_efs(pipeline: EchoVideoPipeline) -> np.ndarray:
    """(V,) float64 EFs of the generator's training videos, from ``training.json`` in its folder.

    Raises:
        CheckpointError: the pipeline was not loaded from a folder with ``training.json``.
    """
    folder = Path(pipeline.name_or_path or ".")
    try:
        values = json.loads((folder / TRAINING_JSON).read_text())["train_ef"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"ef=None draws EFs from the training set, but {folder / TRAINING_JSON} is missing or has no "
            f"train_ef ({exc}); pass ef= explicitly"
        ) from exc
    return np.asarray(values, dtype=np.float64)


def draw_efs(train_ef: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n,) EFs drawn with replacement from ``train_ef`` with ``default_rng([seed, 1])``."""
    if len(train_ef) == 0:
        raise CheckpointError("the generator recorded no training EFs to draw from; pass ef= explicitly")
    return np.random.default_rng([seed, 1]).choice(np.asarray(train_ef, dtype=np.float64), size=n, replace=True)


def video_seed(seed: int, i: int) -> int:
    """The noise seed of synthetic video ``i`` of a set generated with ``seed``."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_common(n, seed, batch_size) -> None:
    for name, value, low in (("n", n, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise EchoAuditError(f"{name} must be an integer >= {low}; got {value!r}")


def _check_vae(pipe: EchoVideoPipeline, vae) -> None:
    if vae.latent_channels != pipe.latent_shape[0]:
        raise CheckpointError(
            f"the VAE has {vae.latent_channels} latent channels but the generator's UNet makes {pipe.latent_shape[0]}; "
            "decode with the VAE the generator was trained with"
        )
    trained, given = pipe.config.vae_fingerprint, vae.fingerprint
    if trained and given and trained != given:
        raise CheckpointError(
            f"the generator was trained on latents of VAE {trained[:12]}, but this VAE is {given[:12]}; "
            "decode with the VAE the generator was trained with"
        )


def _efs(pipe: EchoVideoPipeline, ef, n: int, seed: int) -> np.ndarray:
    if ef is None:
        return draw_efs(training_efs(pipe), n, seed)
    values = np.full(n, ef, dtype=np.float64) if np.isscalar(ef) else np.asarray(ef, dtype=np.float64)
    if values.shape != (n,) or not np.all((values >= 0) & (values <= 100)):
        raise EchoAuditError(f"ef must be None, a number in [0, 100] or {n} such numbers; got {ef!r}")
    return values


def generate_latents(
    pipeline: EchoVideoPipeline | str | Path,
    *,
    n: int,
    seed: int,
    efs: np.ndarray,
    steps: int = 25,
    guidance: float = 2.0,
    num_frames: int | None = None,
    first: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> torch.Tensor:
    """Latents of videos ``first .. first + n - 1`` of a set made with ``seed``: (n, F, C, h, w) float32.

    ``efs`` is (n,) EF in percent of those videos. One pipeline call (one batch).
    """
    pipe = load_generator(pipeline)
    gens = [torch.Generator().manual_seed(video_seed(seed, first + i)) for i in range(n)]
    return pipe(n, num_frames=num_frames, ef=[float(v) for v in efs], steps=steps, guidance=guidance,
                generator=gens, progress=progress).cpu()


def _batches(
    pipe, vae, *, n, seed, steps, ef, guidance, num_frames, batch_size, progress
):
    """Yield (first index, uint8 frames (b, T, H, W), EFs (b,)) batch by batch."""
    _check_common(n, seed, batch_size)
    _check_vae(pipe, vae)
    efs = _efs(pipe, ef, n, seed)
    for first in range(0, n, batch_size):
        b = min(batch_size, n - first)

        def step_progress(frac, msg, first=first, b=b):
            if progress is not None:
                progress((first + 0.9 * frac * b) / n, f"videos {first + 1}-{first + b} of {n}: {msg}")

        lat = generate_latents(pipe, n=b, seed=seed, efs=efs[first : first + b], steps=steps, guidance=guidance,
                               num_frames=num_frames, first=first, progress=step_progress)
        frames = vae.decode(lat.flatten(0, 1)).numpy()
        frames = np.round(frames * 255.0).astype(np.uint8).reshape(b, lat.shape[1], *frames.shape[1:])
        if progress is not None:
            progress((first + b) / n, f"decoded videos {first + 1}-{first + b} of {n}")
        yield first, frames, efs[first : first + b]


def generate_videos(
    pipeline: EchoVideoPipeline | str | Path,
    vae,
    *,
    n: int,
    seed: int,
    steps: int = 25,
    ef: float | Sequence[float] | None = None,
    guidance: float = 2.0,
    num_frames: int | None = None,
    batch_size: int = 16,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` videos in memory.

    Args:
        pipeline: an :class:`EchoVideoPipeline` or its folder.
        vae: the ``FrameVAE`` the generator's latents belong to.
        n: number of videos, >= 1.
        seed: the set's seed (video i uses :func:`video_seed`(seed, i)).
        steps, guidance, num_frames: as for the pipeline.
        ef: EF in percent for all videos, one per video, or None to draw from the
            training EFs.
        batch_size: clips per pipeline call (memory vs speed; results do not depend on it).
        progress: ``progress(fraction, message)``.

    Returns:
        frames: (n, T, H, W) uint8; efs: (n,) float64, the EF each video was asked for.

    Raises:
        EchoAuditError: bad n, seed, batch_size, ef, steps or guidance.
        CheckpointError: a generator folder that does not load, a VAE that does not match.
    """
    pipe = load_generator(pipeline)
    chunks = list(_batches(pipe, vae, n=n, seed=seed, steps=steps, ef=ef, guidance=guidance,
                           num_frames=num_frames, batch_size=batch_size, progress=progress))
    return np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks])


def generate_dataset(
    pipeline_folder: str | Path,
    vae,
    out_root: str | Path,
    *,
    n: int,
    seed: int,
    steps: int = 25,
    ef: float | Sequence[float] | None = None,
    guidance: float = 2.0,
    num_frames: int | None = None,
    fps: float | None = None,
    split: str = "TEST",
    batch_size: int = 16,
    overwrite: bool = False,
    progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Write ``n`` generated videos as an EchoNet-format data set at ``out_root``.

    FileList rows: FileName ``SYN_<seed>_<i:04d>``, EF = the EF asked for, ESV/EDV empty,
    Split = ``split`` (TEST by default: the reader only knows TRAIN/VAL/TEST), each
    video its own PatientID, View = the generator's training view, and two extra
    columns: ``Source`` = "synthetic" and ``Seed`` = ``seed``. ``generator.json`` beside
    FileList.csv records the checkpoint (path and sha256), seed, steps, guidance, n, EF
    setting, frames and fps.

    Args:
        pipeline_folder: the generator folder (``best/`` of a training run).
        fps: frame rate written; default: the generator's.
        overwrite: replace an existing data set at ``out_root``.
        Others: as :func:`generate_videos`.

    Returns:
        ``out_root`` (a folder ``EchoNetDataset.open`` reads).

    Raises:
        EchoAuditError / CheckpointError: as :func:`generate_videos`.
        DatasetError: ``out_root`` already holds a data set and ``overwrite`` is False, or
            a ``split`` the reader does not accept.
    """
    pipeline_folder = Path(pipeline_folder)
    pipe = load_generator(pipeline_folder)
    if str(split).strip().upper() not in SPLITS:
        raise EchoAuditError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    rate = float(pipe.config.fps if fps is None else fps)
    if not math.isfinite(rate) or rate <= 0:
        raise EchoAuditError(f"fps must be a number > 0; got {fps!r}")
    out_root = Path(out_root)
    with EchoNetWriter(out_root, overwrite=overwrite) as writer:
        for first, frames, efs in tqdm(
            _batches(pipe, vae, n=n, seed=seed, steps=steps, ef=ef, guidance=guidance, num_frames=num_frames,
                     batch_size=batch_size, progress=progress),
            total=math.ceil(n / batch_size), desc="generating", unit="batch",
        ):
            for j, (video, value) in enumerate(zip(frames, efs)):
                writer.add(f"SYN_{seed}_{first + j:04d}", video, rate, ef=float(value), split=split,
                           view=pipe.config.view, Source=SYNTHETIC_SOURCE, Seed=int(seed))
    write_json(out_root / GENERATOR_JSON, {
        "checkpoint": str(pipeline_folder.absolute()),
        "checkpoint_sha256": model_fingerprint(pipeline_folder),
        "vae_fingerprint": vae.fingerprint,
        "seed": int(seed), "n": int(n), "steps": int(steps), "guidance": float(guidance),
        "ef": "drawn from the training EFs" if ef is None else (float(ef) if np.isscalar(ef) else [float(v) for v in ef]),
        "num_frames": int(num_frames or pipe.config.num_frames), "fps": rate, "split": str(split).upper(),
        "scheduler": type(pipe.scheduler).__name__, "noise_seed": "video i: SeedSequence([seed, i])",
    })
    return out_root


# --------------------------------------------------------------------------- quality


def sector_mask(videos: Sequence[np.ndarray], *, level: float = 2 / 255, majority: float = 0.5) -> np.ndarray:
    """(H, W) bool: the imaging sector, from real videos' (T, H, W) float frames in [0, 1].

    A pixel is in the sector when it is above ``level`` (just above the black of
    compressed background) in at least ``majority`` of all frames; holes (the dark blood
    pool of a cavity surrounded by tissue) are filled and speckle gaps closed (3x3).
    """
    if len(videos) == 0:
        raise EchoAuditError("sector_mask needs at least one real video")
    frac = np.mean([np.mean(v > level, axis=0) for v in videos], axis=0)
    mask = ndimage.binary_closing(frac >= majority, structure=np.ones((3, 3)), border_value=0)
    return ndimage.binary_fill_holes(mask | (frac >= majority))


def video_statistics(frames: np.ndarray, mask: np.ndarray, *, blur_sigma: float = 1.5) -> dict[str, float]:
    """Statistics of one video (T, H, W) float in [0, 1] inside ``mask`` (H, W) bool.

    - ``mean_intensity`` = mean of x over sector pixels and frames.
    - ``intensity_std`` = std of x over sector pixels and frames.
    - ``motion_energy`` = mean over t and sector pixels of |G(x_{t+1}) - G(x_t)|, G a
      Gaussian blur of ``blur_sigma`` px per frame: the blur removes pixel-scale speckle
      flicker (which would otherwise dominate) and keeps the motion of walls and tissue.
      0 for a one-frame video.
    """
    inside = frames[:, mask]
    blurred = ndimage.gaussian_filter(frames, sigma=(0, blur_sigma, blur_sigma))[:, mask]
    motion = float(np.mean(np.abs(np.diff(blurred, axis=0)))) if len(frames) > 1 else 0.0
    return {"mean_intensity": float(inside.mean()), "intensity_std": float(inside.std()), "motion_energy": motion}


def _pick(dataset: EchoNetDataset, max_videos: int, rng: np.random.Generator) -> np.ndarray:
    n = len(dataset)
    return np.sort(rng.choice(n, size=max_videos, replace=False)) if n > max_videos else np.arange(n)


def generator_quality(
    synthetic: EchoNetDataset,
    real: EchoNetDataset,
    *,
    max_videos: int = 64,
    size: int = 112,
    fps: float | None = None,
    blur_sigma: float = 1.5,
    seed: int = 0,
    ef_model: Callable[[np.ndarray], float] | None = None,
) -> pd.DataFrame:
    """Synthetic vs real image statistics, one row per metric (write with ``to_csv``).

    Both sets are read at ``size`` x ``size`` and at a common frame rate ``fps`` (default:
    the synthetic set's median FPS), so motion per frame compares like with like. At most
    ``max_videos`` videos of each (a seeded random choice). The sector mask comes from the
    real videos (:func:`sector_mask`); the per-video statistics are
    :func:`video_statistics`.

    Hook for EF agreement: ``ef_model(frames (T, H, W) float [0, 1]) -> EF percent``; when
    given, adds the row ``ef_abs_error``: |ef_model(video) - EF in FileList| (for
    synthetic videos, the EF they were asked for).

    Returns:
        DataFrame with columns metric, synthetic, real (means over videos), ratio
        (synthetic / real), synthetic_sd, real_sd (SD over videos), n_synthetic, n_real.

    Raises:
        EchoAuditError: an empty data set or a bad ``max_videos``.
    """
    if len(synthetic) == 0 or len(real) == 0:
        raise EchoAuditError(f"generator_quality needs videos in both sets; got {len(synthetic)} synthetic, {len(real)} real")
    if max_videos < 1:
        raise EchoAuditError(f"max_videos must be >= 1; got {max_videos}")
    rate = float(fps if fps is not None else np.nanmedian(synthetic.table["FPS"].to_numpy(dtype=np.float64)))
    if not math.isfinite(rate) or rate <= 0:
        rate = None  # the synthetic FileList has no FPS: compare at each file's own rate
    rng = np.random.default_rng(seed)

    def load(ds: EchoNetDataset, rows: np.ndarray) -> list[np.ndarray]:
        return [ds.load(int(i), size=size, **({"fps": rate} if rate else {})).frames for i in rows]

    real_rows, syn_rows = _pick(real, max_videos, rng), _pick(synthetic, max_videos, rng)
    real_videos, syn_videos = load(real, real_rows), load(synthetic, syn_rows)
    mask = sector_mask(real_videos)

    def stats(videos, ds, rows) -> pd.DataFrame:
        table = pd.DataFrame([video_statistics(v, mask, blur_sigma=blur_sigma) for v in videos])
        if ef_model is not None:
            table["ef_abs_error"] = [abs(float(ef_model(v)) - float(ds.table["EF"].iat[int(i)])) for v, i in zip(videos, rows)]
        return table

    s, r = stats(syn_videos, synthetic, syn_rows), stats(real_videos, real, real_rows)
    rows = []
    for metric in s.columns:
        sm, rm = float(s[metric].mean()), float(r[metric].mean())
        rows.append({
            "metric": metric, "synthetic": sm, "real": rm, "ratio": sm / rm if rm else math.nan,
            "synthetic_sd": float(s[metric].std(ddof=1)) if len(s) > 1 else math.nan,
            "real_sd": float(r[metric].std(ddof=1)) if len(r) > 1 else math.nan,
            "n_synthetic": len(s), "n_real": len(r),
        })
    return pd.DataFrame(rows)
