"""Published EchoNet-Synthetic formats: the ResNet-50 re-ID folder, its loading (strict
keys, weights_only, no code run), its use by the audit engine, the Latents/ folder and
``models inspect``. Random weights, 14x14 inputs, a few frames: seconds."""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from echoaudit.errors import CheckpointError, DatasetError, IndexMismatchError
from echoaudit.models.published import (
    AUX_SCALE,
    PublishedReID,
    ResNet50,
    SiameseResNet,
    check_published_config,
    is_published_reid,
    normalize_pmone,
    save_published_reid,
)
from echoaudit.models.reid import load_reid

torch.set_num_threads(1)
NAME = "reidentification_dynamic"
ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture(scope="module")
def net() -> SiameseResNet:
    torch.manual_seed(0)
    net = SiameseResNet(4, 128).eval()
    # Trained-looking BatchNorm statistics, so features differ between inputs.
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
            m.num_batches_tracked.fill_(7)
    with torch.no_grad():
        net.fc_end.weight.normal_(0, 1.0)
    return net


@pytest.fixture(scope="module")
def folder(net, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pub") / NAME
    save_published_reid(net, out)
    return out


@pytest.fixture(scope="module")
def model(folder) -> PublishedReID:
    return load_reid(folder)


def _x(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, 14, 14, generator=torch.Generator().manual_seed(seed)) * 2


def _copy(folder: Path, dst: Path) -> Path:
    shutil.copytree(folder, dst)
    return dst


# --------------------------------------------------------------------------- the network

def test_resnet50_has_torchvisions_layout_and_names():
    from echoaudit.models.limits import meta_parameters

    assert meta_parameters(lambda: ResNet50(3, 1000)) == 25_557_032  # torchvision.models.resnet50()
    with torch.device("meta"):
        sd = SiameseResNet(4, 128).state_dict()
    assert len(sd) == 320 + 2  # torchvision's 320 entries under model., plus fc_end
    assert tuple(sd["model.conv1.weight"].shape) == (64, 4, 7, 7)
    assert tuple(sd["model.fc.weight"].shape) == (128, 2048)
    assert tuple(sd["fc_end.weight"].shape) == (1, 128) and tuple(sd["fc_end.bias"].shape) == (1,)
    for key in ("model.layer1.0.downsample.0.weight", "model.layer1.0.downsample.1.running_var",
                "model.layer3.5.conv2.weight", "model.layer4.2.bn3.num_batches_tracked", "model.bn1.running_mean"):
        assert key in sd
    assert tuple(sd["model.layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)  # v1.5: stride on the 3x3


def test_published_folder_loads_and_scores(net, folder, model):
    assert is_published_reid(folder) and isinstance(model, PublishedReID) and not model.training
    for key, value in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], value), key
    x1, x2 = _x(2, 1), _x(2, 2)
    with torch.no_grad():
        e1, e2 = model.embed(x1), model.embed(x2)
        assert e1.shape == (2, 131) and torch.allclose(e1.norm(dim=1), torch.ones(2), atol=1e-6)
        want = net(normalize_pmone(x1), normalize_pmone(x2)).squeeze(1)  # the published forward
        assert torch.allclose(model.head_logits(e1, e2), want, atol=1e-5)
        assert torch.allclose(model(x1, x2), want, atol=1e-5)
        assert torch.allclose(model.head_logits(e1, e2), model.head_logits(e2, e1), atol=1e-6)
        # Raw sigmoid features come back from any positive multiple of the embedding.
        f = model.features(x1)
        assert torch.allclose(model.features_from_embeddings(e1 * 3.7), f, atol=1e-6)
        # One frame embeds the same alone or in a batch (eval BatchNorm, per-frame scaling).
        assert torch.allclose(model.embed(x1[:1]), e1[:1], atol=1e-6)
        # The per-frame [-1, 1] scaling makes the latents' scaling factor irrelevant.
        assert torch.allclose(model.embed(x1 * 0.18 + 3), e1, atol=1e-5)


def test_search_embedding_inner_product_is_the_pearson_correlation(model):
    from echoaudit.index import center_normalize, l2_normalize

    with torch.no_grad():
        x = _x(6, 3)
        e, f = model.embed(x).numpy(), model.features(x).numpy().astype(np.float64)
    c = center_normalize(f)
    pearson = c @ c.T
    assert np.abs(l2_normalize(e) @ l2_normalize(e).T - pearson).max() < 1e-5
    assert np.abs(center_normalize(e) @ center_normalize(e).T - pearson).max() < 1e-5
    assert np.allclose(e[:, -1], AUX_SCALE, rtol=1e-3)


def test_engine_scores_with_the_published_reid(net, model):
    """The engine's index stores L2-normalised vectors and hands those to the head: the
    logits must be the published network's all the same."""
    from echoaudit.engine import AuditEngine, EngineConfig, index_vectors
    from echoaudit.index import EmbeddingIndex, IndexConfig

    train = _x(6, 4)  # 3 videos x 2 frames
    query = _x(2, 5)
    with torch.no_grad():
        emb = model.embed(train).numpy()
    meta = pd.DataFrame({"video": ["a", "a", "b", "b", "c", "c"], "patient": ["pa", "pa", "pb", "pb", "pc", "pc"],
                         "frame": [0, 1, 0, 1, 0, 1]})
    index = EmbeddingIndex.build(emb, meta, fingerprint={"reid": "test"}, config=IndexConfig(kind="flat"))
    engine = AuditEngine(None, model, index, index_vectors(index),
                         EngineConfig(frame_stride=1, index_stride=1, k=2, rescore_videos=3))
    scores = engine.score_latents(query.numpy(), "q", exact=True)
    with torch.no_grad():
        fq, ft = net.forward_once(normalize_pmone(query)), net.forward_once(normalize_pmone(train))
        dense = net.fc_end(torch.abs(fq[:, None] - ft[None])).squeeze(-1).double().numpy()  # (2 query, 6 train)
    from scipy.special import expit

    for video, cols in (("a", [0, 1]), ("b", [2, 3]), ("c", [4, 5])):
        row = scores.per_train.set_index("train_video").loc[video]
        assert row["score"] == pytest.approx(expit(dense[:, cols].max(axis=1).mean()), abs=1e-5)
    shortlist = engine.score_latents(query.numpy(), "q")  # FAISS shortlist path runs too
    assert len(shortlist.per_train) >= 1
    pear = engine.pearson_scores(engine.embed_latents(query.numpy()), "q")
    c = lambda a: (a - a.mean(1, keepdims=True)) / np.linalg.norm(a - a.mean(1, keepdims=True), axis=1, keepdims=True)
    dense_pearson = (c(fq.double().numpy()) @ c(ft.double().numpy()).T)
    best = {v: dense_pearson[:, cols].max() for v, cols in (("a", [0, 1]), ("b", [2, 3]), ("c", [4, 5]))}
    for _, r in pear.iterrows():
        assert r["pearson"] == pytest.approx(best[r["train_video"]], abs=1e-5)


# --------------------------------------------------------------------------- loading

def test_checkpoint_dict_loads(net, tmp_path):
    ck = tmp_path / NAME
    path = save_published_reid(net, ck, checkpoint=True)
    assert path.name == f"{NAME}_checkpoint.pth"
    assert set(torch.load(path, weights_only=True)) == {"epoch", "state_dict", "optimizer", "loss_dict", "best_loss",
                                                        "num_bad_epochs"}
    loaded = load_reid(ck)
    assert torch.equal(loaded.net.fc_end.weight, net.fc_end.weight)


def test_a_copied_folder_keeps_loading(folder, tmp_path):
    """The workspace builder copies the folder to models/reid: the weights keep their name."""
    copied = _copy(folder, tmp_path / "reid")
    assert isinstance(load_reid(copied), PublishedReID)
    (copied / "other_best_network.pth").write_bytes((copied / f"{NAME}_best_network.pth").read_bytes())
    with pytest.raises(CheckpointError, match="several"):
        load_reid(copied)


def _resave(folder: Path, dst: Path, edit) -> Path:
    out = _copy(folder, dst / NAME)
    path = out / f"{NAME}_best_network.pth"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    return out


def test_damaged_state_dict_names_the_key(folder, tmp_path):
    out = _resave(folder, tmp_path / "missing", lambda s: s.pop("model.layer3.2.bn2.running_var"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): model\.layer3\.2\.bn2\.running_var"):
        load_reid(out)
    out = _resave(folder, tmp_path / "extra", lambda s: s.update({"model.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): model\.extra\.weight"):
        load_reid(out)
    out = _resave(folder, tmp_path / "shape", lambda s: s.update({"fc_end.weight": torch.zeros(1, 64)}))
    with pytest.raises(CheckpointError, match=r"fc_end\.weight \(1, 64\) \(expected \(1, 128\)\)"):
        load_reid(out)
    out = _resave(folder, tmp_path / "nan", lambda s: s["model.fc.bias"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match="model.fc.bias holds NaN"):
        load_reid(out)


class _Payload:
    """Pickles as ``open(marker, "w")``: unpickling it with a full unpickler creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, how: str, marker: Path) -> None:
    if how == "torch.save":
        torch.save(_Payload(marker), path)
    elif how == "raw pickle":
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    else:  # one value of an otherwise plain state dict
        torch.save({"model.conv1.weight": torch.zeros(64, 4, 7, 7), "fc_end.bias": _Payload(marker)}, path)


@pytest.mark.parametrize("how", ["torch.save", "raw pickle", "inside a state dict"])
def test_a_pickle_that_would_run_code_is_refused_and_never_run(folder, tmp_path, how):
    from echoaudit.models_cli import main

    # The payload is live: a full unpickler runs it.
    control, control_marker = tmp_path / "control.pth", tmp_path / "control_ran"
    _plant(control, how, control_marker)
    with contextlib.suppress(Exception):  # the payload object is no state dict
        torch.load(control, weights_only=False)
    assert control_marker.exists()

    out = _copy(folder, tmp_path / NAME)
    marker = tmp_path / "payload_ran"
    _plant(out / f"{NAME}_best_network.pth", how, marker)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(CheckpointError, match=rf"refused weights file .*{NAME}_best_network\.pth"):
        load_reid(out)
    assert main(["models", "inspect", "--reid", str(out)]) == 2
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_files_that_are_no_state_dict_are_refused(folder, tmp_path):
    out = _copy(folder, tmp_path / NAME)
    path = out / f"{NAME}_best_network.pth"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match=rf"cannot read weights file .*{NAME}_best_network\.pth"):
        load_reid(out)
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_reid(out)
    torch.save({"model.conv1.weight": 3}, path)
    with pytest.raises(CheckpointError, match="not name -> tensor"):
        load_reid(out)
    path.unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        load_reid(out)


def test_config_is_bounded_before_anything_is_built(tmp_path):
    from echoaudit.models.limits import check_reid_config

    cfg = {"siamese_architecture": "ResNet-50", "n_channels": 4, "n_features": 128, "image_size": 14}
    config, n = check_published_config(tmp_path / "config.json", cfg)
    assert n == 23_773_569 and config.embed_dim == 131
    assert check_reid_config(tmp_path / "config.json", cfg) == n  # the builder's pre-check dispatches too
    for key, value, pattern in (("n_features", 10**6, "n_features is 1000000"), ("n_channels", 0, "n_channels is 0"),
                                ("image_size", 10**9, "image_size"), ("siamese_architecture", "VGG-16", "VGG-16"),
                                ("transform", "zscore", "transform"), ("loss", 3, "loss is 3")):
        with pytest.raises(CheckpointError, match=pattern):
            check_published_config(tmp_path / "config.json", {**cfg, key: value})
    bad = tmp_path / NAME
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**cfg, "n_features": 10**6}))
    (bad / f"{NAME}_best_network.pth").write_bytes(b"never read")
    with pytest.raises(CheckpointError, match="n_features"):
        load_reid(bad)


def test_fingerprint_covers_the_pth_weights(folder, tmp_path):
    from echoaudit.models.reid import reid_fingerprint

    out = _copy(folder, tmp_path / NAME)
    before = reid_fingerprint(out)
    (out / "notes.txt").write_text("x")
    assert reid_fingerprint(out) == before
    path = out / f"{NAME}_best_network.pth"
    state = torch.load(path, weights_only=True)
    state["fc_end.bias"] += 1
    torch.save(state, path)
    assert reid_fingerprint(out) != before


# --------------------------------------------------------------------------- latents

def _latents_folder(root: Path, lengths=(5, 7, 6), splits=("TRAIN", "val", "9")) -> tuple[Path, list[np.ndarray]]:
    root.mkdir(parents=True)
    (root / "Latents").mkdir()
    rng = np.random.default_rng(0)
    vids, rows = [], []
    for i, (t, s) in enumerate(zip(lengths, splits)):
        x = rng.normal(size=(t, 4, 14, 14)).astype(np.float32)
        torch.save(torch.from_numpy(x), root / "Latents" / f"0X{i:04d}.pt")
        vids.append(x)
        rows.append({"FileName": f"0X{i:04d}", "EF": 50 + i, "FPS": 50, "NumberOfFrames": t, "Split": s})
    pd.DataFrame(rows).to_csv(root / "FileList.csv", index=False)
    return root, vids


def test_published_latents_read_and_convert(tmp_path):
    from echoaudit.latents import LatentCache
    from echoaudit.published_latents import PublishedLatents, latents_from_published

    root, vids = _latents_folder(tmp_path / "dynamic")
    src = PublishedLatents.open(root)
    assert src.names == ["0X0000", "0X0001", "0X0002"]
    assert list(src.table["Split"]) == ["TRAIN", "VAL", "TEST"]
    assert list(src.table["PatientID"]) == src.names and list(src.table["EF"]) == [50.0, 51.0, 52.0]
    assert np.array_equal(src.get("0X0001"), vids[1]) and len(src.split("TRAIN")) == 1

    cache = latents_from_published(root, tmp_path / "cache", vae_fingerprint="vae123")
    again = LatentCache.load(tmp_path / "cache", expected_vae="vae123")
    assert again.latents.shape == (3, 5, 4, 14, 14) and again.augmented is None
    for i, x in enumerate(vids):
        assert np.allclose(np.asarray(again.latents[i], np.float32), x[:5], atol=2e-3)
    assert list(again.table["FileName"]) == src.names and list(again.table["Split"]) == ["TRAIN", "VAL", "TEST"]
    assert cache.meta["source"]["format"] == "EchoNet-Synthetic Latents"

    latents_from_published(root, tmp_path / "unknown")  # no VAE named: a VAE-checked load refuses it
    with pytest.raises(IndexMismatchError, match="unknown"):
        LatentCache.load(tmp_path / "unknown", expected_vae="vae123")
    with pytest.raises(DatasetError, match="has 5 frames"):
        latents_from_published(root, tmp_path / "long", frames=6)


def test_latents_index_through_the_engine_builder_hook(tmp_path, model):
    from echoaudit.published_latents import PublishedLatents

    root, vids = _latents_folder(tmp_path / "dynamic")
    embed_video = PublishedLatents.open(root).embed_video_fn(model, ["0X0002", "0X0000"], index_stride=2)
    with torch.no_grad():
        want = model.embed(torch.from_numpy(vids[2][::2])).numpy()
    assert np.allclose(embed_video(0), want, atol=1e-6) and embed_video(1).shape == (3, 131)
    with pytest.raises(DatasetError, match="lack 1"):
        PublishedLatents.open(root).embed_video_fn(model, ["nope"])


def test_bad_latent_files_are_named(tmp_path):
    from echoaudit.published_latents import PublishedLatents

    root, _ = _latents_folder(tmp_path / "d")
    src = PublishedLatents.open(root)
    lat = root / "Latents"
    torch.save(torch.zeros(5, 4, 16, 16), lat / "0X0000.pt")
    with pytest.raises(DatasetError, match=r"0X0000\.pt holds a tensor of shape \(5, 4, 16, 16\)"):
        src.get(0)
    x = torch.zeros(5, 4, 14, 14)
    x[2, 1, 3, 3] = float("inf")
    torch.save(x, lat / "0X0001.pt")
    with pytest.raises(DatasetError, match=r"0X0001\.pt holds NaN or infinite"):
        src.get(1)
    marker = tmp_path / "ran"
    torch.save(_Payload(marker), lat / "0X0002.pt")
    with pytest.raises(DatasetError, match=r"refused latent file .*0X0002\.pt"):
        src.get(2)
    assert not marker.exists()
    (lat / "0X0002.pt").unlink()
    with pytest.raises(DatasetError, match=r"Latents/0X0002\.pt is missing"):
        PublishedLatents.open(root)
    pd.DataFrame({"FileName": ["a", "a", "../x"], "Split": ["TRAIN", "TRAIN", "later"]}).to_csv(root / "FileList.csv",
                                                                                              index=False)
    with pytest.raises(DatasetError) as err:
        PublishedLatents.open(root)
    assert "listed 2 times" in str(err.value) and "bare file name" in str(err.value) and "'later'" in str(err.value)


# --------------------------------------------------------------------------- models inspect

def test_models_inspect_exit_codes(folder, tmp_path, capsys):
    from echoaudit.models_cli import main

    assert main(["models", "inspect", "--reid", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "published" in out and "23,773,569" in out and "fingerprint: " in out and '"n_features": 128' in out
    assert main(["models", "inspect", "--reid", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 23_773_569 and info["weights"] == f"{NAME}_best_network.pth"

    damaged = _resave(folder, tmp_path / "damaged", lambda s: s.pop("fc_end.bias"))
    assert main(["models", "inspect", "--reid", str(damaged)]) == 2
    assert "fc_end.bias" in capsys.readouterr().err
    assert main(["models", "inspect", "--reid", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["models", "inspect", "--generator", str(folder)]) == 2
    assert "not a generator; inspect it with --reid" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["models", "inspect", "--generator", str(tmp_path / "empty")]) == 2
    assert "not a generator folder" in capsys.readouterr().err
    assert main(["models", "inspect", "--vae", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "is a published re-ID folder" in err and "--reid" in err


@pytest.mark.skipif(not (ASSETS / "reid" / "config.json").is_file(), reason="shipped demo models absent")
def test_models_inspect_project_models(capsys):
    from echoaudit.models_cli import main

    assert main(["models", "inspect", "--reid", str(ASSETS / "reid")]) == 0
    assert "project (ReIDNet" in capsys.readouterr().out
    assert main(["models", "inspect", "--vae", str(ASSETS / "vae")]) == 0
    out = capsys.readouterr().out
    assert "project (diffusers AutoencoderKL" in out and "4 x 14 x 14" in out
    gens = sorted(p for p in (ASSETS / "generators").iterdir() if (p / "model_index.json").is_file())
    assert main(["models", "inspect", "--generator", str(gens[0])]) == 0
    assert "project (EchoVideoPipeline" in capsys.readouterr().out


def test_models_inspect_published_video_unet(tmp_path, capsys):
    from diffusers import UNetSpatioTemporalConditionModel

    from echoaudit.models.diffusion import build_unet
    from echoaudit.models_cli import main

    cfg = dict(build_unet((32, 32), num_frames=8).config)
    cfg["in_channels"] = 8  # noisy latents + conditioning-frame latents
    UNetSpatioTemporalConditionModel.from_config(cfg).save_pretrained(tmp_path / "unet_ema")
    assert main(["models", "inspect", "--generator", str(tmp_path / "unet_ema")]) == 0
    out = capsys.readouterr().out
    assert "published (diffusers UNetSpatioTemporalConditionModel" in out and "conditioning-frame" in out


def test_a_workspace_builds_with_a_published_reid(tmp_path):
    """The builder's --reid path: pre-check, copy to models/reid, load, index, score."""
    from diffusers import AutoencoderKL

    from echoaudit.build import BuildConfig, create_workspace
    from echoaudit.data.phantom import PhantomConfig, generate_phantom
    from echoaudit.engine import EngineConfig
    from echoaudit.fileio import sha256_tree

    data = generate_phantom(tmp_path / "data", PhantomConfig(n_patients=8, videos_per_patient=2, frames=8, fps=25.0,
                                                             size=64, seed=0))
    torch.manual_seed(0)
    AutoencoderKL(in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(8, 16, 16, 16),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=8, sample_size=64).save_pretrained(tmp_path / "vae")
    reid = tmp_path / NAME
    save_published_reid(SiameseResNet(4, 128).eval(), reid, config={"image_size": 8})  # 64 px frames: 8x8 latents
    cfg = BuildConfig(n_synthetic=2, synthetic_frames=8, steps=2, top=3, temporal_heldout=2,
                      engine=EngineConfig(size=64, k=4, index_stride=2, frame_stride=2))
    ws = create_workspace(tmp_path / "ws", data=data, vae=tmp_path / "vae", reid=reid, generators={}, cfg=cfg)
    rec = ws.manifest["models"]["reid"]
    assert rec["parameters"] == 23_773_569
    assert rec["sha256"] != sha256_tree(reid, include=lambda p: p.name == "config.json")  # the .pth counts
    assert isinstance(ws.reid, PublishedReID)
    assert (ws.root / "models" / "reid" / f"{NAME}_best_network.pth").is_file()


def test_format_detection(folder, tmp_path):
    assert is_published_reid(folder)
    bare = tmp_path / "weights_only"
    bare.mkdir()
    (bare / f"x{'_best_network.pth'}").write_bytes(b"")
    assert is_published_reid(bare)  # no config: published, and the loader says what is missing
    with pytest.raises(CheckpointError, match="no config.json"):
        load_reid(bare)
    project = _copy(ASSETS / "reid", tmp_path / "project")  # the shipped re-ID, always in git
    (project / "stray_checkpoint.pth").write_bytes(b"")
    assert not is_published_reid(project)  # its config names _class_name ReIDNet


def test_python_m_echoaudit_models_inspect(folder, tmp_path, capsys):
    """Through the `echoaudit` command itself (echoaudit/cli.py registers the module)."""
    from echoaudit.cli import main

    assert main(["models", "inspect", "--reid", str(folder)]) == 0
    out = _copy(folder, tmp_path / NAME)
    marker = tmp_path / "ran"
    _plant(out / f"{NAME}_best_network.pth", "torch.save", marker)
    assert main(["models", "inspect", "--reid", str(out)]) == 2
    assert not marker.exists()
