"""The audit engine on the tiny workspace: plumbing with a known-answer model (copies come
back matched to their source), shortlist vs exact, the Pearson scorer, temporal curves,
refused indexes. Model quality (flag rates) is tested with the shipped models in
test_demo_models.py: micro models are too weak and too variable for it."""

import numpy as np
import pandas as pd
import pytest
import torch

from echoaudit.audit.privacy import best_matches
from echoaudit.planted import planted_copies
from echoaudit.errors import EchoAuditError, IndexMismatchError
from echoaudit.index import EmbeddingIndex
from echoaudit.workspace import Workspace


@pytest.fixture(scope="module")
def ws(tiny_workspace):
    return Workspace(tiny_workspace)


class _StubVAE:
    """Latents = 4x4 average pooling of the frame (deterministic, no training)."""

    fingerprint = "stub"

    def encode(self, frames):
        x = torch.as_tensor(np.asarray(frames, dtype=np.float32))[:, None]
        return torch.nn.functional.avg_pool2d(x, 4)


class _StubReID(torch.nn.Module):
    """Embedding = the centred, normalised latent; head logit = 20 (cos - 0.9): a
    known-answer model, so the test checks the engine's plumbing, not a model's quality."""

    def embed(self, z):
        v = z.flatten(1)
        v = v - v.mean(dim=1, keepdim=True)
        return v / v.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def head_logits(self, e1, e2):
        return 20 * ((e1 * e2).sum(dim=1) - 0.9)

    def pair_proba(self, e1, e2):
        return torch.sigmoid(self.head_logits(e1, e2))


def test_engine_plumbing_matches_copies_to_their_source(ws, stub_engine):
    """Shortlist -> head -> per-video grouping -> best match, with a known-answer model:
    noisy, brightened and re-encoded copies of every training video come back matched
    to that very video, with a per-frame curve and frame numbers that line up."""
    engine, train = stub_engine, ws.train
    copies = planted_copies(train, size=ws.size, kinds=("noise", "brightness", "reencode"), every_kind=True)
    results = [engine.score_frames(x, q, keep_curves=True) for q, _, x in copies]
    best = best_matches(pd.concat([r.per_train for r in results]), queries=[q for q, _, _ in copies])
    source = {q: src for q, src, _ in copies}
    assert (best["train_video"] == best["query"].map(source)).mean() >= 0.95
    r = results[0]
    assert len(r.frame_curve) == len(r.frames) and np.allclose(r.frame_curve, np.max(list(r.curves.values()), axis=0))
    # k = 8 shortlisted frames per query frame, then every frame of the rescored videos
    rescored = sum(len(engine._rows_of[v]) for v in r.per_train["train_video"])
    assert r.head_evaluations == len(r.frames) * 8 + len(r.frames) * rescored


def test_clip_score_is_the_mean_over_query_frames_of_each_frames_best_match(ws, stub_engine):
    """Known answer, computed densely here: per training video v, c_v(q) = max over v's
    indexed frames of the head logit; score = sigmoid(mean_q c_v), score_peak =
    sigmoid(max_q c_v); the best video first."""
    from scipy.special import expit

    x = ws.heldout.load(1, size=ws.size).frames
    emb = stub_engine.embed_frames(x[::2])
    res = stub_engine.score_embeddings(emb, "q", exact=True, keep_curves=True)
    train = stub_engine.train_embeddings
    logits = 20 * (emb @ train.T - 0.9)  # the stub head on every pair
    videos = stub_engine.index.metadata["video"].to_numpy()
    want = {}
    for v in np.unique(videos):
        c = logits[:, videos == v].max(axis=1)
        want[v] = (expit(c.mean()), expit(c.max()))
    got = res.per_train.set_index("train_video")
    assert set(got.index) == set(want)
    for v, (score, peak) in want.items():
        assert got.loc[v, "score"] == pytest.approx(score, rel=1e-5)
        assert got.loc[v, "score_peak"] == pytest.approx(peak, rel=1e-5)
    assert res.per_train["train_video"].iloc[0] == max(want, key=lambda v: want[v][0])
    np.testing.assert_allclose(res.curves[res.per_train["train_video"].iloc[0]],
                               expit(logits[:, videos == res.per_train["train_video"].iloc[0]].max(axis=1)), rtol=1e-5)


