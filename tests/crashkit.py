"""Kill a command with SIGKILL at a seeded moment, run it again, and check what is left.

Shared by tests/test_crash.py and bench/crash_resume.py. Each :class:`Scenario` is one
long-running CLI command on tiny inputs (:func:`make_inputs`: a few phantom videos and
models trained for a step or two; weak on purpose, only the code paths matter):

- ``index``     ``echoaudit index`` over 130+ training videos: three chunks of 64
                (the CLI's chunk size), over an older index already in ``--out``;
- ``generate``  ``echoaudit generate --overwrite`` of 48 videos (three batches of 16)
                over an older synthetic set;
- ``audit``     ``echoaudit audit --synthetic ... --name g`` replacing the workspace's
                set ``g`` with another folder;
- ``demo``      ``echoaudit demo`` building the demo workspace from micro assets.

:meth:`Scenario.kill_and_rerun` lays down the previous state, starts the command as its
own process (``python -m echoaudit``, in a new session so that worker processes die
with it), waits until it has made progress, waits a seeded random part of the time an
uninterrupted run takes, and SIGKILLs the process group. While it runs and after the
kill, the previous state must stay readable (the old index / set / workspace, or the
new one complete). Then the same command runs again (in this process: cheaper, and the
same code) and must complete with a result equal to an uninterrupted run's, leaving no
temporary file or folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# A build's lock file stays by design (an flock, released when the process ends).
ALLOWED_HIDDEN = {".build.lock"}


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "echoaudit", *map(str, args)]


# --------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    root: Path
    data: Path  # small phantom set (TRAIN / VAL / TEST): models, workspace, demo
    index_data: Path  # 130+ TRAIN videos: the index command
    vae: Path
    reid: Path
    gen: Path
    ws: Path  # a complete workspace with one synthetic set "g"
    syn_b: Path  # another synthetic set (seed 1) that the audit scenario puts in as "g"
    assets: Path  # demo assets (demo.json + the micro models)


def _phantom_configs():
    from echoaudit.data.phantom import PhantomConfig

    small = PhantomConfig(n_patients=12, videos_per_patient=2, frames=6, fps=25.0, size=SIZE, seed=0)
    # 90 % TRAIN: 132 training videos = chunks of 64, 64 and 4 at the CLI's chunk size.
    index = PhantomConfig(n_patients=38, videos_per_patient=4, frames=4, fps=25.0, size=SIZE, seed=1,
                          split_fractions=(0.9, 0.05, 0.05))
    return small, index


def make_inputs(root: Path) -> Inputs:
    """Phantom data, micro models (a step or two of training), a workspace and demo assets."""
    import torch

    from echoaudit.build import BuildConfig, create_workspace
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.data.phantom import generate_phantom
    from echoaudit.engine import EngineConfig
    from echoaudit.generate import generate_dataset
    from echoaudit.latents import encode_dataset
    from echoaudit.models.vae import FrameVAE
    from echoaudit.train.diffusion import DiffusionTrainConfig, train_diffusion
    from echoaudit.train.reid import LatentPairSource, ReIDTrainConfig, train_reid
    from echoaudit.train.vae import VAETrainConfig, sample_frames, train_vae

    root = Path(root)
    torch.manual_seed(0)
    small_cfg, index_cfg = _phantom_configs()
    data = generate_phantom(root / "data", small_cfg)
    index_data = generate_phantom(root / "index_data", index_cfg)
    ds = EchoNetDataset.open(data)
    frames = sample_frames(ds.split("TRAIN"), frames_per_video=2, seed=0, size=SIZE)
    train_vae(frames, frames[:8], root / "vae", VAETrainConfig(steps=2, batch_size=8, eval_every=2,
                                                                block_out_channels=(8, 16, 16, 16), crop=None))
    vae = FrameVAE.from_pretrained(root / "vae" / "best")
    cache = encode_dataset(ds, vae, root / "latents", size=SIZE, augment_copies=1)
    source = LatentPairSource(np.asarray(cache.latents), np.asarray(cache.augmented), cache.table,
                              fingerprint=cache.vae_fingerprint, augment_stride=cache.augment_stride)
    train_reid(source, root / "reid", ReIDTrainConfig(epochs=1, pairs_per_epoch=64, batch_size=32, width=8,
                                                      embed_dim=16, head_hidden=16, val_pairs=32, patience=1))
    train = (cache.table["Split"] == "TRAIN").to_numpy()
    train_diffusion(np.asarray(cache.latents)[train], cache.table.loc[train, "EF"].to_numpy(), root / "gen",
                    DiffusionTrainConfig(steps=1, batch_size=2, num_frames=4, frame_stride=1,
                                         block_out_channels=(32, 32), warmup=1, seed=0),
                    fps=small_cfg.fps, vae_fingerprint=cache.vae_fingerprint, view=small_cfg.view)
    m = {"vae": root / "vae" / "best", "reid": root / "reid" / "best", "gen": root / "gen" / "best"}
    build = {"n_synthetic": 3, "synthetic_frames": 4, "steps": 2, "top": 5, "temporal_heldout": 4,
             "engine": {"size": SIZE, "k": 8, "index_stride": 2, "frame_stride": 2}}
    cfg = BuildConfig(**{k: v for k, v in build.items() if k != "engine"}, engine=EngineConfig(**build["engine"]))
    ws = create_workspace(root / "ws", data=data, vae=m["vae"], reid=m["reid"], generators={"g": m["gen"]}, cfg=cfg)
    syn_b = generate_dataset(m["gen"], vae, root / "syn_b", n=5, seed=1, steps=2, num_frames=4)
    assets = root / "assets"
    assets.mkdir()
    spec = {"phantom": {k: getattr(small_cfg, k) for k in ("n_patients", "videos_per_patient", "frames", "fps",
                                                             "size", "seed", "view")},
            "build": build, "vae": str(m["vae"]), "reid": str(m["reid"]),
            "generators": {"a": str(m["gen"]), "b": str(m["gen"])}}
    (assets / "demo.json").write_text(json.dumps(spec))
    return Inputs(root=root, data=data, index_data=index_data, ws=ws.root, syn_b=syn_b, assets=assets, **m)


# --------------------------------------------------------------------------- comparing


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canon_frame(df: pd.DataFrame) -> str:
    """A digest of a table that is equal exactly when columns, dtypes and every value are
    (floats by their shortest exact repr; list / array cells element by element)."""
    out = df.reset_index(drop=True).copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = [json.dumps(np.asarray(v).tolist()) if isinstance(v, (list, tuple, np.ndarray)) else repr(v)
                      for v in out[c]]
    head = json.dumps([list(map(str, df.columns)), [str(t) for t in df.dtypes]])
    return _sha((head + "\n" + out.to_csv(index=False, float_format=None)).encode())


def files_digest(folder: Path, pattern: str = "*") -> dict[str, str]:
    """{relative path: sha256} of the files under ``folder`` matching ``pattern``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): _sha(p.read_bytes()) for p in sorted(folder.rglob(pattern)) if p.is_file()}


