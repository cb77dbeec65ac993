"""Confidence intervals for the headline numbers of an audit.

Every number the audit reports in a meeting carries an interval and names the rule that
made it; :class:`Estimate` is the record that travels with such a number.

Rules
-----
- Shares (recall, flagged fraction): the Wilson score interval of a binomial proportion,
  with ``p = x / n`` and ``z = Phi^-1((1 + conf) / 2)``::

      centre = (p + z^2 / (2n)) / (1 + z^2 / n)
      half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
      (low, high) = (centre - half, centre + half)

  It stays inside [0, 1] and keeps close to nominal coverage at p near 0 or 1, where the
  normal (Wald) interval collapses to a point.
- A difference of two independent shares (flagged synthetic share minus the real
  false-flag rate): Newcombe's hybrid score interval (Newcombe 1998, Stat. Med. 17:873,
  method 10), built from the two Wilson intervals ``(l1, u1)`` of ``p1`` and ``(l2, u2)``
  of ``p2``::

      d    = p1 - p2
      low  = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
      high = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)
- The privacy threshold (a quantile of held-out best-match scores): the percentile
  bootstrap. Resample the values with replacement ``n_boot`` times, take the quantile of
  each resample, report the ``(1 - conf) / 2`` and ``(1 + conf) / 2`` quantiles of those.
- The re-identification AUC: the same percentile bootstrap, resampling positives and
  negatives separately (stratified) so that every resample holds both classes and the
  class balance of the data.

All functions are pure: no IO, no printing; randomness only through an explicit seed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score

__all__ = [
    "Estimate",
    "wilson_interval",
    "newcombe_interval",
    "bootstrap_quantile_interval",
    "bootstrap_auc",
]

# Rows per bootstrap chunk are chosen so one chunk holds about this many values: it bounds
# memory (8 bytes each) when the sample is large, and keeps numpy vectorised when small.
_BOOT_CHUNK_VALUES = 2_000_000
#: Quantile methods of numpy the threshold may use (see privacy.calibrate_threshold).
QUANTILE_METHODS: tuple[str, ...] = ("linear", "weibull")


@dataclass(frozen=True)
class Estimate:
    """A headline number with its interval and the rule that made both.

    Attributes:
        value: the point estimate (float).
        low: lower end of the interval (float, ``low <= high``).
        high: upper end of the interval (float).
        rule: plain-words name of the method, including the confidence level, e.g.
            ``"Wilson score interval, 95 %"``.
    """

    value: float
    low: float
    high: float
    rule: str

    def __post_init__(self) -> None:
        for name in ("value", "low", "high"):
            raw = getattr(self, name)
            if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
                raise ValueError(f"Estimate.{name} must be a real number, got {raw!r}")
            # Plain floats so that to_dict() is JSON-ready whatever numpy type came in.
            object.__setattr__(self, name, float(raw))
        if not isinstance(self.rule, str) or not self.rule.strip():
            raise ValueError(f"Estimate.rule must be a non-empty string naming the method, got {self.rule!r}")
        if self.low > self.high:
            raise ValueError(f"Estimate needs low <= high, got low={self.low!r}, high={self.high!r}")

    def to_dict(self) -> dict[str, float | str]:
        """``{"value", "low", "high", "rule"}`` with plain Python types (JSON-ready)."""
        return asdict(self)


def _check_conf(conf: float) -> float:
    if isinstance(conf, bool) or not isinstance(conf, numbers.Real) or not 0.0 < float(conf) < 1.0:
        raise ValueError(f"conf must be a number strictly between 0 and 1 (e.g. 0.95), got {conf!r}")
    return float(conf)


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def wilson_interval(successes: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n``.

    Args:
        successes: number of successes, integer in ``[0, n]``.
        n: number of trials, integer ``>= 1``.
        conf: two-sided confidence level in (0, 1).

    Returns:
        ``(low, high)``, floats in [0, 1]; formula in the module docstring.

    Raises:
        ValueError: counts that are not integers, ``n < 1``, ``successes`` outside
            ``[0, n]``, or ``conf`` outside (0, 1).
    """
    n = _check_count("n", n, 1)
    successes = _check_count("successes", successes, 0)
    if successes > n:
        raise ValueError(f"successes must be <= n, got successes={successes}, n={n}")
    conf = _check_conf(conf)

    z = norm.ppf(0.5 + conf / 2.0)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # Clip only the rounding noise at p = 0 or 1; the formula itself stays in [0, 1].
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def newcombe_interval(
    successes1: int, n1: int, successes2: int, n2: int, conf: float = 0.95
) -> tuple[float, float, float]:
    """Newcombe's hybrid score interval of ``p1 - p2`` for two independent proportions.

    ``p1 = successes1 / n1``, ``p2 = successes2 / n2``; the ends combine the two Wilson
    intervals at level ``conf`` (formula in the module docstring), so they stay inside
    [-1, 1] and keep close to nominal coverage when a share is near 0 or 1.

    Args:
        successes1, n1: the first proportion (e.g. flagged synthetic videos of all).
        successes2, n2: the second (e.g. flagged real check videos of all).
        conf: two-sided confidence level in (0, 1).

    Returns:
        ``(difference, low, high)`` floats with ``low <= difference <= high``.

    Raises:
        ValueError: as :func:`wilson_interval`, for either proportion.
    """
    l1, u1 = wilson_interval(successes1, n1, conf)
    l2, u2 = wilson_interval(successes2, n2, conf)
    p1, p2 = successes1 / n1, successes2 / n2
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return float(d), float(max(-1.0, low)), float(min(1.0, high))


