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

Published EchoNet-Synthetic video UNets (:mod:`echoaudit.published_generator`) work too:
``load_generator(folder, conditioning=FOLDER)`` with a folder of conditioning latent
frames (video i of a set is conditioned on frame ``i % M``, whatever the batching). Their
sampler is DDPM, which adds noise at every step: that noise comes from the video's own
generator too, so the same determinism holds. They record no training EFs: EFs that are
not given are drawn as integers uniform in [10, 90] (the published sampler's range), with
the same ``default_rng([seed, 1])`` (:func:`training_efs` gives 10, 11, ..., 90).
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from echoaudit.data.echonet import FILELIST, SPLITS, EchoNetDataset, EchoNetWriter
from echoaudit.errors import CheckpointError, EchoAuditError
from echoaudit.fileio import atomic_dir, atomic_path, model_fingerprint, read_json, remove_tree, write_json
from echoaudit.models.diffusion import EchoVideoPipeline
from echoaudit.published_generator import PUBLISHED_EF_RANGE, PublishedVideoPipeline, is_published_unet
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


Generator = EchoVideoPipeline | PublishedVideoPipeline


def load_generator(pipeline: Generator | str | Path, conditioning: str | Path | torch.Tensor | None = None) -> Generator:
    """A pipeline object as is, or the pipeline folder loaded (CheckpointError if it does not load).

    A published video UNet folder (:func:`~echoaudit.published_generator.is_published_unet`)
    loads as a :class:`~echoaudit.published_generator.PublishedVideoPipeline` and needs
    ``conditioning``: a folder of C x h x w ``.pt`` latent frames (or a tensor (M, C, h, w)).

    Raises:
        CheckpointError: a folder that does not load; a published UNet without conditioning
            frames; conditioning frames given for a generator that takes none.
        DatasetError: a conditioning folder that does not load.
    """
    if isinstance(pipeline, (EchoVideoPipeline, PublishedVideoPipeline)):
        return pipeline
    if is_published_unet(pipeline):
        if conditioning is None:
            raise CheckpointError(
                f"{pipeline} is a published video UNet: it needs conditioning frames: pass a folder of C x h x w .pt "
                "latents (frames encoded with the VAE, scaled) with --conditioning / conditioning=")
        return PublishedVideoPipeline.from_folder(pipeline, conditioning)
    if conditioning is not None:
        raise CheckpointError(f"{pipeline} is not a published video UNet; conditioning frames are only for those")
    return EchoVideoPipeline.from_folder(pipeline)


def training_efs(pipeline: Generator) -> np.ndarray:
    """(V,) float64 EFs of the generator's training videos, from ``training.json`` in its folder.

    A published video UNet records none: 10, 11, ..., 90 (so :func:`draw_efs` draws
    integers uniform in the published sampler's [10, 90]).

    Raises:
        CheckpointError: the pipeline was not loaded from a folder with a readable
            ``training.json`` whose ``train_ef`` is a list of EFs in [0, 100].
    """
    if isinstance(pipeline, PublishedVideoPipeline):
        low, high = PUBLISHED_EF_RANGE
        return np.arange(low, high + 1, dtype=np.float64)
    folder = Path(pipeline.name_or_path or ".")
    hint = "; pass ef= explicitly"
    try:
        record = read_json(folder / TRAINING_JSON, what="generator training record", expect=dict, error=CheckpointError)
    except CheckpointError as exc:
        raise CheckpointError(f"ef=None draws EFs from the training set, but {exc}{hint}") from None
    values = record.get("train_ef")
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100 for v in values):
        raise CheckpointError(f"ef=None draws EFs from the training set, but {folder / TRAINING_JSON} has no train_ef "
                              f"list of EFs in [0, 100] (got {str(values)[:80]}){hint}")
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


def _check_vae(pipe: Generator, vae) -> None:
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


