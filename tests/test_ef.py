"""EF regressor, its clips, its training loop and its checkpoints, on tiny latent videos.

The "beating" latents below are made to carry their EF: channel 0 holds a disk whose
area shrinks from end-diastole to end-systole by the EF, so a model that learns where
the cavity is can read the EF off the clip, in seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from echoaudit.errors import CheckpointError, DatasetError
from echoaudit.models.ef import EFRegressor, clip_indices, crop_starts, ef_fingerprint, load_ef
from echoaudit.train.ef import EFTrainConfig, EFVideos, batch_clips, finished_run, predict_ef, train_ef

torch.set_num_threads(1)

S = 8  # latent side
MICRO = dict(width=8, temporal_layers=1, clip_frames=8, eval_crops=2, batch_size=8)


def beating(n: int, *, frames: int = 16, fps: float = 25.0, seed: int = 0, split: str = "TRAIN",
            prefix: str = "v") -> EFVideos:
    """n latent videos (frames, 4, S, S) whose channel-0 disk area follows the EF."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S] - (S - 1) / 2
    lat, ef = [], rng.uniform(20, 80, n)
    for e in ef:
        period = rng.uniform(6, 10)  # frames per beat
        phase = rng.uniform(0, 2 * np.pi)
        t = np.arange(frames)
        area = 1 - (e / 100) * 0.5 * (1 - np.cos(2 * np.pi * t / period + phase))  # 1 at ED, 1 - EF at ES
        r = 3.2 * np.sqrt(area)
        x = rng.normal(0, 0.05, (frames, 4, S, S)).astype(np.float32)
        x[:, 0] += (np.hypot(yy, xx)[None] < r[:, None, None]).astype(np.float32) * 2 - 1
        lat.append(x)
    names = np.array([f"{prefix}{i}" for i in range(n)])
    return EFVideos(tuple(lat), ef, np.full(n, fps), names, names.copy(), np.full(n, split), np.full(n, "real"))


# ---------------------------------------------------------------------------------------
# model


def test_forward_shapes_and_percent_scale():
    torch.manual_seed(0)
    m = EFRegressor(width=8, temporal_layers=1, clip_frames=8, ef_mean=55.0, ef_std=10.0).eval()
    x = torch.randn(3, 8, 4, S, S)
    z = m(x)
    assert z.shape == (3,) and z.dtype == torch.float32
    torch.testing.assert_close(m.predict_ef(x), 55.0 + 10.0 * z)
    torch.testing.assert_close(m.to_standard(m.to_percent(z)), z)
    # GroupNorm over each clip: a clip's EF does not depend on the rest of the batch
    torch.testing.assert_close(m(x[:1]), z[:1])
    # any latent grid and clip length (global pooling)
    assert m(torch.randn(2, 5, 4, 14, 14)).shape == (2,)


def test_constant_clip_starts_at_the_mean_ef():
    """No beat, no ejection: the volume path gives 0 % and the head's bias cancels it."""
    m = EFRegressor(width=8, ef_mean=52.0, ef_std=14.0).eval()
    x = torch.zeros(1, 8, 4, S, S)
    assert abs(float(m.predict_ef(x)) - 52.0) < 14.0  # the untrained head adds little


def test_bad_inputs_and_configs_name_what_was_received():
    m = EFRegressor(width=8)
    with pytest.raises(ValueError, match=r"expects latent clips of shape \(B, T, 4, h, w\) .*got \(2, 8, 3, 8, 8\)"):
        m(torch.zeros(2, 8, 3, 8, 8))
    with pytest.raises(ValueError, match="width must be an int from 2 to 1024; got 0"):
        EFRegressor(width=0)
    with pytest.raises(ValueError, match="clip_fps and ef_std must be > 0"):
        EFRegressor(ef_std=0.0)


@pytest.mark.parametrize("n,fps,frames,start,want", [
    (64, 50.0, 4, 0, [0, 2, 4, 6]),  # 50 fps -> 25 fps: every other frame
    (64, 50.0, 4, 1, [1, 3, 5, 7]),
    (10, 25.0, 4, 0, [0, 1, 2, 3]),  # same rate: consecutive frames
    (3, 25.0, 5, 0, [0, 1, 2, 2, 2]),  # too short: the last frame repeats
    (20, 12.5, 4, 0, [0, 1, 1, 2]),  # lower rate: frames repeat (nearest)
])
def test_clip_indices(n, fps, frames, start, want):
    assert clip_indices(n, fps, frames, 25.0, start).tolist() == want


