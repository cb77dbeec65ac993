"""Intervals: Wilson against hand-computed values and scipy; bootstraps against known
truths in simulation; the Estimate record."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score

from echoaudit.audit.intervals import (
    Estimate,
    _rank_auc,
    bootstrap_auc,
    bootstrap_quantile_interval,
    newcombe_interval,
    wilson_interval,
)

# ---------------------------------------------------------------------------- Wilson


def test_wilson_hand_computed_values():
    # 8 of 10 at 95 %: z = 1.959964, centre = (0.8 + z^2/20) / (1 + z^2/10) = 0.716740,
    # half = z / (1 + z^2/10) * sqrt(0.016 + z^2/400) = 0.226577.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490163, abs=1e-6)
    assert high == pytest.approx(0.943317, abs=1e-6)
    # 0 of 10: low = 0 and high = (z^2/n) / (1 + z^2/n) = 0.384146 / 1.384146.
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.277533, abs=1e-6)
    # n of n mirrors 0 of n.
    low, high = wilson_interval(10, 10)
    assert (low, high) == pytest.approx((1 - 0.277533, 1.0), abs=1e-6)
    assert type(low) is float and type(high) is float


@pytest.mark.parametrize("n", [1, 7, 50, 1000])
@pytest.mark.parametrize("conf", [0.8, 0.95, 0.99])
def test_wilson_matches_scipy(n, conf):
    for successes in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = binomtest(successes, n).proportion_ci(confidence_level=conf, method="wilson")
        got = wilson_interval(successes, n, conf)
        assert got == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_accepts_numpy_integers_and_narrows_with_n():
    a = wilson_interval(np.int64(30), np.int64(100))
    b = wilson_interval(300, 1000)
    assert a[0] < b[0] < 0.3 < b[1] < a[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 0), r"n must be an integer >= 1, got 0"),
        ((-1, 5), r"successes must be an integer >= 0, got -1"),
        ((6, 5), r"successes must be <= n, got successes=6, n=5"),
        ((2.0, 5), r"successes must be an integer >= 0, got 2.0"),
        ((2, 5, 95), r"conf must be a number strictly between 0 and 1 \(e.g. 0.95\), got 95"),
    ],
)
def test_wilson_argument_errors(args, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(*args)


# ---------------------------------------------------------------------------- quantile


def test_quantile_interval_covers_the_true_quantile():
    # 95th percentile of N(0, 1) is 1.6449; percentile bootstrap, 150 samples of 400.
    truth = norm.ppf(0.95)
    rng = np.random.default_rng(3)
    hits = 0
    reps = 150
    for rep in range(reps):
        low, high = bootstrap_quantile_interval(rng.normal(size=400), 0.95, n_boot=300, seed=rep)
        hits += low <= truth <= high
    # Percentile bootstrap of a tail quantile under-covers a little; 0.85 leaves room for that.
    assert hits / reps >= 0.85


def test_quantile_interval_properties():
    values = np.random.default_rng(0).gamma(2.0, size=500)
    point = np.quantile(values, 0.95)
    low, high = bootstrap_quantile_interval(values, 0.95)
    assert low < point < high
    assert bootstrap_quantile_interval(values, 0.95) == (low, high)  # same seed, same answer
    assert bootstrap_quantile_interval(values, 0.95, seed=1) != (low, high)
    # A Generator works in place of a seed and gives the seed's stream.
    assert bootstrap_quantile_interval(values, 0.95, seed=np.random.default_rng(0)) == (low, high)
    # Wider at higher confidence, narrower with 16x more data (about 4x in theory).
    low99, high99 = bootstrap_quantile_interval(values, 0.95, conf=0.99)
    assert low99 <= low and high <= high99
    big = np.random.default_rng(1).gamma(2.0, size=8000)
    lb, hb = bootstrap_quantile_interval(big, 0.95)
    assert hb - lb < 0.5 * (high - low)


def test_quantile_interval_with_large_sample_is_chunked_correctly():
    # More values per resample than one chunk holds: the chunking must not change results.
    values = np.random.default_rng(5).normal(size=30_000)
    low, high = bootstrap_quantile_interval(values, 0.5, n_boot=100)
    se = 1.2533 / math.sqrt(values.size)  # standard error of the median of N(0, 1)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.35)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": [1.0, 2.0], "q": 95}, r"q must be a quantile in \[0, 1\] \(0.95 for the 95th percentile\), got 95"),
        ({"values": [1.0], "q": 0.5}, r"values needs at least 2 values, got 1"),
        ({"values": [[1.0, 2.0]], "q": 0.5}, r"values must be a 1-D array, got shape \(1, 2\)"),
        ({"values": [1.0, np.nan], "q": 0.5}, r"values must be finite, got 1 NaN/inf values"),
        ({"values": ["a", "b"], "q": 0.5}, r"values must hold numbers, got dtype <U1"),
        ({"values": [1.0, 2.0], "q": 0.5, "n_boot": 5}, r"n_boot must be an integer >= 10, got 5"),
        ({"values": [1.0, 2.0], "q": 0.5, "seed": -3}, r"seed must be an integer >= 0 or a np.random.Generator, got -3"),
        ({"values": [1.0, 2.0], "q": 0.5, "method": "nearest"},
         r"method must be one of \['linear', 'weibull'\], got 'nearest'"),
    ],
)
def test_quantile_interval_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_quantile_interval(**kwargs)


def test_quantile_interval_weibull_method_is_numpys_on_each_resample():
    values = np.random.default_rng(2).uniform(size=39)
    low, high = bootstrap_quantile_interval(values, 0.95, n_boot=200, seed=4, method="weibull")
    rng = np.random.default_rng(4)  # same draws, by hand
    boot = np.quantile(values[rng.integers(0, 39, size=(200, 39))], 0.95, axis=1, method="weibull")
    assert (low, high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))


# ---------------------------------------------------------------------------- Newcombe


def test_newcombe_hand_computed_case():
    # 56/70 - 48/80 (Newcombe 1998, Stat. Med. 17:873, table II, method 10: 0.0524 to 0.3339).
    # By hand from the Wilson ends: p1 = 0.8, (l1, u1) = (0.691834, 0.876953);
    # p2 = 0.6, (l2, u2) = (0.490455, 0.700382); d = 0.2,
    # low  = 0.2 - sqrt((0.8 - 0.691834)^2 + (0.700382 - 0.6)^2) = 0.2 - 0.147569 = 0.052431,
    # high = 0.2 + sqrt((0.876953 - 0.8)^2 + (0.6 - 0.490455)^2) = 0.2 + 0.133873 = 0.333873.
    l1, u1 = wilson_interval(56, 70)
    l2, u2 = wilson_interval(48, 80)
    assert (l1, u1, l2, u2) == pytest.approx((0.691834, 0.876953, 0.490455, 0.700382), abs=1e-6)
    d, low, high = newcombe_interval(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.052431, 0.333873), abs=1e-6)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


@pytest.mark.parametrize(
    ("counts", "published"),
    [((9, 10, 3, 10), (0.1705, 0.8090)), ((5, 56, 0, 29), (-0.0381, 0.1926)),
     ((0, 10, 0, 20), (-0.1611, 0.2775)), ((10, 10, 0, 10), (0.6075, 1.0))],
)
def test_newcombe_matches_the_published_table(counts, published):
    _, low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == published


def test_newcombe_is_antisymmetric_and_brackets_the_difference():
    d, low, high = newcombe_interval(3, 40, 12, 32, conf=0.9)
    d2, low2, high2 = newcombe_interval(12, 32, 3, 40, conf=0.9)
    assert d == pytest.approx(-d2) and low == pytest.approx(-high2) and high == pytest.approx(-low2)
    assert -1 <= low <= d <= high <= 1
    wide = newcombe_interval(3, 40, 12, 32, conf=0.99)
    assert wide[1] < low and wide[2] > high


def test_newcombe_argument_errors():
    with pytest.raises(ValueError, match="successes must be <= n, got successes=5, n=4"):
        newcombe_interval(5, 4, 1, 10)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        newcombe_interval(1, 10, 0, 0)


# ---------------------------------------------------------------------------- AUC


def test_bootstrap_auc_point_matches_sklearn_and_interval_brackets_it():
    rng = np.random.default_rng(11)
    labels = np.r_[np.ones(60, int), np.zeros(90, int)]
    scores = np.r_[rng.normal(1.0, 1.0, 60), rng.normal(0.0, 1.0, 90)]
    auc, low, high = bootstrap_auc(labels, scores, n_boot=300)
    assert auc == roc_auc_score(labels, scores)
    assert low < auc < high
    assert bootstrap_auc(labels, scores, n_boot=300) == (auc, low, high)
    # bool labels and shuffled order give the same AUC.
    order = rng.permutation(labels.size)
    assert bootstrap_auc(labels[order].astype(bool), scores[order], n_boot=50)[0] == pytest.approx(auc)


@pytest.mark.parametrize(("n_pos", "n_neg", "levels"), [(5, 7, 0), (30, 20, 4), (1, 40, 3), (50, 1, 0)])
def test_rank_auc_equals_sklearn_roc_auc_score(n_pos, n_neg, levels):
    # levels > 0 rounds scores onto a few values, so ties between and within classes occur.
    rng = np.random.default_rng(n_pos + 100 * n_neg)
    pos = rng.normal(0.5, 1.0, size=(25, n_pos))
    neg = rng.normal(0.0, 1.0, size=(25, n_neg))
    if levels:
        pos, neg = np.round(pos * levels / 3), np.round(neg * levels / 3)
    got = _rank_auc(pos, neg)
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    expected = [roc_auc_score(labels, np.r_[p, q]) for p, q in zip(pos, neg)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_bootstrap_auc_covers_the_true_auc():
    # Positives N(1, 1), negatives N(0, 1): true AUC = Phi(1 / sqrt(2)) = 0.7602.
    truth = norm.cdf(1 / math.sqrt(2))
    rng = np.random.default_rng(12)
    reps, hits = 200, 0
    for rep in range(reps):
        labels = np.r_[np.ones(40, int), np.zeros(60, int)]
        scores = np.r_[rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 60)]
        _, low, high = bootstrap_auc(labels, scores, n_boot=400, seed=rep)
        hits += low <= truth <= high
    assert hits / reps >= 0.88


def test_bootstrap_auc_is_stratified():
    # One positive among many negatives: an unstratified resample would often miss it and
    # sklearn would raise; a stratified one always keeps it.
    labels = np.r_[1, np.zeros(49, int)]
    scores = np.r_[0.9, np.linspace(0.0, 1.0, 49)]
    auc, low, high = bootstrap_auc(labels, scores, n_boot=200)
    assert low <= auc <= high
    # Perfect separation stays perfect in every resample.
    assert bootstrap_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], n_boot=20) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], r"labels need both classes for an AUC, got 3 positives and 0 negatives"),
        ([0, 1, 2], [0.1, 0.2, 0.3], r"labels must be 0/1 or bool, got values \[2\]"),
        ([0, 1], [0.1, 0.2, 0.3], r"labels must be 1-D with the length of scores \(3\), got shape \(2,\)"),
        ([0, 1, 1], [0.1, np.inf, 0.3], r"scores must be finite, got 1 NaN/inf values"),
    ],
)
def test_bootstrap_auc_argument_errors(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_auc(labels, scores)


def test_bootstrap_auc_rejects_bad_conf():
    with pytest.raises(ValueError, match=r"conf must be a number strictly between 0 and 1 \(e.g. 0.95\), got 1.0"):
        bootstrap_auc([0, 1], [0.1, 0.2], conf=1.0)


# ---------------------------------------------------------------------------- Estimate


def test_estimate_record():
    est = Estimate(np.float32(0.25), np.float64(0.2), 0.31, "Wilson score interval, 95 %")
    d = est.to_dict()
    assert d == {"value": 0.25, "low": pytest.approx(0.2), "high": 0.31, "rule": "Wilson score interval, 95 %"}
    assert all(type(d[key]) is float for key in ("value", "low", "high"))
    json.dumps(d)  # JSON-ready
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.value = 0.3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.5, 0.6, 0.4, "rule"), r"Estimate needs low <= high, got low=0.6, high=0.4"),
        ((0.5, 0.4, 0.6, "  "), r"Estimate.rule must be a non-empty string naming the method, got '  '"),
        (("0.5", 0.4, 0.6, "rule"), r"Estimate.value must be a real number, got '0.5'"),
        ((0.5, True, 0.6, "rule"), r"Estimate.low must be a real number, got True"),
    ],
)
def test_estimate_argument_errors(args, message):
    with pytest.raises(ValueError, match=message):
        Estimate(*args)
