"""Temporal consistency: does a video stay one patient from its first frame to its last?

Dombrowski et al. (arXiv 2411.04956) compare every frame of a video with its first
frame. Real videos stay consistent (the authors' notebooks show a mean same-identity
score near 0.79 over 80 frames); synthetic ones can drift to another identity. A
*curve* is a 1-D array c of length T with c[0] the first frame against itself:
either re-identification probabilities P(same patient | frame 0, frame t) in [0, 1] or
the Pearson correlations of :func:`embedding_correlation` in [-1, 1].

Summaries leave frame 0 out (it is compared with itself) and give times in seconds:
videos run at different rates (real EchoNet 50 fps, synthetic often 25 fps) and are
queried every k-th frame, so a position in a curve is neither a frame nor a time.
:func:`resample_curve` puts curves of any rate on one time grid;
:func:`sample_spread_over_patients` picks the real curves to compare with.

All functions are pure: no IO, no printing.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "KINDS",
    "consistency_summary",
    "embedding_correlation",
    "resample_curve",
    "sample_spread_over_patients",
    "summarise_curves",
    "summarise_segments",
]

KINDS: tuple[str, ...] = ("real", "synthetic")
SUMMARY_COLUMNS: tuple[str, ...] = ("name", "kind", "n_frames", "mean", "min", "first_drop", "drop_s")


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


def _check_times(times: object, n: int, name: str) -> np.ndarray:
    arr = np.asarray(times, dtype=np.float64) if times is not None else None
    if arr is None or arr.shape != (n,) or not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
        got = None if arr is None else f"shape {arr.shape}"
        raise ValueError(f"{name} must be {n} finite, strictly increasing times in seconds (one per curve point), "
                         f"got {got}")
    return arr


def _summary(arr: np.ndarray, drop_at: float, times: np.ndarray | None = None) -> dict:
    later = arr[1:]  # frame 0 is the first frame against itself
    below = np.flatnonzero(later < drop_at)
    first = int(below[0]) + 1 if below.size else None
    return {
        "n_frames": int(arr.size),
        "mean": float(later.mean()) if later.size else float("nan"),
        "min": float(later.min()) if later.size else float("nan"),
        "first_drop": first,
        "drop_s": float(times[first]) if (first is not None and times is not None) else float("nan"),
    }


def consistency_summary(curve: np.ndarray, *, drop_at: float = 0.5, times: np.ndarray | None = None) -> dict:
    """Summarise one consistency curve, leaving out point 0 (the first frame against itself).

    ``mean = (1/(T-1)) sum_{t>=1} c[t]``, ``min = min_{t>=1} c[t]`` (NaN when T = 1),
    ``first_drop = min{t >= 1 : c[t] < drop_at}`` (the position in the curve, None if it
    never drops), ``drop_s = times[first_drop]`` (seconds; NaN without ``times`` or drop).

    Args:
        curve: (T,) float, T >= 1, values in [-1, 1] (probabilities or correlations).
        drop_at: level in [-1, 1]; 0.5 = the re-ID head's decision boundary.
        times: optional (T,) strictly increasing times of the points, in seconds.

    Returns:
        dict with ``n_frames`` (int), ``mean``, ``min`` (float), ``first_drop`` (int
        position or None), ``drop_s`` (float seconds or NaN).
    """
    arr = _check_curve(curve)
    t = None if times is None else _check_times(times, arr.size, "times")
    return _summary(arr, _check_drop_at(drop_at), t)


def resample_curve(times: np.ndarray, curve: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A curve sampled at ``times`` (s), linearly interpolated onto ``grid`` (s).

    Points of ``grid`` outside ``[times[0], times[-1]]`` get NaN (no extrapolation), so
    curves of different lengths and rates average on one axis with ``np.nanmean``.

    Args:
        times: (T,) strictly increasing seconds; curve: (T,) values in [-1, 1];
        grid: (G,) seconds.

    Returns:
        (G,) float64.
    """
    arr = _check_curve(curve)
    t = _check_times(times, arr.size, "times")
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or not np.all(np.isfinite(g)):
        raise ValueError(f"grid must be a 1-D array of finite seconds, got shape {g.shape}")
    out = np.interp(g, t, arr)
    out[(g < t[0]) | (g > t[-1])] = np.nan
    return out


def sample_spread_over_patients(names: Sequence[str], patients: Sequence[str], n: int, *, seed: int = 0) -> list[str]:
    """A seeded sample of ``n`` videos spread over as many patients as possible.

    Patients are shuffled with ``np.random.default_rng(seed)``, each patient's videos too;
    then videos are taken round-robin: one video of every patient before a second of any.

    Args:
        names: (V,) unique video names; patients: (V,) the patient of each.
        n: integer >= 1 (all videos when n >= V).
        seed: integer >= 0.

    Returns:
        list of min(n, V) names, in the order taken.
    """
    names = [str(v) for v in names]
    if patients is None or isinstance(patients, (str, bytes)) or len(patients) != len(names):
        raise ValueError(f"patients must hold one patient per video ({len(names)})")
    if len(set(names)) != len(names):
        raise ValueError("names must be unique video names")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    by_patient: dict[str, list[str]] = {}
    for v, p in zip(names, patients):
        by_patient.setdefault(str(p), []).append(v)
    order = [sorted(by_patient)[i] for i in rng.permutation(len(by_patient))]
    queues = [[by_patient[p][i] for i in rng.permutation(len(by_patient[p]))] for p in order]
    out: list[str] = []
    depth = 0
    while len(out) < min(int(n), len(names)):
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(q[depth])
        depth += 1
    return out


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
    times: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per curve (:func:`consistency_summary`, point 0 left out), labelled real or synthetic.

    Args:
        curves: name -> (T,) curve; lengths may differ between videos.
        kind: name -> ``"real"`` or ``"synthetic"``; the same names as ``curves``.
        drop_at: level for ``first_drop``.
        times: optional name -> (T,) seconds of each curve's points (for ``drop_s``).

    Returns:
        DataFrame sorted by kind then name, columns ``name`` (str), ``kind`` (str),
        ``n_frames`` (int64), ``mean``, ``min`` (float64), ``first_drop`` (nullable
        ``Int64`` position, NA when the curve never drops), ``drop_s`` (float64 seconds).
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
        arr = _check_curve(curve, f"curves[{name!r}]")
        t = None if times is None else _check_times(times.get(name), arr.size, f"times[{name!r}]")
        row.update(_summary(arr, level, t))
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out = out.astype({"name": str, "kind": str, "n_frames": np.int64, "mean": np.float64, "min": np.float64,
                      "drop_s": np.float64})
    out["first_drop"] = pd.array([r["first_drop"] for r in rows], dtype="Int64")
    return out.sort_values(["kind", "name"], kind="mergesort").reset_index(drop=True)


