"""Tests of the latent video diffusion model, its training loop and generation.

Micro models only: a (32, 32) UNet (32 is the smallest width diffusers' GroupNorm allows)
on 4x8x8 latents of 4-frame clips, and an untrained tiny VAE.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDIMScheduler, UNetSpatioTemporalConditionModel
from safetensors.torch import load_file

from echoaudit.data.echonet import EchoNetDataset, EchoNetWriter
from echoaudit.data.phantom import render_video, sample_acquisition, sample_anatomy
from echoaudit.errors import CheckpointError, EchoAuditError
from echoaudit.generate import (
    GENERATOR_JSON,
    generate_dataset,
    generate_videos,
    generator_quality,
    sector_mask,
    video_statistics,
)
from echoaudit.models.diffusion import EF_NULL, EchoVideoPipeline, build_unet, sampling_scheduler
from echoaudit.models.vae import FrameVAE, build_vae
from echoaudit.train.diffusion import DiffusionTrainConfig, get_clips, train_diffusion, train_diffusion_from_cache

torch.set_num_threads(1)

MICRO = DiffusionTrainConfig(
    steps=20, batch_size=8, lr=3e-3, warmup=2, num_frames=4, frame_stride=2, block_out_channels=(32, 32),
    checkpoint_every=10, ema_decay=0.9, cond_dropout=0.15, seed=0,
)


def toy_latents(videos: int = 4, frames: int = 10, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(V, T, 4, s, s) float16: a fixed smooth pattern per video, beating in amplitude; EFs."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    out = np.empty((videos, frames, 4, size, size), np.float32)
    for v in range(videos):
        freq = rng.uniform(1, 3, size=(4, 2))
        pattern = np.stack([np.sin(2 * np.pi * (f[0] * x + f[1] * y)) for f in freq])
        beat = 1 + 0.4 * np.sin(2 * np.pi * np.arange(frames) / 6 + v)
        out[v] = beat[:, None, None, None] * pattern
    return out.astype(np.float16), np.linspace(30, 70, videos)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    latents, ef = toy_latents()
    out = tmp_path_factory.mktemp("run")
    record = train_diffusion(latents, ef, out, MICRO, fps=50.0, vae_fingerprint="", view="a4c")
    return out, record, latents, ef


@pytest.fixture(scope="module")
def vae():
    return FrameVAE(build_vae((16, 32, 64, 64), sample_size=64, seed=0))


# ----------------------------------------------------------------------------- model


def test_build_unet_rejects_widths_groupnorm_cannot_split():
    with pytest.raises(EchoAuditError, match=r"multiples of 32.*\(16, 32\)"):
        build_unet((16, 32))
    with pytest.raises(EchoAuditError, match=r"attention_levels must be in \[0, 1\].*got 2"):
        build_unet((32, 64), attention_levels=2)


def test_unet_shape_and_ef_changes_output():
    unet = build_unet((32, 32), sample_size=8, num_frames=4).eval()
    x = torch.randn(2, 4, 4, 8, 8)
    ctx = torch.zeros(2, 1, unet.config.cross_attention_dim)
    with torch.no_grad():
        a = unet(x, 10, encoder_hidden_states=ctx, added_time_ids=torch.tensor([[30.0], [30.0]])).sample
        b = unet(x, 10, encoder_hidden_states=ctx, added_time_ids=torch.tensor([[70.0], [EF_NULL]])).sample
    assert a.shape == x.shape
    assert not torch.allclose(a, b)


def test_get_clips_takes_strided_frames_of_one_video():
    lat = np.arange(3 * 12, dtype=np.float32).reshape(3, 12, 1, 1, 1) * np.ones((1, 1, 2, 2, 2), np.float32)
    clips, idx = get_clips(lat, np.random.default_rng(1), videos=2, batch_size=16, num_frames=4, frame_stride=3)
    assert clips.shape == (16, 4, 2, 2, 2) and set(idx) <= {0, 1}
    for clip, v in zip(clips[:, :, 0, 0, 0], idx):
        start = clip[0] - 12 * v
        np.testing.assert_array_equal(clip, 12 * v + start + np.array([0, 3, 6, 9]))


# ----------------------------------------------------------------------------- training


def fixed_batch_loss(unet, latents, ef) -> float:
    """v-prediction MSE on 64 fixed clips / timesteps / noise draws (an independent re-derivation)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    g = torch.Generator().manual_seed(123)
    v = torch.randint(0, len(latents), (64,), generator=g)
    x0 = torch.from_numpy(latents[:, 0:7:2].astype(np.float32))[v]  # frames 0, 2, 4, 6
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (64,), generator=g)
    a = sched.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
    target = a.sqrt() * noise - (1 - a).sqrt() * x0
    with torch.no_grad():
        out = unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=torch.zeros(64, 1, 32),
                   added_time_ids=torch.tensor(ef, dtype=torch.float32)[v].reshape(-1, 1)).sample
    return float(((out - target) ** 2).mean())