def _as_1d_finite(name: str, values: object, min_len: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.shape[0] < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {arr.shape[0]}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
    return arr


def _rng(seed: object) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be an integer >= 0 or a np.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _percentile_ends(boot: np.ndarray, conf: float) -> tuple[float, float]:
    low, high = np.quantile(boot, [0.5 - conf / 2.0, 0.5 + conf / 2.0])
    return float(low), float(high)


def bootstrap_quantile_interval(
    values: np.ndarray,
    q: float,
    *,
    n_boot: int = 1000,
    conf: float = 0.95,
    seed: int | np.random.Generator = 0,
    method: str = "linear",
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the ``q``-quantile of ``values``.

    Used for the privacy threshold: ``tau = quantile(best held-out scores, 0.95)``.
    Each of ``n_boot`` resamples draws ``len(values)`` values with replacement and takes
    ``np.quantile(resample, q, method=method)`` (default: linear interpolation); the interval is the
    ``(1 - conf) / 2`` and ``(1 + conf) / 2`` quantiles of those ``n_boot`` numbers.
    For a high quantile of a small sample the interval is coarse (it can only land on
    observed values and their neighbours): report it, do not hide it.

    Args:
        values: (m,) real numbers, finite, ``m >= 2``.
        q: the quantile in [0, 1] (0.95 for the 95th percentile, not 95).
        n_boot: number of bootstrap resamples, ``>= 10``.
        conf: two-sided confidence level in (0, 1).
        seed: seed (integer >= 0) or ``np.random.Generator`` that draws the resamples.
        method: numpy's quantile method, one of :data:`QUANTILE_METHODS` ("linear", or
            "weibull": position q (m + 1), the unbiased plotting position).

    Returns:
        ``(low, high)`` floats. The point value is ``np.quantile(values, q, method=method)``.

    Raises:
        ValueError: bad ``values`` (shape, too few, non-finite), ``q`` outside [0, 1],
            ``n_boot < 10``, ``conf`` outside (0, 1), an unknown method, or a bad seed.
    """
    arr = _as_1d_finite("values", values, 2)
    if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"q must be a quantile in [0, 1] (0.95 for the 95th percentile), got {q!r}")
    n_boot = _check_count("n_boot", n_boot, 10)
    conf = _check_conf(conf)
    if method not in QUANTILE_METHODS:
        raise ValueError(f"method must be one of {list(QUANTILE_METHODS)}, got {method!r}")
    rng = _rng(seed)
    m = arr.shape[0]
    rows = max(1, _BOOT_CHUNK_VALUES // m)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, m, size=(stop - start, m))
        boot[start:stop] = np.quantile(arr[idx], float(q), axis=1, method=method)
    return _percentile_ends(boot, conf)


def _rank_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC of (B, P) positive against (B, Q) negative scores.

    Mann-Whitney form, ``(R_pos - P (P + 1) / 2) / (P Q)`` with mid-ranks for ties: the
    same number as ``roc_auc_score`` (ties count 1/2), for a whole block of resamples in
    one sort instead of one sklearn call (~ms of validation overhead) per resample.
    """
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def bootstrap_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    n_boot: int = 1000,
    conf: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float, float]:
    """ROC AUC (``sklearn.metrics.roc_auc_score``) with a stratified percentile bootstrap.

    Each resample draws the ``n_pos`` positives with replacement from the positives and the
    ``n_neg`` negatives from the negatives, so both classes are always present and keep
    their proportions; the interval is the ``(1 - conf) / 2`` and ``(1 + conf) / 2``
    quantiles of the resampled AUCs. The point value is ``roc_auc_score``; resamples use
    its rank (Mann-Whitney) form, equal to it up to rounding and vectorised over resamples.

    Args:
        labels: (m,) 0/1 or bool; 1 = positive (e.g. same-video pair). Both classes needed.
        scores: (m,) finite real scores, higher = more likely positive.
        n_boot: number of bootstrap resamples, ``>= 10``.
        conf: two-sided confidence level in (0, 1).
        seed: seed (integer >= 0) or ``np.random.Generator`` that draws the resamples.

    Returns:
        ``(auc, low, high)`` floats.

    Raises:
        ValueError: mismatched lengths, labels other than 0/1, a missing class,
            non-finite scores, ``n_boot < 10``, ``conf`` outside (0, 1), or a bad seed.
    """
    lab = np.asarray(labels)
    sc = _as_1d_finite("scores", scores, 2)
    if lab.ndim != 1 or lab.shape[0] != sc.shape[0]:
        raise ValueError(
            f"labels must be 1-D with the length of scores ({sc.shape[0]}), got shape {lab.shape}"
        )
    if not (np.issubdtype(lab.dtype, np.number) or lab.dtype == bool):
        raise ValueError(f"labels must be 0/1 or bool, got dtype {lab.dtype}")
    bad = ~np.isin(lab, (0, 1))
    if np.any(bad):
        raise ValueError(f"labels must be 0/1 or bool, got values {np.unique(lab[bad])[:5].tolist()}")
    lab = lab.astype(np.int64)
    n_pos = int(lab.sum())
    n_neg = int(lab.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"labels need both classes for an AUC, got {n_pos} positives and {n_neg} negatives")
    n_boot = _check_count("n_boot", n_boot, 10)
    conf = _check_conf(conf)
    rng = _rng(seed)

    auc = float(roc_auc_score(lab, sc))
    pos = sc[lab == 1]
    neg = sc[lab == 0]
    rows = max(1, _BOOT_CHUNK_VALUES // (n_pos + n_neg))
    boot = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        pos_b = pos[rng.integers(0, n_pos, size=(stop - start, n_pos))]
        neg_b = neg[rng.integers(0, n_neg, size=(stop - start, n_neg))]
        boot[start:stop] = _rank_auc(pos_b, neg_b)
    low, high = _percentile_ends(boot, conf)
    return auc, low, high
