"""Ejection-fraction regressor over latent videos: the downstream-utility model.

The paper's last question (Dombrowski et al., arXiv 2411.04956, after EchoNet-Synthetic):
does a synthetic set teach an EF model as well as the real one? This is that model, small
enough to train on two CPU cores: a (2+1)D CNN over the frame VAE's latents.

Architecture (C = in_channels, W = width, clip = ``clip_frames`` latent frames)::

    x (B, T, C, h, w) latents of one clip -> (B, 2C, T, h, w): each pixel's value and
        its motion (the value minus the pixel's mean over the clip)
    stem: conv 1x3x3 (2C -> W/2) + GN + ReLU                     "fine"   (T, 14, 14)
    (2+1)D residual block (W/2 -> W, spatial stride 2)                    (T, 7, 7)
    (2+1)D residual block (W -> W)                               "coarse" (T, 7, 7)
        each: conv 1x3x3 + GN + ReLU, conv 3x1x1 + GN, skip, ReLU
    volume path: soft cavity mask m = sigmoid(conv1x1(fine) + up(conv1x1(coarse)))
        (T, 14, 14); per frame a volume v_t = mean(m)^1.5 (area-length: V ~ A^1.5);
        ejection = 100 (1 - min_t v_t / max_t v_t)
    feature path: spatial mean of coarse -> (B, W, T) -> ``temporal_layers`` residual
        1-D blocks (conv3, dilations 1, 2, 4, ...) -> [mean, max, min] over T -> (B, 3W)
        -> linear (3W -> W) + ReLU + linear (W -> 1)
    z = volume_gain * (ejection - ef_mean) / ef_std + feature path   (EF in standard units)
    EF (percent) = ef_mean + ef_std * z

Why this shape: EF is (EDV - ESV) / EDV, the largest and the smallest cavity of a beat.
The volume path states that formula and learns only where the cavity is (supervised by
the EF alone, as a weakly supervised segmentation); the feature path corrects what it
misses. On the demo phantom (320 TRAIN videos, 20 epochs) the volume path took the TEST
MAE from 6.9 to 4.1 EF points and R^2 from 0.46 to 0.84, mostly at the extremes, where
a pooled-feature head alone regressed to the mean. The motion channels and clip-wide
norms (below) keep the beat's amplitude visible to the convolutions.

Clips: ``clip_frames`` frames at ``clip_fps`` (EchoNet-Dynamic's 32 frames, stride 2 of
50 fps: 1.28 s, more than one beat). A video of another frame rate is resampled by
picking frames (:func:`clip_indices`); training draws a random start, evaluation
averages a few evenly spaced crops (:func:`crop_starts`). A video shorter than a clip
repeats its last frame.

GroupNorm, not BatchNorm: a prediction must not depend on the rest of the batch. The
norms pool over the whole clip (T, h, w), never frame by frame: how much frames differ
(the beat) is the signal, and a per-frame norm scales it away.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from echoaudit.errors import CheckpointError
from echoaudit.fileio import check_model_configs, model_fingerprint

__all__ = ["EFRegressor", "load_ef", "ef_fingerprint", "clip_indices", "crop_starts", "MAX_EF_PARAMETERS"]

#: Most parameters an EF model from a folder may describe (checked before it is built):
#: the default has ~30 k; 50 M float32 parameters are 200 MB.
MAX_EF_PARAMETERS = 50_000_000
_MAX_WIDTH = 1024
_MAX_TEMPORAL_LAYERS = 8
_MAX_CLIP_FRAMES = 1024


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class _Block21d(nn.Module):
    """(2+1)D residual block on (B, C, T, h, w): a 1x3x3 spatial conv (stride s in h, w),
    then a 3x1x1 temporal conv, each with GroupNorm; a 1x1x1 skip when the shape changes.

    The norms pool their statistics over the whole clip (T, h, w), not frame by frame: how
    much one frame differs from another (the beat) is the signal, and a per-frame norm
    would scale it away."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.spatial = nn.Conv3d(c_in, c_out, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.norm1 = _norm(c_out)
        self.temporal = nn.Conv3d(c_out, c_out, (3, 1, 1), 1, (1, 0, 0), bias=False)
        self.norm2 = _norm(c_out)
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out
                     else nn.Sequential(nn.Conv3d(c_in, c_out, 1, (1, stride, stride), bias=False), _norm(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.spatial(x)))
        return F.relu(self.norm2(self.temporal(h)) + self.skip(x))


