"""Subcommands of downstream utility: ``train ef``, ``eval utility``, ``eval ef-agreement``.

``register(train_sub, eval_sub)`` adds them to the ``echoaudit`` command's existing
``train`` and ``eval`` sub-subparsers (see ``echoaudit/cli.py``); until it is wired there,
``python -m echoaudit.utility_cli train ef ...`` runs them with the same error handling.
Each subcommand parses its options and calls the library (:mod:`echoaudit.train.ef`,
:mod:`echoaudit.downstream`, :mod:`echoaudit.audit.utility`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

__all__ = ["register", "build_parser", "main", "workspace_flagged"]

from echoaudit.utility_workspace import synthetic_videos as _synthetic_videos  # noqa: E402
from echoaudit.utility_workspace import workspace_flagged  # noqa: E402  (kept importable from here)


def _threads(args) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def _finite(obj):
    """NaN / inf -> None, recursively (the project's JSON reader refuses them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return _finite(obj.item())
    return obj


def _write_csv(path: Path, table) -> None:
    from echoaudit.fileio import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _train_config(args, **extra):
    from echoaudit.train.ef import EFTrainConfig

    return EFTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                         width=args.width, clip_frames=args.clip_frames, seed=args.seed, **extra)


def _fmt(est, digits: int = 1) -> str:
    v, lo, hi = (est.get(k) for k in ("value", "low", "high")) if isinstance(est, dict) else (est.value, est.low, est.high)
    if v is None or not math.isfinite(v):
        return "n/a"
    ends = "" if lo is None or not math.isfinite(lo) else f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{v:.{digits}f}{ends}"


# --- latents ----------------------------------------------------------------------------

def _real_videos(dataset, vae, size, latents, default_folder):
    from echoaudit.utility_workspace import real_videos

    return real_videos(dataset, vae, size, latents, default_folder)


# --- train ef -----------------------------------------------------------------------------

