import numpy as np
import pandas as pd
import pytest

from echoaudit.audit.summary import audit_summary, learned_estimate


def _tables(rng):
    train = [f"t{i}" for i in range(50)]
    held = [f"h{i}" for i in range(40)]
    # Real held-out videos: best scores spread below 0.9.
    h = pd.DataFrame({"query": held, "train_video": rng.choice(train, 40), "score": rng.uniform(0.3, 0.9, 40)})
    # Synthetic: 10 exact copies of t0..t4 (score 0.99) and 10 novel videos (low scores).
    s = pd.DataFrame({"query": [f"s{i}" for i in range(20)],
                      "train_video": [f"t{i % 5}" for i in range(10)] + list(rng.choice(train, 10)),
                      "score": [0.99] * 10 + list(rng.uniform(0.2, 0.6, 10))})
    for df in (h, s):
        df["train_patient"] = "p_" + df["train_video"]
        df["score_robust"] = df["score"] - 0.01
    return train, held, h, s


def test_summary_numbers_follow_the_tables():
    rng = np.random.default_rng(0)
    train, held, h, s = _tables(rng)
    out = audit_summary(h, s, train_videos=train, heldout_videos=held, synthetic_videos=list(s["query"]), n_boot=100,
                        embeddings=(rng.normal(size=(50, 8)), rng.normal(size=(20, 8))))
    assert out["flags"]["n_flagged"] == 10 and out["flags"]["share"] == pytest.approx(0.5)
    assert out["recall"]["raw_thresholded"]["matched"] == 5  # t0..t4
    learned = out["learned"]["synthetic"]
    assert learned["k"] == 5 and learned["n"] == 10 and learned["s_low"] <= 5 <= learned["s_high"]
    assert set(out["prdc"]) >= {"precision", "recall", "density", "coverage", "rule"}
    robust = audit_summary(h, s, train_videos=train, heldout_videos=held, synthetic_videos=list(s["query"]),
                           score_column="score_robust", n_boot=100)
    assert robust["score_column"] == "score_robust"
    with pytest.raises(ValueError, match="score_column"):
        audit_summary(h, s, train_videos=train, heldout_videos=held, synthetic_videos=list(s["query"]),
                      score_column="nope", n_boot=100)


def test_learned_estimate_none_when_nothing_counts():
    best = pd.DataFrame({"query": ["a"], "train_video": ["t1"], "score": [0.1]})
    assert learned_estimate(best, 10, threshold=0.5) is None
    assert learned_estimate(best, 10, threshold=None)["k"] == 1
