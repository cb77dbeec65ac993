"""Copy-attack benchmark: disguised copies of training videos vs real videos of fresh,
unseen patients (see echoaudit/copybench.py for the design).

Usage:
  python bench/copy_attack.py --workspace demo_workspace
  python bench/copy_attack.py --data runs/data/psax --vae assets/vae --reid runs/reid_psax/best

Phantom data only for the fresh patients and the same-patient videos (they are rendered
with the data set's own view and a seed no split contains). Floors (issue 13): >= 95 % of
copies flagged at the default threshold with <= 5 % of unseen videos flagged; every family
>= 90 % at its milder strength; TPR >= 85 % at a 1 % false-flag rate; AUC above both
baselines. One line per family, headline last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from echoaudit.audit.intervals import wilson_interval  # noqa: E402
from echoaudit.audit.privacy import PERCENTILE_METHODS  # noqa: E402
from echoaudit.copybench import (BenchModels, Clip, attack_clips, calibration_noise, family_table,  # noqa: E402
                                 score_clips)
from echoaudit.data.attacks import ATTACK_FAMILIES  # noqa: E402
from echoaudit.data.clips import ClipSpec  # noqa: E402
from echoaudit.data.echonet import EchoNetDataset  # noqa: E402
from echoaudit.data.phantom import render_video, sample_acquisition, sample_anatomy  # noqa: E402
from echoaudit.data.video import load_video, write_video  # noqa: E402


def _stored(frames_u8: np.ndarray, fps: float, size: int, folder: Path) -> np.ndarray:
    """The frames as the data set stores and reads them (AVI with the writer's codec, the
    data set's reader): fresh patients must reach the filter the way held-out ones do."""
    path = write_video(folder / "clip.avi", frames_u8, fps)
    return load_video(path, size=size).frames


def _phantom_clips(kind: str, seed: int, view: str, patients, videos, frames: int, fps: float, size: int,
                   source_of=None, stored: bool = True) -> list[Clip]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in patients:
            anat = sample_anatomy(seed, view, int(p))
            for v in videos:
                x, _ = render_video(anat, sample_acquisition(seed, view, int(p), int(v)), frames=frames, fps=fps, size=size)
                pid = source_of(int(p)) if source_of else ""
                x = _stored(x, fps, size, Path(tmp)) if stored else x.astype(np.float32) / 255
                out.append(Clip(f"{kind}_{seed}_{p}_{v}", kind, x, fps, "", pid))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, help="take data, VAE, re-ID and strides from a workspace")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--vae", type=Path)
    ap.add_argument("--reid", type=Path)
    ap.add_argument("--filter", default=None,
                    help="with --workspace: bench the workspace's second filter NAME (its network under EchoAudit's "
                         "whole-video rule) instead of the workspace's own re-ID")
    ap.add_argument("--copies", type=int, default=24, help="training videos copied (each by every family and strength)")
    ap.add_argument("--unseen-patients", type=int, default=150, help="fresh patients, 2 videos each")
    ap.add_argument("--same-patient", type=int, default=24, help="new videos of this many training patients")
    ap.add_argument("--phantom-seed", type=int, default=0, help="the seed the data set's phantom was made with")
    ap.add_argument("--fresh-seed", type=int, default=11, help="phantom seed of the unseen patients")
    ap.add_argument("--in-memory", action="store_true",
                    help="score fresh patients' videos as rendered, not stored and read back like the data set's")
    ap.add_argument("--fps", type=float, default=25.0, help="clip spec: the synthetic set's frame rate")
    ap.add_argument("--frames", type=int, default=32, help="clip spec: the synthetic set's clip length")
    ap.add_argument("--index-stride", type=int, default=8)
    ap.add_argument("--query-stride", type=int, default=4)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--families", default=",".join(ATTACK_FAMILIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the per-clip scores (CSV) and the table (JSON) here")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.time()

    from echoaudit.models.reid import load_reid
    from echoaudit.models.vae import FrameVAE

    if args.workspace:
        man = json.loads((args.workspace / "manifest.json").read_text())
        ws = args.workspace.resolve()
        data = Path(man["data"]["path"]) if Path(man["data"]["path"]).is_absolute() else ws / man["data"]["path"]
        vae_dir, reid_dir = ws / man["models"]["vae"]["path"], ws / man["models"]["reid"]["path"]
        if args.filter:
            filters = man.get("filters") or {}
            if args.filter not in filters:
                ap.error(f"the workspace has no filter {args.filter!r}; it has: {', '.join(filters) or 'none'}")
            reid_dir = ws / filters[args.filter]["path"] / "model"
        eng = man["engine"]
        args.index_stride, args.query_stride, args.k = eng["index_stride"], eng["frame_stride"], eng["k"]
        clip = man.get("clip")
        if clip:
            args.fps, args.frames = float(clip["fps"]), int(clip["frames"])
    else:
        if not (args.data and args.vae and args.reid):
            ap.error("give --workspace, or --data, --vae and --reid")
        data, vae_dir, reid_dir = args.data, args.vae, args.reid
    spec = ClipSpec(args.fps, args.frames)
    ds = EchoNetDataset.open(data)
    train, held = ds.split("TRAIN"), ds.split(["VAL", "TEST"])
    view = str(ds.table["View"].iloc[0]) if "View" in ds.table else "a4c"
    frames, fps = int(ds.table["NumberOfFrames"].iloc[0]), float(ds.table["FPS"].iloc[0])
    size = 112
    vae, reid = FrameVAE.from_pretrained(vae_dir), load_reid(reid_dir)
    models = BenchModels.build(train, vae, reid, index_stride=args.index_stride, query_stride=args.query_stride,
                               k=args.k, size=size)

    families = [f for f in args.families.split(",") if f]
    clips = attack_clips(train, n_videos=args.copies, seed=args.seed, size=size, families=families)
    clips += [Clip(n, "calibration", held.load(i, size=size).frames, float(held.table["FPS"].iloc[i]))
              for i, n in enumerate(held.names)]
    clips += _phantom_clips("unseen", args.fresh_seed, view, range(args.unseen_patients), (0, 1), frames, fps, size,
                            stored=not args.in_memory)
    # new acquisitions (video numbers no data set uses) of training patients
    tag = view.upper()
    train_pats = sorted({int(str(p).split("-")[-1]) for p in train.patients})
    rng = np.random.default_rng([args.seed, 7])
    chosen = rng.choice(train_pats, min(args.same_patient, len(train_pats)), replace=False)
    clips += _phantom_clips("same_patient", args.phantom_seed, view, chosen, (90,), frames, fps, size,
                            source_of=lambda p: f"{tag}-{p:04d}", stored=not args.in_memory)
    scores = score_clips(models, clips, spec)

    cal = scores[scores["kind"] == "calibration"]["reid"].to_numpy()
    # the default rule's percentile, as the workspace computes it (numpy's weibull method)
    thr = float(np.percentile(cal, 95.0, method=PERCENTILE_METHODS["heldout_to_train"]))
    neg = scores[scores["kind"] == "unseen"]
    table = family_table(scores, thr)
    k_neg = int((neg["reid"] >= thr).sum())
    lo, hi = wilson_interval(k_neg, len(neg), 0.95)

    print(f"# clip spec: {spec.describe()}; query every {args.query_stride}th frame; index every "
          f"{args.index_stride}th training frame; k = {args.k}; {len(train)} training videos")
    print(f"# default threshold (held-out-to-train, 95th percentile of {len(cal)} held-out videos' best logits): "
          f"{thr:.3f} (logit)")
    print(f"# unseen: {len(neg)} videos of {args.unseen_patients} fresh patients (phantom seed {args.fresh_seed}, "
          f"{'as rendered' if args.in_memory else 'stored and read back like the data set'}); "
          f"copies: {args.copies} training videos x family x strength")
    for _, r in table.iterrows():
        label = f"{r['family']}" + (f" ({r['strength']})" if r["strength"] else "")
        print(f"{label:32s} n={r['n']:4d} flagged={100 * r['flagged']:5.1f}% [{100 * r['flagged_low']:.1f}, "
              f"{100 * r['flagged_high']:.1f}] right_patient={100 * r['right_patient']:5.1f}% "
              f"tpr@5%={100 * r['tpr_at_5']:5.1f}% tpr@1%={100 * r['tpr_at_1']:5.1f}% auc={r['auc_reid']:.3f} "
              f"auc_peak={r['auc_reid_peak']:.3f} auc_first_frame={r['auc_first_frame']:.3f} auc_pixel={r['auc_pixel']:.3f} "
              f"auc_latent_l2={r['auc_latent_l2']:.3f}")
    allc = table[table["family"] == "all copies"].iloc[0]
    mild = table[table["strength"] == "mild"]
    worst = mild.loc[mild["flagged"].idxmin()] if len(mild) else None
    print(f"unseen videos flagged at the default threshold: {k_neg}/{len(neg)} = {100 * k_neg / len(neg):.1f} % "
          f"[{100 * lo:.1f}, {100 * hi:.1f}] (Wilson 95 %; floor <= 5 %)")
    n_cal_patients = len(set(held.patients))
    if n_cal_patients < args.unseen_patients:
        noise = calibration_noise(neg["reid"].to_numpy(), neg["name"].str.rsplit("_", n=1).str[0].to_numpy(),
                                  n_cal_patients, method=PERCENTILE_METHODS["heldout_to_train"], seed=args.seed)
        print(f"calibration-size noise: a threshold set on {n_cal_patients} patients drawn from the fresh ones flags "
              f"{100 * noise['median']:.1f} % of the other fresh patients' videos (median of {noise['n_draws']} draws; "
              f"95 % of draws within {100 * noise['low']:.1f} to {100 * noise['high']:.1f} %): the spread the "
              f"unseen rate above has from the luck of which {n_cal_patients} patients calibrated")
    if worst is not None:
        print(f"weakest family at mild strength: {worst['family']} {100 * worst['flagged']:.1f} % (floor >= 90 %)")
    if args.workspace:
        # The workspace's own threshold: the same rule on its calibration half of the held-out
        # patients only (the other half checks it), so it moves with those few patients.
        from echoaudit.audit.scale import to_logit
        from echoaudit.workspace import Workspace

        wt = float(to_logit(Workspace(args.workspace).calibration().value))
        copies = scores[scores["kind"] == "copy"]
        print(f"at the workspace's own threshold {wt:.2f} (its calibration half): copies flagged "
              f"{100 * (copies['reid'] >= wt).mean():.1f} %, unseen flagged {100 * (neg['reid'] >= wt).mean():.1f} %")
    print(f"TPR at 1 % false-flag rate, all copies: {100 * allc['tpr_at_1']:.1f} % (floor >= 85 %)")
    print(f"AUC copy vs unseen: re-ID {allc['auc_reid']:.3f}, re-ID peak frame {allc['auc_reid_peak']:.3f}, "
          f"published first-frame rule {allc['auc_first_frame']:.3f}, pixel NCC {allc['auc_pixel']:.3f}, "
          f"latent L2 {allc['auc_latent_l2']:.3f}")
    print(f"TPR at 1 %: re-ID {100 * allc['tpr1_reid']:.1f} %, re-ID peak frame {100 * allc['tpr1_reid_peak']:.1f} %, "
          f"published first-frame rule {100 * allc['tpr1_first_frame']:.1f} %, pixel NCC {100 * allc['tpr1_pixel']:.1f} %, "
          f"latent L2 {100 * allc['tpr1_latent_l2']:.1f} %")
    ff = scores[scores["kind"] == "calibration"]["first_frame"].to_numpy()
    ff_thr = float(np.percentile(ff, 95.0))
    print(f"published first-frame rule (first frame, Pearson of the network's features, threshold the 95th percentile "
          f"of held-out videos' best correlation {ff_thr:.4f}): copies flagged "
          f"{100 * (scores[scores['kind'] == 'copy']['first_frame'] >= ff_thr).mean():.1f} %, unseen flagged "
          f"{100 * (neg['first_frame'] >= ff_thr).mean():.1f} %")
    print(f"seconds: {time.time() - t0:.0f}")
    print(f"headline: copies flagged at the default threshold {100 * allc['flagged']:.1f} % "
          f"[{100 * allc['flagged_low']:.1f}, {100 * allc['flagged_high']:.1f}] (floor >= 95 %), unseen flagged "
          f"{100 * k_neg / len(neg):.1f} % (floor <= 5 %)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        scores.to_csv(args.out / "copy_attack_scores.csv", index=False)
        (args.out / "copy_attack.json").write_text(json.dumps({
            "threshold": thr, "clip": spec.to_dict(), "unseen_flagged": k_neg / len(neg), "unseen_n": len(neg),
            "table": table.to_dict(orient="records")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
