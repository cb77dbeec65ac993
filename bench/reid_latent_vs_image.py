"""Re-ID training per epoch: latent space (cached 4x14x14 latents) vs image space (112x112 frames).

Same backbone width, same pairs (same seed), same epochs, one phantom view. Steps:
1. encode the data set into a latent cache (timed and printed, NOT part of the epoch times);
2. train an image-space model: every batch decodes the videos it needs from the AVI files;
3. train a latent-space model: every batch reads the cached, memory-mapped latents.npy.

Per model it prints the mean whole-epoch time from the data set on disk (data + compute +
validation), the compute-only part (forward/backward/step, with the batch already in
memory) and the test ROC AUC (held-out patients) of its best checkpoint. One labelled line
per figure; the end-to-end ratio (image s/epoch / latent s/epoch) comes LAST.

    OMP_NUM_THREADS=2 python bench/reid_latent_vs_image.py --data demo_workspace/data/a4c --vae assets/vae
    OMP_NUM_THREADS=2 python bench/reid_latent_vs_image.py --tiny   # a small phantom + untrained VAE, minutes
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

from echoaudit.data.echonet import EchoNetDataset  # noqa: E402
from echoaudit.latents import encode_dataset  # noqa: E402
from echoaudit.models.reid import load_reid  # noqa: E402
from echoaudit.models.vae import FrameVAE, build_vae  # noqa: E402
from echoaudit.train.reid import ImagePairSource, LatentPairSource, ReIDTrainConfig, train_reid  # noqa: E402
from echoaudit.train.reid_eval import evaluate_reid  # noqa: E402


def make_tiny(work: Path, n_patients: int, frames: int) -> tuple[Path, Path]:
    """A small a4c phantom set and an untrained demo-size VAE under ``work``."""
    from echoaudit.data.phantom import PhantomConfig, generate_phantom

    data = generate_phantom(work / "data", PhantomConfig(n_patients=n_patients, videos_per_patient=2, frames=frames, view="a4c"))
    build_vae().save_pretrained(work / "vae", safe_serialization=True)
    return data, work / "vae"


def summary(record: dict) -> dict[str, float]:
    h = record["history"]
    return {k: float(np.mean([e[k] for e in h])) for k in ("seconds", "data_seconds", "compute_seconds", "val_seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="demo_workspace/data/a4c", help="EchoNet-format phantom view folder")
    ap.add_argument("--vae", default="assets/vae", help="diffusers AutoencoderKL folder")
    ap.add_argument("--tiny", action="store_true", help="ignore --data/--vae: make a small phantom set and an untrained VAE")
    ap.add_argument("--tiny-patients", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=4096, help="training pairs per epoch")
    ap.add_argument("--val-pairs", type=int, default=1024)
    ap.add_argument("--test-pairs", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latents", default=None,
                    help="reuse this latent cache of --data (made with the same --vae) instead of encoding again")
    ap.add_argument("--work", default=None, help="folder for the cache and checkpoints (default: a temporary one)")
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="reid_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run_", dir=work))  # fresh: never resume an old run
    data, vae_dir = make_tiny(run, args.tiny_patients, 32) if args.tiny else (Path(args.data), Path(args.vae))
    dataset = EchoNetDataset.open(data)
    vae = FrameVAE.from_pretrained(vae_dir)
    print(f"data: {data} ({len(dataset)} videos, {dataset.table['PatientID'].nunique()} patients); work folder {run}")

    if args.latents:
        from echoaudit.latents import LatentCache

        cache_dir = Path(args.latents)
        cache = LatentCache.load(cache_dir, expected_vae=vae.fingerprint)
        print(f"encode: reused the cache {cache_dir} ({len(dataset)} videos x {cache.latents.shape[1]} frames)")
    else:
        t0 = time.perf_counter()
        cache_dir = run / "latents"
        cache = encode_dataset(dataset, vae, cache_dir, seed=args.seed)
        print(f"encode: {time.perf_counter() - t0:.1f} s for {len(dataset)} videos x {cache.latents.shape[1]} frames "
              "(once per data set; not part of the epoch times)")

    cfg = ReIDTrainConfig(epochs=args.epochs, pairs_per_epoch=args.pairs, batch_size=args.batch_size, width=args.width,
                          embed_dim=args.embed_dim, val_pairs=args.val_pairs, patience=args.epochs, seed=args.seed)
    sources = {
        "image": ImagePairSource(dataset, size=int(cache.meta["size"]), max_frames=cache.latents.shape[1], seed=args.seed),
        "latent": LatentPairSource.from_cache(cache_dir),
    }
    figures = {}
    for space, source in sources.items():
        record = train_reid(source, run / space, cfg)
        res = evaluate_reid(load_reid(run / space / "best"), source, split="TEST", n_pairs=args.test_pairs, seed=args.seed)
        figures[space] = {**summary(record), "auc": res["auc"], "low": res["auc_low"], "high": res["auc_high"]}
        f = figures[space]
        print(f"{space}: {f['seconds']:.2f} s/epoch (data {f['data_seconds']:.2f} s, compute {f['compute_seconds']:.2f} s, "
              f"validation {f['val_seconds']:.2f} s), AUC {f['auc']:.3f} [{f['low']:.3f}, {f['high']:.3f}] "
              f"(test patients, best epoch {record['best_epoch']}/{record['epoch']})")

    img, lat = figures["image"], figures["latent"]
    print(f"AUC difference (latent - image): {lat['auc'] - img['auc']:+.3f}")
    print(f"compute-only ratio: {img['compute_seconds'] / lat['compute_seconds']:.1f}x")
    print("end-to-end = whole epoch from the data set on disk (data + compute + validation), image / latent")
    print(f"ratio: {img['seconds'] / lat['seconds']:.1f}x")


if __name__ == "__main__":
    main()
