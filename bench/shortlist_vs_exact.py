"""Shortlist vs exact scoring: same memorization flag on how many query videos, and how
many head evaluations each needs. Queries: real held-out videos, every synthetic video of
the workspace, and planted copies of training videos (noise, brightness, shift, temporal crop, re-encoding).

Usage: python bench/shortlist_vs_exact.py [--workspace demo_workspace] [--queries 120]
Floor: same flag on >= 99 % of queries with >= 20x fewer head evaluations.
"""

import argparse

import numpy as np

from echoaudit.planted import COPY_KINDS, plant_copy
from echoaudit.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default="demo_workspace")
    ap.add_argument("--queries", type=int, default=120)
    args = ap.parse_args()
    ws = Workspace(args.workspace)
    eng = ws.engine
    thr = ws.threshold(95.0).value
    rng = np.random.default_rng(0)
    sets = [("held-out", ws.heldout)] + [(g, ws.synthetic(g)) for g in ws.synthetic_names] + [("copy", ws.train)]
    per_set = max(1, args.queries // len(sets))
    same, short_calls, exact_calls = [], 0, 0
    for label, ds in sets:
        for i in rng.permutation(len(ds))[:per_set]:
            x = ds.load(int(i), size=ws.size).frames
            if label == "copy":
                x = plant_copy(x, COPY_KINDS[int(i) % len(COPY_KINDS)], rng)
            emb = eng.embed_frames(x[:: eng.config.frame_stride])
            a, b = eng.score_embeddings(emb), eng.score_embeddings(emb, exact=True)
            same.append((a.per_train["score"].iloc[0] >= thr) == (b.per_train["score"].iloc[0] >= thr))
            short_calls += a.head_evaluations
            exact_calls += b.head_evaluations
    n_train = ws.train.table.shape[0]
    print(f"training set: {n_train} videos, {ws.index.ntotal} indexed frames; threshold {thr:.4f}")
    print(f"queries: {len(same)} ({per_set} per set: {', '.join(s for s, _ in sets)})")
    print(f"head evaluations: shortlist {short_calls}, exact {exact_calls}")
    print(f"same flag: {100 * np.mean(same):.1f} % of queries (floor 99 %)")
    print(f"ratio: {exact_calls / short_calls:.1f}x fewer head evaluations (floor 20x)")


if __name__ == "__main__":
    main()
