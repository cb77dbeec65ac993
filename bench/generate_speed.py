"""Time the generator at the demo size: sampling + decoding, and one training step.

Generates 16 videos of 32 frames at 112x112 with 25 DDIM steps and classifier-free
guidance 2.0 (both branches, the default), decoding included, with the generator in
``assets/generators/regular`` when it exists (else an untrained UNet of the demo size:
timing does not depend on the weights) and the VAE in ``assets/vae`` (else an untrained
demo-size VAE). Then times training steps of the demo configuration on random latents.

Wall-clock seconds are the figures that count; process CPU seconds are printed beside
them because on a shared machine the wall clock also measures the neighbours (CPU / threads
is roughly what an idle machine would take). One labelled line per figure, headline last.

    python bench/generate_speed.py            # ~1-3 minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from echoaudit.models.diffusion import EchoVideoPipeline, build_unet, sampling_scheduler  # noqa: E402
from echoaudit.models.vae import FrameVAE, build_vae  # noqa: E402
from echoaudit.train.diffusion import DiffusionTrainConfig, train_diffusion  # noqa: E402

FLOOR_S = 60.0


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, default=Path("assets/generators/regular"))
    ap.add_argument("--vae", type=Path, default=Path("assets/vae"))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=6, help="training steps timed (the first is warm-up)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DiffusionTrainConfig()

    if (args.generator / "model_index.json").is_file():
        pipe, source = EchoVideoPipeline.from_folder(args.generator), str(args.generator)
    else:
        unet = build_unet(cfg.block_out_channels, num_frames=cfg.num_frames, attention_levels=cfg.attention_levels).eval()
        pipe, source = EchoVideoPipeline(unet, sampling_scheduler(), num_frames=cfg.num_frames), "untrained"
    vae = FrameVAE.from_pretrained(args.vae) if (args.vae / "config.json").is_file() else FrameVAE(build_vae())
    params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    print(f"unet: {source}, block_out_channels {tuple(pipe.unet.config.block_out_channels)}, {params:.2f}M params")
    print(f"vae: {args.vae if vae.fingerprint else 'untrained'}, threads: {torch.get_num_threads()}")

    gens = [torch.Generator().manual_seed(i) for i in range(args.n)]
    pipe(1, num_frames=args.frames, ef=50.0, steps=1, generator=torch.Generator().manual_seed(0))  # warm-up
    lat, s_wall, s_cpu = timed(lambda: pipe(args.n, num_frames=args.frames, ef=50.0, steps=args.steps,
                                            guidance=args.guidance, generator=gens))
    frames, d_wall, d_cpu = timed(lambda: vae.decode(lat.flatten(0, 1)))
    assert frames.shape == (args.n * args.frames, 112, 112), frames.shape
    total_wall, total_cpu = s_wall + d_wall, s_cpu + d_cpu
    print(f"sampling {args.n}x{args.frames} frames, {args.steps} steps, guidance {args.guidance}: {s_wall:.1f} s wall ({s_cpu:.1f} s CPU)")
    print(f"decoding {args.n * args.frames} frames: {d_wall:.1f} s wall ({d_cpu:.1f} s CPU)")

    # Training steps of the demo configuration, timed between progress callbacks.
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((8, 64, 4, 14, 14)).astype(np.float16)
    stamps: list[float] = []
    train_cfg = DiffusionTrainConfig(steps=args.train_steps, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as tmp:
        train_diffusion(latents, rng.uniform(20, 80, 8), tmp, train_cfg, progress=lambda f, m: stamps.append(time.perf_counter()))
    step_s = float(np.median(np.diff(stamps))) if len(stamps) > 1 else float("nan")
    print(f"train step (batch {train_cfg.batch_size} clips x {train_cfg.num_frames} frames): {step_s:.2f} s wall "
          f"-> {720 / step_s:.0f} steps in 12 minutes")
    print(f"generate {args.n} videos x {args.frames} frames, {args.steps} steps, decode included: {total_wall:.1f} s wall "
          f"({total_cpu:.1f} s CPU; floor < {FLOOR_S:.0f} s on 2 cores: {'OK' if total_wall < FLOOR_S else 'OVER'})")


if __name__ == "__main__":
    main()
