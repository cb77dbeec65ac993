"""EchoNet-scale benchmark: how long a full-size audit takes on this machine.

EchoNet-Dynamic has 10,030 videos (7,465 TRAIN, 1,288 VAL, 1,277 TEST) of ~175 frames at
~50 fps; synthetic sets have ~10,000 videos. A full run of every stage would take hours
on 2 CPU cores, so this script times a seeded *sample* of each stage and extrapolates
from the measured rates (the output says which figures are extrapolated):

1. decode: phantom videos of EchoNet length (``--frames`` at ``--fps``, 112 px, written
   by the project's phantom writer) read with ``EchoNetDataset.load``: all frames (frames/s)
   and every ``--index-stride``-th frame (what the index build decodes, s per video);
2. VAE encode (``assets/vae``, the VAE's batches of 16) and re-ID embed (``assets/reid``,
   the engine's batches): frames/s;
3. index build at N = n_train x ceil(frames / index_stride) vectors: the real embeddings
   of the sample's frames plus seeded jittered copies of them; build time of flat, HNSW
   and IVF, their recall@k against flat on held-out real query frames, search latency
   of one 8-frame query, ``AuditEngine.score_embeddings`` at N and at the demo's size;
4. held-out calibration: ``audit_synthetic_set`` on the EchoNet-length sample conformed
   to the 32-frame, 25 fps clip -> videos/s, extrapolated to ``--n-heldout`` videos;
5. synthetic audit: ``audit_synthetic_set`` on ``--sample-synthetic`` phantom clips
   (32 frames, 25 fps) against the N-vector engine -> videos/s, extrapolated to
   ``--n-synthetic`` videos; plus the dashboard query (one 32-frame upload -> verdict);
6. dashboard pages: not measured.

One labelled line per figure (each rate with its sample size), the headline last:
hours for the training index (decode + encode + embed of every indexed TRAIN frame,
index build) + held-out calibration + the synthetic audit.

    OMP_NUM_THREADS=2 python bench/echonet_scale.py                 # ~5-10 min on 2 cores
    OMP_NUM_THREADS=1 python bench/echonet_scale.py --smoke --threads 1   # < 1 min, checks it runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss
import numpy as np
import pandas as pd
import torch

from echoaudit.data.clips import ClipSpec, conform_clip
from echoaudit.data.echonet import EchoNetDataset
from echoaudit.data.phantom import PhantomConfig, generate_phantom
from echoaudit.engine import AuditEngine, EngineConfig
from echoaudit.index import AUTO_FLAT_MAX, EmbeddingIndex, IndexConfig, l2_normalize

# The demo workspace (assets/demo.json): 64-frame phantom videos, ~320 TRAIN videos.
DEMO_TRAIN_VIDEOS, DEMO_FRAMES = 320, 64
SMOKE = {"sample_videos": 2, "frames": 16, "sample_synthetic": 2, "n_vectors": 5000, "queries": 5}


def peak_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds it took)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def med_p90(times: list[float]) -> tuple[float, float]:
    s = sorted(times)
    return statistics.median(s), s[int(round(0.9 * (len(s) - 1)))]


def recall_at_k(got: np.ndarray, want: np.ndarray) -> float:
    k = want.shape[1]
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / k for a, b in zip(got, want)]))


def jittered_index(rng: np.random.Generator, real: list[np.ndarray], names: list[str], n: int, per_video: int,
                   stride: int, jitter: float, frame_jitter: float) -> tuple[np.ndarray, pd.DataFrame, int]:
    """(n, D) unit vectors and their metadata (video, patient, frame): every frame of the
    real videos first (their own names), then fake videos of ``per_video`` frames, each a
    strided run of a random real video's frames + one per-video offset (norm ``jitter``)
    + per-frame noise (norm ``frame_jitter``): a cluster per video, like real videos.
    Returns also how many vectors are real."""
    d = real[0].shape[1]
    vecs = [np.concatenate(real)[:n]]
    video = [np.repeat(names, [len(r) for r in real])[:n]]
    frame = [np.concatenate([np.arange(len(r)) for r in real])[:n]]
    m = len(vecs[0])
    left, v = n - m, 0
    while left > 0:
        t = min(per_video, left)
        src = real[int(rng.integers(len(real)))]
        rows = (rng.integers(len(src)) + stride * np.arange(t)) % len(src)
        offset = rng.standard_normal(d).astype(np.float32) * np.float32(jitter / math.sqrt(d))
        noise = rng.standard_normal((t, d), dtype=np.float32) * np.float32(frame_jitter / math.sqrt(d))
        vecs.append(l2_normalize(src[rows] + offset + noise))
        video.append(np.full(t, f"jit_{v:06d}"))
        frame.append(np.arange(t) * stride)
        left, v = left - t, v + 1
    x = np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32)
    vid = np.concatenate(video).astype(str)
    meta = pd.DataFrame({"video": vid, "patient": vid, "frame": np.concatenate(frame)})
    return x, meta, m


def phantom_set(folder: Path, n: int, frames: int, fps: float, seed: int) -> EchoNetDataset:
    """``n`` phantom videos (one per patient) written by the project's phantom writer."""
    cfg = PhantomConfig(n_patients=n, videos_per_patient=1, frames=frames, fps=fps, size=112, seed=seed)
    generate_phantom(folder, cfg)
    return EchoNetDataset.open(folder)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample-videos", type=int, default=8, help="EchoNet-length phantom videos timed (stages 1-4)")
    ap.add_argument("--sample-synthetic", type=int, default=16, help="32-frame synthetic clips audited (stage 5)")
    ap.add_argument("--index-stride", type=int, default=8, help="index every s-th TRAIN frame (demo: 8)")
    ap.add_argument("--frame-stride", type=int, default=4, help="query every s-th clip frame (demo: 4)")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--frames", type=int, default=175, help="frames per EchoNet video")
    ap.add_argument("--fps", type=float, default=50.0, help="EchoNet frame rate")
    ap.add_argument("--clip-frames", type=int, default=32, help="clip spec: frames of a synthetic clip")
    ap.add_argument("--clip-fps", type=float, default=25.0, help="clip spec: frame rate of a synthetic clip")
    ap.add_argument("--n-train", type=int, default=7465)
    ap.add_argument("--n-heldout", type=int, default=2565)
    ap.add_argument("--n-synthetic", type=int, default=10000)
    ap.add_argument("--n-vectors", type=int, default=None, help="override N (default n_train x ceil(frames/stride))")
    ap.add_argument("--queries", type=int, default=40, help="8-frame queries timed (>= 30 for median/p90)")
    ap.add_argument("--jitter", type=float, default=None,
                    help="norm of the per-video offset of a jittered copy; default: the median distance between "
                         "the indexed sample videos' mean embeddings / sqrt(2), so that two copies of one video are "
                         "as far apart as two real videos (0.5 with a single indexed video)")
    ap.add_argument("--frame-jitter", type=float, default=0.05, help="norm of the per-frame noise of a jittered copy")
    ap.add_argument("--no-ivf", action="store_true", help="skip the IVF build (k-means at large N)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (2 videos of 16 frames, N = 5,000, 5 queries): checks the script runs; "
                         "its figures are not estimates")
    ap.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = ap.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.sample_videos < 2:
        ap.error("--sample-videos must be >= 2 (indexed videos + held-out query videos)")
    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    stride, fstride, k = args.index_stride, args.frame_stride, args.k
    per_video = -(-args.frames // stride)
    n_vec = args.n_vectors or args.n_train * per_video
    spec = ClipSpec(args.clip_fps, args.clip_frames)
    out: dict = {"mode": "smoke" if args.smoke else "sample", "args": {k_: str(v) for k_, v in vars(args).items()}}

    from echoaudit.models.reid import load_reid
    from echoaudit.models.vae import FrameVAE
    from echoaudit.scoring import audit_synthetic_set

    vae, reid = FrameVAE.from_pretrained(ROOT / "assets/vae"), load_reid(ROOT / "assets/reid")
    print(f"# {'SMOKE MODE: tiny sizes, the figures below are NOT estimates; ' if args.smoke else ''}"
          f"on {args.threads} CPU thread(s) this times a seeded sample of each stage and extrapolates "
          f"the full-size figures from the measured rates (marked 'extrapolated')")
    print(f"# full size: {args.n_train} TRAIN videos of {args.frames} frames at {args.fps:g} fps, {args.n_heldout} "
          f"held-out, {args.n_synthetic} synthetic clips of {spec.describe()}; index every {stride}th frame "
          f"(N = {n_vec:,} vectors), query every {fstride}th clip frame, k = {k}; seed {args.seed}; "
          f"faiss gpus={faiss.get_num_gpus()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # --- 1. decode ------------------------------------------------------------------
        ds, render_s = timed(lambda: phantom_set(tmp / "echonet", args.sample_videos, args.frames, args.fps,
                                                  args.seed))
        ds.load(0, size=112)  # warm the decoder
        videos, t_full = [], []
        for i in range(len(ds)):
            v, s = timed(ds.load, i, size=112)
            videos.append(v.frames)
            t_full.append(s)
        t_strided = [timed(ds.load, i, size=112, frame_step=stride)[1] for i in range(len(ds))]
        n_frames = sum(len(v) for v in videos)
        dec_fps = n_frames / sum(t_full)
        dec_strided = statistics.mean(t_strided)
        print(f"decode (EchoNetDataset.load, all frames): {dec_fps:.0f} frames/s over {len(ds)} videos x "
              f"{args.frames} frames at 112 px ({n_frames} frames; rendering them took {render_s:.1f} s, not "
              f"counted); peak RSS so far {peak_mb():.0f} MB")
        print(f"decode for the index build (every {stride}th frame, frame_step): {dec_strided:.3f} s/video "
              f"over {len(ds)} videos")
        out["decode"] = {"frames_per_s": dec_fps, "n_frames": n_frames, "n_videos": len(ds),
                         "strided_s_per_video": dec_strided}

        # --- 2. encode + embed ------------------------------------------------------------
        engine_cfg = EngineConfig(frame_stride=fstride, index_stride=stride, k=k)
        allf = np.concatenate(videos)
        with torch.no_grad():
            vae.encode(allf[:16])  # warm-up
            lat, enc_s = timed(vae.encode, allf)
            bs = engine_cfg.batch_size  # AuditEngine.embed_latents' batches

            def embed(z):
                return torch.cat([reid.embed(z[i:i + bs]) for i in range(0, len(z), bs)]).numpy().astype(np.float32)
            embed(lat[:16])  # warm-up
            emb_all, emb_s = timed(embed, lat)
        enc_fps, emb_fps = len(allf) / enc_s, len(allf) / emb_s
        print(f"VAE encode (batches of 16): {enc_fps:.0f} frames/s over {len(allf)} frames; "
              f"peak RSS so far {peak_mb():.0f} MB")
        print(f"re-ID embed (batches of {engine_cfg.batch_size}): {emb_fps:.0f} frames/s over {len(allf)} frames")
        out["encode"] = {"frames_per_s": enc_fps, "n_frames": len(allf)}
        out["embed"] = {"frames_per_s": emb_fps, "n_frames": len(allf)}
        per_vid = np.split(emb_all, np.cumsum([len(v) for v in videos])[:-1])
        n_query_videos = max(1, len(per_vid) // 4)
        real, names = per_vid[:-n_query_videos], ds.names[:-n_query_videos]
        held = per_vid[-n_query_videos:]
        del allf, lat
        train_video_s = dec_strided + per_video / enc_fps + per_video / emb_fps
        print(f"training index embedding: {train_video_s:.3f} s/video (decode every {stride}th frame + encode and "
              f"embed {per_video} frames, sequential; rates above) x {args.n_train} videos -> "
              f"{args.n_train * train_video_s / 3600:.2f} h (extrapolated)")
        jitter, how = args.jitter, "given"
        if jitter is None:
            cents = l2_normalize(np.stack([r.mean(axis=0) for r in real]))
            dists = [float(np.linalg.norm(a - b)) for i, a in enumerate(cents) for b in cents[i + 1:]]
            if dists:
                jitter = statistics.median(dists) / math.sqrt(2)
                how = f"median distance of {len(dists)} real video pairs' mean embeddings / sqrt(2)"
            else:
                jitter, how = 0.5, "fallback: one indexed video"

        # --- 3. index build, recall, search latency, engine scoring --------------------------
        x, meta, m_real = jittered_index(rng, real, names, n_vec, per_video, stride, jitter, args.frame_jitter)
        print(f"N vectors: {len(x):,} = {m_real} real frame embeddings (every frame of {len(real)} sample videos) "
              f"+ {len(x) - m_real:,} jittered copies ({meta['video'].nunique():,} videos of ~{per_video} frames; "
              f"per-video offset norm {jitter:.3f} ({how}), per-frame noise norm {args.frame_jitter}; seeded)")
        q_len = len(range(0, min(args.clip_frames, args.frames), fstride))
        queries = []
        for _ in range(args.queries):
            e = held[int(rng.integers(len(held)))]
            start = rng.integers(max(1, len(e) - (q_len - 1) * fstride))
            queries.append(e[start::fstride][:q_len])
        qall = np.concatenate(queries)
        print(f"queries: {len(queries)} of {q_len} held-out real frames each ({len(qall)} frames of "
              f"{len(held)} sample video(s) not in the index), k = {k}")
        kinds = ["flat", "hnsw"] + ([] if args.no_ivf else ["ivf"])
        indexes, exact = {}, None
        out["index"] = {"n": len(x), "n_real": m_real}
        for kind in kinds:
            idx, build_s = timed(EmbeddingIndex.build, x, meta, fingerprint={"bench": "echonet_scale"},
                                 config=IndexConfig(kind=kind, seed=args.seed, gpu=False))
            idx.search(queries[0], k)  # warm-up
            lat_q = [timed(idx.search, q, k)[1] for q in queries]
            _, ids = idx.search(qall, k)
            exact = ids if exact is None else exact
            rec = recall_at_k(ids, exact)
            med, p90 = med_p90(lat_q)
            indexes[kind] = idx
            print(f"index {kind}: build {build_s:.2f} s for {len(x):,} vectors; recall@{k} vs flat {rec:.4f} over "
                  f"{len(qall)} query frames; search of one {q_len}-frame query median {1e3 * med:.2f} ms, "
                  f"p90 {1e3 * p90:.2f} ms over {len(queries)} queries; params {idx.params}; "
                  f"peak RSS so far {peak_mb():.0f} MB")
            out["index"][kind] = {"build_s": build_s, "recall": rec, "search_median_s": med, "search_p90_s": p90,
                                  "params": idx.params}
        ws_kind = IndexConfig().resolved_kind(len(x))  # what a workspace build picks (auto)
        for kind in kinds:
            if kind != "flat":
                del indexes[kind]
        # The engine searches what a workspace build makes: IndexConfig() (auto), which for an
        # approximate kind raises nprobe until its own leave-one-video-out recall reaches the target.
        auto, auto_s = timed(EmbeddingIndex.build, x, meta, fingerprint={"bench": "echonet_scale"},
                             config=IndexConfig(seed=args.seed, gpu=False))
        auto.search(queries[0], k)
        auto_lat = med_p90([timed(auto.search, q, k)[1] for q in queries])
        auto_rec = recall_at_k(auto.search(qall, k)[1], exact)
        print(f"index auto ({auto.kind}, what a workspace builds): build {auto_s:.2f} s (recall measured and nprobe "
              f"tuned included); params {auto.params}; its own recall@{(auto.recall or {}).get('k', k)} "
              f"(leave-one-video-out, {(auto.recall or {}).get('queries', 0)} indexed frames) "
              f"{(auto.recall or {}).get('recall', 1.0):.4f}; recall@{k} vs flat on the held-out queries "
              f"{auto_rec:.4f}; search median {1e3 * auto_lat[0]:.2f} ms")
        out["index"]["auto"] = {"kind": auto.kind, "build_s": auto_s, "params": auto.params, "recall": auto.recall,
                                "heldout_recall": auto_rec, "search_median_s": auto_lat[0]}
        engine = AuditEngine(vae, reid, auto, x, engine_cfg)
        engine.score_embeddings(queries[0])
        t_score = [timed(engine.score_embeddings, q)[1] for q in queries]
        score_med, score_p90 = med_p90(t_score)

        demo_per_video = -(-DEMO_FRAMES // stride)
        xd, md, _ = jittered_index(np.random.default_rng([args.seed, 1]), real, names,
                                   DEMO_TRAIN_VIDEOS * demo_per_video, demo_per_video, stride, jitter, args.frame_jitter)
        demo = AuditEngine(vae, reid, EmbeddingIndex.build(xd, md, fingerprint={"bench": "demo"},
                                                           config=IndexConfig(gpu=False)), xd, engine_cfg)
        demo.score_embeddings(queries[0])
        demo_med, _ = med_p90([timed(demo.score_embeddings, q)[1] for q in queries])
        ratio = score_med / demo_med
        print(f"score_embeddings at N = {len(x):,} ({ws_kind}, auto's choice above {AUTO_FLAT_MAX:,}): median "
              f"{1e3 * score_med:.1f} ms, p90 {1e3 * score_p90:.1f} ms over {len(queries)} queries of {q_len} frames")
        print(f"score_embeddings at demo size ({len(xd):,} vectors = {DEMO_TRAIN_VIDEOS} videos x {demo_per_video}): "
              f"median {1e3 * demo_med:.1f} ms over {len(queries)} queries; ratio {ratio:.2f}x (floor <= 3x)")
        out["score_embeddings"] = {"n": len(x), "kind": ws_kind, "median_s": score_med, "p90_s": score_p90,
                                   "demo_n": len(xd), "demo_median_s": demo_med, "ratio": ratio,
                                   "n_queries": len(queries)}
        del demo, xd, md

        # --- 5. synthetic clips: per-video breakdown, dashboard query, audit_synthetic_set ---
        syn, syn_render_s = timed(lambda: phantom_set(tmp / "synthetic", args.sample_synthetic, args.clip_frames,
                                                      args.clip_fps, args.seed + 1))
        keep = -(-spec.frames // fstride)
        parts = {"decode": [], "encode+embed": [], "score": []}
        dash = []
        for rep in range(max(args.queries, len(syn)) + 1):
            i = rep % len(syn)
            clip_video, d_s = timed(syn.load, i, size=112, fps=spec.fps, frame_step=fstride)
            e, e_s = timed(engine.embed_frames, clip_video.frames[:keep])
            _, s_s = timed(lambda e=e: (engine.score_embeddings(e), engine.temporal_curves(e)))

            def upload(i=i):  # the dashboard: decode the whole upload, conform, score_frames
                full = syn.load(i, size=112)
                return engine.score_frames(conform_clip(full.frames, full.fps, spec))
            _, q_s = timed(upload)
            if rep == 0:
                continue  # warm-up
            if rep <= len(syn):
                for key, s in zip(parts, (d_s, e_s, s_s)):
                    parts[key].append(s)
            dash.append(q_s)
        per = {key: statistics.mean(s) for key, s in parts.items()}
        dash_med, dash_p90 = med_p90(dash)
        print(f"synthetic clip, per video (mean over {len(syn)} phantom clips of {spec.describe()}, rendering "
              f"{syn_render_s:.1f} s not counted): decode {1e3 * per['decode']:.1f} ms + encode+embed {keep} frames "
              f"{1e3 * per['encode+embed']:.1f} ms + score and temporal curves {1e3 * per['score']:.1f} ms = "
              f"{1e3 * sum(per.values()):.1f} ms ({1 / sum(per.values()):.1f} videos/s sequential)")
        print(f"dashboard query (upload of a {spec.frames}-frame clip -> verdict: decode + encode + embed + score at "
              f"N = {len(x):,}): median {dash_med:.3f} s, p90 {dash_p90:.3f} s over {len(dash)} queries "
              f"(floor: median <= 0.3 s at 330k frames)")
        out["synthetic_per_video_s"] = per
        out["dashboard_query"] = {"median_s": dash_med, "p90_s": dash_p90, "n": len(dash), "n_index": len(x)}

        (_, syn_s) = timed(lambda: audit_synthetic_set(engine, syn, "sample", clip=spec))
        syn_rate = len(syn) / syn_s
        (_, held_s) = timed(lambda: audit_synthetic_set(engine, ds, "heldout", clip=spec, temporal_videos=[]))
        held_rate = len(ds) / held_s
        print(f"held-out calibration (audit_synthetic_set, {args.frames}-frame {args.fps:g} fps videos conformed to "
              f"the clip): {held_rate:.1f} videos/s over {len(ds)} videos -> {args.n_heldout} videos "
              f"{args.n_heldout / held_rate / 3600:.2f} h (extrapolated)")
        print(f"synthetic audit (audit_synthetic_set, temporal curves for every video): {syn_rate:.1f} videos/s over "
              f"{len(syn)} clips -> {args.n_synthetic} videos {args.n_synthetic / syn_rate / 3600:.2f} h "
              f"(extrapolated; floor >= 10 videos/s on 2 cores); peak RSS so far {peak_mb():.0f} MB")
        out["heldout"] = {"videos_per_s": held_rate, "n_sample": len(ds), "n": args.n_heldout}
        out["synthetic"] = {"videos_per_s": syn_rate, "n_sample": len(syn), "n": args.n_synthetic}

    # --- 6. not measured ----------------------------------------------------------------------
    print("dashboard pages: timed by bench/page_speed.py (every page opened on a workspace with 10,000 synthetic "
          "videos)")

    # --- headline -------------------------------------------------------------------------------
    stages_h = {
        "training frames decode+encode+embed": args.n_train * train_video_s / 3600,
        f"index build ({ws_kind}, auto)": out["index"]["auto"]["build_s"] / 3600,
        "held-out calibration": args.n_heldout / held_rate / 3600,
        "synthetic audit": args.n_synthetic / syn_rate / 3600,
    }
    total = sum(stages_h.values())
    out["stages_h"], out["total_h"], out["jitter"] = stages_h, total, jitter
    out["train_embed_s_per_video"] = train_video_s
    out["peak_rss_mb"] = peak_mb()
    print("breakdown (hours): " + "; ".join(f"{k_} {v:.3f}" for k_, v in stages_h.items()))
    print(f"seconds: {time.time() - t_start:.0f}; peak RSS {peak_mb():.0f} MB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=str))
    print(f"headline: {'[SMOKE, not an estimate] ' if args.smoke else ''}full EchoNet-size workspace build + "
          f"{args.n_synthetic:,}-video audit on {args.threads} thread(s): {total:.2f} h (extrapolated from samples: "
          f"{len(ds)} EchoNet-length videos, {len(syn)} synthetic clips; index measured at N = {len(x):,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
