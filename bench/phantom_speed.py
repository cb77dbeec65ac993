"""Phantom generation speed: the default demo set (500 videos of 64 frames at 112x112).

Usage: python bench/phantom_speed.py [--patients 125 --videos-per-patient 4]
Prints videos/s and the total time; the floor is under 120 s on 2 CPU cores.
"""

import argparse
import tempfile
import time
from pathlib import Path

from echoaudit.data.phantom import PhantomConfig, generate_phantom


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=125)
    ap.add_argument("--videos-per-patient", type=int, default=4)
    ap.add_argument("--view", default="a4c")
    args = ap.parse_args()
    cfg = PhantomConfig(n_patients=args.patients, videos_per_patient=args.videos_per_patient, view=args.view)
    n = cfg.n_patients * cfg.videos_per_patient
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = generate_phantom(Path(tmp) / "ds", cfg)
        dt = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
    print(f"videos: {n} x {cfg.frames} frames at {cfg.size}x{cfg.size} ({cfg.view})")
    print(f"disk: {size_mb:.0f} MB")
    print(f"speed: {n / dt:.2f} videos/s")
    print(f"total: {dt:.1f} s (floor: under 120 s)")


if __name__ == "__main__":
    main()
