"""Occupancy model and learned-video estimator, against enumeration, exact integer
arithmetic and simulation with a known answer."""

from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from echoaudit.audit.intervals import Estimate
from echoaudit.audit.occupancy import (
    LearnedEstimate,
    estimate_learned,
    expected_distinct,
    ideal_recall_curve,
    log_occupancy_pmf,
    variance_distinct,
)


def _distinct_per_row(draws: np.ndarray) -> np.ndarray:
    """(runs, n) integer draws -> (runs,) number of distinct values per row."""
    ordered = np.sort(draws, axis=1)
    return 1 + np.count_nonzero(np.diff(ordered, axis=1), axis=1)


def _stirling2(n: int, k: int) -> int:
    """Exact S(n, k) with Python integers (independent of the module's recurrence)."""
    row = [1] + [0] * k  # S(0, j)
    for m in range(1, n + 1):
        new = [0] * (k + 1)
        for j in range(1, min(m, k) + 1):
            new[j] = j * row[j] + row[j - 1]
        row = new
    return row[k]


# ---------------------------------------------------------------------------- pmf


@pytest.mark.parametrize(("s", "n"), [(1, 3), (2, 5), (3, 4), (4, 4), (5, 3), (3, 6)])
def test_exact_pmf_matches_enumeration(s, n):
    counts = np.zeros(min(n, s) + 1)
    for seq in itertools.product(range(s), repeat=n):
        counts[len(set(seq))] += 1
    expected = counts / s**n
    got = np.exp(log_occupancy_pmf(np.arange(min(n, s) + 1), s, n, method="exact"))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("s", "n", "k"), [(20, 30, 12), (20, 30, 20), (40, 25, 25), (100, 60, 3)])
def test_exact_pmf_matches_stirling_formula(s, n, k):
    exact = Fraction(math.perm(s, k) * _stirling2(n, k), s**n)
    log_exact = math.log(exact.numerator) - math.log(exact.denominator)
    assert log_occupancy_pmf(k, s, n, method="exact") == pytest.approx(log_exact, rel=1e-10, abs=1e-10)


def test_pmf_matches_simulation():
    rng = np.random.default_rng(7)
    s, n, runs = 30, 40, 20_000
    ks = _distinct_per_row(rng.integers(0, s, size=(runs, n)))
    freq = np.bincount(ks, minlength=s + 1) / runs
    p = np.exp(log_occupancy_pmf(np.arange(s + 1), s, n))
    # Binomial standard error of each frequency; 5 SE leaves room for 31 cells at once.
    se = np.sqrt(p * (1 - p) / runs)
    assert np.all(np.abs(freq - p) <= 5 * se + 1e-4)


@pytest.mark.parametrize(("s", "n"), [(5, 7), (50, 25), (300, 600), (1000, 3), (2, 9), (40, 400)])
def test_closed_form_moments_match_exact_pmf(s, n):
    k = np.arange(min(n, s) + 1)
    p = np.exp(log_occupancy_pmf(k, s, n, method="exact"))
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    mean = (p * k).sum()
    var = (p * k * k).sum() - mean**2
    assert expected_distinct(n, s) == pytest.approx(mean, rel=1e-12)
    assert variance_distinct(n, s) == pytest.approx(var, rel=1e-7, abs=1e-12)


def test_variance_is_stable_when_n_is_much_smaller_than_s():
    # Naive s^2-sized terms cancel to rounding noise here; the exact variance is tiny.
    s, n = 10**7, 10
    k = np.arange(n + 1)
    p = np.exp(log_occupancy_pmf(k, s, n, method="exact"))
    mean = (p * k).sum()
    exact_var = (p * (k - mean) ** 2).sum()
    assert exact_var == pytest.approx(n * (n - 1) / (2 * s), rel=1e-3)
    assert variance_distinct(n, s) == pytest.approx(exact_var, rel=1e-4)


@pytest.mark.parametrize(("s", "n"), [(300, 600), (1000, 2000), (500, 300)])
def test_normal_approximation_is_close_to_exact(s, n):
    k = np.arange(min(n, s) + 1)
    exact = np.exp(log_occupancy_pmf(k, s, n, method="exact"))
    approx = np.exp(log_occupancy_pmf(k, s, n, method="normal"))
    total_variation = 0.5 * np.abs(exact - approx).sum()
    assert total_variation < 0.03
    assert np.abs(exact - approx).max() < 0.1 * exact.max()