def cmd_train_ef(args) -> None:
    from echoaudit.audit.utility import bootstrap_metrics
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.fileio import write_json
    from echoaudit.models.ef import load_ef
    from echoaudit.models.vae import FrameVAE
    from echoaudit.train.ef import predict_ef, train_ef

    _threads(args)
    ds = EchoNetDataset.open(args.data)
    vae = FrameVAE.from_pretrained(args.vae) if args.vae else None
    videos = _real_videos(ds, vae, args.size, args.latents, args.out / "latents")
    train = videos if args.train_split.upper() == "ALL" else videos.split(args.train_split)
    cfg = _train_config(args)
    rec = train_ef(train, videos.split("VAL"), args.out, cfg)
    print(f"best validation MAE {rec['best_val_mae']:.2f} EF points at epoch {rec['best_epoch']} "
          f"({rec['epoch']} epochs, {rec['seconds']:.0f} s; {len(train)} training videos); model in {args.out / 'best'}")
    test = videos.split("TEST")
    if len(test):
        pred = predict_ef(load_ef(args.out / "best"), test, crops=cfg.eval_crops)
        est = bootstrap_metrics(test.ef, pred, test.patients, n_boot=args.n_boot, seed=0)
        for key, name in (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R^2")):
            print(f"TEST {name}: {_fmt(est[key], 3 if key == 'r2' else 2)}")
        print(f"  ({est['mae'].rule}; {len(test)} TEST videos)")
        write_json(args.out / "test_metrics.json", _finite({k: e.to_dict() for k, e in est.items()}))


# --- eval utility -------------------------------------------------------------------------

def _print_table(table) -> None:
    print(f"{'training set':40s} {'videos':>6s}  {'MAE [95 % CI]':20s} {'RMSE [95 % CI]':20s} {'R^2 [95 % CI]':22s} "
          f"{'seed SD (MAE)':>13s}  {'MAE vs (a)':>20s}")
    for r in table.itertuples():
        if not r.seeds:
            print(f"{r.label:40s} {r.n_train:6d}  {r.note}")
            continue

        def ci(m, d, r=r):
            return _fmt({"value": getattr(r, m), "low": getattr(r, f"{m}_low"), "high": getattr(r, f"{m}_high")}, d)

        sd = r.mae_seed_sd
        diff = _fmt({"value": r.mae_vs_reference, "low": r.mae_vs_reference_low, "high": r.mae_vs_reference_high})
        print(f"{r.label:40s} {r.n_train:6d}  {ci('mae', 1):20s} {ci('rmse', 1):20s} {ci('r2', 2):22s} "
              f"{'n/a' if not math.isfinite(sd) else f'{sd:.2f}':>13s}  {diff if r.arm != 'real' else '':>20s}")


def _default_out(args, ws) -> Path:
    """``--out``, else the workspace's standard place ``WS/utility/<set>/`` (where the
    Utility page and the report read the results)."""
    from echoaudit.utility_view import utility_folder

    return args.out if args.out is not None else utility_folder(ws.root, args.set)


def cmd_eval_utility(args) -> None:
    from echoaudit.utility_workspace import run_workspace_utility
    from echoaudit.workspace import Workspace

    _threads(args)
    ws = Workspace(args.workspace)
    ws.synthetic(args.set)  # an unknown set: one clear line before any work
    args.out = _default_out(args, ws)
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    res, _, names, flagged, flag_source = run_workspace_utility(
        ws, args.set, out=args.out, seeds=seeds, train=_train_config(args), latents=args.latents, flags=args.flags,
        n_boot=args.n_boot)
    t = res.record["test"]
    print(f"== EF utility of synthetic set {args.set!r}: an EF model trained on each set, tested on {t['videos']} real "
          f"TEST videos ({t['patients']} patients); {len(seeds)} seed(s) each; {len(flagged)} flagged videos "
          f"left out of (c) ({flag_source})")
    _print_table(res.table)
    print(res.sentence)
    if res.agreement:
        print(f"EF agreement of the generator: {res.agreement['sentence']}")
    print(f"wrote {', '.join(names)} to {args.out}; recorded in the workspace manifest")


def cmd_eval_ef_agreement(args) -> None:
    import pandas as pd

    from echoaudit.audit.utility import ef_agreement
    from echoaudit.downstream import train_or_reuse
    from echoaudit.fileio import write_json
    from echoaudit.models.ef import load_ef
    from echoaudit.train.ef import EFTrainConfig, predict_ef
    from echoaudit.workspace import Workspace

    _threads(args)
    ws = Workspace(args.workspace)
    ws.synthetic(args.set)
    args.out = _default_out(args, ws)
    model_dir = args.ef_model
    if model_dir is None:  # a real-trained model of our own, reused on the next call
        real = _real_videos(ws.dataset, ws.vae, ws.size, args.latents, args.out / "latents" / "real")
        train_or_reuse(real.split("TRAIN"), real.split("VAL"), args.out / "model", _train_config(args))
        model_dir = args.out / "model" / "best"
    model = load_ef(model_dir)
    synthetic = _synthetic_videos(ws, args.set, args.out)
    pred = predict_ef(model, synthetic, crops=EFTrainConfig().eval_crops)
    agreement = ef_agreement(synthetic.ef, pred, n_boot=args.n_boot, seed=0)
    print(f"== EF agreement of synthetic set {args.set!r} ({len(synthetic)} videos; model {model_dir})")
    for key, name in (("mae", "MAE"), ("bias", "bias"), ("pearson_r", "Pearson r")):
        print(f"{name}: {_fmt(agreement[key], 2)}")
    print(agreement["sentence"])
    write_json(args.out / "ef_agreement.json", _finite({"workspace": str(ws.root), "set": args.set, "model": str(model_dir),
                                                        **agreement}))
    _write_csv(args.out / "ef_agreement.csv", pd.DataFrame({"FileName": synthetic.names, "EF_requested": synthetic.ef,
                                                           "EF_predicted": pred}))
    print(f"wrote ef_agreement.json, ef_agreement.csv to {args.out}")


# --- parsers --------------------------------------------------------------------------------

def _recipe(p: argparse.ArgumentParser, epochs: int = 30) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--patience", type=int, default=8, help="epochs without a better validation MAE before stopping")
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--clip-frames", type=int, default=32, help="latent frames per clip, at 25 fps")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the intervals")
    p.add_argument("--threads", type=int, default=0)