def index_digest(folder: Path) -> dict[str, str]:
    """The saved index: the FAISS file (vectors, exact), the metadata table and the record.

    index.json names the sha256 of metadata.parquet; the parquet bytes can differ between
    a resumed build (metadata read back from parquet chunks) and an uninterrupted one
    (metadata from memory) while the table is the same, so the table is compared by value
    and the record without that hash."""
    from echoaudit.index import EmbeddingIndex

    index = EmbeddingIndex.load(folder)
    record = json.loads((Path(folder) / "index.json").read_text())
    record["files"].pop("metadata.parquet")
    return {"index.faiss": _sha((Path(folder) / "index.faiss").read_bytes()),
            "metadata": canon_frame(index.metadata), "index.json": _sha(json.dumps(record, sort_keys=True).encode())}


def dataset_digest(folder: Path) -> dict[str, str]:
    """A synthetic / phantom set: FileList.csv, generator.json and every video, bytes
    (generation is seeded per video and ffmpeg writes bitexact: same frames, same bytes).
    generator.json is compared without ``checkpoint``, the generator folder's absolute
    path (in a workspace: under that workspace's root); its sha256 is compared."""
    out = files_digest(folder)
    meta = Path(folder) / "generator.json"
    if meta.is_file():
        rec = json.loads(meta.read_text())
        rec.pop("checkpoint", None)
        out["generator.json"] = _sha(json.dumps(rec, sort_keys=True).encode())
    return out


