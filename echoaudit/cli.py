"""The ``echoaudit`` command: one thin subcommand per job; each parses its options and
calls the library. Errors a user can cause print one clear line and exit with code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from echoaudit.errors import EchoAuditError

__all__ = ["main"]

RAY_HELP = ("run the heavy stages as Ray Data jobs: 'auto' (the cluster this machine is in, else a local one), "
            "'local', or a cluster address; needs the optional extra (pip install -e '.[ray]')")


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
    root = generate_phantom(args.out, cfg, overwrite=args.overwrite, workers=args.workers)
    print(f"wrote {cfg.n_patients * cfg.videos_per_patient} videos to {root}")
    if args.montage:
        _montage(root, args.montage, args.montage_videos)


def _open_data(path, args):
    """The data set at ``path``; with ``--skip-missing`` the rows of missing or unreadable
    videos are left out and listed (on stderr) instead of stopping the command."""
    from echoaudit.data.echonet import EchoNetDataset

    skip = bool(getattr(args, "skip_missing", False))
    ds = EchoNetDataset.open(path, on_missing="skip" if skip else "error")
    if skip and len(ds.skipped):
        print(f"skipped {len(ds.skipped)} listed videos of {path} (--skip-missing):", file=sys.stderr)
        for r in ds.skipped.itertuples():
            print(f"  {r.FileName}: {r.reason}", file=sys.stderr)
    return ds


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
    from echoaudit.models.vae import FrameVAE
    from echoaudit.train.vae import sample_frames

    _threads(args)
    vae = FrameVAE.from_pretrained(args.vae)
    ds = _open_data(args.data, args).split(args.split)
    frames = sample_frames(ds, frames_per_video=args.frames_per_video, seed=args.seed)
    recon = vae.decode(vae.encode(frames)).numpy()
    m = reconstruction_metrics(frames, recon)
    print(f"frames: {len(frames)} from {len(ds)} {args.split} videos")
    print(f"raw PSNR: {m['psnr_raw']:.2f} dB")
    print(f"SSIM: {m['ssim']:.3f}")
    print(f"low-passed PSNR (sigma 1.5 px): {m['psnr_lowpass']:.2f} dB")


def cmd_train_reid(args) -> None:
    from echoaudit.train.reid import ImagePairSource, LatentPairSource, ReIDTrainConfig, train_reid

    _threads(args)
    cfg = ReIDTrainConfig(epochs=args.epochs, pairs_per_epoch=args.pairs, batch_size=args.batch_size, lr=args.lr,
                          width=args.width, embed_dim=args.embed_dim, patience=args.patience, seed=args.seed,
                          augmented_fraction=args.augmented_fraction, copy_fraction=args.copy_fraction,
                          hard_fraction=args.hard_fraction, mirror_invariant=args.mirror_invariant)
    if args.space == "latent":
        if args.latents is None:
            raise ValueError("--space latent reads a latent cache: give --latents DIR (make one with `echoaudit encode`)")
        source = LatentPairSource.from_cache(args.latents)
    else:
        from echoaudit.data.echonet import EchoNetDataset

        if args.data is None:
            raise ValueError("--space image decodes videos: give --data DIR")
        source = ImagePairSource(EchoNetDataset.open(args.data), size=args.size, seed=args.seed)
    rec = train_reid(source, args.out, cfg)
    print(f"best validation AUC {rec['best_auc']:.4f} at epoch {rec['best_epoch']} ({rec['seconds']:.0f} s)")


def cmd_eval_reid(args) -> None:
    from echoaudit.train.reid_eval import run_eval

    _threads(args)
    lat_models = dict(x.split("=", 1) for x in args.latent_model)
    lat_sources = dict(x.split("=", 1) for x in args.latents)
    img_models = dict(x.split("=", 1) for x in args.image_model) or None
    img_sources = dict(x.split("=", 1) for x in args.data) or None
    paths = run_eval(args.out, lat_models, lat_sources, img_models, img_sources, n_pairs=args.pairs, seed=args.seed)
    import pandas as pd

    for name, path in paths.items():
        if str(path).endswith(".csv"):
            print(f"== {name} space: train view (rows) x test view (columns) AUC")
            print(pd.read_csv(path, index_col=0).round(4).to_string())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


def cmd_train_diffusion(args) -> None:
    from echoaudit.latents import LatentCache
    from echoaudit.train.diffusion import DiffusionTrainConfig, train_diffusion_from_cache

    _threads(args)
    cfg = DiffusionTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, num_frames=args.num_frames,
                               frame_stride=args.frame_stride, subset=args.subset, seed=args.seed,
                               checkpoint_every=args.checkpoint_every)
    rec = train_diffusion_from_cache(LatentCache.load(args.latents), args.out, cfg)
    print(f"trained {rec.get('step', cfg.steps)} steps on {rec.get('train_videos', '?')} videos; pipeline in {args.out}/best")


def cmd_generate(args) -> None:
    from echoaudit.generate import generate_dataset
    from echoaudit.models.vae import FrameVAE

    _threads(args)
    root = generate_dataset(args.generator, FrameVAE.from_pretrained(args.vae), args.out, n=args.n, seed=args.seed,
                            steps=args.steps, ef=args.ef, guidance=args.guidance, num_frames=args.frames,
                            overwrite=args.overwrite, conditioning=args.conditioning)
    print(f"wrote {args.n} synthetic videos to {root}")


def cmd_eval_generator(args) -> None:
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.fileio import atomic_path
    from echoaudit.generate import generator_quality

    real = EchoNetDataset.open(args.real)
    if args.split:
        real = real.split(args.split)
    rows = []
    for path in args.synthetic:
        df = generator_quality(EchoNetDataset.open(path), real, max_videos=args.max_videos)
        rows.append(df.assign(synthetic_set=str(path)))
        print(f"== {path}")
        print(df[["metric", "synthetic", "real", "ratio"]].round(4).to_string(index=False))
    import pandas as pd

    out = pd.concat(rows, ignore_index=True)
    with atomic_path(args.out) as tmp:
        out.to_csv(tmp, index=False)
    print(f"wrote {args.out}")


def cmd_assets(args) -> None:
    from echoaudit.assets import export_demo_assets, export_reid

    if args.only == "reid":
        print(f"wrote {args.out}/reid: {export_reid(args.runs, args.out)['summary']}")
        return
    spec = export_demo_assets(args.runs, args.out)
    print(f"wrote {args.out}/demo.json: " + ", ".join(f"{k}={v}" for k, v in spec.items() if isinstance(v, str)))


def cmd_index(args) -> None:
    from echoaudit.build import _data_fingerprint, embed_video_frames
    from echoaudit.engine import build_training_index
    from echoaudit.fileio import model_fingerprint
    from echoaudit.index import IndexConfig
    from echoaudit.models.reid import load_reid
    from echoaudit.models.vae import FrameVAE

    _threads(args)
    ds = _open_data(args.data, args).split(args.split)
    vae, reid = FrameVAE.from_pretrained(args.vae), load_reid(args.reid)
    fingerprint = {"vae": model_fingerprint(args.vae), "reid": model_fingerprint(args.reid), "data": _data_fingerprint(ds),
                   "index_stride": args.stride, "size": args.size}
    index, _ = build_training_index(
        ds, args.out, fingerprint=fingerprint, index_stride=args.stride, config=IndexConfig(kind=args.kind),
        embed_video=lambda i: embed_video_frames(vae, reid, ds.load(i, size=args.size).frames[:: args.stride]))
    print(f"indexed {index.ntotal} frames of {len(ds)} {args.split} videos ({index.kind}) in {args.out}")


def cmd_query(args) -> None:
    from echoaudit.data.video import load_video
    from echoaudit.workspace import Workspace

    _threads(args)
    from echoaudit.audit.scale import to_logit

    ws = Workspace(args.workspace)
    cal = ws.calibration(args.percentile)
    thr = cal.threshold
    print(f"threshold {to_logit(thr.value):.2f} re-ID logit (probability {thr.value:.6f}): {cal.sentence()}")
    for path in args.videos:
        video = load_video(path, size=ws.size)
        res = ws.query(video.frames, name=str(path), fps=video.fps)  # on the clips the threshold was set on
        best = res.best
        verdict = "MEMORIZED" if best["score"] >= thr.value else "not memorized"
        print(f"== {path}: {verdict} (best re-ID logit {to_logit(best['score']):.2f}, probability {best['score']:.6f}: "
              f"{best['train_video']}, patient {best['train_patient']})")
        top = res.per_train.head(args.top)
        print(top.assign(logit=to_logit(top["score"].to_numpy()), logit_robust=to_logit(top["score_robust"].to_numpy()))[
            ["train_video", "train_patient", "logit", "score", "logit_robust"]].to_string(index=False))


# --- workspace, audit -------------------------------------------------------------------

def cmd_encode(args) -> None:
    from echoaudit.latents import encode_dataset
    from echoaudit.models.vae import FrameVAE

    _threads(args)
    cache = encode_dataset(_open_data(args.data, args), FrameVAE.from_pretrained(args.vae), args.out,
                           frames=args.frames, seed=args.seed, augment=args.copies > 0,
                           augment_copies=max(1, args.copies), augment_stride=args.copy_stride)
    print(f"wrote latents {tuple(cache.latents.shape)} to {args.out}")


def cmd_workspace_create(args) -> None:
    from echoaudit.build import BuildConfig, create_workspace
    from echoaudit.engine import EngineConfig

    _threads(args)
    bad = [g for g in args.generator if "=" not in g or not g.split("=", 1)[0] or not g.split("=", 1)[1]]
    if bad:
        raise EchoAuditError(f"--generator takes NAME=FOLDER; got {bad[0]!r}")
    gens = dict(g.split("=", 1) for g in args.generator)
    bad = [c for c in args.conditioning if "=" not in c or not c.split("=", 1)[0] or not c.split("=", 1)[1]]
    if bad:
        raise EchoAuditError(f"--conditioning takes NAME=FOLDER; got {bad[0]!r}")
    conditioning = dict(c.split("=", 1) for c in args.conditioning)
    cfg = BuildConfig(n_synthetic=args.n_synthetic, steps=args.steps, seed=args.seed,
                      engine=EngineConfig(frame_stride=args.frame_stride, index_stride=args.index_stride, k=args.k,
                                          size=args.size))
    _open_data(args.data, args)  # the data set's problems (or, --skip-missing, the videos left out) first
    ws = create_workspace(args.workspace, data=args.data, vae=args.vae, reid=args.reid, generators=gens, cfg=cfg,
                          on_missing="skip" if args.skip_missing else "error", conditioning=conditioning,
                          latents=args.latents, ray=args.ray)
    print(f"workspace ready: {ws.root} ({ws.manifest['build']['seconds']} s)")


def cmd_demo(args) -> None:
    from echoaudit.demo import build_demo_workspace

    if getattr(args, "threads", None):
        _threads(args)  # imports torch: only when asked, so the build takes its lock at once
    ws = build_demo_workspace(args.workspace, assets=args.assets, rebuild=args.rebuild)
    print(f"demo workspace ready: {ws.root}")


def cmd_audit(args) -> None:
    import pandas as pd

    from echoaudit.audit.summary import audit_summary
    from echoaudit.build import add_synthetic_set
    from echoaudit.fileio import write_json
    from echoaudit.workspace import Workspace

    _threads(args)
    ws = Workspace(args.workspace)
    names = [args.name] if args.name else ws.synthetic_names
    if args.synthetic:
        if not args.name:
            raise ValueError("--synthetic needs --name for the new set")
        add_synthetic_set(ws, args.name, args.synthetic, ray=args.ray)
        ws = Workspace(args.workspace)
    out_dir = ws.root / "audit"
    for name in names:
        syn = ws.synthetic(name)
        summary = audit_summary(ws.heldout_scores, ws.synthetic_scores(name), train_videos=ws.train.names,
                                train_patients=list(ws.train.patients), heldout_videos=ws.heldout.names,
                                heldout_patients=list(ws.heldout.patients), synthetic_videos=syn.names,
                                split=ws.calibration_split, clip=ws.clip_spec,
                                split_seed=int(ws.manifest.get("build", {}).get("seed", 0)),
                                percentile=args.percentile, rule=args.rule, score_column=args.score,
                                roc=ws.reid_roc, n_boot=args.n_boot, embeddings=_video_embeddings(ws, name))
        from echoaudit.audit.privacy import flag_videos
        from echoaudit.fileio import atomic_path

        scores = ws.synthetic_scores(name)
        flags = flag_videos(scores.assign(score=scores[args.score])[["query", "train_video", "train_patient", "score"]],
                            summary["threshold"]["value"], queries=syn.names)
        with atomic_path(out_dir / f"{name}_flags.csv") as tmp:
            flags.to_csv(tmp, index=False)
        from echoaudit.review.view import review_view

        rev = review_view(ws, name, summary["threshold"]["value"], score_column=args.score)
        summary["review"] = {"counts": rev["counts"], "sentence": rev["sentence"],
                             "release": rev["release"].videos, "release_sentence": rev["release_sentence"]}
        write_json(out_dir / f"{name}_summary.json", summary)
        with atomic_path(out_dir / f"{name}_release.csv") as tmp:
            pd.DataFrame({"video": rev["release"].videos}).to_csv(tmp, index=False)
        _print_summary(name, summary)
        print(f"  reviewer decisions: {rev['sentence']}")
        if len(rev["current"]):
            cur = rev["current"]
            for r in cur.itertuples():
                print(f"    {r.synthetic_video} vs {r.train_video}: {r.verdict} by {r.reviewer} "
                      f"at {r.decided_at:%Y-%m-%d %H:%M} UTC")
        print(f"  filtered set: {rev['release_sentence']} ({name}_release.csv)")
    print(f"tables and JSON summaries in {out_dir}")


def _video_embeddings(ws, name: str):
    import numpy as np

    e = ws.video_embeddings
    train, syn = e[e["set"] == "train"], e[e["set"] == name]
    if train.empty or syn.empty:
        return None
    return np.stack(train["emb"].to_numpy()).astype(np.float32), np.stack(syn["emb"].to_numpy()).astype(np.float32)


def _print_coverage(s: dict) -> None:
    """Reproduction (privacy) and coverage lines, patient level beside video level."""
    rep = s["reproduction"]
    for level, unit in (("patient", "patients"), ("video", "videos")):
        r = rep[level]
        print(f"reproduced {unit} (privacy, score >= threshold): {r['matched']}/{r['n_train']} = "
              f"{100 * r['share']:.1f} % [{100 * r['low']:.1f}, {100 * r['high']:.1f}] (Wilson)")
    c = s["coverage"]
    for level, unit in (("patient", "patients"), ("video", "videos")):
        cs, cr, a = c["synthetic"][level], c["real"][level], c["adjusted"][level]
        limit = ("no estimate" if cs["limit"] is None else
                 f"limit {100 * cs['limit']:.1f} % [{100 * cs['limit_low']:.1f}, {100 * cs['limit_high']:.1f}] "
                 f"(s = {cs['s_hat']} [{cs['s_low']}, {cs['s_high']}])")
        print(f"coverage ({unit}, best match, no threshold): synthetic {cs['matched']}/{cs['n_train']} = "
              f"{100 * cs['share']:.1f} % [{100 * cs['low']:.1f}, {100 * cs['high']:.1f}] from {cs['n_queries']} "
              f"videos, {limit}; real check {100 * cr['share']:.1f} % [{100 * cr['low']:.1f}, {100 * cr['high']:.1f}] "
              f"from {cr['n_queries']} videos; "
              f"adjusted {a['value']:.2f} [{a['low']:.2f}, {a['high']:.2f}] at n = {a['n_star']}")


def _print_summary(name: str, s: dict) -> None:
    t, f = s["threshold"], s["flags"]
    print(f"== {name}: {s['n_synthetic']} synthetic videos vs {s['n_train']} training videos")
    print(f"threshold: {t['logit']:.2f} re-ID logit [{t['logit_low']:.2f}, {t['logit_high']:.2f}], "
          f"probability {t['value']:.6f}. {t['sentence']}")
    for rule, other in s.get("rules", {}).items():
        if rule != t["rule"]:
            print(f"{other['rule_name']} (for comparison): {other['sentence']}")
    print(f"flagged: {f['n_flagged']}/{f['n_videos']} = {100 * f['share']:.1f} % [{100 * f['low']:.1f}, {100 * f['high']:.1f}] (Wilson)")
    print(f"excess over chance: {s['excess']['sentence']}")
    _print_coverage(s)
    if "prdc" in s:
        p = s["prdc"]
        print(f"PRDC on embeddings: precision {p['precision']:.3f}, recall {p['recall']:.3f}, density {p['density']:.3f}, "
              f"coverage {p['coverage']:.3f} ({p['rule']})")
    if "reid_auc" in s:
        a = s["reid_auc"]
        print(f"re-ID AUC: {a['value']:.3f} [{a['low']:.3f}, {a['high']:.3f}]")


def cmd_report(args) -> None:
    from echoaudit.report_files import write_report
    from echoaudit.workspace import Workspace

    ws = Workspace(args.workspace)
    paths = write_report(ws, args.out, percentile=args.percentile, synthetic=args.set, threshold=args.threshold,
                         png=not args.no_png)
    if paths.get("png_error"):
        print(paths["png_error"], file=sys.stderr)
    print(f"report written to {paths['folder']} ({paths['html']})")


# --- review -----------------------------------------------------------------------------

def _review_store(args):
    from echoaudit.review import DecisionStore
    from echoaudit.workspace import load_manifest

    load_manifest(args.workspace)  # one clear line for a folder that is not a workspace
    return DecisionStore.for_workspace(args.workspace)


def _decision_context(ws, args) -> dict:
    from echoaudit.review.view import decision_context

    if args.threshold is None:
        thr = ws.threshold(args.percentile, args.rule, n_boot=10)  # the value does not depend on the bootstrap
        threshold, rule = thr.value, f"{thr.rule} p{args.percentile:g}"
    else:
        threshold, rule = args.threshold, "manual"
    return decision_context(ws, args.set, args.video, args.train_video, threshold=threshold, rule=rule,
                            score_column=args.score)


def cmd_review_decide(args) -> None:
    from echoaudit.review import DecisionStore
    from echoaudit.review.decision import check_verdict
    from echoaudit.workspace import Workspace

    check_verdict(args.verdict)  # before the workspace's tables are read
    ws = Workspace(args.workspace)
    ctx = _decision_context(ws, args)
    d = DecisionStore.for_workspace(ws.root).record(
        synthetic_set=args.set, synthetic_video=args.video, train_video=args.train_video, verdict=args.verdict,
        reviewer=args.reviewer, note=args.note, **ctx)
    print(f"recorded {d.verdict} for {d.synthetic_set}/{d.synthetic_video} vs {d.train_video} "
          f"(patient {d.train_patient}) by {d.reviewer} at {d.decided_at:%Y-%m-%d %H:%M:%S} UTC: "
          f"score {d.score:.6f}, threshold {d.threshold:.6f} ({d.rule}); decision {d.decision_uid}")


def cmd_review_list(args) -> None:
    store = _review_store(args)
    table = store.history(args.set) if args.history else store.current(args.set)
    if table.empty:
        print(f"no decisions{f' on set {args.set!r}' if args.set else ''} in {store.url}")
        return
    table = table.assign(decided_at=table["decided_at"].dt.strftime("%Y-%m-%d %H:%M:%S UTC"))
    cols = ["synthetic_set", "synthetic_video", "train_video", "verdict", "reviewer", "decided_at", "score", "note"]
    print(table[cols].to_string(index=False))
    what = "decisions (history)" if args.history else "current verdicts"
    print(f"{len(table)} {what} in {store.url}")


def cmd_review_export(args) -> None:
    store = _review_store(args)
    n = store.export_csv(args.out, args.set)
    print(f"wrote {n} decisions to {args.out} (from {store.url})")


def cmd_review_import(args) -> None:
    store = _review_store(args)
    added, skipped = store.import_csv(args.file)
    print(f"imported {added} decisions into {store.url}; skipped {skipped} already present")


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
    ph.add_argument("--workers", type=int, default=2, help="rendering processes (same bytes for any number)")
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

    trr = tr.add_parser("reid", help="train the siamese re-identification network")
    trr.add_argument("--space", choices=("latent", "image"), default="latent")
    trr.add_argument("--latents", type=Path, help="latent cache folder (space latent)")
    trr.add_argument("--data", type=Path, help="EchoNet-format folder (space image)")
    trr.add_argument("--out", required=True, type=Path)
    trr.add_argument("--epochs", type=int, default=60)
    trr.add_argument("--pairs", type=int, default=8192, help="pairs per epoch")
    trr.add_argument("--batch-size", type=int, default=128)
    trr.add_argument("--lr", type=float, default=1e-3)
    trr.add_argument("--width", type=int, default=64)
    trr.add_argument("--embed-dim", type=int, default=128)
    trr.add_argument("--patience", type=int, default=10)
    trr.add_argument("--augmented-fraction", type=float, default=0.5,
                     help="share of non-copy pairs whose second frame is a disguised copy")
    trr.add_argument("--hard-fraction", type=float, default=0.3,
                     help="share of negative pairs drawn from the anchor's nearest other-patient videos")
    trr.add_argument("--copy-fraction", type=float, default=0.4,
                     help="share of positive pairs that are disguised copies (same video, within a few frames)")
    trr.add_argument("--mirror-invariant", action=argparse.BooleanOptionalAction, default=True,
                     help="embed each frame and its left-right mirror identically (a mirrored copy is a copy; "
                          "default). The shipped re-ID and the second-view check (phantom psax, seed 1) were "
                          "trained this way: mirrored copies flagged 100 %% on both")
    trr.add_argument("--size", type=int, default=112)
    trr.add_argument("--seed", type=int, default=0)
    trr.add_argument("--threads", type=int, default=0)
    trr.set_defaults(func=cmd_train_reid)

    td = tr.add_parser("diffusion", help="train a latent video diffusion model on a latent cache")
    td.add_argument("--latents", required=True, type=Path)
    td.add_argument("--out", required=True, type=Path)
    td.add_argument("--steps", type=int, default=1500)
    td.add_argument("--batch-size", type=int, default=4)
    td.add_argument("--lr", type=float, default=5e-4)
    td.add_argument("--num-frames", type=int, default=32)
    td.add_argument("--frame-stride", type=int, default=2)
    td.add_argument("--subset", type=int, default=None, help="train on the first N training videos only (memorizing demo)")
    td.add_argument("--checkpoint-every", type=int, default=250)
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--threads", type=int, default=0)
    td.set_defaults(func=cmd_train_diffusion)

    ge = sub.add_parser("generate", help="write an EchoNet-format synthetic data set")
    ge.add_argument("--generator", required=True, type=Path,
                    help="pipeline folder (a run's best/), or a published EchoNet-Synthetic UNet folder (unet_ema/)")
    ge.add_argument("--conditioning", type=Path, default=None,
                    help="folder of C x h x w .pt conditioning latents (VAE-encoded frames): needed by a published "
                         "video UNet, taken in sorted order and cycling (video i uses frame i mod M)")
    ge.add_argument("--vae", required=True, type=Path)
    ge.add_argument("--out", required=True, type=Path)
    ge.add_argument("--n", type=int, default=16)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--steps", type=int, default=25)
    ge.add_argument("--ef", type=float, default=None, help="requested EF in percent (default: drawn from training EFs)")
    ge.add_argument("--guidance", type=float, default=2.0)
    ge.add_argument("--frames", type=int, default=None)
    ge.add_argument("--overwrite", action="store_true")
    ge.add_argument("--threads", type=int, default=0)
    ge.set_defaults(func=cmd_generate)

    ase = sub.add_parser("assets", help="export trained demo checkpoints into assets/ with demo.json")
    ase.add_argument("--runs", required=True, type=Path)
    ase.add_argument("--out", type=Path, default=Path("assets"))
    ase.add_argument("--only", choices=("reid",), help="export only this model (the rest of assets/ stays)")
    ase.set_defaults(func=cmd_assets)

    ev = sub.add_parser("eval", help="measure a model").add_subparsers(dest="model", required=True)
    eg = ev.add_parser("generator", help="intensity and motion statistics of synthetic vs real videos")
    eg.add_argument("--synthetic", required=True, type=Path, action="append")
    eg.add_argument("--real", required=True, type=Path)
    eg.add_argument("--split", default="TEST")
    eg.add_argument("--max-videos", type=int, default=64)
    eg.add_argument("--out", required=True, type=Path)
    eg.set_defaults(func=cmd_eval_generator)
    er = ev.add_parser("reid", help="test AUC and the cross-view matrix, latent and image space")
    er.add_argument("--out", required=True, type=Path)
    er.add_argument("--latent-model", action="append", default=[], help="VIEW=MODEL_FOLDER, repeatable")
    er.add_argument("--latents", action="append", default=[], help="VIEW=LATENT_CACHE, repeatable")
    er.add_argument("--image-model", action="append", default=[], help="VIEW=MODEL_FOLDER, repeatable")
    er.add_argument("--data", action="append", default=[], help="VIEW=DATA_FOLDER for image models, repeatable")
    er.add_argument("--pairs", type=int, default=2000)
    er.add_argument("--seed", type=int, default=0)
    er.add_argument("--threads", type=int, default=0)
    er.set_defaults(func=cmd_eval_reid)
    ee = ev.add_parser("vae", help="reconstruction PSNR (raw, low-passed) and SSIM")
    ee.add_argument("--vae", required=True, type=Path)
    ee.add_argument("--data", required=True, type=Path)
    ee.add_argument("--split", default="TEST")
    ee.add_argument("--frames-per-video", type=int, default=4)
    ee.add_argument("--seed", type=int, default=0)
    ee.add_argument("--threads", type=int, default=0)
    ee.set_defaults(func=cmd_eval_vae)
    from echoaudit.utility_cli import register as register_utility

    register_utility(tr, ev)  # train ef; eval utility, eval ef-agreement
    from echoaudit.models_cli import register as register_models

    register_models(sub)  # models inspect
    from echoaudit.published_cli import register as register_published

    register_published(sub)  # published-scores
    from echoaudit.filters_cli import register as register_filters

    register_filters(sub)  # filters add / list / compare

    en = sub.add_parser("encode", help="encode a data set into a latent cache")
    en.add_argument("--skip-missing", action="store_true",
                    help="leave out (and list) listed videos that are missing or unreadable instead of stopping")
    en.add_argument("--data", required=True, type=Path)
    en.add_argument("--vae", required=True, type=Path)
    en.add_argument("--out", required=True, type=Path)
    en.add_argument("--frames", type=int, default=None)
    en.add_argument("--copies", type=int, default=8, help="disguised copies per video for re-ID training (0: none)")
    en.add_argument("--copy-stride", type=int, default=8, help="copies hold every k-th frame")
    en.add_argument("--seed", type=int, default=0)
    en.add_argument("--threads", type=int, default=0)
    en.set_defaults(func=cmd_encode)

    wsp = sub.add_parser("workspace", help="build a workspace").add_subparsers(dest="action", required=True)
    wc = wsp.add_parser("create", help="index a data set, score held-out videos, generate + audit synthetic sets")
    wc.add_argument("--skip-missing", action="store_true",
                    help="leave out (and list) listed videos that are missing or unreadable instead of stopping; "
                         "the workspace records it and reopens its data set the same way")
    wc.add_argument("--workspace", required=True, type=Path)
    wc.add_argument("--data", required=True, type=Path)
    wc.add_argument("--vae", required=True, type=Path)
    wc.add_argument("--reid", required=True, type=Path)
    wc.add_argument("--generator", action="append", default=[], help="NAME=FOLDER, repeatable")
    wc.add_argument("--latents", type=Path, default=None,
                    help="published latents (FileList.csv + Latents/<FileName>.pt) of the TRAIN videos: the index is "
                         "built from them, without decoding or encoding")
    wc.add_argument("--conditioning", action="append", default=[],
                    help="NAME=FOLDER, repeatable: the conditioning latent frames (.pt) of generator NAME, for a "
                         "published EchoNet-Synthetic video UNet")
    wc.add_argument("--n-synthetic", type=int, default=32)
    wc.add_argument("--steps", type=int, default=20)
    wc.add_argument("--frame-stride", type=int, default=2)
    wc.add_argument("--index-stride", type=int, default=4)
    wc.add_argument("--k", type=int, default=32)
    wc.add_argument("--size", type=int, default=112, help="frame side the models take (videos are resized to it)")
    wc.add_argument("--seed", type=int, default=0)
    wc.add_argument("--threads", type=int, default=0)
    wc.add_argument("--ray", default=None, metavar="ADDRESS", help=RAY_HELP)
    wc.set_defaults(func=cmd_workspace_create)

    ix = sub.add_parser("index", help="embed a split's frames with VAE + re-ID and build the FAISS index")
    ix.add_argument("--skip-missing", action="store_true",
                    help="leave out (and list) listed videos that are missing or unreadable instead of stopping")
    ix.add_argument("--data", required=True, type=Path)
    ix.add_argument("--vae", required=True, type=Path)
    ix.add_argument("--reid", required=True, type=Path)
    ix.add_argument("--out", required=True, type=Path)
    ix.add_argument("--split", default="TRAIN")
    ix.add_argument("--stride", type=int, default=4, help="index every k-th frame")
    ix.add_argument("--kind", default="auto", help="auto, flat, ivf or hnsw")
    ix.add_argument("--size", type=int, default=112)
    ix.add_argument("--threads", type=int, default=0)
    ix.set_defaults(func=cmd_index)

    qu = sub.add_parser("query", help="nearest training videos and the memorization verdict for video files")
    qu.add_argument("--workspace", required=True, type=Path)
    qu.add_argument("videos", nargs="+", type=Path)
    qu.add_argument("--percentile", type=float, default=95.0)
    qu.add_argument("--top", type=int, default=5)
    qu.add_argument("--threads", type=int, default=0)
    qu.set_defaults(func=cmd_query)

    de = sub.add_parser("demo", help="build the phantom demo workspace from the shipped checkpoints")
    de.add_argument("--workspace", type=Path, default=Path("demo_workspace"))
    de.add_argument("--assets", type=Path, default=None)
    de.add_argument("--rebuild", action="store_true")
    de.add_argument("--threads", type=int, default=0)
    de.set_defaults(func=cmd_demo)

    au = sub.add_parser("audit", help="flags, recall and learned-video estimates of synthetic sets")
    au.add_argument("--workspace", required=True, type=Path)
    au.add_argument("--synthetic", type=Path, help="an EchoNet-format synthetic folder to add (with --name)")
    au.add_argument("--name", help="the set to audit (default: every set in the workspace)")
    au.add_argument("--percentile", type=float, default=95.0)
    au.add_argument("--rule", default="heldout_to_train", choices=("heldout_to_train", "train_to_heldout"),
                    help="heldout_to_train (default: held-out videos' best scores against the training set) or "
                         "train_to_heldout (the published EchoNet-Synthetic rule)")
    au.add_argument("--score", default="score", help="score (clip score: mean over query frames of each frame's best logit), "
                    "score_peak (best single frame pair) or score_robust (top 10 %% of frames)")
    au.add_argument("--n-boot", type=int, default=1000)
    au.add_argument("--threads", type=int, default=0)
    au.add_argument("--ray", default=None, metavar="ADDRESS", help=RAY_HELP + " (scores the --synthetic set there)")
    au.set_defaults(func=cmd_audit)

    rp = sub.add_parser("report", help="write the meeting report of one synthetic set (as the Report page)")
    rp.add_argument("--workspace", required=True, type=Path)
    rp.add_argument("--set", help="the synthetic set (default: the first)")
    rp.add_argument("--out", required=True, type=Path, help="folder to write (replaced if it exists)")
    rp.add_argument("--threshold", type=float, default=None,
                    help="threshold probability to use instead of the calibrated one")
    rp.add_argument("--percentile", type=float, default=95.0)
    rp.add_argument("--no-png", action="store_true", help="skip the PNG figures (kaleido + Chromium)")
    rp.set_defaults(func=cmd_report)

    rv = sub.add_parser("review", help="reviewer decisions: record, list, export, import").add_subparsers(
        dest="action", required=True)
    rd = rv.add_parser("decide", help="record a verdict on a (synthetic video, training video) pair")
    rd.add_argument("--workspace", required=True, type=Path)
    rd.add_argument("--set", required=True, help="the synthetic set")
    rd.add_argument("--video", required=True, help="the synthetic video (FileName)")
    rd.add_argument("--train-video", required=True, help="the training video it was compared with")
    rd.add_argument("--verdict", required=True, help="confirmed_copy, not_a_copy or unsure")
    rd.add_argument("--reviewer", required=True)
    rd.add_argument("--note", default="")
    rd.add_argument("--percentile", type=float, default=95.0, help="percentile of the calibrated threshold recorded")
    rd.add_argument("--rule", default=None, help="threshold rule (default: heldout_to_train)")
    rd.add_argument("--threshold", type=float, default=None,
                    help="threshold probability the reviewer used instead of the calibrated one")
    rd.add_argument("--score", default="score", help="score column the reviewer saw (score, score_peak, score_robust)")
    rd.set_defaults(func=cmd_review_decide)
    rl = rv.add_parser("list", help="current verdicts with reviewer and time")
    rl.add_argument("--workspace", required=True, type=Path)
    rl.add_argument("--set", default=None, help="only this synthetic set")
    rl.add_argument("--history", action="store_true", help="every decision, oldest first, not just the current ones")
    rl.set_defaults(func=cmd_review_list)
    rx = rv.add_parser("export", help="write the decision history to a CSV")
    rx.add_argument("--workspace", required=True, type=Path)
    rx.add_argument("--out", required=True, type=Path)
    rx.add_argument("--set", default=None, help="only this synthetic set")
    rx.set_defaults(func=cmd_review_export)
    ri = rv.add_parser("import", help="add the decisions of an exported CSV (rows already present are skipped)")
    ri.add_argument("--workspace", required=True, type=Path)
    ri.add_argument("file", type=Path)
    ri.set_defaults(func=cmd_review_import)
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
