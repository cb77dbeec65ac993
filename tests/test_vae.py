import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from echoaudit.audit.image_quality import box_blur, lowpass, psnr, reconstruction_metrics
from echoaudit.errors import CheckpointError
from echoaudit.models.vae import FrameVAE, build_vae
from echoaudit.train.vae import VAETrainConfig, train_vae


def _frames(n=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([np.clip(0.5 + 0.4 * np.sin(6 * x + k) * np.cos(4 * y) + 0.02 * rng.standard_normal((size, size)), 0, 1)
                     for k in range(n)]).astype(np.float32)


def test_shapes_and_8x_downsampling():
    vae = FrameVAE(build_vae((8, 8, 8, 8), sample_size=32))
    z = vae.encode(_frames())
    assert z.shape == (8, 4, 4, 4) and vae.downsample == 8 and vae.latent_shape(112) == (4, 14, 14)
    x = vae.decode(z)
    assert x.shape == (8, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        vae.encode(np.zeros((2, 1, 32, 32), np.float32))


def test_three_channel_vae_gets_gray_repeated(tmp_path):
    torch.manual_seed(0)
    rgb = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), norm_num_groups=4,
                        latent_channels=4)
    rgb.save_pretrained(tmp_path / "rgb")
    vae = FrameVAE.from_pretrained(tmp_path / "rgb")
    x = _frames(2, 16)
    z = vae.encode(x)
    manual = rgb.encode(torch.from_numpy(x)[:, None].repeat(1, 3, 1, 1) * 2 - 1).latent_dist.mean
    assert torch.allclose(z, manual * vae.scaling_factor, atol=1e-5)
    assert vae.decode(z).shape == (2, 16, 16)


def test_config_that_does_not_match_weights_is_refused(tmp_path):
    build_vae((8, 8, 8, 8), sample_size=32).save_pretrained(tmp_path / "v")
    cfg = json.loads((tmp_path / "v" / "config.json").read_text())
    cfg["block_out_channels"] = [8, 16, 16, 16]
    (tmp_path / "v" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match its config"):
        FrameVAE.from_pretrained(tmp_path / "v")
    with pytest.raises(CheckpointError, match="no config.json"):
        FrameVAE.from_pretrained(tmp_path / "missing")


def test_training_improves_resumes_and_sets_scaling(tmp_path):
    x = np.concatenate([_frames(16, 32, s) for s in range(4)])
    cfg = VAETrainConfig(steps=12, batch_size=8, lr=2e-3, eval_every=6, block_out_channels=(8, 8, 8, 8), crop=16)
    rec = train_vae(x[:48], x[48:], tmp_path / "run", cfg)
    hist = rec["history"]
    assert hist[-1]["psnr_lowpass"] > hist[0]["psnr_lowpass"] - 0.5
    assert rec["step"] == 12 and (tmp_path / "run" / "best" / "config.json").exists()
    vae = FrameVAE.from_pretrained(tmp_path / "run" / "best")
    z = vae.encode(x[:32])
    assert 0.5 < float(z.std()) < 2.0  # the scaling factor brings latents near unit variance
    # Resume: a longer run continues from step 12 instead of starting over.
    rec2 = train_vae(x[:48], x[48:], tmp_path / "run", VAETrainConfig(**{**cfg.__dict__, "steps": 14}))
    assert rec2["step"] == 14 and rec2["history"][0]["step"] == 6


def test_quality_metrics_against_hand_values():
    a = np.zeros((1, 8, 8))
    b = a + 0.1
    assert psnr(a, b) == pytest.approx(20.0)
    m = reconstruction_metrics(a + 0.5, a + 0.5)
    assert m["ssim"] == pytest.approx(1.0)
    assert lowpass(np.ones((2, 8, 8))).mean() == pytest.approx(1.0)
    assert box_blur(np.ones((1, 5, 5))).mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))


def test_a_renamed_tensor_is_refused_not_loaded_as_random_weights(tmp_path):
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    from echoaudit.errors import CheckpointError

    folder = tmp_path / "vae"
    shutil.copytree(Path(__file__).resolve().parents[1] / "assets" / "vae", folder)
    weights = next(folder.glob("*.safetensors"))
    tensors = load_file(weights)
    key = sorted(tensors)[0]
    tensors["renamed." + key] = tensors.pop(key)
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match=r"missing_keys: .*" + key.replace(".", r"\.")):
        FrameVAE.from_pretrained(folder)