def test_training_loss_decreases_and_folders_are_written(run):
    out, record, latents, ef = run
    assert [h["step"] for h in record["history"]] == [10, 20]
    before = fixed_batch_loss(build_unet((32, 32), sample_size=8, num_frames=4, seed=0).eval(), latents, ef)
    trained = UNetSpatioTemporalConditionModel.from_pretrained(out / "latest/unet", low_cpu_mem_usage=False).eval()
    after = fixed_batch_loss(trained, latents, ef)
    assert after < 0.75 * before, (before, after)  # measured 0.60x
    for rel in ("latest/unet/config.json", "latest/ema/diffusion_pytorch_model.safetensors", "latest/scheduler/scheduler_config.json",
                "latest/trainer_state.json", "best/model_index.json", "best/unet/config.json", "best/scheduler/scheduler_config.json",
                "best/training.json", "metrics.json"):
        assert (out / rel).is_file(), rel
    index = json.loads((out / "best/model_index.json").read_text())
    assert index["num_frames"] == 4 and index["frame_stride"] == 2 and index["fps"] == 25.0
    assert index["train_videos"] == 4 and index["view"] == "a4c"
    info = json.loads((out / "best/training.json").read_text())
    np.testing.assert_allclose(info["train_ef"], ef)
    assert info["ef_conditioning"]["null_id"] == EF_NULL


def test_best_is_the_ema_and_round_trips(run):
    out, *_ = run
    unet = UNetSpatioTemporalConditionModel.from_pretrained(out / "best/unet", low_cpu_mem_usage=False)
    ema = load_file(str(out / "latest/ema/diffusion_pytorch_model.safetensors"))
    raw = load_file(str(out / "latest/unet/diffusion_pytorch_model.safetensors"))
    for name, p in unet.state_dict().items():
        torch.testing.assert_close(p, ema[name], rtol=0, atol=0)
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # EMA differs from the raw weights
    pipe = EchoVideoPipeline.from_folder(out / "best")
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.latent_shape == (4, 8, 8)


