"""The background build: lock, status file, and the README's path end to end (a demo build
started in its own process, watched until the workspace is usable and then complete)."""

import json
import os
import time

import pytest

from echoaudit import buildjob
from echoaudit.errors import EchoAuditError
from echoaudit.workspace import Workspace


def test_the_lock_admits_one_build_and_is_released(tmp_path):
    with buildjob.build_lock(tmp_path / "ws"):
        assert buildjob.is_building(tmp_path / "ws")
        with pytest.raises(EchoAuditError, match="another build is running"):
            with buildjob.build_lock(tmp_path / "ws"):
                pass
    assert not buildjob.is_building(tmp_path / "ws")
    assert not buildjob.is_building(tmp_path / "never")


def test_status_running_done_failed_and_interrupted(tmp_path):
    assert buildjob.read_status(tmp_path) is None
    with buildjob.build_lock(tmp_path):
        s = buildjob.StatusWriter(tmp_path, interval=3600)
        s(0.25, "indexing training frames: 3/10")
        assert buildjob.read_status(tmp_path)["message"] == "indexing training frames: 3/10"  # new stage: written
        s(0.3, "indexing training frames: 4/10")
        st = buildjob.read_status(tmp_path)
        assert st["state"] == "running" and st["fraction"] == 0.25 and st["pid"] == os.getpid()  # throttled
        s.done()
        assert buildjob.read_status(tmp_path)["state"] == "done"
        s.status["state"] = "running"
        s._write()
    # "running" with nobody holding the lock: the process died
    assert buildjob.read_status(tmp_path)["state"] == "interrupted"
    with buildjob.build_lock(tmp_path):
        buildjob.StatusWriter(tmp_path).failed(EchoAuditError("no demo checkpoints in x"))
    st = buildjob.read_status(tmp_path)
    assert st["state"] == "failed" and st["error"] == "no demo checkpoints in x"


def test_manifest_state(tmp_path):
    assert buildjob.manifest_state(tmp_path) == "missing"
    (tmp_path / "manifest.json").write_text(json.dumps({"pending": ["regular"]}))
    assert buildjob.manifest_state(tmp_path) == "partial"
    (tmp_path / "manifest.json").write_text(json.dumps({"pending": []}))
    assert buildjob.manifest_state(tmp_path) == "complete"
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 1}))  # before builds had stages
    assert buildjob.manifest_state(tmp_path) == "complete"


def micro_assets(tiny_workspace, folder):
    """An assets/ folder with the micro models and a demo.json of the phantom they saw."""
    from micro import PHANTOM

    models = Workspace(tiny_workspace).root / "models"
    spec = {
        "phantom": {"n_patients": PHANTOM.n_patients, "videos_per_patient": PHANTOM.videos_per_patient,
                    "frames": PHANTOM.frames, "fps": PHANTOM.fps, "size": PHANTOM.size, "seed": PHANTOM.seed,
                    "view": PHANTOM.view},
        "build": {"n_synthetic": 3, "synthetic_frames": 8, "steps": 2, "top": 5, "temporal_heldout": 4,
                  "engine": {"size": PHANTOM.size, "k": 8, "index_stride": 2, "frame_stride": 2}},
        "vae": str(models / "vae"), "reid": str(models / "reid"),
        "generators": {g: str(models / "generators" / g) for g in ("memorizing", "regular")},
    }
    folder.mkdir(parents=True)
    (folder / "demo.json").write_text(json.dumps(spec))
    return folder


def test_background_demo_build_end_to_end(tiny_workspace, tmp_path):
    assets = micro_assets(tiny_workspace, tmp_path / "assets")
    root = tmp_path / "demo"
    assert buildjob.start_demo_build(root, assets=assets)
    assert buildjob.is_building(root)  # the launcher returns once the child holds the lock
    assert not buildjob.start_demo_build(root, assets=assets)  # one build per folder

    seen, deadline = [], time.time() + 600
    while time.time() < deadline:
        state = buildjob.manifest_state(root)
        if not seen or seen[-1] != state:
            seen.append(state)
        status = buildjob.read_status(root)
        if status and status["state"] in ("done", "failed", "interrupted"):
            break
        time.sleep(0.2)
    log = (root / buildjob.LOG).read_text()
    assert status["state"] == "done", (status, log[-2000:])
    seen.append(buildjob.manifest_state(root))
    # usable (manifest, sets pending) before complete; the phantom came first
    assert seen[0] == "missing" and "complete" in seen
    assert seen.index("complete") > seen.index("missing")
    ws = Workspace(root)
    assert ws.complete and ws.synthetic_names == ["memorizing", "regular"]
    assert set(ws.video_embeddings["set"]) == {"train", "real held-out", "memorizing", "regular"}
    assert len(ws.synthetic_scores("regular")["query"].unique()) == 3
    assert not buildjob.is_building(root)
    assert buildjob.main(["start-demo", str(root)]) == 0 and not buildjob.is_building(root)  # complete: no build
