"""Model configs that ask for absurd sizes are refused from the config, before anything is
built (echoaudit.models.limits): fast, with a message naming the file, the key and the
value (or the parameter count and the limit), and without a large allocation. The shipped
models still load, and their counts agree with the models built."""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from pathlib import Path

import pytest

from echoaudit.errors import CheckpointError
from echoaudit.models import limits
from echoaudit.models.diffusion import EchoVideoPipeline
from echoaudit.models.reid import load_reid
from echoaudit.models.vae import FrameVAE

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BIG = 2**40

LOADERS = {"vae": FrameVAE.from_pretrained, "reid": load_reid, "generator": EchoVideoPipeline.from_folder}
SOURCES = {"vae": ASSETS / "vae", "reid": ASSETS / "reid", "generator": ASSETS / "generators" / "regular"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak; kB on Linux


def test_the_shipped_models_load_and_their_counts_match():
    vae = FrameVAE.from_pretrained(SOURCES["vae"])
    reid = load_reid(SOURCES["reid"])
    for name in ("regular", "memorizing"):
        pipe = EchoVideoPipeline.from_folder(ASSETS / "generators" / name)
    cfg = json.loads((SOURCES["vae"] / "config.json").read_text())
    assert limits.check_vae_config(SOURCES["vae"] / "config.json", cfg) == sum(p.numel() for p in vae.vae.parameters())
    cfg = json.loads((SOURCES["reid"] / "config.json").read_text())
    assert limits.check_reid_config(SOURCES["reid"] / "config.json", cfg) == sum(p.numel() for p in reid.parameters())
    folder = ASSETS / "generators" / "memorizing"
    configs = {n: json.loads((folder / n).read_text())
               for n in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json")}
    assert limits.check_generator_configs(folder, configs) == sum(p.numel() for p in pipe.unet.parameters())
    # every shipped model is far below its cap (the caps leave room for models from elsewhere)
    assert max(sum(p.numel() for p in m.parameters()) for m in (vae.vae, reid, pipe.unet)) < 2_000_000
    assert min(limits.MAX_MODEL_PARAMETERS.values()) >= 100 * 2_000_000


def test_a_common_external_vae_fits_the_limits():
    """Stable Diffusion's AutoencoderKL (84 M parameters, 3 channels) is within every bound."""
    sd = {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
          "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
          "latent_channels": 4, "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215}
    t0 = time.perf_counter()
    assert 80e6 < limits.check_vae_config(Path("/nowhere/config.json"), sd) < limits.MAX_MODEL_PARAMETERS["vae"]
    assert time.perf_counter() - t0 < 2


# (model, config file, changes, what the message says)
BAD = [
    ("vae", "config.json", {"layers_per_block": BIG}, r"layers_per_block is 1099511627776; it must be an integer "
                                                      r"from 1 to 4 \(MAX_LAYERS_PER_BLOCK\)"),
    ("vae", "config.json", {"layers_per_block": "2"}, r"layers_per_block is '2'; it must be an integer"),
    ("vae", "config.json", {"latent_channels": 2**30}, r"latent_channels is 1073741824; .*MAX_CHANNELS"),
    ("vae", "config.json", {"block_out_channels": [64] * 100_000}, r"block_out_channels is \[64, 64, .*\.\.\.; it must be "
                                                                  r"a list of 1 to 6 integers"),
    ("vae", "config.json", {"down_block_types": ["DownEncoderBlock2D"] * 100_000}, r"down_block_types is .*MAX_LEVELS"),
    ("vae", "config.json", {"block_out_channels": [4096] * 4},
     r"VAE config '.*config\.json' describes a model of 5,7\d\d,\d{3},\d{3} parameters \(block_out_channels \[4096, "
     r".*the limit for a VAE is 200,000,000 \(MAX_MODEL_PARAMETERS\['vae'\]\)"),
    ("vae", "config.json", {"block_out_channels": [512] * 4},
     r"describes a model of 89,\d{3},\d{3} parameters .*but the weights beside it hold 943,989 values"),
    ("vae", "config.json", {"norm_num_groups": 7}, r"does not describe a model that can be built \(ValueError: "),
    ("vae", "config.json", {"scaling_factor": 0}, r"scaling_factor is 0; it must be a finite number other than 0"),
    ("reid", "config.json", {"width": BIG}, r"re-ID config '.*config\.json': width is 1099511627776; it must be an "
                                            r"integer from 1 to 4096 \(MAX_CHANNELS\)"),
    ("reid", "config.json", {"input_size": BIG}, r"input_size is 1099511627776; .*MAX_REID_INPUT_SIZE"),
    ("reid", "config.json", {"in_channels": True}, r"in_channels is True; it must be an integer"),
    ("reid", "config.json", {"width": 4096, "embed_dim": 4096, "head_hidden": 4096},
     r"describes a model of 360,833,025 parameters \(in_channels 4, input_size 14, width 4096, embed_dim 4096, "
     r"head_hidden 4096\); the limit for a re-ID is 200,000,000"),
    ("reid", "config.json", {"width": 1024}, r"19,590,529 parameters .*but the weights beside it hold 118,849 values"),
    ("generator", "unet/config.json", {"layers_per_block": BIG}, r"generator UNet config '.*unet/config\.json': "
                                                                 r"layers_per_block is 1099511627776"),
    ("generator", "unet/config.json", {"transformer_layers_per_block": [[1], [100]]},
     r"transformer_layers_per_block is \[\[1\], \[100\]\]; .*MAX_TRANSFORMER_LAYERS"),
    ("generator", "unet/config.json", {"num_attention_heads": 10**6}, r"num_attention_heads is 1000000"),
    ("generator", "unet/config.json", {"sample_size": 10**6}, r"sample_size is 1000000; .*MAX_LATENT_SIZE"),
    ("generator", "unet/config.json", {"sample_size": None}, r"sample_size is None; it must be an integer"),
    ("generator", "unet/config.json", {"block_out_channels": [4096, 4096]},
     r"describes a model of 6,9\d\d,\d{3},\d{3} parameters .*the limit for a generator UNet is 1,000,000,000 "
     r"\(MAX_MODEL_PARAMETERS\['generator'\]\)"),
    ("generator", "model_index.json", {"num_frames": BIG}, r"generator config '.*model_index\.json': num_frames is "
                                                           r"1099511627776; .*MAX_FRAMES"),
    ("generator", "model_index.json", {"num_frames": 1024, "unet/config.json": {"sample_size": 129}},
     r"generator '[^']*': a default clip of num_frames 1024 x out_channels 4 x sample_size 129\^2 is 68,161,536 "
     r"latent values; the limit is 67,108,864 \(MAX_CLIP_LATENT_ELEMENTS\)"),
    ("generator", "model_index.json", {"fps": -3}, r"fps is -3; it must be a finite number > 0"),
    ("generator", "model_index.json", {"unet": ["antigravity", "Anything"]},
     r"unet is \['antigravity', 'Anything'\]; it must be \[\"diffusers\", \"UNetSpatioTemporalConditionModel\"\]"),
    ("generator", "model_index.json", {"scheduler": ["diffusers", "AutoencoderKL"]},
     r"scheduler is \['diffusers', 'AutoencoderKL'\]; it must be \[\"diffusers\", <a diffusers scheduler class>\]"),
    ("generator", "scheduler/scheduler_config.json", {"num_train_timesteps": BIG},
     r"generator scheduler config .*num_train_timesteps is 1099511627776; .*MAX_TRAIN_TIMESTEPS"),
    ("generator", "scheduler/scheduler_config.json", {"trained_betas": [0.01] * 100_000},
     r"trained_betas is .*null or a list of at most 10000 finite numbers"),
]


@pytest.mark.parametrize("kind, config, changes, message", BAD,
                         ids=[f"{k}-{c.split('/')[0]}-{'-'.join(x for x in ch if '/' not in x)}" for k, c, ch, _ in BAD])
def test_an_absurd_config_is_refused_fast_and_unbuilt(tmp_path, kind, config, changes, message):
    folder = shutil.copytree(SOURCES[kind], tmp_path / kind)
    changes = dict(changes)
    others = {k: changes.pop(k) for k in list(changes) if k.endswith(".json")}  # changes to a second file
    for name, more in [(config, changes), *others.items()]:
        path = folder / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **more}))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    rss = _rss_mb()
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=message):
        LOADERS[kind](folder)
    seconds = time.perf_counter() - t0
    assert seconds < 1.0, f"refused after {seconds:.2f} s"
    assert _rss_mb() - rss < 200  # no model of gigabytes was allocated, not even briefly
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert "antigravity" not in sys.modules


def test_the_meta_count_allocates_nothing_and_draws_no_random_numbers():
    import torch
    from diffusers import AutoencoderKL

    state = torch.get_rng_state()
    rss = _rss_mb()
    n = limits.meta_parameters(lambda: AutoencoderKL(block_out_channels=(4096,) * 4,
                                                     down_block_types=("DownEncoderBlock2D",) * 4,
                                                     up_block_types=("UpDecoderBlock2D",) * 4))
    assert n > 5e9 and _rss_mb() - rss < 200  # 23 GB of float32 if it were allocated
    assert torch.equal(state, torch.get_rng_state())


def test_a_training_run_with_an_absurd_config_is_not_resumed(tmp_path):
    """The trainers' resume paths check their run folder's configs too."""
    from echoaudit.train.diffusion import _load_unet

    unet = shutil.copytree(SOURCES["generator"] / "unet", tmp_path / "unet")
    cfg = json.loads((unet / "config.json").read_text())
    (unet / "config.json").write_text(json.dumps({**cfg, "layers_per_block": BIG}))
    with pytest.raises(CheckpointError, match=r"layers_per_block is 1099511627776"):
        _load_unet(unet)
