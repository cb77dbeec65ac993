"""Sample synthetic videos from a published EchoNet-Synthetic latent video diffusion model.

A named mode that follows the published sampler (EchoNet-Synthetic's ``echosyn/lvdm/sample.py``),
written here independently, so that a published checkpoint makes the clips it was meant to make.

The format
    A diffusers ``UNetSpatioTemporalConditionModel`` folder (``unet_ema/``: ``config.json``
    + ``diffusion_pytorch_model.safetensors``, no ``model_index.json``). ``in_channels`` is
    twice ``out_channels``: the noisy latents and the latents of one conditioning frame
    (4 + 4), ``cross_attention_dim`` 1 (the EF is the one cross-attention token),
    ``sample_size`` 14 (112 px frames), ``num_frames`` 64. No scheduler is saved with it:
    :func:`find_scheduler_config` takes ``scheduler_config.json`` in the folder, else
    ``../scheduler/scheduler_config.json`` beside it, else :func:`published_scheduler_config`
    (the DDPM schedule it was trained with: linear betas, v-prediction, samples clipped
    to [-4, 4], "leading" timesteps).

Conditioning frames
    A folder of ``*.pt`` files, one latent frame (C x h x w, scaled as the VAE's encoder
    gives them) each, taken in sorted name order and cycling: video ``i`` of a set uses
    frame ``i % M`` (:func:`load_conditioning`; read with ``weights_only=True`` only).

The sampling rule (per call, clips of T frames, B clips; their layout B C T H W)
    1. noise ``x = randn(C, T, h, w)`` per clip (one generator per clip: a clip's result
       does not depend on the batch it is in), unless ``latents`` are given;
    2. ``encoder_hidden_states = (EF / 100)`` as (B, 1, 1); ``added_time_ids = 0``;
    3. the conditioning frame repeated over T, (B, C, T, h, w);
    4. each of the ``steps`` DDPM timesteps: ``scale_model_input(x)``, concatenated with
       the conditioning on channels (2C), the last two dims padded by
       ``pad = (8 - h % 8) // 2`` on each side (mode "replicate": 14 -> 16; their formula
       pads a size already divisible by 8 by 4), rearranged to (B, T, 2C, h', w'), the
       UNet's v-prediction cropped back, and ``x = scheduler.step(v, t, x).prev_sample``
       (DDPM adds noise each step: drawn from the clip's own generator);
    5. no classifier-free guidance (the model has no unconditional branch).
    Latents come back in this project's layout (B, T, C, h, w), still scaled: decode with
    ``FrameVAE.decode``. Clips longer than the UNet's ``num_frames`` are refused (the
    published code stitches overlapping windows; this mode does not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from echoaudit.errors import CheckpointError, DatasetError, EchoAuditError
from echoaudit.fileio import check_model_configs, sha256_tree
from echoaudit.models.diffusion import _is_int, check_sampling_args

__all__ = [
    "PUBLISHED_EF_RANGE",
    "PUBLISHED_FPS",
    "PublishedConfig",
    "PublishedVideoPipeline",
    "conditioning_fingerprint",
    "find_scheduler_config",
    "is_published_unet",
    "load_conditioning",
    "load_published_unet",
    "load_scheduler",
    "published_scheduler_config",
]

PUBLISHED_FPS = 32.0  # their target_fps
PUBLISHED_EF_RANGE = (10, 90)  # their min_lvef / max_lvef: EFs drawn as integers in it
_UNET_CLASS = "UNetSpatioTemporalConditionModel"


def is_published_unet(folder: str | Path) -> bool:
    """True for a folder with a ``config.json`` naming a UNetSpatioTemporalConditionModel and no ``model_index.json``."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or (folder / "model_index.json").exists():
        return False
    try:
        cfg = check_model_configs(folder, ("config.json",)).get("config.json") or {}
    except EchoAuditError:
        return False
    return cfg.get("_class_name") == _UNET_CLASS


def published_scheduler_config() -> dict:
    """The published noise scheduler (not saved with the UNet): DDPM, linear betas, v-prediction."""
    return {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
            "beta_schedule": "linear", "variance_type": "fixed_small", "clip_sample": True, "clip_sample_range": 4.0,
            "prediction_type": "v_prediction", "thresholding": False, "timestep_spacing": "leading", "steps_offset": 0}


