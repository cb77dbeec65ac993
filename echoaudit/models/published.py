"""Re-identification networks in the published EchoNet-Synthetic format.

The format (HReynaud/EchoNet-Synthetic, ``echosyn/privacy``; MischaD/UltrasoundPrivacy)::

    <name>/config.json                 siamese_architecture "ResNet-50", n_channels (4),
                                       n_features (128), image_size (14), loss, transform
                                       ("pmone"), and training keys this module ignores
    <name>/<name>_best_network.pth     a plain state dict (torch pickle format)
    <name>/<name>_checkpoint.pth       optional: {epoch, state_dict, optimizer, loss_dict,
                                       best_loss, num_bad_epochs}

The network: torchvision's ResNet-50 under ``model.`` with ``conv1`` taking ``n_channels``
and ``fc`` giving ``n_features``; features ``f = sigmoid(model(x))``; the head
``fc_end`` (1 x n_features) gives one logit from ``|f1 - f2|``. torchvision does not
import beside the CPU torch used here, so :class:`ResNet50` re-implements it with
torchvision's exact parameter and buffer names (v1.5: the stride sits on the 3x3 conv of
a bottleneck), and a state dict loads with strict key matching.

Loading (:func:`load_published_reid`) never runs code from a file: ``.pth`` files go
through ``torch.load(path, map_location="cpu", weights_only=True)`` only, and what comes
back must be a plain state dict (str -> tensor) or a checkpoint dict holding one under
``state_dict``. The config is bounded (:func:`check_published_config`, the same limits
as the project's own re-ID configs) and the model is built on the meta device first, so
nothing is allocated for a config that describes too large a model. Missing, unexpected
and mis-shaped keys, non-float or non-finite weights are named in the error.

Using it in the audit (:class:`PublishedReID`). The engine needs ``embed(latents) -> e``
and ``head_logits(e1, e2)``, and it puts ``e`` in a FAISS index that L2-normalises what
it stores and hands the *normalised* vectors back to the head (``index_vectors``). The
published head needs the raw sigmoid features, which are not unit vectors (their norm
carries information ``|f1 - f2|`` uses). So ``embed`` returns a unit vector from which
the raw features come back exactly (to float32 rounding), whatever positive factor a
normalisation applies::

    f = sigmoid features (D = n_features), m = mean(f), c = f - m, n = ||c||, u = c / n
    e = [u, b * m, b * n, b] / Z        (D + 3 values, Z makes ||e|| = 1, b = AUX_SCALE)
    decode: s = e[-1] / b, m = e[-3] / e[-1], n = e[-2] / e[-1], f = n * e[:D] / s + m

* Search: the inner product of two such vectors is ``<u1, u2>`` (the Pearson correlation
  of the raw features, the published filter's own similarity) plus terms of order
  ``b**2 = 1e-8`` (at most ~3e-7 for 128 features in (0, 1)). The FAISS shortlist (and
  the engine's ``pearson_scores``, which centres and normalises again) therefore ranks by
  the measure the published filter was validated with, and the head rescoring decides.
* Head: ``head_logits`` decodes both sides and returns ``fc_end(|f1 - f2|)``, the
  published logit. Decoding uses ratios of entries only, so the index's own
  normalisation (or any positive scaling) does not change it.
* ``features_from_embeddings`` gives the raw features back, for a published-mode scorer
  that needs the exact Pearson correlation of the 128 features.

Inputs: the published code rescales each input to [-1, 1] by its min and max ("pmone";
per video in its data set, per batch of synthetic images in ``apply.py``). ``embed``
does it per frame (``input_norm="frame"``): an embedding must not depend on what else is
in the batch. It also makes the network indifferent to the latents' scaling factor.
Set ``input_norm="none"`` to feed inputs normalised elsewhere. BatchNorm runs on its
running statistics (eval mode), so a frame embeds the same alone or in a batch.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from echoaudit.errors import CheckpointError

__all__ = [
    "ResNet50", "Bottleneck", "SiameseResNet", "PublishedReIDConfig", "PublishedReID", "AUX_SCALE",
    "BEST_SUFFIX", "CHECKPOINT_SUFFIX", "MAX_WEIGHTS_BYTES", "ARCHITECTURES", "TRANSFORMS",
    "is_published_reid", "check_published_config", "read_published_config", "find_weights", "load_state_dict_file",
    "load_published_reid", "save_published_reid", "normalize_pmone",
]

ARCHITECTURES = ("ResNet-50",)  # the only one the published code implements
TRANSFORMS = ("pmone",)  # min-max to [-1, 1], the only input transform apply.py uses
BEST_SUFFIX = "_best_network.pth"
CHECKPOINT_SUFFIX = "_checkpoint.pth"
#: Largest .pth read: a checkpoint holds the weights plus Adam's two moments (3x the
#: weights) of a model at the re-ID cap (200 M float32 parameters), plus some slack.
MAX_WEIGHTS_BYTES = 3 * 4 * 200_000_000 + 64 * 2**20
#: Scale of the three auxiliary entries of a search embedding (see the module docstring).
AUX_SCALE = 1e-4
_LAYERS = (3, 4, 6, 3)  # ResNet-50


# --------------------------------------------------------------------------- the network

class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (ResNet v1.5): 1x1, 3x3 (stride), 1x1 (x4) + skip."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision's ``resnet50`` layout and names: conv1, bn1, relu, maxpool,
    layer1-4 (Bottleneck x 3, 4, 6, 3), avgpool, fc; ``in_channels`` into conv1."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, _LAYERS[0])
        self.layer2 = self._make_layer(128, _LAYERS[1], stride=2)
        self.layer3 = self._make_layer(256, _LAYERS[2], stride=2)
        self.layer4 = self._make_layer(512, _LAYERS[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SiameseResNet(nn.Module):
    """The published ``SiameseNetwork``: ``model`` (ResNet-50) and ``fc_end``, same names."""

    def __init__(self, n_channels: int = 4, n_features: int = 128):
        super().__init__()
        self.model = ResNet50(n_channels, n_features)
        self.fc_end = nn.Linear(n_features, 1)

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, n_features) sigmoid features (no input normalisation)."""
        return torch.sigmoid(self.model(x))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """(B, 1) logits ``fc_end(|f1 - f2|)``, as the published network returns them."""
        return self.fc_end(torch.abs(self.forward_once(x1) - self.forward_once(x2)))


