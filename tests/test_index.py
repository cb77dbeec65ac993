"""Tests of echoaudit.index against numpy brute force, np.corrcoef and simulated crashes."""

import json

import numpy as np
import pandas as pd
import pytest

from echoaudit import index as ix
from echoaudit.errors import CheckpointError, EchoAuditError, IndexMismatchError
from echoaudit.index import (
    EmbeddingIndex,
    IndexConfig,
    build_index_resumable,
    center_normalize,
    l2_normalize,
)

FP = {"vae": "a" * 8, "reid": "b" * 8, "data": "c" * 8, "embed_dim": 16}


def _meta(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "video": [f"v{i // 4:03d}" for i in range(n)],
        "frame": np.arange(n) % 4,
        "split": np.where(np.arange(n) % 3 == 0, "TRAIN", "VAL"),
        "ef": np.linspace(20, 80, n),
    })


def _clustered(rng, n, dim, n_clusters, spread=0.5):
    """Unit vectors scattered around random unit centres, like embeddings of many videos."""
    centres = l2_normalize(rng.standard_normal((n_clusters, dim)))
    labels = rng.integers(0, n_clusters, n)
    x = centres[labels] + spread / np.sqrt(dim) * rng.standard_normal((n, dim)).astype(np.float32)
    return l2_normalize(x)


def _brute_force(x, q, k):
    scores = q.astype(np.float64) @ x.astype(np.float64).T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, axis=1), ids


# ---------------------------------------------------------------- vectors


def test_center_normalize_inner_product_is_pearson():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 32)) * 3 + 5  # offset + scale: Pearson ignores both
    b = rng.standard_normal((5, 32)) + np.linspace(0, 2, 32)
    got = center_normalize(a) @ center_normalize(b).T
    want = np.corrcoef(np.vstack([a, b]))[:7, 7:]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert center_normalize(a).dtype == np.float32


def test_normalizers_hand_cases():
    np.testing.assert_allclose(l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0, 0]])
    # (1,2,3) centred is (-1,0,1), norm sqrt(2); a constant row has no correlation: zeros.
    np.testing.assert_allclose(center_normalize(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])),
                               [[-2 ** -0.5, 0, 2 ** -0.5], [0, 0, 0]], atol=1e-7)


# ---------------------------------------------------------------- exact search


@pytest.mark.parametrize("metric,prep", [("ip", l2_normalize), ("pearson", center_normalize)])
@pytest.mark.parametrize("k", [1, 5, 37])
def test_flat_search_equals_brute_force(metric, prep, k):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 16)).astype(np.float32) + 0.3
    q = rng.standard_normal((25, 16)).astype(np.float32)
    index = EmbeddingIndex.build(x, _meta(400), fingerprint=FP, config=IndexConfig(kind="flat", metric=metric))
    scores, ids = index.search(q, k)
    want_scores, want_ids = _brute_force(prep(x), prep(q), k)
    assert scores.shape == ids.shape == (25, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_pearson_search_finds_max_correlation():
    """The published scorer: for each query, the reference vector of maximal np.corrcoef."""
    rng = np.random.default_rng(2)
    ref = rng.random((60, 24))  # sigmoid-like features in (0, 1)
    q = rng.random((9, 24))
    index = EmbeddingIndex.build(ref, _meta(60), fingerprint=FP, config=IndexConfig(kind="flat", metric="pearson"))
    scores, ids = index.search(q, 1)
    corr = np.corrcoef(np.vstack([q, ref]))[:9, 9:]
    np.testing.assert_array_equal(ids[:, 0], corr.argmax(axis=1))
    np.testing.assert_allclose(scores[:, 0], corr.max(axis=1), atol=1e-5)
    # Normalising beforehand changes nothing (the index's normalisation is idempotent).
    pre = EmbeddingIndex.build(center_normalize(ref), _meta(60), fingerprint=FP,
                               config=IndexConfig(kind="flat", metric="pearson"))
    np.testing.assert_allclose(pre.search(center_normalize(q), 1)[0], scores, atol=1e-6)


def test_ivf_missing_slots_are_minus_one_and_minus_inf():
    rng = np.random.default_rng(9)
    x = _clustered(rng, 400, 8, 40)
    index = EmbeddingIndex.build(x, _meta(400), fingerprint=FP, config=IndexConfig(kind="ivf", nlist=40, nprobe=1))
    scores, ids = index.search(x[:5], 60)  # one cell of ~10 vectors cannot fill 60 slots
    assert (ids == -1).any()
    assert np.array_equal(ids == -1, np.isneginf(scores))
    assert np.all(scores[:, :-1] >= scores[:, 1:])  # -inf slots come last


def test_k_above_ntotal_is_clipped():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8))
    scores, ids = EmbeddingIndex.build(x, _meta(6), fingerprint=FP).search(x[:2], 50)
    assert ids.shape == (2, 6)
    assert sorted(ids[0]) == list(range(6))


