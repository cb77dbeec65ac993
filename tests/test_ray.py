"""The Ray path (issue 16, part 4) on a local two-node Ray cluster (one CPU each), against
the local path on the tiny workspace: byte-identical index vectors, identical scores and
flags, and a stopped Ray audit that resumes to the same result. Ray is the optional extra
the README's test command installs (requirements-ray.txt)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import ray
from micro import tiny_inputs
from ray.cluster_utils import Cluster

from echoaudit.build import add_synthetic_set, create_workspace
from echoaudit.engine import index_vectors
from echoaudit.errors import EchoAuditError
from echoaudit.raypath import ray_cluster  # imported before the cluster starts: it sets Ray's no-telemetry environment
from echoaudit.scoring import audit_synthetic_set
from echoaudit.workspace import Workspace, load_manifest


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node on this machine, one CPU each: two actors, two processes."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    try:
        yield c.address
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def ray_built(tiny_workspace, cluster, tmp_path_factory):
    """The tiny workspace built again from the same inputs with ``ray=`` (index chunks and
    both synthetic sets scored by actors on the two nodes)."""
    inputs = tiny_inputs(tiny_workspace.parent / "models")
    ws = create_workspace(tmp_path_factory.mktemp("ray") / "ws", ray=cluster, **inputs)
    return Workspace(tiny_workspace), ws


def test_ray_index_is_byte_identical_to_local(ray_built):
    local, remote = ray_built
    a, b = index_vectors(local.index), index_vectors(remote.index)
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert a.tobytes() == b.tobytes()
    pd.testing.assert_frame_equal(local.index.metadata, remote.index.metadata, check_exact=True)
    assert local.manifest["index"]["fingerprint"] == remote.manifest["index"]["fingerprint"]
    assert not (remote.root / "index" / "partial").exists()  # assembled and cleaned up as the local build does


def test_ray_set_audit_equals_local(ray_built):
    """Every synthetic set of the Ray-built workspace: its stored scores (Ray actors) equal a
    local one-shot audit of the same videos, and the flags at the calibrated threshold agree."""
    _, ws = ray_built
    top = int(ws.manifest["build"]["top"])
    thr = ws.threshold()
    for name in ws.synthetic_names:
        local = audit_synthetic_set(ws.engine, ws.synthetic(name), name, top=top, clip=ws.clip_spec)
        stored = ws.synthetic_scores(name)
        pd.testing.assert_frame_equal(stored, local.scores, check_exact=True)
        best_local = local.scores.groupby("query")["score"].max()
        best_ray = stored.groupby("query")["score"].max()
        assert ((best_local >= thr.value) == (best_ray >= thr.value)).all()
        assert not (ws.root / "scores" / "partial" / name).exists()


class Stop(Exception):
    pass


def test_stopped_ray_audit_resumes_to_the_same_result(ray_built, cluster, tmp_path):
    local_ws, _ = ray_built
    root = tmp_path / "ws"
    shutil.copytree(local_ws.root.parent, tmp_path, dirs_exist_ok=True, symlinks=True)
    ws = Workspace(root)
    name = ws.synthetic_names[0]
    folder = ws.synthetic(name).root
    top = int(ws.manifest["build"]["top"])
    reference = audit_synthetic_set(ws.engine, ws.synthetic(name), "again", top=top, clip=ws.clip_spec).scores

    def stop_after_first_chunk(frac, msg):
        if "videos (Ray)" in msg:  # a chunk came back and was written
            raise Stop

    with pytest.raises(Stop):
        add_synthetic_set(ws, "again", folder, chunk=2, ray=cluster, progress=stop_after_first_chunk)
    partial = root / "scores" / "partial" / "again"
    assert len(list(partial.glob("chunk_*"))) == 1
    assert "again" not in load_manifest(root)["synthetic"]

    messages = []
    add_synthetic_set(Workspace(root), "again", folder, chunk=2, ray=cluster,
                      progress=lambda f, m: messages.append(m))
    assert any(m.startswith("resuming: 2 of") for m in messages)  # the first chunk was not scored again
    pd.testing.assert_frame_equal(Workspace(root).synthetic_scores("again"), reference, check_exact=True)
    assert not partial.exists()


def test_ray_missing_or_bad_address_is_a_clear_error(tmp_path):
    from echoaudit.raypath import RAY_MISSING

    # without Ray installed: one line that names the extra (run in a child with ray hidden)
    code = ("import sys; sys.modules['ray'] = None\n"
            "from echoaudit.raypath import ray_cluster\n"
            "try:\n    ray_cluster('auto').__enter__()\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == f"EchoAuditError {RAY_MISSING}"
    with pytest.raises(EchoAuditError, match="--ray takes"):
        with ray_cluster(""):
            pass


def test_cli_audit_with_ray_local(ray_built, tmp_path):
    """`echoaudit audit --synthetic ... --ray local`: a fresh process starts its own local
    Ray cluster, scores the set on it and stores what a local audit gives."""
    local_ws, _ = ray_built
    shutil.copytree(local_ws.root.parent, tmp_path, dirs_exist_ok=True, symlinks=True)
    ws = Workspace(tmp_path / "ws")
    name = ws.synthetic_names[-1]
    folder = ws.synthetic(name).root
    top = int(ws.manifest["build"]["top"])
    reference = audit_synthetic_set(ws.engine, ws.synthetic(name), "viaray", top=top, clip=ws.clip_spec).scores
    # Byte-identical needs the same torch thread count as the reference (the Ray workers take
    # the driver's); an earlier test of the session may have changed this process's.
    import torch

    res = subprocess.run([sys.executable, "-m", "echoaudit", "audit", "--workspace", str(ws.root), "--synthetic",
                          str(folder), "--name", "viaray", "--ray", "local", "--n-boot", "50",
                          "--threads", str(torch.get_num_threads())],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    pd.testing.assert_frame_equal(Workspace(ws.root).synthetic_scores("viaray"), reference, check_exact=True)
    assert "Traceback" not in res.stderr  # no stack traces from Ray on a run that worked
