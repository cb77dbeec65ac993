"""A second privacy filter in a workspace (echoaudit.filters, `echoaudit filters`): verdicts
stored per synthetic video, agreement with the workspace's own filter (Cohen's kappa with a
bootstrap interval), the disagreement list; the published scorer and the video scorer."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

from echoaudit.cli import main as cli_main
from echoaudit.errors import CheckpointError, EchoAuditError
from echoaudit.filters import (
    add_filter,
    compare_verdicts,
    compare_with_primary,
    filter_info,
    filter_names,
    filter_verdicts,
    kappa,
    primary_verdicts,
)
from echoaudit.models.published import SiameseResNet, save_published_reid
from echoaudit.workspace import Workspace


def _table(flags, scores=None, prefix="v"):
    n = len(flags)
    return pd.DataFrame({"query": [f"{prefix}{i:02d}" for i in range(n)], "flagged": np.asarray(flags, bool),
                         "score": np.linspace(0.1, 0.9, n) if scores is None else scores,
                         "train_video": [f"t{i % 3}" for i in range(n)]})


def test_kappa_matches_sklearn_and_the_degenerate_cases():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random(30) < 0.3, rng.random(30) < 0.4
        if a.all() == b.all() and not (a ^ b).any():
            continue
        assert kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    none = np.zeros(10, bool)
    assert kappa(none, none) == 1.0 and kappa(~none, ~none) == 1.0  # same verdict everywhere: perfect
    assert kappa(none, ~none) == 0.0  # opposite constant verdicts: no agreement
    with pytest.raises(ValueError, match="one length"):
        kappa(none, none[:3])


def test_compare_verdicts_counts_interval_and_disagreements_first():
    a = [True] * 6 + [False] * 20 + [True, True, False, False]
    b = [True] * 6 + [False] * 20 + [False, False, True, True]
    first, second = _table(a), _table(b)
    agr = compare_verdicts(first, second.iloc[::-1], n_boot=500)  # order does not matter: matched by name
    assert (agr.n, agr.both, agr.only_first, agr.only_second, agr.neither) == (30, 6, 2, 2, 20)
    assert agr.kappa == pytest.approx(cohen_kappa_score(a, b))
    assert agr.low <= agr.kappa <= agr.high and agr.high - agr.low > 0.05
    d = agr.disagreements
    assert list(d["query"]) == ["v26", "v27", "v28", "v29"] and not d["agree"].any()
    assert list(agr.table["agree"][:4]) == [False] * 4 and agr.table["agree"][4:].all()
    assert "only the first flags 2" not in agr.sentence("A", "B") and "only A flags 2" in agr.sentence("A", "B")
    # Perfect agreement: kappa 1 with a degenerate interval at 1.
    same = compare_verdicts(first, _table(a), n_boot=200)
    assert same.kappa == 1.0 and same.low == 1.0 and same.high == 1.0 and same.disagreements.empty
    with pytest.raises(ValueError, match="no video in common"):
        compare_verdicts(first, _table(b, prefix="w"))
    with pytest.raises(ValueError, match="lacks columns"):
        compare_verdicts(first, second.drop(columns="train_video"))


@pytest.fixture()
def ws_copy(tiny_workspace, tmp_path):
    """A private copy of the tiny workspace (adding a filter writes into it)."""
    src = tiny_workspace.parent
    shutil.copytree(src, tmp_path / "tiny", symlinks=True)
    return Workspace(tmp_path / "tiny" / tiny_workspace.name)


def test_the_primary_network_as_a_second_video_filter_agrees_on_every_video(ws_copy):
    ws = ws_copy
    info = add_filter(ws, "same", ws.root / "models" / "reid", scorer="auto")
    assert info["scorer"] == "video" and filter_names(Workspace(ws.root)) == ["same"]
    assert info["threshold"] == pytest.approx(ws.threshold().value)
    for s in ws.synthetic_names:
        v = filter_verdicts(ws, "same", s)
        assert sorted(v["query"]) == sorted(ws.synthetic(s).names)
        mine = primary_verdicts(ws, s).set_index("query")
        np.testing.assert_allclose(v.set_index("query").loc[mine.index, "score"], mine["score"], atol=1e-6)
        agr = compare_with_primary(ws, "same", s, n_boot=200)
        assert agr.kappa == 1.0 and agr.disagreements.empty and agr.n == len(ws.synthetic(s))
    # A lower threshold for the workspace's filter makes it flag more: the extra ones are disagreements.
    s = ws.synthetic_names[0]
    low = float(primary_verdicts(ws, s)["score"].min())
    agr = compare_with_primary(ws, "same", s, threshold=low, n_boot=200)
    assert agr.only_second == 0 and agr.only_first == len(ws.synthetic(s)) - agr.both


def test_a_published_network_filter_scores_first_frames_with_its_tau(ws_copy, tmp_path):
    ws = ws_copy
    torch.manual_seed(0)
    folder = tmp_path / "reidentification_dynamic"
    save_published_reid(SiameseResNet(4, 128).eval(), folder, config={"image_size": 8})  # 64 px: 8x8 latents
    info = add_filter(ws, "published", folder)
    assert info["scorer"] == "published" and info["kind"] == "PublishedReID"
    assert info["n_train"] == len(ws.train) and -1 <= info["threshold"] <= 1
    v = filter_verdicts(ws, "published")
    assert set(v["set"]) == set(ws.synthetic_names)
    np.testing.assert_array_equal(v["flagged"], v["score"] >= info["threshold"])
    assert v["train_video"].isin(ws.train.names).all()
    assert (ws.root / "filters" / "published" / "model" / "reidentification_dynamic_best_network.pth").is_file()
    agr = compare_with_primary(ws, "published", ws.synthetic_names[0], n_boot=200)
    assert agr.n == len(ws.synthetic(ws.synthetic_names[0]))
    assert agr.both + agr.only_first + agr.only_second + agr.neither == agr.n
    # The published scorer refuses a project network, by name.
    with pytest.raises(EchoAuditError, match="published scorer needs a network in the published format"):
        add_filter(ws, "wrong", ws.root / "models" / "reid", scorer="published")


def test_bad_filters_change_nothing(ws_copy, tmp_path):
    ws = ws_copy
    before = (ws.root / "manifest.json").read_bytes()
    bad = tmp_path / "bad"
    shutil.copytree(ws.root / "models" / "reid", bad)
    (bad / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError):
        add_filter(ws, "bad", bad)
    with pytest.raises(EchoAuditError, match="filter name"):
        add_filter(ws, "../x", ws.root / "models" / "reid")
    with pytest.raises(EchoAuditError, match="not a folder"):
        add_filter(ws, "nothing", tmp_path / "missing")
    with pytest.raises(EchoAuditError, match="scorer must be one of"):
        add_filter(ws, "x", ws.root / "models" / "reid", scorer="pixels")
    assert (ws.root / "manifest.json").read_bytes() == before and not (ws.root / "filters").exists()
    with pytest.raises(EchoAuditError, match="no filter 'nope'"):
        filter_info(ws, "nope")


def test_cli_add_list_compare(ws_copy, tmp_path, capsys):
    root = str(ws_copy.root)
    assert cli_main(["filters", "add", "--workspace", root, "--name", "twin", "--reid",
                     str(ws_copy.root / "models" / "reid")]) == 0
    out = capsys.readouterr().out
    assert "filter 'twin' (video scorer, ReIDNet)" in out and "synthetic videos flagged" in out
    assert cli_main(["filters", "list", "--workspace", root]) == 0
    assert "twin: video scorer" in capsys.readouterr().out
    csv = tmp_path / "agree.csv"
    s = ws_copy.synthetic_names[0]
    assert cli_main(["filters", "compare", "--workspace", root, "--name", "twin", "--set", s, "--n-boot", "200",
                     "--out", str(csv)]) == 0
    out = capsys.readouterr().out
    assert f"set {s}: the workspace filter and 'twin' agree on" in out and "Cohen's kappa 1.00" in out
    assert len(pd.read_csv(csv)) == len(ws_copy.synthetic(s))
    assert cli_main(["filters", "compare", "--workspace", root, "--name", "ghost"]) == 2
    assert "no filter 'ghost'" in capsys.readouterr().err


def test_privacy_page_and_report_show_both_verdicts(ws_copy, tmp_path, monkeypatch):
    """One filter with the workspace's own network: the page and the report show kappa,
    the 2 x 2 counts and, after the slider moves the workspace filter to its lowest value,
    the videos only it flags, with thumbnails."""
    from streamlit.testing.v1 import AppTest

    from echoaudit.audit.scale import from_logit
    from echoaudit.report_files import write_report

    ws = ws_copy
    add_filter(ws, "twin", ws.root / "models" / "reid", scorer="video")
    ws = Workspace(ws.root)
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(ws.root))
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.run()
    at.switch_page("pages/privacy.py").run()
    assert not at.exception, [e.value for e in at.exception]
    name = at.selectbox(key="synthetic_set").value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cohen's kappa"] == "1.00" and metrics["Only twin"] == "0"
    assert any("The two filters give every synthetic video the same verdict" in s.value for s in at.success)
    lo = at.slider(key="privacy_threshold").min
    at.slider(key="privacy_threshold").set_value(lo).run()
    agr = compare_with_primary(ws, "twin", name, threshold=from_logit(lo), n_boot=2000)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Only this workspace's"] == str(agr.only_first) and metrics["Both flag"] == str(agr.both)
    assert metrics["Cohen's kappa"] == f"{agr.kappa:.2f}"
    if agr.only_first:
        table = next(d.value for d in at.dataframe if "flagged by" in d.value.columns)
        assert sorted(table["synthetic video"]) == sorted(agr.disagreements["query"])
        assert (table["flagged by"] == "this workspace only").all()
        assert table["synthetic"].str.startswith("data:image/png;base64,").all()
    # The report at the same threshold: the sentence, the table of disagreements, summary.json.
    paths = write_report(ws, tmp_path / "rep", synthetic=name, threshold=from_logit(lo), png=False)
    html = paths["html"].read_text()
    from html import escape

    assert "Second privacy filters" in html and escape(agr.sentence("the workspace filter", "filter 'twin'")) in html
    summary = __import__("json").loads(paths["summary"].read_text())
    assert summary["filters"][0]["agreement"]["only_first"] == agr.only_first
    assert len(pd.read_csv(paths["table_filter_twin_disagreements"])) == agr.only_first
