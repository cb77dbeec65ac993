"""Hostile JSON, generated, for every reader of a JSON file the project or a user wrote
(build status, manifests, generator records, latent cache, trainer state, demo spec): random
bytes, valid JSON that is not an object, and valid records whose known keys hold values of
any type. Each ends in a result of the promised type or a project error (EchoAuditError),
never another exception, and changes nothing on disk.

Readers that treat a damaged file as absent (the build status: "no status"; a generator's
fps: "not recorded"; a finished set: "not finished") must return exactly that."""

from __future__ import annotations

import json
import types
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echoaudit.errors import EchoAuditError

EXAMPLES = 120  # per reader; derandomized, so every run checks the same inputs

SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
           | st.sampled_from(["running", "done", "failed", "", "0.5", "\ud800", "NaN"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def documents(base: dict) -> st.SearchStrategy[bytes]:
    """Bytes of a file that should hold ``base``: random bytes, a top-level non-object,
    ``base`` with known keys replaced, added or removed, ``base`` with a byte that is not
    UTF-8 inserted, or ``base`` itself."""
    keys = sorted(base)
    changed = st.tuples(st.dictionaries(st.sampled_from(keys), JSON_VALUES, max_size=len(keys)),
                        st.sets(st.sampled_from(keys), max_size=2)).map(
        lambda t: _dumps({**{k: v for k, v in base.items() if k not in t[1]}, **t[0]}))
    non_object = JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(_dumps)
    text = _dumps(base)
    not_utf8 = st.tuples(st.integers(0, len(text)), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])).map(
        lambda t: text[:t[0]] + t[1] + text[t[0]:])
    return st.one_of(st.binary(max_size=300), non_object, changed, changed, not_utf8, st.just(text))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(folder: Path, target: Path, data: bytes, call):
    """Write ``data`` to ``target``, run ``call()``: its result, or "error" for an
    EchoAuditError. Anything else escapes; the folder must be as it was."""
    target.write_bytes(data)
    before = _tree(folder)
    try:
        result = call()
    except EchoAuditError:
        result = "error"
    assert _tree(folder) == before, "the reader changed files"
    return result


def fuzz(base: dict, examples: int = EXAMPLES):
    """Decorator: run the test once per generated document (bytes) for ``base``."""
    def wrap(fn):
        return settings(max_examples=examples, derandomize=True, database=None, deadline=timedelta(seconds=10),
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])(
            given(data=documents(base))(fn))
    return wrap


# --------------------------------------------------------------------------- build status, manifest state

STATUS = {"state": "running", "fraction": 0.5, "message": "indexing", "pid": 1, "started": 1.0, "updated": 2.0,
          "error": "x", "seconds": 3.0}


@fuzz(STATUS)
def test_build_status(tmp_path, data):
    from echoaudit import buildjob

    status = _run(tmp_path, tmp_path / buildjob.STATUS, data, lambda: buildjob.read_status(tmp_path))
    assert status is None or isinstance(status, dict)  # damaged: no status, never an error
    if status:
        for key, kind in buildjob._STATUS_TYPES.items():
            assert key not in status or (isinstance(status[key], kind) and not isinstance(status[key], bool))
        assert 0.0 <= status.get("fraction", 0.0) <= 1.0
        assert status.get("state") != "running"  # nobody holds the lock here


@fuzz({"version": 3, "pending": ["regular"], "data": {"path": "data"}})
def test_manifest_state(tmp_path, data):
    from echoaudit import buildjob

    state = _run(tmp_path, tmp_path / "manifest.json", data, lambda: buildjob.manifest_state(tmp_path))
    assert state in ("missing", "partial", "complete")


# --------------------------------------------------------------------------- build records

@fuzz({"fps": 25.0, "step": 10, "train_videos": 3, "summary": "10 steps"})
def test_generator_fps_and_training_summary(tmp_path, data):
    from echoaudit.build import _training_summary, generator_fps

    fps = _run(tmp_path, tmp_path / "training.json", data, lambda: generator_fps(tmp_path))
    assert fps is None or (isinstance(fps, float) and fps > 0)
    summary = _run(tmp_path, tmp_path / "training.json", data, lambda: _training_summary(tmp_path))
    assert isinstance(summary, str)


