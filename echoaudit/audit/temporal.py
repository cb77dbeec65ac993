"""Temporal consistency: does a video stay one patient from its first frame to its last?

Dombrowski et al. (arXiv 2411.04956) compare every frame of a video with its first
frame. Real videos stay consistent (the authors' notebooks show a mean same-identity
score near 0.79 over 80 frames); synthetic ones can drift to another identity. A
*curve* is a 1-D array c of length T with c[0] the first frame against itself:
either re-identification probabilities P(same patient | frame 0, frame t) in [0, 1] or
the Pearson correlations of :func:`embedding_correlation` in [-1, 1].

All functions are pure: no IO, no printing.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

__all__ = [
    "KINDS",
    "consistency_summary",
    "embedding_correlation",
    "summarise_curves",
]

KINDS: tuple[str, ...] = ("real", "synthetic")
SUMMARY_COLUMNS: tuple[str, ...] = ("name", "kind", "n_frames", "mean", "min", "first_drop")


def _check_curve(curve: object, name: str = "curve") -> np.ndarray:
    arr = np.asarray(curve)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (T,), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(arr)))} NaN/inf value(s); allowed: finite numbers")
    bad = arr[(arr < -1.0) | (arr > 1.0)]
    if bad.size:
        raise ValueError(
            f"{name} has {bad.size} value(s) outside [-1, 1], e.g. {bad[:3].tolist()}; allowed: "
            "probabilities in [0, 1] or correlations in [-1, 1]"
        )
    return arr


def _check_drop_at(drop_at: object) -> float:
    if isinstance(drop_at, bool) or not isinstance(drop_at, (int, float, np.number)):
        raise ValueError(f"drop_at must be a number in [-1, 1], got {drop_at!r}")
    value = float(drop_at)
    if not (-1.0 <= value <= 1.0):
        raise ValueError(f"drop_at must be in [-1, 1], got {value!r}")
    return value


def _summary(arr: np.ndarray, drop_at: float) -> dict:
    below = np.flatnonzero(arr < drop_at)
    return {
        "n_frames": int(arr.size),
        "mean": float(arr.mean()),
        "min": float(arr.min()),
        "first_drop": int(below[0]) if below.size else None,
    }


def consistency_summary(curve: np.ndarray, *, drop_at: float = 0.5) -> dict:
    """Summarise one consistency curve.

    ``mean = (1/T) sum_t c[t]``, ``min = min_t c[t]``, ``first_drop = min{t : c[t] < drop_at}``
    (None if the curve never drops below ``drop_at``).

    Args:
        curve: (T,) float, T >= 1, values in [-1, 1] (probabilities or correlations).
        drop_at: level in [-1, 1]; 0.5 = the re-ID head's decision boundary.

    Returns:
        dict with ``n_frames`` (int), ``mean`` (float), ``min`` (float), ``first_drop``
        (int frame index or None).
    """
    arr = _check_curve(curve)
    return _summary(arr, _check_drop_at(drop_at))


def embedding_correlation(embeddings: np.ndarray) -> np.ndarray:
    """Pearson correlation of every frame's embedding with the first frame's (the paper's measure).

    ``r[t] = sum_d (e_t,d - mean(e_t)) (e_0,d - mean(e_0)) /
    sqrt(sum_d (e_t,d - mean(e_t))^2 * sum_d (e_0,d - mean(e_0))^2)``,
    i.e. the inner product of centred, unit-normalised feature vectors; r[0] = 1.

    Args:
        embeddings: (T, D) real array, T >= 1, D >= 2, finite.

    Returns:
        (T,) float64 in [-1, 1]. A frame whose embedding is constant (zero variance) has
        no defined correlation and gets NaN.

    Raises:
        ValueError: wrong shape, non-finite values, or a constant first frame.
    """
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2:
        raise ValueError(f"embeddings must be a (T, D) array with T >= 1 and D >= 2, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"embeddings must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"embeddings has {int(np.sum(~np.isfinite(arr)))} NaN/inf value(s); allowed: finite numbers")
    centred = arr - arr.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    # Relative tolerance: a frame is "constant" when its spread is rounding noise.
    scale = np.abs(arr).max(axis=1)
    constant = norms <= 1e-12 * np.maximum(scale, 1e-300) * np.sqrt(arr.shape[1])
    if constant[0]:
        raise ValueError("the first frame's embedding is constant: its Pearson correlation is undefined")
    with np.errstate(invalid="ignore", divide="ignore"):
        r = centred @ centred[0] / (norms * norms[0])
    r[constant] = np.nan
    r[0] = 1.0
    return np.clip(r, -1.0, 1.0)


def summarise_curves(
    curves: Mapping[str, np.ndarray],
    kind: Mapping[str, str],
    *,
    drop_at: float = 0.5,
) -> pd.DataFrame:
    """One row per curve (:func:`consistency_summary`), labelled real or synthetic.

    Args:
        curves: name -> (T,) curve; lengths may differ between videos.
        kind: name -> ``"real"`` or ``"synthetic"``; the same names as ``curves``.
        drop_at: level for ``first_drop``.

    Returns:
        DataFrame sorted by kind then name, columns ``name`` (str), ``kind`` (str),
        ``n_frames`` (int64), ``mean``, ``min`` (float64), ``first_drop`` (nullable
        ``Int64``, NA when the curve never drops).
    """
    if not isinstance(curves, Mapping) or not isinstance(kind, Mapping):
        raise ValueError(
            f"curves and kind must be dicts keyed by video name, got {type(curves).__name__} "
            f"and {type(kind).__name__}"
        )
    level = _check_drop_at(drop_at)
    missing = sorted(set(map(str, curves)) - set(map(str, kind)))
    extra = sorted(set(map(str, kind)) - set(map(str, curves)))
    if missing or extra:
        raise ValueError(
            f"kind must name exactly the videos in curves; without a kind: {missing[:5]}, "
            f"kind without a curve: {extra[:5]}"
        )
    bad = sorted(str(k) for k, v in kind.items() if v not in KINDS)
    if bad:
        raise ValueError(f"kind values must be one of {list(KINDS)}; {bad[:5]} have {[kind[k] for k in bad[:5]]}")
    rows = []
    for name, curve in curves.items():
        row = {"name": str(name), "kind": kind[name]}
        row.update(_summary(_check_curve(curve, f"curves[{name!r}]"), level))
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out = out.astype({"name": str, "kind": str, "n_frames": np.int64, "mean": np.float64, "min": np.float64})
    out["first_drop"] = pd.array([r["first_drop"] for r in rows], dtype="Int64")
    return out.sort_values(["kind", "name"], kind="mergesort").reset_index(drop=True)
