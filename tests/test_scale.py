"""The logit display scale: round trips, p = 1 and p = 0 finite, slider ranges, errors."""

import numpy as np
import pytest
from scipy.special import expit

from echoaudit.audit.scale import LOGIT_MAX, P_EPS, from_logit, logit_range, to_logit


def test_logit_by_hand_and_float64():
    # log(0.99 / 0.01) = log(99) = 4.59512; the paper's tau = 6.00 is p = expit(6) = 0.997527
    assert to_logit(0.5) == 0.0
    assert to_logit(0.99) == pytest.approx(4.595120, abs=1e-6)
    assert from_logit(6.0) == pytest.approx(0.997527, abs=1e-6)
    x = to_logit(np.array([0.9, 0.999, 0.9999], dtype=np.float32))
    assert x.dtype == np.float64 and isinstance(to_logit(0.9), float) and isinstance(from_logit(1.0), float)


def test_probabilities_near_one_keep_their_differences():
    # two probabilities 1e-6 apart near 1: far apart on the logit scale
    p = np.array([0.999990, 0.999991])
    x = to_logit(p)
    assert x[1] - x[0] == pytest.approx(np.log(1 / 0.000009) - np.log(1 / 0.00001), rel=1e-4)
    np.testing.assert_allclose(from_logit(x), p, rtol=0, atol=1e-15)


def test_ends_are_finite_and_clipped():
    assert to_logit(1.0) == pytest.approx(LOGIT_MAX) and np.isfinite(LOGIT_MAX) and 36 < LOGIT_MAX < 37
    assert to_logit(0.0) == pytest.approx(-LOGIT_MAX)
    assert from_logit(np.inf) == from_logit(LOGIT_MAX) <= 1 - P_EPS
    assert from_logit(-np.inf) == pytest.approx(P_EPS)
    assert to_logit(1.0) > to_logit(1 - 1e-15) > to_logit(1 - 1e-12)


@pytest.mark.parametrize("x", [-30.0, -5.0, -0.3, 0.0, 2.5, 7.21, 20.0, 30.0])
def test_round_trip(x):
    # exact up to the float64 step of 1 - p near 1: eps / (1 - p) ~ eps * e^x
    assert to_logit(from_logit(x)) == pytest.approx(x, abs=1e-6 + np.finfo(float).eps * np.exp(abs(x)))
    assert from_logit(x) == expit(x)


def test_logit_range_holds_every_value_and_rounds_out():
    lo, hi = logit_range([0.3, 0.9999], 0.99)  # logits -0.85, 9.21, 4.6; pad 1 -> -1.85, 10.21
    assert (lo, hi) == (-2.0, 11.0)
    assert logit_range([0.5], pad=0.0, step=0.5) == (0.0, 0.5)
    assert logit_range() == (-5.0, 15.0) and logit_range(np.array([])) == (-5.0, 15.0)
    lo, hi = logit_range([1.0, 0.999])  # p = 1: the end stays a whole step inside LOGIT_MAX
    assert hi == 36.0 and lo == 5.0
    assert logit_range([1.0]) == (35.0, 36.0)


def test_errors_name_the_value():
    with pytest.raises(ValueError, match=r"p must be probabilities in \[0, 1\], got 1 value\(s\) outside, e.g. \[1.5\]"):
        to_logit([0.2, 1.5])
    with pytest.raises(ValueError, match=r"x has 1 NaN value\(s\)"):
        from_logit([np.nan, 1.0])
    with pytest.raises(ValueError, match="p must be a number or an array of numbers, got '0.5'"):
        to_logit("0.5")
    with pytest.raises(ValueError, match="need pad >= 0 and step > 0, got pad=1.0, step=0"):
        logit_range([0.5], step=0)