@fuzz({"checkpoint_sha256": "ab", "seed": 0, "n": 3, "steps": 2, "guidance": 1.5, "num_frames": 8,
       "ef": "drawn from the training EFs"})
def test_finished_set_record(tmp_path, data):
    from echoaudit.build import BuildConfig, _finished_set
    from echoaudit.generate import GENERATOR_JSON

    out, gen = tmp_path / "set", tmp_path / "gen"
    out.mkdir(exist_ok=True)
    gen.mkdir(exist_ok=True)
    (out / "FileList.csv").write_text("FileName\n")
    (gen / "model_index.json").write_text("{}")
    done = _run(tmp_path, out / GENERATOR_JSON, data, lambda: _finished_set(out, gen, BuildConfig()))
    assert done in (True, False)


# --------------------------------------------------------------------------- latent cache, generator EFs

@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory):
    import pandas as pd

    folder = tmp_path_factory.mktemp("cache")
    np.save(folder / "latents.npy", np.zeros((2, 3, 4, 2, 2), np.float16))
    pd.DataFrame({"FileName": ["a", "b"], "PatientID": ["1", "2"], "Split": ["TRAIN", "VAL"], "EF": [50.0, 60.0]}).to_csv(
        folder / "videos.csv", index=False)
    return folder


CACHE = {"vae_fingerprint": "ab" * 32, "frames": 3, "size": 16, "augment_seed": 0, "latent_shape": [4, 2, 2],
         "n_videos": 2, "augment_copies": 0, "augment_stride": 8, "augment": "x"}


@fuzz(CACHE)
def test_latent_cache_record(cache_folder, data):
    from echoaudit.latents import LatentCache

    cache = _run(cache_folder, cache_folder / "cache.json", data,
                 lambda: LatentCache.load(cache_folder, expected_vae="ab" * 32))
    if cache != "error":
        assert cache.vae_fingerprint == "ab" * 32 and cache.augment_stride >= 1


@fuzz({"train_ef": [40.0, 55.5, 70.0], "step": 3, "fps": 25.0})
def test_training_efs(tmp_path, data):
    from echoaudit.generate import training_efs

    pipe = types.SimpleNamespace(name_or_path=str(tmp_path))
    efs = _run(tmp_path, tmp_path / "training.json", data, lambda: training_efs(pipe))
    if not isinstance(efs, str):
        assert efs.dtype == np.float64 and efs.ndim == 1 and np.all((efs >= 0) & (efs <= 100))


# --------------------------------------------------------------------------- trainer state

@pytest.fixture(scope="module")
def trainer_folder(tmp_path_factory):
    import torch

    from echoaudit.train.checkpoint import save_trainer_state

    folder = tmp_path_factory.mktemp("trainer")
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_trainer_state(folder, opt, {"step": 1, "seconds": 0.5, "history": [], "config": {"lr": 1e-3}})
    return folder


@pytest.fixture(scope="module")
def trainer_base(trainer_folder):
    import torch

    from echoaudit.train.checkpoint import load_trainer_state

    model = torch.nn.Linear(3, 2)  # the seed itself loads
    assert load_trainer_state(trainer_folder, torch.optim.AdamW(model.parameters(), lr=1e-3))[0]["step"] == 1
    return json.loads((trainer_folder / "trainer_state.json").read_text())


