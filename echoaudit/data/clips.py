"""The clip a score is computed on.

A video's privacy score is a maximum over its query frames, so it grows with the number
of frames queried: a threshold set on 64-frame, 50 fps real clips means something else
for 32-frame, 25 fps synthetic clips. Every score that is compared with a threshold is
therefore computed on clips of one :class:`ClipSpec`: the synthetic set's frame rate and
length. Real calibration videos, benchmark copies and uploads are conformed to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from echoaudit.data.video import resample_fps

__all__ = ["ClipSpec", "conform_clip"]


@dataclass(frozen=True)
class ClipSpec:
    """fps: frame rate of the clips; frames: at most this many frames (from the start)."""

    fps: float = 25.0
    frames: int = 32

    def __post_init__(self):
        if not (np.isfinite(self.fps) and 0 < self.fps <= 500):
            raise ValueError(f"ClipSpec.fps must be in (0, 500]; got {self.fps!r}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, (int, np.integer)) or self.frames < 1:
            raise ValueError(f"ClipSpec.frames must be an int >= 1; got {self.frames!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.frames} frames at {self.fps:g} fps ({self.frames / self.fps:.2f} s)"


def conform_clip(frames: np.ndarray, fps: float, spec: ClipSpec) -> np.ndarray:
    """(T, H, W) frames at ``fps`` -> at most ``spec.frames`` frames at ``spec.fps``
    (nearest-frame resampling that keeps the duration, then the first frames)."""
    x = np.asarray(frames)
    if x.ndim != 3 or len(x) < 1:
        raise ValueError(f"frames must be (T, H, W) with T >= 1; got shape {x.shape}")
    if float(fps) != float(spec.fps):
        x = resample_fps(x, float(fps), float(spec.fps), max_frames=spec.frames)  # never more than the clip
    return x[: spec.frames]
