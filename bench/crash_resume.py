"""Crash safety at many kill points: SIGKILL each long command at N seeded random moments
after it has made progress, run it again, and count what held.

Commands (tiny inputs made here, as in tests/test_crash.py; see tests/crashkit.py):
``echoaudit index`` (3 chunks, over an older index), ``generate --overwrite`` (3 batches,
over an older set), ``audit --synthetic --name g`` (replacing a workspace's set) and
``demo`` (the whole demo workspace build). For each kill:

- killed: the process was still running at its kill point (else it had finished);
- readable: the previous state (or the new one, complete) read back intact during and
  after the kill;
- rerun: the same command run again completed; equal: its result equals an
  uninterrupted run's (bytes, or values where noted in crashkit);
- resumed: the rerun started from the chunks / batches the killed run had finished;
- leftovers: temporary files or folders left once the rerun was done.

One labelled line per command, the headline last. Each kill starts a Python process
(~5-15 s of imports on two cores):

    .venv/bin/python bench/crash_resume.py              # 10 kills per command, ~10 min
    .venv/bin/python bench/crash_resume.py --kills 3 --commands index,generate
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from crashkit import SCENARIOS, make_inputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10, help="kill points per command (seeds first-seed ...)")
    ap.add_argument("--commands", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    ap.add_argument("--first-seed", type=int, default=100, help="seed of the first kill point (the tests use 0, 1)")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.commands.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        ap.error(f"unknown command(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crash_resume-")))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            inputs = make_inputs(work / "inputs")
        print(f"inputs: tiny phantom sets and micro models in {time.time() - t0:.0f} s", flush=True)
        total, held, not_killed, bad_unkilled = 0, 0, 0, 0
        for name in names:
            scenario = SCENARIOS[name](inputs, work / name)
            reports = []
            t1 = time.time()
            for seed in range(args.first_seed, args.first_seed + args.kills):
                with contextlib.redirect_stdout(io.StringIO()):
                    rep = scenario.kill_and_rerun(seed)
                reports.append(rep)
                if not rep.ok:
                    print(f"  {name} seed {seed}: FAILED killed={rep.killed} state={rep.state_at_kill!r} "
                          f"diff={rep.diff} left={rep.left} problems={rep.problems}", flush=True)
            killed = [r for r in reports if r.killed]
            n = len(killed)
            states = Counter(r.state_at_kill for r in killed)
            resumed = sum(1 for r in killed if r.resumable)
            print(f"{name}: kills {n}/{len(reports)} (the rest had finished), "
                  f"previous state readable {sum(r.readable for r in killed)}/{n}, "
                  f"reruns completed {sum(r.rerun_ok for r in killed)}/{n}, "
                  f"equal to uninterrupted {sum(r.equal for r in killed)}/{n}, "
                  f"resumed from finished parts {resumed}/{n}, "
                  f"leftovers {sum(len(r.left) for r in reports)}; "
                  f"state at kill: {', '.join(f'{s} {c}' for s, c in sorted(states.items()))}; "
                  f"delay after progress {min((r.delay for r in killed), default=0):.2f}-"
                  f"{max((r.delay for r in killed), default=0):.2f} s; {time.time() - t1:.0f} s", flush=True)
            total += n
            held += sum(r.ok for r in killed)
            not_killed += len(reports) - n
            bad_unkilled += sum(not r.ok for r in reports if not r.killed)
    print(f"crash safety: {held}/{total} SIGKILLs recovered (previous state readable, rerun completed, equal to an "
          f"uninterrupted run, no leftovers) over {len(names)} commands; {not_killed} runs finished before their "
          f"kill point ({bad_unkilled} of them failed a check); {time.time() - t0:.0f} s", flush=True)
    return 0 if held == total and not bad_unkilled else 1


if __name__ == "__main__":
    sys.exit(main())