class _Res1d(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, 1, dilation, dilation=dilation, bias=False)
        self.norm = _norm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.norm(self.conv(x)))


class EFRegressor(ModelMixin, ConfigMixin):
    """EF (percent) of a latent clip; see the module docstring for the layers.

    Args:
        in_channels: latent channels C (4 for the frame VAE).
        width: channels W of the (2+1)D blocks and the temporal part.
        temporal_layers: residual 1-D blocks over time (dilations 1, 2, 4, ...).
        clip_frames: frames per clip.
        clip_fps: frame rate of a clip; videos are resampled to it by picking frames.
        ef_mean, ef_std: the training targets' mean and standard deviation (percent):
            the network predicts (EF - ef_mean) / ef_std.
    """

    @register_to_config
    def __init__(self, in_channels: int = 4, width: int = 24, temporal_layers: int = 2, clip_frames: int = 32,
                 clip_fps: float = 25.0, ef_mean: float = 50.0, ef_std: float = 15.0):
        super().__init__()
        for name, value, low, high in (("in_channels", in_channels, 1, _MAX_WIDTH), ("width", width, 2, _MAX_WIDTH),
                                       ("temporal_layers", temporal_layers, 0, _MAX_TEMPORAL_LAYERS),
                                       ("clip_frames", clip_frames, 1, _MAX_CLIP_FRAMES)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"EFRegressor {name} must be an int from {low} to {high}; got {value!r}")
        for name, value in (("clip_fps", clip_fps), ("ef_mean", ef_mean), ("ef_std", ef_std)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"EFRegressor {name} must be a finite number; got {value!r}")
        if clip_fps <= 0 or ef_std <= 0:
            raise ValueError(f"EFRegressor clip_fps and ef_std must be > 0; got {clip_fps!r}, {ef_std!r}")
        half = max(2, width // 2)
        self.stem = nn.Sequential(nn.Conv3d(2 * in_channels, half, (1, 3, 3), 1, (0, 1, 1), bias=False), _norm(half),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(_Block21d(half, width, stride=2), _Block21d(width, width))
        self.temporal = nn.Sequential(*[_Res1d(width, 2 ** k) for k in range(temporal_layers)])
        self.head = nn.Sequential(nn.Linear(3 * width, width), nn.ReLU(inplace=True), nn.Linear(width, 1))
        # The volume path: a soft cavity mask at the latent grid, from the stem's features and
        # the blocks' (upsampled); its area per frame -> a volume ~ area^1.5 (area-length).
        self.cavity_fine = nn.Conv3d(half, 1, 1)
        self.cavity_coarse = nn.Conv3d(width, 1, 1)
        self.volume_gain = nn.Parameter(torch.ones(()))
        with torch.no_grad():  # start at the mean EF: a constant mask gives an ejection of 0
            self.head[-1].bias.fill_(ef_mean / ef_std)

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config.in_channels
        if x.ndim != 5 or x.shape[2] != c or x.shape[1] < 1 or min(x.shape[3:]) < 2:
            raise ValueError(f"EFRegressor expects latent clips of shape (B, T, {c}, h, w) with h, w >= 2; "
                             f"got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) latents -> (B,) float32 EF in standard units (z)."""
        self._check_input(x)

        x = x.float().transpose(1, 2)  # (B, C, T, h, w)
        x = torch.cat([x, x - x.mean(dim=2, keepdim=True)], dim=1)  # each pixel's motion beside its value
        fine = self.stem(x)  # (B, W/2, T, h, w)
        coarse = self.blocks(fine)  # (B, W, T, h/2, w/2)
        logits = self.cavity_fine(fine) + F.interpolate(self.cavity_coarse(coarse), size=fine.shape[2:], mode="nearest")
        volume = torch.sigmoid(logits).mean(dim=(1, 3, 4)).clamp_min(1e-4) ** 1.5  # (B, T)
        ejection = 100.0 * (1.0 - volume.amin(1) / volume.amax(1))  # percent
        h = self.temporal(coarse.mean(dim=(3, 4)))  # (B, W, T)
        pooled = torch.cat([h.mean(2), h.amax(2), h.amin(2)], dim=1)
        return self.volume_gain * self.to_standard(ejection) + self.head(pooled).squeeze(1)

    def to_percent(self, z: torch.Tensor) -> torch.Tensor:
        return self.config.ef_mean + self.config.ef_std * z

    def to_standard(self, ef: torch.Tensor) -> torch.Tensor:
        return (ef - self.config.ef_mean) / self.config.ef_std

    @torch.no_grad()
    def predict_ef(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) latent clips -> (B,) float32 EF in percent (eval mode for the call)."""
        was = self.training
        self.eval()
        try:
            return self.to_percent(self(x))
        finally:
            self.train(was)

    def clip(self, latents: np.ndarray, fps: float, start: int = 0) -> np.ndarray:
        """(clip_frames, C, h, w) float32: the clip of a (T, C, h, w) latent video from ``start``."""
        idx = clip_indices(len(latents), fps, self.config.clip_frames, self.config.clip_fps, start)
        return np.asarray(latents[idx], dtype=np.float32)


def _step(fps: float, clip_fps: float) -> float:
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"a video's frame rate must be a finite number > 0; got {fps!r}")
    return float(fps) / float(clip_fps)


def clip_indices(n_frames: int, fps: float, clip_frames: int, clip_fps: float, start: int = 0) -> np.ndarray:
    """(clip_frames,) int64 frame numbers of a clip at ``clip_fps`` starting at frame ``start``.

    Frame k of the clip is frame ``start + round(k * fps / clip_fps)`` of the video (50 fps
    to 25 fps: every other frame), clamped to the last frame (a short video repeats it).
    """
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame; got {n_frames}")
    step = _step(fps, clip_fps)
    idx = int(start) + np.floor(np.arange(clip_frames) * step + 0.5).astype(np.int64)
    return np.minimum(idx, n_frames - 1)


def crop_starts(n_frames: int, fps: float, clip_frames: int, clip_fps: float, n: int) -> np.ndarray:
    """Up to ``n`` distinct, evenly spaced starts (int64) of clips that fit in the video
    (first and last possible start included); [0] when no whole clip fits."""
    span = int(np.floor((clip_frames - 1) * _step(fps, clip_fps) + 0.5))
    last = max(0, n_frames - 1 - span)
    return np.unique(np.linspace(0, last, max(1, int(n))).round().astype(np.int64))


def _check_config(path: Path, cfg: dict) -> None:
    """Sizes in range and a parameter count under MAX_EF_PARAMETERS, before anything is built."""
    from echoaudit.models.limits import meta_parameters

    where = f"EF model config {str(path)!r}"
    for key, low, high in (("in_channels", 1, _MAX_WIDTH), ("width", 2, _MAX_WIDTH),
                           ("temporal_layers", 0, _MAX_TEMPORAL_LAYERS), ("clip_frames", 1, _MAX_CLIP_FRAMES)):
        v = cfg.get(key, 1 if key != "width" else 2)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise CheckpointError(f"{where}: {key} is {v!r:.80}; it must be an integer from {low} to {high}")
    for key in ("clip_fps", "ef_mean", "ef_std"):
        v = cfg.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (key != "ef_mean" and v <= 0):
            raise CheckpointError(f"{where}: {key} is {v!r:.80}; it must be a finite number" + (" > 0" if key != "ef_mean" else ""))
    try:
        n = meta_parameters(lambda: EFRegressor.from_config(cfg))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where} does not describe a model that can be built ({exc})") from None
    if n > MAX_EF_PARAMETERS:
        raise CheckpointError(f"{where} describes a model of {n:,} parameters; the limit is {MAX_EF_PARAMETERS:,} "
                              "(MAX_EF_PARAMETERS): refused before building it")


def load_ef(folder: str | Path) -> EFRegressor:
    """Load a ``save_pretrained`` folder (config.json + safetensors) in eval mode.

    Raises:
        CheckpointError: no such folder or config.json; a config that is not a JSON
            object, has sizes out of range or describes too large a model (checked
            before anything is built); weights missing, corrupt or not matching it.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not an EF model folder: no config.json there")
    _check_config(folder / "config.json", check_model_configs(folder, ("config.json",))["config.json"])
    try:
        model, info = EFRegressor.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False,
                                                  output_loading_info=True)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"EF model in {folder} does not match its config or is corrupt ({str(exc)[:300]})") from exc
    problems = [f"{k}: {', '.join(map(str, v))[:300]}" for k in ("missing_keys", "unexpected_keys", "mismatched_keys",
                                                                  "error_msgs") if (v := info.get(k))]
    if problems:
        raise CheckpointError(f"EF model in {folder} does not match its config.json ({'; '.join(problems)})")
    return model.eval()


def ef_fingerprint(folder: str | Path) -> str:
    """sha256 of every file of an EF model folder."""
    folder = Path(folder)
    if not folder.exists():
        raise CheckpointError(f"EF model folder {folder} does not exist")
    return model_fingerprint(folder)