def test_resume_continues_exactly(tmp_path):
    latents, ef = toy_latents()
    cfg = DiffusionTrainConfig(**{**MICRO.__dict__, "steps": 6, "checkpoint_every": 3})
    train_diffusion(latents, ef, tmp_path / "a", cfg)
    train_diffusion(latents, ef, tmp_path / "b", DiffusionTrainConfig(**{**cfg.__dict__, "steps": 3}))
    record = train_diffusion(latents, ef, tmp_path / "b", cfg)  # resumes from step 3
    assert record["step"] == 6
    for part in ("unet", "ema"):
        a = load_file(str(tmp_path / f"a/latest/{part}/diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / f"b/latest/{part}/diffusion_pytorch_model.safetensors"))
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_resume_refuses_other_config_or_latent_shape(tmp_path):
    latents, ef = toy_latents()
    cfg = DiffusionTrainConfig(**{**MICRO.__dict__, "steps": 2, "checkpoint_every": 2})
    train_diffusion(latents, ef, tmp_path, cfg)
    with pytest.raises(CheckpointError, match=r"different config \(num_frames: checkpoint 4 vs now 3\)"):
        train_diffusion(latents, ef, tmp_path, DiffusionTrainConfig(**{**cfg.__dict__, "steps": 4, "num_frames": 3}))
    wide, _ = toy_latents(size=16)
    with pytest.raises(CheckpointError, match=r"C=4 channels of 8x8.*\(4, 16, 16\)"):
        train_diffusion(wide, ef, tmp_path, DiffusionTrainConfig(**{**cfg.__dict__, "steps": 4}))


def test_subset_trains_on_first_videos_only(tmp_path):
    latents, ef = toy_latents()
    cfg = DiffusionTrainConfig(**{**MICRO.__dict__, "steps": 1, "subset": 2})
    record = train_diffusion(latents, ef, tmp_path, cfg)
    assert record["train_videos"] == 2 and record["train_ef"] == pytest.approx(list(ef[:2]))
    assert json.loads((tmp_path / "best/model_index.json").read_text())["train_videos"] == 2


def test_from_cache_uses_the_train_rows_and_records_their_metadata(tmp_path):
    from types import SimpleNamespace

    latents, ef = toy_latents(videos=3)
    table = pd.DataFrame({"FileName": ["a", "b", "c"], "Split": ["TRAIN", "VAL", "train"], "EF": ef,
                          "View": "psax", "FPS": 50.0})
    cache = SimpleNamespace(latents=latents, table=table, vae_fingerprint="c" * 64, folder=tmp_path / "cache")
    record = train_diffusion_from_cache(cache, tmp_path / "run", DiffusionTrainConfig(**{**MICRO.__dict__, "steps": 1}))
    assert record["train_videos"] == 2 and record["train_ef"] == pytest.approx([ef[0], ef[2]])
    index = json.loads((tmp_path / "run/best/model_index.json").read_text())
    assert index["vae_fingerprint"] == "c" * 64 and index["view"] == "psax" and index["fps"] == 25.0
    with pytest.raises(EchoAuditError, match=r"has no TEST videos"):
        train_diffusion_from_cache(cache, tmp_path / "x", MICRO, split="test")


@pytest.mark.parametrize(
    "latents, ef, change, match",
    [
        (np.zeros((2, 10, 4, 8)), [50, 50], {}, r"\(V, T, C, h, w\).*\(2, 10, 4, 8\)"),
        (np.zeros((2, 10, 4, 8, 8)), [50], {}, r"one value per video, shape \(2,\); got \(1,\)"),
        (np.zeros((2, 10, 4, 8, 8)), [50, 120], {}, r"\[0, 100\].*120"),
        (np.zeros((2, 5, 4, 8, 8)), [50, 50], {}, r"span 7 frames.*only T = 5"),
        (np.zeros((2, 10, 4, 8, 8)), [50, 50], {"subset": 3}, r"subset must be between 1 and the 2 videos given; got 3"),
        (np.zeros((2, 10, 4, 8, 8)), [50, 50], {"steps": 0}, r"steps must be >= 1; got 0"),
    ],
)
def test_bad_training_input_is_named(tmp_path, latents, ef, change, match):
    with pytest.raises(EchoAuditError, match=match):
        train_diffusion(latents, ef, tmp_path, DiffusionTrainConfig(**{**MICRO.__dict__, **change}))


# ----------------------------------------------------------------------------- pipeline


def micro_pipeline(seed: int = 0) -> EchoVideoPipeline:
    return EchoVideoPipeline(build_unet((32, 32), sample_size=8, num_frames=4, seed=seed).eval(), sampling_scheduler(), num_frames=4)


def test_sampling_is_deterministic_per_seed_and_per_video():
    pipe = micro_pipeline()
    a = pipe(2, ef=50.0, steps=3, generator=torch.Generator().manual_seed(5))
    b = pipe(2, ef=50.0, steps=3, generator=torch.Generator().manual_seed(5))
    c = pipe(2, ef=50.0, steps=3, generator=torch.Generator().manual_seed(6))
    assert a.shape == (2, 4, 4, 8, 8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    # One generator per clip: clip i does not depend on how many are drawn with it.
    two = pipe(2, ef=[40.0, 60.0], steps=3, generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    three = pipe(3, ef=[40.0, 60.0, 20.0], steps=3, generator=[torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    torch.testing.assert_close(two, three[:2], rtol=1e-4, atol=1e-5)


def test_guidance_matches_a_hand_written_cfg_loop():
    pipe = micro_pipeline(seed=3)
    noise = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    got = pipe(1, ef=65.0, steps=2, guidance=3.0, latents=noise, generator=torch.Generator())
    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(2)
    x, ctx = noise.clone(), torch.zeros(1, 1, pipe.unet.config.cross_attention_dim)
    with torch.no_grad():
        for t in sched.timesteps:
            v_null = pipe.unet(x, t, encoder_hidden_states=ctx, added_time_ids=torch.tensor([[EF_NULL]])).sample
            v_ef = pipe.unet(x, t, encoder_hidden_states=ctx, added_time_ids=torch.tensor([[65.0]])).sample
            x = sched.step(v_null + 3.0 * (v_ef - v_null), t, x).prev_sample
    torch.testing.assert_close(got, x, rtol=1e-4, atol=1e-5)
    uncond = pipe(1, ef=None, steps=2, latents=noise, generator=torch.Generator())
    assert not torch.allclose(uncond, got)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, r"n \(number of clips\) must be an integer >= 1; got 0"),
        ({"steps": 0}, r"steps must be an integer >= 1; got 0"),
        ({"guidance": -1.0}, r"guidance must be a finite number >= 0; got -1.0"),
        ({"ef": 150.0}, r"ef must be in \[0, 100\].*150.0"),
        ({"ef": [50.0]}, r"one EF per clip \(2\); got 1 values"),
        ({"num_frames": 0}, r"num_frames must be an integer >= 1; got 0"),
        ({"latents": torch.zeros(2, 4, 4, 14, 14)}, r"latents must have shape \(2, 4, 4, 8, 8\).*got \(2, 4, 4, 14, 14\)"),
        ({"generator": [torch.Generator()] * 3}, r"a list of 2 of them"),
    ],
)
def test_bad_pipeline_arguments_are_named(kwargs, match):
    call = {"n": 2, "ef": 50.0, "steps": 1, "generator": torch.Generator(), **kwargs}
    with pytest.raises(EchoAuditError, match=match):
        micro_pipeline()(call.pop("n"), **call)


def test_from_folder_names_a_folder_that_is_not_a_generator(tmp_path):
    with pytest.raises(CheckpointError, match="no model_index.json"):
        EchoVideoPipeline.from_folder(tmp_path)


# ----------------------------------------------------------------------------- generation


def test_generate_videos_same_seed_same_frames(run, vae):
    out, _, _, ef = run
    a, efs_a = generate_videos(out / "best", vae, n=3, seed=7, steps=2, batch_size=2)
    b, efs_b = generate_videos(out / "best", vae, n=3, seed=7, steps=2, batch_size=3)
    assert a.dtype == np.uint8 and a.shape == (3, 4, 64, 64)
    np.testing.assert_array_equal(efs_a, efs_b)
    assert set(efs_a) <= set(ef)  # drawn from the training EFs
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # batching changes float rounding only
    c, _ = generate_videos(out / "best", vae, n=3, seed=8, steps=2)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1


def test_generate_dataset_writes_a_readable_echonet_set(run, vae, tmp_path):
    out, *_ = run
    seen = []
    root = generate_dataset(out / "best", vae, tmp_path / "syn", n=3, seed=4, steps=2, ef=42.5, guidance=2.0,
                            batch_size=2, progress=lambda f, m: seen.append(f))
    ds = EchoNetDataset.open(root)
    assert ds.names == ["SYN_4_0000", "SYN_4_0001", "SYN_4_0002"]
    assert (ds.table["EF"] == 42.5).all() and (ds.table["Split"] == "TEST").all()
    assert (ds.table["Source"] == "synthetic").all() and (ds.table["FPS"] == 25.0).all()
    assert (ds.table["NumberOfFrames"] == 4).all() and (ds.table["View"] == "a4c").all()
    assert ds.load(0).frames.shape == (4, 64, 64)
    meta = json.loads((root / GENERATOR_JSON).read_text())
    assert meta["seed"] == 4 and meta["steps"] == 2 and meta["guidance"] == 2.0 and meta["ef"] == 42.5
    assert len(meta["checkpoint_sha256"]) == 64
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)


def test_generation_errors_name_the_value(run, vae, tmp_path):
    out, *_ = run
    with pytest.raises(EchoAuditError, match=r"n must be an integer >= 1; got 0"):
        generate_videos(out / "best", vae, n=0, seed=0)
    with pytest.raises(EchoAuditError, match=r"steps must be an integer >= 1; got 0"):
        generate_videos(out / "best", vae, n=1, seed=0, steps=0)
    three = FrameVAE(build_vae((16, 32), latent_channels=3, sample_size=16))
    with pytest.raises(CheckpointError, match="VAE has 3 latent channels but the generator's UNet makes 4"):
        generate_videos(out / "best", three, n=1, seed=0)
    other = FrameVAE(vae.vae, fingerprint="f" * 64)
    pipe = EchoVideoPipeline.from_folder(out / "best")
    pipe.register_to_config(vae_fingerprint="a" * 64)
    with pytest.raises(CheckpointError, match="VAE aaaaaaaaaaaa, but this VAE is ffffffffffff"):
        generate_videos(pipe, other, n=1, seed=0)
    with pytest.raises(EchoAuditError, match="split must be one of TRAIN, VAL, TEST; got 'SYNTH'"):
        generate_dataset(out / "best", vae, tmp_path / "x", n=1, seed=0, split="SYNTH")


# ----------------------------------------------------------------------------- quality


def test_video_statistics_hand_computed():
    frames = np.stack([np.full((12, 12), 0.1 * t) for t in range(4)]).astype(np.float32)
    mask = np.zeros((12, 12), bool)
    mask[2:10, 2:10] = True
    stats = video_statistics(frames, mask)
    assert stats["mean_intensity"] == pytest.approx(0.15)
    assert stats["intensity_std"] == pytest.approx(np.std([0, 0.1, 0.2, 0.3]))
    assert stats["motion_energy"] == pytest.approx(0.1, rel=1e-5)  # blur of a flat frame is flat


def test_sector_mask_fills_the_dark_cavity():
    video = np.zeros((5, 20, 20), np.float32)
    video[:, 3:17, 3:17] = 0.5
    video[:, 8:12, 8:12] = 0.0  # blood pool, black, inside tissue
    mask = sector_mask([video])
    expected = np.zeros((20, 20), bool)
    expected[3:17, 3:17] = True
    np.testing.assert_array_equal(mask, expected)


def _write_set(root, videos, efs, fps=50.0):
    with EchoNetWriter(root) as w:
        for i, (v, e) in enumerate(zip(videos, efs)):
            w.add(f"V{i}", v, fps, ef=e, split="TEST")
    return EchoNetDataset.open(root)


def test_generator_quality_against_known_changes(tmp_path):
    videos, efs = [], []
    for p in range(3):
        f, labels = render_video(sample_anatomy(0, "a4c", p), sample_acquisition(0, "a4c", p, 0), frames=12, size=64)
        videos.append(f)
        efs.append(labels["EF"])
    real = _write_set(tmp_path / "real", videos, efs)
    same = _write_set(tmp_path / "same", videos, efs)
    frozen = _write_set(tmp_path / "frozen", [np.repeat(v[:1], 12, axis=0) for v in videos], efs)
    table = generator_quality(same, real, size=64, ef_model=lambda frames: 50.0)
    assert list(table.columns) == ["metric", "synthetic", "real", "ratio", "synthetic_sd", "real_sd", "n_synthetic", "n_real"]
    assert table["ratio"].to_numpy() == pytest.approx([1.0, 1.0, 1.0, 1.0])
    ef_row = table.set_index("metric").loc["ef_abs_error"]
    assert ef_row["real"] == pytest.approx(np.mean(np.abs(50.0 - np.asarray(efs))), abs=1e-3)
    moved = generator_quality(frozen, real, size=64).set_index("metric")
    assert moved.loc["motion_energy", "synthetic"] < 0.05 * moved.loc["motion_energy", "real"]
    assert moved.loc["mean_intensity", "ratio"] == pytest.approx(1.0, abs=0.1)
    csv = tmp_path / "q.csv"
    moved.to_csv(csv)
    assert pd.read_csv(csv).shape[0] == 3