def test_auto_kind_switches_above_auto_flat_max():
    cfg = IndexConfig()
    assert cfg.resolved_kind(ix.AUTO_FLAT_MAX) == "flat"
    assert cfg.resolved_kind(ix.AUTO_FLAT_MAX + 1) == "ivf"
    assert IndexConfig(kind="hnsw").resolved_kind(10) == "hnsw"
    assert EmbeddingIndex.build(np.eye(4), _meta(4), fingerprint=FP).kind == "flat"
    assert EmbeddingIndex.build(np.eye(4), _meta(4), fingerprint=FP).recall is None  # exact: nothing to measure


def _clusters(n: int, dim: int = 16, centres: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    return (c[rng.integers(centres, size=n)] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def test_auto_ivf_raises_nprobe_until_measured_recall(monkeypatch, tmp_path):
    """Above AUTO_FLAT_MAX, auto builds IVF and visits more cells until the recall@k it
    measures on its own vectors reaches AUTO_RECALL; the figure is saved and loaded back."""
    monkeypatch.setattr(ix, "AUTO_FLAT_MAX", 1000)
    x = _clusters(6000)
    low = EmbeddingIndex.build(x, _meta(6000), fingerprint=FP, config=IndexConfig(kind="ivf", nprobe=1, gpu=False))
    auto = EmbeddingIndex.build(x, _meta(6000), fingerprint=FP, config=IndexConfig(gpu=False))
    assert auto.kind == "ivf" and low.kind == "ivf"
    assert low.recall["recall"] < ix.AUTO_RECALL  # one cell of many misses neighbours...
    assert auto.recall["recall"] >= ix.AUTO_RECALL  # ...auto probed until it did not
    assert auto.params["nprobe"] > 1 and auto.params["nlist"] == low.params["nlist"]
    # the figure is what a fresh measurement finds, leave-one-out on a seeded sample
    again = ix.measure_recall(auto, ix.l2_normalize(x), seed=0, groups=_meta(6000)["video"].to_numpy())
    assert again == auto.recall and again["queries"] == ix.RECALL_QUERIES and again["k"] == ix.RECALL_K
    auto.save(tmp_path / "i")
    back = EmbeddingIndex.load(tmp_path / "i")
    assert back.recall == auto.recall and back.params == auto.params


def test_measure_recall_does_not_count_the_query_itself():
    """An index that returns only the query itself (and nothing else right) scores 0."""
    x = ix.l2_normalize(_clusters(300))

    class SelfOnly:
        def search(self, q, k):
            rows = [int(np.flatnonzero((x == v).all(axis=1))[0]) for v in q]
            ids = np.full((len(q), k), -1, np.int64)
            ids[:, 0] = rows
            return np.zeros((len(q), k), np.float32), ids

    assert ix.measure_recall(SelfOnly(), x, k=5, queries=20)["recall"] == 0.0
    exact = EmbeddingIndex.build(x, _meta(300), fingerprint=FP, config=IndexConfig(kind="flat"))
    assert ix.measure_recall(exact, x, k=5, queries=20)["recall"] == 1.0


def test_measure_recall_leaves_the_query_video_out():
    """With groups, an index that finds only the query's own video's rows scores 0: a query
    must stand for a frame of a video the index does not hold."""
    x = ix.l2_normalize(_clusters(300))
    video = np.repeat(np.arange(60), 5)  # 60 videos of 5 rows

    class OwnVideoOnly:
        def search(self, q, k):
            ids = np.full((len(q), k), -1, np.int64)
            for j, v in enumerate(q):
                r = int(np.flatnonzero((x == v).all(axis=1))[0])
                own = np.flatnonzero(video == video[r])
                ids[j, :len(own)] = own
            return np.zeros((len(q), k), np.float32), ids

    assert ix.measure_recall(OwnVideoOnly(), x, k=5, queries=20, groups=video)["recall"] == 0.0
    exact = EmbeddingIndex.build(x, _meta(300), fingerprint=FP, config=IndexConfig(kind="flat"))
    assert ix.measure_recall(exact, x, k=5, queries=20, groups=video)["recall"] == 1.0


# ---------------------------------------------------------------- approximate kinds


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_on_clustered_data(kind):
    rng = np.random.default_rng(4)
    x = _clustered(rng, 20_000, 32, 300)
    # Queries near stored vectors, as synthetic embeddings near training ones.
    q = l2_normalize(x[rng.integers(0, len(x), 300)] + 0.05 * rng.standard_normal((300, 32)))
    exact = EmbeddingIndex.build(x, _meta(len(x)), fingerprint=FP, config=IndexConfig(kind="flat"))
    approx = EmbeddingIndex.build(x, _meta(len(x)), fingerprint=FP, config=IndexConfig(kind=kind))
    _, want = exact.search(q, 10)
    _, got = approx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert recall >= 0.9, f"{kind} recall@10 = {recall:.3f}"
    assert approx.kind == kind


def test_ivf_is_deterministic_for_a_seed():
    rng = np.random.default_rng(6)
    x = _clustered(rng, 3000, 16, 40)
    a = EmbeddingIndex.build(x, _meta(3000), fingerprint=FP, config=IndexConfig(kind="ivf", nprobe=2, seed=7))
    b = EmbeddingIndex.build(x, _meta(3000), fingerprint=FP, config=IndexConfig(kind="ivf", nprobe=2, seed=7))
    assert a.params["nlist"] == min(round(4 * np.sqrt(3000)), 3000 // 39)
    np.testing.assert_array_equal(a.search(x[:50], 5)[1], b.search(x[:50], 5)[1])


# ---------------------------------------------------------------- validation


def test_unknown_kind_lists_choices():
    with pytest.raises(EchoAuditError, match=r"unknown index kind 'annoy'; choose one of: auto, flat, hnsw, ivf"):
        IndexConfig(kind="annoy")
    with pytest.raises(EchoAuditError, match=r"unknown metric 'l2'; choose one of: ip, pearson"):
        IndexConfig(metric="l2")


@pytest.mark.parametrize("bad,match", [
    (np.ones(8), r"2-D array \(N, D\); got shape \(8,\)"),
    (np.ones((0, 8)), r"empty"),
    (np.array([[1.0, np.nan], [1.0, 2.0]]), r"NaN or infinite values in 1 row\(s\), first rows \[0\]"),
    (np.array([["a", "b"]]), r"real numbers; got dtype <U1"),
])
def test_build_rejects_bad_embeddings(bad, match):
    with pytest.raises(EchoAuditError, match=match):
        EmbeddingIndex.build(bad, _meta(len(np.atleast_2d(bad))), fingerprint=FP)


def test_build_rejects_metadata_of_other_length():
    with pytest.raises(EchoAuditError, match=r"metadata has 3 rows but there are 4 embeddings"):
        EmbeddingIndex.build(np.eye(4), _meta(3), fingerprint=FP)


def test_search_validation():
    index = EmbeddingIndex.build(np.eye(128)[:10], _meta(10), fingerprint=FP)
    with pytest.raises(IndexMismatchError, match=r"queries have dimension 64 but the index holds 128-d vectors"):
        index.search(np.ones((2, 64)), 3)
    for k in (0, -1, 2.5):
        with pytest.raises(EchoAuditError, match=r"k must be an integer >= 1; got"):
            index.search(np.ones((2, 128)), k)
    with pytest.raises(EchoAuditError, match=r"NaN or infinite"):
        index.search(np.full((1, 128), np.inf), 3)
    with pytest.raises(EchoAuditError, match=r"reshape\(1, -1\)"):
        index.search(np.ones(128), 3)


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    rng = np.random.default_rng(8)
    x = _clustered(rng, 800, 16, 10)
    cfg = IndexConfig(kind=kind, metric="pearson", nprobe=3, ef_search=20)
    index = EmbeddingIndex.build(x, _meta(800), fingerprint=FP, config=cfg)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.faiss", "index.json", "metadata.parquet",
                                                                    "vectors.npy"]
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert (info["kind"], info["dim"], info["ntotal"], info["fingerprint"]) == (kind, 16, 800, FP)
    back = EmbeddingIndex.load(tmp_path / "idx", expected_fingerprint=FP)
    # The vectors come back memory-mapped from vectors.npy, equal to FAISS's own copy.
    mapped = back.vectors()
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, index.vectors())
    np.testing.assert_array_equal(mapped, ix.center_normalize(x))
    assert (back.kind, back.dim, back.ntotal, back.config, back.params) == (kind, 16, 800, cfg, index.params)
    pd.testing.assert_frame_equal(back.metadata, index.metadata, check_dtype=False)
    for a, b in zip(index.search(x[:40], 7), back.search(x[:40], 7)):
        np.testing.assert_array_equal(a, b)
    # Saving again replaces the folder as a whole.
    back.save(tmp_path / "idx")
    assert EmbeddingIndex.load(tmp_path / "idx").ntotal == 800


def test_index_saved_without_vectors_file_still_loads(tmp_path):
    """An index saved before vectors.npy existed (index.json lists two files) loads, and
    its vectors are copied out of FAISS; a listed vectors.npy that is damaged is refused."""
    x = _clustered(np.random.default_rng(1), 200, 8, 4)
    EmbeddingIndex.build(x, _meta(200), fingerprint=FP, config=IndexConfig(kind="ivf", nprobe=2)).save(tmp_path / "i")
    info = json.loads((tmp_path / "i" / "index.json").read_text())
    del info["files"]["vectors.npy"]
    (tmp_path / "i" / "index.json").write_text(json.dumps(info))
    (tmp_path / "i" / "vectors.npy").unlink()
    old = EmbeddingIndex.load(tmp_path / "i")
    assert not isinstance(old.vectors(), np.memmap)
    np.testing.assert_array_equal(old.vectors(), ix.l2_normalize(x))
    old.save(tmp_path / "j")  # saving again writes the file
    (tmp_path / "j" / "vectors.npy").write_bytes(b"\x93NUMPY broken")
    with pytest.raises(CheckpointError, match="vectors.npy"):
        EmbeddingIndex.load(tmp_path / "j")


def test_fingerprint_mismatch_names_keys_values_and_fix(tmp_path):
    EmbeddingIndex.build(np.eye(4), _meta(4), fingerprint=FP).save(tmp_path)
    other = {**FP, "reid": "f" * 8, "embed_dim": 32}
    with pytest.raises(IndexMismatchError) as err:
        EmbeddingIndex.load(tmp_path, expected_fingerprint=other)
    msg = str(err.value)
    assert "reid: index built with 'bbbbbbbb', expected 'ffffffff'" in msg
    assert "embed_dim: index built with 16, expected 32" in msg
    assert "vae" not in msg and "rebuild the index with `echoaudit index" in msg
    # A subset of keys is enough; a key the index does not have is a mismatch too.
    EmbeddingIndex.load(tmp_path, expected_fingerprint={"reid": "b" * 8})
    with pytest.raises(IndexMismatchError, match=r"seed: index built with '<missing>', expected 3"):
        EmbeddingIndex.load(tmp_path, expected_fingerprint={"seed": 3})


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing index.faiss, metadata.parquet, index.json"):
        EmbeddingIndex.load(tmp_path / "nothing")
    folder = tmp_path / "idx"
    EmbeddingIndex.build(np.eye(8), _meta(8), fingerprint=FP).save(folder)
    data = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"index.faiss is corrupt"):
        EmbeddingIndex.load(folder)
    (folder / "index.faiss").write_bytes(data)
    EmbeddingIndex.load(folder)
    (folder / "index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"index record '.*index\.json' is not valid JSON: .* line 1, column 2"):
        EmbeddingIndex.load(folder)
    (folder / "metadata.parquet").unlink()
    with pytest.raises(CheckpointError, match=r"missing metadata.parquet"):
        EmbeddingIndex.load(folder)


def test_save_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match=r"notes.txt"):
        EmbeddingIndex.build(np.eye(4), _meta(4), fingerprint=FP).save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------- resumable build


