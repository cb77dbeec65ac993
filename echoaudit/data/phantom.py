"""Phantom echo data set: synthetic apical / short-axis echo videos with known EF.

It stands in for EchoNet-Dynamic (and, through its views, for the paper's three data
sets) so that everything can be trained and audited without patient data.

What is simulated, and why:

* A sector-shaped field of view with depth attenuation, a near-field clutter band and
  fully developed speckle (the envelope of a low-passed complex Gaussian field). The
  speckle is the part of an echo that no 4-channel latent can carry; it is kept so the
  VAE is measured on realistic frames (see ``tests/test_phantom.py``).
* A left ventricle (cavity + myocardium) that contracts and relaxes over the cardiac
  cycle; in the apical views the right ventricle and both atria are drawn too. The EF
  label is computed from the simulated end-diastolic and end-systolic volumes
  (ellipsoid / area-length for apical views, area x length for the short axis).
* Identity: each patient has a fixed anatomy (cavity size and shape, wall thickness,
  orientation, tissue texture and EF) shared by all of that patient's videos. Each video
  varies heart rate, phase, gain, noise, a small probe shift and tilt, and its speckle.
  That split is what the re-identification model has to learn.

Randomness: a patient's anatomy comes from ``default_rng([seed, view, patient])`` and a
video's acquisition from ``default_rng([seed, view, patient, video])``, so the same seed
gives the same bytes, and patient ``p`` looks the same whatever ``n_patients`` is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = [
    "VIEWS",
    "PhantomConfig",
    "Anatomy",
    "Acquisition",
    "sample_anatomy",
    "sample_acquisition",
    "render_video",
    "phantom_rows",
    "generate_phantom",
]

VIEWS = ("a4c", "psax", "pediatric")
_VIEW_CODE = {v: i for i, v in enumerate(VIEWS)}
DEPTH_CM = 15.0  # the sector radius in cm; sets the volume units (mL)


MAX_PATIENTS = 100_000  # ten times EchoNet-Dynamic's ~10,000; a hostile demo.json cannot ask for more


@dataclass(frozen=True)
class PhantomConfig:
    """What ``echoaudit phantom`` makes. Splits are by patient (no patient in two)."""

    n_patients: int = 125
    videos_per_patient: int = 4
    frames: int = 64
    fps: float = 50.0
    size: int = 112
    view: str = "a4c"
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # TRAIN, VAL, TEST

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}; got {self.view!r}")
        for name in ("n_patients", "videos_per_patient", "frames", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name, top in (("n_patients", MAX_PATIENTS), ("videos_per_patient", 100), ("frames", 10_000)):
            if getattr(self, name) > top:
                raise ValueError(f"{name} must be at most {top}; got {getattr(self, name)}")
        if self.frames < 2:
            raise ValueError(f"frames must be >= 2 (a video); got {self.frames}")
        if not 16 <= self.size <= 1024:
            raise ValueError(f"size must be between 16 and 1024 pixels; got {self.size}")
        if not 1 <= self.fps <= 500:
            raise ValueError(f"fps must be between 1 and 500; got {self.fps}")
        f = self.split_fractions
        if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6:
            raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1; got {f}")


@dataclass(frozen=True)
class Anatomy:
    """One patient's heart, in units of the sector radius (1.0 = DEPTH_CM)."""

    view: str
    ef: float  # target ejection fraction, percent
    lv_center: tuple[float, float]  # (x, y) in image units
    lv_long: float  # semi-axis along the LV long axis (apical views) or radius (psax)
    lv_short: float
    wall: float  # myocardium thickness
    angle: float  # tilt of the heart, radians
    rv_scale: float
    atrium_scale: float
    tissue: float  # background tissue echogenicity
    myo: float  # myocardium echogenicity
    texture_k: tuple[tuple[float, float], ...]  # spatial frequencies of the tissue texture
    texture_phase: tuple[float, ...]
    texture_amp: float


