"""Disguised copies: the edits someone (or a leaking generator) can make to a training
video so that it no longer looks like a copy at first sight.

Two uses, one set of edits:

* :func:`apply_attack` makes a benchmark copy of one **family** at a named **strength**
  (``"mild"`` / ``"strong"``), deterministic given its ``rng``. ``bench/copy_attack.py``
  measures, family by family, how many such copies the privacy filter flags.
* :func:`random_disguise` draws a random composition of the same kinds of edit with
  continuous parameters (ranges wider than the benchmark's strengths), for training the
  re-ID network to see through disguises. The benchmark's exact settings are never drawn
  on purpose: the filter has to learn families, not points.

Frames are float32 (T, H, W) in [0, 1]; every function returns a new array and the
(possibly changed) frame rate, and never modifies its input.

Families (mild / strong):

==============  ==============================================  ===============================================
family          mild                                            strong
==============  ==============================================  ===============================================
translate       4 px shift (random direction)                   8 px shift
zoom            crop-and-resize x1.08 or x0.92 (random)         x1.15 or x0.85
rotate          5 degrees (random sign)                         10 degrees
mirror          horizontal flip                                 flip + 3 px shift
blur            Gaussian sigma 1.0 px                           sigma 2.0 px
sharpen         unsharp mask, amount 1.0                        amount 2.5
intensity       gamma 0.75 or 1.33, gain x1.1                   gamma 0.6 or 1.6, contrast x1.3, offset
noise           speckle x(1 + 0.10 n) + 0.03 n                  speckle 0.25, additive 0.08
jpeg            JPEG quality 30 per frame                       quality 10
h264            H.264 round trip (crf 35)                       H.264 crf 45
overlay         text label + box outline                        text, filled box, calipers, an ECG trace
sector          sector narrowed to 80 % of its angle            70 % of its angle and 15 % less depth
reverse         time reversed                                   reversed + middle 60 % of the frames
frame_rate      every 2nd frame (fps / 2)                       every 3rd frame (fps / 3)
frame_drop      25 % of the frames dropped at random            50 % dropped
temporal_crop   60 % of the frames from a random start          30 %
==============  ==============================================  ===============================================
"""

from __future__ import annotations

import io
import math

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter, zoom as nd_zoom

__all__ = ["ATTACK_FAMILIES", "STRENGTHS", "SPATIAL_FAMILIES", "TEMPORAL_FAMILIES", "DISGUISE_PROBABILITIES", "H264_SHARE",
           "apply_attack", "random_disguise", "affine", "overlay", "jpeg", "h264", "narrow_sector"]

STRENGTHS = ("mild", "strong")
SPATIAL_FAMILIES = ("translate", "zoom", "rotate", "mirror", "blur", "sharpen", "intensity", "noise", "jpeg",
                    "h264", "overlay", "sector")
TEMPORAL_FAMILIES = ("reverse", "frame_rate", "frame_drop", "temporal_crop")
ATTACK_FAMILIES = SPATIAL_FAMILIES + TEMPORAL_FAMILIES

# The phantom's (and a typical apical echo's) sector: apex near the top centre.
_APEX = (0.5, 0.02)  # (x, y) in units of the frame side


# ---------------------------------------------------------------------------------------
# building blocks


def affine(frames: np.ndarray, *, zoom: float = 1.0, angle_deg: float = 0.0, dx: float = 0.0,
           dy: float = 0.0, center: tuple[float, float] | None = None) -> np.ndarray:
    """Zoom (about ``center``, default the frame centre), rotate by ``angle_deg`` and shift
    by (dx, dy) pixels every frame, bilinear, zeros outside: one transform for the video."""
    t, h, w = frames.shape
    cy, cx = center if center is not None else ((h - 1) / 2, (w - 1) / 2)
    a = math.radians(angle_deg)
    # output (y, x) -> input: inverse of (scale, rotate, shift)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / zoom
    out_c = np.array([cy + dy, cx + dx])
    offset = np.array([cy, cx]) - rot @ out_c
    m = np.eye(3)
    m[1:, 1:] = rot
    return affine_transform(frames, m, offset=np.r_[0.0, offset], order=1, mode="constant", cval=0.0,
                            prefilter=False).astype(np.float32)


