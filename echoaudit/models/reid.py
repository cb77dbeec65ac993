"""Re-identification network: a siamese CNN that tells whether two frames show one patient.

The paper's privacy model (Dombrowski et al., arXiv 2411.04956): a shared backbone
embeds each frame, and a head scores the pair. It runs in the VAE's latent space
(4x14x14) or, for comparison, on image frames (1x112x112) through ONE code path: inputs
larger than 14x14 first pass a stem of stride-2 conv blocks that brings them down to
<= 14x14 (112 -> 56 -> 28 -> 14); then the same residual trunk follows for both spaces.

Architecture (C = in_channels, W = width, D = embed_dim)::

    x (B, C, S, S)
    stem: n blocks conv3x3/2 + GN + ReLU, n = number of halvings to reach <= 14
          (none for latents), channels W/2^n, ..., W/4, W/2 (at least 8)
    trunk: conv3x3 (-> W/2) + GN + ReLU at <= 14x14
           residual block (W/2, stride 1)
           residual block (W/2 -> W, stride 2)   -> <= 7x7
    global average pool -> linear (W -> D) -> L2 normalisation: e (B, D), ||e|| = 1
    (mirror_invariant: the pooled features of x and of x flipped left-right are averaged
    before the linear layer, so e(x) = e(flip(x)) exactly)
    head: MLP on [|e1 - e2|, e1 * e2] (2D -> head_hidden -> 1): a logit, symmetric in
          (e1, e2) because both features are.

Channels double where the grid halves (as in ResNet): W/2 at 14x14 keeps the latent
epoch cheap on a CPU (a full-width 14x14 stage measured ~3x slower for no AUC gain on
the phantom).

Mirror invariance (opt-in, ``mirror_invariant=True``): a left-right flipped copy of a
training video is a copy. Training on mirrored disguises alone left the filter weakest on
exactly that family on a second view (phantom psax: 79 % of mirrored copies flagged
against 96 % overall); pooling over the flip (one extra trunk pass per frame) flagged
100 % of them, but fresh patients' videos were flagged 14.3 % of the time at the 5 %
threshold (7.7 % without), so it is not the default. Checkpoints without the key in
their config load as they were trained.

GroupNorm instead of BatchNorm: an embedding must not depend on what else is in the
batch (the audit embeds frames one video at a time), and a briefly trained model has no
running statistics to get wrong in eval mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from echoaudit.errors import CheckpointError
from echoaudit.fileio import check_model_configs, model_fingerprint
from echoaudit.models.limits import check_reid_config

if TYPE_CHECKING:
    from echoaudit.models.published import PublishedReID

__all__ = ["ReIDNet", "load_reid", "reid_fingerprint", "TRUNK_SIZE"]

TRUNK_SIZE = 14  # the trunk runs at <= 14x14: the latent grid of a 112x112 frame


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), _norm(c_out), nn.ReLU(inplace=True))


class _ResBlock(nn.Module):
    """Two 3x3 convs with a skip (1x1 conv when the stride or channels change)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = _norm(c_out)
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + self.skip(x))


def stem_halvings(input_size: int) -> int:
    """How many stride-2 convs (each ceil(s / 2)) bring ``input_size`` to <= TRUNK_SIZE."""
    n, s = 0, int(input_size)
    while s > TRUNK_SIZE:
        s, n = (s + 1) // 2, n + 1
    return n