def _efs(pipe: Generator, ef, n: int, seed: int) -> np.ndarray:
    if ef is None:
        return draw_efs(training_efs(pipe), n, seed)
    values = np.full(n, ef, dtype=np.float64) if np.isscalar(ef) else np.asarray(ef, dtype=np.float64)
    if values.shape != (n,) or not np.all((values >= 0) & (values <= 100)):
        raise EchoAuditError(f"ef must be None, a number in [0, 100] or {n} such numbers; got {ef!r}")
    return values


def generate_latents(
    pipeline: Generator | str | Path,
    *,
    n: int,
    seed: int,
    efs: np.ndarray,
    steps: int = 25,
    guidance: float = 2.0,
    num_frames: int | None = None,
    first: int = 0,
    progress: Callable[[float, str], None] | None = None,
    conditioning: str | Path | torch.Tensor | None = None,
) -> torch.Tensor:
    """Latents of videos ``first .. first + n - 1`` of a set made with ``seed``: (n, F, C, h, w) float32.

    ``efs`` is (n,) EF in percent of those videos. One pipeline call (one batch). A
    published pipeline conditions video ``first + i`` on conditioning frame
    ``(first + i) % M``.
    """
    pipe = load_generator(pipeline, conditioning)
    gens = [torch.Generator().manual_seed(video_seed(seed, first + i)) for i in range(n)]
    extra = {"first": int(first)} if isinstance(pipe, PublishedVideoPipeline) else {}
    return pipe(n, num_frames=num_frames, ef=[float(v) for v in efs], steps=steps, guidance=guidance,
                generator=gens, progress=progress, **extra).cpu()


def _batches(
    pipe, vae, *, n, seed, steps, ef, guidance, num_frames, batch_size, progress, cache: Path | None = None
):
    """Yield (first index, uint8 frames (b, T, H, W), EFs (b,)) batch by batch.

    ``cache``: a folder where each finished batch is kept (``batch_<first>.npy``); a batch
    found there is read back instead of generated again (the caller keys the folder on
    every setting that changes the frames)."""
    _check_common(n, seed, batch_size)
    _check_vae(pipe, vae)
    efs = _efs(pipe, ef, n, seed)
    for first in range(0, n, batch_size):
        b = min(batch_size, n - first)
        frames = _cached_batch(cache, first, b)
        if frames is not None:
            if progress is not None:
                progress((first + b) / n, f"videos {first + 1}-{first + b} of {n}: made before the interruption")
            yield first, frames, efs[first : first + b]
            continue

        def step_progress(frac, msg, first=first, b=b):
            if progress is not None:
                progress((first + 0.9 * frac * b) / n, f"videos {first + 1}-{first + b} of {n}: {msg}")

        lat = generate_latents(pipe, n=b, seed=seed, efs=efs[first : first + b], steps=steps, guidance=guidance,
                               num_frames=num_frames, first=first, progress=step_progress)
        frames = vae.decode(lat.flatten(0, 1)).numpy()
        frames = np.round(frames * 255.0).astype(np.uint8).reshape(b, lat.shape[1], *frames.shape[1:])
        if cache is not None:
            with atomic_path(cache / _batch_name(first)) as tmp:
                np.save(tmp, frames, allow_pickle=False)
        if progress is not None:
            progress((first + b) / n, f"decoded videos {first + 1}-{first + b} of {n}")
        yield first, frames, efs[first : first + b]


