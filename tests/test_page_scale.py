"""The pages at scale, small: bench/page_speed.py's fixture replicates the tiny workspace's
synthetic sets to 500 videos each, and every page opens with bounded pickers and tables
(no timing here: bench/page_speed.py times 10,000)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from echoaudit.pickers import MAX_OPTIONS, PAGE_SIZES
from echoaudit.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
APP = "../app.py"
N = 500


def _bench():
    spec = importlib.util.spec_from_file_location("page_speed", ROOT / "bench" / "page_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def scale_ws(tiny_workspace, tmp_path_factory):
    info = _bench().make_scale_workspace(tiny_workspace, tmp_path_factory.mktemp("scale") / "ws", N)
    return Workspace(info["root"]), info


def test_the_fixture_replicates_every_per_video_table(scale_ws, tiny_workspace):
    ws, info = scale_ws
    src = Workspace(tiny_workspace)
    assert set(info["sets"]) == set(src.synthetic_names)
    for name in ws.synthetic_names:
        m = len(src.synthetic(name))
        ds = ws.synthetic(name)  # every listed video is there (a link)
        assert len(ds) == N and ds.names[:m] == src.synthetic(name).names
        assert ds.names[m] == f"{ds.names[0]}_r1" and list(ds.patients) == ds.names
        assert ws.manifest["synthetic"][name]["n"] == N
        scores, source = ws.synthetic_scores(name), src.synthetic_scores(name)
        assert scores["query"].nunique() == N and len(scores) == len(source) * (N // m) + len(
            source[source["query"].isin(src.synthetic(name).names[: N % m])])
        a = scores[scores["query"] == ds.names[m]].drop(columns="query").reset_index(drop=True)
        b = source[source["query"] == ds.names[0]].drop(columns="query").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)  # a replica scores as its source
    tmp = ws.temporal
    assert all(tmp.loc[tmp["set"] == s, "video"].nunique() == N for s in ws.synthetic_names)
    assert (ws.root / "manifest.json").stat().st_ino != (Path(tiny_workspace) / "manifest.json").stat().st_ino
    assert json.loads((Path(tiny_workspace) / "manifest.json").read_text())["synthetic"][name]["n"] == m  # untouched


@pytest.fixture
def app(scale_ws, monkeypatch):
    ws, _ = scale_ws
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(ws.root))

    def open_page(page: str, **state) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        for k, v in state.items():
            at.session_state[k] = v
        at.run()
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def _options(box) -> list[str]:
    return list(box.options)


def test_inspect_offers_a_short_list_and_finds_any_video(app, scale_ws):
    ws, _ = scale_ws
    name = ws.synthetic_names[0]
    at = app("inspect", inspect_source="From the workspace", inspect_set=name)
    box = at.selectbox(key="inspect_video")
    assert 0 < len(_options(box)) <= MAX_OPTIONS < N
    assert any("type to find any other" in c.value for c in at.caption)
    target = ws.synthetic(name).names[N - 1]  # far down the list
    at.text_input(key="inspect_video_search").input(target).run()
    box = at.selectbox(key="inspect_video")
    assert target in [o.split(" · ")[0] for o in _options(box)] and len(_options(box)) <= 2  # + the current choice
    at.selectbox(key="inspect_video").select(target).run()
    assert not at.exception and at.selectbox(key="inspect_video").value == target
    assert at.get("video")  # the side-by-side clip of the chosen video
    at.text_input(key="inspect_video_search").input("syn_").run()  # every video matches: capped, said so
    assert len(_options(at.selectbox(key="inspect_video"))) <= MAX_OPTIONS + 1
    assert any("refine the search" in c.value for c in at.caption)
    assert at.selectbox(key="inspect_video").value == target  # typing never changes the choice


def test_privacy_tables_and_queue_are_paged(app, scale_ws):
    ws, _ = scale_ws
    at = app("privacy")
    at.slider(key="privacy_threshold").set_value(at.slider(key="privacy_threshold").min).run()  # flag every video
    assert at.metric[0].value == f"{N} of {N}"
    flagged = next(d.value for d in at.dataframe if "synthetic video" in d.value.columns)
    assert len(flagged) == PAGE_SIZES[0]
    assert flagged["synthetic"].str.startswith("data:image/png;base64,").all()  # thumbnails of the page's rows
    queue = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert len(queue) == PAGE_SIZES[0]
    assert len(_options(at.selectbox(key="review_video"))) <= MAX_OPTIONS
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.count("All rows (CSV)") >= 2 and any(lb.startswith("Download the filtered set") for lb in labels)
    at.number_input(key="privacy_flagged_page").set_value(3).run()
    page3 = next(d.value for d in at.dataframe if "synthetic video" in d.value.columns)
    assert not at.exception and len(page3) == PAGE_SIZES[0]
    assert set(page3["synthetic video"]).isdisjoint(flagged["synthetic video"])
    assert any(re.search(r"flagged videos 51-75 of 500 \(page 3 of 20\)", c.value) for c in at.caption)


def test_coverage_temporal_utility_and_report_pages_render_bounded(app, scale_ws):
    ws = scale_ws[0]
    at = app("coverage")
    table = next(d.value for d in at.dataframe if "training video" in d.value.columns)
    assert len(table) <= PAGE_SIZES[0]
    at = app("temporal")
    options = _options(at.multiselect(key="temporal_videos"))
    assert len(options) <= MAX_OPTIONS and at.multiselect(key="temporal_videos").value
    for label in ("mean", "minimum"):
        spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if label in c.proto.spec))
        assert all(t.get("boxpoints") == "all" for t in spec["data"])  # 500 <= MAX_BOX_POINTS: every point
    for name in ws.synthetic_names:
        assert not app("utility", synthetic_set=name).exception
    assert not app("report").exception


def test_report_html_shows_the_first_rows_and_links_the_csv(scale_ws, tmp_path):
    from echoaudit.report_files import HTML_ROWS, write_report

    ws, _ = scale_ws
    name = ws.synthetic_names[0]
    paths = write_report(ws, tmp_path / "rep", synthetic=name, threshold=1e-9, png=False)  # every video flagged
    html = paths["html"].read_text()
    assert len(pd.read_csv(paths["table_flags"])) == N
    assert f"The first {HTML_ROWS} of {N:,} rows; all of them in <a href='tables/flags.csv'>" in html
    assert html.count("<tr>") < 20 * HTML_ROWS  # bounded, whatever N is
    assert "Tables (CSV, beside this file)" in html and f"<td>{N:,}</td>" in html
