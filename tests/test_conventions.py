"""Parity of the published conventions with straightforward dense computations written here."""

from __future__ import annotations

import numpy as np
import pytest

from echoaudit.audit.conventions import (
    echonet_synthetic_threshold, notebook_best_matches, notebook_threshold, pearson_best_matches,
)


def _head(w: np.ndarray, b: float):
    """A linear head on |e1 - e2| (the published layout: one logit)."""
    return lambda e1, e2: np.abs(e1 - e2) @ w + b


@pytest.mark.parametrize("seed, n_q, n_t, dim", [(0, 7, 30, 8), (1, 20, 50, 16), (2, 3, 200, 4)])
def test_notebook_mode_matches_a_dense_loop(seed, n_q, n_t, dim):
    rng = np.random.default_rng(seed)
    q, t = rng.normal(size=(n_q, dim)), rng.normal(size=(n_t, dim))
    videos = [f"v{i // 3}" for i in range(n_t)]  # 3 frames per training video
    w, b = -rng.uniform(0.5, 1.5, dim), 2.0
    out = notebook_best_matches(q, [f"q{i}" for i in range(n_q)], t, videos, _head(w, b))
    q32, t32 = q.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)
    for i in range(n_q):  # every (query first frame, training frame) pair, one by one
        scores = np.array([np.abs(q32[i] - t32[j]) @ w + b for j in range(n_t)])
        assert out["score"].iloc[i] == pytest.approx(scores.max(), abs=1e-6)
        assert out["train_video"].iloc[i] == videos[int(scores.argmax())]
    held = rng.normal(size=(11, dim))
    h32 = held.astype(np.float32).astype(np.float64)
    best = [max(np.abs(h32[i] - t32[j]) @ w + b for j in range(n_t)) for i in range(len(held))]
    assert notebook_threshold(held, t, _head(w, b)) == pytest.approx(np.percentile(best, 95), abs=1e-6)


@pytest.mark.parametrize("seed, n_q, n_t, dim", [(0, 9, 40, 128), (1, 25, 60, 16)])
def test_echonet_synthetic_mode_matches_dense_pearson(seed, n_q, n_t, dim):
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 1, size=(n_q, dim))  # sigmoid-like features
    t = rng.uniform(0, 1, size=(n_t, dim))
    t[:3] = q[:3] * 2.0 + 0.1  # scaled copies: correlation 1 (Pearson ignores gain and offset)
    videos = [f"v{i}" for i in range(n_t)]
    out = pearson_best_matches(q, [f"q{i}" for i in range(n_q)], t, videos)
    r = np.corrcoef(np.vstack([q, t]).astype(np.float32).astype(np.float64))[:n_q, n_q:]  # dense (Q, M)
    np.testing.assert_allclose(out["score"], r.max(axis=1), atol=1e-6)
    assert out["train_video"].tolist()[:3] == ["v0", "v1", "v2"]
    assert (r[np.arange(n_q), out["train_row"].to_numpy()] >= r.max(axis=1) - 1e-6).all()
    held = rng.uniform(0, 1, size=(12, dim))
    rt = np.corrcoef(np.vstack([t, held]).astype(np.float32).astype(np.float64))[:n_t, n_t:]
    assert echonet_synthetic_threshold(t, held) == pytest.approx(np.percentile(rt.max(axis=1), 95), abs=1e-6)


def test_errors():
    q, t = np.zeros((2, 4)), np.ones((3, 5))
    with pytest.raises(ValueError, match=r"train_emb must be a \(n, 4\) array with n >= 1, got shape \(3, 5\)"):
        pearson_best_matches(q, ["a", "b"], t, ["x", "y", "z"])
    with pytest.raises(ValueError, match=r"query_names must hold one name per row \(2\), got 1"):
        notebook_best_matches(q, ["a"], np.ones((3, 4)), ["x", "y", "z"], lambda a, b: a.sum(1))
    with pytest.raises(ValueError, match=r"percentile must be a number in \(0, 100\], got 0"):
        echonet_synthetic_threshold(np.random.default_rng(0).normal(size=(3, 4)),
                                    np.random.default_rng(1).normal(size=(3, 4)), percentile=0)