def workspace_digest(root: Path) -> dict[str, str]:
    """Everything a workspace holds, by value: the manifest (less its wall-clock fields:
    created, build seconds and timings), every table it lists, the index, the models,
    the data and synthetic sets. Table file names are not compared, their contents are
    (a replaced set alternates between two file names)."""
    from echoaudit.workspace import Workspace

    ws = Workspace(root)
    m = json.loads(json.dumps(ws.manifest))
    m.pop("created", None)
    m.get("build", {}).pop("seconds", None)
    m.get("build", {}).pop("timings", None)
    m["scores"] = sorted(m.get("scores", {}))  # which tables, not their file names
    out = {"manifest": _sha(json.dumps(m, sort_keys=True).encode())}
    for key in ("heldout", "temporal", "video_embeddings", "reid_roc"):
        out[f"table:{key}"] = canon_frame(ws._table(key))
    for name in ws.synthetic_names:
        out[f"table:synthetic_{name}"] = canon_frame(ws.synthetic_scores(name))
        names, emb = ws.first_frames(name)
        out[f"first_frames:{name}"] = _sha(json.dumps(names).encode() + emb.tobytes())
        out.update({f"synthetic/{name}/{k}": v for k, v in dataset_digest(ws.synthetic(name).root).items()})
    out.update({f"index/{k}": v for k, v in index_digest(ws.path(ws.manifest["index"]["path"])).items()})
    out.update({f"models/{k}": v for k, v in files_digest(ws.root / "models").items()})
    out.update({f"data/{k}": v for k, v in files_digest(ws.dataset.root).items()})
    return out


