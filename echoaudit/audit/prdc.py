"""Precision, recall, density and coverage of a synthetic set against a real one.

Naeem, Oh, Uh, Choi and Yoo, "Reliable Fidelity and Diversity Metrics for Generative
Models" (ICML 2020); the same definitions as their ``prdc`` package.

Notation: real features ``X_1..X_N``, fake features ``Y_1..Y_M`` (rows), Euclidean
distance ``d``, ``NND_k(Z)`` = distance from ``Z`` to its k-th nearest neighbour in its
own set (the point itself is its 0-th neighbour, so duplicates count as neighbours),
``B(c, r)`` = open ball ``{z : d(z, c) < r}``::

    precision = 1/M  sum_j 1[ exists i : Y_j in B(X_i, NND_k(X_i)) ]
    recall    = 1/N  sum_i 1[ exists j : X_i in B(Y_j, NND_k(Y_j)) ]
    density   = 1/(kM) sum_j sum_i 1[ Y_j in B(X_i, NND_k(X_i)) ]
    coverage  = 1/N  sum_i 1[ exists j : Y_j in B(X_i, NND_k(X_i)) ]

Precision and density measure fidelity (fakes inside the real manifold; density counts
how many real neighbourhoods hold each fake and can exceed 1); recall and coverage
measure diversity (coverage: share of real neighbourhoods that hold at least one fake).

Distance matrices are computed in row blocks so memory stays ``O(block * max(N, M))``.
Pure function: no IO, no printing.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["compute_prdc"]

# Distances held at once per block (float64, 8 bytes each): about 32 MB.
_BLOCK_VALUES = 4_000_000


def _check_features(name: str, features: object) -> np.ndarray:
    arr = np.asarray(features)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples, feature_dim), got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one feature column, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
    return arr


def _blocks(n_rows: int, n_cols: int):
    step = max(1, _BLOCK_VALUES // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def _kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """(n,) distance from each row to its k-th nearest row (itself = 0-th)."""
    n = features.shape[0]
    radii = np.empty(n)
    for start, stop in _blocks(n, n):
        dist = cdist(features[start:stop], features)
        # Self distances are exactly 0 in exact arithmetic; make them so in floats too.
        dist[np.arange(stop - start), np.arange(start, stop)] = 0.0
        radii[start:stop] = np.partition(dist, k, axis=1)[:, k]
    return radii


def compute_prdc(
    real_features: np.ndarray, fake_features: np.ndarray, nearest_k: int = 5
) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020; formulas in the module).

    Args:
        real_features: (N, D) real numbers (any float/int dtype; computed in float64).
        fake_features: (M, D) real numbers, same D.
        nearest_k: k of the k-NN radii, integer with ``1 <= k < min(N, M)``.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as Python floats; precision,
        recall and coverage in [0, 1], density in [0, N/k].

    Raises:
        ValueError: arrays not 2-D, non-numeric or non-finite, feature dims that differ,
            ``nearest_k`` not an integer in ``[1, min(N, M) - 1]``.
    """
    real = _check_features("real_features", real_features)
    fake = _check_features("fake_features", fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            "real_features and fake_features need the same feature_dim, "
            f"got {real.shape[1]} and {fake.shape[1]}"
        )
    n_real, n_fake = real.shape[0], fake.shape[0]
    if isinstance(nearest_k, bool) or not isinstance(nearest_k, numbers.Integral):
        raise ValueError(f"nearest_k must be an integer, got {nearest_k!r}")
    if not 1 <= int(nearest_k) < min(n_real, n_fake):
        raise ValueError(
            f"nearest_k must be in [1, min(N, M) - 1] = [1, {min(n_real, n_fake) - 1}] "
            f"for N={n_real} real and M={n_fake} fake samples, got {nearest_k}"
        )
    k = int(nearest_k)

    real_radii = _kth_neighbour_radii(real, k)
    fake_radii = _kth_neighbour_radii(fake, k)

    # Per fake: how many real balls hold it. Per real: is it inside any fake ball, and the
    # distance to its nearest fake. One pass over fake blocks gives all three.
    balls_holding_fake = np.empty(n_fake, dtype=np.int64)
    real_in_fake_ball = np.zeros(n_real, dtype=bool)
    nearest_fake = np.full(n_real, np.inf)
    for start, stop in _blocks(n_fake, n_real):
        dist = cdist(fake[start:stop], real)  # (block, N)
        balls_holding_fake[start:stop] = np.count_nonzero(dist < real_radii[None, :], axis=1)
        real_in_fake_ball |= np.any(dist < fake_radii[start:stop, None], axis=0)
        np.minimum(nearest_fake, dist.min(axis=0), out=nearest_fake)

    return {
        "precision": float(np.mean(balls_holding_fake > 0)),
        "recall": float(np.mean(real_in_fake_ball)),
        "density": float(balls_holding_fake.sum() / (k * n_fake)),
        "coverage": float(np.mean(nearest_fake < real_radii)),
    }