@pytest.mark.parametrize("seed, percentile", [(0, 95.0), (3, 80.0)])
def test_compare_modes_matches_dense_thresholds_flags_and_check_rates(seed, percentile):
    from echoaudit.audit.conventions import compare_modes

    rng = np.random.default_rng(seed)
    dim, n_videos, per_video = 8, 12, 4
    t_all = rng.uniform(0, 1, size=(n_videos * per_video, dim))
    videos = [f"v{i // per_video}" for i in range(len(t_all))]
    t_first, first_videos = t_all[::per_video], videos[::per_video]
    cal, chk = rng.uniform(0, 1, size=(15, dim)), rng.uniform(0, 1, size=(9, dim))
    syn = rng.uniform(0, 1, size=(10, dim))
    syn[:4] = t_first[:4] + rng.normal(0, 0.01, size=(4, dim))  # near copies of training first frames
    w, b = -rng.uniform(0.5, 1.5, dim), 3.0
    out = compare_modes(train_emb=t_all, train_videos=videos, train_first=t_first, train_first_videos=first_videos,
                        calibration_first=cal, check_first=chk, synthetic_first=syn,
                        synthetic_names=[f"s{i}" for i in range(len(syn))], head=_head(w, b), percentile=percentile)

    def f64(x):
        return x.astype(np.float32).astype(np.float64)

    def best_head(q):  # every (query, training frame) pair, one by one
        return np.array([max(np.abs(f64(q)[i] - f64(t_all)[j]) @ w + b for j in range(len(t_all))) for i in range(len(q))])

    def best_corr(q, base):
        return np.corrcoef(np.vstack([f64(q), f64(base)]))[: len(q), len(q):].max(axis=1)

    nb = out["notebooks"]
    tau = np.percentile(best_head(cal), percentile)
    assert nb["threshold"] == pytest.approx(tau, abs=1e-6) and nb["skipped"] is None
    assert nb["threshold"] == pytest.approx(notebook_threshold(cal, t_all, _head(w, b), percentile=percentile), abs=1e-6)
    syn_best = best_head(syn)
    np.testing.assert_allclose(nb["best"]["score"], syn_best, atol=1e-6)
    assert nb["flagged"]["k"] == int((syn_best >= tau).sum()) and nb["flagged"]["n"] == len(syn)
    assert nb["check"]["k"] == int((best_head(chk) >= tau).sum()) and nb["check"]["n"] == len(chk)
    assert nb["flagged"]["low"] <= nb["flagged"]["share"] <= nb["flagged"]["high"]

    es = out["echonet_synthetic"]
    tau = np.percentile(best_corr(t_first, cal), percentile)  # each training item's best held-out correlation
    assert es["threshold"] == pytest.approx(tau, abs=1e-6)
    syn_best = best_corr(syn, t_first)
    np.testing.assert_allclose(es["best"]["score"], syn_best, atol=1e-6)
    assert es["flagged"]["k"] == int((syn_best >= tau).sum()) >= 4  # the near copies
    assert es["best"]["train_video"].tolist()[:4] == first_videos[:4]
    assert es["check"]["k"] == int((best_corr(chk, t_first) >= tau).sum())
    assert es["n_calibration"] == nb["n_calibration"] == len(cal)


def test_compare_modes_skips_a_dense_head_that_is_too_big_and_checks_inputs():
    from echoaudit.audit.conventions import compare_modes

    rng = np.random.default_rng(0)
    t = rng.normal(size=(20, 4))
    kw = dict(train_emb=t, train_videos=[f"v{i}" for i in range(20)], train_first=t[:5],
              train_first_videos=[f"v{i}" for i in range(5)], calibration_first=rng.normal(size=(6, 4)),
              check_first=None, synthetic_first=rng.normal(size=(3, 4)), synthetic_names=["a", "b", "c"],
              head=_head(-np.ones(4), 1.0))
    out = compare_modes(**kw, max_head_pairs=100)  # (6 + 3) * 20 = 180 pairs
    assert out["notebooks"]["threshold"] is None and out["notebooks"]["flagged"] is None
    assert "180 head evaluations" in out["notebooks"]["skipped"]
    es = out["echonet_synthetic"]
    assert es["threshold"] is not None and es["check"] is None and es["flagged"]["n"] == 3
    with pytest.raises(ValueError, match=r"synthetic_first must be a \(n, 4\) array with n >= 1, got shape \(3, 5\)"):
        compare_modes(**(kw | {"synthetic_first": np.ones((3, 5))}))
    with pytest.raises(ValueError, match=r"max_head_pairs must be an integer >= 1, got 0"):
        compare_modes(**kw, max_head_pairs=0)
    with pytest.raises(ValueError, match=r"conf must be a number in \(0, 1\), got 1.5"):
        compare_modes(**kw, conf=1.5)
