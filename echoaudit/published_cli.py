"""``echoaudit published-scores --reid DIR --latents DIR --synthetic-latents PATH --out FILE``:
the published EchoNet-Synthetic privacy filter (``echosyn/privacy/apply.py``) as a mode
(:mod:`echoaudit.published_scorer`): first frames, Pearson correlation of the 128 sigmoid
features, ``tau`` = the 95th percentile over training items of each one's best
correlation with a held-out item, flagged when ``score >= tau``; writes
``privacy_scores.csv`` (``real_path, tau, synth_path, img_idx``; ``tau`` = each sample's
own score) and prints tau and the number flagged.

``register(sub)`` adds the command to the ``echoaudit`` command's subparsers (see
``echoaudit/cli.py``); until it is wired there, ``python -m echoaudit.published_cli
published-scores ...`` runs it with the same messages and exit codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


__all__ = ["cmd_published_scores", "main", "register"]


def cmd_published_scores(args) -> None:
    from echoaudit.published_scorer import run_published

    res = run_published(args.reid, args.latents, args.synthetic_latents, args.out, percentile=args.percentile,
                        train_split=args.train_split, heldout_split=args.heldout_split)
    info = {**res.summary(), "out": str(args.out)}
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(f"published filter (EchoNet-Synthetic apply.py): tau = {res.tau:.6f} (Pearson correlation, "
              f"{res.percentile:g}th percentile over {res.n_train} training items' best match among "
              f"{res.n_heldout} held-out)")
        print(f"flagged {info['n_flagged']} of {info['n_synthetic']} synthetic samples (score >= tau); "
              f"scores written to {args.out}")


def register(sub) -> None:
    """Add ``published-scores`` to ``sub`` (the ``add_subparsers()`` object of ``echoaudit``)."""
    ps = sub.add_parser("published-scores", help="the published EchoNet-Synthetic privacy filter: first frames, "
                                                 "Pearson correlation, their tau, their privacy_scores.csv")
    ps.add_argument("--reid", required=True, type=Path, help="a published re-ID folder (config.json + "
                                                             "<name>_best_network.pth)")
    ps.add_argument("--latents", required=True, type=Path, help="the real latents: a published folder (FileList.csv + "
                                                                "Latents/) or a latent cache")
    ps.add_argument("--synthetic-latents", required=True, type=Path,
                    help="the synthetic latents: a folder of .pt files (one image or video each), a latent cache, "
                         "or a .npy array (S, T, C, h, w) / (S, C, h, w)")
    ps.add_argument("--out", required=True, type=Path, help="the privacy_scores.csv to write")
    ps.add_argument("--percentile", type=float, default=95.0, help="tau's percentile (95 as published)")
    ps.add_argument("--train-split", default="TRAIN", help="the split of the training items (TRAIN)")
    ps.add_argument("--heldout-split", default="TEST", help="the split of the held-out items (TEST, as published)")
    ps.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ps.set_defaults(func=cmd_published_scores)


def main(argv: list[str] | None = None) -> int:
    """Run ``published-scores`` through the ``echoaudit`` command (same errors, exit code 2)."""
    from echoaudit.cli import main as echoaudit_main

    return echoaudit_main(argv)


if __name__ == "__main__":
    sys.exit(main())
