"""Hostile input, generated: every input ends in a result or an EchoAuditError.

Hypothesis drives the harness of ``bench/fuzz_inputs.py`` (which documents the input
families and mutations) over 2,150 derandomized inputs: mutated AVI / MP4 / GIF / NPY
uploads and hostile frame arrays (1,100), FileList.csv files (400), manifest / index
record / model config JSON (400) and checkpoint folders with planted pickles and damaged
weights (250). Each input must end in a result or a project error within its deadline,
leave the folder it read and the temporary folder as they were, and never unpickle
anything (the planted pickles create a marker file when run).

Model configs are fuzzed with wrong types, NaN / inf and sizes no allocator grants
(2**40), and their bytes by at most two digits: a config that asks for a model of
several GB, or for a billion VAE layers, is a hazard the model loaders must refuse from
the config before building (reported in issue 15), not one to run on a shared CI box.

The longer run: ``python bench/fuzz_inputs.py --inputs 50000``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fuzz_inputs import FAMILIES, PICKLE_NAMES, Harness, Rand, plant_pickle, tree  # noqa: E402

from echoaudit.errors import CheckpointError  # noqa: E402

# Inputs per family (2,150 in all) and the deadline of one input. The deadlines are far
# above the typical time (10-60 ms; 0.6 s at most, measured on 2 busy cores) so that a
# loaded machine does not fail them, and far below anything a user would call a hang.
EXAMPLES = {"video": 1100, "filelist": 400, "json": 400, "checkpoint": 250}
DEADLINE_S = {"video": 10, "filelist": 10, "json": 15, "checkpoint": 20}
HANG_S = 120  # SIGALRM: a real hang fails the test instead of stalling the run


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity(dlogging.CRITICAL)  # missing-weights messages are expected here
    dlogging.disable_progress_bar()
    yield Harness(tmp_path_factory.mktemp("fuzz"))
    dlogging.set_verbosity(level)
    dlogging.enable_progress_bar()


def _rand(data) -> Rand:
    return Rand(lambda lo, hi: data.draw(st.integers(lo, hi)),
                lambda n: data.draw(st.binary(min_size=n, max_size=n)))


@contextlib.contextmanager
def _hang_guard(seconds: int):
    def stop(signum, frame):
        raise TimeoutError(f"one input ran for more than {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_the_counts_add_up_to_the_promise():
    assert set(EXAMPLES) == set(FAMILIES) and sum(EXAMPLES.values()) >= 2000


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_input_ends_in_a_result_or_a_project_error(harness, family):
    seen: Counter = Counter()

    @settings(max_examples=EXAMPLES[family], derandomize=True, database=None, print_blob=True,
              deadline=timedelta(seconds=DEADLINE_S[family]),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.data())
    def one_input(data):
        with _hang_guard(HANG_S):
            outcome = harness.run(family, _rand(data))  # anything but a project error escapes here
        assert outcome in ("result", "error")
        seen[outcome] += 1

    one_input()
    # Both paths were exercised, and (nearly) every generated input ran to the end.
    assert seen["result"] > 0 and seen["error"] > 0, seen
    assert sum(seen.values()) >= 0.95 * EXAMPLES[family], seen


@pytest.mark.parametrize("kind", ["reid", "vae", "generator", "index"])
def test_planted_pickles_are_never_run(harness, kind):
    """Every pickle name, beside the real weights and as the only weights: the loader
    returns the model (safetensors beside) or a CheckpointError, and never unpickles."""
    import shutil

    outcomes = Counter()
    for name in PICKLE_NAMES:
        for only in (False, True):
            folder = harness._case_copy(kind)
            weights = sorted(folder.rglob("*.safetensors")) or [folder / "index.faiss"]
            for w in weights:
                target = w.parent / name
                plant_pickle(target, harness.marker, "torch" if name.endswith((".bin", ".pt", ".pth")) else "4")
                if only:
                    w.unlink()
            outcomes[harness._load_folder(kind, folder)] += 1  # the guard raises Unsafe if the marker appears
            shutil.rmtree(folder)
    assert not harness.marker.exists()
    # With the real weights beside, the model loads; without them, a CheckpointError.
    assert outcomes == {"result": len(PICKLE_NAMES), "error": len(PICKLE_NAMES)}, outcomes


def test_a_pickle_only_folder_names_the_missing_safetensors(harness):
    from echoaudit.models.reid import load_reid

    folder = harness._case_copy("reid")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    plant_pickle(folder / "diffusion_pytorch_model.bin", harness.marker, "torch")
    before = tree(folder)
    with pytest.raises(CheckpointError, match=r"re-ID model in .*reid .*diffusion_pytorch_model\.safetensors"):
        load_reid(folder)
    assert not harness.marker.exists() and tree(folder) == before


def test_the_harness_mutations_are_deterministic():
    def sample(seed):
        r = Rand.from_numpy(np.random.default_rng(seed))
        from fuzz_inputs import mutate_bytes, mutate_json

        return mutate_bytes(b"RIFF....AVI LIST" * 20, r), mutate_json('{"a": [1, 2], "b": {"c": "x"}}', r)

    assert sample(3) == sample(3) and sample(3) != sample(4)


# Found by this fuzzing in loaders outside the readers fixed with it (echoaudit/models/);
# strict: when the loaders are fixed these pass, and the marks must go.

@pytest.mark.parametrize("kind, config", [("reid", "config.json"), ("vae", "config.json"),
                                          ("generator", "unet/config.json"),
                                          ("generator", "scheduler/scheduler_config.json")])
def test_a_config_that_is_a_bare_string_never_reaches_the_network(harness, kind, config, monkeypatch):
    import huggingface_hub.constants

    # Same outcome on machines with and without HF_HUB_OFFLINE set: the harness refuses
    # every connection and reports the attempt.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    folder = harness._case_copy(kind)
    (folder / config).write_text('"someone/some-model"')
    assert harness._load_folder(kind, folder) == "error"  # today: Unsafe (a connection to huggingface.co)
