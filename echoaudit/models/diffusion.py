"""Latent video diffusion: a diffusers ``UNetSpatioTemporalConditionModel`` over frame-VAE
latents, conditioned on the ejection fraction (EF), and the pipeline that samples from it.

Shapes: a clip of ``F`` frames is a latent tensor (B, F, C, h, w) float32, C = 4 and
h = w = 14 for 112x112 frames and the demo VAE. Decoding to frames is a separate step
(``FrameVAE.decode``) so the audit can work on latents too.

EF conditioning goes through the UNet's ``added_time_ids`` (one id, n = 1): the EF in
percent, embedded like SVD's fps / motion-bucket ids (sinusoids, then an MLP added to the
timestep embedding). Percent rather than EF/100 because the sinusoid frequencies span
1 ... 1e-4: values in [0, 1] would only move the few fastest ones. The unconditional
branch uses the fixed id :data:`EF_NULL` (-100, outside [0, 100], so it never collides
with a real EF); training drops the condition to it with probability ``cond_dropout`` and
sampling mixes both branches with classifier-free guidance:

    v = v_null + guidance * (v_ef - v_null)

``encoder_hidden_states`` is a constant zero token: the UNet's cross-attention needs one,
and the EF already reaches every block through the time embedding.

Noise schedule: DDPM, 1000 steps, cosine ("squaredcos_cap_v2") betas, v-prediction
(Salimans & Ho 2022), which stays well-posed at the near-zero terminal SNR of the cosine
schedule; sampling with DDIM (eta = 0, "trailing" spacing so the first step starts from
pure noise).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNetSpatioTemporalConditionModel

from echoaudit.errors import CheckpointError, EchoAuditError
from echoaudit.fileio import check_model_configs
from echoaudit.models.limits import check_generator_configs

__all__ = [
    "EF_NULL",
    "DEMO_UNET_CHANNELS",
    "build_unet",
    "train_scheduler",
    "sampling_scheduler",
    "condition_ids",
    "context_tokens",
    "EchoVideoPipeline",
    "check_sampling_args",
]

EF_NULL = -100.0
DEMO_UNET_CHANNELS = (32, 64)
# diffusers' spatio-temporal blocks use GroupNorm with 32 groups: widths must be multiples of 32.
_GROUPS = 32
_COND_DIM = 32  # width of the EF embedding and of the constant cross-attention token


def build_unet(
    block_out_channels: Sequence[int] = DEMO_UNET_CHANNELS,
    *,
    latent_channels: int = 4,
    sample_size: int = 14,
    num_frames: int = 32,
    layers_per_block: int = 1,
    attention_levels: int = 0,
    seed: int = 0,
) -> UNetSpatioTemporalConditionModel:
    """A small spatio-temporal UNet for (B, F, C, h, w) latents, EF-conditioned through one time id.

    Args:
        block_out_channels: width of each resolution level (multiples of 32). (32, 64):
            1.1M parameters, the demo size; 14x14 latents become 7x7 in the middle.
        latent_channels: C, the VAE's latent channels (in and out).
        sample_size: h = w of the latents (recorded in the config; the UNet runs at any size).
        num_frames: the clip length it is trained for (recorded in the config).
        layers_per_block: resnets per level.
        attention_levels: how many of the outer levels get spatio-temporal transformer
            blocks besides the middle block (which always has one). 0 measured ~3x faster
            on CPU than diffusers' default layout at the demo size; temporal mixing then
            comes from the temporal convolutions of every resnet and the middle block's
            temporal attention.
        seed: seed of the weight initialisation.

    Raises:
        EchoAuditError: a width that is not a positive multiple of 32, or ``attention_levels``
            outside [0, len(block_out_channels) - 1].
    """
    widths = tuple(int(c) for c in block_out_channels)
    if not widths or any(c <= 0 or c % _GROUPS for c in widths):
        raise EchoAuditError(f"block_out_channels must be positive multiples of {_GROUPS} (GroupNorm groups); got {tuple(block_out_channels)}")
    levels = len(widths)
    if not 0 <= attention_levels <= levels - 1:
        raise EchoAuditError(f"attention_levels must be in [0, {levels - 1}] for {levels} levels; got {attention_levels}")
    down = tuple(
        "CrossAttnDownBlockSpatioTemporal" if i < attention_levels else "DownBlockSpatioTemporal" for i in range(levels)
    )
    up = tuple(reversed(["CrossAttnUpBlockSpatioTemporal" if i < attention_levels else "UpBlockSpatioTemporal" for i in range(levels)]))
    torch.manual_seed(seed)
    return UNetSpatioTemporalConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=widths,
        addition_time_embed_dim=_COND_DIM,
        projection_class_embeddings_input_dim=_COND_DIM,  # n = 1 id (the EF) x addition_time_embed_dim
        layers_per_block=layers_per_block,
        cross_attention_dim=_COND_DIM,
        num_attention_heads=tuple(max(1, c // 32) for c in widths),  # head width 32
        num_frames=num_frames,
    )


def train_scheduler() -> DDPMScheduler:
    """The training noise schedule: DDPM, 1000 steps, cosine betas, v-prediction."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )


