"""Video IO: read .avi / .mp4 / .gif / .npy into one array layout, write them back.

Every video inside EchoAudit is a :class:`Video`: ``frames`` of shape (T, H, W), float32
gray in [0, 1], and its frame rate. :func:`load_video` reads a path or the bytes of an
upload, checks it (size limits before decoding, truncation, frame count, values) and
optionally resamples it in time and space; :func:`write_video` writes atomically and
deterministically (same frames -> same bytes).

AVI/MP4 decode in-process with PyAV (FFmpeg's libraries; ~3x less CPU than piping frames
out of an ffmpeg process, and frames can be skipped undecoded); encoding runs imageio-ffmpeg's
bundled ffmpeg binary directly (so that its exit status is checked, see ``_write_ffmpeg``);
GIF goes through Pillow so that per-frame delays can be read and written.

The container is recognised from the file's first bytes, not from its name: the extension
(or ``extension=`` for bytes) must be one of :data:`READ_EXTENSIONS`, and content that is
no known container is rejected as "not a video".

Hostile input (uploads are untrusted): the byte size is checked first, then what the
container's header claims (frame size, frame count, frame rate, the .npy shape and dtype)
against :class:`VideoLimits`, all before a frame is decoded; while decoding, every frame
must keep the first frame's size (a size that changes mid-stream means a corrupt file).
Every failure is a :class:`~echoaudit.errors.VideoError` that names the file or upload;
nothing is unpickled (.npy is read with ``allow_pickle=False``).
"""

from __future__ import annotations

import io
import math
import os
import struct
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from echoaudit.errors import VideoError
from echoaudit.fileio import atomic_path

__all__ = [
    "Video",
    "VideoLimits",
    "DEFAULT_FPS",
    "MAX_BYTES",
    "MAX_FRAMES",
    "MAX_SIDE",
    "MAX_PIXELS",
    "FPS_RANGE",
    "READ_EXTENSIONS",
    "WRITE_CODECS",
    "load_video",
    "write_video",
    "video_to_mp4_bytes",
    "montage_png",
    "resize_frames",
    "resample_indices",
    "resample_fps",
    "to_gray",
    "to_uint8",
    "sniff_container",
]

#: Frame rate given to .npy arrays (which carry none) when the caller passes no ``fps``;
#: 50 fps is the usual rate of EchoNet-Dynamic videos.
DEFAULT_FPS = 50.0

READ_EXTENSIONS = (".avi", ".gif", ".mp4", ".npy")

# Default limits of load_video (the fields of VideoLimits; pass limits=VideoLimits(...) to
# change them). An EchoNet clip is 112x112 gray, at most ~1000 frames and a few MB.
#: Bytes of a file or upload, checked before anything else.
MAX_BYTES = 200 * 2**20
#: Frames in the source, and after resampling to another frame rate.
MAX_FRAMES = 2000
#: Frame height and width in pixels.
MAX_SIDE = 1024
#: Decoded samples T x H x W (2**28: 1 GiB as float32), so that frame count and frame
#: size at their separate limits cannot multiply into tens of GB.
MAX_PIXELS = 2**28
#: Frame rates (fps) a video may declare: ultrasound runs at 15-100 fps, research
#: high-frame-rate echo up to ~1000; a rate outside is a broken header, and resampling
#: from it would multiply or drop frames by the same absurd factor.
FPS_RANGE = (1.0, 1000.0)

#: Codecs ``write_video`` accepts per extension; the first one is the default.
#: mjpeg at -q:v 2 is near-lossless on echo frames (> 45 dB); ffv1/rawvideo are lossless.
WRITE_CODECS: dict[str, tuple[str, ...]] = {
    ".avi": ("mjpeg", "ffv1", "rawvideo", "libx264"),
    ".mp4": ("libx264",),
    ".gif": (),
    ".npy": (),
}

# Output pixel format and codec flags. yuvj420p is full-range, so a gray frame's values
# land in the Y plane unchanged; yuv420p is what browsers decode for H.264.
_CODEC_PARAMS: dict[str, tuple[str, list[str]]] = {
    "mjpeg": ("yuvj420p", ["-q:v", "2"]),
    "ffv1": ("gray", []),
    "rawvideo": ("gray", []),
    "libx264": ("yuv420p", ["-crf", "18", "-preset", "medium"]),
}
# One thread and bitexact flags: same frames -> same bytes (with the same ffmpeg build),
# and no encoder version string in the file.
_DETERMINISTIC = ["-threads", "1", "-flags:v", "+bitexact", "-fflags", "+bitexact"]

# ITU-R BT.601 luma weights.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# GIF delays count as this when a frame has none (0): what browsers show.
_GIF_DEFAULT_DELAY_MS = 100


