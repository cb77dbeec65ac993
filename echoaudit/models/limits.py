"""Bounds on model configs from folders a user points at, checked before a model is built.

A ``config.json`` decides how much memory building its model takes, before a single
weight is read: ``layers_per_block`` 2**40 in a VAE config grew a process to 23 GB before
it was killed (diffusers builds the model with random weights first, then loads the
file). So every loader here checks its config in two steps, both before anything is
allocated:

1. Each size in the config is an integer in a range (:data:`MAX_CHANNELS`,
   :data:`MAX_LEVELS`, :data:`MAX_LAYERS_PER_BLOCK`, ...). This comes first because the
   next step still runs the model's constructor: a loop of 2**40 layers is a hang even
   on the meta device.
2. The model is built on PyTorch's ``meta`` device (shapes only, no memory, no random
   numbers drawn) and its parameters are counted. Refused: more than
   :data:`MAX_MODEL_PARAMETERS` of its kind, or more than the weights beside the config
   hold (their safetensors headers, read without the tensors) by over
   :data:`WEIGHTS_SLACK_PARAMETERS`: such a model cannot load, and building it first
   would allocate for nothing. Smaller mismatches are left to the loader, whose message
   names the missing and unexpected tensors.

The caps, and why:

- :data:`MAX_MODEL_PARAMETERS`: VAE and re-ID 200 M, generator UNet 1 B. The shipped
  models have 0.9 M (VAE), 0.12 M (re-ID) and 1.1 M (each generator) parameters; the
  largest VAE one would bring from elsewhere (Stable Diffusion's / SDXL's AutoencoderKL)
  has 84 M, and Stable Video Diffusion's UNet, the largest of the spatio-temporal kind
  the generators use, 1.5 B: it does not fit this project's EF-conditioned pipeline
  anyway (three time ids, not one), and at 6 GB of float32 it is no model to audit with
  on the CPUs this tool targets. 200 M float32 parameters are 800 MB; 1 B are 4 GB.
- Per key: at most :data:`MAX_LEVELS` (6) resolution levels, :data:`MAX_LAYERS_PER_BLOCK`
  (4) layers per level, :data:`MAX_TRANSFORMER_LAYERS` (4) transformer layers, channel
  counts up to :data:`MAX_CHANNELS` (4096); every published AutoencoderKL and
  spatio-temporal UNet config we know stays within them (SD / SVD: 4 levels, 2 layers,
  1 transformer layer, 1280 channels at most). At these bounds the meta-device build of
  the largest UNet takes about a second; anything larger is refused before it.
- :data:`MAX_FRAMES` and :data:`MAX_CLIP_LATENT_ELEMENTS` bound the clip a generator
  samples by default (its ``num_frames`` x channels x ``sample_size`` squared), and
  :data:`MAX_TRAIN_TIMESTEPS` the noise schedule (diffusers computes cosine betas in a
  Python loop over the timesteps).

Every refusal is a :class:`~echoaudit.errors.CheckpointError` naming the config file,
the key and the value (or the parameter count and the limit).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from echoaudit.errors import CheckpointError, EchoAuditError

__all__ = [
    "MAX_MODEL_PARAMETERS", "WEIGHTS_SLACK_PARAMETERS", "MAX_CHANNELS", "MAX_LEVELS", "MAX_LAYERS_PER_BLOCK",
    "MAX_TRANSFORMER_LAYERS", "MAX_ATTENTION_HEADS", "MAX_IMAGE_SIZE", "MAX_LATENT_SIZE", "MAX_REID_INPUT_SIZE",
    "MAX_FRAMES", "MAX_CLIP_LATENT_ELEMENTS", "MAX_TRAIN_TIMESTEPS",
    "check_vae_config", "check_reid_config", "check_unet_config", "check_generator_configs", "meta_parameters",
]

#: Most parameters a model of each kind may have (see the module docstring).
MAX_MODEL_PARAMETERS = {"vae": 200_000_000, "reid": 200_000_000, "generator": 1_000_000_000}
#: How many parameters a config may describe beyond what its weights hold before it is
#: refused unbuilt (16 MB of float32); smaller mismatches get the loader's own message.
WEIGHTS_SLACK_PARAMETERS = 4_000_000
MAX_CHANNELS = 4096  # any channel count, width or embedding size
MAX_LEVELS = 6  # resolution levels (len(block_out_channels)), and every per-level list
MAX_LAYERS_PER_BLOCK = 4
MAX_TRANSFORMER_LAYERS = 4
MAX_ATTENTION_HEADS = 256
MAX_IMAGE_SIZE = 8192  # a VAE's sample_size (pixels; only sets its tiling)
MAX_LATENT_SIZE = 512  # a generator UNet's sample_size (latent pixels per side)
MAX_REID_INPUT_SIZE = 1024  # re-ID input_size (its stem halves it down to 14)
MAX_FRAMES = 1024  # a generator's clip length (num_frames)
MAX_CLIP_LATENT_ELEMENTS = 2**26  # one default clip's latents: 256 MB of float32
MAX_TRAIN_TIMESTEPS = 10_000  # a scheduler's num_train_timesteps (1000 everywhere)
_MAX_COUNT = 2**31  # counts such as train_videos


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


class _Keys:
    """Checks the keys of one config dict; each refusal names the file, the key and the value."""

    def __init__(self, path: Path, what: str, cfg: dict):
        self.where, self.cfg = f"{what} config {str(path)!r}", cfg

    def bad(self, key: str, value, wanted: str) -> CheckpointError:
        return CheckpointError(f"{self.where}: {key} is {_show(value)}; it must be {wanted}")

    def int(self, key: str, lo: int, hi: int, *, limit: str = "", optional: bool = False) -> None:
        v = self.cfg.get(key)
        if key not in self.cfg or (optional and v is None):
            return
        if not _is_int(v) or not lo <= v <= hi:
            raise self.bad(key, v, f"an integer from {lo} to {hi}" + (f" ({limit})" if limit else ""))

    def ints(self, key: str, lo: int, hi: int, *, limit: str = "", scalar: bool = True, nested: bool = False) -> None:
        """An int (if ``scalar``) or a list of 1..MAX_LEVELS ints (or, ``nested``, of such lists)."""
        if key not in self.cfg:
            return
        v = self.cfg[key]
        wanted = (f"{'an integer or ' if scalar else ''}a list of 1 to {MAX_LEVELS} integers from {lo} to {hi}"
                  + (f" ({limit})" if limit else ""))
        if scalar and _is_int(v):
            items = [v]
        elif isinstance(v, list) and 1 <= len(v) <= MAX_LEVELS:
            items = []
            for x in v:
                if nested and isinstance(x, list) and 1 <= len(x) <= MAX_LEVELS:
                    items.extend(x)
                else:
                    items.append(x)
        else:
            raise self.bad(key, v, wanted)
        if not all(_is_int(x) and lo <= x <= hi for x in items):
            raise self.bad(key, v, wanted)

    def names(self, key: str) -> None:
        v = self.cfg.get(key)
        if key in self.cfg and not (isinstance(v, list) and 1 <= len(v) <= MAX_LEVELS
                                    and all(isinstance(x, str) for x in v)):
            raise self.bad(key, v, f"a list of 1 to {MAX_LEVELS} block names (MAX_LEVELS)")

    def number(self, key: str, *, positive: bool = False, nonzero: bool = False, optional: bool = False) -> None:
        v = self.cfg.get(key)
        if key not in self.cfg or (optional and v is None):
            return
        if not _is_number(v) or (positive and v <= 0) or (nonzero and v == 0):
            raise self.bad(key, v, "a finite number" + (" > 0" if positive else " other than 0" if nonzero else ""))

    def numbers(self, key: str, max_len: int) -> None:
        v = self.cfg.get(key)
        if key in self.cfg and v is not None and not (
                isinstance(v, list) and len(v) <= max_len and all(_is_number(x) for x in v)):
            raise self.bad(key, v, f"null or a list of at most {max_len} finite numbers")

    def string(self, key: str) -> None:
        v = self.cfg.get(key)
        if key in self.cfg and not isinstance(v, str):
            raise self.bad(key, v, "a string")

    def boolean(self, key: str) -> None:
        v = self.cfg.get(key)
        if key in self.cfg and not isinstance(v, bool):
            raise self.bad(key, v, "true or false")


def meta_parameters(build: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the module ``build()`` makes, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = build()
    return int(sum(p.numel() for p in model.parameters()))


def _weights_elements(folder: Path) -> int | None:
    """Values the ``*.safetensors`` files directly in ``folder`` hold (from their headers);
    None when there are none or one cannot be read (the loader then says why)."""
    from echoaudit.fileio import read_safetensors_header

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        try:
            header = read_safetensors_header(f)
        except EchoAuditError:
            return None
        total += sum(math.prod(info["shape"]) for info in header.values())
    return total


def _check_size(path: Path, what: str, kind: str, build: Callable[[], torch.nn.Module], sizing: dict) -> int:
    """Build on meta, count, and refuse a model over its cap or far beyond its weights."""
    where = f"{what} config {str(path)!r}"
    try:
        n = meta_parameters(build)
    except EchoAuditError:
        raise
    except Exception as exc:  # the constructors raise many types for inconsistent configs
        raise CheckpointError(f"{where} does not describe a model that can be built "
                              f"({type(exc).__name__}: {str(exc)[:300]})") from None
    keys = ", ".join(f"{k} {_show(v)}" for k, v in sizing.items() if v is not None)
    limit = MAX_MODEL_PARAMETERS[kind]
    if n > limit:
        raise CheckpointError(f"{where} describes a model of {n:,} parameters ({keys}); the limit for a {what} is "
                              f"{limit:,} (MAX_MODEL_PARAMETERS['{kind}']): refused before building it")
    held = _weights_elements(path.parent)
    if held is not None and n > held + WEIGHTS_SLACK_PARAMETERS:
        raise CheckpointError(f"{where} describes a model of {n:,} parameters ({keys}), but the weights beside it "
                              f"hold {held:,} values: the config does not match its weights (refused before building it)")
    return n


def check_vae_config(path: str | Path, cfg: dict) -> int:
    """Check an AutoencoderKL ``config.json`` (already read as a dict); returns its parameter count.

    Raises:
        CheckpointError: a size out of range, a model that cannot be built, or one over
            the VAE cap or far beyond its weights (the message names the key and value).
    """
    from diffusers import AutoencoderKL

    path = Path(path)
    k = _Keys(path, "VAE", cfg)
    for key in ("in_channels", "out_channels", "latent_channels", "norm_num_groups"):
        k.int(key, 1, MAX_CHANNELS, limit="MAX_CHANNELS")
    k.ints("block_out_channels", 1, MAX_CHANNELS, limit="MAX_CHANNELS, MAX_LEVELS", scalar=False)
    k.int("layers_per_block", 1, MAX_LAYERS_PER_BLOCK, limit="MAX_LAYERS_PER_BLOCK")
    k.names("down_block_types")
    k.names("up_block_types")
    k.ints("sample_size", 1, MAX_IMAGE_SIZE, limit="MAX_IMAGE_SIZE")
    k.number("scaling_factor", nonzero=True)
    k.number("shift_factor", optional=True)
    k.numbers("latents_mean", MAX_CHANNELS)
    k.numbers("latents_std", MAX_CHANNELS)
    k.string("act_fn")
    for key in ("force_upcast", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"):
        k.boolean(key)
    sizing = {key: cfg.get(key) for key in ("block_out_channels", "layers_per_block", "latent_channels")}
    return _check_size(path, "VAE", "vae", lambda: AutoencoderKL.from_config(cfg), sizing)


def check_reid_config(path: str | Path, cfg: dict) -> int:
    """Check a re-ID ``config.json`` (a dict); returns its parameter count.

    Raises:
        CheckpointError: as :func:`check_vae_config`, for the re-ID's keys.
    """
    from echoaudit.models.reid import ReIDNet

    path = Path(path)
    if "siamese_architecture" in cfg:  # the published EchoNet-Synthetic format
        from echoaudit.models.published import check_published_config

        return check_published_config(path, cfg)[1]
    k = _Keys(path, "re-ID", cfg)
    for key in ("in_channels", "width", "embed_dim", "head_hidden"):
        k.int(key, 1, MAX_CHANNELS, limit="MAX_CHANNELS")
    k.int("input_size", 2, MAX_REID_INPUT_SIZE, limit="MAX_REID_INPUT_SIZE")
    k.boolean("mirror_invariant")
    sizing = {key: cfg.get(key) for key in ("in_channels", "input_size", "width", "embed_dim", "head_hidden")}
    return _check_size(path, "re-ID", "reid", lambda: ReIDNet.from_config(cfg), sizing)


def check_unet_config(path: str | Path, cfg: dict) -> int:
    """Check a UNetSpatioTemporalConditionModel ``config.json`` (a dict); returns its parameter count.

    Raises:
        CheckpointError: as :func:`check_vae_config`, for the UNet's keys.
    """
    from diffusers import UNetSpatioTemporalConditionModel

    path = Path(path)
    k = _Keys(path, "generator UNet", cfg)
    k.int("sample_size", 1, MAX_LATENT_SIZE, limit="MAX_LATENT_SIZE")
    for key in ("in_channels", "out_channels", "addition_time_embed_dim", "projection_class_embeddings_input_dim"):
        k.int(key, 1, MAX_CHANNELS, limit="MAX_CHANNELS")
    k.ints("block_out_channels", 1, MAX_CHANNELS, limit="MAX_CHANNELS, MAX_LEVELS", scalar=False)
    k.names("down_block_types")
    k.names("up_block_types")
    k.ints("layers_per_block", 1, MAX_LAYERS_PER_BLOCK, limit="MAX_LAYERS_PER_BLOCK")
    k.ints("cross_attention_dim", 1, MAX_CHANNELS, limit="MAX_CHANNELS")
    k.ints("transformer_layers_per_block", 1, MAX_TRANSFORMER_LAYERS, limit="MAX_TRANSFORMER_LAYERS", nested=True)
    k.ints("num_attention_heads", 1, MAX_ATTENTION_HEADS, limit="MAX_ATTENTION_HEADS")
    k.int("num_frames", 1, MAX_FRAMES, limit="MAX_FRAMES")
    sizing = {key: cfg.get(key) for key in ("block_out_channels", "layers_per_block", "transformer_layers_per_block",
                                            "cross_attention_dim")}
    return _check_size(path, "generator UNet", "generator",
                       lambda: UNetSpatioTemporalConditionModel.from_config(cfg), sizing)


def _component(k: _Keys, key: str, allowed: Callable[[str], bool], wanted: str) -> None:
    v = k.cfg.get(key)
    if key not in k.cfg:
        return
    if not (isinstance(v, list) and len(v) == 2 and v[0] == "diffusers" and isinstance(v[1], str) and allowed(v[1])):
        raise k.bad(key, v, wanted)


def _is_scheduler(name: str) -> bool:
    import diffusers

    try:
        obj = getattr(diffusers, name, None)
    except Exception:  # diffusers' lazy module raises for some names
        return False
    return isinstance(obj, type) and issubclass(obj, diffusers.SchedulerMixin)


def check_generator_configs(folder: str | Path, configs: dict[str, dict]) -> int:
    """Check a generator pipeline folder's configs (``model_index.json``, ``unet/config.json``,
    ``scheduler/scheduler_config.json``, as read by ``check_model_configs``); returns the
    UNet's parameter count (0 when the folder has no UNet config: the loader says so).

    ``model_index.json`` may name only diffusers classes (the UNet class this project's
    pipeline uses, and a diffusers scheduler): diffusers imports the module a component
    names, and an arbitrary installed module runs code when imported.

    Raises:
        CheckpointError: naming the file, the key and the value.
    """
    folder = Path(folder)
    index = configs.get("model_index.json", {})
    k = _Keys(folder / "model_index.json", "generator", index)
    _component(k, "unet", lambda n: n == "UNetSpatioTemporalConditionModel",
               '["diffusers", "UNetSpatioTemporalConditionModel"]')
    _component(k, "scheduler", _is_scheduler, '["diffusers", <a diffusers scheduler class>]')
    k.int("num_frames", 1, MAX_FRAMES, limit="MAX_FRAMES")
    k.int("frame_stride", 1, MAX_FRAMES, limit="MAX_FRAMES")
    k.int("train_videos", 0, _MAX_COUNT)
    k.number("fps", positive=True)
    k.number("ef_null")
    k.string("vae_fingerprint")
    k.string("view")

    sched = configs.get("scheduler/scheduler_config.json", {})
    ks = _Keys(folder / "scheduler" / "scheduler_config.json", "generator scheduler", sched)
    ks.int("num_train_timesteps", 1, MAX_TRAIN_TIMESTEPS, limit="MAX_TRAIN_TIMESTEPS")
    ks.numbers("trained_betas", MAX_TRAIN_TIMESTEPS)

    unet = configs.get("unet/config.json")
    if unet is None:
        return 0
    n = check_unet_config(folder / "unet" / "config.json", unet)
    channels, side = unet.get("out_channels", 4), unet.get("sample_size") or 1
    frames = index.get("num_frames", 32)
    elements = channels * side * side * frames
    if elements > MAX_CLIP_LATENT_ELEMENTS:
        raise CheckpointError(
            f"generator {str(folder)!r}: a default clip of num_frames {frames} x out_channels {channels} x sample_size "
            f"{side}^2 is {elements:,} latent values; the limit is {MAX_CLIP_LATENT_ELEMENTS:,} (MAX_CLIP_LATENT_ELEMENTS)")
    return n