def sampling_scheduler(train: DDPMScheduler | None = None) -> DDIMScheduler:
    """DDIM with the training schedule's betas and prediction type; trailing timesteps."""
    config = (train or train_scheduler()).config
    return DDIMScheduler.from_config(config, timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=False)


def condition_ids(ef: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) EF in percent -> (B, 1) ``added_time_ids``; rows where ``keep`` is False get EF_NULL."""
    ids = ef.float().reshape(-1, 1)
    if keep is not None:
        ids = torch.where(keep.reshape(-1, 1), ids, torch.full_like(ids, EF_NULL))
    return ids


def context_tokens(unet: UNetSpatioTemporalConditionModel, batch: int, like: torch.Tensor) -> torch.Tensor:
    """The constant (zero) cross-attention token, (B, 1, cross_attention_dim)."""
    dim = unet.config.cross_attention_dim
    dim = dim[0] if isinstance(dim, (list, tuple)) else dim
    return torch.zeros(batch, 1, int(dim), dtype=like.dtype, device=like.device)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_sampling_args(n, frames, steps, guidance, ef, generator, latents, latent_shape, *,
                        num_frames_given=None) -> tuple[list[float] | None, list[torch.Generator]]:
    """The checks every sampler's ``__call__`` makes (this pipeline's and the published
    one's): (the EFs as floats or None, the generators as a list).

    Raises:
        EchoAuditError: a bad ``n``, ``frames``, ``steps``, ``guidance``, ``ef``, a
            generator list of the wrong length or ``latents`` of another shape.
    """
    if not _is_int(n) or n < 1:
        raise EchoAuditError(f"n (number of clips) must be an integer >= 1; got {n!r}")
    if not _is_int(frames) or frames < 1:
        raise EchoAuditError(f"num_frames must be an integer >= 1; got {num_frames_given!r}")
    if not _is_int(steps) or steps < 1:
        raise EchoAuditError(f"steps must be an integer >= 1; got {steps!r}")
    if not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
        raise EchoAuditError(f"guidance must be a finite number >= 0; got {guidance!r}")
    efs = EchoVideoPipeline._check_ef(ef, n)
    gens = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    if not all(isinstance(g, torch.Generator) for g in gens) or len(gens) not in (1, n):
        raise EchoAuditError(f"generator must be a torch.Generator or a list of {n} of them; got {generator!r}")
    shape = (n, frames, *latent_shape)
    if latents is not None and tuple(latents.shape) != shape:
        raise EchoAuditError(
            f"latents must have shape {shape} (n, num_frames, C, h, w) for this UNet; got {tuple(latents.shape)}"
        )
    return efs, gens


class EchoVideoPipeline(DiffusionPipeline):
    """Sample EF-conditioned latent echo clips: ``pipe(n, ef=55.0, generator=g) -> (n, F, C, h, w)``.

    Components: ``unet`` (UNetSpatioTemporalConditionModel) and ``scheduler`` (DDIM or any
    diffusers scheduler with ``set_timesteps`` / ``step``). The other arguments are
    recorded in ``model_index.json`` by ``save_pretrained`` and come back with
    ``from_pretrained``:

    Args:
        num_frames: clip length it was trained on (the default of ``__call__``).
        frame_stride: which frames of the source videos a clip took (2 = every 2nd frame).
        fps: frame rate of generated clips (source fps / frame_stride).
        ef_null: the unconditional id (see the module docstring).
        vae_fingerprint: sha256 of the VAE folder the training latents came from
            ("" if unknown); decode with that VAE.
        train_videos: how many videos it was trained on.
        view: the echo view of the training videos when they shared one, else "unknown".
    """

    def __init__(
        self,
        unet: UNetSpatioTemporalConditionModel,
        scheduler: DDIMScheduler,
        num_frames: int = 32,
        frame_stride: int = 1,
        fps: float = 50.0,
        ef_null: float = EF_NULL,
        vae_fingerprint: str = "",
        train_videos: int = 0,
        view: str = "unknown",
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(
            num_frames=int(num_frames), frame_stride=int(frame_stride), fps=float(fps), ef_null=float(ef_null),
            vae_fingerprint=str(vae_fingerprint), train_videos=int(train_videos), view=str(view),
        )
        self.set_progress_bar_config(disable=True)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "EchoVideoPipeline":
        """Load a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``).

        Raises:
            CheckpointError: no ``model_index.json`` there; configs with sizes out of range,
                a UNet too large or components that are not diffusers classes
                (:func:`~echoaudit.models.limits.check_generator_configs`, checked before
                anything is built); or weights that do not load.
        """
        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise CheckpointError(f"{folder} is not a generator folder: no model_index.json there (expected unet/, scheduler/ beside it)")
        # Sizes and component classes first (echoaudit.models.limits), before diffusers builds anything.
        check_generator_configs(folder, check_model_configs(
            folder, ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json")))
        try:
            pipe = cls.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False)
        except Exception as exc:  # diffusers raises several types for missing/mismatched parts
            raise CheckpointError(f"cannot load the generator in {folder}: {exc}") from exc
        pipe.unet.eval()
        return pipe

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent frame."""
        cfg = self.unet.config
        return (int(cfg.out_channels), int(cfg.sample_size), int(cfg.sample_size))

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
    ) -> torch.Tensor:
        """Sample ``n`` clips; returns latents (n, F, C, h, w) float32 on the UNet's device.

        Args:
            n: number of clips, >= 1.
            num_frames: F; default: the trained clip length.
            ef: EF in percent for every clip (a float), one per clip (a sequence of n), or
                None for unconditional samples (then ``guidance`` is not used).
            steps: denoising steps, >= 1.
            guidance: classifier-free guidance scale >= 0; 1 uses the EF branch alone (half
                the cost), 0 the unconditional branch alone.
            generator: a torch.Generator, or one per clip (then clip i depends only on its
                own generator, whatever ``n``).
            latents: optional starting noise (n, F, C, h, w) instead of drawing it.
            progress: ``progress(fraction, message)`` after each step.

        Raises:
            EchoAuditError: a bad ``n``, ``num_frames``, ``steps``, ``guidance``, ``ef`` or
                ``latents`` shape, or a generator list of the wrong length; the message
                names the value received.
        """
        # 1. Check inputs.
        frames = self.config.num_frames if num_frames is None else num_frames
        efs, gens = check_sampling_args(n, frames, steps, guidance, ef, generator, latents, self.latent_shape,
                                        num_frames_given=num_frames)
        shape = (n, frames, *self.latent_shape)

        # 2. Conditioning: which branches run, and their added_time_ids.
        unet, device = self.unet, self.unet.device
        dtype = unet.dtype
        cond = None if efs is None else condition_ids(torch.tensor(efs, dtype=dtype, device=device))
        null = torch.full((n, 1), float(self.config.ef_null), dtype=dtype, device=device)
        if cond is None or guidance == 0:
            ids, mode = null, "null"
        elif guidance == 1:
            ids, mode = cond, "cond"
        else:
            ids, mode = torch.cat([null, cond]), "cfg"
        context = context_tokens(unet, len(ids), null)

        # 3. Timesteps, on a private scheduler copy: set_timesteps mutates it, and a cached
        # pipeline may be shared between callers.
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=device)

        # 4. Starting noise.
        if latents is None:
            if len(gens) == 1:
                latents = torch.randn(shape, generator=gens[0], dtype=torch.float32)
            else:
                latents = torch.stack([torch.randn(shape[1:], generator=g, dtype=torch.float32) for g in gens])
        x = latents.to(device=device, dtype=dtype) * scheduler.init_noise_sigma

        # 5. Denoise, guiding each step.
        unet.eval()
        for i, t in enumerate(scheduler.timesteps):
            inp = scheduler.scale_model_input(torch.cat([x, x]) if mode == "cfg" else x, t)
            out = unet(inp, t, encoder_hidden_states=context, added_time_ids=ids).sample
            if mode == "cfg":
                out_null, out_cond = out.chunk(2)
                out = out_null + guidance * (out_cond - out_null)
            x = scheduler.step(out, t, x).prev_sample
            if progress is not None:
                progress((i + 1) / steps, f"denoising step {i + 1}/{steps}")

        # 6. Latents out; decoding is the caller's (FrameVAE.decode).
        return x.float()

    @staticmethod
    def _check_ef(ef, n: int) -> list[float] | None:
        if ef is None:
            return None
        values = [ef] * n if isinstance(ef, (int, float, np.integer, np.floating)) and not isinstance(ef, bool) else ef
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            raise EchoAuditError(f"ef must be a number in [0, 100], a list of {n} of them, or None; got {ef!r}") from None
        if len(values) != n:
            raise EchoAuditError(f"ef must give one EF per clip ({n}); got {len(values)} values")
        bad = [v for v in values if not 0.0 <= v <= 100.0]
        if bad:
            raise EchoAuditError(f"ef must be in [0, 100] (percent); got {bad[:5]}")
        return values