def test_crop_starts_are_evenly_spaced_and_fit():
    assert crop_starts(64, 50.0, 32, 25.0, 3).tolist() == [0, 1]  # the demo cache: 64 frames hold 2 starts
    assert crop_starts(100, 25.0, 32, 25.0, 3).tolist() == [0, 34, 68]
    assert crop_starts(10, 25.0, 32, 25.0, 3).tolist() == [0]  # nothing fits: the start
    with pytest.raises(ValueError, match="frame rate must be a finite number > 0"):
        crop_starts(10, float("nan"), 32, 25.0, 3)


def test_save_load_round_trip_and_fingerprint(tmp_path):
    torch.manual_seed(1)
    m = EFRegressor(width=8, temporal_layers=1, clip_frames=8, ef_mean=48.5, ef_std=12.25).eval()
    m.save_pretrained(tmp_path / "m", safe_serialization=True)
    back = load_ef(tmp_path / "m")
    assert not back.training and back.config.ef_mean == 48.5 and back.config.ef_std == 12.25
    x = torch.randn(2, 8, 4, S, S)
    torch.testing.assert_close(back(x), m(x), rtol=0, atol=0)
    assert len(ef_fingerprint(tmp_path / "m")) == 64


def test_bad_config_or_weights_are_checkpoint_errors(tmp_path):
    from safetensors.torch import load_file, save_file

    EFRegressor(width=8).save_pretrained(tmp_path / "m", safe_serialization=True)
    cfg_path = tmp_path / "m" / "config.json"
    good = json.loads(cfg_path.read_text())
    with pytest.raises(CheckpointError, match="no config.json there"):
        load_ef(tmp_path / "nowhere")
    for key, value, match in (("width", 16, "does not match its config"),
                              ("width", 10**9, "width is 1000000000; it must be an integer from 2 to 1024"),
                              ("ef_std", -1.0, "ef_std is -1.0; it must be a finite number > 0"),
                              ("temporal_layers", "2", "temporal_layers is '2'")):
        cfg_path.write_text(json.dumps({**good, key: value}))
        with pytest.raises(CheckpointError, match=match):
            load_ef(tmp_path / "m")
    cfg_path.write_text('"a/model-to-download"')
    with pytest.raises(CheckpointError):
        load_ef(tmp_path / "m")
    cfg_path.write_text(json.dumps(good))
    (weights,) = (tmp_path / "m").glob("*.safetensors")
    sd = load_file(str(weights))
    del sd["volume_gain"]
    save_file(sd, str(weights))
    with pytest.raises(CheckpointError, match=r"missing_keys: volume_gain"):
        load_ef(tmp_path / "m")
    weights.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_ef(tmp_path / "m")


# ---------------------------------------------------------------------------------------
# data and training


def test_videos_select_split_concat_and_clips():
    a, b = beating(4, prefix="a"), beating(3, frames=10, split="VAL", prefix="b")
    both = EFVideos.concat(a, b)
    assert len(both) == 7 and both.split("VAL").names.tolist() == ["b0", "b1", "b2"]
    assert both.select(["b1", "a0"]).names.tolist() == ["b1", "a0"]
    with pytest.raises(DatasetError, match="not in this set"):
        both.select(["zz"])
    x = batch_clips(both, np.array([0, 5]), np.array([2, 0]), 4, 25.0, mirror=np.array([False, True]))
    assert x.shape == (2, 4, 4, S, S)
    np.testing.assert_array_equal(x[0].numpy(), a.latents[0][2:6])
    np.testing.assert_array_equal(x[1].numpy(), b.latents[1][:4, ..., ::-1])
    with pytest.raises(ValueError, match="one \\(C, h, w\\)"):
        EFVideos.concat(a, EFVideos((np.zeros((4, 4, 6, 6), np.float32),), np.array([50.0]), np.array([25.0]),
                                    *(np.array(["x"]),) * 4))


