"""The display scale of re-identification scores: the head's logit.

The re-ID head's probability saturates: real different-patient pairs already score 0.99+,
so on a 0-1 axis every decision happens in the last half percent. Its logit

    x = logit(p) = log(p / (1 - p)),        p = expit(x) = 1 / (1 + exp(-x))

spreads those values out again (p = 0.99 -> 4.6, 0.999 -> 6.9, 0.9999 -> 9.2), and it is
the scale the paper states its threshold on (tau = 6.00). Score tables keep
probabilities in [0, 1]; the dashboard, figures and reports convert at the display edge.

Both directions work in float64 and clip to ``[-LOGIT_MAX, LOGIT_MAX]``, the logits of
the smallest and largest float64 probabilities that differ from 0 and 1 by at least one
float64 step near 1 (``2**-53``): p = 1.0 maps to a finite ``LOGIT_MAX`` (about 36.7) and
``from_logit(to_logit(p)) == p`` for every stored probability in ``[2**-53, 1 - 2**-53]``
up to rounding. Pure functions, no IO.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.special import expit, logit

__all__ = ["LOGIT_MAX", "P_EPS", "to_logit", "from_logit", "logit_range"]

#: Probabilities are clipped to [P_EPS, 1 - P_EPS] before the logit: the float64 step
#: below 1.0, so 1 - P_EPS is the largest float64 probability below 1.
P_EPS: float = 2.0**-53
#: logit(1 - P_EPS): what p = 1.0 maps to (about 36.74).
LOGIT_MAX: float = float(logit(1.0 - P_EPS))


def _as_float64(name: str, values: object) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a number or an array of numbers, got {values!r}")
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{name} must be a number or an array of numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} has {int(np.isnan(arr).sum())} NaN value(s); allowed: real numbers")
    return arr


def _out(arr: np.ndarray, scalar: bool):
    return float(arr) if scalar else arr


def to_logit(p):
    """Logit of probabilities: ``log(p / (1 - p))`` in float64, p clipped to [P_EPS, 1 - P_EPS].

    Args:
        p: a probability or an array of them, in [0, 1].

    Returns:
        float (for a scalar) or float64 array of the same shape, in [-LOGIT_MAX, LOGIT_MAX].

    Raises:
        ValueError: values outside [0, 1], NaN, or not numbers.
    """
    scalar = np.ndim(p) == 0
    arr = _as_float64("p", p)
    bad = arr[(arr < 0.0) | (arr > 1.0)]
    if bad.size:
        raise ValueError(f"p must be probabilities in [0, 1], got {bad.size} value(s) outside, e.g. {bad[:3].tolist()}")
    return _out(logit(np.clip(arr, P_EPS, 1.0 - P_EPS)), scalar)


def from_logit(x):
    """Probability of logits: ``expit(x) = 1 / (1 + exp(-x))`` in float64, x clipped to
    [-LOGIT_MAX, LOGIT_MAX] (so ``from_logit(to_logit(1.0)) = 1 - P_EPS``, never above).

    Args:
        x: a logit or an array of them (+-inf allowed: they clip).

    Returns:
        float (for a scalar) or float64 array of the same shape, in [P_EPS, 1 - P_EPS].

    Raises:
        ValueError: NaN or values that are not numbers.
    """
    scalar = np.ndim(x) == 0
    arr = _as_float64("x", x)
    return _out(expit(np.clip(arr, -LOGIT_MAX, LOGIT_MAX)), scalar)


def logit_range(*probabilities, pad: float = 1.0, step: float = 1.0,
                default: tuple[float, float] = (-5.0, 15.0)) -> tuple[float, float]:
    """A slider / axis range on the logit scale that holds every given probability.

    ``lo = step * floor((min x - pad) / step)``, ``hi = step * ceil((max x + pad) / step)``
    over ``x = to_logit(p)`` of all values given, then clipped to the multiples of ``step``
    inside [-LOGIT_MAX, LOGIT_MAX] (p = 1.0 maps to LOGIT_MAX, which no threshold can
    un-flag: a higher end would only add dead travel).

    Args:
        *probabilities: numbers or arrays of probabilities in [0, 1] (empty ones allowed).
        pad: margin (>= 0) added on both sides, in logit units.
        step: the ends are multiples of it (> 0).
        default: the range when no value is given.

    Returns:
        ``(lo, hi)`` floats with ``lo < hi``.

    Raises:
        ValueError: probabilities outside [0, 1] or NaN, ``pad < 0``, ``step <= 0``.
    """
    for name, v in (("pad", pad), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if pad < 0 or step <= 0:
        raise ValueError(f"need pad >= 0 and step > 0, got pad={pad!r}, step={step!r}")
    parts = [np.ravel(to_logit(p)) for p in probabilities]
    x = np.concatenate(parts) if parts else np.zeros(0)
    if x.size == 0:
        return float(default[0]), float(default[1])
    lo = step * math.floor((float(x.min()) - pad) / step)
    hi = step * math.ceil((float(x.max()) + pad) / step)
    end = step * math.floor(LOGIT_MAX / step)
    lo, hi = max(lo, -end), min(hi, end)
    if hi <= lo:  # one value and no pad, or every value at a clipped end
        lo, hi = (end - step, end) if hi >= end else ((-end, -end + step) if lo <= -end else (lo, lo + step))
    return float(lo), float(hi)