@pytest.fixture(scope="module")
def stub_engine(ws):
    from echoaudit.engine import AuditEngine, EngineConfig

    vae, reid = _StubVAE(), _StubReID()
    emb, meta = [], []
    for i, name in enumerate(ws.train.names):
        frames = ws.train.load(i, size=ws.size).frames[::2]
        emb.append(reid.embed(vae.encode(frames)).numpy())
        meta.append(pd.DataFrame({"video": name, "patient": ws.train.patients[i], "frame": np.arange(len(frames)) * 2}))
    index = EmbeddingIndex.build(np.concatenate(emb), pd.concat(meta, ignore_index=True), fingerprint={"test": 1})
    return AuditEngine(vae, reid, index, np.concatenate(emb), EngineConfig(size=ws.size, k=8, rescore_videos=3))


def test_shortlist_finds_the_exact_best_with_fewer_head_calls(ws, stub_engine):
    """With a head monotone in the embeddings' inner product, the best pair is always in
    the FAISS shortlist: shortlist and exact best scores must be equal."""
    calls_short = calls_exact = 0
    for i in range(len(ws.heldout)):
        x = ws.heldout.load(i, size=ws.size).frames
        emb = stub_engine.embed_frames(x[::2])
        a = stub_engine.score_embeddings(emb, "q")
        b = stub_engine.score_embeddings(emb, "q", exact=True)
        assert a.per_train["score"].iloc[0] == pytest.approx(b.per_train["score"].iloc[0], abs=1e-6)
        assert a.per_train["train_video"].iloc[0] == b.per_train["train_video"].iloc[0]
        calls_short += a.head_evaluations
        calls_exact += b.head_evaluations
    # the shortlist costs t * (k + frames of the 3 rescored videos) head calls, exact t * N:
    # on this 128-frame index about 4x fewer (bench/shortlist_vs_exact.py: at demo scale)
    assert calls_exact == len(ws.heldout) * 8 * stub_engine.index.ntotal
    assert calls_exact >= 3 * calls_short