def normalize_pmone(x: torch.Tensor) -> torch.Tensor:
    """Each (C, S, S) item of a batch rescaled by its own min and max to [-1, 1] (the
    published "pmone" transform); a constant item becomes zeros instead of NaN."""
    x = x.float()
    flat = x.reshape(len(x), -1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (x.ndim - 1)))
    span = (flat.max(dim=1).values.view_as(lo) - lo)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (x - lo) / safe * 2 - 1, torch.zeros_like(x))


# --------------------------------------------------------------------------- the config

@dataclass(frozen=True)
class PublishedReIDConfig:
    """The keys of a published ``config.json`` the network needs; ``raw`` keeps all of them.

    ``in_channels``, ``input_size``, ``embed_dim`` and ``mirror_invariant`` mirror the
    project's ``ReIDNet.config`` for code that reads those (``embed_dim`` is the length
    of the search embedding, ``n_features + 3``)."""

    siamese_architecture: str = "ResNet-50"
    n_channels: int = 4
    n_features: int = 128
    image_size: int = 14
    loss: str | None = None
    transform: str = "pmone"
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def in_channels(self) -> int:
        return self.n_channels

    @property
    def input_size(self) -> int:
        return self.image_size

    @property
    def embed_dim(self) -> int:
        return self.n_features + 3

    @property
    def mirror_invariant(self) -> bool:
        return False

    def to_dict(self) -> dict:
        return dict(self.raw) or {"siamese_architecture": self.siamese_architecture, "n_channels": self.n_channels,
                                  "n_features": self.n_features, "image_size": self.image_size, "loss": self.loss,
                                  "transform": self.transform}


