"""Frame VAE: a diffusers ``AutoencoderKL`` that compresses each gray 112x112 echo frame
8x in each spatial direction into 4 latent channels (4x14x14, 1/48 of the pixels).

``FrameVAE`` wraps any AutoencoderKL folder with the project's conventions: frames are
float (N, H, W) in [0, 1]; latents are the posterior mean times the config's
``scaling_factor`` (so diffusion sees roughly unit variance). A 3-channel VAE from
elsewhere gets the gray frame repeated to 3 channels, and its output is averaged back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from echoaudit.errors import CheckpointError
from echoaudit.fileio import check_model_configs, model_fingerprint
from echoaudit.models.limits import check_vae_config

__all__ = ["build_vae", "FrameVAE", "DEMO_VAE_CHANNELS"]

DEMO_VAE_CHANNELS = (16, 32, 64, 64)


def build_vae(
    block_out_channels: tuple[int, ...] = DEMO_VAE_CHANNELS,
    *,
    latent_channels: int = 4,
    layers_per_block: int = 1,
    sample_size: int = 112,
    norm_num_groups: int = 8,
    seed: int = 0,
) -> AutoencoderKL:
    """A gray-in, gray-out AutoencoderKL with ``len(block_out_channels) - 1`` halvings."""
    torch.manual_seed(seed)
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        scaling_factor=1.0,
        mid_block_add_attention=False,
    )


class FrameVAE:
    """Encode / decode gray frames with an AutoencoderKL (frozen, eval mode).

    Attributes:
        vae: the diffusers model.
        downsample: spatial factor between frames and latents (8 for the demo VAE).
        fingerprint: model_fingerprint of the folder it was loaded from ("" if built in memory).
    """

    # Batches of 16 frames: on 2 CPU cores a batch of 64 112x112 frames runs ~2x slower
    # per frame (it no longer fits the caches); 16 measured fastest for encode and decode.

    def __init__(self, vae: AutoencoderKL, fingerprint: str = ""):
        self.vae = vae.eval()
        self.fingerprint = fingerprint
        cfg = vae.config
        if cfg.in_channels not in (1, 3):
            raise CheckpointError(f"VAE must take 1 (gray) or 3 (RGB) input channels; this one takes {cfg.in_channels}")
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "FrameVAE":
        """Load a diffusers AutoencoderKL folder (``config.json`` + safetensors weights).

        Raises:
            CheckpointError: no config.json; a config with sizes out of range or a model
                too large (:func:`~echoaudit.models.limits.check_vae_config`, checked
                before anything is built); weights that do not match the config.
        """
        path = Path(path)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} is not a diffusers VAE folder: no config.json there")
        # Sizes first (echoaudit.models.limits): diffusers builds the model before it reads a weight.
        check_vae_config(path / "config.json", check_model_configs(path, ("config.json",))["config.json"])
        try:
            vae, info = AutoencoderKL.from_pretrained(path, use_safetensors=True, low_cpu_mem_usage=False,
                                                      output_loading_info=True)
        except Exception as exc:  # diffusers raises several types for shape/key mismatches
            raise CheckpointError(f"cannot load the VAE in {path}: its weights do not match its config.json ({exc})") from exc
        # A renamed or missing tensor would otherwise load as random weights, silently.
        problems = [f"{k}: {', '.join(map(str, v))[:300]}" for k in ("missing_keys", "unexpected_keys", "mismatched_keys",
                                                                      "error_msgs") if (v := info.get(k))]
        if problems:
            raise CheckpointError(f"cannot load the VAE in {path}: its weights do not match its config.json "
                                  f"({'; '.join(problems)})")
        # Inference only from here: channels-last weights run the convolutions ~1.8x faster
        # on CPU (encode 4.9 vs 8.4 ms/frame, decode 12.9 vs 17.8 on 2 cores). Not for a
        # model being trained: safetensors refuses to save non-contiguous weights.
        vae.to(memory_format=torch.channels_last)
        return cls(vae, fingerprint=model_fingerprint(path))

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def latent_shape(self, size: int = 112) -> tuple[int, int, int]:
        return (self.latent_channels, size // self.downsample, size // self.downsample)

    def _to_input(self, frames) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(frames, dtype=np.float32)) if not torch.is_tensor(frames) else frames.float()
        if x.ndim != 3:
            raise ValueError(f"frames must be (N, H, W) gray in [0, 1]; got shape {tuple(x.shape)}")
        x = x[:, None] * 2 - 1
        if self.vae.config.in_channels == 3:
            x = x.repeat(1, 3, 1, 1)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def encode(self, frames, *, batch_size: int = 16) -> torch.Tensor:
        """(N, H, W) frames in [0, 1] -> (N, C, H/8, W/8) scaled latents (posterior mean)."""
        x = self._to_input(frames).to(self.vae.device)  # a model moved to a GPU (Ray workers) encodes there
        out = [self.vae.encode(x[i : i + batch_size]).latent_dist.mean for i in range(0, len(x), batch_size)]
        # Contiguous (the convolutions leave them channels-last): latents read back from a
        # store or a file are contiguous, and the re-ID gives other low bits for the other
        # memory layout, so every path hands it the same layout.
        return (torch.cat(out) * self.scaling_factor).cpu().contiguous()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
        """(N, C, h, w) scaled latents -> (N, H, W) frames in [0, 1]."""
        z = (torch.as_tensor(latents).float() / self.scaling_factor).contiguous(memory_format=torch.channels_last)
        out = [self.vae.decode(z[i : i + batch_size]).sample for i in range(0, len(z), batch_size)]
        y = torch.cat(out).mean(dim=1)
        return ((y + 1) / 2).clamp(0, 1)