def _tensor_sha256(x: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def _batch_name(first: int) -> str:
    return f"batch_{first:06d}.npy"


def _cached_batch(cache: Path | None, first: int, b: int) -> np.ndarray | None:
    """The frames of a batch finished before an interruption, or None (missing or damaged)."""
    if cache is None:
        return None
    try:  # mapped, not read: checking what is there costs no more than its header
        frames = np.load(cache / _batch_name(first), mmap_mode="r", allow_pickle=False)
    except Exception:  # missing, truncated, not an array: generate it again
        return None
    return frames if frames.dtype == np.uint8 and frames.ndim == 4 and len(frames) == b else None


def _partial_folder(out_root: Path) -> Path:
    """Where :func:`generate_dataset` keeps finished batches until the set is written."""
    return out_root.parent / f".{out_root.name}.partial"


def _open_partial(out_root: Path, request: dict) -> Path:
    """The batch folder of ``out_root`` for ``request`` (everything the frames depend on):
    kept when an interrupted run left it for the same request, emptied otherwise."""
    folder = _partial_folder(out_root)
    if folder.exists():
        try:
            old = read_json(folder / "request.json", what="generation request", expect=dict)
        except EchoAuditError:  # damaged: the batches are of no known request, start over
            old = None
        if old != request:
            remove_tree(folder)
    write_json(folder / "request.json", request)
    return folder


def generate_videos(
    pipeline: Generator | str | Path,
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
    conditioning: str | Path | torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` videos in memory.

    Args:
        pipeline: an :class:`EchoVideoPipeline` or :class:`PublishedVideoPipeline`, or its folder.
        vae: the ``FrameVAE`` the generator's latents belong to.
        n: number of videos, >= 1.
        seed: the set's seed (video i uses :func:`video_seed`(seed, i)).
        steps, guidance, num_frames: as for the pipeline.
        ef: EF in percent for all videos, one per video, or None to draw from the
            training EFs.
        batch_size: clips per pipeline call (memory vs speed; results do not depend on it).
        progress: ``progress(fraction, message)``.
        conditioning: the conditioning frames of a published video UNet folder (see
            :func:`load_generator`); None for the project's pipelines.

    Returns:
        frames: (n, T, H, W) uint8; efs: (n,) float64, the EF each video was asked for.

    Raises:
        EchoAuditError: bad n, seed, batch_size, ef, steps or guidance.
        CheckpointError: a generator folder that does not load, a VAE that does not match.
    """
    pipe = load_generator(pipeline, conditioning)
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
    conditioning: str | Path | torch.Tensor | None = None,
) -> Path:
    """Write ``n`` generated videos as an EchoNet-format data set at ``out_root``.

    FileList rows: FileName ``SYN_<seed>_<i:04d>``, EF = the EF asked for, ESV/EDV empty,
    Split = ``split`` (TEST by default: the reader only knows TRAIN/VAL/TEST), each
    video its own PatientID, View = the generator's training view, and two extra
    columns: ``Source`` = "synthetic" and ``Seed`` = ``seed``. ``generator.json`` beside
    FileList.csv records the checkpoint (path and sha256), seed, steps, guidance, n, EF
    setting, frames and fps.

    Resumable: every finished batch is kept in ``.<out_root name>.partial/`` beside
    ``out_root`` (uint8 frames, keyed by every setting the frames depend on) until the set
    is written; a run stopped at any point (even killed) and started again with the same
    settings generates only the missing batches, with the same result. The set itself is
    written after all batches exist, ``FileList.csv`` last: a folder with a FileList is a
    complete set. With ``overwrite``, a set already at ``out_root`` stays whole until the
    new one, written beside it, replaces the folder in one step.

    Args:
        pipeline_folder: the generator folder (``best/`` of a training run).
        fps: frame rate written; default: the generator's.
        overwrite: replace an existing data set at ``out_root``.
        conditioning: the folder of conditioning latent frames a published video UNet
            needs (recorded in generator.json with its sha256).
        Others: as :func:`generate_videos`.

    Returns:
        ``out_root`` (a folder ``EchoNetDataset.open`` reads).

    Raises:
        EchoAuditError / CheckpointError: as :func:`generate_videos`.
        DatasetError: ``out_root`` already holds a data set and ``overwrite`` is False, or
            a ``split`` the reader does not accept.
    """
    pipeline_folder = Path(pipeline_folder)
    pipe = load_generator(pipeline_folder, conditioning)
    if str(split).strip().upper() not in SPLITS:
        raise EchoAuditError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    rate = float(pipe.config.fps if fps is None else fps)
    if not math.isfinite(rate) or rate <= 0:
        raise EchoAuditError(f"fps must be a number > 0; got {fps!r}")
    out_root = Path(out_root)
    EchoNetWriter(out_root, overwrite=overwrite)  # refuses an existing set before any work
    _check_common(n, seed, batch_size)
    _check_vae(pipe, vae)
    efs = _efs(pipe, ef, n, seed)
    record = {
        "checkpoint": str(pipeline_folder.absolute()),
        "checkpoint_sha256": model_fingerprint(pipeline_folder),
        "vae_fingerprint": vae.fingerprint,
        "seed": int(seed), "n": int(n), "steps": int(steps), "guidance": float(guidance),
        "ef": "drawn from the training EFs" if ef is None else (float(ef) if np.isscalar(ef) else [float(v) for v in ef]),
        "num_frames": int(num_frames or pipe.config.num_frames), "fps": rate, "split": str(split).upper(),
        "scheduler": type(pipe.scheduler).__name__, "noise_seed": "video i: SeedSequence([seed, i])",
    }
    if isinstance(pipe, PublishedVideoPipeline):
        record.update(format="published video UNet (EchoNet-Synthetic sampler)",
                      conditioning="tensor" if torch.is_tensor(conditioning) else str(Path(conditioning).absolute()),
                      conditioning_sha256=pipe.conditioning_sha256 or _tensor_sha256(pipe.conditioning),
                      conditioning_frames=len(pipe.conditioning),
                      ef_rule="drawn as integers uniform in [10, 90]" if ef is None else "given")
    # 1. Generate, keeping each finished batch: a run that is stopped (killed, crashed)
    # and started again with the same settings generates only the batches still missing.
    request = {k: record[k] for k in ("checkpoint_sha256", "vae_fingerprint", "seed", "n", "steps", "guidance",
                                      "num_frames", "scheduler", "conditioning_sha256") if k in record}
    request.update(efs=[float(v) for v in efs], batch_size=int(batch_size))
    cache = _open_partial(out_root, request)
    n_batches = math.ceil(n / batch_size)
    done = sum(_cached_batch(cache, f, min(batch_size, n - f)) is not None for f in range(0, n, batch_size))
    if done:
        msg = f"resuming: {done} of {n_batches} batches generated before the interruption"
        tqdm.write(msg, file=sys.stderr)
        if progress is not None:
            progress(0.0, msg)
    for _ in tqdm(_batches(pipe, vae, n=n, seed=seed, steps=steps, ef=efs, guidance=guidance, num_frames=num_frames,
                           batch_size=batch_size, progress=progress, cache=cache),
                  total=n_batches, desc="generating", unit="batch"):
        pass
    # 2. Write the set (videos, generator.json, FileList.csv last: a folder with a
    # FileList is complete), then drop the batches. A set it replaces is swapped out
    # whole at the end (atomic_dir), so it stays readable until then.
    replace = (out_root / FILELIST).is_file()
    with (atomic_dir(out_root) if replace else contextlib.nullcontext(out_root)) as target:
        with EchoNetWriter(target) as writer:
            for first in range(0, n, batch_size):
                frames = _cached_batch(cache, first, min(batch_size, n - first))
                if frames is None:
                    raise EchoAuditError(f"{cache / _batch_name(first)} disappeared while the set was written; run again")
                for j, video in enumerate(frames):
                    writer.add(f"SYN_{seed}_{first + j:04d}", video, rate, ef=float(efs[first + j]), split=split,
                               view=pipe.config.view, Source=SYNTHETIC_SOURCE, Seed=int(seed))
            write_json(Path(target) / GENERATOR_JSON, record)
    remove_tree(cache)
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
