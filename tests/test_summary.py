import numpy as np
import pandas as pd
import pytest

from echoaudit.audit.coverage import adjusted_coverage, coverage
from echoaudit.audit.privacy import best_matches
from echoaudit.audit.calibration import calibration_split
from echoaudit.audit.summary import audit_summary


def _tables(rng):
    train = [f"t{i}" for i in range(50)]
    held = [f"h{i}" for i in range(40)]
    train_p = [f"p_t{i}" for i in range(50)]
    held_p = [f"hp{i // 2}" for i in range(40)]
    # Real held-out videos: best scores spread below 0.9.
    h = pd.DataFrame({"query": held, "train_video": rng.choice(train, 40), "score": rng.uniform(0.3, 0.9, 40)})
    # Synthetic: 10 exact copies of t0..t4 (score 0.99) and 10 novel videos (low scores).
    s = pd.DataFrame({"query": [f"s{i}" for i in range(20)],
                      "train_video": [f"t{i % 5}" for i in range(10)] + list(rng.choice(train, 10)),
                      "score": [0.99] * 10 + list(rng.uniform(0.2, 0.6, 10))})
    for df in (h, s):
        df["train_patient"] = "p_" + df["train_video"]
        df["score_robust"] = df["score"] - 0.01
    return train, train_p, held, held_p, h, s


def test_summary_numbers_follow_the_tables():
    rng = np.random.default_rng(0)
    train, train_p, held, held_p, h, s = _tables(rng)
    lists = dict(train_videos=train, train_patients=train_p, heldout_videos=held, heldout_patients=held_p,
                 synthetic_videos=list(s["query"]))
    out = audit_summary(h, s, **lists, n_boot=100, embeddings=(rng.normal(size=(50, 8)), rng.normal(size=(20, 8))))
    assert out["flags"]["n_flagged"] == 10 and out["flags"]["share"] == pytest.approx(0.5)
    # reproduction: the 10 copies at 0.99 are above any threshold of scores < 0.9; t0..t4 = 5 patients
    assert out["reproduction"]["video"]["matched"] == 5 and out["reproduction"]["patient"]["matched"] == 5
    # coverage: no threshold, every synthetic video's best match counts
    cov = out["coverage"]
    assert cov["synthetic"]["video"]["matched"] == s["train_video"].nunique()
    assert cov["synthetic"]["video"]["n_queries"] == 20
    # the real baseline comes from the check part of the by-patient split only
    check = list(calibration_split(held, held_p, seed=0).check)
    assert cov["check_videos"] == check and cov["real"]["video"]["n_queries"] == len(check)
    assert cov["real"]["video"]["matched"] == h.set_index("query").loc[check, "train_video"].nunique()
    best_check = best_matches(h[h["query"].isin(check)], queries=check)
    ref = adjusted_coverage(best_matches(s, queries=list(s["query"])), best_check, train, train_p, n_boot=100)
    assert cov["adjusted"]["patient"]["value"] == pytest.approx(ref["patient"]["value"])
    a = cov["adjusted"]["video"]
    assert a["low"] <= a["value"] <= a["high"] and a["n_star"] == min(20, len(check))
    assert "recall" not in out and "learned" not in out  # the old thresholded "adjusted recall" is gone
    assert set(out["prdc"]) >= {"precision", "recall", "density", "coverage", "rule"}
    robust = audit_summary(h, s, **lists, score_column="score_robust", n_boot=100)
    assert robust["score_column"] == "score_robust"
    with pytest.raises(ValueError, match="score_column"):
        audit_summary(h, s, **lists, score_column="nope", n_boot=100)


def test_coverage_of_a_set_without_matches_has_no_limit():
    best = pd.DataFrame({"query": ["a"], "train_video": [None], "score": [0.0]})
    out = coverage(best, ["t1", "t2"], ["p1", "p2"])
    assert out["video"]["matched"] == 0 and out["video"]["limit"] is None


def test_summary_threshold_is_set_on_calibration_and_checked_on_check_patients():
    from echoaudit.audit.intervals import newcombe_interval
    from echoaudit.audit.calibration import calibrate, false_flag_rate

    rng = np.random.default_rng(1)
    train, train_p, held, held_p, h, s = _tables(rng)
    split = calibration_split(held, held_p, seed=0)
    lists = dict(train_videos=train, train_patients=train_p, heldout_videos=held, heldout_patients=held_p,
                 synthetic_videos=list(s["query"]))
    out = audit_summary(h, s, **lists, split=split, clip={"fps": 25.0, "frames": 32}, n_boot=100)
    ref = calibrate(h, train_videos=train, heldout_videos=held, split=split, n_boot=100)
    t = out["threshold"]
    assert t["rule"] == "heldout_to_train" and t["value"] == pytest.approx(ref.value) and t["n"] == len(split.calibration)
    assert t["check"] == false_flag_rate(h, ref.value, videos=list(split.check), n_patients=len(split.check_patients))
    assert "clips of 32 frames at 25 fps" in t["sentence"] and "measured on" in t["sentence"]
    assert set(out["rules"]) == {"heldout_to_train", "train_to_heldout"}
    assert out["rules"]["train_to_heldout"]["check"]["n"] == len(split.check)
    d, low, high = newcombe_interval(out["flags"]["n_flagged"], 20, t["check"]["k"], t["check"]["n"])
    ex = out["excess"]
    assert ex["measured"] and (ex["excess"], ex["low"], ex["high"]) == pytest.approx((d, low, high))
    assert ex["sentence"].startswith(f"{20 * d:.1f} synthetic videos more than chance")
    # the published rule on request; without a split nothing is measured
    pub = audit_summary(h, s, **lists, split=split, rule="train_to_heldout", n_boot=100)
    assert pub["threshold"]["rule"] == "train_to_heldout" and pub["threshold"]["n"] == len(train)
    old = audit_summary(h, s, **lists, n_boot=100)
    assert old["threshold"]["check"] is None and not old["excess"]["measured"]
    assert old["threshold"]["n"] == len(held) and "not measured" in old["threshold"]["sentence"]
    with pytest.raises(ValueError, match=r"rule must be one of \['heldout_to_train', 'train_to_heldout'\]"):
        audit_summary(h, s, **lists, rule="nope", n_boot=100)
