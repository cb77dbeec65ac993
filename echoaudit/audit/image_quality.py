"""Reconstruction quality of frames: PSNR raw and after a Gaussian low-pass, and SSIM.

Fully developed speckle is noise that no 4-channel latent carries, so the VAE is judged
on both frames low-passed the same way (sigma 1.5 px): that keeps anatomy and texture
and drops the speckle grain. Raw PSNR and SSIM are reported beside it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, uniform_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "lowpass", "reconstruction_metrics", "box_blur"]


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"need two (N, H, W) frame stacks of the same shape; got {a.shape} and {b.shape}")
    return a, b


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB for frames in [0, 1]: 10 log10(1 / MSE) over all pixels."""
    a, b = _check(reference, test)
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def lowpass(frames: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Gaussian low-pass of each frame of (N, H, W) (no blur across frames)."""
    return gaussian_filter(np.asarray(frames, dtype=np.float64), sigma=(0, sigma, sigma))


def box_blur(frames: np.ndarray, size: int = 3) -> np.ndarray:
    """size x size box blur of each frame of (N, H, W)."""
    return uniform_filter(np.asarray(frames, dtype=np.float64), size=(1, size, size), mode="nearest")


def reconstruction_metrics(reference: np.ndarray, recon: np.ndarray, *, sigma: float = 1.5) -> dict[str, float]:
    """{'psnr_raw', 'psnr_lowpass', 'ssim'} of ``recon`` against ``reference`` (N, H, W) in [0, 1]."""
    a, b = _check(reference, recon)
    ssim = np.mean([structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)])
    return {
        "psnr_raw": psnr(a, b),
        "psnr_lowpass": psnr(lowpass(a, sigma), lowpass(b, sigma)),
        "ssim": float(ssim),
    }