def register(train_sub, eval_sub) -> None:
    """Add ``train ef`` to ``train_sub`` and ``eval utility``, ``eval ef-agreement`` to
    ``eval_sub`` (the ``add_subparsers()`` objects of the ``train`` and ``eval`` commands)."""
    te = train_sub.add_parser("ef", help="train the EF regressor on latent videos")
    te.add_argument("--data", required=True, type=Path, help="EchoNet-format folder (FileList.csv decides EF and splits)")
    te.add_argument("--out", required=True, type=Path)
    te.add_argument("--latents", type=Path, help="latent cache of --data (made with `echoaudit encode`); encoded into "
                                                 "this folder with --vae when it holds none (default: OUT/latents)")
    te.add_argument("--vae", type=Path, help="VAE folder, to encode --data when there is no cache")
    te.add_argument("--size", type=int, default=None, help="frame side the VAE takes (default 112; a cache's own)")
    te.add_argument("--train-split", default="TRAIN", help="split to train on (TRAIN; ALL for every video)")
    te.add_argument("--seed", type=int, default=0)
    _recipe(te)
    te.set_defaults(func=cmd_train_ef)

    eu = eval_sub.add_parser("utility", help="EF model trained on real, synthetic, filtered synthetic, a random "
                                             "subset and real + synthetic, each tested on real TEST patients")
    eu.add_argument("--workspace", required=True, type=Path)
    eu.add_argument("--set", required=True, help="the synthetic set")
    eu.add_argument("--out", type=Path, help="folder for utility.json/.csv, the runs and latent caches (default: "
                                             "WORKSPACE/utility/SET, where the Utility page and the report read them)")
    eu.add_argument("--seeds", type=int, default=3, help="training seeds per set")
    eu.add_argument("--seed", type=int, default=0, help="first seed")
    eu.add_argument("--latents", type=Path, help="latent cache of the workspace's data set (default: encoded into OUT)")
    eu.add_argument("--flags", type=Path, help="CSV of synthetic videos to leave out of set (c) (default: the "
                                               "audit's <set>_flags.csv, or the workspace's threshold)")
    _recipe(eu)
    eu.set_defaults(func=cmd_eval_utility)

    ea = eval_sub.add_parser("ef-agreement", help="a real-trained EF model's EF of each generated video vs the EF "
                                                  "it was generated for")
    ea.add_argument("--workspace", required=True, type=Path)
    ea.add_argument("--set", required=True, help="the synthetic set")
    ea.add_argument("--out", type=Path, help="folder for ef_agreement.json/.csv (default: WORKSPACE/utility/SET)")
    # not --model: the eval command's sub-subparsers keep their name in args.model
    ea.add_argument("--ef-model", type=Path, help="an EF model folder trained on real videos (default: train one into "
                                                  "OUT/model)")
    ea.add_argument("--latents", type=Path, help="latent cache of the workspace's data set (for training a model)")
    ea.add_argument("--seed", type=int, default=0)
    _recipe(ea)
    ea.set_defaults(func=cmd_eval_ef_agreement)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only these subcommands, under ``train`` and ``eval`` as in ``echoaudit``."""
    p = argparse.ArgumentParser(prog="python -m echoaudit.utility_cli", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model").add_subparsers(dest="model", required=True)
    ev = sub.add_parser("eval", help="measure a model").add_subparsers(dest="model", required=True)
    register(tr, ev)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run these subcommands through the project's own entry point (same errors, same exit codes)."""
    from echoaudit.cli import main as echoaudit_main

    build_parser().parse_args(argv)  # only this module's subcommands
    return echoaudit_main(argv)


if __name__ == "__main__":
    sys.exit(main())
