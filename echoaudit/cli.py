"""The ``echoaudit`` command: one thin subcommand per job; each parses its options and
calls the library. Errors a user can cause print one clear line and exit with code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from echoaudit.errors import EchoAuditError

__all__ = ["main"]


def _threads(args) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


# --- data -------------------------------------------------------------------------------

def cmd_phantom(args) -> None:
    from echoaudit.data.phantom import PhantomConfig, generate_phantom

    cfg = PhantomConfig(
        n_patients=args.patients, videos_per_patient=args.videos_per_patient, frames=args.frames,
        fps=args.fps, size=args.size, view=args.view, seed=args.seed,
    )
    root = generate_phantom(args.out, cfg, overwrite=args.overwrite)
    print(f"wrote {cfg.n_patients * cfg.videos_per_patient} videos to {root}")
    if args.montage:
        _montage(root, args.montage, args.montage_videos)


def _montage(root, png, n_videos: int) -> None:
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.data.video import montage_png

    ds = EchoNetDataset.open(root)
    idx = list(range(0, len(ds), max(1, len(ds) // n_videos)))[:n_videos]
    videos = [ds.load(i).frames for i in idx]
    labels = [f"{ds.row(i)['FileName']}  EF {ds.row(i)['EF']:.0f}%" for i in idx]
    montage_png(videos, png, labels=labels)
    print(f"wrote montage {png}")


def cmd_montage(args) -> None:
    _montage(args.data, args.out, args.videos)


# --- models -----------------------------------------------------------------------------

def cmd_train_vae(args) -> None:
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.train.vae import VAETrainConfig, sample_frames, train_vae

    _threads(args)
    ds = EchoNetDataset.open(args.data)
    cfg = VAETrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         eval_every=args.eval_every)
    train = sample_frames(ds.split("TRAIN"), frames_per_video=cfg.frames_per_video, seed=cfg.seed)
    val = sample_frames(ds.split("TEST"), frames_per_video=2, seed=cfg.seed + 1)[:256]
    rec = train_vae(train, val, args.out, cfg)
    print(json.dumps(rec.get("best", {}), indent=2))


def cmd_eval_vae(args) -> None:
    from echoaudit.audit.image_quality import reconstruction_metrics
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.models.vae import FrameVAE
    from echoaudit.train.vae import sample_frames

    _threads(args)
    vae = FrameVAE.from_pretrained(args.vae)
    ds = EchoNetDataset.open(args.data).split(args.split)
    frames = sample_frames(ds, frames_per_video=args.frames_per_video, seed=args.seed)
    recon = vae.decode(vae.encode(frames)).numpy()
    m = reconstruction_metrics(frames, recon)
    print(f"frames: {len(frames)} from {len(ds)} {args.split} videos")
    print(f"raw PSNR: {m['psnr_raw']:.2f} dB")
    print(f"SSIM: {m['ssim']:.3f}")
    print(f"low-passed PSNR (sigma 1.5 px): {m['psnr_lowpass']:.2f} dB")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echoaudit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ph = sub.add_parser("phantom", help="write a phantom echo data set in EchoNet format")
    ph.add_argument("--out", required=True, type=Path)
    ph.add_argument("--patients", type=int, default=125)
    ph.add_argument("--videos-per-patient", type=int, default=4)
    ph.add_argument("--frames", type=int, default=64)
    ph.add_argument("--fps", type=float, default=50.0)
    ph.add_argument("--size", type=int, default=112)
    ph.add_argument("--view", default="a4c", help="a4c, psax or pediatric")
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--overwrite", action="store_true")
    ph.add_argument("--montage", type=Path, help="also write a PNG montage of a few videos")
    ph.add_argument("--montage-videos", type=int, default=6)
    ph.set_defaults(func=cmd_phantom)

    mo = sub.add_parser("montage", help="PNG montage of a few videos of a data set")
    mo.add_argument("--data", required=True, type=Path)
    mo.add_argument("--out", required=True, type=Path)
    mo.add_argument("--videos", type=int, default=6)
    mo.set_defaults(func=cmd_montage)

    tr = sub.add_parser("train", help="train a model").add_subparsers(dest="model", required=True)
    tv = tr.add_parser("vae", help="train the frame VAE")
    tv.add_argument("--data", required=True, type=Path)
    tv.add_argument("--out", required=True, type=Path)
    tv.add_argument("--steps", type=int, default=500)
    tv.add_argument("--batch-size", type=int, default=32)
    tv.add_argument("--lr", type=float, default=1e-3)
    tv.add_argument("--eval-every", type=int, default=100)
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("--threads", type=int, default=0)
    tv.set_defaults(func=cmd_train_vae)

    ev = sub.add_parser("eval", help="measure a model").add_subparsers(dest="model", required=True)
    ee = ev.add_parser("vae", help="reconstruction PSNR (raw, low-passed) and SSIM")
    ee.add_argument("--vae", required=True, type=Path)
    ee.add_argument("--data", required=True, type=Path)
    ee.add_argument("--split", default="TEST")
    ee.add_argument("--frames-per-video", type=int, default=4)
    ee.add_argument("--seed", type=int, default=0)
    ee.add_argument("--threads", type=int, default=0)
    ee.set_defaults(func=cmd_eval_vae)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except EchoAuditError as exc:
        print(f"echoaudit: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"echoaudit: invalid value: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