class _Embedder:
    """embed_fn over 13 items of 1-3 frames each; can fail once at one item."""

    def __init__(self, fail_at=None, dim=16):
        self.fail_at, self.dim, self.calls = fail_at, dim, []

    def __call__(self, i):
        self.calls.append(i)
        if i == self.fail_at:
            self.fail_at = None
            raise KeyboardInterrupt("simulated interruption")
        rng = np.random.default_rng(100 + i)
        t = 1 + i % 3
        meta = pd.DataFrame({"video": [f"v{i:02d}"] * t, "frame": np.arange(t), "split": ["TRAIN"] * t})
        return rng.standard_normal((t, self.dim)).astype(np.float32), meta


def test_resumable_build_after_interruption_equals_uninterrupted(tmp_path):
    cfg = IndexConfig(kind="flat", metric="ip")
    want = build_index_resumable(tmp_path / "a", 13, _Embedder(), fingerprint=FP, config=cfg, chunk=2)

    embed = _Embedder(fail_at=5)
    with pytest.raises(KeyboardInterrupt):
        build_index_resumable(tmp_path / "b", 13, embed, fingerprint=FP, config=cfg, chunk=2)
    assert embed.calls == [0, 1, 2, 3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "b" / "partial").iterdir()) == [
        "chunk_000000", "chunk_000001", "manifest.json"]
    seen = []
    got = build_index_resumable(tmp_path / "b", 13, embed, fingerprint=FP, config=cfg, chunk=2,
                                progress=lambda f, m: seen.append((f, m)))
    assert embed.calls[6:] == list(range(4, 13))  # items 0-3 were not embedded again
    assert not (tmp_path / "b" / "partial").exists()
    assert "resuming: 4 of 13" in seen[0][1] and seen[-1][0] == 1.0
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))

    assert got.ntotal == want.ntotal == sum(1 + i % 3 for i in range(13))
    pd.testing.assert_frame_equal(got.metadata, want.metadata)
    q = np.vstack([_Embedder()(i)[0] for i in range(13)])
    for a, b in zip(got.search(q, 5), want.search(q, 5)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.search(q, 1)[1][:, 0], np.arange(len(q)))
    assert EmbeddingIndex.load(tmp_path / "b", expected_fingerprint=FP).ntotal == got.ntotal