def test_pmf_support_and_edge_cases():
    assert log_occupancy_pmf(0, 10, 0) == 0.0  # no draws: surely nothing hit
    assert log_occupancy_pmf(3, 1, 3) == -np.inf  # one video: k = 1 surely
    assert log_occupancy_pmf(1, 1, 3) == 0.0
    out = log_occupancy_pmf(np.array([[-1, 0, 1], [6, 7, 11]]), 6, 10)
    assert out.shape == (2, 3)
    assert np.all(np.isneginf(out[0, :2])) and np.all(np.isneginf(out[1, 1:]))
    assert np.isfinite(out[0, 2]) and np.isfinite(out[1, 0])
    # Far tail is finite in log space (would underflow as a probability).
    assert -800 < log_occupancy_pmf(1, 1000, 100, method="exact") < -600
    # Point mass when every video is surely hit (variance 0 in float64).
    assert log_occupancy_pmf(50, 50, 10**6, method="normal") == pytest.approx(0.0, abs=1e-12)
    assert log_occupancy_pmf(49, 50, 10**6, method="normal") == -np.inf


def test_pmf_argument_errors():
    with pytest.raises(ValueError, match=r"s must be an integer >= 1, got 0"):
        log_occupancy_pmf(1, 0, 5)
    with pytest.raises(ValueError, match=r"n must be an integer >= 0, got -1"):
        log_occupancy_pmf(1, 5, -1)
    with pytest.raises(ValueError, match=r"method must be one of .*got 'fast'"):
        log_occupancy_pmf(1, 5, 5, method="fast")
    with pytest.raises(ValueError, match=r"k must be integer\(s\), got 1.5"):
        log_occupancy_pmf(1.5, 5, 5)


# ---------------------------------------------------------------------------- curves


def test_ideal_recall_curve_and_expected_distinct():
    n = np.array([0, 1, 10, 1000, 10**6])
    N = 1000
    direct = 1.0 - (1.0 - 1.0 / N) ** n
    np.testing.assert_allclose(ideal_recall_curve(n, N), direct, rtol=1e-12)
    np.testing.assert_allclose(ideal_recall_curve(n, N), expected_distinct(n, N) / N, rtol=1e-12)
    assert ideal_recall_curve(1, 1) == 1.0
    assert ideal_recall_curve(0, 1) == 0.0
    # Broadcasting over s, with s = 1 (always exactly one hit).
    np.testing.assert_allclose(expected_distinct(5, np.array([1, 2])), [1.0, 2 * (1 - 0.5**5)])
    with pytest.raises(ValueError, match=r"N must be an integer >= 1, got 0"):
        ideal_recall_curve(10, 0)
    with pytest.raises(ValueError, match=r"n_values must be finite and >= 0"):
        ideal_recall_curve([1, -2], 10)
    with pytest.raises(ValueError, match=r"s must be finite and >= 1"):
        expected_distinct(3, 0.5)


# ---------------------------------------------------------------------------- estimator


@pytest.mark.parametrize(("k", "n", "N"), [(30, 40, 60), (12, 30, 50), (5, 40, 20), (20, 21, 40)])
def test_mle_and_interval_match_brute_force_on_exact_pmf(k, n, N):
    s = np.arange(k, N + 1)
    loglik = np.array([log_occupancy_pmf(k, int(si), n, method="exact") for si in s])
    est = estimate_learned(k, n, N)
    assert est.s_hat == s[np.argmax(loglik)]
    inside = s[2 * (loglik.max() - loglik) <= 3.841458820694124]
    assert (est.s_low, est.s_high) == (inside.min(), inside.max())
    assert est.recall_limit == est.s_hat / N
    assert (est.recall_low, est.recall_high) == (est.s_low / N, est.s_high / N)
    assert est.raw_recall == k / N