@dataclass(frozen=True)
class Video:
    """A decoded video.

    Attributes:
        frames: (T, H, W) float32, gray in [0, 1].
        fps: frames per second (> 0).
    """

    frames: np.ndarray
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Seconds: T / fps."""
        return self.num_frames / self.fps


@dataclass(frozen=True)
class VideoLimits:
    """What :func:`load_video` accepts; anything beyond raises :class:`VideoError`.

    Defaults are the module constants :data:`MAX_BYTES` (200 MiB), :data:`MAX_FRAMES`
    (2000), :data:`MAX_SIDE` (1024), :data:`MAX_PIXELS` (2**28) and :data:`FPS_RANGE`
    ([1, 1000] fps).

    Attributes:
        max_bytes: size of the file / upload, checked before decoding.
        max_frames: frames in the source (before resampling; checked against the header's
            frame count before decoding where the container has one), and after
            resampling to the ``fps`` asked for.
        max_side: frame height and width in pixels (before resizing).
        min_frames: fewest frames a source must have (a single image is no video).
        max_pixels: T x H x W of the decoded frames (before resizing).
        min_fps, max_fps: frame rates a video may declare (AVI/MP4 header, GIF delays).
    """

    max_bytes: int = MAX_BYTES
    max_frames: int = MAX_FRAMES
    max_side: int = MAX_SIDE
    min_frames: int = 2
    max_pixels: int = MAX_PIXELS
    min_fps: float = FPS_RANGE[0]
    max_fps: float = FPS_RANGE[1]

    def __post_init__(self):
        for name in ("max_bytes", "max_frames", "max_side", "min_frames", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VideoLimits.{name} must be a positive int; got {value!r}")
        lo, hi = self.min_fps, self.max_fps
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi < math.inf):
            raise ValueError(f"VideoLimits.min_fps / max_fps must satisfy 0 < min_fps <= max_fps < inf; got {lo!r}, {hi!r}")


# ---------------------------------------------------------------------------------------
# array helpers


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """uint8 copy of frames: uint8 passes through, float in [0, 1] -> round(255 x).

    Floats are clipped to [0, 1] first (decoders overshoot slightly); NaN/inf raise.
    Shape is kept.

    Raises:
        VideoError: non-finite floats or a dtype other than uint8 / float.
    """
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise VideoError(f"frames must be uint8 or float in [0, 1]; got dtype {frames.dtype}")
    _check_finite(frames)
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) or (T, H, W, C) uint8 / float in [0, 1] -> (T, H, W) float32 in [0, 1].

    C = 1: that channel. C = 3 or 4 (alpha ignored): the first channel when R = G = B
    everywhere (gray stored as color, as in EchoNet AVIs: exact), otherwise ITU-R BT.601
    luma Y = 0.299 R + 0.587 G + 0.114 B.
    """
    frames = np.asarray(frames)
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    if frames.ndim == 4:
        if frames.shape[-1] == 1:
            frames = frames[..., 0]
        else:
            rgb = frames[..., :3]
            if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
                frames = rgb[..., 0]
            else:
                frames = rgb.astype(np.float32) @ _LUMA
    # Divide (not multiply by 1/255): uint8 v -> the float32 nearest v/255, exactly.
    out = frames.astype(np.float32) / np.float32(scale)
    # Luma of values in [0, 1] can exceed 1 by a rounding error.
    return np.clip(out, 0.0, 1.0, out=out)


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize every frame to ``size`` = (H, W) (an int means square).

    Bilinear with antialiasing (torch ``interpolate(..., antialias=True)``, which matches
    Pillow's BILINEAR resize): shrinking averages over the footprint of each output pixel
    instead of skipping pixels, so speckle does not alias.

    Args:
        frames: (T, H, W) uint8 or float in [0, 1].
    Returns:
        (T, H', W') float32 in [0, 1].
    """
    out_hw = _check_size(size)
    frames = to_gray(_check_frames(frames))
    if frames.shape[1:] == out_hw:
        return frames
    import torch  # deferred: reading a video should not pay for importing torch

    x = torch.from_numpy(np.ascontiguousarray(frames))[:, None]
    y = torch.nn.functional.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return y[:, 0].clamp_(0.0, 1.0).numpy()


def resampled_length(num_frames: int, fps_in: float, fps_out: float) -> int:
    """n_out = max(1, floor(T * fps_out / fps_in)): frames after :func:`resample_indices`."""
    # The epsilon keeps exact ratios (3 * 50/30 = 5.0) from rounding down to 4.
    return max(1, math.floor(num_frames * fps_out / fps_in + 1e-9))


def resample_indices(num_frames: int, fps_in: float, fps_out: float, max_frames: int | None = None) -> np.ndarray:
    """Source frame index for each output frame when changing the frame rate.

    Output frame j shows the source frame on screen at time t_j = j / fps_out
    (sample and hold, no blending):

        n_out = max(1, floor(T * fps_out / fps_in))
        idx_j = min(T - 1, floor(j * fps_in / fps_out))

    so halving the rate keeps frames 0, 2, 4, ... (EchoNet's ``frames[::2]``) and doubling
    it shows every frame twice. The duration T / fps_in is kept (up to one output frame).

    Args:
        max_frames: compute only the first ``min(n_out, max_frames)`` indices (a clip of
            the first frames costs no more when the rate ratio is large).

    Returns:
        (min(n_out, max_frames),) int64 indices into the source frames.
    """
    fps_in, fps_out = _check_fps(fps_in), _check_fps(fps_out)
    if num_frames < 1:
        raise VideoError(f"cannot resample {num_frames} frames; need at least 1")
    n_out = resampled_length(num_frames, fps_in, fps_out)
    if max_frames is not None:
        n_out = min(n_out, max(1, int(max_frames)))
    idx = np.floor(np.arange(n_out) * (fps_in / fps_out) + 1e-9).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def resample_fps(frames: np.ndarray, fps_in: float, fps_out: float, max_frames: int | None = None) -> np.ndarray:
    """Change the frame rate of (T, ...) frames by picking frames: ``frames[resample_indices(...)]``
    (only the first ``max_frames`` output frames when given)."""
    frames = np.asarray(frames)
    return frames[resample_indices(frames.shape[0], fps_in, fps_out, max_frames)]


# ---------------------------------------------------------------------------------------
# reading


def load_video(
    source: str | os.PathLike | bytes,
    *,
    extension: str | None = None,
    size: int | tuple[int, int] | None = None,
    fps: float | None = None,
    num_frames: int | None = None,
    frame_step: int = 1,
    limits: VideoLimits = VideoLimits(),
) -> Video:
    """Read a video file or upload as gray float frames.

    Steps, in order: check the byte size; recognise the container from its first bytes;
    decode (frame size and count checked against ``limits`` before / while decoding);
    convert to gray (:func:`to_gray`); resample to ``fps``; keep the first ``num_frames``;
    resize to ``size``.

    Args:
        source: a path, or the bytes of a file (an upload).
        extension: the type, e.g. ".avi"; required for bytes, overrides a path's suffix.
            One of :data:`READ_EXTENSIONS`.
        size: (H, W) of the returned frames (int: square); None keeps the source size.
        fps: frame rate of the result. Videos with a frame rate (AVI/MP4 metadata, GIF
            delays) are resampled to it (:func:`resample_indices`); a .npy array has none,
            so ``fps`` is taken as its rate (default :data:`DEFAULT_FPS`).
        num_frames: keep the first N frames after resampling.
        frame_step: keep frames 0, k, 2k, ... (after resampling; before ``num_frames``)
            and report fps / k. AVI/MP4 with an intra-only codec (EchoNet's MJPEG) then
            skip decoding the other frames: ~8x less work for k = 8.
        limits: size limits, see :class:`VideoLimits` (defaults: :data:`MAX_BYTES`,
            :data:`MAX_FRAMES`, :data:`MAX_SIDE`, :data:`MAX_PIXELS`, :data:`FPS_RANGE`).

    Returns:
        Video with frames (T, H, W) float32 in [0, 1].

    GIF delays are 1/100 s steps; frames of unequal delay are expanded to the shortest
    delay (an encoder that merged repeated frames gets them back).

    Raises:
        VideoError: missing or unreadable file; bytes without ``extension``; unsupported
            extension; over a limit (bytes, frames, side, pixels, also after resampling);
            not a video; truncated or corrupt; frames whose size changes mid-stream; no
            or an implausible frame rate; zero frames; fewer than ``limits.min_frames``
            frames; .npy with a wrong shape, dtype (object arrays included), NaN/inf or
            values outside [0, 1]; fewer than ``num_frames`` frames after resampling.
    """
    if not isinstance(limits, VideoLimits):
        raise VideoError(f"limits must be a VideoLimits; got {type(limits).__name__}")
    if fps is not None:
        fps = _check_fps(fps)
    out_hw = _check_size(size) if size is not None else None
    if num_frames is not None and (not isinstance(num_frames, (int, np.integer)) or num_frames < 1):
        raise VideoError(f"num_frames must be a positive int or None; got {num_frames!r}")
    if isinstance(frame_step, bool) or not isinstance(frame_step, (int, np.integer)) or frame_step < 1:
        raise VideoError(f"frame_step must be a positive int; got {frame_step!r}")

    name, path, data, ext = _open_source(source, extension, limits)
    head = data[:4096] if data is not None else _read_head(path, 4096)
    kind = _sniff(head)
    if kind is None:
        raise VideoError(
            f"{name} is not a video: its content starts with {head[:16]!r}, which is no AVI (RIFF..AVI), "
            "MP4 (..ftyp), GIF (GIF8) or NumPy (\\x93NUMPY) header"
        )

    if kind == "npy":
        frames, native_fps = _read_npy(path, data, name, limits), None
    elif kind == "gif":
        frames, native_fps = _read_gif(path, data, name, limits)
    else:
        frames, native_fps, done = _read_av(path, data, kind, head, name, limits, frame_step, fps)

    if native_fps is None:
        out_fps = fps if fps is not None else DEFAULT_FPS
    else:
        out_fps = native_fps
        if fps is not None and not math.isclose(fps, native_fps, rel_tol=1e-6):
            n_out = resampled_length(len(frames), native_fps, fps)
            if n_out > limits.max_frames or n_out * frames.shape[1] * frames.shape[2] > limits.max_pixels:
                raise VideoError(
                    f"{name}: {len(frames)} frames at {native_fps:g} fps become {n_out} frames of "
                    f"{frames.shape[1]}x{frames.shape[2]} at {fps:g} fps; the limits are {limits.max_frames} "
                    f"frames and {limits.max_pixels} pixels (VideoLimits.max_frames / max_pixels)"
                )
            frames, out_fps = resample_fps(frames, native_fps, fps), fps
    if frame_step > 1:
        if kind not in ("avi", "mp4") or done == 1:
            frames = frames[::frame_step]
        out_fps = out_fps / frame_step

    if num_frames is not None:
        if frames.shape[0] < num_frames:
            raise VideoError(
                f"{name}: asked for {num_frames} frames at {out_fps:g} fps, but it has only "
                f"{frames.shape[0]} ({frames.shape[0] / out_fps:.2f} s)"
            )
        frames = frames[:num_frames]
    if out_hw is not None:
        frames = resize_frames(frames, out_hw)
    return Video(frames=np.ascontiguousarray(frames, dtype=np.float32), fps=float(out_fps))


def _open_source(source, extension, limits):
    """-> (name for messages, path or None, bytes or None, extension)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if extension is None:
            raise VideoError(
                f"reading {len(data)} bytes needs extension= (one of {', '.join(READ_EXTENSIONS)})"
            )
        ext = _norm_ext(extension)
        name = f"uploaded {ext} ({len(data)} bytes)"
        nbytes, path = len(data), None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = f"'{path}'"
        ext = _norm_ext(extension if extension is not None else path.suffix)
        try:
            if not path.exists():
                raise VideoError(f"video file not found: {name}")
            if path.is_dir():
                raise VideoError(f"{name} is a folder, not a video file")
            if not path.is_file():  # a device or pipe: reading it might never end
                raise VideoError(f"{name} is not a regular file (a device, pipe or socket), not a video file")
            nbytes, data = path.stat().st_size, None
        except OSError as e:
            raise VideoError(f"cannot read {name} ({e.strerror or e})") from e
    else:
        raise VideoError(f"source must be a path or bytes; got {type(source).__name__}")
    if nbytes > limits.max_bytes:
        raise VideoError(
            f"{name} is {nbytes / 2**20:.1f} MiB ({nbytes} bytes); the limit is "
            f"{limits.max_bytes} bytes (VideoLimits.max_bytes)"
        )
    if nbytes == 0:
        raise VideoError(f"{name} is empty (0 bytes), not a video")
    return name, path, data, ext


def _norm_ext(extension: str) -> str:
    ext = str(extension).lower()
    if ext and not ext.startswith("."):
        ext = "." + ext
    if ext not in READ_EXTENSIONS:
        raise VideoError(f"unsupported video extension {extension!r}; allowed: {', '.join(READ_EXTENSIONS)}")
    return ext


def _read_head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:  # permission denied, a file removed meanwhile, an I/O error
        raise VideoError(f"cannot read '{path}' ({e.strerror or e})") from e


def sniff_container(head: bytes) -> str | None:
    """Container of a file from its first (at least 12) bytes: 'avi', 'mp4', 'gif', 'npy'
    or None for anything else. Reads no more than the bytes given."""
    return _sniff(bytes(head))


def _sniff(head: bytes) -> str | None:
    """Container from the first bytes: 'avi', 'mp4', 'gif', 'npy' or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    return None


def _check_frame_count(n: int, name: str, limits: VideoLimits) -> None:
    if n == 0:
        raise VideoError(f"{name} contains zero frames")
    if n < limits.min_frames:
        raise VideoError(f"{name} has {n} frame(s); need at least {limits.min_frames} frames")
    if n > limits.max_frames:
        raise VideoError(f"{name} has {n} frames; the limit is {limits.max_frames} (VideoLimits.max_frames)")


def _check_sides(h: int, w: int, name: str, limits: VideoLimits) -> None:
    if h < 1 or w < 1:
        raise VideoError(f"{name} has frames of {h}x{w} pixels; need at least 1x1")
    if max(h, w) > limits.max_side:
        raise VideoError(
            f"{name} has frames of {h}x{w} (HxW) pixels; the limit is {limits.max_side} "
            "per side (VideoLimits.max_side)"
        )


def _check_pixels(n: int, h: int, w: int, name: str, limits: VideoLimits, about: str = "") -> None:
    if n * h * w > limits.max_pixels:
        raise VideoError(
            f"{name} has {about}{n} frames of {h}x{w} (HxW) = {n * h * w} pixels; the limit is "
            f"{limits.max_pixels} (VideoLimits.max_pixels): shorten or downsize it"
        )


def _check_native_fps(fps: float | None, name: str, limits: VideoLimits, source: str) -> float:
    if fps is None or not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"{name} has no valid frame rate ({source} gives {fps!r}): the header is corrupt")
    if not limits.min_fps <= fps <= limits.max_fps:
        raise VideoError(
            f"{name} declares {fps:g} fps ({source}); allowed: {limits.min_fps:g} to {limits.max_fps:g} fps "
            "(VideoLimits.min_fps / max_fps)"
        )
    return fps


def _size_changed(i: int, hw: tuple[int, int], first: tuple[int, int], name: str) -> VideoError:
    return VideoError(
        f"{name}: frame {i} is {hw[0]}x{hw[1]} (HxW) pixels but frame 0 is {first[0]}x{first[1]}: "
        "the frame size changes mid-stream, so the file is corrupt"
    )


def _avi_header(head: bytes) -> tuple[int, int | None]:
    """(file size the RIFF header declares, dwTotalFrames of 'avih' or None)."""
    declared = struct.unpack_from("<I", head, 4)[0] + 8
    i = head.find(b"avih")
    total = struct.unpack_from("<I", head, i + 24)[0] if 0 <= i and i + 28 <= len(head) else None
    return declared, total


def _mp4_end(f, size: int) -> int:
    """Where the last top-level ISO-BMFF box says it ends (each box: 32-bit size, type).

    With the index (moov) written first, ffmpeg decodes a cut-off MP4 up to the cut
    without complaint; the box sizes tell that bytes are missing.
    """
    pos, boxes = 0, 0
    while pos + 8 <= size:
        boxes += 1
        if boxes > 100_000:  # real files have a handful; do not walk millions of tiny boxes
            return pos
        f.seek(pos)
        header = f.read(16)
        n = struct.unpack_from(">I", header)[0]
        if n == 1 and len(header) == 16:  # 64-bit size follows the type
            n = struct.unpack_from(">Q", header, 8)[0]
        elif n == 0:  # the box runs to the end of the file
            return size
        if n < 8:
            return pos  # not a box: leave the verdict to ffmpeg
        pos += n
    return pos


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _read_av(path, data, kind, head, name, limits, step: int = 1,
             want_fps: float | None = None) -> tuple[np.ndarray, float, int]:
    """Decode an AVI / MP4 in-process with PyAV (FFmpeg's libraries).

    Returns (frames (T', H, W) float32, native fps, the step applied): frames 0, step,
    2*step, ... when a step could be applied while decoding (no resampling to another
    frame rate asked for), else every frame (step 1). With an intra-only codec (MJPEG,
    FFV1, raw: EchoNet AVIs) the skipped frames are demuxed but never decoded.

    Before the first frame is decoded: the byte length the header declares, the frame
    size, the frame count (AVI header, stream index or duration x rate), the frame rate
    and the pixel budget are checked; the decoder itself refuses frames over
    ``max_side**2`` pixels. While decoding, every frame must keep frame 0's size.
    """
    import av

    label = kind.upper()
    total = None
    actual = len(data) if data is not None else path.stat().st_size
    if kind == "avi":
        declared, total = _avi_header(head)
        # A RIFF file states its own length: fewer bytes on disk means it was cut short.
        # (Larger is fine: OpenDML AVIs over 1 GB continue in further RIFF chunks.)
        if actual < declared:
            raise VideoError(
                f"{name}: truncated or corrupt AVI file: its header declares {declared} bytes, "
                f"it has {actual}"
            )
        if total is not None and total > limits.max_frames:
            raise VideoError(
                f"{name}: its AVI header lists {total} frames; the limit is {limits.max_frames} "
                "(VideoLimits.max_frames)"
            )
    if kind == "mp4":
        try:
            with io.BytesIO(data) if data is not None else open(path, "rb") as f:
                declared = _mp4_end(f, actual)
        except OSError as e:
            raise VideoError(f"cannot read {name} ({e.strerror or e})") from e
        if declared > actual:
            raise VideoError(
                f"{name}: truncated or corrupt MP4 file: its boxes declare {declared} bytes, it has {actual}"
            )
    frames: list[np.ndarray] = []
    n = 0  # frames in the file (decoded or skipped)
    first_hw = None
    try:
        with av.open(io.BytesIO(data) if data is not None else str(path), mode="r") as container:
            if not container.streams.video:
                raise VideoError(f"{name} contains no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            h, w = int(ctx.height or 0), int(ctx.width or 0)
            _check_sides(h, w, name, limits)
            rate = stream.average_rate or stream.guessed_rate
            fps = _check_native_fps(float(rate) if rate else None, name, limits, f"the {label} header")
            duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                        else (container.duration / 1e6 if container.duration else None))
            # Estimate first so that a 10-hour file is refused before it is decoded.
            if duration and math.isfinite(duration) and duration * fps > limits.max_frames + 1:
                raise VideoError(
                    f"{name} has about {duration * fps:.0f} frames ({duration:.1f} s at {fps:g} fps); "
                    f"the limit is {limits.max_frames} (VideoLimits.max_frames)"
                )
            listed = max(int(stream.frames or 0), int(total or 0))
            if listed > limits.max_frames:
                raise VideoError(
                    f"{name}: its {label} index lists {listed} frames; the limit is {limits.max_frames} "
                    "(VideoLimits.max_frames)"
                )
            _check_pixels(listed, h, w, name, limits)
            # The decoder refuses any frame over the side limit squared before allocating it,
            # whatever size a corrupt frame header claims.
            ctx.options = {**ctx.options, "max_pixels": str(limits.max_side**2)}
            if want_fps is not None and not math.isclose(want_fps, fps, rel_tol=1e-6):
                step = 1  # resampling in time needs every frame
            for item in _decoded(container, stream, step):
                if n >= limits.max_frames:
                    raise VideoError(f"{name} has more than {limits.max_frames} frames (VideoLimits.max_frames)")
                if item is not None:
                    hw = (int(item.height), int(item.width))
                    if first_hw is None:
                        _check_sides(*hw, name, limits)
                        first_hw = hw
                    elif hw != first_hw:
                        raise _size_changed(n, hw, first_hw, name)
                    _check_pixels(len(frames) + 1, *hw, name, limits, about="at least ")
                if n % step == 0:
                    # rgb24 then to_gray: gray stored as color (EchoNet) comes back exactly,
                    # color video gets BT.601 luma, as for every other reader here.
                    frames.append(to_gray(item.to_ndarray(format="rgb24")[None])[0])
                n += 1
    except VideoError:
        raise
    except MemoryError as e:
        raise VideoError(f"{name}: not enough memory to decode it (frames of {first_hw} pixels)") from e
    except Exception as e:  # PyAV reports bad input as av.error.* (InvalidDataError, ...)
        if total == 0:
            raise VideoError(f"{name} contains zero frames") from e
        raise VideoError(
            f"{name}: truncated or corrupt {label} file; ffmpeg could not decode it ({_last_line(e)})"
        ) from e
    if total and n < total:
        raise VideoError(
            f"{name}: truncated or corrupt AVI file: its header lists {total} frames, "
            f"only {n} could be decoded"
        )
    _check_frame_count(n, name, limits)
    if not frames:  # frames counted by the demuxer, none of them decodable
        raise VideoError(f"{name}: truncated or corrupt {label} file; none of its {n} frames could be decoded")
    return np.stack(frames), fps, step


def _decoded(container, stream, step: int):
    """The video's frames in order; with step > 1 and an intra-only codec, the frames
    between every step-th one come as None (demuxed, counted, never decoded)."""
    if step > 1 and stream.codec_context.codec.intra_only:
        stream.thread_type = "NONE"  # one small frame at a time: threads only add overhead
        i = 0
        for packet in container.demux(stream):
            if not packet.size:  # the end-of-stream marker
                continue
            if i % step:
                yield None
            else:
                yield from packet.decode()
            i += 1
    else:
        yield from container.decode(stream)


def _read_gif(path, data, name, limits) -> tuple[np.ndarray, float]:
    from PIL import Image

    frames, delays = [], []
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            w, h = im.size
            _check_sides(h, w, name, limits)
            n = im.n_frames  # walks the frame headers; nothing is decoded yet
            if n > limits.max_frames:
                _check_frame_count(n, name, limits)
            _check_pixels(n, h, w, name, limits)
            for i in range(n):
                im.seek(i)
                # Pillow grows the canvas when a frame reaches past the GIF's logical screen;
                # seek only reads the frame's header, so this is checked before decoding it.
                if im.size != (w, h):
                    raise _size_changed(i, im.size[::-1], (h, w), name)
                delays.append(im.info.get("duration") or _GIF_DEFAULT_DELAY_MS)
                frame = np.asarray(im.convert("RGB"))
                if frame.shape[:2] != (h, w):
                    raise _size_changed(i, frame.shape[:2], (h, w), name)
                frames.append(to_gray(frame[None])[0])
    except VideoError:
        raise
    except Image.DecompressionBombError as e:
        raise VideoError(f"{name}: GIF canvas too large ({_last_line(e)}); the limit is {limits.max_side} per side") from e
    except Exception as e:  # Pillow: OSError "image file is truncated", EOFError, SyntaxError
        raise VideoError(f"{name}: truncated or corrupt GIF file ({_last_line(e)})") from e
    _check_frame_count(len(frames), name, limits)
    stack = np.stack(frames)
    delays = np.asarray(delays, dtype=np.float64)
    step = float(delays.min())
    fps = _check_native_fps(1000.0 / step, name, limits, f"its shortest frame delay of {step:g} ms")
    if not np.all(delays == step):
        # Frame i is on screen during [start_i, start_i + delay_i): sample every `step` ms.
        ends = np.cumsum(delays)
        n_out = int(round(ends[-1] / step))
        if n_out > limits.max_frames or n_out * h * w > limits.max_pixels:
            raise VideoError(
                f"{name} has {len(stack)} frames with delays of {step:g} to {delays.max():g} ms, "
                f"{n_out} at a constant {1000 / step:g} fps; the limits are {limits.max_frames} frames "
                f"and {limits.max_pixels} pixels (VideoLimits.max_frames / max_pixels)"
            )
        t = np.arange(n_out) * step
        stack = stack[np.minimum(np.searchsorted(ends, t, side="right"), len(stack) - 1)]
    return stack, fps


def _npy_header(f, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, file size they need) from a .npy header; no data is read."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as e:  # ValueError (bad magic, bad header dict, pickled dtype), EOFError
        raise VideoError(f"{name}: truncated or corrupt .npy file, or not a plain array ({_last_line(e)})") from e
    if dtype.hasobject:
        raise VideoError(f"{name}: dtype {dtype} holds Python objects, which are never unpickled; "
                         "allowed: uint8, or float with values in [0, 1]")
    return tuple(shape), dtype, f.tell() + math.prod(shape) * dtype.itemsize


def _read_npy(path, data, name, limits) -> np.ndarray:
    nbytes = len(data) if data is not None else path.stat().st_size
    try:
        with io.BytesIO(data) if data is not None else open(path, "rb") as f:
            shape, dtype, need = _npy_header(f, name)
    except OSError as e:
        raise VideoError(f"cannot read {name} ({e.strerror or e})") from e
    # Shape and dtype are checked before any data is read or memory is reserved for it.
    if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3, 4))):
        raise VideoError(
            f"{name}: array of shape {shape} (ndim {len(shape)}); expected (T, H, W) "
            "or (T, H, W, C) with C in 1, 3, 4"
        )
    if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        raise VideoError(f"{name}: dtype {dtype}; allowed: uint8, or float with values in [0, 1]")
    _check_frame_count(shape[0], name, limits)
    _check_sides(shape[1], shape[2], name, limits)
    _check_pixels(shape[0], shape[1], shape[2], name, limits)
    if nbytes < need:
        raise VideoError(f"{name}: truncated or corrupt .npy file: its header declares {need} bytes, it has {nbytes}")
    try:
        if data is not None:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            # Memory-mapped: the file is read as the checks below touch it.
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        arr = np.asarray(arr)
    except Exception as e:  # ValueError (short data), EOFError, OSError
        raise VideoError(f"{name}: truncated or corrupt .npy file, or not a plain array ({_last_line(e)})") from e
    if arr.shape != shape or arr.dtype != dtype:  # cannot happen for a file np.load agrees with
        raise VideoError(f"{name}: corrupt .npy file (header says {shape} {dtype}, data is {arr.shape} {arr.dtype})")
    if arr.dtype != np.uint8:
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise VideoError(f"{name} contains {bad} NaN/inf values; only finite values in [0, 1] are allowed")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise VideoError(f"{name} has float values in [{lo:g}, {hi:g}]; float arrays must lie in [0, 1]")
    return to_gray(arr)


# ---------------------------------------------------------------------------------------
# writing


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, *, codec: str | None = None
) -> Path:
    """Write (T, H, W) gray frames (uint8, or float in [0, 1], clipped) atomically.

    By extension:
      .avi  MJPEG at -q:v 2 (yuvj420p, full range), or ``codec`` in :data:`WRITE_CODECS`
            (ffv1 / rawvideo store gray losslessly);
      .mp4  H.264 (libx264, crf 18, yuv420p, +faststart: plays in Chromium); H and W
            must be even;
      .gif  Pillow, gray palette (lossless for uint8); delays are 1/100 s steps, so the
            stored rate is 100 / max(2, round(100 / fps)) (50 -> 50, 30 -> 33.3; at most 50).
            Pillow merges identical consecutive frames into one longer delay; load_video
            expands them again (only a video of one repeated frame comes back as 1 frame);
      .npy  the array (uint8 as is, float as float32); the frame rate is not stored.
    Encoding uses one thread and ffmpeg's bitexact flags: same frames -> same bytes.
    The frame size is kept as it is (no rounding up to multiples of 16).

    Returns:
        the path written.
    Raises:
        VideoError: wrong shape or dtype, NaN/inf, bad fps, unsupported extension or codec,
            odd size for .mp4, or an encoder failure (nothing is left on disk then).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_CODECS:
        raise VideoError(
            f"cannot write {str(path)!r}: unsupported extension {path.suffix!r}; allowed: {', '.join(WRITE_CODECS)}"
        )
    frames = _check_frames(frames)
    fps = _check_fps(fps)
    choices = WRITE_CODECS[ext]
    if codec is not None and codec not in choices:
        allowed = ", ".join(choices) if choices else "none (leave codec=None)"
        raise VideoError(f"codec {codec!r} cannot be written to {ext}; allowed: {allowed}")
    codec = codec or (choices[0] if choices else None)
    if ext == ".npy":
        arr = frames
        if frames.dtype != np.uint8:
            _check_finite(frames)
            arr = np.clip(frames, 0.0, 1.0).astype(np.float32)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
        return path
    u8 = to_uint8(frames)
    if codec == "libx264" and (u8.shape[1] % 2 or u8.shape[2] % 2):
        raise VideoError(
            f"H.264 (yuv420p) needs an even frame height and width; got {u8.shape[1]}x{u8.shape[2]} (HxW). "
            "Write .avi, or resize / pad the frames"
        )
    with atomic_path(path) as tmp:
        if ext == ".gif":
            _write_gif(tmp, u8, fps)
        elif ext == ".avi":
            _write_av(tmp, u8, fps, codec)
        else:
            _write_ffmpeg(tmp, u8, fps, codec, ext)
    return path


def _write_av(target: Path, u8: np.ndarray, fps: float, codec: str) -> None:
    """Encode (T, H, W) uint8 frames to an AVI in-process with PyAV: the same encoder and
    settings as the ffmpeg binary (same decoded pixels, tested) at ~40 % of the CPU time,
    since no process is started and no frames are piped."""
    import av

    pix_fmt, _ = _CODEC_PARAMS[codec]
    _, h, w = u8.shape
    try:
        with av.open(str(target), mode="w", format="avi", options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1_000_000))
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            stream.thread_count = 1
            stream.codec_context.flags |= av.codec.context.Flags.bitexact
            if codec == "mjpeg":  # -q:v 2: a fixed quantizer scale
                stream.codec_context.qscale = 2
            for frame in u8:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")))
            out.mux(stream.encode(None))
    except Exception as e:  # av.error.* (a full disk, an encoder refusing the settings)
        raise VideoError(f"could not write .avi with codec {codec} ({_last_line(e)})") from e
    if not target.exists() or target.stat().st_size == 0:
        raise VideoError(f"could not write .avi with codec {codec} (empty output)")


def _write_ffmpeg(target: Path, u8: np.ndarray, fps: float, codec: str, ext: str) -> None:
    """Encode (T, H, W) uint8 frames to ``target`` with imageio-ffmpeg's ffmpeg binary.

    ffmpeg is run directly rather than through ``iio.imwrite``: imageio-ffmpeg never looks
    at ffmpeg's exit status, so a failed encode (a bad option, a full disk) would pass
    silently and leave an empty file. Here a non-zero exit raises with ffmpeg's message.
    """
    import imageio_ffmpeg

    pix_fmt, params = _CODEC_PARAMS[codec]
    _, h, w = u8.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        # Raw gray frames on stdin; the rate as an exact fraction (29.97 -> 2997/100).
        "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
        "-r", str(Fraction(fps).limit_denominator(1_000_000)), "-i", "pipe:0",
        "-an", "-c:v", codec, "-pix_fmt", pix_fmt, *params, *_DETERMINISTIC,
        *(["-movflags", "+faststart"] if ext == ".mp4" else []),
        str(target),
    ]  # fmt: skip
    try:
        result = subprocess.run(cmd, input=np.ascontiguousarray(u8).tobytes(), capture_output=True)
    except OSError as e:  # the binary is missing or cannot run
        raise VideoError(f"ffmpeg could not write {ext} with codec {codec} ({e})") from e
    if result.returncode != 0 or not target.exists() or target.stat().st_size == 0:
        err = result.stderr.decode(errors="replace").strip().splitlines()
        reason = err[-1][:200] if err else f"exit status {result.returncode}, empty output"
        raise VideoError(f"ffmpeg could not write {ext} with codec {codec} ({reason})")


def _write_gif(tmp: Path, u8: np.ndarray, fps: float) -> None:
    from PIL import Image

    # Browsers show delays under 2/100 s as 1/10 s, so 2 is the shortest usable delay.
    centis = max(2, round(100.0 / fps))
    images = [Image.fromarray(frame) for frame in u8]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=centis * 10, loop=0)


def video_to_mp4_bytes(frames: np.ndarray, fps: float) -> bytes:
    """H.264 MP4 (yuv420p, fragmented) bytes of (T, H, W) frames, for a browser's <video>.

    An odd height or width is padded by one row / column copied from the edge (yuv420p
    needs even sizes). Same frames -> same bytes.
    """
    u8 = to_uint8(_check_frames(frames))
    fps = _check_fps(fps)
    pad = ((0, 0), (0, u8.shape[1] % 2), (0, u8.shape[2] % 2))
    if any(p[1] for p in pad):
        u8 = np.pad(u8, pad, mode="edge")
    # Encoded through pipes, never a file: the frames may be a user's upload. A pipe cannot
    # seek back to put the index first (+faststart), so the MP4 is fragmented (an empty
    # moov up front, one fragment per keyframe), which browsers play the same way.
    import imageio_ffmpeg

    pix_fmt, params = _CODEC_PARAMS["libx264"]
    _, h, w = u8.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
        "-r", str(Fraction(fps).limit_denominator(1_000_000)), "-i", "pipe:0",
        "-an", "-c:v", "libx264", "-pix_fmt", pix_fmt, *params, *_DETERMINISTIC,
        "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "pipe:1",
    ]  # fmt: skip
    try:
        result = subprocess.run(cmd, input=np.ascontiguousarray(u8).tobytes(), capture_output=True)
    except OSError as e:  # the binary is missing or cannot run
        raise VideoError(f"ffmpeg could not encode the MP4 ({e})") from e
    if result.returncode != 0 or not result.stdout:
        err = result.stderr.decode(errors="replace").strip().splitlines()
        raise VideoError(f"ffmpeg could not encode the MP4 ({err[-1][:200] if err else f'exit status {result.returncode}'})")
    return result.stdout


def montage_png(
    videos: list[np.ndarray],
    path: str | os.PathLike,
    *,
    n_frames: int = 6,
    labels: list[str] | None = None,
) -> Path:
    """A contact sheet: one row per video, ``n_frames`` evenly spaced frames per row.

    Frames shown of a video with T frames: round(linspace(0, T - 1, n_frames)). Every tile
    has the first video's size (others are resized); tiles are separated by 2 px of dark
    gray; ``labels`` (one per video) are written in a column on the left.

    Args:
        videos: list of (T, H, W) uint8 or float in [0, 1].
    Returns:
        the PNG path written (atomically).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not isinstance(videos, (list, tuple)) or len(videos) == 0:
        raise VideoError(f"montage_png needs a non-empty list of (T, H, W) videos; got {videos!r:.80}")
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise VideoError(f"n_frames must be a positive int; got {n_frames!r}")
    if labels is not None and len(labels) != len(videos):
        raise VideoError(f"got {len(labels)} labels for {len(videos)} videos; give one per video")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise VideoError(f"montage_png writes .png files; got {str(path)!r}")
    rows = [_check_frames(v) for v in videos]
    h, w = rows[0].shape[1:]
    gap = 2
    font = ImageFont.load_default()
    label_w = 0
    if labels:
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        label_w = max(int(probe.textlength(str(s), font=font)) for s in labels) + 8
    sheet = np.full((len(rows) * (h + gap) + gap, label_w + n_frames * (w + gap) + gap), 40, np.uint8)
    for r, v in enumerate(rows):
        idx = np.round(np.linspace(0, v.shape[0] - 1, n_frames)).astype(int)
        tiles = v[idx]
        if tiles.shape[1:] != (h, w):
            tiles = resize_frames(tiles, (h, w))
        tiles = to_uint8(tiles)
        y = gap + r * (h + gap)
        for c, tile in enumerate(tiles):
            x = label_w + gap + c * (w + gap)
            sheet[y : y + h, x : x + w] = tile
    image = Image.fromarray(sheet)
    if labels:
        draw = ImageDraw.Draw(image)
        for r, text in enumerate(labels):
            draw.text((4, gap + r * (h + gap) + h // 2), str(text), fill=255, font=font, anchor="lm")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


# ---------------------------------------------------------------------------------------
# argument checks


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise VideoError(f"frames must have shape (T, H, W); got shape {tuple(frames.shape)}")
    if 0 in frames.shape:
        raise VideoError(f"frames must not be empty; got shape {tuple(frames.shape)}")
    if not (frames.dtype == np.uint8 or np.issubdtype(frames.dtype, np.floating)):
        raise VideoError(f"frames must be uint8 or float in [0, 1]; got dtype {frames.dtype}")
    return frames


def _check_finite(frames: np.ndarray) -> None:
    bad = int(np.count_nonzero(~np.isfinite(frames)))
    if bad:
        raise VideoError(f"frames contain {bad} NaN/inf values; only finite values in [0, 1] are allowed")


def _check_fps(fps) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise VideoError(f"fps must be a positive finite number; got {fps!r}")
    return value


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        hw = (size, size)
    else:
        hw = tuple(size) if isinstance(size, (tuple, list)) else None
    if hw is None or len(hw) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in hw):
        raise VideoError(f"size must be a positive int or (H, W) of positive ints; got {size!r}")
    return int(hw[0]), int(hw[1])