@dataclass(frozen=True)
class Acquisition:
    """One video's acquisition of a patient."""

    heart_rate: float  # beats per minute
    phase: float  # cardiac phase at frame 0, in [0, 1)
    gain: float
    noise: float  # std of additive electronic noise
    shift: tuple[float, float]  # probe shift (x, y), image units
    tilt: float  # radians
    ef_jitter: float  # beat-to-beat EF variation, percent
    speckle_seed: int


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def sample_anatomy(seed: int, view: str, patient: int) -> Anatomy:
    """Draw patient ``patient``'s anatomy (deterministic in ``seed, view, patient``)."""
    r = _rng(seed, 1000 + _VIEW_CODE[view], patient)
    ef = float(np.clip(r.normal(52.0, 17.0), 15.0, 85.0))
    ped = view == "pediatric"
    if view == "psax":
        center = (0.5 + r.uniform(-0.04, 0.04), 0.52 + r.uniform(-0.04, 0.04))
        long_ = short = r.uniform(0.11, 0.17)
    else:
        center = (0.56 + r.uniform(-0.03, 0.03), (0.40 if not ped else 0.44) + r.uniform(-0.03, 0.03))
        long_ = r.uniform(0.18, 0.26) * (0.85 if ped else 1.0)
        short = long_ * r.uniform(0.38, 0.55) * (1.25 if ped else 1.0)
    n_tex = 4
    k = tuple((float(a), float(b)) for a, b in r.uniform(-40, 40, size=(n_tex, 2)))
    return Anatomy(
        view=view,
        ef=ef,
        lv_center=(float(center[0]), float(center[1])),
        lv_long=float(long_),
        lv_short=float(short),
        wall=float(r.uniform(0.025, 0.05)),
        angle=float(r.uniform(-0.25, 0.25)),
        rv_scale=float(r.uniform(0.7, 1.0)),
        atrium_scale=float(r.uniform(0.8, 1.2)),
        tissue=float(r.uniform(0.10, 0.2)),
        myo=float(r.uniform(0.55, 0.8)),
        texture_k=k,
        texture_phase=tuple(float(p) for p in r.uniform(0, 2 * np.pi, n_tex)),
        texture_amp=float(r.uniform(0.15, 0.35)),
    )


def sample_acquisition(seed: int, view: str, patient: int, video: int) -> Acquisition:
    """Draw one video's acquisition settings (deterministic in all four keys)."""
    r = _rng(seed, 2000 + _VIEW_CODE[view], patient, video)
    hr = r.uniform(90, 150) if view == "pediatric" else r.uniform(50, 100)
    return Acquisition(
        heart_rate=float(hr),
        phase=float(r.uniform(0, 1)),
        gain=float(r.uniform(0.85, 1.15)),
        noise=float(r.uniform(0.01, 0.04)),
        shift=(float(r.uniform(-0.03, 0.03)), float(r.uniform(-0.03, 0.03))),
        tilt=float(r.uniform(-0.05, 0.05)),
        ef_jitter=float(r.normal(0, 1.5)),
        speckle_seed=int(r.integers(2**31)),
    )


def _contraction(phase: np.ndarray) -> np.ndarray:
    """0 at end-diastole, 1 at end-systole (phase 0.35); diastasis after phase 0.7."""
    q = 0.5 * (1 - np.cos(2 * np.pi * np.clip(phase, 0, 0.7) / 0.7))
    return np.where(phase < 0.7, q, 0.0)


def _axis_factors(ef: float, view: str) -> tuple[float, float]:
    """End-systolic / end-diastolic factors of the (long, short) semi-axes for a given EF.

    Apical views: V = 4/3 pi a b^2 (the ellipsoid that single-plane area-length gives),
    so ESV/EDV = fa * fb^2 = 1 - EF; the long axis shortens less than the short one.
    Short axis: V = area x a fixed length, so ESV/EDV = fr^2.
    """
    rest = 1 - ef / 100
    if view == "psax":
        f = math.sqrt(rest)
        return f, f
    return rest**0.2, rest**0.4


def _volumes(anat: Anatomy, ef: float) -> tuple[float, float]:
    """(EDV, ESV) in mL from the simulated geometry."""
    fa, fb = _axis_factors(ef, anat.view)
    a, b = anat.lv_long * DEPTH_CM, anat.lv_short * DEPTH_CM
    if anat.view == "psax":
        length = 2.2 * a  # a fixed long axis behind the short-axis slice
        edv = math.pi * a * b * length * 5 / 6
        esv = math.pi * a * fa * b * fb * length * 5 / 6
    else:
        edv = 4 / 3 * math.pi * a * b * b
        esv = 4 / 3 * math.pi * (a * fa) * (b * fb) ** 2
    return edv, esv