def _text_mask(h: int, w: int, text: str, xy: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).text(xy, text, fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def overlay(frames: np.ndarray, rng: np.random.Generator, *, strong: bool = False, fps: float = 50.0) -> np.ndarray:
    """Burn in what echo machines and editors draw: a text label and a box outline
    (mild); plus a filled box, calipers and an ECG trace running along the bottom (strong)."""
    t, h, w = frames.shape
    x = frames.copy()
    s = h / 112
    text = rng.choice(["ID 4471 A4C", "HOSP-2 17:42", "AP4 HR 72", "SYN 0003"])
    tx, ty = int(rng.integers(2, max(3, w // 3))), int(rng.integers(1, max(2, h // 10)))
    mask = _text_mask(h, w, str(text), (tx, ty))
    x = np.maximum(x, mask[None])
    # box outline somewhere in the lower half
    bw, bh = int(rng.integers(int(14 * s), int(26 * s) + 1)), int(rng.integers(int(8 * s), int(16 * s) + 1))
    bx, by = int(rng.integers(0, w - bw)), int(rng.integers(h // 2, h - bh))
    x[:, by, bx:bx + bw] = 1.0
    x[:, by + bh - 1, bx:bx + bw] = 1.0
    x[:, by:by + bh, bx] = 1.0
    x[:, by:by + bh, bx + bw - 1] = 1.0
    if strong:
        # filled grey box (a logo / measurement panel)
        fw, fh = int(16 * s), int(10 * s)
        fx, fy = int(rng.integers(w - fw - int(4 * s), w - fw + 1)), int(rng.integers(int(2 * s), int(12 * s)))
        x[:, fy:fy + fh, fx:fx + fw] = 0.6
        # calipers: two crosses joined by a dotted line
        p = rng.uniform([0.3 * h, 0.25 * w], [0.7 * h, 0.75 * w], size=(2, 2)).astype(int)
        for (py, px) in p:
            x[:, max(0, py - 2):py + 3, px] = 1.0
            x[:, py, max(0, px - 2):px + 3] = 1.0
        n = 12
        for k in range(0, n, 2):
            yy = int(p[0, 0] + (p[1, 0] - p[0, 0]) * k / n)
            xx = int(p[0, 1] + (p[1, 1] - p[0, 1]) * k / n)
            x[:, yy, xx] = 1.0
        # ECG trace along the bottom, its cursor moving with time
        base = h - int(6 * s)
        cols = np.arange(w)
        beat = (cols / w * 3.0) % 1.0
        trace = base - (np.exp(-((beat - 0.3) / 0.02) ** 2) * 5 * s - np.exp(-((beat - 0.6) / 0.08) ** 2) * 1.5 * s)
        rows = np.clip(np.round(trace).astype(int), 0, h - 1)
        for i in range(t):
            cursor = int((i / max(fps, 1.0) * 40 * s) % w)
            seen = cols <= cursor
            x[i, rows[seen], cols[seen]] = 0.9
    return np.clip(x, 0, 1).astype(np.float32)


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    """Each frame through a JPEG encode/decode at ``quality`` (1-95)."""
    from PIL import Image

    out = np.empty_like(frames, dtype=np.float32)
    for i, f in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf), dtype=np.float32) / 255.0
    return out


def h264(frames: np.ndarray, fps: float, *, crf: int = 35, scale: float = 1.0) -> np.ndarray:
    """A round trip through H.264 (libx264 at ``crf``, one thread), optionally at a reduced
    size. Runs the ffmpeg binary: PyAV's in-process libx264 gave run-to-run differences."""
    import subprocess

    import imageio_ffmpeg

    t, h, w = frames.shape
    x = frames
    if scale != 1.0:
        x = np.clip(nd_zoom(frames, (1, scale, scale), order=1), 0, 1)
    th, tw = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2  # yuv420p needs even sides
    x = np.round(np.clip(x[:, :th, :tw], 0, 1) * 255).astype(np.uint8)
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    rate = str(max(1, int(round(fps))))
    enc = subprocess.run([exe, "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{tw}x{th}", "-r", rate,
                          "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(int(crf)), "-threads", "1",
                          "-pix_fmt", "yuv420p", "-f", "h264", "-"], input=x.tobytes(), capture_output=True, check=True)
    dec = subprocess.run([exe, "-v", "error", "-threads", "1", "-f", "h264", "-i", "-", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], input=enc.stdout, capture_output=True, check=True)
    out = np.frombuffer(dec.stdout, np.uint8).reshape(-1, th, tw).astype(np.float32) / 255.0
    if out.shape[1:] != (h, w):
        out = np.clip(nd_zoom(out, (1, h / out.shape[1], w / out.shape[2]), order=1), 0, 1)
    return out[:t].astype(np.float32)


def narrow_sector(frames: np.ndarray, angle_fraction: float, depth_fraction: float = 1.0) -> np.ndarray:
    """Black out the sector beyond ``angle_fraction`` of its visible half-angle (found from
    the video's own bright pixels) and cut the depth to ``depth_fraction`` of the frame,
    stretching what is left back to the full height (a different depth setting)."""
    t, h, w = frames.shape
    c = (np.arange(h, dtype=np.float32) + 0.5) / h
    xg, yg = np.meshgrid((np.arange(w, dtype=np.float32) + 0.5) / w, c)
    theta = np.arctan2(xg - _APEX[0], yg - _APEX[1])
    lit = frames.mean(axis=0) > 0.02
    half = float(np.abs(theta[lit]).max()) if lit.any() else 0.72
    x = frames * (np.abs(theta) <= angle_fraction * half)[None]
    if depth_fraction < 1.0:
        keep = max(2, int(round(h * depth_fraction)))
        x = nd_zoom(x[:, :keep], (1, h / keep, 1), order=1)[:, :h]
    return np.clip(x, 0, 1).astype(np.float32)


def _gamma(x: np.ndarray, g: float) -> np.ndarray:
    return np.power(np.clip(x, 0, 1), g)


# ---------------------------------------------------------------------------------------
# benchmark attacks


def _shift_dir(rng: np.random.Generator, px: float) -> tuple[float, float]:
    a = rng.uniform(0, 2 * math.pi)
    return px * math.sin(a), px * math.cos(a)


def apply_attack(frames: np.ndarray, fps: float, family: str, strength: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One disguised copy of (T, H, W) ``frames`` (see the module table).

    Returns:
        (frames (T', H, W) float32 in [0, 1], fps of the copy).

    Raises:
        ValueError: unknown family or strength, or frames that are not (T, H, W) with T >= 2.
    """
    if family not in ATTACK_FAMILIES:
        raise ValueError(f"family must be one of {', '.join(ATTACK_FAMILIES)}; got {family!r}")
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {', '.join(STRENGTHS)}; got {strength!r}")
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim != 3 or len(x) < 2:
        raise ValueError(f"frames must be (T, H, W) with T >= 2; got shape {x.shape}")
    strong = strength == "strong"
    s = x.shape[-1] / 112  # pixel sizes are given at 112x112
    t = len(x)
    if family == "translate":
        dy, dx = _shift_dir(rng, (8 if strong else 4) * s)
        x = affine(x, dx=dx, dy=dy)
    elif family == "zoom":
        z = 0.15 if strong else 0.08
        x = affine(x, zoom=1 + z if rng.random() < 0.5 else 1 - z)
    elif family == "rotate":
        x = affine(x, angle_deg=(10 if strong else 5) * rng.choice([-1, 1]))
    elif family == "mirror":
        x = x[:, :, ::-1]
        if strong:
            dy, dx = _shift_dir(rng, 3 * s)
            x = affine(np.ascontiguousarray(x), dx=dx, dy=dy)
    elif family == "blur":
        x = gaussian_filter(x, (0, 2.0 * s if strong else 1.0 * s, 2.0 * s if strong else 1.0 * s))
    elif family == "sharpen":
        x = x + (2.5 if strong else 1.0) * (x - gaussian_filter(x, (0, 1.0 * s, 1.0 * s)))
    elif family == "intensity":
        up = rng.random() < 0.5
        if strong:
            x = _gamma(x, 0.6 if up else 1.6)
            m = float(x[x > 0.02].mean()) if (x > 0.02).any() else 0.5
            x = (x - m) * 1.3 + m + rng.uniform(-0.05, 0.05)
        else:
            x = _gamma(x, 0.75 if up else 1.33) * 1.1
    elif family == "noise":
        sp, ad = (0.25, 0.08) if strong else (0.10, 0.03)
        x = x * (1 + sp * rng.standard_normal(x.shape)) + ad * rng.standard_normal(x.shape)
    elif family == "jpeg":
        x = jpeg(x, 10 if strong else 30)
    elif family == "h264":
        x = h264(x, fps, crf=45) if strong else h264(x, fps, crf=35)
    elif family == "overlay":
        x = overlay(x, rng, strong=strong, fps=fps)
    elif family == "sector":
        x = narrow_sector(x, 0.7, 0.85) if strong else narrow_sector(x, 0.8)
    elif family == "reverse":
        x = x[::-1]
        if strong:
            x = x[t // 5: t // 5 + max(2, int(0.6 * t))]
    elif family == "frame_rate":
        k = 3 if strong else 2
        x, fps = x[::k], fps / k
    elif family == "frame_drop":
        keep = np.sort(rng.choice(t, max(2, int(round(t * (0.5 if strong else 0.75)))), replace=False))
        x = x[keep]
    else:  # temporal_crop
        n = max(2, int(round(t * (0.3 if strong else 0.6))))
        start = int(rng.integers(0, t - n + 1))
        x = x[start:start + n]
    return np.clip(x, 0, 1).astype(np.float32), float(fps)


# ---------------------------------------------------------------------------------------
# training disguises


#: Training disguises: each edit is applied independently with this probability (at least
#: one edit always), in this order: geometry before pixel edits, overlays and sector last.
DISGUISE_PROBABILITIES = {"geometry": 0.6, "mirror": 0.35, "filter": 0.3, "intensity": 0.4, "noise": 0.3,
                          "compression": 0.35, "overlay": 0.3, "sector": 0.3}
#: Of the compression draws, the share that is H.264 (the rest JPEG).
H264_SHARE = 0.65


def random_disguise(frames: np.ndarray, rng: np.random.Generator, *, fps: float = 50.0, stride: int = 1) -> np.ndarray:
    """A random composition of the families' edits with continuous parameters, for re-ID
    training (each edit with its :data:`DISGUISE_PROBABILITIES`, at least one). Frames keep
    their count (temporal edits are a matter of which frames are compared, which pair
    sampling already varies).

    Ranges (at 112 px): shift up to 12 px, zoom 0.8-1.25, rotation up to 15 degrees;
    mirror; blur sigma 0.3-2.5 or unsharp amount 0.5-3; gamma 0.5-2 with contrast 0.7-1.5
    (about mid-grey or the frame's mean) and gain 0.8-1.2, offset +-0.08; speckle 0-0.3
    with additive noise 0-0.1; JPEG quality 8-60 or H.264 crf 28-50; burned-in overlays;
    sector narrowed to 60-95 % of its angle and depth to 78-100 %.

    Returns every ``stride``-th frame of the disguised clip. H.264 is a temporal codec:
    its predicted frames at the clip's own frame rate lose far more than a clip of every
    8th frame would (measured: about 3x the latent error), so when H.264 is drawn the
    edits before it run on every frame at ``fps`` and the frames are kept after it; any
    other draw keeps the frames first (the edits are per frame, so it is the same edit).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1; got {stride}")
    x = np.asarray(frames, dtype=np.float32)
    s = x.shape[-1] / 112
    names = list(DISGUISE_PROBABILITIES)
    on = rng.random(len(names)) < np.array([DISGUISE_PROBABILITIES[n] for n in names])
    if not on.any():
        on[rng.integers(len(names))] = True
    use_h264 = bool(on[names.index("compression")]) and rng.random() < H264_SHARE
    if not use_h264:
        x, fps = x[::stride], fps / stride
    for name in (n for n, o in zip(names, on) if o):
        if name == "geometry":
            dy, dx = _shift_dir(rng, rng.uniform(0, 12) * s)
            z = math.exp(rng.uniform(math.log(0.8), math.log(1.25))) if rng.random() < 0.7 else 1.0
            a = rng.uniform(-15, 15) if rng.random() < 0.6 else 0.0
            x = affine(x, zoom=z, angle_deg=a, dx=dx, dy=dy)
        elif name == "mirror":
            x = np.ascontiguousarray(x[:, :, ::-1])
        elif name == "filter":
            if rng.random() < 0.6:
                sig = rng.uniform(0.3, 2.5) * s
                x = gaussian_filter(x, (0, sig, sig))
            else:
                x = x + rng.uniform(0.5, 3.0) * (x - gaussian_filter(x, (0, s, s)))
        elif name == "intensity":
            x = _gamma(x, math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
            lit = x > 0.02
            m = 0.5 if rng.random() < 0.5 or not lit.any() else float(x[lit].mean())
            x = ((x - m) * rng.uniform(0.7, 1.5) + m) * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)
        elif name == "noise":
            x = x * (1 + rng.uniform(0, 0.3) * rng.standard_normal(x.shape)) + rng.uniform(0, 0.1) * rng.standard_normal(x.shape)
        elif name == "compression":
            if not use_h264:
                x = jpeg(np.clip(x, 0, 1), int(rng.integers(8, 61)))
            else:
                x = h264(np.clip(x, 0, 1), fps, crf=int(rng.integers(28, 51)))[::stride]
                fps = fps / stride
        elif name == "overlay":
            x = overlay(np.clip(x, 0, 1), rng, strong=bool(rng.random() < 0.5), fps=fps)
        else:  # sector
            depth = rng.uniform(0.78, 1.0) if rng.random() < 0.5 else 1.0
            x = narrow_sector(np.clip(x, 0, 1), rng.uniform(0.6, 0.95), depth)
        x = np.clip(x, 0, 1).astype(np.float32)
    return x