def test_trainer_state(trainer_folder, trainer_base):
    """The keys of the stored state, and those inside its param group and record."""
    import torch

    from echoaudit.train.checkpoint import load_trainer_state

    original = (trainer_folder / "trainer_state.json").read_bytes()
    group = trainer_base["param_groups"][0]
    bases = [trainer_base, group, trainer_base["record"], {"opt.0.step": 1, "opt.0.exp_avg": 1.0, "opt.1.x": None}]

    def place(which: int, doc: bytes) -> bytes:
        """The whole file for a document generated for ``bases[which]``."""
        if which == 0:
            return doc
        try:
            part = json.loads(doc)
        except ValueError:
            part = doc.decode("utf-8", "replace")
        key = {1: "param_groups", 2: "record", 3: "scalars"}[which]
        value = [part] if which == 1 else part
        return _dumps({**trainer_base, key: value})

    seen = Counter()

    @settings(max_examples=EXAMPLES * 4, derandomize=True, database=None, deadline=timedelta(seconds=10),
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def one(data):
        which = data.draw(st.integers(0, len(bases) - 1))
        doc = place(which, data.draw(documents(bases[which])))
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        out = _run(trainer_folder, trainer_folder / "trainer_state.json", doc, lambda: load_trainer_state(trainer_folder, opt))
        seen["error" if out == "error" else "result"] += 1
        if out != "error":
            record, _ = out
            assert isinstance(record, dict)
            model(torch.ones(1, 3)).sum().backward()
            opt.step()  # what was loaded works: no hyperparameter or state of the wrong type

    try:
        one()
    finally:
        (trainer_folder / "trainer_state.json").write_bytes(original)
    assert seen["result"] >= 10 and seen["error"] >= 10, seen  # both paths were exercised


# --------------------------------------------------------------------------- demo spec

@fuzz(json.loads((Path(__file__).resolve().parents[1] / "assets" / "demo.json").read_text()))
def test_demo_spec(tmp_path, data):
    from echoaudit.data.phantom import PhantomConfig
    from echoaudit.demo import read_spec

    out = _run(tmp_path, tmp_path / "demo.json", data, lambda: read_spec(tmp_path / "demo.json"))
    if out != "error":
        spec, pcfg = out
        assert isinstance(spec["generators"], dict) and isinstance(pcfg, PhantomConfig)


def test_the_latent_cache_seed_loads(cache_folder):
    """The base record itself loads (the fuzzing starts from a record that works)."""
    from echoaudit.latents import LatentCache

    (cache_folder / "cache.json").write_text(json.dumps(CACHE))
    assert LatentCache.load(cache_folder).vae_fingerprint == "ab" * 32


@pytest.mark.parametrize("change, message", [
    (lambda m: m["param_groups"][0].pop("betas"), r"param_groups\[0\] lacks betas"),
    (lambda m: m["param_groups"][0].update(betas=None), r"param_groups\[0\]\.betas is None"),
    (lambda m: m["param_groups"][0].update(betas=[2.0, 0.9]), r"betas is \[2.0, 0.9\]; torch's optimizers take \[0.0, 1.0\)"),
    (lambda m: m["param_groups"][0].update(lr="0.1"), r"param_groups\[0\]\.lr is '0.1'"),
    (lambda m: m["scalars"].update({"opt.0.exp_avg": 1.0}), r"opt\.0\.exp_avg is saved both as a tensor and as a scalar"),
    (lambda m: m.update(record=[1]), r"record must be an object"),
    (lambda m: m["record"].update(step="7"), r"record step is '7', of the wrong type"),
])
def test_trainer_state_hazards_found_by_fuzzing(trainer_folder, trainer_base, change, message):
    """Each loaded before as it was, and failed later, at the first optimizer step."""
    import copy

    import torch

    from echoaudit.errors import CheckpointError
    from echoaudit.train.checkpoint import load_trainer_state

    original = (trainer_folder / "trainer_state.json").read_bytes()
    meta = copy.deepcopy(trainer_base)
    change(meta)
    (trainer_folder / "trainer_state.json").write_text(json.dumps(meta))
    try:
        with pytest.raises(CheckpointError, match=r"cannot resume from .*: trainer state corrupt \(.*" + message):
            load_trainer_state(trainer_folder, torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3))
    finally:
        (trainer_folder / "trainer_state.json").write_bytes(original)
