"""Tests of echoaudit.audit.recall: toy recalls by hand and a sampling simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echoaudit.audit import intervals
from echoaudit.audit.recall import (
    coverage_by_group,
    covered_train_videos,
    generative_recall,
    recall_vs_n,
    recall_vs_threshold,
)

N_TRAIN = 6
# s5 had no shortlisted pair: no match, score 0
BEST = pd.DataFrame(
    {
        "query": ["s1", "s2", "s3", "s4", "s5"],
        "train_video": ["v1", "v1", "v2", "v3", None],
        "train_patient": ["p1", "p1", "p1", "p2", None],
        "score": [0.9, 0.8, 0.6, 0.3, 0.0],
    }
)
TRAIN_TABLE = pd.DataFrame(
    {
        "train_video": ["v1", "v2", "v3", "v4", "v5", "v6"],
        "EF": [25.0, 35.0, 55.0, 65.0, 70.0, 100.0],
        "view": ["A4C", "A4C", "PSAX", "PSAX", "PSAX", "A4C"],
    }
)


# by hand: no threshold {v1, v2, v3}; >= .5 {v1, v2}; >= .85 {v1}; >= .95 nothing
@pytest.mark.parametrize(
    "threshold, matched",
    [(None, 3), (0.0, 3), (0.3, 3), (0.5, 2), (0.8, 1), (0.85, 1), (0.95, 0)],
)
def test_generative_recall_toy(threshold, matched):
    r = generative_recall(BEST, N_TRAIN, threshold)
    assert r["matched"] == matched and r["n_train"] == N_TRAIN and r["n_queries"] == 5
    assert r["recall"] == pytest.approx(matched / N_TRAIN)
    assert (r["low"], r["high"]) == pytest.approx(intervals.wilson_interval(matched, N_TRAIN, 0.95))
    assert ("no threshold" in r["rule"]) == (threshold is None)


def test_recall_vs_threshold_matches_single_calls():
    df = recall_vs_threshold(BEST, N_TRAIN, [0.95, 0.5, 0.0])
    assert df.columns.tolist() == ["threshold", "matched", "recall", "low", "high"]
    assert df["matched"].tolist() == [0, 2, 3]
    for _, row in df.iterrows():
        assert row["recall"] == pytest.approx(generative_recall(BEST, N_TRAIN, row["threshold"])["recall"])


def test_recall_vs_n_matches_independent_loop():
    out = recall_vs_n(BEST, N_TRAIN, [1, 3, 5], None, n_rep=30, seed=4)
    assert out.columns.tolist() == ["n_queries", "mean", "p05", "p95", "n_rep"]
    # independent reference with the same generator stream
    rng = np.random.default_rng(4)
    videos = BEST["train_video"].tolist()
    for row, n in zip(out.itertuples(), [1, 3, 5]):
        recalls = []
        for _ in range(30):
            idx = rng.choice(len(videos), size=n, replace=False)
            recalls.append(len({videos[i] for i in idx if pd.notna(videos[i])}) / N_TRAIN)
        assert row.mean == pytest.approx(np.mean(recalls))
        assert (row.p05, row.p95) == pytest.approx(tuple(np.percentile(recalls, [5, 95])))
    # all queries: every subset is the full set
    last = out.iloc[-1]
    assert last["mean"] == last["p05"] == last["p95"] == pytest.approx(3 / N_TRAIN)


def test_recall_vs_n_simulation_follows_occupancy_curve():
    """Queries drawn uniformly over all N videos: E[recall(n)] = 1 - (1 - 1/N)^n."""
    rng = np.random.default_rng(0)
    n_train, n_queries = 50, 400
    hits = rng.integers(0, n_train, size=n_queries)
    best = pd.DataFrame(
        {"query": [f"q{i}" for i in range(n_queries)], "train_video": [f"v{h}" for h in hits], "score": 1.0}
    )
    ns = [10, 50, 150]
    out = recall_vs_n(best, n_train, ns, 0.5, n_rep=200, seed=1)
    expected = [1 - (1 - 1 / n_train) ** n for n in ns]
    np.testing.assert_allclose(out["mean"], expected, atol=0.03)
    assert np.all(np.diff(out["mean"]) > 0) and np.all(out["p05"] <= out["mean"]) and np.all(out["mean"] <= out["p95"])


def test_covered_train_videos_and_groups():
    cov = covered_train_videos(BEST, TRAIN_TABLE, 0.5)
    assert cov.columns.tolist() == ["train_video", "EF", "view", "n_hits", "covered", "best_score"]
    assert cov["n_hits"].tolist() == [2, 1, 0, 0, 0, 0]
    assert cov["covered"].tolist() == [True, True, False, False, False, False]
    assert cov["best_score"].iloc[:2].tolist() == [0.9, 0.6] and cov["best_score"].iloc[2:].isna().all()
    assert "covered" not in TRAIN_TABLE.columns  # input untouched
    loose = covered_train_videos(BEST, TRAIN_TABLE, None)
    assert loose["covered"].sum() == 3

    by_ef = coverage_by_group(loose)
    assert by_ef["group"].tolist() == ["[0, 30)", "[30, 40)", "[40, 50)", "[50, 60)", "[60, 70)", "[70, 100]"]
    # EF 25 -> bin 0, 35 -> 1, 55 -> 3, 65 -> 4, 70 and 100 -> last (closed) bin
    assert by_ef["n_train"].tolist() == [1, 1, 0, 1, 1, 2]
    assert by_ef["n_covered"].tolist() == [1, 1, 0, 1, 0, 0]
    assert np.isnan(by_ef.loc[2, "coverage"])
    assert (by_ef.loc[5, "low"], by_ef.loc[5, "high"]) == pytest.approx(intervals.wilson_interval(0, 2, 0.95))

    by_view = coverage_by_group(loose, by="view")
    assert by_view["group"].tolist() == ["A4C", "PSAX"]
    assert by_view["n_train"].tolist() == [3, 3] and by_view["n_covered"].tolist() == [2, 1]
    assert by_view["coverage"].tolist() == pytest.approx([2 / 3, 1 / 3])

    custom = coverage_by_group(loose, ef_bins=(0, 50, 100))
    assert custom["n_train"].tolist() == [2, 4] and custom["n_covered"].tolist() == [2, 1]


def test_errors():
    with pytest.raises(ValueError, match=r"one row per query .* 1 queries repeat, e.g. \['s1'\]"):
        generative_recall(pd.concat([BEST, BEST.iloc[:1]]), N_TRAIN, None)
    with pytest.raises(ValueError, match=r"best is missing column\(s\) \['score'\]"):
        generative_recall(BEST.drop(columns="score"), N_TRAIN, None)
    with pytest.raises(ValueError, match="n_train must be an integer >= 1 .*got 0"):
        generative_recall(BEST, 0, None)
    with pytest.raises(ValueError, match="3 distinct training videos are matched but n_train is 2"):
        generative_recall(BEST, 2, None)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 2.0"):
        generative_recall(BEST, N_TRAIN, 2.0)
    with pytest.raises(ValueError, match=r"thresholds must be in \[0, 1\], got -0.5"):
        recall_vs_threshold(BEST, N_TRAIN, [0.5, -0.5])
    with pytest.raises(ValueError, match="thresholds must be a non-empty list"):
        recall_vs_threshold(BEST, N_TRAIN, [])
    with pytest.raises(ValueError, match=r"n_values must be integers in \[1, 5\] .*got 6"):
        recall_vs_n(BEST, N_TRAIN, [2, 6], None)
    with pytest.raises(ValueError, match="n_rep must be an integer >= 1, got 0"):
        recall_vs_n(BEST, N_TRAIN, [2], None, n_rep=0)
    with pytest.raises(ValueError, match=r"missing from train_table\['train_video'\]: \['v1'\]"):
        covered_train_videos(BEST, TRAIN_TABLE.iloc[1:], None)
    with pytest.raises(ValueError, match=r"train_table is missing column\(s\) \['FileName'\]"):
        covered_train_videos(BEST, TRAIN_TABLE, None, video_col="FileName")
    cov = covered_train_videos(BEST, TRAIN_TABLE, None)
    with pytest.raises(ValueError, match=r"1 value\(s\) outside \[0, 70\] or missing, e.g. \[100.0\]"):
        coverage_by_group(cov, ef_bins=(0, 50, 70))
    with pytest.raises(ValueError, match="ef_bins must be at least two strictly increasing"):
        coverage_by_group(cov, ef_bins=(0, 50, 50, 100))
    with pytest.raises(ValueError, match=r"covered_table is missing column\(s\) \['site'\]"):
        coverage_by_group(cov, by="site")