def differences(got: dict[str, str], want: dict[str, str]) -> list[str]:
    return sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders (fileio's naming), resumable work not cleaned up (an
    index's ``partial/``, a generation's ``.<set>.partial``) and any other hidden entry
    under ``folder``."""
    from echoaudit.fileio import is_temp_name

    bad = []
    for p in sorted(Path(folder).rglob("*")):
        name = p.name
        if name in ALLOWED_HIDDEN:
            continue
        if is_temp_name(name) or name.startswith(".") or (name == "partial" and p.is_dir()):
            bad.append(str(p.relative_to(folder)))
    return bad


# --------------------------------------------------------------------------- running


def run_here(argv: list) -> tuple[float, str]:
    """Run the CLI in this process, as a fresh process would (one torch thread, no folder
    swept yet). Returns (seconds, what it wrote to stderr). Raises AssertionError unless
    it exits 0."""
    import torch

    from echoaudit import fileio
    from echoaudit.cli import main

    fileio._swept.clear()  # a new process removes stale temporaries on its first write into a folder
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed process (OMP_NUM_THREADS=1): float results depend on it
    err = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err):
            rc = main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, f"echoaudit {' '.join(map(str, argv))} exited {rc}: {err.getvalue()[-2000:]}"
    return time.perf_counter() - t0, err.getvalue()


@dataclass
class KillReport:
    scenario: str
    seed: int
    killed: bool = False  # False: the command ended before the kill point
    delay: float = 0.0  # seconds between the first sign of progress and the kill
    state_at_kill: str = ""  # what the killed run left: "old", "new" or another word of the scenario's
    resumable: int = 0  # finished parts (chunks, batches) the killed run left for the rerun
    readable: bool = True  # the previous (or new, complete) state was readable throughout
    rerun_ok: bool = False
    equal: bool = False
    diff: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.readable and self.rerun_ok and self.equal and not self.left and not self.problems


class Scenario:
    """One command; subclasses say how to lay down the previous state, what progress
    looks like, what counts as readable, and what the result is."""

    name = ""
    window = 1.0  # default plan: kill within U(0, window) x (an uninterrupted run's seconds) after progress
    timeout = 300.0

    def __init__(self, inputs: Inputs, workdir: Path):
        self.inputs = inputs
        self.workdir = Path(workdir)
        self._reference: dict[str, str] | None = None
        self.reference_seconds = 0.0

    # -- to override
    def argv(self, run: Path) -> list:
        raise NotImplementedError

    def prepare(self, run: Path) -> None:
        """Lay down the state that exists before the command runs."""

    def progressed(self, run: Path, log: str) -> bool:
        raise NotImplementedError

    def state(self, run: Path) -> str:
        """Check that what is there now is readable; name it ("old", "new", ...). Raises
        AssertionError (or a project error) when it is broken."""
        raise NotImplementedError

    def result(self, run: Path) -> dict[str, str]:
        raise NotImplementedError

    def plan(self, rng: random.Random) -> float:
        """Draw this kill's point; returns the delay after progress is first seen."""
        return rng.uniform(0.0, self.window) * max(self.reference_seconds, 0.2)

    def finished_parts(self, run: Path) -> int:
        """How many finished parts (chunks, batches) the killed run left to resume from."""
        return 0

    def after_rerun(self, run: Path, rep: KillReport, stderr: str) -> list[str]:
        """Extra checks after the rerun (e.g. that it resumed); returns problems."""
        return []

    # -- shared
    def reference(self) -> dict[str, str]:
        """The result of an uninterrupted run (made once, timed)."""
        if self._reference is None:
            run = self.workdir / "reference"
            self.prepare(run)
            self.reference_seconds, _ = run_here(self.argv(run))
            self._reference = self.result(run)
        return self._reference

    def _watch(self, run: Path, seen: set[str]) -> None:
        try:
            seen.add(self.state(run))
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            seen.add(f"BROKEN: {type(exc).__name__}: {str(exc)[:300]}")

    def kill_and_rerun(self, seed: int, *, scale: float = 1.0) -> KillReport:
        """Run, SIGKILL at a seeded moment after progress, check, rerun, check. ``scale``
        shortens the delay (a second try when the first ran to the end before its kill)."""
        ref = self.reference()
        rep = KillReport(self.name, seed)
        run = self.workdir / f"seed{seed}-x{scale:g}"
        self.prepare(run)
        rep.delay = scale * self.plan(random.Random(f"{self.name}:{seed}"))
        log_path = run.parent / f"{run.name}.log"
        seen: set[str] = set()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(self.argv_cli(run), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=ENV, cwd=REPO, start_new_session=True)
        try:
            deadline = time.monotonic() + self.timeout
            last = 0.0
            while proc.poll() is None and not self.progressed(run, log_path.read_text(errors="replace")):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name}: no progress within {self.timeout} s")
                if time.monotonic() - last > 0.25:
                    self._watch(run, seen)
                    last = time.monotonic()
                time.sleep(0.02)
            kill_at = time.monotonic() + rep.delay
            while proc.poll() is None and time.monotonic() < kill_at:
                if time.monotonic() - last > 0.25 and kill_at - time.monotonic() > 0.05:
                    self._watch(run, seen)
                    last = time.monotonic()
                time.sleep(0.005)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the command and any worker it started
                rep.killed = True
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        rep.log = log_path.read_text(errors="replace")
        if not rep.killed and proc.returncode != 0:
            rep.problems.append(f"the run ended by itself with exit code {proc.returncode}")
        rep.state_at_kill = self._last_state(run)
        seen.add(rep.state_at_kill)
        rep.resumable = self.finished_parts(run)
        broken = sorted(s for s in seen if s.startswith("BROKEN"))
        rep.readable = not broken
        rep.problems += broken
        try:
            _, stderr = run_here(self.argv(run))
            rep.rerun_ok = True
        except Exception as exc:  # noqa: BLE001
            rep.problems.append(f"rerun failed: {type(exc).__name__}: {str(exc)[:300]}")
            return rep
        rep.diff = differences(self.result(run), ref)
        rep.equal = not rep.diff
        rep.left = leftovers(run)
        rep.problems += self.after_rerun(run, rep, stderr)
        return rep

    def _last_state(self, run: Path) -> str:
        try:
            return self.state(run)
        except Exception as exc:  # noqa: BLE001
            return f"BROKEN: {type(exc).__name__}: {str(exc)[:300]}"

    def argv_cli(self, run: Path) -> list[str]:
        return cli(*self.argv(run))


