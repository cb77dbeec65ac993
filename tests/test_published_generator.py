"""Sampling from a published EchoNet-Synthetic video UNet (echoaudit/published_generator.py)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from echoaudit.errors import CheckpointError, DatasetError, EchoAuditError
from echoaudit.published_generator import (
    PublishedVideoPipeline,
    is_published_unet,
    load_conditioning,
    published_scheduler_config,
)

torch.set_num_threads(1)

# The published layout at a tiny size: 8 = 4 noisy + 4 conditioning channels, the EF as
# the one cross-attention token, one zero added-time id.
TINY = {"sample_size": 8, "in_channels": 8, "out_channels": 4, "block_out_channels": (32, 32),
        "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        "cross_attention_dim": 1, "addition_time_embed_dim": 1, "projection_class_embeddings_input_dim": 1,
        "num_attention_heads": (2, 2), "num_frames": 4, "layers_per_block": 1}


def tiny_unet(seed: int = 0):
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(**TINY).eval()
    with torch.no_grad():  # random output layers: zero-initialised ones would predict v = 0 everywhere
        for p in unet.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    return unet


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("pub") / "unet_ema"
    tiny_unet().save_pretrained(out)
    return out


def save_frames(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        torch.save(f.clone(), folder / f"frame_{i:03d}.pt")
    return folder


def reference(unet, cond, lvef, noise_bfchw, steps, generator):
    """Their sampler, plainly, in their layout (B C T H W)."""
    from diffusers import DDPMScheduler

    cfg = {k: v for k, v in published_scheduler_config().items() if k != "_class_name"}
    scheduler = DDPMScheduler(**cfg)
    scheduler.set_timesteps(steps)
    latents = noise_bfchw.permute(0, 2, 1, 3, 4).clone()  # B C T H W
    B, C, T, h, w = latents.shape
    cond = cond[:, :, None].repeat(1, 1, T, 1, 1)
    ehs = (lvef / 100)[:, None, None]
    ids = torch.zeros(B, 1)
    pad = (2**3 - h % 2**3) // 2
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(latents, t)
            x = torch.cat((x, cond), dim=1)
            x = x.permute(0, 2, 1, 3, 4).reshape(B * T, 2 * C, h, w)  # b t c h w, frames as a batch
            x = F.pad(x, (pad, pad, pad, pad), mode="replicate").reshape(B, T, 2 * C, h + 2 * pad, w + 2 * pad)
            v = unet(x, t, encoder_hidden_states=ehs, added_time_ids=ids).sample
            v = v[..., pad:-pad, pad:-pad].permute(0, 2, 1, 3, 4)
            latents = scheduler.step(v, t, latents, generator=generator).prev_sample
    return latents.permute(0, 2, 1, 3, 4)


def test_parity_with_the_published_sampling_rule(folder):
    """Same noise, EFs and step noise: the module's pipeline and a dense reference loop agree."""
    unet = tiny_unet()
    torch.manual_seed(1)
    cond = torch.randn(3, 4, 8, 8)
    pipe = PublishedVideoPipeline.from_folder(folder, cond)  # loaded from disk, the reference uses the module
    assert pipe.config.num_frames == 4 and pipe.latent_shape == (4, 8, 8)
    assert type(pipe.scheduler).__name__ == "DDPMScheduler" and pipe.scheduler.config.prediction_type == "v_prediction"
    noise = torch.randn(2, 4, 4, 8, 8)  # n, F, C, h, w
    efs = [35.0, 70.0]
    got = pipe(2, ef=efs, steps=4, latents=noise, first=1,
               generator=[torch.Generator().manual_seed(s) for s in (5, 6)])
    want = reference(unet, cond[[1, 2]], torch.tensor(efs), noise, 4, [torch.Generator().manual_seed(s) for s in (5, 6)])
    assert got.shape == (2, 4, 4, 8, 8) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not torch.allclose(got[0], got[1], atol=1e-3)
    # Their call draws step noise from the global RNG: one clip seeded s is the same.
    got1 = pipe(1, ef=50.0, steps=3, latents=noise[:1], generator=torch.Generator().manual_seed(9))
    torch.manual_seed(9)
    want1 = reference(unet, cond[:1], torch.tensor([50.0]), noise[:1], 3, None)
    assert torch.allclose(got1, want1, atol=1e-5)
    # A different EF changes the clip (the EF token reaches the UNet).
    other = pipe(1, ef=90.0, steps=3, latents=noise[:1], generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(got1, other, atol=1e-6)


def test_call_validation(folder):
    pipe = PublishedVideoPipeline.from_folder(folder, torch.zeros(1, 4, 8, 8))
    g = torch.Generator().manual_seed(0)
    for kwargs, match in [({"n": 0}, "n .number of clips"), ({"num_frames": 5}, "more than the published UNet's 4"),
                          ({"steps": 0}, "steps must be"), ({"ef": 101.0}, r"ef must be in \[0, 100\]"),
                          ({"ef": None}, "ef is required"), ({"first": -1}, "first must be")]:
        args = {"n": 1, "ef": 50.0, "steps": 1, **kwargs}
        with pytest.raises(EchoAuditError, match=match):
            pipe(args.pop("n"), generator=g, **args)
    with pytest.raises(CheckpointError, match="C = out_channels 4 and h = w = sample_size 8"):
        PublishedVideoPipeline.from_folder(folder, torch.zeros(1, 4, 14, 14))


def test_scheduler_lookup(folder, tmp_path):
    import shutil

    from echoaudit.published_generator import find_scheduler_config, load_scheduler

    assert find_scheduler_config(folder) is None
    assert load_scheduler(folder).config.clip_sample_range == 4.0
    unet = shutil.copytree(folder, tmp_path / "m" / "unet_ema")
    (tmp_path / "m" / "scheduler").mkdir()
    (tmp_path / "m" / "scheduler" / "scheduler_config.json").write_text(
        '{"_class_name": "DDIMScheduler", "num_train_timesteps": 500}')
    assert type(load_scheduler(unet)).__name__ == "DDIMScheduler"
    from echoaudit.build import _copy_model

    _copy_model(unet, tmp_path / "copy")  # the workspace's copy keeps the scheduler found beside it
    assert type(load_scheduler(tmp_path / "copy")).__name__ == "DDIMScheduler"
    (unet / "scheduler_config.json").write_text('{"_class_name": "os.system", "num_train_timesteps": 10}')
    with pytest.raises(CheckpointError, match="diffusers scheduler class"):
        load_scheduler(unet)


def test_conditioning_loading(tmp_path):
    good = save_frames(tmp_path / "good", torch.randn(3, 4, 8, 8))
    torch.save(torch.randn(1, 4, 8, 8), good / "z_batched.pt")  # (1, C, h, w) is accepted too
    (good / "notes.txt").write_text("not a frame")
    frames = load_conditioning(good)
    assert frames.shape == (4, 4, 8, 8) and frames.dtype == torch.float32
    assert torch.equal(frames[0], torch.load(good / "frame_000.pt", weights_only=True))

    # A pickle that would run code when unpickled: refused, and it never runs.
    marker = tmp_path / "MARKER"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = save_frames(tmp_path / "evil", torch.randn(1, 4, 8, 8))
    torch.save(Evil(), bad / "frame_001.pt")
    with pytest.raises(DatasetError, match="frame_001.pt.*weights_only"):
        load_conditioning(bad)
    assert not marker.exists()

    wrong = save_frames(tmp_path / "wrong", [torch.randn(4, 8, 8), torch.randn(2, 3)])
    with pytest.raises(DatasetError, match=r"frame_001.pt: shape \(2, 3\)"):
        load_conditioning(wrong)
    mixed = save_frames(tmp_path / "mixed", [torch.randn(4, 8, 8), torch.randn(4, 6, 6)])
    with pytest.raises(DatasetError, match="all frames must have one shape"):
        load_conditioning(mixed)
    nan = save_frames(tmp_path / "nan", [torch.full((4, 8, 8), float("nan"))])
    with pytest.raises(DatasetError, match="NaN"):
        load_conditioning(nan)
    ints = save_frames(tmp_path / "ints", [torch.zeros(4, 8, 8, dtype=torch.int64)])
    with pytest.raises(DatasetError, match="floating-point"):
        load_conditioning(ints)
    other = tmp_path / "dict"
    other.mkdir()
    torch.save({"x": torch.zeros(4, 8, 8)}, other / "a.pt")
    with pytest.raises(DatasetError, match="a.pt: holds a dict"):
        load_conditioning(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty.*holds no"):
        load_conditioning(tmp_path / "empty")


def test_load_generator_needs_conditioning_and_batching_does_not_matter(folder, tmp_path):
    from echoaudit.generate import (
        draw_efs,
        generate_latents,
        load_generator,
        training_efs,
    )

    assert is_published_unet(folder)
    with pytest.raises(CheckpointError, match="a published video UNet: it needs conditioning frames: pass a folder"):
        load_generator(folder)
    cond = save_frames(tmp_path / "cond", torch.randn(2, 4, 8, 8))
    pipe = load_generator(folder, cond)
    assert isinstance(pipe, PublishedVideoPipeline) and load_generator(pipe) is pipe
    assert pipe.conditioning_sha256 and pipe.config.fps == 32.0 and pipe.config.vae_fingerprint == ""
    efs = training_efs(pipe)
    assert efs.min() == 10 and efs.max() == 90 and len(efs) == 81
    drawn = draw_efs(efs, 50, seed=3)
    assert np.all(drawn == np.round(drawn)) and drawn.min() >= 10 and drawn.max() <= 90

    e = np.array([30.0, 55.0, 80.0])
    together = generate_latents(pipe, n=3, seed=7, efs=e, steps=3, num_frames=3)
    apart = torch.cat([generate_latents(pipe, n=1, seed=7, efs=e[i : i + 1], steps=3, num_frames=3, first=i)
                       for i in range(3)])
    assert together.shape == (3, 3, 4, 8, 8)
    assert torch.allclose(together, apart, atol=1e-5)
    # Video 2 cycles back to conditioning frame 0: same noise seed and EF as video 0 would
    # give the same clip only if the frames matched; they are conditioned on frames 0, 1, 0.
    assert not torch.allclose(together[0], together[1], atol=1e-4)


def test_inspect_uses_the_same_loader(folder, capsys):
    from echoaudit.models_cli import main

    assert main(["models", "inspect", "--generator", str(folder)]) == 0
    assert "conditioning-frame latents" in capsys.readouterr().out


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, folder):
    """Phantom data, a tiny VAE (64 px -> 4 x 8 x 8) and conditioning latents of TEST frames."""
    from diffusers import AutoencoderKL

    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.data.phantom import PhantomConfig, generate_phantom
    from echoaudit.models.vae import FrameVAE

    root = tmp_path_factory.mktemp("e2e")
    data = generate_phantom(root / "data", PhantomConfig(n_patients=8, videos_per_patient=2, frames=8, fps=25.0,
                                                         size=64, seed=0))
    torch.manual_seed(0)
    AutoencoderKL(in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(8, 16, 16, 16),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=8, sample_size=64).save_pretrained(root / "vae")
    vae = FrameVAE.from_pretrained(root / "vae")
    test = EchoNetDataset.open(data).split("TEST")
    latents = vae.encode(np.stack([test.load(i, size=64).frames[0] for i in range(2)]))
    assert latents.shape == (2, 4, 8, 8)
    cond = save_frames(root / "cond", latents)
    return {"root": root, "data": data, "vae": vae, "vae_dir": root / "vae", "cond": cond, "unet": folder}


def test_generate_dataset_from_a_published_unet(e2e):
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.fileio import read_json
    from echoaudit.generate import GENERATOR_JSON, generate_dataset
    from echoaudit.published_generator import conditioning_fingerprint

    out = generate_dataset(e2e["unet"], e2e["vae"], e2e["root"] / "syn", n=3, seed=0, steps=2, num_frames=4,
                           batch_size=2, conditioning=e2e["cond"])
    ds = EchoNetDataset.open(out)
    assert len(ds) == 3
    efs = ds.table["EF"].to_numpy()
    assert np.all((efs >= 10) & (efs <= 90)) and np.all(efs == np.round(efs))
    video = ds.load(0)
    assert video.frames.shape == (4, 64, 64) and video.fps == pytest.approx(32.0)
    rec = read_json(out / GENERATOR_JSON, what="record", expect=dict)
    assert rec["conditioning_sha256"] == conditioning_fingerprint(e2e["cond"]) and rec["scheduler"] == "DDPMScheduler"


def test_cli_generate_with_conditioning(e2e, capsys):
    from echoaudit.cli import main
    from echoaudit.data.echonet import EchoNetDataset

    base = ["generate", "--generator", str(e2e["unet"]), "--vae", str(e2e["vae_dir"]), "--n", "2", "--steps", "1",
            "--frames", "4", "--threads", "1"]
    assert main([*base, "--out", str(e2e["root"] / "cli_none")]) == 2
    assert "needs conditioning frames" in capsys.readouterr().err
    assert main([*base, "--out", str(e2e["root"] / "cli"), "--conditioning", str(e2e["cond"])]) == 0
    assert len(EchoNetDataset.open(e2e["root"] / "cli")) == 2


def test_workspace_with_a_published_generator(e2e):
    from echoaudit.build import BuildConfig, create_workspace
    from echoaudit.engine import EngineConfig
    from echoaudit.models.reid import ReIDNet
    from echoaudit.published_generator import conditioning_fingerprint

    reid = e2e["root"] / "reid"
    torch.manual_seed(0)
    ReIDNet(in_channels=4, input_size=8, width=16, embed_dim=32, head_hidden=32).save_pretrained(reid)
    cfg = BuildConfig(n_synthetic=2, synthetic_frames=4, steps=2, top=3, temporal_heldout=2,
                      engine=EngineConfig(size=64, k=4, index_stride=2, frame_stride=2))
    kwargs = {"data": e2e["data"], "vae": e2e["vae_dir"], "reid": reid, "generators": {"published": e2e["unet"]},
              "cfg": cfg}
    with pytest.raises(CheckpointError, match="needs conditioning frames"):
        create_workspace(e2e["root"] / "ws_bad", **kwargs)
    assert not (e2e["root"] / "ws_bad").exists()  # refused before anything is written
    ws = create_workspace(e2e["root"] / "ws", conditioning={"published": e2e["cond"]}, **kwargs)
    entry = ws.manifest["models"]["generators"]["published"]
    assert entry["conditioning"]["sha256"] == conditioning_fingerprint(e2e["cond"])
    assert (ws.root / entry["conditioning"]["path"]).is_dir()
    assert ws.manifest["clip"]["fps"] == 32.0 and not ws.manifest["pending"]
    assert ws.manifest["synthetic"]["published"]["n"] == 2