def test_training_learns_the_ef_and_writes_its_run(tmp_path):
    train, val = beating(32, seed=0), beating(12, seed=1, split="VAL", prefix="w")
    cfg = EFTrainConfig(epochs=6, lr=1e-2, patience=6, **MICRO)
    rec = train_ef(train, val, tmp_path / "run", cfg)
    assert rec["finished"] and rec["epoch"] == 6 and len(rec["history"]) == 6
    assert rec["ef_mean"] == pytest.approx(train.ef.mean()) and rec["n_train"] == 32
    baseline = np.abs(val.ef - train.ef.mean()).mean()  # predicting the training mean
    assert rec["best_val_mae"] < 0.6 * baseline, (rec["best_val_mae"], baseline)
    best = load_ef(tmp_path / "run" / "best")
    pred = predict_ef(best, val, crops=2)
    assert np.abs(pred - val.ef).mean() == pytest.approx(rec["best_val_mae"], rel=1e-4)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["best_epoch"] == rec["best_epoch"] and on_disk["finished"] is True
    assert finished_run(tmp_path / "run")["best_val_mae"] == rec["best_val_mae"]
    assert finished_run(tmp_path / "nothing") is None


def test_resume_continues_as_an_unbroken_run(tmp_path):
    train, val = beating(8, seed=0), beating(4, seed=1, split="VAL", prefix="w")
    cfg = EFTrainConfig(epochs=3, patience=9, **MICRO)
    whole = train_ef(train, val, tmp_path / "whole", cfg)

    def crash(fraction, message):  # killed in epoch 3, after epoch 2 was saved
        if fraction > 2 / 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_ef(train, val, tmp_path / "cut", cfg, progress=crash)
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["epoch"] == 2
    assert finished_run(tmp_path / "cut") is None
    resumed = train_ef(train, val, tmp_path / "cut", cfg)
    assert resumed["epoch"] == 3 and resumed["finished"]
    assert [h["val_mae"] for h in resumed["history"]] == pytest.approx([h["val_mae"] for h in whole["history"]], rel=1e-5)
    with pytest.raises(CheckpointError, match=r"other settings \(lr: saved 0.005, given 0.01\)"):
        train_ef(train, val, tmp_path / "cut", EFTrainConfig(epochs=4, lr=1e-2, patience=9, **MICRO))


def test_training_refuses_what_it_cannot_use(tmp_path):
    v = beating(4)
    with pytest.raises(DatasetError, match="at least 2 training videos; got 1"):
        train_ef(v.take([0]), v, tmp_path / "a", EFTrainConfig(**MICRO))
    with pytest.raises(DatasetError, match="VAL videos for early stopping"):
        train_ef(v, v.take([]), tmp_path / "b", EFTrainConfig(**MICRO))
    with pytest.raises(ValueError, match="EFTrainConfig.mirror must be in \\[0, 1\\]; got 2"):
        EFTrainConfig(mirror=2)


def test_cached_latents_encode_once_and_follow_the_files(tmp_path):
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.data.phantom import PhantomConfig, generate_phantom
    from echoaudit.models.vae import FrameVAE, build_vae
    from echoaudit.train.ef import cached_latents

    data = generate_phantom(tmp_path / "d", PhantomConfig(n_patients=3, videos_per_patient=1, frames=6, size=32))
    ds = EchoNetDataset.open(data)
    vae = FrameVAE(build_vae((8, 8, 8), sample_size=32), fingerprint="vae-a")
    first = cached_latents(ds, vae, tmp_path / "c", size=32)
    assert first.latents.shape == (3, 6, 4, 8, 8) and first.augmented is None
    stamp = (tmp_path / "c" / "latents.npy").stat().st_mtime_ns
    cached_latents(ds, vae, tmp_path / "c", size=32)  # same files, same VAE: reused
    assert (tmp_path / "c" / "latents.npy").stat().st_mtime_ns == stamp
    videos = EFVideos.from_cache(tmp_path / "c", ds.table)
    assert videos.names.tolist() == ds.names and videos.fps.tolist() == [50.0] * 3
    np.testing.assert_array_equal(videos.ef, ds.ef)
    vae.fingerprint = "vae-b"  # another VAE: encoded again
    again = cached_latents(ds, vae, tmp_path / "c", size=32)
    assert again.vae_fingerprint == "vae-b"
    with pytest.raises(DatasetError, match="lacks 1 of the 4 videos"):
        EFVideos.from_cache(tmp_path / "c", __import__("pandas").concat([ds.table, ds.table.head(1).assign(FileName="new")]))
