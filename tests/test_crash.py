"""Crash safety, proven by SIGKILL (issue 15 part 4).

``echoaudit index``, ``generate``, ``audit`` and ``demo`` each run as their own process
on tiny inputs and are SIGKILLed at a seeded random moment after they have made progress
(tests/crashkit.py). Each time: what was there before stays readable during and after
the kill (the old index / set / workspace, or the new one complete, never a mix); the
rerun completes, resumes from the finished chunks / batches, and its result equals an
uninterrupted run's; no temporary file or folder is left. bench/crash_resume.py does the
same at more kill points. Reviewer decisions have their own kill test (test_review.py).

Below them, the file-level pieces at exact kill points: atomic_dir's swap, the cleanup
of a killed writer's temporaries, and a synthetic set replaced in a workspace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from crashkit import ENV, REPO, SCENARIOS, AuditScenario, make_inputs

from echoaudit import fileio


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("crash_inputs"))


@pytest.fixture(scope="module")
def scenarios(inputs, tmp_path_factory):
    return {name: cls(inputs, tmp_path_factory.mktemp(f"crash_{name}")) for name, cls in SCENARIOS.items()}


# Kill points per command (seeds of the delay after the first sign of progress). Each
# kill costs a process start (~7 s of imports on two cores), hence few; the bench does more.
SEEDS = {"index": [0, 1], "generate": [0, 1], "audit": [0], "demo": [0, 1]}


@pytest.mark.parametrize(("name", "seed"), [(n, s) for n, seeds in SEEDS.items() for s in seeds])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(scenarios, name, seed):
    scenario = scenarios[name]
    rep = scenario.kill_and_rerun(seed)
    if not rep.killed:  # the machine was faster than the window: kill sooner rather than test nothing
        rep = scenario.kill_and_rerun(seed, scale=0.25)
    assert rep.killed, f"{name}: the command finished before every kill point; log:\n{rep.log[-2000:]}"
    print(f"{name} seed {seed}: killed {rep.delay:.2f} s after progress; left {rep.state_at_kill!r} "
          f"with {rep.resumable} finished part(s) to resume from")
    assert rep.readable, f"{name}: the previous state was unreadable during or after the kill: {rep.problems}"
    assert rep.rerun_ok, f"{name}: {rep.problems}\nkilled run's log:\n{rep.log[-2000:]}"
    assert rep.equal, f"{name}: the rerun's result differs from an uninterrupted run's in {rep.diff}"
    assert not rep.left, f"{name}: left behind after the rerun: {rep.left}"
    assert not rep.problems, rep.problems


# --------------------------------------------------------------------------- exact kill points

_SWAP = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from echoaudit import fileio

    target, k = Path(sys.argv[1]), int(sys.argv[2])
    calls = [0]

    def kill_before(fn):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return wrapped

    # every step of atomic_dir that changes what is at `target` or beside it
    fileio.os.replace = kill_before(os.replace)
    fileio._exchange = kill_before(fileio._exchange)
    fileio.shutil.rmtree = kill_before(fileio.shutil.rmtree)
    with fileio.atomic_dir(target) as tmp:
        (tmp / "v").write_text("new")
    calls[0] = -100
""")


def test_atomic_dir_leaves_the_old_or_the_new_folder_at_every_kill_point(tmp_path):
    """SIGKILL before each step of replacing a folder: the folder is always there, old or
    new (before the fix the old one was renamed aside first: killed then, no folder at
    all); the next writer removes what the killed one left."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (tmp_path / "other").mkdir()
    if not fileio._exchange(probe, tmp_path / "other"):
        pytest.skip("this file system cannot swap two folders in one step (renameat2)")
    for k in range(1, 5):
        target = tmp_path / f"k{k}" / "d"
        target.mkdir(parents=True)
        (target / "v").write_text("old")
        proc = subprocess.run([sys.executable, "-c", _SWAP, str(target), str(k)], env=ENV, cwd=REPO,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        assert (target / "v").read_text() in ("old", "new"), f"kill point {k}: the folder is gone"
        fileio._swept.clear()  # as a new process
        with fileio.atomic_dir(target) as tmp:
            (tmp / "v").write_text("again")
        assert sorted(p.name for p in target.parent.iterdir()) == ["d"], f"kill point {k}: leftovers"
        assert (target / "v").read_text() == "again"


_HALF = textwrap.dedent("""
    import os, signal, sys
    from echoaudit.fileio import atomic_path

    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_writers_temporary_is_removed_by_the_next_writer_only(tmp_path):
    folder = tmp_path / "f"
    fileio.write_json(folder / "a.json", {"v": 1})
    proc = subprocess.run([sys.executable, "-c", _HALF, str(folder / "a.json")], env=ENV, cwd=REPO,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    [dead] = [p.name for p in folder.iterdir() if fileio.is_temp_name(p.name)]
    live = f".b.tmp-{fileio._HOST}-1-abcdefgh.json"  # pid 1 runs: a writer still at work
    remote = ".c.tmp-000000-123-abcdefgh.json"  # another host's (shared file system): not ours to judge
    for name in (live, remote):
        (folder / name).write_text("x")
    assert json.loads((folder / "a.json").read_text()) == {"v": 1}  # the killed write changed nothing
    fileio._swept.clear()  # as a new process
    fileio.write_json(folder / "z.json", {"v": 2})
    assert sorted(p.name for p in folder.iterdir()) == sorted([live, remote, "a.json", "z.json"]), dead


def test_a_replaced_synthetic_set_stays_whole_until_the_manifest_switches(inputs, tmp_path, monkeypatch):
    """add_synthetic_set over an existing set, stopped just before it writes the manifest
    (where a SIGKILL in its last steps lands): the workspace still shows the old set whole.
    Before the fix, the old manifest entry was left over the new set's scores."""
    from echoaudit import build
    from echoaudit.workspace import MANIFEST, Workspace

    run = tmp_path / "run"
    scenario = AuditScenario(inputs, tmp_path)
    scenario.prepare(run)
    old = scenario._set_digest(run)
    real = build.write_json

    def crash_at_manifest(path, obj):
        if os.path.basename(path) == MANIFEST:
            raise KeyboardInterrupt("killed before the manifest")
        real(path, obj)

    monkeypatch.setattr(build, "write_json", crash_at_manifest)
    with pytest.raises(KeyboardInterrupt):
        build.add_synthetic_set(Workspace(run / "ws"), "g", inputs.syn_b)
    assert scenario._set_digest(run) == old
    monkeypatch.setattr(build, "write_json", real)
    build.add_synthetic_set(Workspace(run / "ws"), "g", inputs.syn_b)  # the rerun
    ws = Workspace(run / "ws")
    assert ws.synthetic("g").root.resolve() == inputs.syn_b.resolve() and scenario._set_digest(run) != old
    assert set(ws.synthetic_scores("g")["query"]) == set(ws.synthetic("g").names)
    tables = ws.manifest["scores"]
    listed = {tables["heldout"], tables["reid_roc"], *tables["temporal"], *tables["video_embeddings"],
              *tables["first_frames"].values(), *(v for k, v in tables.items() if k.startswith("synthetic_"))}
    assert {f"scores/{p.name}" for p in (run / "ws" / "scores").iterdir()} == listed  # the old set's files are gone


def test_inputs_are_small(inputs):
    """The kill tests rely on several chunks / batches: 132 training videos = 3 chunks of 64."""
    from echoaudit.data.echonet import EchoNetDataset

    assert len(EchoNetDataset.open(inputs.index_data).split("TRAIN")) > 128