def is_published_reid(folder: str | Path) -> bool:
    """Whether ``folder`` looks like a published re-ID folder: a ``config.json`` naming a
    ``siamese_architecture``, or a ``*_best_network.pth`` / ``*_checkpoint.pth`` beside a
    config that names no diffusers ``_class_name`` (the project's configs all do) or
    beside none. Reads the config as text only (the loader checks it strictly)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    cfg, text = folder / "config.json", ""
    try:
        if cfg.is_file() and cfg.stat().st_size < 2**20:
            text = cfg.read_text("utf-8", "replace")
    except OSError:
        pass
    if '"siamese_architecture"' in text:
        return True
    if '"_class_name"' in text:
        return False
    return any(folder.glob(f"*{BEST_SUFFIX}")) or any(folder.glob(f"*{CHECKPOINT_SUFFIX}"))


def check_published_config(path: str | Path, cfg: dict) -> tuple[PublishedReIDConfig, int]:
    """Check a published re-ID ``config.json`` (already read as a dict) before anything
    is built: each size in range (the limits of :mod:`echoaudit.models.limits`), then the
    model built on the meta device and its parameters counted against the re-ID cap
    (within the per-key bounds the largest is ~45 M, so the count is a second guard).

    Returns:
        the config and the model's parameter count.
    Raises:
        CheckpointError: naming the file, the key and the value (or the count and the cap).
    """
    from echoaudit.models.limits import (
        MAX_CHANNELS,
        MAX_MODEL_PARAMETERS,
        MAX_REID_INPUT_SIZE,
        _Keys,
        meta_parameters,
    )

    path = Path(path)
    k = _Keys(path, "published re-ID", cfg)
    arch = cfg.get("siamese_architecture", "ResNet-50")
    if arch not in ARCHITECTURES:
        raise k.bad("siamese_architecture", arch, " or ".join(repr(a) for a in ARCHITECTURES)
                    + " (the only architecture of the published code)")
    k.int("n_channels", 1, MAX_CHANNELS, limit="MAX_CHANNELS")
    k.int("n_features", 1, MAX_CHANNELS, limit="MAX_CHANNELS")
    k.int("image_size", 1, MAX_REID_INPUT_SIZE, limit="MAX_REID_INPUT_SIZE")
    k.string("loss")
    transform = cfg.get("transform", "pmone")
    if transform not in TRANSFORMS:
        raise k.bad("transform", transform, " or ".join(repr(t) for t in TRANSFORMS) + " (min-max to [-1, 1])")
    config = PublishedReIDConfig(siamese_architecture=arch, n_channels=cfg.get("n_channels", 4),
                                 n_features=cfg.get("n_features", 128), image_size=cfg.get("image_size", 14),
                                 loss=cfg.get("loss"), transform=transform, raw=dict(cfg))
    n = meta_parameters(lambda: SiameseResNet(config.n_channels, config.n_features))
    limit = MAX_MODEL_PARAMETERS["reid"]
    if n > limit:
        raise CheckpointError(f"published re-ID config {str(path)!r} describes a model of {n:,} parameters "
                              f"(n_channels {config.n_channels}, n_features {config.n_features}); the limit for a "
                              f"re-ID is {limit:,} (MAX_MODEL_PARAMETERS['reid']): refused before building it")
    return config, n


def read_published_config(folder: str | Path) -> tuple[PublishedReIDConfig, int]:
    """``folder/config.json`` read strictly and checked (:func:`check_published_config`)."""
    from echoaudit.fileio import check_model_configs

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a published re-ID folder: no config.json there")
    cfg = check_model_configs(folder, ("config.json",))["config.json"]
    return check_published_config(folder / "config.json", cfg)


# --------------------------------------------------------------------------- weights

def find_weights(folder: str | Path) -> Path:
    """The weights file of a published re-ID folder: ``<name>_best_network.pth`` (name =
    the folder's name), else the only ``*_best_network.pth`` (a folder copied under
    another name), else the only ``*_checkpoint.pth`` (its ``state_dict``).

    Raises:
        CheckpointError: none, or several that leave the choice open (all named).
    """
    folder = Path(folder)
    own = folder / f"{folder.name}{BEST_SUFFIX}"
    if own.is_file():
        return own
    for suffix in (BEST_SUFFIX, CHECKPOINT_SUFFIX):
        found = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CheckpointError(f"published re-ID folder {folder} holds several *{suffix} files "
                                  f"({', '.join(p.name for p in found)}); keep one, or name it {own.name}")
    raise CheckpointError(f"published re-ID folder {folder} has no weights: expected {own.name} "
                          f"(or one *{BEST_SUFFIX} / *{CHECKPOINT_SUFFIX})")


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (since torch 1.6) or, legacy, a pickle (protocol
    >= 2 starts with 0x80); anything else is no torch file, whatever its extension."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
        return head == b"\x80" or zipfile.is_zipfile(path)
    except OSError:
        return False


def load_state_dict_file(path: str | Path, *, max_bytes: int = MAX_WEIGHTS_BYTES) -> dict[str, torch.Tensor]:
    """A ``.pth`` / ``.pt`` state dict, read with ``torch.load(weights_only=True)`` only.

    Accepted: a plain state dict (every key a str, every value a tensor) or a training
    checkpoint dict holding one under ``state_dict``. Nothing else, and nothing a file
    could make the unpickler run: ``weights_only`` refuses every class and function but
    tensors and plain containers, and that refusal is reported, never worked around.

    Raises:
        CheckpointError: naming the file: missing, too large, not a torch file, a pickle
            that would run code or build objects, or the wrong structure.
    """
    path = Path(path)
    if path.suffix not in (".pth", ".pt"):
        raise CheckpointError(f"{path}: only .pth / .pt weights are read here (got {path.suffix or 'no extension'!r})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read weights file {path} ({exc.strerror or exc})") from None
    if size > max_bytes:
        raise CheckpointError(f"weights file {path} is {size:,} bytes; at most {max_bytes:,} are read "
                              "(MAX_WEIGHTS_BYTES: a re-ID at the parameter cap, with optimizer state)")
    if not _looks_like_torch_file(path):
        raise CheckpointError(f"cannot read weights file {path}: not a torch .pth/.pt file (neither a zip archive "
                              "nor a pickle)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "Unsupported" in line or "global" in line.lower()), first[0] if first else "")
        raise CheckpointError(
            f"refused weights file {path}: it is not a plain tensor / state-dict file (torch.load with "
            f"weights_only=True rejected it: {detail[:300]}). A pickle that names other classes or functions could "
            "run code when loaded, so it is never loaded; re-save the weights with torch.save(model.state_dict())"
        ) from None
    except Exception as exc:  # a truncated zip, a foreign file: torch raises many types
        raise CheckpointError(f"cannot read weights file {path}: not a torch .pth/.pt file or corrupt "
                              f"({type(exc).__name__}: {str(exc).strip()[:300]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and not isinstance(obj["state_dict"], torch.Tensor):
        obj = obj["state_dict"]
        where = f"{path} ['state_dict']"
    else:
        where = str(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"weights file {where} holds a {type(obj).__name__}, not a state dict "
                              "(a dict of parameter names to tensors, or a checkpoint with one under 'state_dict')")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(f"{k!r} ({type(obj[k]).__name__})" for k in bad[:5])
        raise CheckpointError(f"weights file {where} is not a state dict: {len(bad)} entries are not name -> tensor, "
                              f"e.g. {shown}")
    return obj


def _check_state_dict(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str) -> dict:
    """Strict key and shape matching, dtypes and finiteness; float weights as float32."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if items:
            problems.append(f"{label} ({len(items)}): {', '.join(items[:8])}{', ...' if len(items) > 8 else ''}")
    if problems:
        hint = ""
        if unexpected and all(k.startswith("module.") for k in state):
            hint = " (every key starts with 'module.': a DataParallel state dict; save model.module.state_dict())"
        raise CheckpointError(f"weights {where} do not match the published ResNet-50 re-ID of its config.json: "
                              f"{'; '.join(problems)}{hint}")
    out = {}
    for key, ref in expected.items():
        t = state[key]
        if t.layout != torch.strided or t.is_quantized:
            raise CheckpointError(f"weights {where}: {key} is a {t.layout} / quantized tensor; a dense one is needed")
        if ref.is_floating_point():
            if not t.is_floating_point():
                raise CheckpointError(f"weights {where}: {key} is {t.dtype}; a floating-point tensor is needed")
            t = t.to(torch.float32)
            if not bool(torch.isfinite(t).all()):
                raise CheckpointError(f"weights {where}: {key} holds NaN or infinite values")
        elif t.dtype != ref.dtype:
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise CheckpointError(f"weights {where}: {key} is {t.dtype}; an integer tensor is needed")
            t = t.to(ref.dtype)
        out[key] = t.contiguous()
    return out