def test_acceptance_coverage_and_accuracy_in_simulation():
    """The brief's acceptance grid: 200 seeded runs per cell of uniform draws."""
    rng = np.random.default_rng(2024)
    N, runs = 1000, 200
    for s in (50, 300, 1000):
        for n in (s // 2, 2 * s, 10 * s):
            ks = _distinct_per_row(rng.integers(0, s, size=(runs, n)))
            ests = [estimate_learned(int(k), n, N) for k in ks]
            covered = np.mean([e.s_low <= s <= e.s_high for e in ests])
            assert covered >= 0.90, f"s={s}, n={n}: 95 % interval covered s in {covered:.1%} of runs"
            if n >= 2 * s:
                rel_err = np.median([abs(e.s_hat - s) / s for e in ests])
                assert rel_err < 0.10, f"s={s}, n={n}: median relative error {rel_err:.3f}"


@pytest.mark.parametrize(("s", "n"), [(50, 25), (50, 100), (300, 150), (300, 600), (1000, 500)])
def test_exact_coverage_without_simulation_noise(s, n):
    # Coverage = sum_k P(k | s, n) 1[s in interval(k)], with the exact pmf as weights.
    N = 1000
    k = np.arange(1, min(n, s) + 1)
    p = np.exp(log_occupancy_pmf(k, s, n, method="exact"))
    coverage = 0.0
    for kk, pk in zip(k[p > 1e-12], p[p > 1e-12]):
        est = estimate_learned(int(kk), n, N)
        coverage += pk * (est.s_low <= s <= est.s_high)
    assert coverage >= 0.93, f"s={s}, n={n}: exact coverage {coverage:.3f}"


def test_no_collisions_gives_s_hat_N_and_says_so():
    est = estimate_learned(40, 40, 500)
    assert est.s_hat == est.s_high == 500
    assert 40 < est.s_low < 500
    assert "no repeated match" in est.rule and "lower bound only" in est.rule
    flat = estimate_learned(1, 1, 30)  # one draw: every s equally likely
    assert (flat.s_hat, flat.s_low, flat.s_high) == (30, 1, 30)


def test_all_training_videos_hit_pins_s_to_N():
    est = estimate_learned(100, 5000, 100)
    assert (est.s_hat, est.s_low, est.s_high) == (100, 100, 100)
    assert est.recall_limit == 1.0


def test_heavy_repeats_give_small_s():
    est = estimate_learned(10, 10_000, 10_000)
    assert (est.s_hat, est.s_low, est.s_high) == (10, 10, 10)


def test_interval_narrows_with_more_draws_and_widens_with_conf():
    # Same fraction of the learned 200 hit on average -> more information with more draws.
    wide = estimate_learned(round(expected_distinct(200, 200)), 200, 1000)
    narrow = estimate_learned(round(expected_distinct(2000, 200)), 2000, 1000)
    assert narrow.s_high - narrow.s_low < wide.s_high - wide.s_low
    e90 = estimate_learned(150, 300, 1000, conf=0.90)
    e99 = estimate_learned(150, 300, 1000, conf=0.99)
    assert e99.s_low <= e90.s_low <= e90.s_hat <= e90.s_high <= e99.s_high
    assert "90 %" in e90.rule and "99 %" in e99.rule


def test_learned_estimate_record():
    est = estimate_learned(150, 300, 1000)
    assert isinstance(est, LearnedEstimate)
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.s_hat = 1  # type: ignore[misc]
    d = est.to_dict()
    assert d["k"] == 150 and d["n"] == 300 and d["N"] == 1000 and d["rule"] == est.rule
    rec = est.recall_estimate()
    assert isinstance(rec, Estimate)
    assert (rec.value, rec.low, rec.high) == (est.recall_limit, est.recall_low, est.recall_high)
    assert est.s_low <= est.s_hat <= est.s_high


def test_estimator_is_fast_at_scale():
    import time

    start = time.perf_counter()
    est = estimate_learned(29_000, 10**6, 10**5)
    assert time.perf_counter() - start < 1.0
    assert est.s_low <= est.s_hat <= est.s_high


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 100), r"k must be >= 1: each of the n=10 synthetic videos .* got k=0"),
        ((11, 10, 100), r"k \(distinct videos hit\) cannot exceed n \(draws\): got k=11, n=10"),
        ((20, 30, 15), r"cannot exceed N \(training videos\): got k=20, N=15"),
        ((1, 0, 10), r"n must be an integer >= 1, got 0"),
        ((1, 5, 0), r"N must be an integer >= 1, got 0"),
        ((2.5, 5, 10), r"k must be an integer >= 0, got 2.5"),
        ((-1, 5, 10), r"k must be an integer >= 0, got -1"),
    ],
)
def test_estimator_argument_errors(args, message):
    with pytest.raises(ValueError, match=message):
        estimate_learned(*args)


@pytest.mark.parametrize("conf", [0, 1, 1.5, "0.95", True])
def test_estimator_rejects_bad_conf(conf):
    with pytest.raises(ValueError, match=r"conf must be a number strictly between 0 and 1"):
        estimate_learned(5, 10, 20, conf=conf)


def test_numpy_integers_are_accepted():
    a = estimate_learned(np.int64(30), np.int32(40), np.int64(60))
    b = estimate_learned(30, 40, 60)
    assert a == b
