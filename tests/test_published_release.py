"""Issue 17's acceptance: a folder laid out like the published EchoNet-Synthetic release (an
RGB AutoencoderKL folder, a re-ID folder with <name>_best_network.pth + config.json, a video
UNet folder, a Latents/ folder), built here with random weights, audited end to end on
phantom data by the CLI (workspace create -> audit -> filters add / compare -> report) and
by the dashboard (Privacy page, with both filters' verdicts)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import pytest
import torch
from test_published_generator import tiny_unet

from echoaudit.cli import main as cli_main
from echoaudit.errors import DatasetError
from echoaudit.models.published import SiameseResNet, save_published_reid

torch.set_num_threads(1)
SIZE = 64  # 64 px frames -> 4 x 8 x 8 latents
NAME = "reidentification_dynamic"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from diffusers import AutoencoderKL

    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.data.phantom import PhantomConfig, generate_phantom
    from echoaudit.models.vae import FrameVAE

    root = tmp_path_factory.mktemp("release")
    data = generate_phantom(root / "data", PhantomConfig(n_patients=16, videos_per_patient=2, frames=16, fps=25.0,
                                                         size=SIZE, seed=3))
    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=8, sample_size=SIZE).save_pretrained(root / "models" / "vae")
    save_published_reid(SiameseResNet(4, 128).eval(), root / "models" / NAME, config={"image_size": 8})
    unet = tiny_unet()
    cfg = dict(unet.config)
    assert cfg["in_channels"] == 8
    type(unet).from_config({**cfg, "num_frames": 32}).save_pretrained(root / "models" / "unet_ema")
    # Latents/<FileName>.pt of every video and FileList.csv, as scripts/encode_video_dataset.py writes them.
    vae = FrameVAE.from_pretrained(root / "models" / "vae")
    ds = EchoNetDataset.open(data)
    lat = root / "latents" / "dynamic"
    (lat / "Latents").mkdir(parents=True)
    for i, name in enumerate(ds.names):
        torch.save(vae.encode(ds.load(i, size=SIZE).frames).clone(), lat / "Latents" / f"{name}.pt")
    ds.table[["FileName", "Split", "EF"]].to_csv(lat / "FileList.csv", index=False)
    cond = root / "conditioning"
    cond.mkdir()
    test = ds.split(["VAL", "TEST"])
    for i in range(3):
        torch.save(vae.encode(test.load(i, size=SIZE).frames[:1])[0].clone(), cond / f"sample_{i:06d}.pt")
    return {"root": root, "data": data, "vae": root / "models" / "vae", "reid": root / "models" / NAME,
            "unet": root / "models" / "unet_ema", "latents": lat, "conditioning": cond}


def _run(capsys, *argv) -> str:
    code = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return captured.out


def test_the_published_release_is_audited_by_cli_and_dashboard(release, tmp_path, capsys, monkeypatch):
    r = release
    ws_dir = tmp_path / "ws"
    out = _run(capsys, "workspace", "create", "--workspace", ws_dir, "--data", r["data"], "--vae", r["vae"],
               "--reid", r["reid"], "--generator", f"published={r['unet']}", "--conditioning",
               f"published={r['conditioning']}", "--latents", r["latents"], "--n-synthetic", 3, "--steps", 2,
               "--size", SIZE, "--index-stride", 2, "--frame-stride", 2, "--k", 4)
    assert "workspace ready" in out
    manifest = json.loads((ws_dir / "manifest.json").read_text())
    assert manifest["models"]["latents"]["layout"].startswith("published")
    assert manifest["index"]["fingerprint"]["latents"]  # the index was built from Latents/
    assert manifest["models"]["generators"]["published"]["kind"].startswith("published")
    assert manifest["synthetic"]["published"]["n"] == 3 and not manifest["pending"]

    from echoaudit.workspace import Workspace

    ws = Workspace(ws_dir)
    # The index holds the published latents' embeddings: every TRAIN video's frames 0, 2, 4, ...
    from echoaudit.published_latents import PublishedLatents

    embed = PublishedLatents.open(r["latents"], shape=(4, 8, 8)).embed_video_fn(ws.reid, ws.train.names,
                                                                                 index_stride=2)
    from echoaudit.engine import index_vectors

    vec = index_vectors(ws.index)
    first = embed(0)
    np.testing.assert_allclose(vec[: len(first)], first / np.linalg.norm(first, axis=1, keepdims=True), atol=1e-5)

    out = _run(capsys, "audit", "--workspace", ws_dir, "--n-boot", 200)
    assert "published" in out
    out = _run(capsys, "filters", "add", "--workspace", ws_dir, "--name", "their_rule", "--reid", r["reid"])
    assert "published scorer" in out
    out = _run(capsys, "filters", "compare", "--workspace", ws_dir, "--name", "their_rule", "--n-boot", 200)
    assert "Cohen's kappa" in out
    rep = tmp_path / "report"
    _run(capsys, "report", "--workspace", ws_dir, "--out", rep, "--no-png")
    summary = json.loads((rep / "summary.json").read_text())
    assert summary["filters"][0]["name"] == "their_rule" and "agreement" in summary["filters"][0]
    assert "Second privacy filters" in (rep / "report.html").read_text()

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(ws_dir))
    at = AppTest.from_file("../app.py", default_timeout=90)
    at.run()
    at.switch_page("pages/privacy.py").run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label for m in at.metric}
    assert {"Flagged synthetic videos", "Cohen's kappa", "Only their_rule"} <= labels
    for page in ("coverage", "report"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


def test_latents_of_another_vae_are_refused_before_anything_is_written(release, tmp_path, capsys):
    r = release
    other = tmp_path / "other"
    (other / "Latents").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for f in (r["latents"] / "Latents").iterdir():
        x = torch.load(f, weights_only=True)
        torch.save(torch.randn(x.shape, generator=g), other / "Latents" / f.name)
    (other / "FileList.csv").write_text((r["latents"] / "FileList.csv").read_text())
    from echoaudit.build import BuildConfig, create_workspace
    from echoaudit.engine import EngineConfig

    cfg = BuildConfig(n_synthetic=1, steps=1, engine=EngineConfig(size=SIZE, k=4, index_stride=2, frame_stride=2))
    with pytest.raises(DatasetError, match="do not match this VAE"):
        create_workspace(tmp_path / "ws", data=r["data"], vae=r["vae"], reid=r["reid"], cfg=cfg, latents=other)
    assert not (tmp_path / "ws").exists()
    table = pd.read_csv(r["latents"] / "FileList.csv")
    missing = tmp_path / "missing"
    (missing / "Latents").mkdir(parents=True)
    table.iloc[1:].to_csv(missing / "FileList.csv", index=False)
    for name in table["FileName"].iloc[1:]:
        (missing / "Latents" / f"{name}.pt").write_bytes((r["latents"] / "Latents" / f"{name}.pt").read_bytes())
    with pytest.raises(DatasetError, match="lack 1"):
        create_workspace(tmp_path / "ws2", data=r["data"], vae=r["vae"], reid=r["reid"], cfg=cfg, latents=missing)
    assert not (tmp_path / "ws2").exists()
