"""Tests of echoaudit.audit.temporal: summaries by hand, correlation against numpy, a drift simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echoaudit.audit.temporal import (
    consistency_summary, embedding_correlation, resample_curve, sample_spread_over_patients, summarise_curves,
)


@pytest.mark.parametrize(
    "curve, drop_at, first_drop",
    [
        ([1.0, 0.9, 0.6, 0.4, 0.7], 0.5, 3),
        ([1.0, 0.9, 0.6, 0.4, 0.7], 0.3, None),
        ([1.0, 0.9, 0.6, 0.4, 0.7], 1.0, 1),
        ([1.0, 0.9, 0.6, 0.4, 0.7], 0.6, 3),  # strictly under: 0.6 is not a drop
        ([0.2], 0.5, None),  # a single point is frame 0 against itself: nothing to summarise
    ],
)
def test_consistency_summary_by_hand(curve, drop_at, first_drop):
    s = consistency_summary(np.array(curve), drop_at=drop_at)
    assert s["first_drop"] == first_drop
    later = curve[1:]  # frame 0 left out
    if later:
        assert s["mean"] == pytest.approx(np.mean(later)) and s["min"] == min(later)
    else:
        assert np.isnan(s["mean"]) and np.isnan(s["min"])
    assert s["n_frames"] == len(curve)


def test_consistency_summary_toy_numbers():
    s = consistency_summary([1.0, 0.9, 0.6, 0.4, 0.7])
    assert s == {"n_frames": 5, "mean": pytest.approx(0.65), "min": 0.4, "first_drop": 3, "drop_s": pytest.approx(np.nan, nan_ok=True)}
    # positions at 25 fps queried every 2nd frame: point 3 is frame 6, 0.24 s
    timed = consistency_summary([1.0, 0.9, 0.6, 0.4, 0.7], times=np.arange(5) * 2 / 25.0)
    assert timed["drop_s"] == pytest.approx(0.24)


def test_resample_curve_onto_a_common_grid():
    # 50 fps every 4th frame vs 25 fps every 2nd: both every 0.08 s, one shifted
    t = np.arange(5) * 0.08
    c = np.array([1.0, 0.8, 0.6, 0.4, 0.2])
    out = resample_curve(t, c, np.array([0.0, 0.04, 0.16, 0.30, 0.33]))
    np.testing.assert_allclose(out[:4], [1.0, 0.9, 0.6, 0.25])  # by hand: 0.4 - 0.2 * 0.06 / 0.08
    assert np.isnan(out[4])  # past the last point (0.32 s): no extrapolation
    with pytest.raises(ValueError, match="times must be 5 finite, strictly increasing times"):
        resample_curve(t[::-1], c, t)


def test_sample_spread_over_patients_round_robin():
    names = [f"v{i}" for i in range(12)]
    patients = ["a"] * 6 + ["b"] * 3 + ["c"] * 2 + ["d"]
    pick = sample_spread_over_patients(names, patients, 4, seed=1)
    of = dict(zip(names, patients))
    assert sorted(of[v] for v in pick) == ["a", "b", "c", "d"]  # one per patient before any second
    assert pick == sample_spread_over_patients(names, patients, 4, seed=1)
    assert sorted(sample_spread_over_patients(names, patients, 50, seed=0)) == sorted(names)
    six = sample_spread_over_patients(names, patients, 6, seed=2)
    assert sorted(of[v] for v in six).count("d") == 1 and len(set(six)) == 6
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        sample_spread_over_patients(names, patients, 0)


def test_embedding_correlation_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 16)).astype(np.float32)
    r = embedding_correlation(emb)
    ref = np.corrcoef(emb.astype(np.float64))[0]
    assert r.shape == (12,) and r.dtype == np.float64
    np.testing.assert_allclose(r, ref, atol=1e-12)
    assert r[0] == 1.0
    # Pearson correlation ignores per-frame gain and offset
    scaled = emb * rng.uniform(0.5, 3.0, size=(12, 1)) + rng.normal(size=(12, 1))
    np.testing.assert_allclose(embedding_correlation(scaled), r, atol=1e-6)
    # an anti-correlated frame gives -1
    assert embedding_correlation(np.stack([emb[0], -emb[0]]))[1] == pytest.approx(-1.0)


def test_embedding_correlation_constant_frames():
    emb = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [3.0, 2.0, 1.0]])
    r = embedding_correlation(emb)
    assert np.isnan(r[1]) and r[2] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="first frame's embedding is constant"):
        embedding_correlation(emb[[1, 0]])


def test_simulation_real_stays_synthetic_drifts():
    """A 'real' video keeps one identity plus noise; a 'synthetic' one morphs into another."""
    rng = np.random.default_rng(2)
    t_frames, dim = 40, 64
    a, b = rng.normal(size=dim), rng.normal(size=dim)
    real = a + 0.2 * rng.normal(size=(t_frames, dim))
    w = np.linspace(0.0, 1.0, t_frames)[:, None]
    synthetic = (1 - w) * a + w * b + 0.2 * rng.normal(size=(t_frames, dim))
    curves = {"real_1": embedding_correlation(real), "syn_1": embedding_correlation(synthetic)}
    table = summarise_curves(curves, {"real_1": "real", "syn_1": "synthetic"})
    real_row, syn_row = table.iloc[0], table.iloc[1]
    assert real_row["kind"] == "real" and real_row["min"] > 0.8 and pd.isna(real_row["first_drop"])
    assert syn_row["kind"] == "synthetic" and syn_row["mean"] < real_row["mean"]
    # independent vectors a, b: the morph crosses 0.5 correlation roughly half way
    assert 10 <= syn_row["first_drop"] <= 30
    assert syn_row["first_drop"] == int(np.flatnonzero(curves["syn_1"] < 0.5)[0])


def test_summarise_curves_table():
    curves = {"b": np.array([1.0, 0.3]), "a": np.array([1.0, 0.9, 0.8]), "c": np.array([0.9, 0.1, 0.95])}
    kind = {"a": "synthetic", "b": "real", "c": "real"}
    df = summarise_curves(curves, kind, drop_at=0.5)
    assert df.columns.tolist() == ["name", "kind", "n_frames", "mean", "min", "first_drop", "drop_s"]
    assert df["name"].tolist() == ["b", "c", "a"]  # real first, then by name
    assert df["n_frames"].tolist() == [2, 3, 3]
    assert df["first_drop"].tolist()[:2] == [1, 1] and pd.isna(df["first_drop"].iloc[2])
    assert str(df["first_drop"].dtype) == "Int64"
    assert df["mean"].tolist() == pytest.approx([0.3, 0.525, 0.85])  # frame 0 left out
    timed = summarise_curves(curves, kind, times={k: np.arange(len(v)) / 12.5 for k, v in curves.items()})
    assert timed["drop_s"].tolist()[:2] == pytest.approx([0.08, 0.08]) and np.isnan(timed["drop_s"].iloc[2])


# ------------------------------------------------------------------ errors


def test_errors():
    with pytest.raises(ValueError, match=r"curve must be a non-empty 1-D array \(T,\), got shape \(2, 2\)"):
        consistency_summary(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"curve must be a non-empty 1-D array \(T,\), got shape \(0,\)"):
        consistency_summary([])
    with pytest.raises(ValueError, match=r"1 NaN/inf value\(s\)"):
        consistency_summary([1.0, np.nan])
    with pytest.raises(ValueError, match=r"outside \[-1, 1\], e.g. \[1.5\]"):
        consistency_summary([1.0, 1.5])
    with pytest.raises(ValueError, match=r"drop_at must be in \[-1, 1\], got 2.0"):
        consistency_summary([1.0], drop_at=2.0)
    with pytest.raises(ValueError, match=r"embeddings must be a \(T, D\) array .* got shape \(5,\)"):
        embedding_correlation(np.ones(5))
    with pytest.raises(ValueError, match=r"embeddings has 1 NaN/inf"):
        embedding_correlation(np.array([[1.0, 2.0], [np.inf, 1.0]]))
    with pytest.raises(ValueError, match=r"without a kind: \['y'\], kind without a curve: \['z'\]"):
        summarise_curves({"x": [1.0], "y": [1.0]}, {"x": "real", "z": "real"})
    with pytest.raises(ValueError, match=r"kind values must be one of \['real', 'synthetic'\]; \['x'\] have \['fake'\]"):
        summarise_curves({"x": [1.0]}, {"x": "fake"})
    with pytest.raises(ValueError, match=r"curves\['x'\] has 1 value\(s\) outside"):
        summarise_curves({"x": [1.0, -3.0]}, {"x": "real"})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summarise_segments_equals_summarise_curves(seed):
    from echoaudit.audit.temporal import summarise_segments

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=40)
    names = [f"v{i:02d}" for i in rng.permutation(len(lengths))]
    kinds = [("real", "synthetic")[i % 2] for i in range(len(lengths))]
    values = rng.uniform(-1, 1, size=int(lengths.sum()))
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    times = np.concatenate([np.cumsum(rng.uniform(0.01, 0.1, n)) for n in lengths])
    curves = {n: values[a:a + k] for n, a, k in zip(names, starts, lengths)}
    tt = {n: times[a:a + k] for n, a, k in zip(names, starts, lengths)}
    for drop_at in (0.5, -0.2):
        want = summarise_curves(curves, dict(zip(names, kinds)), drop_at=drop_at, times=tt)
        got = summarise_segments(names, kinds, values, starts, drop_at=drop_at, times=times)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
    no_times = summarise_segments(names, kinds, values, starts)
    assert no_times["drop_s"].isna().all()


def test_summarise_segments_errors_name_the_curve():
    from echoaudit.audit.temporal import summarise_segments

    with pytest.raises(ValueError, match=r"curves\['b'\] has 1 value\(s\) outside \[-1, 1\]"):
        summarise_segments(["a", "b"], ["real", "real"], np.array([1.0, 0.5, 1.0, 3.0]), np.array([0, 2]))
    with pytest.raises(ValueError, match="starts must begin at 0"):
        summarise_segments(["a", "b"], ["real", "real"], np.array([1.0, 0.5]), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"times\['a'\] must be 2 finite, strictly increasing"):
        summarise_segments(["a"], ["real"], np.array([1.0, 0.5]), np.array([0]), times=np.array([0.1, 0.1]))