# --------------------------------------------------------------------------- the audit model

class PublishedReID(nn.Module):
    """A published siamese ResNet-50 behind the interface the audit engine uses
    (``embed``, ``head_logits``, ``pair_proba``, ``forward``, ``config``); see the module
    docstring for the search embedding and the input normalisation."""

    def __init__(self, config: PublishedReIDConfig, net: SiameseResNet | None = None, *, input_norm: str = "frame"):
        super().__init__()
        if input_norm not in ("frame", "none"):
            raise ValueError(f"input_norm must be 'frame' or 'none'; got {input_norm!r}")
        self.config = config
        self.net = net if net is not None else SiameseResNet(config.n_channels, config.n_features)
        self.input_norm = input_norm

    @property
    def n_features(self) -> int:
        return self.config.n_features

    def _check_input(self, x: torch.Tensor) -> None:
        c, s = self.config.n_channels, self.config.image_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(f"published re-ID expects frames of shape (B, {c}, {s}, {s}); got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) frames -> (B, n_features) sigmoid features, after the input
        normalisation (``input_norm``): what the published ``forward_once`` returns."""
        self._check_input(x)
        x = normalize_pmone(x) if self.input_norm == "frame" else x.float()
        return self.net.forward_once(x)

    @staticmethod
    def encode_features(f: torch.Tensor) -> torch.Tensor:
        """(B, D) raw features -> (B, D + 3) unit search embeddings (module docstring)."""
        f = f.double()
        m = f.mean(dim=1, keepdim=True)
        c = f - m
        n = c.norm(dim=1, keepdim=True)
        u = torch.where(n > 0, c / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(c))
        e = torch.cat([u, AUX_SCALE * m, AUX_SCALE * n, torch.full_like(m, AUX_SCALE)], dim=1)
        return F.normalize(e, dim=1).float()

    def features_from_embeddings(self, e: torch.Tensor) -> torch.Tensor:
        """(B, D + 3) search embeddings, normalised or scaled by any positive factor ->
        (B, D) float32 raw sigmoid features (exact to float32 rounding)."""
        d = self.config.n_features
        if e.ndim != 2 or e.shape[1] != d + 3:
            raise ValueError(f"published re-ID embeddings are (B, {d + 3}); got {tuple(e.shape)}")
        e = e.double()
        tail = e[:, -1:]
        if not bool((tail > 0).all()):
            raise ValueError("not published re-ID search embeddings: their last entry must be > 0")
        s = tail / AUX_SCALE
        f = e[:, d + 1 : d + 2] / tail * e[:, :d] / s + e[:, d : d + 1] / tail
        return f.float()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) latents -> (B, n_features + 3) float32 unit search embeddings."""
        return self.encode_features(self.features(x))

    def head_logits(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """(B, D + 3), (B, D + 3) search embeddings -> (B,) published logits
        ``fc_end(|f1 - f2|)``; symmetric in (e1, e2)."""
        if e1.shape != e2.shape or e1.ndim != 2:
            raise ValueError(f"head_logits expects two (B, {self.config.embed_dim}) embeddings; got "
                             f"{tuple(e1.shape)} and {tuple(e2.shape)}")
        f1, f2 = self.features_from_embeddings(e1), self.features_from_embeddings(e2)
        return self.net.fc_end(torch.abs(f1 - f2)).squeeze(1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Two (B, C, S, S) batches -> (B,) logits."""
        f = self.features(torch.cat([x1, x2]))
        return self.net.fc_end(torch.abs(f[: len(x1)] - f[len(x1) :])).squeeze(1)

    def pair_proba(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head_logits(e1, e2))


def load_published_reid(folder: str | Path, *, input_norm: str = "frame") -> PublishedReID:
    """Load a published re-ID folder (module docstring) in eval mode, strictly.

    Raises:
        CheckpointError: no config.json, a config out of range or too large (checked
            before anything is built), no weights file or several, a weights file refused
            by ``weights_only`` or of the wrong structure, missing / unexpected /
            mis-shaped keys (named), non-float or non-finite weights.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"published re-ID folder {folder} does not exist")
    config, _ = read_published_config(folder)
    path = find_weights(folder)
    state = load_state_dict_file(path)
    with torch.device("meta"):
        net = SiameseResNet(config.n_channels, config.n_features)
    state = _check_state_dict(state, net.state_dict(), str(path))
    # assign=True: the loaded tensors become the parameters; nothing is allocated twice.
    net.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"weights {path}: {', '.join(left[:8])} were not loaded")
    net.requires_grad_(False)
    return PublishedReID(config, net, input_norm=input_norm).eval()


def save_published_reid(net: SiameseResNet, folder: str | Path, name: str | None = None, *, config: dict | None = None,
                        checkpoint: bool = False) -> Path:
    """Write ``net`` in the published layout: ``folder/config.json`` and
    ``folder/<name>_best_network.pth`` (``torch.save`` of the plain state dict), or with
    ``checkpoint`` the training checkpoint ``<name>_checkpoint.pth`` instead. ``name``
    defaults to the folder's name. Returns the weights file."""
    from echoaudit.fileio import write_json

    folder = Path(folder)
    name = name or folder.name
    folder.mkdir(parents=True, exist_ok=True)
    n_channels = net.model.conv1.in_channels
    n_features = net.model.fc.out_features
    cfg = {"experiment_description": name, "siamese_architecture": "ResNet-50", "n_channels": n_channels,
           "n_features": n_features, "image_size": 14, "loss": "BCEWithLogitsLoss", "transform": "pmone",
           **(config or {})}
    write_json(folder / "config.json", cfg)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    if checkpoint:
        path = folder / f"{name}{CHECKPOINT_SUFFIX}"
        torch.save({"epoch": 0, "state_dict": state, "optimizer": {"state": {}, "param_groups": []},
                    "loss_dict": {"train": [], "val": []}, "best_loss": math.inf, "num_bad_epochs": 0}, path)
    else:
        path = folder / f"{name}{BEST_SUFFIX}"
        torch.save(state, path)
    return path


def describe(folder: str | Path) -> dict:
    """What ``models inspect`` prints for a published re-ID folder (loads it)."""
    from echoaudit.fileio import model_fingerprint

    folder = Path(folder)
    model = load_published_reid(folder)
    path = find_weights(folder)
    return {"kind": "re-ID", "format": "published (EchoNet-Synthetic SiameseNetwork, ResNet-50)",
            "weights": path.name, "weights_bytes": path.stat().st_size,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "config": model.config.to_dict(), "fingerprint": model_fingerprint(folder)}
