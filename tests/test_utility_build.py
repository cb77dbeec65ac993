"""The build measures a set's downstream EF utility in the background after making it
(BuildConfig.utility; the demo's regular set), records it in the manifest, and the
dashboard says so while it runs (echoaudit.utility_workspace, build.complete_workspace)."""

from __future__ import annotations

import json
import shutil

import pytest

from echoaudit.build import BuildConfig, create_workspace
from echoaudit.buildjob import manifest_state
from echoaudit.engine import EngineConfig
from echoaudit.errors import EchoAuditError
from echoaudit.workspace import Workspace


@pytest.fixture(scope="module")
def built(tiny_workspace, tmp_path_factory):
    models = tiny_workspace.parent / "models"
    root = tmp_path_factory.mktemp("utility_build")
    gens = {"regular": models / "gen_regular" / "best"}
    cfg = BuildConfig(n_synthetic=6, synthetic_frames=8, steps=2, top=5, temporal_heldout=4,
                      engine=EngineConfig(size=64, k=8, index_stride=2, frame_stride=2),
                      utility=("regular",), utility_seeds=1, utility_epochs=1)
    ws = create_workspace(root / "ws", data=models / "data", vae=models / "vae" / "best", reid=models / "reid" / "best",
                          generators=gens, cfg=cfg)
    return ws, cfg, models


def test_the_build_measures_and_records_the_utility(built):
    ws, _, _ = built
    assert ws.complete and ws.utility_pending == [] and manifest_state(ws.root) == "complete"
    entry = ws.manifest["utility"]["regular"]
    assert entry["path"] == "utility/regular" and entry["seeds"] == [0] and entry["epochs"] == 1
    assert "Trained on synthetic, the EF model is" in entry["sentence"]
    rec = json.loads((ws.root / "utility" / "regular" / "utility.json").read_text())
    assert {r["arm"] for r in rec["runs"]} == {"real", "synthetic", "synthetic_filtered", "synthetic_random",
                                              "real_plus_synthetic"} - ({"synthetic_filtered", "synthetic_random"}
                                                                        if len(rec["flagged"]) > 4 else set())
    assert rec["sentence"] == entry["sentence"]


def test_a_pending_utility_keeps_the_workspace_partial_and_the_page_says_so(built, tmp_path, monkeypatch):
    ws, _, _ = built
    root = tmp_path / "copy"
    shutil.copytree(ws.root, root, symlinks=True)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["utility_pending"] = ["regular"]
    manifest.pop("utility")
    shutil.rmtree(root / "utility")
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert not Workspace(root).complete and manifest_state(root) == "partial"
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(root))
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.run()
    at.switch_page("pages/utility.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("is being measured by the build" in i.value for i in at.info)
    assert any("EF utility of regular" in c.value for c in at.sidebar.caption)


def test_utility_for_a_set_the_build_does_not_make_is_refused(built, tmp_path):
    _, cfg, models = built
    from dataclasses import replace

    with pytest.raises(EchoAuditError, match="utility is asked for nope"):
        create_workspace(tmp_path / "ws", data=models / "data", vae=models / "vae" / "best",
                         reid=models / "reid" / "best", generators={}, cfg=replace(cfg, utility=("nope",)))
    assert not (tmp_path / "ws").exists()
