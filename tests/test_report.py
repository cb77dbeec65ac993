"""The meeting report and the views it shares with the dashboard, on the tiny workspace."""

import base64
import io
import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from echoaudit import report as R
from echoaudit.audit.privacy import flag_summary, flag_videos
from echoaudit.audit.recall import generative_recall
from echoaudit.errors import EchoAuditError
from echoaudit.workspace import Workspace


@pytest.fixture(scope="module")
def ws(tiny_workspace):
    return Workspace(tiny_workspace)


def test_privacy_view_agrees_with_the_library(ws):
    name = ws.synthetic_names[0]
    syn = ws.synthetic(name)
    t = ws.threshold(95).value
    view = R.privacy_view(ws, name, t)
    ref = flag_summary(flag_videos(ws.synthetic_scores(name), t, queries=syn.names))
    assert view["summary"] == ref
    assert len(view["flags"]) == len(syn) and set(view["unflagged"]) | set(
        view["flags"].loc[view["flags"]["flagged"], "query"]) == set(syn.names)
    # percentile: share of calibration scores strictly below t, by hand
    assert view["percentile"] == pytest.approx(100 * np.mean(view["calibration"].to_numpy() < t))
    everything = R.privacy_view(ws, name, 0.0)
    assert everything["summary"]["n_flagged"] == len(syn) and everything["unflagged"] == []


def test_unknown_synthetic_set_is_a_clear_error(ws):
    with pytest.raises(EchoAuditError, match="no synthetic set 'nope'.*it has"):
        R.privacy_view(ws, "nope", 0.5)


def test_coverage_view_recall_matches_generative_recall(ws):
    name = ws.synthetic_names[0]
    t = ws.threshold(95).value
    view = R.coverage_view(ws, name, t, n_rep=3)
    best = view["covered"]
    from echoaudit.audit.privacy import best_matches

    b = best_matches(ws.synthetic_scores(name), queries=ws.synthetic(name).names)
    ref = generative_recall(b, len(ws.train), t)
    assert int(best["covered"].sum()) == ref["matched"]
    assert view["by_ef"]["n_train"].sum() == len(ws.train) == view["by_view"]["n_train"].sum()
    assert set(view["vs_n"]) == {f"synthetic ({name})", "real held-out"}


def test_tile_videos_loops_every_tile_in_step():
    a = np.zeros((4, 8, 8), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None] * 60
    b = np.zeros((2, 16, 16), np.float32) + np.array([0.0, 1.0], np.float32)[:, None, None]
    out = R.tile_videos([a, b], ["q", "m"], tile=8, caption_px=10)
    assert out.shape == (4, 18, 16) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 10:, :8].mean(axis=(1, 2)), [0, 60, 120, 180])
    np.testing.assert_array_equal(out[:, 10:, 8:].mean(axis=(1, 2)), [0, 255, 0, 255])  # b looped: t mod 2
    assert out[:, :10].max() > 200 and out[:, :10].min() == 30  # caption text drawn on the dark band
    with pytest.raises(ValueError, match="one caption per video"):
        R.tile_videos([a], ["q", "m"])


def test_thumbnail_is_a_png_data_uri():
    uri = R.thumbnail_data_uri(np.linspace(0, 1, 32 * 32).reshape(32, 32), size=20)
    assert uri.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert img.size == (20, 20) and img.mode == "L"


def test_write_report_html_csv_and_png_failure(ws, tmp_path, monkeypatch):
    import plotly.io as pio

    def broken(*a, **k):
        raise RuntimeError("no Chrome here")

    monkeypatch.setattr(pio, "write_images", broken)
    out = tmp_path / "rep"
    paths = R.write_report(ws, out, percentile=95)
    name = ws.synthetic_names[0]
    html = paths["html"].read_text()
    assert "no Chrome here" in paths["png_error"] and "PNG figures were not written" in html
    # self-contained: plotly.js inline once, no script fetched from anywhere
    assert html.count("Plotly.newPlot") >= 5 and not re.search(r"<script[^>]*\bsrc=", html)
    assert len(html) > 1_000_000
    t = ws.threshold(95)
    ref = flag_summary(flag_videos(ws.synthetic_scores(name), t.value, queries=ws.synthetic(name).names))
    assert f"{ref['n_flagged']} of {ref['n_videos']}" in html and f"{t.value:.3f}" in html
    flags = pd.read_csv(paths["table_flags"])
    assert int(flags["flagged"].sum()) == ref["n_flagged"]
    unflagged = pd.read_csv(paths["table_unflagged"])["video"].tolist()
    assert sorted(unflagged) == sorted(flags.loc[~flags["flagged"], "query"])
    summary = json.loads(paths["summary"].read_text())
    assert summary["flags"]["n_flagged"] == ref["n_flagged"] and summary["threshold"]["value"] == pytest.approx(t.value)
    assert all(n["sentence"] for n in summary["numbers"])
    for info in ws.models_info()["fingerprint"]:
        assert info in html
    names = zipfile.ZipFile(io.BytesIO(R.zip_folder(out))).namelist()
    assert "report.html" in names and "tables/flags.csv" in names


def test_write_report_pngs(ws, tmp_path):
    import shutil

    if shutil.which("chromium") is None and not __import__("os").path.exists("/usr/bin/chromium"):
        pytest.skip("kaleido needs Chromium (/usr/bin/chromium); CI installs it")
    paths = R.write_report(ws, tmp_path / "rep", threshold=0.5)
    assert "png_error" not in paths, paths.get("png_error")
    pngs = [p for k, p in paths.items() if k.startswith("figure_")]
    assert len(pngs) >= 5
    assert all(Image.open(p).size == (900, 500) for p in pngs)
    assert "Threshold used" in paths["html"].read_text()
