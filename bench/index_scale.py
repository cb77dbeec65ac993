"""Build and search EmbeddingIndex at 100k and 1M synthetic embeddings.

Data: 128-d unit vectors around ``--clusters`` random unit centres (noise of norm ~``--spread``),
a stand-in for re-ID embeddings where the frames of one video/patient form a tight cluster.
Queries are fresh draws from the same clusters (not stored vectors), like synthetic videos
that resemble training ones. For each size it times the exact ``flat`` index and the
approximate kind ``auto`` picks beyond 1M vectors, and reports recall@k of the latter against
the exact result. One labelled line per measurement, the headline last.

    OMP_NUM_THREADS=2 python bench/index_scale.py            # ~1-3 minutes on 2 cores, ~2.5 GB RAM
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from echoaudit.index import AUTO_FLAT_MAX, EmbeddingIndex, IndexConfig, l2_normalize  # noqa: E402


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float, block: int = 200_000):
    """(n, D) float32 unit vectors: centre + spread * N(0, I/D), normalised; built in blocks to bound RAM."""
    d = centres.shape[1]
    out = np.empty((n, d), np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        labels = rng.integers(0, len(centres), stop - start)
        noise = rng.standard_normal((stop - start, d), dtype=np.float32) * np.float32(spread / np.sqrt(d))
        out[start:stop] = l2_normalize(centres[labels] + noise)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def recall_at_k(got: np.ndarray, want: np.ndarray) -> float:
    k = want.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, want)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=5000)
    ap.add_argument("--spread", type=float, default=0.5)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    approx_kind = IndexConfig().resolved_kind(AUTO_FLAT_MAX + 1)

    rng = np.random.default_rng(args.seed)
    centres = l2_normalize(rng.standard_normal((args.clusters, args.dim), dtype=np.float32))
    queries = clustered(rng, centres, args.queries, args.spread)
    print(f"setup: dim={args.dim} clusters={args.clusters} spread={args.spread} queries={args.queries} "
          f"k={args.k} faiss_threads={faiss.omp_get_max_threads()} gpus={faiss.get_num_gpus()} "
          f"auto_beyond_{AUTO_FLAT_MAX}={approx_kind}")
    rows = []
    for n in args.sizes:
        x, gen_s = timed(lambda: clustered(rng, centres, n, args.spread))
        meta = pd.DataFrame({"video": np.arange(n) // 32, "frame": np.arange(n) % 32})
        exact = None
        for kind in ("flat", approx_kind):
            cfg = IndexConfig(kind=kind, seed=args.seed)
            index, build_s = timed(lambda: EmbeddingIndex.build(x, meta, fingerprint={"bench": n}, config=cfg))
            (_, ids), search_s = timed(lambda: index.search(queries, args.k))
            if exact is None:
                exact = ids
            row = dict(n=n, kind=kind, build_s=build_s, qps=args.queries / search_s,
                       recall=recall_at_k(ids, exact), params=index.params)
            rows.append(row)
            print(f"index_scale n={n} kind={kind} params={index.params} build_s={build_s:.2f} "
                  f"search_s={search_s:.3f} queries_per_s={row['qps']:.0f} recall@{args.k}={row['recall']:.4f} "
                  f"(data gen {gen_s:.1f}s)", flush=True)
            del index
        del x
    big = max(r["n"] for r in rows)
    flat = next(r for r in rows if r["n"] == big and r["kind"] == "flat")
    appr = next(r for r in rows if r["n"] == big and r["kind"] == approx_kind)
    print(f"HEADLINE: at {big:,} x {args.dim}-d, {approx_kind} (auto's choice beyond {AUTO_FLAT_MAX:,}) answers "
          f"{appr['qps']:.0f} queries/s vs exact flat {flat['qps']:.0f} ({appr['qps'] / flat['qps']:.1f}x) "
          f"at recall@{args.k}={appr['recall']:.3f}; build {appr['build_s']:.1f}s vs {flat['build_s']:.1f}s "
          f"on {args.threads} CPU threads")


if __name__ == "__main__":
    main()