class ReIDNet(ModelMixin, ConfigMixin):
    """Siamese re-identification network (see the module docstring for the layers).

    Args:
        in_channels: channels of one input frame: 4 for VAE latents, 1 for gray frames.
        input_size: side of the (square) input: 14 for latents, 112 for image frames.
        width: channels of the trunk.
        embed_dim: length D of the unit embedding.
        head_hidden: hidden units of the pair head.
        mirror_invariant: average the pooled trunk features of each frame and its
            left-right mirror image, so a frame and its mirror embed identically.
    """

    @register_to_config
    def __init__(self, in_channels: int = 4, input_size: int = 14, width: int = 64, embed_dim: int = 128, head_hidden: int = 128,
                 mirror_invariant: bool = False):
        super().__init__()
        if not isinstance(mirror_invariant, bool):
            raise ValueError(f"ReIDNet mirror_invariant must be true or false; got {mirror_invariant!r}")
        for name, value, low in (("in_channels", in_channels, 1), ("input_size", input_size, 2), ("width", width, 1),
                                 ("embed_dim", embed_dim, 1), ("head_hidden", head_hidden, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"ReIDNet {name} must be an int >= {low}; got {value!r}")
        n = stem_halvings(input_size)
        half = max(8, width // 2)
        layers, c = [], in_channels
        for k in range(n):
            c_out = max(8, width // 2 ** (n - k))
            layers.append(_conv_block(c, c_out, stride=2))
            c = c_out
        self.stem = nn.Sequential(*layers)
        self.trunk = nn.Sequential(
            _conv_block(c, half, stride=1),
            _ResBlock(half, half, stride=1),
            _ResBlock(half, width, stride=2),
        )
        self.proj = nn.Linear(width, embed_dim)
        self.head = nn.Sequential(nn.Linear(2 * embed_dim, head_hidden), nn.ReLU(inplace=True), nn.Linear(head_hidden, 1))

    def _check_input(self, x: torch.Tensor) -> None:
        c, s = self.config.in_channels, self.config.input_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(f"ReIDNet expects frames of shape (B, {c}, {s}, {s}); got {tuple(x.shape)}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) float frames -> (B, D) float32 unit embeddings."""
        self._check_input(x)
        x = x.float()
        if self.config.mirror_invariant:
            h = self.trunk(self.stem(torch.cat([x, torch.flip(x, dims=(3,))]))).mean(dim=(2, 3))
            h = 0.5 * (h[: len(x)] + h[len(x) :])
        else:
            h = self.trunk(self.stem(x)).mean(dim=(2, 3))
        return F.normalize(self.proj(h), dim=1)

    def head_logits(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """(B, D), (B, D) embeddings -> (B,) logits of "same patient"; symmetric in (e1, e2)."""
        if e1.shape != e2.shape or e1.ndim != 2 or e1.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"head_logits expects two (B, {self.config.embed_dim}) embeddings; got {tuple(e1.shape)} and {tuple(e2.shape)}"
            )
        return self.head(torch.cat([(e1 - e2).abs(), e1 * e2], dim=1)).squeeze(1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Two (B, C, S, S) batches -> (B,) logits; both sides in one backbone pass."""
        e = self.embed(torch.cat([x1, x2]))
        return self.head_logits(e[: len(x1)], e[len(x1) :])

    def pair_proba(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """(B,) probability sigmoid(head_logits(e1, e2)) that both embeddings show one patient."""
        return torch.sigmoid(self.head_logits(e1, e2))


def load_reid(folder: str | Path) -> ReIDNet | PublishedReID:
    """Load a ``save_pretrained`` folder (config.json + safetensors) in eval mode, or a
    folder in the published EchoNet-Synthetic format (``config.json`` naming a
    ``siamese_architecture``, ``<name>_best_network.pth``): that one loads through
    :func:`echoaudit.models.published.load_published_reid` as a
    :class:`~echoaudit.models.published.PublishedReID`, which the engine uses the same way.

    Raises:
        CheckpointError: no such folder or config.json, a config with sizes out of range
            or a model too large (:func:`~echoaudit.models.limits.check_reid_config`,
            checked before anything is built), or weights that do not match the config
            (missing, unexpected or differently shaped tensors, a bad config value).
    """
    from echoaudit.models.published import is_published_reid, load_published_reid

    folder = Path(folder)
    if is_published_reid(folder):
        return load_published_reid(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a re-ID model folder: no config.json there")
    # Sizes first (echoaudit.models.limits): the model is built before its weights are read.
    check_reid_config(folder / "config.json", check_model_configs(folder, ("config.json",))["config.json"])
    try:
        model, info = ReIDNet.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False, output_loading_info=True)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"re-ID model in {folder} does not match its config or is corrupt ({exc})") from exc
    problems = [f"{k}: {', '.join(map(str, v))[:300]}" for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")
                if (v := info.get(k))]
    if problems:
        raise CheckpointError(f"re-ID model in {folder} does not match its config.json ({'; '.join(problems)})")
    return model.eval()


def reid_fingerprint(folder: str | Path) -> str:
    """sha256 of every file of a model folder (what an index built with it records)."""
    folder = Path(folder)
    if not folder.exists():
        raise CheckpointError(f"re-ID model folder {folder} does not exist")
    return model_fingerprint(folder)
