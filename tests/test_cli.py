import json
import shutil
from pathlib import Path

import pytest

from echoaudit.cli import main
from echoaudit.workspace import Workspace


@pytest.fixture()
def ws_copy(tiny_workspace, tmp_path):
    return shutil.copytree(tiny_workspace, tmp_path / "ws")


def test_audit_prints_and_writes_every_headline_number(ws_copy, capsys):
    assert main(["audit", "--workspace", str(ws_copy), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    for label in ("threshold:", "flagged:", "reproduced patients (privacy", "reproduced videos (privacy",
                  "coverage (patients, best match, no threshold): synthetic", "coverage (videos, best match",
                  "real check", "adjusted", "precision", "re-ID AUC:"):
        assert label in out
    assert "recall (thresholded)" not in out  # the thresholded "adjusted recall" is gone
    ws = Workspace(ws_copy)
    for name in ws.synthetic_names:
        summary = json.loads((ws_copy / "audit" / f"{name}_summary.json").read_text())
        assert summary["n_synthetic"] == len(ws.synthetic(name))
        cov = summary["coverage"]
        assert cov["synthetic"]["video"]["n_queries"] <= len(ws.synthetic(name))
        assert cov["synthetic"]["patient"]["n_train"] == len(set(ws.train.patients))
        a = cov["adjusted"]["patient"]
        assert a["low"] <= a["value"] <= a["high"]
        assert f"synthetic {cov['synthetic']['patient']['matched']}/{len(set(ws.train.patients))} = " in out
        t = summary["threshold"]
        assert t["rule"] == "heldout_to_train" and t["check"]["n"] == len(ws.calibration_split.check)
        assert t["sentence"] in out and t["n"] == len(ws.calibration_split.calibration)
        assert set(summary["rules"]) == {"heldout_to_train", "train_to_heldout"}
        assert summary["rules"]["train_to_heldout"]["sentence"] in out
        ex = summary["excess"]
        assert ex["measured"] and ex["low"] <= ex["excess"] <= ex["high"] and ex["sentence"] in out
        assert 0 <= summary["flags"]["low"] <= summary["flags"]["share"] <= summary["flags"]["high"] <= 1
        assert (ws_copy / "audit" / f"{name}_flags.csv").exists()


def test_report_writes_the_report_pages_report(ws_copy, tmp_path, capsys):
    ws = Workspace(ws_copy)
    name = ws.synthetic_names[-1]
    out = tmp_path / "rep"
    assert main(["report", "--workspace", str(ws_copy), "--set", name, "--out", str(out), "--threshold", "0.5",
                 "--no-png"]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["synthetic"] == name and summary["threshold"]["used"] == 0.5
    html = (out / "report.html").read_text()
    assert f"synthetic set <code>{name}</code>" in html and "Adjusted coverage, patient level" in html
    assert main(["report", "--workspace", str(ws_copy), "--set", "nope", "--out", str(out)]) == 2
    assert "no synthetic set 'nope'" in capsys.readouterr().err


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
    assert ws.calibration(95).sentence() in out and "re-ID logit" in out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["audit", "--workspace", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("echoaudit: error:") and "not an EchoAudit workspace" in err
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all")
    assert main(["eval", "vae", "--vae", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "echoaudit", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "phantom" in out.stdout and "audit" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "echoaudit", "audit", "--workspace", "/nonexistent/ws"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "echoaudit: error:" in bad.stderr and "not an EchoAudit workspace" in bad.stderr


ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_skip_missing_leaves_out_and_lists_unusable_videos(tmp_path, capsys):
    from echoaudit.cli import main
    from echoaudit.data.echonet import EchoNetDataset

    data = tmp_path / "d"
    assert main(["phantom", "--out", str(data), "--patients", "6", "--videos-per-patient", "2", "--frames", "8",
                 "--workers", "1"]) == 0
    videos = sorted((data / "Videos").iterdir())
    videos[0].unlink()
    videos[1].write_bytes(b"garbage")
    with pytest.raises(Exception, match="is listed but not present"):
        EchoNetDataset.open(data)
    capsys.readouterr()
    assert main(["encode", "--data", str(data), "--vae", str(ASSETS / "vae"), "--out", str(tmp_path / "lat")]) == 2
    assert "is not a video" in capsys.readouterr().err and not (tmp_path / "lat").exists()
    assert main(["encode", "--data", str(data), "--vae", str(ASSETS / "vae"), "--out", str(tmp_path / "lat"),
                 "--skip-missing", "--copies", "0"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 listed videos" in err and videos[0].stem in err and videos[1].stem in err
    assert json.loads((tmp_path / "lat" / "cache.json").read_text())["n_videos"] == 10


def test_workspace_create_skip_missing_records_it_and_reopens_the_same_way(tiny_workspace, tmp_path, capsys):
    """A data set with a listed video deleted: refused without --skip-missing (nothing written),
    built with it (the video listed, recorded in the manifest), and reopened without it."""
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.errors import DatasetError, EchoAuditError

    src = Workspace(tiny_workspace)
    data = shutil.copytree(src.dataset.root, tmp_path / "data")
    gone = src.train.names[0]
    Path(src.train.table["path"].iloc[0].replace(str(src.dataset.root), str(data))).unlink()
    out = tmp_path / "ws"
    args = ["workspace", "create", "--workspace", str(out), "--data", str(data), "--vae", str(src.root / "models/vae"),
            "--reid", str(src.root / "models/reid"), "--size", str(src.size), "--k", "8", "--index-stride", "2",
            "--frame-stride", "2"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("echoaudit: error:") and "is listed but not present" in err and gone in err
    assert not out.exists()  # a refused build writes nothing

    # a model config the loader would refuse: refused before anything is written either
    bad_vae = shutil.copytree(src.root / "models/vae", tmp_path / "bad_vae")
    cfg = json.loads((bad_vae / "config.json").read_text())
    (bad_vae / "config.json").write_text(json.dumps({**cfg, "layers_per_block": 2**40}))
    bad = [a if a != str(src.root / "models/vae") else str(bad_vae) for a in args]
    assert main(bad + ["--skip-missing"]) == 2
    assert "layers_per_block is 1099511627776" in capsys.readouterr().err and not out.exists()

    assert main(args + ["--skip-missing"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 listed videos" in err and gone in err  # listed by the data set opener
    m = json.loads((out / "manifest.json").read_text())
    assert m["data"]["on_missing"] == "skip" and m["data"]["skipped"] == [gone]
    assert m["data"]["n_train"] == len(src.train) - 1
    ws = Workspace(out)
    assert gone not in ws.train.names and len(ws.dataset) == len(src.dataset) - 1
    assert gone not in set(ws.index.metadata["video"]) and len(ws.heldout_scores)

    # the skipped video back: still not part of this workspace (its index was built without it)
    shutil.copy(src.train.table["path"].iloc[0], data / "Videos")
    assert gone not in Workspace(out).train.names
    # another listed video missing now: an error, as in a strict open (the index holds it)
    other = Workspace(out).train.table["path"].iloc[0]
    Path(other).unlink()
    with pytest.raises(EchoAuditError, match=r"1 videos of the workspace's data set .* were present when it was built"):
        Workspace(out).dataset
    # a manifest from before the option (no on_missing): strict
    del m["data"]["on_missing"], m["data"]["skipped"]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="is listed but not present"):
        Workspace(out).dataset
    assert len(EchoNetDataset.open(data, on_missing="skip").skipped) == 1
