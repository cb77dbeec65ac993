"""Planted copies: training videos altered the way a leaking generator would alter them.

Used to check an audit end to end: every planted copy should be flagged at the
calibrated threshold, and matched to the patient it was copied from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import shift as nd_shift

__all__ = ["COPY_KINDS", "plant_copy", "planted_copies"]

COPY_KINDS = ("noise", "brightness", "shift", "crop", "reencode")


def plant_copy(frames: np.ndarray, kind: str, rng: np.random.Generator, *, fps: float = 50.0) -> np.ndarray:
    """One altered copy of (T, H, W) frames in [0, 1].

    noise: Gaussian noise (std 0.03); brightness: 0.9 x + 0.05; shift: (3, -2) px at 112
    (scaled with the frame size); crop: the middle ~60 % of the frames (a temporal crop);
    reencode: a round trip through H.264.
    """
    from echoaudit.data.video import load_video, write_video

    if kind not in COPY_KINDS:
        raise ValueError(f"kind must be one of {', '.join(COPY_KINDS)}; got {kind!r}")
    x = np.asarray(frames, dtype=np.float32)
    if kind == "noise":
        x = x + rng.normal(0, 0.03, x.shape)
    elif kind == "brightness":
        x = 0.9 * x + 0.05
    elif kind == "shift":
        s = x.shape[-1] / 112
        x = nd_shift(x, (0, 3 * s, -2 * s), order=1)
    elif kind == "crop":
        t = len(x)
        x = x[t // 5 : t // 5 + max(2, int(0.6 * t))]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            x = load_video(write_video(Path(tmp) / "copy.mp4", x, fps)).frames
    return np.clip(x, 0, 1).astype(np.float32)


def planted_copies(dataset, *, size: int, seed: int = 0, kinds=COPY_KINDS, limit: int | None = None,
                   every_kind: bool = False):
    """[(copy name, source video, frames)]: one copy per video cycling through ``kinds``,
    or (``every_kind``) one copy of each kind per video, a balanced design."""
    rng = np.random.default_rng(seed)
    out = []
    for i, name in enumerate(dataset.names[:limit]):
        frames = dataset.load(i, size=size).frames
        for kind in (kinds if every_kind else [kinds[i % len(kinds)]]):
            out.append((f"copy_{kind}_{name}", name, plant_copy(frames, kind, rng)))
    return out