def _soft_inside(d: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (d < 1), 0 outside, with a soft boundary of width ``edge`` (in d units)."""
    return 1.0 / (1.0 + np.exp(np.clip((d - 1.0) / edge, -30, 30)))


def render_video(
    anat: Anatomy, acq: Acquisition, *, frames: int = 64, fps: float = 50.0, size: int = 112
) -> tuple[np.ndarray, dict]:
    """Render one video.

    Returns:
        frames: (T, H, W) uint8 gray.
        labels: dict with EF (percent), EDV and ESV (mL) computed from the geometry.
    """
    ef = float(np.clip(anat.ef + acq.ef_jitter, 10.0, 90.0))
    edv, esv = _volumes(anat, ef)
    fa, fb = _axis_factors(ef, anat.view)

    t = np.arange(frames, dtype=np.float32)
    phase = (acq.phase + t * acq.heart_rate / 60.0 / fps) % 1.0
    q = _contraction(phase).astype(np.float32)[:, None, None]  # (T,1,1)

    # Image coordinates (x right, y down), in units of the image side.
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(c, c)  # (H, W)
    apex = (0.5, 0.02)
    r = np.hypot(x - apex[0], y - apex[1])
    theta = np.arctan2(x - apex[0], y - apex[1])
    half_angle = 0.85 if anat.view == "pediatric" else 0.72
    radius = 0.97
    px = 1.0 / size
    sector = _soft_inside(np.maximum(np.abs(theta) / half_angle, r / radius), 1.5 * px)

    # Heart coordinates: probe shift and tilt move the anatomy within the sector.
    ang = anat.angle + acq.tilt
    cx, cy = anat.lv_center[0] + acq.shift[0], anat.lv_center[1] + acq.shift[1]
    ca, sa = math.cos(ang), math.sin(ang)
    dx, dy = x - cx, y - cy
    u = ca * dx - sa * dy  # across the heart
    v = sa * dx + ca * dy  # along the LV long axis (down = base)

    a0, b0 = anat.lv_long, anat.lv_short
    a_t = a0 * (1 - (1 - fa) * q)
    b_t = b0 * (1 - (1 - fb) * q)
    w_t = anat.wall * (1 + 0.4 * q)  # the wall thickens in systole
    edge = 0.02

    def ellipse(uu, vv, semi_u, semi_v):
        return np.sqrt((uu / semi_u) ** 2 + (vv / semi_v) ** 2)

    lv_cav = _soft_inside(ellipse(u, v, b_t, a_t), edge / b0)
    lv_out = _soft_inside(ellipse(u, v, b_t + w_t, a_t + w_t), edge / b0)
    blood = lv_cav
    myo = np.clip(lv_out - lv_cav, 0, 1)

    if anat.view == "psax":
        # RV: a crescent to the left of the LV; papillary muscles inside the cavity.
        ru = u + (b0 + anat.wall) * 1.2
        rv = _soft_inside(ellipse(ru, v, 0.6 * b0 * anat.rv_scale, 1.3 * a0 * anat.rv_scale), 0.05)
        rv = np.clip(rv * (1 - lv_out) * (1 - 0.3 * q), 0, 1)
        pap = np.zeros_like(lv_cav)
        for pu, pv in ((0.35, 0.45), (-0.25, 0.55)):
            pap = pap + _soft_inside(ellipse(u - pu * b_t, v - pv * a_t, 0.18 * b0, 0.18 * b0), 0.1)
        pap = np.clip(pap, 0, 1) * lv_cav
        blood = np.clip(blood - pap + rv, 0, 1)
        myo = np.clip(myo + 0.8 * pap + 0.5 * _soft_inside(ellipse(ru, v, 0.6 * b0 * anat.rv_scale + 0.02, 1.3 * a0 * anat.rv_scale + 0.02), 0.05) * (1 - rv) * (1 - lv_out), 0, 1)
    else:
        # RV beside the LV (septum between), both atria below; atria fill in systole.
        sep = b0 + anat.wall
        rv_u = u + sep + 0.75 * b0 * anat.rv_scale
        rv_cav = _soft_inside(ellipse(rv_u, v + 0.1 * a0, 0.7 * b_t * anat.rv_scale, 0.85 * a_t * anat.rv_scale), 0.05)
        rv_out = _soft_inside(ellipse(rv_u, v + 0.1 * a0, 0.7 * b_t * anat.rv_scale + 0.6 * w_t, 0.85 * a_t * anat.rv_scale + 0.6 * w_t), 0.05)
        at = 1 + 0.18 * q
        la_r = 0.85 * b0 * anat.atrium_scale * at
        la = _soft_inside(ellipse(u, v - a0 - 0.8 * la_r - 1.5 * anat.wall, 1.1 * la_r, la_r), 0.06)
        ra = _soft_inside(ellipse(rv_u, v - a0 - 0.7 * la_r - 1.5 * anat.wall, 0.9 * la_r, 0.9 * la_r), 0.06)
        atria = np.clip(la + ra, 0, 1)
        blood = np.clip(blood + rv_cav + atria, 0, 1)
        myo = np.clip(myo + 0.7 * np.clip(rv_out - rv_cav, 0, 1) * (1 - lv_out), 0, 1) * (1 - atria)

    # Tissue texture: a few patient-fixed sinusoids in heart coordinates (moves with the heart).
    tex = np.zeros_like(u)
    for (ku, kv), ph in zip(anat.texture_k, anat.texture_phase):
        tex = tex + np.sin(ku * u + kv * v + ph)
    tex = 1 + anat.texture_amp * tex / math.sqrt(len(anat.texture_k))

    echo = anat.tissue * tex * (1 - blood) + 0.03 * blood
    echo = echo * (1 - myo) + anat.myo * tex * myo
    echo = echo + 0.5 * _soft_inside(r / 0.07, 0.2)  # near-field clutter under the probe
    echo = echo * np.exp(-0.6 * r) * 1.35  # attenuation with depth, partly compensated

    # Fully developed speckle: envelope of a low-passed complex Gaussian field, with a
    # per-video component (tissue-fixed) and a per-frame one (decorrelation).
    rs = np.random.default_rng(acq.speckle_seed)
    shape = (frames, size, size)
    fixed = rs.standard_normal((2, size, size), dtype=np.float32)
    moving = rs.standard_normal((2,) + shape, dtype=np.float32)
    field = 0.8 * fixed[:, None] + 0.6 * moving
    sig = (0, 0.5 * size / 112, 1.0 * size / 112)  # speckle longer laterally than axially
    re = gaussian_filter(field[0], sig)
    im = gaussian_filter(field[1], sig)
    env = np.sqrt(re * re + im * im)
    env /= env.mean()

    img = acq.gain * echo * env + acq.noise * rs.standard_normal(shape, dtype=np.float32)
    img = np.clip(img * sector, 0, 1)
    frames_u8 = np.round(img * 255).astype(np.uint8)
    return frames_u8, {"EF": round(100 * (1 - esv / edv), 3), "EDV": round(edv, 3), "ESV": round(esv, 3)}


def _splits(cfg: PhantomConfig) -> dict[int, str]:
    """Patient -> split (never a video-level split).

    Each patient's split is its own seeded draw, so patient ``p`` lands in the same split
    whatever ``n_patients`` is: a smaller phantom set is a consistent subset of a larger one
    (the demo workspace relies on that to match the shipped checkpoints).
    """
    f_train, f_val, _ = cfg.split_fractions
    out = {}
    for p in range(cfg.n_patients):
        u = _rng(cfg.seed, 3000 + _VIEW_CODE[cfg.view], p).random()
        out[p] = "TRAIN" if u < f_train else ("VAL" if u < f_train + f_val else "TEST")
    return out


def phantom_rows(cfg: PhantomConfig):
    """Yield (file_name, patient_id, split, anatomy, acquisition) for every video, in order."""
    splits = _splits(cfg)
    tag = cfg.view.upper()
    for p in range(cfg.n_patients):
        anat = sample_anatomy(cfg.seed, cfg.view, p)
        for v in range(cfg.videos_per_patient):
            acq = sample_acquisition(cfg.seed, cfg.view, p, v)
            yield f"PH{tag}_{p:04d}_{v:02d}", f"{tag}-{p:04d}", splits[p], anat, acq


def _render_row(args):
    anat, acq, frames, fps, size = args
    return render_video(anat, acq, frames=frames, fps=fps, size=size)


def generate_phantom(
    out: str | Path,
    cfg: PhantomConfig = PhantomConfig(),
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Write an EchoNet-format phantom data set to ``out`` (FileList.csv + Videos/*.avi).

    FileList.csv has the EchoNet-Dynamic columns plus PatientID, View and HeartRate.
    ``workers`` > 1 renders in that many processes (the bytes do not change: every
    video's randomness comes from its own seed). Returns the data set root.
    """
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from tqdm.auto import tqdm

    from echoaudit.data.echonet import EchoNetWriter

    out = Path(out)
    rows = list(phantom_rows(cfg))
    jobs = [(anat, acq, cfg.frames, cfg.fps, cfg.size) for _, _, _, anat, acq in rows]
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        rendered = pool.map(_render_row, jobs, chunksize=4)
    else:
        rendered = map(_render_row, jobs)
    try:
        with EchoNetWriter(out, overwrite=overwrite) as writer:
            for i, ((name, pid, split, anat, acq), (frames, labels)) in enumerate(
                    tqdm(zip(rows, rendered), total=len(rows), desc=f"phantom {cfg.view}", unit="video")):
                writer.add(
                    name,
                    frames,
                    cfg.fps,
                    ef=labels["EF"],
                    esv=labels["ESV"],
                    edv=labels["EDV"],
                    split=split,
                    patient_id=pid,
                    view=cfg.view,
                    HeartRate=round(acq.heart_rate, 2),
                )
                if progress is not None:
                    progress((i + 1) / len(rows), f"video {i + 1}/{len(rows)}")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


def config_dict(cfg: PhantomConfig) -> dict:
    return asdict(cfg)