def test_the_shortlist_widens_past_one_long_video():
    """A training video with hundreds of near-copies of the query's frames would fill a
    k-frame shortlist alone: the engine widens it until rescore_videos videos are in it."""
    from echoaudit.engine import AuditEngine, EngineConfig

    rng = np.random.default_rng(0)
    q = rng.standard_normal((4, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    long_video = np.repeat(q, 100, axis=0) + 0.01 * rng.standard_normal((400, 16)).astype(np.float32)
    others = rng.standard_normal((10 * 6, 16)).astype(np.float32)
    emb = np.concatenate([long_video, others])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    meta = pd.DataFrame({"video": ["LONG"] * 400 + [f"V{i}" for i in range(10) for _ in range(6)],
                         "patient": ["PL"] * 400 + [f"P{i}" for i in range(10) for _ in range(6)],
                         "frame": list(range(400)) + list(range(6)) * 10})
    index = EmbeddingIndex.build(emb, meta, fingerprint={"test": 2})
    engine = AuditEngine(_StubVAE(), _StubReID(), index, emb, EngineConfig(size=64, k=8, rescore_videos=5))
    res = engine.score_embeddings(q, "q")
    assert len(res.per_train) == 5 and res.per_train["train_video"].iloc[0] == "LONG"
    exact = engine.score_embeddings(q, "q", exact=True)
    assert res.per_train["score"].iloc[0] == pytest.approx(exact.per_train["score"].iloc[0])

    # One search serves every widening step: the pairs are those of searching again at
    # k, 4k, 16k ... until rescore_videos videos are in (what the engine did before).
    searches = []
    original = index.search

    def counting(queries, k):
        searches.append(k)
        return original(queries, k)

    engine.index.search = counting
    qi, ti = engine._shortlist(q)
    assert searches == [8 * 16]
    k = 8
    while True:
        _, ids = original(q, k)
        if len(np.unique(meta["video"].to_numpy()[ids.reshape(-1)])) >= 5:
            break
        k *= 4
    np.testing.assert_array_equal(ti, ids.reshape(-1))
    np.testing.assert_array_equal(qi, np.repeat(np.arange(4), k))


class _SharpStubReID(_StubReID):
    """Head logit = 30 cos: copies score logits near 30, where float32 probabilities are 1."""

    def head_logits(self, e1, e2):
        return 30 * (e1 * e2).sum(dim=1)


def test_head_probabilities_keep_resolution_near_one(ws, stub_engine):
    """Probabilities are float64 expit of the head's logits: logits 20 and 30 stay apart
    (float32 sigmoid makes both exactly 1.0), and the score tables keep float64."""
    from scipy.special import expit

    from echoaudit.audit.scale import to_logit
    from echoaudit.engine import AuditEngine

    sharp = AuditEngine(stub_engine.vae, _SharpStubReID(), stub_engine.index, stub_engine.train_embeddings,
                        stub_engine.config)
    e = stub_engine.train_embeddings[:3]
    p = sharp._head(e, e)  # identical pairs: logit 30 cos = 30
    assert p.dtype == np.float64 and np.all(p < 1.0)
    assert to_logit(p) == pytest.approx(np.full(3, 30 * float((e[0] * e[0]).sum())), abs=0.05)
    z = np.array([20.0, 30.0])
    assert torch.sigmoid(torch.tensor(z, dtype=torch.float32)).tolist() == [1.0, 1.0]
    assert expit(z)[0] < expit(z)[1] < 1.0
    frames = ws.train.load(0, size=ws.size).frames
    res = sharp.score_frames(frames, "copy", keep_curves=True)
    assert res.per_train["score"].dtype == np.float64 and res.per_train["score_robust"].dtype == np.float64
    assert res.frame_curve.dtype == np.float64 and res.per_train["score"].iloc[0] < 1.0
    assert res.per_train["train_video"].iloc[0] == ws.train.names[0]


def test_micro_engine_exact_mode_sees_at_least_the_shortlist(ws):
    x = ws.heldout.load(0, size=ws.size).frames
    emb = ws.engine.embed_frames(x[:: ws.engine.config.frame_stride])
    a, b = ws.engine.score_embeddings(emb, "q"), ws.engine.score_embeddings(emb, "q", exact=True)
    assert b.per_train["score"].iloc[0] >= a.per_train["score"].iloc[0] - 1e-6
    n_videos = ws.engine.index.metadata["video"].nunique()
    if ws.engine.config.rescore_videos >= n_videos:
        # the tiny index has no more videos than are rescored: both modes rescore them all
        assert a.head_evaluations == b.head_evaluations == len(emb) * ws.engine.index.ntotal
        pd.testing.assert_frame_equal(a.per_train, b.per_train)
    else:
        assert b.head_evaluations > a.head_evaluations


def test_pearson_scorer_equals_numpy(ws):
    x = ws.heldout.load(0, size=ws.size).frames[::2]
    emb = ws.engine.embed_frames(x)
    got = ws.engine.pearson_scores(emb, k=ws.index.ntotal).set_index("train_video")["pearson"]
    train = ws.engine.train_embeddings
    corr = np.corrcoef(np.concatenate([emb, train]))[: len(emb), len(emb):]
    videos = ws.index.metadata["video"].to_numpy()
    expect = pd.Series(corr.max(axis=0)).groupby(videos).max()
    assert np.allclose(got.sort_index().to_numpy(), expect.sort_index().to_numpy(), atol=1e-4)


def test_temporal_curves_real_video(ws):
    x = ws.heldout.load(0, size=ws.size).frames
    curves = ws.engine.temporal_curves(ws.engine.embed_frames(x))
    assert curves["first"].shape == (len(x),) and curves["consecutive"].shape == (len(x) - 1,)
    assert curves["first"][0] > 0.5  # a frame is its own patient
    assert np.isclose(curves["correlation"][0], 1.0)


def test_index_with_other_models_is_refused(ws):
    fp = dict(ws.manifest["index"]["fingerprint"], reid="0" * 64)
    with pytest.raises(IndexMismatchError, match="reid"):
        EmbeddingIndex.load(ws.root / "index", expected_fingerprint=fp)


def test_workspace_errors_are_clear(tmp_path, ws):
    with pytest.raises(EchoAuditError, match="not an EchoAudit workspace"):
        Workspace(tmp_path)
    with pytest.raises(EchoAuditError, match="no synthetic set 'nope'"):
        ws.synthetic("nope")


def test_plant_copy_kinds():
    from echoaudit.planted import plant_copy

    x = np.random.default_rng(0).random((10, 32, 32)).astype(np.float32)
    rng = np.random.default_rng(1)
    assert plant_copy(x, "crop", rng).shape == (6, 32, 32)
    for kind in ("noise", "brightness", "shift", "reencode"):
        y = plant_copy(x, kind, rng)
        assert y.shape == x.shape and 0 < np.abs(y - x).mean() < 0.3
    with pytest.raises(ValueError, match="kind must be one of"):
        plant_copy(x, "mirror", rng)
