"""Tests of echoaudit.audit.privacy: hand-computed thresholds, flags and error texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echoaudit.audit import intervals
from echoaudit.audit.privacy import (
    Threshold,
    best_matches,
    calibrate_threshold,
    calibration_scores,
    filtered_list,
    flag_summary,
    flag_videos,
    flags_per_patient,
    percentile_of_threshold,
)

PATIENT = {"t1": "pA", "t2": "pA", "t3": "pB", "t4": "pC", "t5": "pC"}
TRAIN = ["t1", "t2", "t3", "t4", "t5"]


def table(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query": [q for q, _, _ in rows],
            "train_video": [v for _, v, _ in rows],
            "train_patient": [PATIENT[v] for _, v, _ in rows],
            "score": [s for _, _, s in rows],
        }
    )


# 5 training videos, 3 held-out videos; t5 is never shortlisted (score 0).
HELDOUT = table(
    [
        ("h1", "t1", 0.30), ("h1", "t2", 0.10), ("h1", "t3", 0.55),
        ("h2", "t1", 0.20), ("h2", "t3", 0.40), ("h2", "t4", 0.80),
        ("h3", "t2", 0.65), ("h3", "t4", 0.15),
    ]
)
# by hand: best per training video t1 .30, t2 .65, t3 .55, t4 .80, t5 0
TRAIN_BEST = np.array([0.30, 0.65, 0.55, 0.80, 0.0])
# by hand: best per held-out video h1 .55, h2 .80, h3 .65
HELDOUT_BEST = np.array([0.55, 0.80, 0.65])


def test_best_matches_picks_highest_and_breaks_ties_by_name():
    scores = table([("q1", "t2", 0.4), ("q1", "t1", 0.4), ("q1", "t3", 0.2), ("q2", "t4", 0.9), ("q2", "t5", 0.1)])
    shuffled = scores.sample(frac=1.0, random_state=3)
    best = best_matches(shuffled)
    assert best.columns.tolist() == ["query", "train_video", "train_patient", "score"]
    assert best["query"].tolist() == ["q1", "q2"]
    assert best["train_video"].tolist() == ["t1", "t4"]  # tie 0.4: t1 sorts before t2
    assert best["train_patient"].tolist() == ["pA", "pC"]
    assert best["score"].tolist() == [0.4, 0.9]


def test_best_matches_adds_unshortlisted_queries_with_score_zero():
    best = best_matches(table([("q1", "t2", 0.4)]), queries=["q0", "q1"])
    assert best["query"].tolist() == ["q0", "q1"]
    assert best["score"].tolist() == [0.0, 0.4]
    assert pd.isna(best.loc[0, "train_video"])


@pytest.mark.parametrize("percentile", [50.0, 90.0, 95.0, 100.0])
def test_calibration_default_rule_matches_hand_computed_percentile(percentile):
    thr = calibrate_threshold(HELDOUT, percentile=percentile, train_videos=TRAIN, n_boot=50)
    assert thr.value == pytest.approx(np.percentile(TRAIN_BEST, percentile))
    assert thr.rule == "train_to_heldout" and thr.n == 5 and thr.n_heldout == 3


def test_calibration_95th_by_hand():
    # sorted best [0, .30, .55, .65, .80]; position 0.95 * 4 = 3.8 -> .65 + 0.8 * .15 = .77
    thr = calibrate_threshold(HELDOUT, train_videos=TRAIN, n_boot=50)
    assert thr.value == pytest.approx(0.77)
    # without train_videos t5 is silently missing: [.30, .55, .65, .80] -> 2.85 -> .7775
    assert calibrate_threshold(HELDOUT, n_boot=50).value == pytest.approx(0.7775)


def test_calibration_heldout_to_train_rule():
    # sorted [.55, .65, .80]; position 0.95 * 2 = 1.9 -> .65 + 0.9 * .15 = .785
    thr = calibrate_threshold(HELDOUT, rule="heldout_to_train", n_boot=50)
    assert thr.value == pytest.approx(0.785) == pytest.approx(np.percentile(HELDOUT_BEST, 95))
    assert thr.n == 3
    # a listed held-out video with no pair counts as 0
    thr4 = calibrate_threshold(HELDOUT, rule="heldout_to_train", heldout_videos=["h1", "h2", "h3", "h4"], n_boot=50)
    assert thr4.value == pytest.approx(np.percentile([0.0, 0.55, 0.65, 0.80], 95))


def test_calibration_scores_series():
    best = calibration_scores(HELDOUT, train_videos=TRAIN)
    assert best.index.tolist() == TRAIN and best.index.name == "train_video"
    np.testing.assert_allclose(best.to_numpy(), TRAIN_BEST)
    best_h = calibration_scores(HELDOUT, rule="heldout_to_train")
    np.testing.assert_allclose(best_h.to_numpy(), HELDOUT_BEST)


def test_threshold_interval_is_the_intervals_bootstrap_and_seeded():
    thr = calibrate_threshold(HELDOUT, train_videos=TRAIN, n_boot=200, seed=7)
    ref = intervals.bootstrap_quantile_interval(np.sort(TRAIN_BEST), 0.95, n_boot=200, conf=0.95, seed=7)
    assert (thr.low, thr.high) == pytest.approx(ref)
    assert thr.low <= thr.value <= thr.high + 1e-12
    assert calibrate_threshold(HELDOUT, train_videos=TRAIN, n_boot=200, seed=7) == thr


def test_threshold_describe_and_to_dict():
    thr = calibrate_threshold(HELDOUT, train_videos=TRAIN, n_boot=50)
    text = thr.describe()
    assert "95th percentile" in text and "EchoNet-Synthetic" in text and "0.770" in text
    assert "5 %" in text and text.count(".") >= 1 and "\n" not in text
    d = thr.to_dict()
    assert d["value"] == pytest.approx(0.77) and d["rule"] == "train_to_heldout" and d["percentile"] == 95.0
    with pytest.raises(Exception):
        thr.value = 0.1  # frozen
    other = calibrate_threshold(HELDOUT, rule="heldout_to_train", percentile=97.5, n_boot=50)
    assert "97.5th percentile" in other.describe() and "held-out-to-train" in other.describe()


def test_percentile_of_threshold_inverts_the_5_percent_rule():
    rng = np.random.default_rng(0)
    best = rng.uniform(size=2000)
    t = float(np.percentile(best, 95))
    p = percentile_of_threshold(t, best)
    assert p == pytest.approx(95.0, abs=0.1)
    assert 100 - p == pytest.approx(100 * np.mean(best >= t))
    assert percentile_of_threshold(0.0, best) == 0.0 and percentile_of_threshold(1.0, best) == 100.0


def test_flag_videos_toy():
    syn = table([("s1", "t1", 0.9), ("s1", "t2", 0.2), ("s2", "t3", 0.5), ("s3", "t1", 0.77), ("s4", "t4", 0.1)])
    flags = flag_videos(syn, 0.77)
    assert flags.columns.tolist() == ["query", "flagged", "score", "train_video", "train_patient"]
    assert flags["query"].tolist() == ["s1", "s3", "s2", "s4"]  # highest score first
    assert flags["flagged"].tolist() == [True, True, False, False]  # 0.77 >= 0.77 flags
    assert filtered_list(flags) == ["s2", "s4"]
    summary = flag_summary(flags)
    assert summary["n_flagged"] == 2 and summary["n_videos"] == 4 and summary["share"] == 0.5
    assert (summary["low"], summary["high"]) == pytest.approx(intervals.wilson_interval(2, 4, 0.95))
    per_patient = flags_per_patient(flags)
    assert per_patient["train_patient"].tolist() == ["pA"]
    assert per_patient.loc[0, "n_flagged"] == 2 and per_patient.loc[0, "n_train_videos"] == 1
    assert per_patient.loc[0, "train_videos"] == ["t1"]


def test_flag_videos_accepts_threshold_object_and_unlisted_queries():
    thr = calibrate_threshold(HELDOUT, train_videos=TRAIN, n_boot=50)
    syn = table([("s1", "t4", 0.8)])
    flags = flag_videos(syn, thr, queries=["s1", "s2"])
    assert flags.set_index("query")["flagged"].to_dict() == {"s1": True, "s2": False}


def test_flags_per_patient_ranks_leakiest_patient_first():
    syn = table(
        [("a", "t4", 0.95), ("b", "t5", 0.90), ("c", "t4", 0.92), ("d", "t1", 0.99), ("e", "t3", 0.91), ("f", "t2", 0.1)]
    )
    per_patient = flags_per_patient(flag_videos(syn, 0.9))
    assert per_patient["train_patient"].tolist() == ["pC", "pA", "pB"]  # pA and pB tie on 1: higher max first
    assert per_patient["n_flagged"].tolist() == [3, 1, 1]
    assert per_patient["n_train_videos"].tolist() == [2, 1, 1]
    assert per_patient.loc[0, "train_videos"] == ["t4", "t5"]
    assert flags_per_patient(flag_videos(syn, 1.0)).empty


def test_simulation_copies_of_training_videos_are_all_flagged():
    """Simulated re-ID scores: copies score 1 with their source, fresh videos stay low."""
    rng = np.random.default_rng(1)
    n_train, n_held = 40, 30
    train = [f"v{i:02d}" for i in range(n_train)]
    patient = {v: f"p{i // 2}" for i, v in enumerate(train)}

    def scores_for(queries, copies_of=None):
        rows = []
        for j, q in enumerate(queries):
            for v in rng.choice(train, size=5, replace=False):
                rows.append((q, v, patient[v], float(rng.beta(2, 8))))
            if copies_of is not None:
                rows.append((q, copies_of[j], patient[copies_of[j]], 1.0))
        return pd.DataFrame(rows, columns=["query", "train_video", "train_patient", "score"])

    held = scores_for([f"h{i}" for i in range(n_held)])
    thr = calibrate_threshold(held, train_videos=train, n_boot=100)
    assert 0.0 < thr.value < 1.0
    copies = [train[i] for i in range(0, 20)]
    syn_copies = scores_for([f"c{i}" for i in range(20)], copies_of=copies)
    flags = flag_videos(syn_copies, thr)
    assert flags["flagged"].all()
    assert sorted(flags["train_video"]) == sorted(copies)  # each copy finds its source
    assert filtered_list(flags) == []
    assert flag_summary(flags)["share"] == 1.0
    # held-out data flagged at its own threshold: at most about 5 % of queries by construction
    assert np.mean(calibration_scores(held, train_videos=train) >= thr.value) <= 0.05 + 1 / n_train


# ------------------------------------------------------------------ errors


def test_errors_missing_columns_are_listed():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['train_patient', 'score'\]"):
        best_matches(pd.DataFrame({"query": ["a"], "train_video": ["t1"]}))
    with pytest.raises(TypeError, match="must be a pandas DataFrame, got list"):
        best_matches([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("percentile", [0, -5, 100.5, float("nan")])
def test_errors_percentile_outside_range(percentile):
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\], got"):
        calibrate_threshold(HELDOUT, percentile=percentile)


def test_errors_other_arguments():
    with pytest.raises(ValueError, match=r"rule must be one of \['train_to_heldout', 'heldout_to_train'\], got 'x'"):
        calibrate_threshold(HELDOUT, rule="x")
    with pytest.raises(ValueError, match=r"training videos not in train_videos: \['t4'\]"):
        calibrate_threshold(HELDOUT, train_videos=["t1", "t2", "t3", "t5"])
    with pytest.raises(ValueError, match="n_boot must be an integer >= 10, got 3"):
        calibrate_threshold(HELDOUT, n_boot=3)
    bad = HELDOUT.assign(score=HELDOUT["score"] * 2)
    with pytest.raises(ValueError, match=r"value\(s\) outside \[0, 1\], e.g. \[1.1, 1.6, 1.3\]"):
        calibrate_threshold(bad)
    with pytest.raises(ValueError, match=r"1 NaN value\(s\)"):
        best_matches(HELDOUT.assign(score=[np.nan] + [0.1] * 7))
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1.5"):
        flag_videos(HELDOUT, 1.5)
    with pytest.raises(ValueError, match="threshold must be a number in"):
        flag_videos(HELDOUT, "0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"threshold_value must be in \[0, 1\], got -0.1"):
        percentile_of_threshold(-0.1, [0.2])
    with pytest.raises(ValueError, match="heldout_best must be a non-empty 1-D array"):
        percentile_of_threshold(0.5, [])
    with pytest.raises(ValueError, match=r"scores has queries not in `queries`: \['h2', 'h3'\]"):
        best_matches(HELDOUT, queries=["h1"])
    with pytest.raises(ValueError, match=r"flags is missing column\(s\) \['flagged'\]"):
        flag_summary(HELDOUT)
    with pytest.raises(ValueError, match="conf must be a number in"):
        flag_summary(flag_videos(HELDOUT, 0.5), conf=95)
    with pytest.raises(ValueError, match="flags is empty"):
        flag_summary(flag_videos(HELDOUT.iloc[:0], 0.5))


def test_threshold_type_is_frozen_dataclass():
    thr = Threshold(value=0.5, rule="train_to_heldout", percentile=95.0, n=10, low=0.4, high=0.6)
    assert thr.to_dict()["n"] == 10
