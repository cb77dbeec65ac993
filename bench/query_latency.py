"""Query latency: one 32-frame upload (AVI bytes) against the demo index, VAE encoding
included: decode -> resize -> encode -> embed -> FAISS shortlist -> head rescoring.

Usage: python bench/query_latency.py [--workspace demo_workspace] [--repeats 15]
Floor: median under 1 s on 2 CPU cores.
"""

import argparse
import statistics
import time

from echoaudit.data.video import load_video, write_video
from echoaudit.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default="demo_workspace")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()
    ws = Workspace(args.workspace)
    _ = ws.engine  # load models and index once, as the app's cache does
    frames = ws.heldout.load(0, size=ws.size).frames[: args.frames]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        data = write_video(Path(tmp) / "upload.avi", frames, 50.0).read_bytes()
    times = []
    for _ in range(args.repeats + 1):
        t0 = time.perf_counter()
        video = load_video(data, extension=".avi", size=ws.size)
        result = ws.query(video.frames, "upload")
        times.append(time.perf_counter() - t0)
    times = times[1:]  # the first call warms up torch kernels
    print(f"index: {ws.index.ntotal} training frames ({ws.index.kind})")
    print(f"query: {len(frames)} frames, every {ws.engine.config.frame_stride}nd queried, k={ws.engine.config.k}")
    print(f"head evaluations: {result.head_evaluations}")
    print(f"p90: {sorted(times)[int(0.9 * (len(times) - 1))]:.3f} s")
    print(f"median latency: {statistics.median(times):.3f} s (floor: under 1 s)")


if __name__ == "__main__":
    main()