def test_resumable_build_discards_chunks_of_another_fingerprint(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        build_index_resumable(tmp_path, 13, _Embedder(fail_at=9), fingerprint=FP, chunk=2)
    embed = _Embedder()
    new_fp = {**FP, "reid": "new"}
    seen = []
    index = build_index_resumable(tmp_path, 13, embed, fingerprint=new_fp, chunk=2,
                                  progress=lambda f, m: seen.append(m))
    assert embed.calls == list(range(13))
    assert "discarded partial embeddings" in seen[0]
    assert index.fingerprint == new_fp


def test_resumable_build_names_a_bad_item(tmp_path):
    def embed(i):
        return np.ones((2, 16 if i < 3 else 8), np.float32), pd.DataFrame({"video": ["x", "x"]})

    with pytest.raises(IndexMismatchError, match=r"vectors of item 3 have dimension 8 but the index holds 16-d"):
        build_index_resumable(tmp_path, 5, embed, fingerprint=FP, chunk=2)
    with pytest.raises(EchoAuditError, match=r"returned 2 vectors but metadata 1"):
        build_index_resumable(tmp_path / "c", 2, lambda i: (np.ones((2, 4)), pd.DataFrame({"a": [1]})),
                              fingerprint=FP)


def test_hnsw_beam_widens_for_large_k_without_changing_the_index():
    # Unclustered data: with efSearch=4 a k=60 search reaches only ~0.77 recall here.
    x = np.random.default_rng(10).standard_normal((2000, 16)).astype(np.float32)
    hnsw = EmbeddingIndex.build(x, _meta(2000), fingerprint=FP, config=IndexConfig(kind="hnsw", ef_search=4))
    _, want = EmbeddingIndex.build(x, _meta(2000), fingerprint=FP, config=IndexConfig(kind="flat")).search(x[:50], 60)
    _, got = hnsw.search(x[:50], 60)
    assert np.mean([len(set(a) & set(b)) / 60 for a, b in zip(got, want)]) >= 0.9
    assert (got >= 0).all()
    assert hnsw._cpu.hnsw.efSearch == 4  # per-call parameters, the shared index is untouched


def _rewrite_record(folder, **changes):
    info = json.loads((folder / "index.json").read_text())
    info.update(changes)
    (folder / "index.json").write_text(json.dumps(info))


@pytest.mark.parametrize("changes, match", [
    ({"dim": "8"}, r"dim must be a whole number in \[1, 2\*\*20\]; got '8'"),
    ({"ntotal": 1e300}, r"ntotal must be a whole number >= 0"),
    ({"files": ["index.faiss"]}, r"files must be an object with exactly index.faiss and metadata.parquet"),
    ({"files": {"index.faiss": {"bytes": 1, "sha256": "x"}, "../../etc/passwd": {"bytes": 1, "sha256": "x"}}},
     r"files must be an object with exactly"),
    ({"params": {"nprobe": 2**40}}, r"params must be an object of whole numbers in range"),
    ({"params": {"nprobe": 10**30}}, r"index\.json': integer 1000000000000000000000000000000 \(31 digits\) is outside the 64-bit"),
    ({"fingerprint": [1, 2]}, r"fingerprint must be an object"),
    ({"config": {"kind": "flat", "bogus": 1}}, r"has an unusable config or params"),
    ({"kind": 3}, r"kind must be one of flat, hnsw, ivf"),
    ({"format_version": 99}, r"has index format '99', this version reads 1"),
])
def test_index_record_with_wrong_types_is_named(tmp_path, changes, match):
    folder = tmp_path / "idx"
    EmbeddingIndex.build(np.eye(8), _meta(8), fingerprint=FP).save(folder)
    _rewrite_record(folder, **changes)
    with pytest.raises(CheckpointError, match=match) as info:
        EmbeddingIndex.load(folder)
    assert "idx" in str(info.value)


def test_index_record_with_huge_numbers_or_deep_nesting(tmp_path):
    folder = tmp_path / "idx"
    EmbeddingIndex.build(np.eye(8), _meta(8), fingerprint=FP).save(folder)
    text = (folder / "index.json").read_text()
    (folder / "index.json").write_text(text.replace('"dim": 8', '"dim": 1e400'))
    with pytest.raises(CheckpointError, match=r"index\.json': number 1e400 is too large"):
        EmbeddingIndex.load(folder)
    (folder / "index.json").write_text(text.replace('"dim": 8', '"dim": ' + "9" * 5000))
    with pytest.raises(CheckpointError, match=r"index\.json': .*(outside the 64-bit range|Exceeds the limit)"):
        EmbeddingIndex.load(folder)
    (folder / "index.json").write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match=r"index\.json' is nested too deeply"):
        EmbeddingIndex.load(folder)
    (folder / "index.json").write_bytes(b'{"kind": "\xff"}')
    with pytest.raises(CheckpointError, match=r"index\.json' is not UTF-8 text \(byte 10"):
        EmbeddingIndex.load(folder)


