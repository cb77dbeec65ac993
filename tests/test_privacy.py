"""Tests of echoaudit.audit.privacy: hand-computed thresholds, flags and error texts."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from echoaudit.audit import intervals
from echoaudit.audit.privacy import (
    DEFAULT_RULE,
    Threshold,
    best_matches,
    calibrate_threshold,
    calibration_scores,
    filtered_list,
    flag_summary,
    flag_videos,
    flags_per_patient,
)
from echoaudit.audit.calibration import (
    Calibration,
    CalibrationSplit,
    calibrate,
    calibration_split,
    excess_over_null,
    false_flag_rate,
    percentile_of_threshold,
    threshold_sentence,
)
from echoaudit.audit.scale import to_logit
from echoaudit.data.clips import ClipSpec

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
def test_calibration_published_rule_matches_hand_computed_percentile(percentile):
    thr = calibrate_threshold(HELDOUT, rule="train_to_heldout", percentile=percentile, train_videos=TRAIN, n_boot=50)
    assert thr.value == pytest.approx(np.percentile(TRAIN_BEST, percentile))
    assert thr.rule == "train_to_heldout" and thr.n == 5 and thr.n_heldout == 3 and thr.method == "linear"


def test_calibration_95th_by_hand():
    # sorted best [0, .30, .55, .65, .80]; position 0.95 * 4 = 3.8 -> .65 + 0.8 * .15 = .77
    thr = calibrate_threshold(HELDOUT, rule="train_to_heldout", train_videos=TRAIN, n_boot=50)
    assert thr.value == pytest.approx(0.77)
    # without train_videos t5 is silently missing: [.30, .55, .65, .80] -> 2.85 -> .7775
    assert calibrate_threshold(HELDOUT, rule="train_to_heldout", n_boot=50).value == pytest.approx(0.7775)


def test_calibration_heldout_to_train_rule_is_the_default_and_weibull():
    # sorted [.55, .65, .80]; weibull position 0.95 * (3 + 1) = 3.8 > 3: the largest, .80
    thr = calibrate_threshold(HELDOUT, n_boot=50)
    assert DEFAULT_RULE == "heldout_to_train" == thr.rule and thr.method == "weibull"
    assert thr.value == pytest.approx(0.80) and thr.n == 3
    # 30 best scores .01 .. .30: position 0.95 * 31 = 29.45 -> .29 + 0.45 * .01 = .2945
    table_30 = pd.DataFrame({"query": [f"h{i:02d}" for i in range(30)], "train_video": "t1", "train_patient": "pA",
                             "score": np.arange(1, 31) / 100})
    assert calibrate_threshold(table_30, n_boot=50).value == pytest.approx(0.2945)
    # a listed held-out video with no pair counts as 0: [0, .55, .65, .80] -> 4.75 > 4: .80
    thr4 = calibrate_threshold(HELDOUT, rule="heldout_to_train", heldout_videos=["h1", "h2", "h3", "h4"], n_boot=50)
    assert thr4.value == pytest.approx(np.percentile([0.0, 0.55, 0.65, 0.80], 95, method="weibull")) == 0.80


def test_calibration_scores_series():
    best = calibration_scores(HELDOUT, rule="train_to_heldout", train_videos=TRAIN)
    assert best.index.tolist() == TRAIN and best.index.name == "train_video"
    np.testing.assert_allclose(best.to_numpy(), TRAIN_BEST)
    best_h = calibration_scores(HELDOUT, rule="heldout_to_train")
    np.testing.assert_allclose(best_h.to_numpy(), HELDOUT_BEST)


def test_threshold_interval_is_the_intervals_bootstrap_and_seeded():
    thr = calibrate_threshold(HELDOUT, rule="train_to_heldout", train_videos=TRAIN, n_boot=200, seed=7)
    ref = intervals.bootstrap_quantile_interval(np.sort(TRAIN_BEST), 0.95, n_boot=200, conf=0.95, seed=7)
    assert (thr.low, thr.high) == pytest.approx(ref)
    assert thr.low <= thr.value <= thr.high + 1e-12
    assert calibrate_threshold(HELDOUT, rule="train_to_heldout", train_videos=TRAIN, n_boot=200, seed=7) == thr
    default = calibrate_threshold(HELDOUT, n_boot=200, seed=7)  # weibull, resampled the same way
    ref = intervals.bootstrap_quantile_interval(HELDOUT_BEST, 0.95, n_boot=200, seed=7, method="weibull")
    assert (default.low, default.high) == pytest.approx(ref)


def test_threshold_describe_and_to_dict():
    thr = calibrate_threshold(HELDOUT, rule="train_to_heldout", train_videos=TRAIN, n_boot=50)
    text = thr.describe()
    # logit(0.77) = log(0.77 / 0.23) = 1.208
    assert "Threshold 1.21 (re-ID logit) is the 95th percentile" in text and "EchoNet-Synthetic" in text
    assert "5 % of real unseen videos should be flagged" in text and "not measured" in text and "\n" not in text
    assert text == threshold_sentence(thr)
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
    thr = calibrate_threshold(HELDOUT, rule="train_to_heldout", train_videos=TRAIN, n_boot=50)
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
    thr = calibrate_threshold(held, train_videos=train, n_boot=100)  # held-out-to-train
    assert 0.0 < thr.value < 1.0
    copies = [train[i] for i in range(0, 20)]
    syn_copies = scores_for([f"c{i}" for i in range(20)], copies_of=copies)
    flags = flag_videos(syn_copies, thr)
    assert flags["flagged"].all()
    assert sorted(flags["train_video"]) == sorted(copies)  # each copy finds its source
    assert filtered_list(flags) == []
    assert flag_summary(flags)["share"] == 1.0
    # held-out data flagged at its own threshold: weibull position 0.95 * 31 = 29.45 of 30,
    # so only the largest of the 30 best scores reaches it
    assert np.mean(calibration_scores(held, train_videos=train) >= thr.value) == pytest.approx(1 / n_held)


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
    with pytest.raises(ValueError, match=r"rule must be one of \['heldout_to_train', 'train_to_heldout'\], got 'x'"):
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


# ------------------------------------------------------------------ calibration / check split


HELD_NAMES = [f"h{p}_{v}" for p in range(10) for v in range(3)]
HELD_PATIENTS = [f"P{p}" for p in range(10) for _ in range(3)]


def test_calibration_split_is_by_patient_seeded_and_order_free():
    split = calibration_split(HELD_NAMES, HELD_PATIENTS, seed=3)
    assert len(split.calibration_patients) == 5 and len(split.check_patients) == 5
    assert not set(split.calibration_patients) & set(split.check_patients)
    assert sorted(split.calibration + split.check) == sorted(HELD_NAMES)
    patient = dict(zip(HELD_NAMES, HELD_PATIENTS))
    assert {patient[v] for v in split.calibration} == set(split.calibration_patients)
    assert {patient[v] for v in split.check} == set(split.check_patients)
    assert list(split.calibration) == sorted(split.calibration)
    # same seed, shuffled input: the same split; another seed: another one
    order = np.random.default_rng(0).permutation(len(HELD_NAMES))
    shuffled = calibration_split([HELD_NAMES[i] for i in order], [HELD_PATIENTS[i] for i in order], seed=3)
    assert shuffled == split
    assert any(calibration_split(HELD_NAMES, HELD_PATIENTS, seed=s) != split for s in range(4, 8))
    # the shuffle is numpy's, by hand: sorted patients permuted by default_rng(3)
    first = np.random.default_rng(3).permutation(10)[:5]
    assert split.calibration_patients == tuple(sorted(f"P{i}" for i in first))


@pytest.mark.parametrize(("fraction", "n_cal"), [(0.5, 5), (0.3, 3), (0.01, 1), (0.99, 9)])
def test_calibration_split_fraction_keeps_both_parts(fraction, n_cal):
    split = calibration_split(HELD_NAMES, HELD_PATIENTS, fraction=fraction)
    assert len(split.calibration_patients) == n_cal and len(split.check_patients) == 10 - n_cal
    assert split.fraction == fraction and split.seed == 0


def test_calibration_split_round_trips_through_a_dict():
    split = calibration_split(HELD_NAMES, HELD_PATIENTS, seed=1)
    d = split.to_dict()
    assert isinstance(d["calibration"], list) and d["seed"] == 1 and d["fraction"] == 0.5
    import json

    assert CalibrationSplit.from_dict(json.loads(json.dumps(d))) == split
    with pytest.raises(ValueError, match=r"missing \['seed', 'fraction'\]"):
        CalibrationSplit.from_dict({k: v for k, v in d.items() if k not in ("seed", "fraction")})
    with pytest.raises(ValueError, match=r"each patient in one part; in both: \['P0'\]"):
        CalibrationSplit.from_dict(d | {"calibration_patients": ["P0"], "check_patients": ["P0", "P1"]})


def test_calibration_split_errors():
    with pytest.raises(ValueError, match="at least 2 held-out patients, got 1"):
        calibration_split(["a", "b"], ["P", "P"])
    with pytest.raises(ValueError, match="one patient per video: 2 names, 1 patients"):
        calibration_split(["a", "b"], ["P"])
    with pytest.raises(ValueError, match=r"fraction must be a number in \(0, 1\), e.g. 0.5; got 1.0"):
        calibration_split(["a", "b"], ["P", "Q"], fraction=1.0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        calibration_split(["a", "b"], ["P", "Q"], seed=-1)
    with pytest.raises(ValueError, match=r"names has duplicate names, e.g. \['a'\]"):
        calibration_split(["a", "a"], ["P", "Q"])
    with pytest.raises(ValueError, match=r"patients has 1 missing value\(s\)"):
        calibration_split(["a", "b"], ["P", None])


def test_false_flag_rate_by_hand():
    # check videos h2 (.80), h3 (.65), h4 (never shortlisted: 0); threshold .65 flags h2 and h3
    rate = false_flag_rate(HELDOUT, 0.65, videos=["h2", "h3", "h4"], n_patients=2)
    assert (rate["k"], rate["n"], rate["n_patients"]) == (2, 3, 2) and rate["rate"] == pytest.approx(2 / 3)
    assert (rate["low"], rate["high"]) == pytest.approx(intervals.wilson_interval(2, 3))
    assert "Wilson 95 %" in rate["rule"]
    # h1's rows (.55) are ignored: it is not a check video
    assert false_flag_rate(HELDOUT, 0.5, videos=["h3"])["k"] == 1
    with pytest.raises(ValueError, match="videos is empty"):
        false_flag_rate(HELDOUT, 0.5, videos=[])
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 2.0"):
        false_flag_rate(HELDOUT, 2.0, videos=["h1"])


def _held_table(rng, held, train, score=lambda rng, n: rng.uniform(size=n)):
    n_h, n_t = len(held), len(train)
    return pd.DataFrame({"query": np.repeat(held, n_t), "train_video": np.tile(train, n_h),
                         "train_patient": np.tile(train, n_h), "score": score(rng, n_h * n_t)})


def test_calibrate_sets_on_calibration_part_and_measures_on_check_part():
    rng = np.random.default_rng(0)
    train = [f"t{i}" for i in range(20)]
    table = _held_table(rng, HELD_NAMES, train)
    split = calibration_split(HELD_NAMES, HELD_PATIENTS, seed=0)
    cal = calibrate(table, train_videos=train, heldout_videos=HELD_NAMES, split=split, n_boot=50,
                    clip=ClipSpec(fps=25.0, frames=32))
    assert isinstance(cal, Calibration) and cal.split == split and cal.clip == {"fps": 25.0, "frames": 32}
    calib_part = table[table["query"].isin(split.calibration)]
    ref = calibrate_threshold(calib_part, train_videos=train, heldout_videos=list(split.calibration), n_boot=50)
    assert cal.threshold == ref and cal.value == ref.value
    check_best = table[table["query"].isin(split.check)].groupby("query")["score"].max()
    assert cal.check["k"] == int((check_best >= ref.value).sum()) and cal.check["n"] == len(split.check) == 15
    assert cal.check["n_patients"] == 5
    pub = calibrate(table, train_videos=train, heldout_videos=HELD_NAMES, split=split, rule="train_to_heldout",
                    n_boot=50)
    assert pub.threshold.n == 20 and pub.threshold.n_heldout == 15 and pub.check["n"] == 15
    d = cal.to_dict()
    assert d["logit"] == pytest.approx(to_logit(ref.value)) and d["check"] == cal.check
    assert d["sentence"] == d["describe"] == cal.sentence() and d["rule_name"] == "held-out-to-train rule"
    # without a split: every held-out video calibrates, nothing is measured
    whole = calibrate(table, train_videos=train, heldout_videos=HELD_NAMES, n_boot=50)
    assert whole.check is None and whole.threshold.n == 30 and "not measured" in whole.sentence()


def test_calibrate_errors():
    split = calibration_split(HELD_NAMES, HELD_PATIENTS)
    with pytest.raises(ValueError, match=r"split has videos that are not held-out videos: \['h0_0'"):
        calibrate(HELDOUT, train_videos=TRAIN, heldout_videos=["h1", "h2", "h3"], split=split)
    with pytest.raises(ValueError, match="split must be a CalibrationSplit or None, got dict"):
        calibrate(HELDOUT, train_videos=TRAIN, heldout_videos=["h1", "h2", "h3"], split={})  # type: ignore[arg-type]


def test_threshold_sentence_states_rule_clip_and_measured_rate():
    thr = Threshold(value=float(1 / (1 + np.exp(-7.21))), rule="heldout_to_train", percentile=95.0, n=45,
                    low=0.99, high=0.9999, n_heldout=45, method="weibull")
    check = {"k": 2, "n": 46, "rate": 2 / 46, "low": 0.012, "high": 0.145, "conf": 0.95, "n_patients": 23}
    assert threshold_sentence(thr, check=check, clip=ClipSpec(fps=25.0, frames=32)) == (
        "Threshold 7.21 (re-ID logit) is the 95th percentile of 45 calibration videos' best scores against the "
        "training set (held-out-to-train rule, clips of 32 frames at 25 fps): 5 % of real unseen videos should be "
        "flagged; measured on 46 videos of 23 check patients: 4.3 % [1.2, 14.5] (Wilson 95 %).")
    pub = Threshold(value=0.5, rule="train_to_heldout", percentile=95.0, n=320, low=0.4, high=0.6, n_heldout=45)
    assert threshold_sentence(pub, clip={"fps": 25.0, "frames": 32}) == (
        "Threshold 0.00 (re-ID logit) is the 95th percentile of 320 training videos' best scores against 45 "
        "calibration videos (EchoNet-Synthetic rule, clips of 32 frames at 25 fps): 5 % of real unseen videos "
        "should be flagged; measured false-flag rate: not measured (this workspace has no check part of held-out "
        "patients).")
    assert "clip length not recorded" in threshold_sentence(pub)
    with pytest.raises(ValueError, match="threshold must be a Threshold, got float"):
        threshold_sentence(0.5)  # type: ignore[arg-type]


def test_excess_over_null_by_hand():
    flags = {"n_flagged": 10, "n_videos": 32}
    check = {"k": 2, "n": 46}
    ex = excess_over_null(flags, check)
    d, low, high = intervals.newcombe_interval(10, 32, 2, 46)
    assert ex["measured"] and ex["excess"] == pytest.approx(10 / 32 - 2 / 46) == pytest.approx(d)
    assert (ex["low"], ex["high"]) == pytest.approx((low, high))
    assert ex["videos"] == pytest.approx(32 * d) and ex["expected"] == pytest.approx(32 * 2 / 46)
    assert ex["sentence"].startswith(f"{32 * d:.1f} synthetic videos more than chance (95 % interval "
                                     f"{32 * low:.1f} to {32 * high:.1f}): 10 of 32 flagged")
    none = excess_over_null(flags, None)
    assert not none["measured"] and "not measured" in none["sentence"]
    with pytest.raises(ValueError, match="it lacks 'n_videos'"):
        excess_over_null({"n_flagged": 1}, check)


# ------------------------------------------------------------------ does the stated rate hold?


RATIOS = (0.5, 1, 2, 5, 10)


@functools.lru_cache(maxsize=None)
def _simulated_false_flag_rates(ratio: float, structure: str, reps: int = 40, n_patients: int = 50,
                                n_fresh: int = 300, top_k: int = 10) -> dict[str, float]:
    """Average false-flag rate on fresh real videos at the calibrated 95th-percentile
    threshold, per rule, for training / held-out size ratio ``ratio``.

    Scores are logits ``a_patient(query) + b_patient(train) + noise`` through a sigmoid:
    ``structure="iid"`` has no patient effects, ``"patient"`` a N(0, 1) effect per patient
    (2 videos each), so videos of one patient score alike. The score table keeps each
    held-out video's ``top_k`` best training videos, as the engine's tables do. Held-out
    patients are split 50/50 by :func:`calibration_split`; fresh videos are new patients,
    each scored against the same training set, their best over it compared with the
    threshold.
    """
    from scipy.special import expit

    rng = np.random.default_rng(int(10 * ratio) + (0 if structure == "iid" else 1000))
    held = [f"h{p:03d}_{v}" for p in range(n_patients) for v in range(2)]
    split = calibration_split(held, [h[:4] for h in held], seed=0)
    n_h, n_t = len(held), int(round(ratio * len(held)))
    train = [f"t{i:04d}" for i in range(n_t)]
    sd = 1.0 if structure == "patient" else 0.0
    rates = {"heldout_to_train": [], "train_to_heldout": []}
    top = min(top_k, n_t)
    query = np.repeat(np.asarray(held), top)
    for _ in range(reps):
        b = np.repeat(rng.normal(0.0, sd, (n_t + 1) // 2), 2)[:n_t]
        a = np.repeat(rng.normal(0.0, sd, n_patients), 2)
        scores = expit(a[:, None] + b[None, :] + rng.normal(size=(n_h, n_t)))
        # as the engine stores them: each query's top_k training videos (absent pairs count 0)
        best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        video = np.asarray(train)[best.ravel()]
        table = pd.DataFrame({"query": query, "train_video": video, "train_patient": video,
                              "score": np.take_along_axis(scores, best, axis=1).ravel()})
        fresh = expit((rng.normal(0.0, sd, n_fresh)[:, None] + b[None, :] + rng.normal(size=(n_fresh, n_t))).max(axis=1))
        for rule in rates:
            cal = calibrate(table, train_videos=train, heldout_videos=held, split=split, rule=rule, n_boot=10)
            rates[rule].append(float(np.mean(fresh >= cal.value)))
    return {rule: float(np.mean(v)) for rule, v in rates.items()}


@pytest.mark.parametrize("ratio", RATIOS)
def test_default_rule_flags_the_stated_share_of_fresh_videos(ratio):
    """At the default threshold (5 % stated) fresh unseen videos are flagged 2.5-7.5 % of
    the time, averaged over repetitions, for training / held-out size ratios 0.5 to 10."""
    rate = _simulated_false_flag_rates(ratio, "iid")["heldout_to_train"]
    assert 0.025 <= rate <= 0.075, f"ratio {ratio}: {100 * rate:.1f} % flagged, 5 % stated"


def test_default_rule_with_patient_structured_scores():
    """Videos of one patient score alike: the calibration sample counts fewer independent
    draws than videos, and the rate drifts up a little (25 calibration patients here), but
    stays in the band at both ends of the ratio range."""
    for ratio in (RATIOS[0], RATIOS[-1]):
        rate = _simulated_false_flag_rates(ratio, "patient")["heldout_to_train"]
        assert 0.025 <= rate <= 0.075, f"ratio {ratio}: {100 * rate:.1f} % flagged, 5 % stated"


def test_published_rule_drifts_with_the_size_ratio():
    """The EchoNet-Synthetic rule takes a percentile of training videos' best scores: with
    more training than held-out videos a fresh video's best (over all training videos) is
    higher, and the flagged share leaves the band (iid: about 1 - 0.95^(n_train / n_calibration))."""
    rates = [_simulated_false_flag_rates(r, "iid")["train_to_heldout"] for r in RATIOS]
    assert any(not 0.025 <= r <= 0.075 for r in rates), rates
    assert rates[-1] > 0.5 and rates == sorted(rates)
