"""Re-ID network, pair sources, training loop and evaluation, on tiny phantom videos."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from echoaudit.data.echonet import EchoNetDataset, EchoNetWriter
from echoaudit.data.phantom import render_video, sample_acquisition, sample_anatomy
from echoaudit.errors import CheckpointError, DatasetError
from echoaudit.fileio import sha256_tree
from echoaudit.latents import augment_video
from echoaudit.models.reid import ReIDNet, load_reid, reid_fingerprint, stem_halvings
from echoaudit.train.reid import (
    ImagePairSource,
    LatentPairSource,
    ReIDTrainConfig,
    gather_frames,
    sample_pairs,
    train_reid,
)
from echoaudit.train.reid_eval import cross_view_matrix, evaluate_reid, run_eval

torch.set_num_threads(1)

P, VPP, T, S = 40, 2, 6, 32  # patients, videos per patient, frames, side


def _split(p: int) -> str:
    return "TRAIN" if p < 24 else ("VAL" if p < 32 else "TEST")


def _phantom(view: str = "a4c"):
    """(V, T, 1, S, S) float32 frames, augmented copies, table: frames stand in for latents."""
    rng = np.random.default_rng(0)
    vids, aug, rows = [], [], []
    for p in range(P):
        anat = sample_anatomy(0, view, p)
        for v in range(VPP):
            fr, _ = render_video(anat, sample_acquisition(0, view, p, v), frames=T, size=S)
            x = fr.astype(np.float32) / 255
            vids.append(x)
            aug.append(augment_video(x, rng, max_shift=1.0))
            rows.append({"FileName": f"{view}_{p}_{v}", "PatientID": f"{view}-{p}", "Split": _split(p)})
    return np.stack(vids)[:, :, None], np.stack(aug)[:, :, None], pd.DataFrame(rows)


@pytest.fixture(scope="module")
def source():
    return LatentPairSource(*_phantom())


MICRO = dict(width=16, embed_dim=32, head_hidden=32)


# ---------------------------------------------------------------------------------------
# model


@pytest.mark.parametrize("size,halvings", [(7, 0), (14, 0), (15, 1), (28, 1), (29, 2), (32, 2), (112, 3)])
def test_stem_halvings(size, halvings):
    assert stem_halvings(size) == halvings


@pytest.mark.parametrize("c,size,trunk_in", [(4, 14, 14), (1, 112, 14), (1, 28, 14), (1, 32, 8)])
def test_one_code_path_reaches_the_trunk_at_most_14(c, size, trunk_in):
    m = ReIDNet(in_channels=c, input_size=size, width=8, embed_dim=16, head_hidden=8).eval()
    x = torch.rand(3, c, size, size)
    h = m.stem(x)
    assert h.shape[-1] == trunk_in
    assert m.trunk(h).shape[-1] == (trunk_in + 1) // 2  # the stride-2 stage
    e = m.embed(x)
    assert e.shape == (3, 16) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))


def test_head_is_symmetric_and_forward_matches_parts():
    torch.manual_seed(0)
    m = ReIDNet(width=8, embed_dim=16, head_hidden=8).eval()
    x1, x2 = torch.randn(5, 4, 14, 14), torch.randn(5, 4, 14, 14)
    e1, e2 = m.embed(x1), m.embed(x2)
    torch.testing.assert_close(m.head_logits(e1, e2), m.head_logits(e2, e1))
    torch.testing.assert_close(m(x1, x2), m.head_logits(e1, e2))
    torch.testing.assert_close(m.pair_proba(e1, e2), 1 / (1 + torch.exp(-m.head_logits(e1, e2))))
    # GroupNorm: a frame's embedding does not depend on the rest of the batch
    torch.testing.assert_close(m.embed(x1[:1]), e1[:1])


def test_mirror_invariant_embedding_is_exact_and_optional(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 14, 14)
    flip = torch.flip(x, dims=(3,))
    m = ReIDNet(width=8, embed_dim=16, head_hidden=8, mirror_invariant=True).eval()
    torch.testing.assert_close(m.embed(flip), m.embed(x), rtol=0, atol=1e-6)
    assert not torch.allclose(m.embed(torch.flip(x, dims=(2,))), m.embed(x), atol=1e-3)  # only left-right
    torch.testing.assert_close(m.embed(x[:1]), m.embed(x)[:1])  # still independent of the batch
    plain = ReIDNet(width=8, embed_dim=16, head_hidden=8).eval()
    assert not torch.allclose(plain.embed(flip), plain.embed(x), atol=1e-3)
    m.save_pretrained(tmp_path / "m", safe_serialization=True)
    assert load_reid(tmp_path / "m").config.mirror_invariant is True
    # a checkpoint from before the option (no key in its config) loads as it was trained
    plain.save_pretrained(tmp_path / "old", safe_serialization=True)
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    cfg.pop("mirror_invariant")
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    old = load_reid(tmp_path / "old")
    assert old.config.mirror_invariant is False
    torch.testing.assert_close(old.embed(x), plain.embed(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="mirror_invariant must be true or false; got 1"):
        ReIDNet(mirror_invariant=1)


def test_bad_inputs_name_what_was_received():
    m = ReIDNet(width=8, embed_dim=16, head_hidden=8)
    with pytest.raises(ValueError, match=r"expects frames of shape \(B, 4, 14, 14\); got \(2, 1, 14, 14\)"):
        m.embed(torch.zeros(2, 1, 14, 14))
    with pytest.raises(ValueError, match=r"two \(B, 16\) embeddings; got \(2, 16\) and \(3, 16\)"):
        m.head_logits(torch.zeros(2, 16), torch.zeros(3, 16))
    with pytest.raises(ValueError, match="width must be an int >= 1; got 0"):
        ReIDNet(width=0)


def test_save_load_round_trip_and_fingerprint(tmp_path):
    torch.manual_seed(1)
    m = ReIDNet(in_channels=1, input_size=28, width=8, embed_dim=16, head_hidden=8).eval()
    m.save_pretrained(tmp_path / "m", safe_serialization=True)
    back = load_reid(tmp_path / "m")
    keys = ("in_channels", "input_size", "width", "embed_dim", "head_hidden")
    assert not back.training and [back.config[k] for k in keys] == [m.config[k] for k in keys]
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(back.embed(x), m.embed(x), rtol=0, atol=0)
    fp = reid_fingerprint(tmp_path / "m")
    assert fp == sha256_tree(tmp_path / "m") and len(fp) == 64
    with torch.no_grad():
        m.proj.bias += 1
    m.save_pretrained(tmp_path / "m", safe_serialization=True)
    assert reid_fingerprint(tmp_path / "m") != fp


def test_config_that_does_not_match_the_weights_is_a_checkpoint_error(tmp_path):
    ReIDNet(width=8, embed_dim=16, head_hidden=8).save_pretrained(tmp_path / "m", safe_serialization=True)
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["width"] = 16
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_reid(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no config.json there"):
        load_reid(tmp_path / "nowhere")


def test_missing_weights_are_a_checkpoint_error(tmp_path):
    from safetensors.torch import load_file, save_file

    ReIDNet(width=8, embed_dim=16, head_hidden=8).save_pretrained(tmp_path / "m", safe_serialization=True)
    (weights,) = (tmp_path / "m").glob("*.safetensors")
    sd = load_file(str(weights))
    del sd["proj.weight"]
    save_file(sd, str(weights))
    with pytest.raises(CheckpointError, match=r"does not match its config.json \(missing_keys: proj.weight"):
        load_reid(tmp_path / "m")


# ---------------------------------------------------------------------------------------
# pairs and sources


def test_pairs_are_balanced_labelled_by_patient_and_seeded(source):
    pairs = sample_pairs(source, split="TRAIN", n_pairs=1001, seed=3)
    assert len(pairs) == 1001 and pairs.label.sum() == 500
    same_patient = source.patients[pairs.v1] == source.patients[pairs.v2]
    np.testing.assert_array_equal(pairs.label, same_patient.astype(np.float32))
    assert set(source.splits[np.concatenate([pairs.v1, pairs.v2])]) == {"TRAIN"}
    assert (pairs.f1 < T).all() and (pairs.f2 < T).all() and not pairs.a1.any()
    same_video = pairs.v1 == pairs.v2
    assert 0.4 < same_video[pairs.label == 1].mean() < 0.6  # same_video_fraction 0.5
    disguised = pairs.a2 > 0
    assert set(np.unique(pairs.a2)) == {0, 1}  # the source holds one copy
    # a same-video positive is a temporal offset, or the disguised copy (offset 0 allowed)
    assert (pairs.f1 != pairs.f2)[same_video & ~disguised].all()
    for lab in (0, 1):  # disguises on both classes alike
        assert 0.4 < disguised[pairs.label == lab].mean() < 0.6
    again = sample_pairs(source, split="TRAIN", n_pairs=1001, seed=3)
    for name in ("v1", "f1", "v2", "f2", "a2", "label"):
        np.testing.assert_array_equal(getattr(again, name), getattr(pairs, name))
    other = sample_pairs(source, split="TRAIN", n_pairs=1001, seed=4)
    assert not np.array_equal(other.v1, pairs.v1)


def test_copy_pairs_are_disguised_frames_of_the_same_video_nearby():
    lat, _, table = _phantom()
    k, stride = 3, 2
    aug = np.stack([lat[:, ::stride] + 0.01 * (c + 1) for c in range(k)], axis=1)  # (V, K, T_a, ...)
    src = LatentPairSource(lat, aug, table, augment_stride=stride)
    assert src.n_copies == k
    pairs = sample_pairs(src, split="TRAIN", n_pairs=2000, seed=5, copy_fraction=0.5, copy_max_offset=1,
                         augmented_fraction=0.0)
    pos = pairs.label == 1
    disguised = pairs.a2 > 0
    # with augmented_fraction 0, only copies are disguised: about half of the positives
    assert not disguised[~pos].any() and 0.42 < disguised[pos].mean() < 0.58
    assert (pairs.v1 == pairs.v2)[disguised].all()
    assert (np.abs(pairs.f1 - pairs.f2)[disguised] <= 1).all()
    assert (pairs.f2[disguised] % stride == 0).all() and set(np.unique(pairs.a2[disguised])) == {1, 2, 3}
    # a disguised frame is copy c's frame f2 // stride
    x = gather_frames(src, pairs.v2[:50], pairs.f2[:50], pairs.a2[:50]).numpy()
    want = np.stack([aug[v, c - 1, f // stride] if c else lat[v, f]
                     for v, f, c in zip(pairs.v2[:50], pairs.f2[:50], pairs.a2[:50])])
    np.testing.assert_array_equal(x, want)
    with pytest.raises(ValueError, match=r"copy must be 0 \(original\) or 1..3"):
        src.get_frames(0, [0], 4)
    with pytest.raises(ValueError, match=r"augmented must be \(V, K, T_a, C, h, w\)"):
        LatentPairSource(lat, aug, table, augment_stride=1)


def test_hard_negatives_are_the_nearest_videos_of_other_patients(source):
    from echoaudit.train.reid import nearest_other_patients

    torch.manual_seed(0)
    model = ReIDNet(in_channels=1, input_size=S, **MICRO)
    near = nearest_other_patients(model, source, "TRAIN", 3)
    train = np.flatnonzero(source.splits == "TRAIN")
    assert set(near) == set(train.tolist())
    for v, others in near.items():
        assert len(others) == 3 and (source.patients[others] != source.patients[v]).all()
        assert set(others.tolist()) <= set(train.tolist())
    # the first neighbour is the most similar other-patient video (checked against a dense computation)
    with torch.no_grad():
        e = torch.stack([torch.nn.functional.normalize(model.embed(source.get_frames(int(v), np.linspace(0, T - 1, 4).round().astype(int))).mean(0), dim=0) for v in train]).numpy()
    sim = e @ e.T
    i = 0
    cand = [j for j in range(len(train)) if source.patients[train[j]] != source.patients[train[i]]]
    assert near[int(train[i])][0] == train[cand[int(np.argmax(sim[i, cand]))]]
    pairs = sample_pairs(source, split="TRAIN", n_pairs=400, seed=1, hard_negatives=near, hard_fraction=1.0)
    neg = pairs.label == 0
    assert all(b in near[int(a)] for a, b in zip(pairs.v1[neg], pairs.v2[neg]))


def test_pairs_need_two_patients():
    lat, aug, table = _phantom()
    table = table.assign(Split=np.where(table["PatientID"] == "a4c-0", "VAL", "TRAIN"))
    src = LatentPairSource(lat, aug, table)
    with pytest.raises(DatasetError, match=r"at least 2 patients in split 'VAL'; it has 1 patient\(s\) in 2 video\(s\)"):
        sample_pairs(src, split="VAL", n_pairs=10)


def test_gather_frames_matches_direct_indexing(source):
    lat, aug = source.latents, source.augmented
    v = np.array([3, 0, 3, 7, 0])
    f = np.array([1, 5, 2, 0, 5])
    a = np.array([0, 1, 1, 0, 0])
    got = gather_frames(source, v, f, a).numpy()
    want = np.stack([(aug[:, 0] if ai else lat)[vi, fi] for vi, fi, ai in zip(v, f, a)])
    np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def avi_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("avi")
    lat, _, table = _phantom()
    with EchoNetWriter(root) as w:
        for i, row in table.iloc[:12].iterrows():
            frames = np.round(lat[i, :, 0] * 255).astype(np.uint8)
            w.add(row["FileName"], frames, 50.0, ef=50.0, esv=40.0, edv=80.0, split=row["Split"] if i >= 4 else "VAL",
                  patient_id=row["PatientID"], view="a4c")
    return EchoNetDataset.open(root)


def test_image_source_decodes_each_video_once_per_batch(avi_dataset, monkeypatch):
    src = ImagePairSource(avi_dataset, size=S, max_frames=4, seed=0)
    np.testing.assert_array_equal(src.n_frames, np.full(len(avi_dataset), 4))
    assert src.frame_shape == (1, S, S) and src.space == "image"
    calls = []
    load = avi_dataset.load
    monkeypatch.setattr(avi_dataset, "load", lambda i, **kw: calls.append(i) or load(i, **kw))
    v = np.array([2, 5, 2, 5, 9, 2])
    f = np.array([0, 1, 3, 3, 2, 0])
    a = np.array([0, 1, 1, 0, 0, 1])
    x = gather_frames(src, v, f, a).numpy()
    assert sorted(calls) == [2, 5, 9]
    plain = load(2, size=S).frames
    np.testing.assert_array_equal(x[0, 0], plain[0])
    # the disguised copy of a frame: changed, but still close to it
    diff = np.abs(x[5, 0] - plain[0])
    assert diff.max() > 0.01 and diff.mean() < 0.25


def test_same_seed_gives_same_pairs_in_both_spaces(avi_dataset):
    img = ImagePairSource(avi_dataset, size=S, max_frames=T, n_copies=1)
    lat, aug, table = _phantom()
    lat_src = LatentPairSource(lat[:12], aug[:12], avi_dataset.table)
    p_img = sample_pairs(img, split="TRAIN", n_pairs=64, seed=9)
    p_lat = sample_pairs(lat_src, split="TRAIN", n_pairs=64, seed=9)
    for name in ("v1", "f1", "v2", "f2", "a2", "label"):
        np.testing.assert_array_equal(getattr(p_img, name), getattr(p_lat, name))


# ---------------------------------------------------------------------------------------
# training and evaluation


def test_micro_model_learns_identity_on_held_out_patients(source, tmp_path):
    # ~2-3 s of training. Phantom identity = anatomy; at 32x32 the model learns
    # same-video pairs first (AUC ~0.78) and other videos of a patient more slowly.
    cfg = ReIDTrainConfig(epochs=10, pairs_per_epoch=512, batch_size=64, lr=3e-3, val_pairs=256, patience=10, **MICRO)
    rec = train_reid(source, tmp_path / "run", cfg)
    untrained = ReIDNet(in_channels=1, input_size=S, **MICRO)
    base = evaluate_reid(untrained, source, n_pairs=400)["auc"]
    best = load_reid(tmp_path / "run" / "best")
    res = evaluate_reid(best, source, split="TEST", n_pairs=400)
    assert res["auc"] > 0.65 and res["auc"] > base + 0.1, (res["auc"], base, [h["val_auc"] for h in rec["history"]])
    assert res["auc_low"] <= res["auc"] <= res["auc_high"] and res["n_pairs"] == 400
    assert res["labels"].shape == res["scores"].shape == (400,)
    # the record and the files agree
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    aucs = [h["val_auc"] for h in metrics["history"]]
    assert metrics["best_auc"] == max(aucs) and metrics["best_epoch"] == int(np.argmax(aucs)) + 1
    assert metrics["config"]["width"] == 16 and metrics["space"] == "latent" and metrics["frame_shape"] == [1, S, S]
    for h in metrics["history"]:
        assert h["seconds"] >= h["data_seconds"] + h["compute_seconds"] > 0
    assert (tmp_path / "run" / "latest" / "trainer_state.json").exists()


def test_resume_continues_and_refuses_other_settings(source, tmp_path):
    cfg = ReIDTrainConfig(epochs=2, pairs_per_epoch=128, batch_size=64, val_pairs=64, **MICRO)
    first = train_reid(source, tmp_path, cfg)
    assert first["epoch"] == 2
    more = train_reid(source, tmp_path, ReIDTrainConfig(**{**cfg.__dict__, "epochs": 3}))
    assert more["epoch"] == 3 and len(more["history"]) == 3
    assert more["history"][:2] == json.loads(json.dumps(first["history"]))
    with pytest.raises(CheckpointError, match=r"other settings \(lr: saved 0.001, given 0.01\)"):
        train_reid(source, tmp_path, ReIDTrainConfig(**{**cfg.__dict__, "epochs": 4, "lr": 1e-2}))


def test_early_stopping_after_patience_epochs_without_gain(source, tmp_path):
    # lr 1e-12 leaves float32 weights unchanged: the AUC never improves after epoch 1
    cfg = ReIDTrainConfig(epochs=6, pairs_per_epoch=64, batch_size=64, val_pairs=64, lr=1e-12, patience=2, **MICRO)
    rec = train_reid(source, tmp_path, cfg)
    assert rec["stopped_early"] and rec["epoch"] == 3 and rec["best_epoch"] == 1


def test_cross_view_matrix_and_run_eval(source, tmp_path):
    psax = LatentPairSource(*_phantom("psax"))
    torch.manual_seed(0)
    models = {"a4c": ReIDNet(in_channels=1, input_size=S, **MICRO), "psax": ReIDNet(in_channels=1, input_size=S, **MICRO)}
    sources = {"a4c": source, "psax": psax}
    df = cross_view_matrix(models, sources, n_pairs=100)
    assert df.index.tolist() == ["a4c", "psax"] and df.columns.tolist() == ["a4c", "psax"]
    assert df.loc["psax", "a4c"] == pytest.approx(evaluate_reid(models["psax"], source, n_pairs=100)["auc"])
    paths = run_eval(tmp_path / "eval", models, sources, models, sources, n_pairs=100)
    back = pd.read_csv(paths["latent"], index_col=0)
    np.testing.assert_allclose(back.to_numpy(), df.to_numpy())
    html = paths["figure"].read_text()
    assert "latent space" in html and "image space" in html
    with pytest.raises(CheckpointError, match=r"takes frames of shape \(4, 14, 14\) but the latent source gives \(1, 32, 32\)"):
        evaluate_reid(ReIDNet(width=8, embed_dim=16, head_hidden=8), source)
