"""Time the learned-video estimator at audit scale: n = 10^6 synthetic videos, N = 10^5
training videos, k from a simulated uniform draw over s_true learned videos.

Run:  python bench/recall_estimator.py [--seed 0] [--repeats 7]

Prints one labelled line per figure; the headline (median wall time of
`estimate_learned`, budget 1 s) comes last. Exit status 1 if the budget is exceeded.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from echoaudit.audit.occupancy import estimate_learned, expected_distinct, log_occupancy_pmf

BUDGET_S = 1.0


def _simulated_k(rng: np.random.Generator, s: int, n: int) -> int:
    """Distinct videos hit by n uniform draws over s videos."""
    return int(np.count_nonzero(np.bincount(rng.integers(0, s, size=n), minlength=s)))


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    N, n = 10**5, 10**6
    print(f"setup: N={N} training videos, n={n} synthetic videos, median of {args.repeats} runs")

    # 30 % learned: the upper end of what the paper's generators reached.
    s_true = 30_000
    start = time.perf_counter()
    k = _simulated_k(rng, s_true, n)
    print(f"simulated draw, s_true={s_true}: k={k} distinct hit "
          f"(E[k]={expected_distinct(n, s_true):.1f}) in {time.perf_counter() - start:.3f} s")

    t_pmf, _ = _median_time(lambda: log_occupancy_pmf(np.arange(k - 50, k + 1), s_true, n), args.repeats)
    print(f"log_occupancy_pmf (normal approximation, 51 values of k): {t_pmf:.4f} s")

    t_est, est = _median_time(lambda: estimate_learned(k, n, N), args.repeats)
    verdict = "ok" if t_est < BUDGET_S else "OVER"
    print(f"estimate: {t_est:.4f} s (s_hat={est.s_hat}, 95 % interval [{est.s_low}, {est.s_high}], "
          f"s_true={s_true}; budget {BUDGET_S:g} s: {verdict})")
    return 0 if t_est < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
