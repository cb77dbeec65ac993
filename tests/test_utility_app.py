"""The Utility page under streamlit.testing.v1.AppTest: the command to run when nothing is
computed, and the table, sentence, per-bin figures and EF agreement when it is."""

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest
from utility_fixtures import write_fake_utility

from echoaudit.utility_view import display_table, utility_command, utility_folder

APP = "../app.py"


def _open(root, monkeypatch) -> AppTest:
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page("pages/utility.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_utility_page_without_results_gives_the_command(tiny_workspace, monkeypatch):
    at = _open(tiny_workspace, monkeypatch)
    name = at.selectbox(key="synthetic_set").value
    assert "not computed yet" in at.info[0].value
    assert utility_command(str(tiny_workspace), name) in at.info[0].value
    assert f"--set {name}" in at.info[0].value and not at.get("plotly_chart")


@pytest.fixture(scope="module")
def ws_with_results(tiny_workspace, tmp_path_factory):
    root = tmp_path_factory.mktemp("utility_app") / "ws"
    shutil.copytree(tiny_workspace, root)
    names = list(json.loads((root / "manifest.json").read_text())["synthetic"])
    return root, names[0], write_fake_utility(utility_folder(root, names[0]), names[0])


def test_utility_page_shows_table_sentence_figures_and_agreement(ws_with_results, monkeypatch):
    root, name, want = ws_with_results
    at = _open(root, monkeypatch)
    at.selectbox(key="synthetic_set").select(name).run()
    assert not at.exception and not at.info
    table = at.dataframe[0].value
    assert len(table) == 5 and table.equals(display_table(want["table"]))
    assert list(table.columns) == ["training set", "videos", "seeds", "MAE (EF points)", "RMSE (EF points)", "R^2",
                                   "MAE vs real (EF points)"]
    assert any(want["sentence"] in m.value for m in at.markdown)
    specs = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
             for c in at.get("plotly_chart")}
    by_ef = specs["EF model error by EF bin (real TEST patients)"]
    assert [tr["name"] for tr in by_ef["data"]][:2] == ["(a) real TRAIN", "(b) synthetic"] and len(by_ef["data"]) == 5
    assert "Coverage by EF bin (%)" in specs  # the Coverage page's figure, beside it
    scatter = next(sp for t, sp in specs.items() if t.startswith("EF agreement of the generator"))
    assert scatter["layout"]["xaxis"]["title"]["text"] == "EF asked for (%)"
    mae = want["agreement"]["mae"]
    shown = next(m for m in at.metric if m.label == "EF agreement MAE (EF points)")
    assert shown.value == f"{mae['value']:.1f}"
    assert any(f"95 % CI {mae['low']:.1f} to {mae['high']:.1f}" == c.value for c in at.caption)
    assert any(m.label == "Pearson r" for m in at.metric)


def test_utility_page_damaged_results_show_the_error(ws_with_results, tmp_path, monkeypatch):
    root, name, _ = ws_with_results
    broken = tmp_path / "ws"
    shutil.copytree(root, broken)
    (utility_folder(broken, name) / "utility.json").write_text("{not json")
    at = _open(broken, monkeypatch)
    at.selectbox(key="synthetic_set").select(name).run()
    assert not at.exception
    assert "is not valid JSON" in at.error[0].value
