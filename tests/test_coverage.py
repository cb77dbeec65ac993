"""Tests of echoaudit.audit.coverage: toy counts by hand, a real set
against itself, and a simulation with a known number of reproduced patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echoaudit.audit import intervals
from echoaudit.audit.coverage import adjusted_coverage, coverage, reproduction
from echoaudit.audit.occupancy import estimate_learned

# 3 patients, 6 training videos
TRAIN_V = ["a1", "a2", "b1", "b2", "c1", "c2"]
TRAIN_P = ["A", "A", "B", "B", "C", "C"]
# q5 had no shortlisted pair: no match, left out of the draws
BEST = pd.DataFrame({
    "query": ["q1", "q2", "q3", "q4", "q5"],
    "train_video": ["a1", "a2", "a1", "b1", None],
    "score": [0.9, 0.4, 0.8, 0.7, 0.0],
})


def test_coverage_toy_by_hand():
    out = coverage(BEST, TRAIN_V, TRAIN_P)
    v, p = out["video"], out["patient"]
    # videos hit: a1, a2, b1 (3 of 6); patients hit: A, B (2 of 3); 4 matched queries
    assert (v["matched"], v["n_train"], v["n_queries"], v["share"]) == (3, 6, 4, 0.5)
    assert (p["matched"], p["n_train"], p["n_queries"]) == (2, 3, 4)
    assert (v["low"], v["high"]) == pytest.approx(intervals.wilson_interval(3, 6, 0.95))
    ref = estimate_learned(2, 4, 3)
    assert (p["s_hat"], p["s_low"], p["s_high"], p["limit"]) == (ref.s_hat, ref.s_low, ref.s_high, ref.recall_limit)
    assert "no threshold" in out["rule"]


def test_coverage_without_matches_has_no_limit():
    out = coverage(BEST.iloc[4:], TRAIN_V, TRAIN_P)
    assert out["video"]["matched"] == 0 and out["video"]["limit"] is None


@pytest.mark.parametrize("t, videos, patients, flagged", [(0.0, 3, 2, 4), (0.5, 2, 2, 3), (0.85, 1, 1, 1), (0.95, 0, 0, 0)])
def test_reproduction_by_hand(t, videos, patients, flagged):
    out = reproduction(BEST, t, TRAIN_V, TRAIN_P)
    assert out["video"]["matched"] == videos and out["patient"]["matched"] == patients
    assert out["n_flagged"] == flagged and out["patient"]["share"] == pytest.approx(patients / 3)


def _population(n_patients, rng, dim=16, noise=0.2):
    centres = rng.normal(size=(n_patients, dim))
    videos = [f"t{p}_{j}" for p in range(n_patients) for j in range(2)]
    patients = [f"p{p}" for p in range(n_patients) for _ in range(2)]
    train = np.repeat(centres, 2, axis=0) + noise * rng.normal(size=(2 * n_patients, dim))

    def best(patient_ids, prefix):
        """Each query is a noisy copy of a patient's centre; best match = nearest training video."""
        q = centres[patient_ids] + noise * rng.normal(size=(len(patient_ids), dim))
        nearest = ((q[:, None] - train[None]) ** 2).sum(-1).argmin(axis=1)
        return pd.DataFrame({"query": [f"{prefix}{i}" for i in range(len(q))],
                             "train_video": [videos[i] for i in nearest], "score": 0.5})

    return videos, patients, best


def _expected_distinct(n, s):  # independent of the library: E[k] = s (1 - (1 - 1/s)^n)
    return s * (1.0 - (1.0 - 1.0 / s) ** n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_real_set_against_itself_gives_one_inside_its_interval(seed):
    rng = np.random.default_rng(seed)
    videos, patients, best = _population(40, rng)
    real = best(rng.integers(40, size=120), "r")
    half_a, half_b = real.iloc[:60], real.iloc[60:]
    out = adjusted_coverage(half_a, half_b, videos, patients, n_boot=200, seed=seed)
    for level in ("video", "patient"):
        assert out[level]["low"] <= 1.0 <= out[level]["high"], out[level]
        assert out[level]["n_star"] == 60


def test_simulation_intervals_cover_the_known_truth():
    """A generator that reproduces exactly s of N training patients (noisy copies), real
    held-out videos drawn over all N: the coverage interval covers s/N and the adjusted
    interval covers E[k](n*, s) / E[k](n*, N) in >= 90 % of runs."""
    runs = 50
    for n_patients, s, n_syn, n_real in [(40, 10, 100, 60), (40, 25, 120, 60), (60, 30, 60, 100)]:
        hits_cov = hits_adj = 0
        for seed in range(runs):
            rng = np.random.default_rng(1000 * s + seed)
            videos, patients, best = _population(n_patients, rng)
            learned = rng.choice(n_patients, s, replace=False)
            syn = best(rng.choice(learned, n_syn), "s")
            real = best(rng.integers(n_patients, size=n_real), "r")
            c = coverage(syn, videos, patients)["patient"]
            hits_cov += c["limit_low"] <= s / n_patients <= c["limit_high"]
            a = adjusted_coverage(syn, real, videos, patients, n_boot=150, seed=seed)["patient"]
            n_star = min(n_syn, n_real)
            truth = _expected_distinct(n_star, s) / _expected_distinct(n_star, n_patients)
            hits_adj += a["low"] <= truth <= a["high"]
        assert hits_cov >= 0.9 * runs, (n_patients, s, hits_cov)
        assert hits_adj >= 0.9 * runs, (n_patients, s, hits_adj)


def test_adjusted_coverage_point_value_by_hand():
    # synthetic: 4 draws, 2 distinct patients (A, B); real: 3 draws over 3 distinct patients
    real = pd.DataFrame({"query": ["r1", "r2", "r3"], "train_video": ["a1", "b2", "c1"], "score": 0.3})
    out = adjusted_coverage(BEST, real, TRAIN_V, TRAIN_P, n_boot=50)["patient"]
    s_syn = estimate_learned(2, 4, 3).s_hat
    assert out["s_real"] == 3 and out["s_synthetic"] == s_syn and out["n_star"] == 3  # k == n: s_hat = N
    assert out["value"] == pytest.approx(_expected_distinct(3, s_syn) / _expected_distinct(3, 3))


def test_errors():
    with pytest.raises(ValueError, match=r"train_patients must hold one patient per training video: got 2 patients for 6"):
        coverage(BEST, TRAIN_V, ["A", "B"])
    with pytest.raises(ValueError, match=r"best names training videos missing from train_videos: \['b1'\]"):
        coverage(BEST, ["a1", "a2", "c1"], ["A", "A", "C"])
    with pytest.raises(ValueError, match="train_videos has duplicate names"):
        coverage(BEST, ["a1", "a1"], ["A", "A"])
    with pytest.raises(ValueError, match="at least one matched query in each set, got 4 synthetic and 0 real"):
        adjusted_coverage(BEST, BEST.iloc[4:], TRAIN_V, TRAIN_P)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 50, got 10"):
        adjusted_coverage(BEST, BEST, TRAIN_V, TRAIN_P, n_boot=10)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1.5"):
        reproduction(BEST, 1.5, TRAIN_V, TRAIN_P)