def summarise_segments(
    names: Sequence[str],
    kinds: Sequence[str],
    values: np.ndarray,
    starts: np.ndarray,
    *,
    drop_at: float = 0.5,
    times: np.ndarray | None = None,
) -> pd.DataFrame:
    """:func:`summarise_curves` of curves stored end to end, in a few array operations
    (tens of thousands of videos in milliseconds, where one call per curve takes seconds).

    Curve i is ``values[starts[i]:starts[i + 1]]`` (the last runs to the end), named
    ``names[i]`` with kind ``kinds[i]``; ``times`` (same length as ``values``) gives each
    point's seconds. The result equals ``summarise_curves({names[i]: curve i}, {names[i]:
    kinds[i]}, drop_at=drop_at, times={names[i]: times of curve i})``: per curve ``mean``
    and ``min`` over points 1.. (NaN for a single point), ``first_drop`` the first position
    t >= 1 with ``c[t] < drop_at`` (NA if none), ``drop_s = times[first_drop]``.

    Args:
        names: (V,) distinct curve names; kinds: (V,) ``"real"`` or ``"synthetic"``.
        values: (N,) curve points in [-1, 1], finite.
        starts: (V,) int, starts[0] = 0, strictly increasing, < N.
        drop_at: level in [-1, 1].
        times: optional (N,) seconds, strictly increasing within each curve.

    Returns:
        the DataFrame of :func:`summarise_curves` (sorted by kind then name).

    Raises:
        ValueError: as :func:`summarise_curves` for a bad curve, time or kind (the check
            falls back to it for the message), or for ``starts`` that do not cut ``values``.
    """
    level = _check_drop_at(drop_at)
    v = np.asarray(values, dtype=np.float64)
    st = np.asarray(starts, dtype=np.int64)
    names = [str(n) for n in names]
    kinds = [str(k) for k in kinds]
    if v.ndim != 1 or st.ndim != 1 or len(names) != st.size or len(kinds) != st.size:
        raise ValueError(f"values and starts must be 1-D with one start, name and kind per curve; got values "
                         f"{v.shape}, starts {st.shape}, {len(names)} names, {len(kinds)} kinds")
    if st.size == 0:
        return summarise_curves({}, {}, drop_at=level)
    if st[0] != 0 or np.any(np.diff(st) <= 0) or st[-1] >= v.size:
        raise ValueError(f"starts must begin at 0 and increase strictly below {v.size}, got {st[:5].tolist()} ...")
    if len(set(names)) != len(names):
        raise ValueError("names must be distinct (one per curve)")
    ends = np.r_[st[1:], v.size]
    t = None if times is None else np.asarray(times, dtype=np.float64)
    first = np.zeros(v.size, bool)
    first[st] = True
    bad_t = t is not None and (t.shape != v.shape or not np.all(np.isfinite(t)) or np.any(np.diff(t)[~first[1:]] <= 0))
    if (not np.all(np.isfinite(v)) or np.any(np.abs(v) > 1.0) or bad_t or any(k not in KINDS for k in kinds)):
        # the per-curve function finds the culprit and says what is wrong with it
        return summarise_curves({n: v[a:b] for n, a, b in zip(names, st, ends)}, dict(zip(names, kinds)),
                                drop_at=level,
                                times=None if t is None or t.shape != v.shape else
                                {n: t[a:b] for n, a, b in zip(names, st, ends)})
    later = ends - st - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(np.where(first, 0.0, v), st) / later
    low = np.minimum.reduceat(np.where(first, np.inf, v), st)
    mean[later == 0], low[later == 0] = np.nan, np.nan
    pos = np.arange(v.size)
    hit = np.minimum.reduceat(np.where(~first & (v < level), pos, v.size), st)
    dropped = hit < ends
    first_drop = np.where(dropped, hit - st, 0)
    drop_s = np.full(st.size, np.nan)
    if t is not None:
        drop_s[dropped] = t[hit[dropped]]
    drop_pos = pd.array(first_drop, dtype="Int64")
    drop_pos[~dropped] = pd.NA
    out = pd.DataFrame({"name": names, "kind": kinds, "n_frames": (ends - st).astype(np.int64), "mean": mean,
                        "min": low, "first_drop": drop_pos, "drop_s": drop_s})
    out = out.astype({"name": str, "kind": str})
    return out.sort_values(["kind", "name"], kind="mergesort").reset_index(drop=True)
