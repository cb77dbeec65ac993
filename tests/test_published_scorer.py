"""The published EchoNet-Synthetic filter as a mode (echoaudit.published_scorer): parity with
a straightforward dense computation written here (np.corrcoef, loops), the CSV, the two
normalisations, errors. Random-weight published ResNet-50, 14x14 latents, a few videos."""

from __future__ import annotations

import contextlib
import io
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from echoaudit.errors import CheckpointError, DatasetError
from echoaudit.models.published import (
    PublishedReID,
    PublishedReIDConfig,
    SiameseResNet,
    save_published_reid,
)
from echoaudit.published_scorer import (
    CSV_COLUMNS,
    best_correlations,
    load_synthetic_first_frames,
    normalize_batch,
    normalize_per_video,
    pearson_matrix,
    privacy_scores_table,
    published_flags,
    published_threshold,
    run_published,
    write_privacy_scores,
)

torch.set_num_threads(1)
NAME = "reidentification_dynamic"
N_TRAIN, N_TEST, N_SYN = 12, 7, 9


@pytest.fixture(scope="module")
def net() -> SiameseResNet:
    torch.manual_seed(0)
    net = SiameseResNet(4, 128).eval()
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
    net.requires_grad_(False)
    return net


@pytest.fixture(scope="module")
def model(net) -> PublishedReID:
    return PublishedReID(PublishedReIDConfig(), net).eval()


@pytest.fixture(scope="module")
def release(net, tmp_path_factory) -> dict:
    """A published-style layout: re-ID folder, real Latents/ + FileList.csv, synthetic .pt files."""
    root = tmp_path_factory.mktemp("release")
    save_published_reid(net, root / NAME)
    reid = root / NAME
    real = root / "dynamic"
    (real / "Latents").mkdir(parents=True)
    g = torch.Generator().manual_seed(5)
    rows = []
    for i in range(N_TRAIN + N_TEST + 2):
        split = "TRAIN" if i < N_TRAIN else ("TEST" if i < N_TRAIN + N_TEST else "VAL")
        name = f"0X{i:04d}"
        t = 3 + i % 3
        torch.save(torch.randn(t, 4, 14, 14, generator=g) * (1 + i % 4) + i % 5, real / "Latents" / f"{name}.pt")
        rows.append({"FileName": name, "Split": split, "EF": 55.0})
    pd.DataFrame(rows).to_csv(real / "FileList.csv", index=False)
    syn = root / "synthetic"
    syn.mkdir()
    for j in range(N_SYN):
        if j < 3:  # near-copies of training first frames (images, as the LIDM writes them)
            x = torch.load(real / "Latents" / f"0X{j:04d}.pt")[0] + 0.01 * torch.randn(4, 14, 14, generator=g)
        elif j < 6:
            x = torch.randn(4, 14, 14, generator=g) * 2
        else:  # videos: only their first frame counts
            x = torch.randn(2, 4, 14, 14, generator=g) * 1.5
        torch.save(x, syn / f"sample_{j:03d}.pt")
    return {"root": root, "reid": reid, "real": real, "syn": syn}


# --------------------------------------------------------------------------- the dense reference

def _dense_reference(net: SiameseResNet, real: Path, syn: Path, percentile: float = 95.0) -> dict:
    """apply.py written out plainly: per-video / per-batch min-max, first frames,
    forward_once, np.corrcoef pair by pair, loops, np.percentile, `closest < tau`."""
    norm = lambda x: (x - x.min()) / (x.max() - x.min()) * 2 - 1
    table = pd.read_csv(real / "FileList.csv")
    train_names = list(table[table.Split == "TRAIN"].FileName)
    test_names = list(table[table.Split == "TEST"].FileName)
    train = torch.cat([norm(torch.load(real / "Latents" / f"{n}.pt"))[0:1] for n in train_names])
    test = torch.cat([norm(torch.load(real / "Latents" / f"{n}.pt"))[0:1] for n in test_names])
    paths = sorted(p.name for p in syn.iterdir())
    imgs = [torch.load(syn / p) for p in paths]
    imgs = [x.unsqueeze(0) if x.ndim == 3 else x[0:1] for x in imgs]
    synth = norm(torch.cat(imgs))
    with torch.no_grad():
        ft, fh, fs = (net.forward_once(x).double().numpy() for x in (train, test, synth))
    closest_train = [max(np.corrcoef(ft[i], fh[j])[0, 1] for j in range(len(fh))) for i in range(len(ft))]
    tau = np.percentile(closest_train, percentile)
    scores, locs = [], []
    for s in range(len(fs)):
        r = [np.corrcoef(fs[s], ft[i])[0, 1] for i in range(len(ft))]
        scores.append(max(r))
        locs.append(int(np.argmax(r)))
    is_public = np.array(scores) < tau
    return {"tau": float(tau), "scores": np.array(scores), "locs": locs, "flagged": ~is_public,
            "real_path": [train_names[i] for i in locs], "synth_path": paths}