def find_scheduler_config(folder: str | Path) -> Path | None:
    """``scheduler_config.json`` in ``folder``, else ``../scheduler/scheduler_config.json``, else None (the default)."""
    folder = Path(folder)
    for path in (folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json"):
        if path.is_file():
            return path
    return None


def load_scheduler(folder: str | Path):
    """The scheduler of a published UNet folder (see :func:`find_scheduler_config`).

    Raises:
        CheckpointError: a config that is not a JSON object, names a class that is not a
            diffusers scheduler, or has num_train_timesteps out of range.
    """
    import diffusers

    from echoaudit.models.limits import MAX_TRAIN_TIMESTEPS, _is_scheduler

    path = find_scheduler_config(folder)
    cfg = published_scheduler_config() if path is None else check_model_configs(path.parent, (path.name,))[path.name]
    where = "the published default" if path is None else str(path)
    name = cfg.get("_class_name", "DDPMScheduler")
    if not isinstance(name, str) or not _is_scheduler(name):
        raise CheckpointError(f"{where}: _class_name must name a diffusers scheduler class; got {str(name)[:80]!r}")
    steps = cfg.get("num_train_timesteps", 1000)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_TRAIN_TIMESTEPS:
        raise CheckpointError(f"{where}: num_train_timesteps must be an integer in [1, {MAX_TRAIN_TIMESTEPS}]; "
                              f"got {str(steps)[:80]}")
    betas = cfg.get("trained_betas")
    if betas is not None and (not isinstance(betas, list) or len(betas) > MAX_TRAIN_TIMESTEPS):
        raise CheckpointError(f"{where}: trained_betas must be a list of at most {MAX_TRAIN_TIMESTEPS} numbers")
    try:
        return getattr(diffusers, name).from_config(cfg)
    except Exception as exc:  # noqa: BLE001 - diffusers raises several types for bad values
        raise CheckpointError(f"{where}: cannot build the {name}: {str(exc)[:300]}") from None


def load_published_unet(folder: str | Path):
    """A published UNetSpatioTemporalConditionModel folder, loaded strictly (eval mode).

    ``config.json`` is read as strict JSON and bounded (:func:`echoaudit.models.limits.check_unet_config`)
    before diffusers builds anything; the weights are safetensors only and must match the
    config exactly.

    Raises:
        CheckpointError: not such a folder, a config out of range, weights that do not
            load, or missing / unexpected / mismatched keys.
    """
    from diffusers import UNetSpatioTemporalConditionModel

    from echoaudit.models.limits import check_unet_config

    folder = Path(folder)
    cfg = check_model_configs(folder, ("config.json",)).get("config.json")
    if cfg is None or cfg.get("_class_name") != _UNET_CLASS:
        raise CheckpointError(f"{folder} is not a generator folder: no model_index.json (the project's pipeline) and no "
                              f"config.json of a {_UNET_CLASS} (the published video model)")
    check_unet_config(folder / "config.json", cfg)
    try:
        unet, info = UNetSpatioTemporalConditionModel.from_pretrained(
            folder, use_safetensors=True, low_cpu_mem_usage=False, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - diffusers raises several types for missing / mismatched weights
        raise CheckpointError(f"cannot load the UNet in {folder}: {str(exc)[:400]}") from None
    problems = [f"{k}: {', '.join(map(str, v))[:300]}" for k in ("missing_keys", "unexpected_keys", "mismatched_keys",
                                                                  "error_msgs") if (v := info.get(k))]
    if problems:
        raise CheckpointError(f"the UNet in {folder} does not match its config.json ({'; '.join(problems)})")
    return unet.eval()


def _one_frame(path: Path) -> torch.Tensor:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refuses pickles that would build arbitrary objects
        raise DatasetError(f"conditioning frame {path}: cannot be read as a tensor file with weights_only "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not torch.is_tensor(obj):
        raise DatasetError(f"conditioning frame {path}: holds a {type(obj).__name__}, not a tensor")
    if obj.ndim == 4 and obj.shape[0] == 1:
        obj = obj[0]
    if obj.ndim != 3 or min(obj.shape) < 1:
        raise DatasetError(f"conditioning frame {path}: shape {tuple(obj.shape)}; expected C x h x w (or 1 x C x h x w)")
    if not obj.is_floating_point():
        raise DatasetError(f"conditioning frame {path}: dtype {obj.dtype}; expected floating-point latents")
    if not bool(torch.isfinite(obj).all()):
        raise DatasetError(f"conditioning frame {path}: holds NaN or infinite values")
    return obj.float()


def load_conditioning(folder: str | Path) -> torch.Tensor:
    """(M, C, h, w) float32: every ``*.pt`` latent frame in ``folder``, in sorted name order.

    Each file is read only with ``torch.load(..., map_location="cpu", weights_only=True)``.

    Raises:
        DatasetError: a missing or empty folder, or a file that is not a finite float
            tensor C x h x w (or 1 x C x h x w), or frames of different shapes; the
            message names the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"conditioning folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.glob("*.pt") if p.is_file())
    if not files:
        raise DatasetError(f"conditioning folder {folder} holds no *.pt latent frames")
    frames = [_one_frame(p) for p in files]
    for p, f in zip(files, frames):
        if f.shape != frames[0].shape:
            raise DatasetError(f"conditioning frame {p}: shape {tuple(f.shape)}, but {files[0].name} is "
                               f"{tuple(frames[0].shape)}; all frames must have one shape")
    return torch.stack(frames)


def conditioning_fingerprint(folder: str | Path) -> str:
    """sha256 of a conditioning folder's ``*.pt`` files (names and contents)."""
    return sha256_tree(folder, include=lambda p: p.suffix == ".pt")


@dataclass(frozen=True)
class PublishedConfig:
    """What ``generate.py`` reads from a pipeline's ``config`` (the published model records none of it)."""

    num_frames: int
    name_or_path: str
    fps: float = PUBLISHED_FPS
    frame_stride: int = 1
    vae_fingerprint: str = ""  # unknown: the VAE check compares latent channels only
    view: str = "unknown"
    train_videos: int = 0



class PublishedVideoPipeline:
    """Drop-in for :class:`~echoaudit.models.diffusion.EchoVideoPipeline` in ``generate.py``
    for a published video UNet plus conditioning frames (see the module docstring)."""

    def __init__(self, unet, scheduler, conditioning: torch.Tensor, name_or_path: str | Path = "",
                 conditioning_sha256: str = ""):
        cfg = unet.config
        c_in, c_out, side = int(cfg.in_channels), int(cfg.out_channels), int(cfg.sample_size)
        where = f"the UNet in {name_or_path}" if name_or_path else "the UNet"
        if c_in != 2 * c_out:
            raise CheckpointError(f"{where} has in_channels {c_in}, out_channels {c_out}; a published video UNet takes "
                                  f"noisy latents + conditioning-frame latents (in_channels = 2 x out_channels)")
        dim = cfg.cross_attention_dim
        dim = dim[0] if isinstance(dim, (list, tuple)) else dim
        if int(dim) != 1:
            raise CheckpointError(f"{where} has cross_attention_dim {dim}; the published model's one token is EF/100 (1)")
        n_ids, rest = divmod(int(cfg.projection_class_embeddings_input_dim), int(cfg.addition_time_embed_dim))
        if rest or n_ids < 1:
            raise CheckpointError(f"{where}: projection_class_embeddings_input_dim {cfg.projection_class_embeddings_input_dim}"
                                  f" is not a multiple of addition_time_embed_dim {cfg.addition_time_embed_dim}")
        cond = torch.as_tensor(conditioning)
        if cond.ndim != 4 or len(cond) < 1 or tuple(cond.shape[1:]) != (c_out, side, side):
            raise CheckpointError(f"conditioning frames of shape {tuple(cond.shape[1:])} (C, h, w) do not fit {where}: "
                                  f"it takes C = out_channels {c_out} and h = w = sample_size {side}")
        pad = self._pad(side)
        levels = len(cfg.block_out_channels) - 1
        if (side + 2 * pad) % (2 ** levels):
            raise CheckpointError(f"{where}: sample_size {side} padded to {side + 2 * pad} is not divisible by "
                                  f"2^{levels} (its down-sampling levels)")
        self.unet, self.scheduler = unet.eval(), scheduler
        self.conditioning = cond.float()
        self.conditioning_sha256 = str(conditioning_sha256)
        self._n_ids = n_ids
        self.config = PublishedConfig(num_frames=int(cfg.num_frames), name_or_path=str(name_or_path))

    @classmethod
    def from_folder(cls, folder: str | Path, conditioning: str | Path | torch.Tensor) -> PublishedVideoPipeline:
        """Load the UNet (:func:`load_published_unet`), its scheduler (:func:`load_scheduler`)
        and the conditioning frames (a folder for :func:`load_conditioning`, or a tensor (M, C, h, w)).

        Raises:
            CheckpointError: the UNet or scheduler does not load, or does not fit the frames.
            DatasetError: a conditioning folder that does not load.
        """
        folder = Path(folder)
        if torch.is_tensor(conditioning):
            frames, sha = conditioning.detach().cpu(), ""
        else:
            frames, sha = load_conditioning(conditioning), conditioning_fingerprint(conditioning)
        return cls(load_published_unet(folder), load_scheduler(folder), frames, folder, sha)

    @property
    def name_or_path(self) -> str:
        return self.config.name_or_path

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent frame."""
        cfg = self.unet.config
        return (int(cfg.out_channels), int(cfg.sample_size), int(cfg.sample_size))

    @staticmethod
    def _pad(side: int) -> int:
        return (2**3 - side % 2**3) // 2  # their formula: 14 -> 1 (16), 8 -> 4 (16)

    @torch.no_grad()
    def __call__(
        self,
        n: int,
        *,
        num_frames: int | None = None,
        ef: float | Sequence[float] | None = None,
        steps: int = 25,
        guidance: float = 2.0,
        generator: torch.Generator | Sequence[torch.Generator],
        latents: torch.Tensor | None = None,
        progress: Callable[[float, str], None] | None = None,
        first: int = 0,
    ) -> torch.Tensor:
        """Sample ``n`` clips; returns latents (n, F, C, h, w) float32 (this project's layout).

        Args:
            n: number of clips, >= 1.
            num_frames: F, at most the UNet's ``num_frames`` (longer clips are refused, not stitched).
            ef: EF in percent, one for all clips or one per clip (required: the model is
                conditional only); sent as EF / 100.
            steps: DDPM timesteps ("leading" spacing), >= 1.
            guidance: accepted for the common interface and not used: the published model
                has no unconditional branch (their sampler's guidance is 1).
            generator: a torch.Generator, or one per clip (then clip i, its starting noise
                and every step's noise, depends only on its own generator).
            latents: optional starting noise (n, F, C, h, w) instead of drawing it.
            progress: ``progress(fraction, message)`` after each step.
            first: the index in the set of clip 0: clip i is conditioned on frame
                ``(first + i) % M``, so a clip's frame does not depend on how the set is
                batched (``generate.py`` passes each batch's first video index).

        Raises:
            EchoAuditError: a bad n, num_frames, steps, ef, first, latents shape or generator list.
        """
        frames = self.config.num_frames if num_frames is None else num_frames
        if _is_int(frames) and frames > self.config.num_frames:
            raise EchoAuditError(f"num_frames {frames} is more than the published UNet's {self.config.num_frames}; "
                                 "longer clips (stitched from overlapping windows in the published code) are not supported")
        if not _is_int(first) or first < 0:
            raise EchoAuditError(f"first must be an integer >= 0; got {first!r}")
        if ef is None:
            raise EchoAuditError("ef is required: the published video model has no unconditional branch")
        efs, gens = check_sampling_args(n, frames, steps, guidance, ef, generator, latents, self.latent_shape,
                                        num_frames_given=num_frames)
        c, h, w = self.latent_shape

        unet = self.unet
        device, dtype = unet.device, unet.dtype
        step_gen = gens if len(gens) > 1 else gens[0]
        # Their layout from here on: (B, C, T, h, w).
        if latents is None:
            if len(gens) == 1:
                x = torch.randn((n, c, frames, h, w), generator=gens[0], dtype=torch.float32)
            else:
                x = torch.stack([torch.randn((c, frames, h, w), generator=g, dtype=torch.float32) for g in gens])
        else:
            x = latents.float().permute(0, 2, 1, 3, 4)
        x = x.to(device=device, dtype=dtype)
        rows = [(first + i) % len(self.conditioning) for i in range(n)]
        cond = self.conditioning[rows].to(device=device, dtype=dtype)[:, :, None].expand(-1, -1, frames, -1, -1)
        context = (torch.tensor(efs, dtype=dtype, device=device) / 100.0)[:, None, None]
        ids = torch.zeros(n, self._n_ids, dtype=dtype, device=device)  # their added_time_ids: zeros
        pad = self._pad(h)

        scheduler = type(self.scheduler).from_config(self.scheduler.config)  # set_timesteps mutates it
        scheduler.set_timesteps(steps, device=device)
        for i, t in enumerate(scheduler.timesteps):
            inp = torch.cat([scheduler.scale_model_input(x, t), cond], dim=1)
            if pad:
                inp = F.pad(inp, (pad, pad, pad, pad, 0, 0), mode="replicate")  # h, w only (5-D needs 3 pairs)
            out = unet(inp.permute(0, 2, 1, 3, 4), t, encoder_hidden_states=context, added_time_ids=ids).sample
            if pad:
                out = out[..., pad:-pad, pad:-pad]
            x = scheduler.step(out.permute(0, 2, 1, 3, 4), t, x, generator=step_gen).prev_sample
            if progress is not None:
                progress((i + 1) / steps, f"denoising step {i + 1}/{steps}")
        return x.permute(0, 2, 1, 3, 4).float().contiguous()
