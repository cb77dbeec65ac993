"""Train the EF regressor on the demo phantom's latents and measure it on real TEST.

Run:  nice -n 19 python bench/ef_utility.py [--latents runs/latents] [--out runs/ef_bench] [--threads 2]

The issue's floor for the real-trained model of the downstream-utility comparison: MAE
<= 5 EF points and R^2 >= 0.7 on real TEST patients, training under 10 minutes on 2 CPU
cores. Prints one labelled line per figure (intervals: percentile bootstrap over TEST
patients); the headline (the floor, met or not) comes last. Exit status 1 if missed.
The run folder is replaced, so every call trains from scratch (no resume).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

MAE_FLOOR, R2_FLOOR, SECONDS_FLOOR = 5.0, 0.7, 600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=Path, default=Path("runs/latents"))
    parser.add_argument("--out", type=Path, default=Path("runs/ef_bench"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from echoaudit.audit.utility import bootstrap_metrics, errors_by_ef_bin
    from echoaudit.fileio import remove_tree
    from echoaudit.latents import LatentCache
    from echoaudit.models.ef import load_ef
    from echoaudit.train.ef import EFTrainConfig, EFVideos, predict_ef, train_ef

    torch.set_num_threads(args.threads)
    cache = LatentCache.load(args.latents)
    videos = EFVideos.from_cache(cache)
    train, val, test = (videos.split(s) for s in ("TRAIN", "VAL", "TEST"))
    cfg = EFTrainConfig(seed=args.seed)
    print(f"data: {args.latents} ({tuple(cache.latents.shape)} latents, VAE {cache.vae_fingerprint[:12]}), "
          f"TRAIN {len(train)} / VAL {len(val)} / TEST {len(test)} videos, "
          f"TEST {len(np.unique(test.patients))} patients")
    print(f"recipe: {cfg}")
    print(f"machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at start")
    remove_tree(args.out)
    t0 = time.perf_counter()
    rec = train_ef(train, val, args.out, cfg)
    wall = time.perf_counter() - t0
    print(f"training: {rec['epoch']} epochs ({'stopped early' if rec['stopped_early'] else 'all'}), best VAL MAE "
          f"{rec['best_val_mae']:.2f} at epoch {rec['best_epoch']}, {sum(h['seconds'] for h in rec['history']) / rec['epoch']:.1f} s/epoch")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"training wall time: {wall:.0f} s")

    pred = predict_ef(load_ef(args.out / "best"), test, crops=cfg.eval_crops)
    est = bootstrap_metrics(test.ef, pred, test.patients, n_boot=args.n_boot, seed=0)
    bins = errors_by_ef_bin(test.ef, pred, test.patients, n_boot=200)
    for r in bins.itertuples():
        if r.n_videos:
            print(f"TEST EF {r.group}: {r.n_videos} videos, MAE {r.mae:.1f} [{r.mae_low:.1f}, {r.mae_high:.1f}], "
                  f"bias {r.bias:+.1f}")
    print(f"TEST bias: {est['bias'].value:+.2f} [{est['bias'].low:+.2f}, {est['bias'].high:+.2f}]")
    print(f"TEST RMSE: {est['rmse'].value:.2f} [{est['rmse'].low:.2f}, {est['rmse'].high:.2f}]")
    print(f"TEST MAE: {est['mae'].value:.2f} [{est['mae'].low:.2f}, {est['mae'].high:.2f}]")
    print(f"TEST R^2: {est['r2'].value:.3f} [{est['r2'].low:.3f}, {est['r2'].high:.3f}] ({est['mae'].rule})")
    ok = est["mae"].value <= MAE_FLOOR and est["r2"].value >= R2_FLOOR and wall <= SECONDS_FLOOR
    print(f"EF regressor on real TEST: MAE {est['mae'].value:.2f} (floor <= {MAE_FLOOR:g}), R^2 {est['r2'].value:.3f} "
          f"(floor >= {R2_FLOOR:g}), trained in {wall:.0f} s (floor <= {SECONDS_FLOOR:.0f}): "
          f"{'floor met' if ok else 'floor MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