def test_published_mode_matches_the_dense_computation_and_writes_their_csv(release, net, tmp_path):
    ref = _dense_reference(net, release["real"], release["syn"])
    out = tmp_path / "privacy_scores.csv"
    res = run_published(release["reid"], release["real"], release["syn"], out)
    assert abs(res.tau - ref["tau"]) < 1e-6
    assert res.flagged.tolist() == ref["flagged"].tolist()
    assert 0 < res.flagged.sum() < N_SYN  # some flagged, not everything
    assert (res.n_train, res.n_heldout) == (N_TRAIN, N_TEST)
    # The CSV: their columns in their order, index=False, `tau` = each sample's own score.
    assert out.read_text().splitlines()[0] == "real_path,tau,synth_path,img_idx"
    csv = pd.read_csv(out, dtype={"real_path": str})
    assert list(csv.columns) == list(CSV_COLUMNS)
    assert csv.synth_path.tolist() == ref["synth_path"]
    assert csv.real_path.tolist() == ref["real_path"]
    assert csv.img_idx.tolist() == ref["locs"]
    np.testing.assert_allclose(csv["tau"].to_numpy(), ref["scores"], atol=1e-6, rtol=0)
    assert ((csv["tau"] >= res.tau).to_numpy() == res.flagged).all()


def test_threshold_and_best_matches_parity_on_random_features():
    rng = np.random.default_rng(3)
    ft, fh, fs = rng.random((40, 16)), rng.random((23, 16)), rng.random((31, 16))
    fs[:5] = ft[[3, 7, 11, 20, 39]] + 0.01 * rng.random((5, 16))
    tau, closest = published_threshold(ft, fh)
    dense_closest = [max(np.corrcoef(ft[i], fh[j])[0, 1] for j in range(len(fh))) for i in range(len(ft))]
    np.testing.assert_allclose(closest, dense_closest, atol=1e-12)
    assert abs(tau - np.percentile(dense_closest, 95)) < 1e-12
    scores, idx = best_correlations(fs, ft)
    full = np.corrcoef(np.vstack([ft, fs]))[len(ft):, :len(ft)]
    np.testing.assert_allclose(scores, full.max(axis=1), atol=1e-12)
    assert idx.tolist() == full.argmax(axis=1).tolist()
    np.testing.assert_allclose(pearson_matrix(fs, ft), full, atol=1e-12)
    assert published_flags(scores, tau).tolist() == (~(full.max(axis=1) < tau)).tolist()
    # The same tau as the convention mode over embeddings (float32 FAISS there).
    from echoaudit.audit.conventions import echonet_synthetic_threshold

    assert abs(echonet_synthetic_threshold(ft, fh) - tau) < 1e-5


def test_flag_is_score_at_or_above_tau():
    assert published_flags(np.array([0.5, 0.7, 0.9]), 0.7).tolist() == [False, True, True]


