import json
import shutil

import pytest

from echoaudit.cli import main
from echoaudit.workspace import Workspace


@pytest.fixture()
def ws_copy(tiny_workspace, tmp_path):
    return shutil.copytree(tiny_workspace, tmp_path / "ws")


def test_audit_prints_and_writes_every_headline_number(ws_copy, capsys):
    assert main(["audit", "--workspace", str(ws_copy), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    for label in ("threshold:", "flagged:", "recall (thresholded):", "recall (best match):", "learned videos (synthetic, thresholded)", "learned videos (synthetic, best match)", "precision",
                  "re-ID AUC:"):
        assert label in out
    ws = Workspace(ws_copy)
    for name in ws.synthetic_names:
        summary = json.loads((ws_copy / "audit" / f"{name}_summary.json").read_text())
        assert summary["n_synthetic"] == len(ws.synthetic(name))
        assert summary["threshold"]["rule"] == "train_to_heldout"
        assert 0 <= summary["flags"]["low"] <= summary["flags"]["share"] <= summary["flags"]["high"] <= 1
        assert (ws_copy / "audit" / f"{name}_flags.csv").exists()


def test_audit_adds_a_users_synthetic_folder(ws_copy, capsys):
    ws = Workspace(ws_copy)
    src = ws.synthetic(ws.synthetic_names[0]).root
    assert main(["audit", "--workspace", str(ws_copy), "--synthetic", str(src), "--name", "mine", "--n-boot", "50"]) == 0
    ws = Workspace(ws_copy)
    assert "mine" in ws.synthetic_names
    assert set(ws.synthetic_scores("mine")["query"]) == set(ws.synthetic("mine").names)
    assert "== mine" in capsys.readouterr().out


def test_query_prints_a_verdict(ws_copy, capsys):
    ws = Workspace(ws_copy)
    video = ws.train.table["path"].iloc[0]
    assert main(["query", "--workspace", str(ws_copy), str(video)]) == 0
    out = capsys.readouterr().out
    assert "memorized" in out.lower() and ws.train.names[0] in out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["audit", "--workspace", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("echoaudit: error:") and "not an EchoAudit workspace" in err
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all")
    assert main(["eval", "vae", "--vae", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