def _refresh_hashes(folder):
    from echoaudit.fileio import sha256_file

    files = {n: {"bytes": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)}
             for n in ("index.faiss", "metadata.parquet")}
    _rewrite_record(folder, files=files)


def test_metadata_or_faiss_file_that_disagree_with_the_record(tmp_path):
    folder = tmp_path / "idx"
    EmbeddingIndex.build(np.eye(8), _meta(8), fingerprint=FP).save(folder)
    good_meta = (folder / "metadata.parquet").read_bytes()
    _meta(5).to_parquet(folder / "metadata.parquet", index=False)
    _refresh_hashes(folder)  # consistent hashes, inconsistent contents
    with pytest.raises(CheckpointError, match=r"idx is inconsistent: index.json says 8 vectors of dim 8, .*"
                                              r"metadata.parquet has 5 rows"):
        EmbeddingIndex.load(folder)
    (folder / "metadata.parquet").write_bytes(good_meta)
    data = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(data[: len(data) // 2])
    _refresh_hashes(folder)
    with pytest.raises(CheckpointError, match=r"index\.faiss is corrupt: the index's vectors claim 64 entries "
                                              r"\(256 bytes\), but only 105 bytes are left"):
        EmbeddingIndex.load(folder)
    (folder / "index.faiss").write_bytes(data)
    (folder / "metadata.parquet").write_bytes(b"PAR1" + bytes(50))
    _refresh_hashes(folder)
    with pytest.raises(CheckpointError, match=r"metadata\.parquet cannot be read"):
        EmbeddingIndex.load(folder)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_crafted_faiss_lengths_are_refused_before_faiss_allocates(tmp_path, kind):
    # FAISS resizes a vector to the length its file claims before reading it; a crafted
    # length with a matching sha256 in index.json would make it allocate gigabytes.
    import struct

    folder = tmp_path / "idx"
    x = np.random.default_rng(0).normal(size=(64, 8))
    EmbeddingIndex.build(x, _meta(64), fingerprint=FP, config=IndexConfig(kind=kind, nlist=4)).save(folder)
    EmbeddingIndex.load(folder)
    data = bytearray((folder / "index.faiss").read_bytes())
    # The first length field: after the 37-byte header; for ivf after nlist, nprobe (16 bytes)
    # and the coarse quantizer's own 37-byte header.
    first_length = {"flat": 37, "ivf": 37 + 16 + 37, "hnsw": 37}[kind]
    struct.pack_into("<Q", data, first_length, 2**33)
    (folder / "index.faiss").write_bytes(bytes(data))
    _refresh_hashes(folder)
    with pytest.raises(CheckpointError, match=r"index\.faiss is corrupt: .* claim 8589934592 entries"):
        EmbeddingIndex.load(folder)


def test_hnsw_neighbour_ids_out_of_range_are_refused(tmp_path):
    folder = tmp_path / "idx"
    x = np.random.default_rng(0).normal(size=(64, 8))
    EmbeddingIndex.build(x, _meta(64), fingerprint=FP, config=IndexConfig(kind="hnsw")).save(folder)
    data = (folder / "index.faiss").read_bytes()
    layout = ix._Layout(data)
    layout.header(b"IHNf", 8, 64, "index")
    for dtype in ("<f8", "<i4", "<i4", "<u8"):
        layout.vector(dtype, "field")
    start = layout.pos + 8  # the neighbours' first entry
    patched = data[:start] + (10**6).to_bytes(4, "little", signed=True) + data[start + 4:]
    (folder / "index.faiss").write_bytes(patched)
    _refresh_hashes(folder)
    with pytest.raises(CheckpointError, match=r"a neighbour id lies outside -1\.\.63"):
        EmbeddingIndex.load(folder)