class IndexScenario(Scenario):
    """``echoaudit index`` into a folder that holds an older index (other data, stride 4)."""

    name = "index"

    def argv(self, run):
        i = self.inputs
        return ["index", "--data", i.index_data, "--vae", i.vae, "--reid", i.reid, "--out", run / "idx",
                "--size", SIZE, "--stride", 2]

    def prepare(self, run):
        old = self.workdir / "old_index"
        if not old.exists():
            i = self.inputs
            run_here(["index", "--data", i.data, "--vae", i.vae, "--reid", i.reid, "--out", old, "--size", SIZE,
                      "--stride", 4])
            self.old = index_digest(old)
        run.mkdir(parents=True)
        shutil.copytree(old, run / "idx")

    def plan(self, rng):
        # After the first of three chunks (64, 64 and 4 videos), within about the next
        # chunk's time: mostly in the second chunk, else the third, the build or the save.
        # (atomic_dir's swap itself is killed at each step in test_crash.py.)
        return rng.uniform(0.0, 0.35) * self.reference_seconds

    def progressed(self, run, log):
        return (run / "idx" / "partial" / "chunk_000000").is_dir()

    def state(self, run):
        digest = index_digest(run / "idx")  # raises when the folder holds no complete, intact index
        if digest == self.old:
            return "old"
        if self._reference is not None and digest == self._reference:
            return "new"
        raise AssertionError("the index is neither the old one nor the new one")

    def result(self, run):
        return index_digest(run / "idx")

    def finished_parts(self, run):
        return len(list((run / "idx" / "partial").glob("chunk_*"))) if (run / "idx" / "partial").is_dir() else 0

    def after_rerun(self, run, rep, stderr):
        # tqdm's first line starts at the items the finished chunks hold
        if rep.resumable and not re.search(rf"\b{min(132, 64 * rep.resumable)}/132 \[00:00<\?", stderr):
            return [f"the rerun did not resume from the {rep.resumable} finished chunk(s)"]
        return []


class GenerateScenario(Scenario):
    """``echoaudit generate --overwrite`` of 48 videos (three batches) over an older set of 5."""

    name = "generate"

    def argv(self, run):
        i = self.inputs
        return ["generate", "--generator", i.gen, "--vae", i.vae, "--out", run / "syn", "--n", 48, "--seed", 0,
                "--steps", 2, "--frames", 4, "--overwrite"]

    def prepare(self, run):
        run.mkdir(parents=True)
        shutil.copytree(self.inputs.syn_b, run / "syn")
        self.old = dataset_digest(self.inputs.syn_b)

    def plan(self, rng):
        # After the first or the second of three batches, within about one batch's time:
        # in the next batch, or (after the second) in the last one or the writing.
        self.after = rng.choice([0, 16])
        return rng.uniform(0.0, 0.5) * self.reference_seconds

    def progressed(self, run, log):
        return (run / ".syn.partial" / f"batch_{getattr(self, 'after', 0):06d}.npy").is_file()

    def state(self, run):
        from echoaudit.data.echonet import EchoNetDataset

        ds = EchoNetDataset.open(run / "syn")  # raises when there is no readable set
        digest = dataset_digest(run / "syn")
        if digest == self.old:
            return "old"
        if self._reference is not None and digest == self._reference:
            return "new"
        raise AssertionError(f"the set is neither the old one nor the new one ({len(ds)} videos)")

    def result(self, run):
        return dataset_digest(run / "syn")

    def finished_parts(self, run):
        return len(list((run / ".syn.partial").glob("batch_*.npy")))

    def after_rerun(self, run, rep, stderr):
        if rep.resumable and f"resuming: {rep.resumable} of 3 batches" not in stderr:
            return [f"the rerun did not resume from the {rep.resumable} finished batch(es)"]
        return []