def test_per_video_and_per_batch_normalisation():
    v = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3) * 0.5 - 3
    n = normalize_per_video(v)
    assert n.min() == -1 and n.max() == 1
    # The first frame alone does not reach 1: the whole video sets the scale.
    assert n[0].max() < 1
    batch = np.stack([np.full((4, 3, 3), 0.0), np.full((4, 3, 3), 2.0), np.linspace(0, 1, 36).reshape(4, 3, 3)]).astype(np.float32)
    b = normalize_batch(batch)
    assert b[0].min() == -1 and b[1].max() == 1
    # The third item spans [0, 1]: across the batch it maps to [-1, 0], not to [-1, 1].
    assert abs(b[2].max()) < 1e-6 and b[2].min() == -1
    with pytest.raises(ValueError, match="constant"):
        normalize_per_video(np.ones((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="constant"):
        normalize_batch(np.zeros((3, 4, 3, 3)))
    with pytest.raises(ValueError, match="shape"):
        normalize_batch(np.zeros((4, 3, 3)))


def test_csv_table_and_writer(tmp_path):
    t = privacy_scores_table(np.array([0.25, 0.875]), np.array([1, 0]), ["a", "b"], ["s1.pt", "s2.pt"])
    path = write_privacy_scores(t, tmp_path / "privacy_scores.csv")
    assert path.read_text() == "real_path,tau,synth_path,img_idx\nb,0.25,s1.pt,1\na,0.875,s2.pt,0\n"
    with pytest.raises(ValueError, match="index"):
        privacy_scores_table(np.array([0.1]), np.array([2]), ["a", "b"], ["s"])
    with pytest.raises(ValueError, match="one per synthetic"):
        privacy_scores_table(np.array([0.1, 0.2]), np.array([0, 1]), ["a", "b"], ["s"])


def test_bad_inputs_give_project_errors(release, model, tmp_path):
    with pytest.raises(ValueError, match="constant features"):
        published_threshold(np.ones((3, 8)), np.random.default_rng(0).random((2, 8)))
    with pytest.raises(ValueError, match="percentile"):
        published_threshold(np.random.default_rng(0).random((3, 8)), np.random.default_rng(1).random((2, 8)), percentile=101)
    with pytest.raises(DatasetError, match="neither published latents"):
        run_published(model, tmp_path, release["syn"], None)
    with pytest.raises(DatasetError, match="no TEST2 videos"):
        run_published(model, release["real"], release["syn"], None, heldout_split="TEST2")
    # A planted pickle that would run code is refused, and nothing runs.
    bad = tmp_path / "bad_syn"
    bad.mkdir()
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(bad / "x.pt", "wb") as fh:
        pickle.dump(Evil(), fh, protocol=2)
    with pytest.raises(DatasetError, match="refused"):
        load_synthetic_first_frames(bad)
    assert not marker.exists()
    (bad / "x.pt").unlink()
    torch.save(torch.zeros(4, 7, 7), bad / "y.pt")
    with pytest.raises(DatasetError, match="shape"):
        load_synthetic_first_frames(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .pt files"):
        load_synthetic_first_frames(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="not a published re-ID folder"):
        run_published(tmp_path, release["real"], release["syn"], None)
    with pytest.raises(ValueError, match="one name per synthetic"):
        run_published(model, release["real"], np.random.default_rng(0).random((3, 4, 14, 14)), None, synthetic_names=["a"])


def test_array_and_cache_sources(release, model, tmp_path):
    from echoaudit.published_latents import latents_from_published

    first, names = load_synthetic_first_frames(release["syn"])
    np.save(tmp_path / "syn.npy", first)
    a = run_published(model, release["real"], tmp_path / "syn.npy", None)
    b = run_published(model, release["real"], first, None, synthetic_names=names)
    assert a.tau == b.tau and a.table["tau"].tolist() == b.table["tau"].tolist()
    assert a.table.synth_path.tolist()[0] == "syn_00000" and b.table.synth_path.tolist() == names
    cache = latents_from_published(release["real"], tmp_path / "cache", vae_fingerprint="x")
    c = run_published(model, cache.folder, first, None, synthetic_names=names)
    assert (c.n_train, c.n_heldout) == (N_TRAIN, N_TEST) and len(c.table) == N_SYN


def test_cli_writes_the_csv_and_exits_2_on_errors(release, tmp_path):
    from echoaudit.published_cli import main

    out = tmp_path / "scores" / "privacy_scores.csv"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["published-scores", "--reid", str(release["reid"]), "--latents", str(release["real"]),
                   "--synthetic-latents", str(release["syn"]), "--out", str(out), "--json"])
    assert rc == 0 and out.is_file()
    assert '"n_flagged"' in buf.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["published-scores", "--reid", str(release["reid"]), "--latents", str(tmp_path),
                   "--synthetic-latents", str(release["syn"]), "--out", str(tmp_path / "x.csv")])
    assert rc == 2 and "echoaudit: error:" in err.getvalue()