class AuditScenario(Scenario):
    """``echoaudit audit --synthetic syn_b --name g``: replaces the workspace's set g."""

    name = "audit"

    def argv(self, run):
        return ["audit", "--workspace", run / "ws", "--synthetic", self.inputs.syn_b, "--name", "g", "--n-boot", 100]

    def prepare(self, run):
        run.mkdir(parents=True)
        shutil.copytree(self.inputs.ws, run / "ws")
        if not hasattr(self, "old"):
            self.old = self._set_digest(run)

    def _set_digest(self, run) -> dict[str, str]:
        from echoaudit.workspace import Workspace

        ws = Workspace(run / "ws")
        info = ws.manifest["synthetic"]["g"]
        _, emb = ws.first_frames("g")
        return {"info": json.dumps(info, sort_keys=True), "scores": canon_frame(ws.synthetic_scores("g")),
                "videos": json.dumps(ws.synthetic("g").names), "first": _sha(emb.tobytes()),
                "temporal": canon_frame(ws.temporal), "embeddings": canon_frame(ws.video_embeddings)}

    window = 0.8

    def progressed(self, run, log):
        return "auditing g" in log

    def state(self, run):
        for attempt in range(2):
            try:
                digest = self._set_digest(run)
                break
            except FileNotFoundError:  # the manifest switched after this reader opened it: open again
                if attempt:
                    raise
        if digest == self.old:
            return "old"
        if getattr(self, "new", None) == digest:
            return "new"
        new = getattr(self, "new", {})
        mixed = [k for k in digest if digest[k] not in (self.old[k], new.get(k))]
        raise AssertionError(f"set g is neither the old one nor the new one: {', '.join(mixed) or 'a mix of both'}")

    def reference(self):
        ref = super().reference()
        if not hasattr(self, "new"):
            self.new = self._set_digest(self.workdir / "reference")
        return ref

    def result(self, run):
        out = {k: v for k, v in workspace_digest(run / "ws").items() if not k.startswith(("models/", "data/"))}
        out.update({f"audit/{k}": v for k, v in files_digest(run / "ws" / "audit").items()})
        return out


class DemoScenario(Scenario):
    """``echoaudit demo`` into an empty folder (phantom data, models, index, held-out
    scores, manifest, then two synthetic sets)."""

    name = "demo"
    window = 1.0

    def argv(self, run):
        return ["demo", "--workspace", run / "demo", "--assets", self.inputs.assets]

    def prepare(self, run):
        run.mkdir(parents=True)

    def plan(self, rng):
        # A process spends its first seconds importing torch (which a reference run in this
        # process does not), so a delay drawn from the reference's duration would land in
        # the first stages only. Instead: wait until the build reports a seeded fraction
        # done (phantom 0-0.1, index to ~0.37, held-out scores to 0.55, then the two
        # synthetic sets), then a short seeded delay.
        self.target = rng.uniform(0.02, 0.98)
        return rng.uniform(0.0, 0.3)

    def progressed(self, run, log):
        try:
            status = json.loads((run / "demo" / "build_status.json").read_text())
        except (OSError, ValueError):
            return False
        return status.get("fraction", 0.0) >= getattr(self, "target", 0.0)

    def state(self, run):
        from echoaudit.buildjob import manifest_state

        root = run / "demo"
        state = manifest_state(root)
        if state == "missing":
            if (root / "manifest.json").exists():
                raise AssertionError("manifest.json exists but is not valid JSON")
            return "no workspace yet"
        from echoaudit.workspace import Workspace

        ws = Workspace(root)
        _ = ws.heldout_scores, ws.temporal, ws.video_embeddings, ws.reid_roc  # every listed table reads
        for name in ws.synthetic_names:
            assert set(ws.synthetic_scores(name)["query"]) <= set(ws.synthetic(name).names)
        _ = ws.index  # loads and checks (sizes, sha256, layout) the index the manifest names
        return f"usable ({len(ws.synthetic_names)} of 2 sets)" if state == "partial" else "complete"

    def result(self, run):
        return workspace_digest(run / "demo")

    def finished_parts(self, run):
        root = run / "demo"
        return (len(list(root.glob("index/partial/chunk_*"))) + (root / "index" / "index.json").is_file()
                + (root / "manifest.json").is_file() + len(list(root.glob("synthetic/.*.partial/batch_*.npy"))))

    def after_rerun(self, run, rep, stderr):
        from echoaudit.buildjob import read_status

        status = read_status(run / "demo")
        return [] if status and status["state"] == "done" else [f"build status after the rerun: {status}"]


SCENARIOS = {c.name: c for c in (IndexScenario, GenerateScenario, AuditScenario, DemoScenario)}
