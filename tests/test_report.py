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

import html as html_mod

from echoaudit import media as M
from echoaudit import report as R
from echoaudit import report_files as RF
from echoaudit.audit.privacy import best_matches
from echoaudit.audit.calibration import excess_over_null
from echoaudit.audit.scale import LOGIT_MAX, to_logit
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
    split = ws.calibration_split
    assert sorted(view["calibration"].index) == sorted(split.calibration)  # the calibration part only
    # measured false-flag rate at t: check videos whose best score reaches it, by hand
    best = ws.heldout_scores.groupby("query")["score"].max().reindex(list(split.check)).fillna(0.0)
    assert (view["check"]["k"], view["check"]["n"]) == (int((best >= t).sum()), len(split.check))
    assert view["logit"] == pytest.approx(to_logit(t))
    assert view["excess"] == excess_over_null(ref, view["check"])
    everything = R.privacy_view(ws, name, 0.0)
    assert everything["summary"]["n_flagged"] == len(syn) and everything["unflagged"] == []
    assert everything["check"]["k"] == len(split.check) and everything["excess"]["excess"] == pytest.approx(0.0)


def test_calibration_view_both_rules_and_a_slider_range_around_them(ws):
    name = ws.synthetic_names[0]
    view = R.calibration_view(ws, name)
    assert view["default"] == "heldout_to_train" and set(view["rules"]) == {"heldout_to_train", "train_to_heldout"}
    for rule, d in view["rules"].items():
        cal = ws.calibration(95, rule)
        assert d["value"] == cal.value and d["sentence"] == cal.sentence() and d["check"] == cal.check
    table = view["table"]
    assert table["rule"].tolist() == ["held-out-to-train rule (default)", "EchoNet-Synthetic rule"]
    assert table["measured on check patients (%)"].tolist() == pytest.approx(
        [100 * view["rules"][r]["check"]["rate"] for r in ("heldout_to_train", "train_to_heldout")])
    lo, hi = view["range"]
    best = best_matches(ws.synthetic_scores(name), queries=ws.synthetic(name).names)["score"]
    for x in [d["logit"] for d in view["rules"].values()] + list(to_logit(best.to_numpy())):
        # inside the range; only p = 1.0 (logit LOGIT_MAX = 36.7) may pass its top, which stops at 36
        assert lo < x and (x < hi if x < LOGIT_MAX else hi == 36.0)


def test_unknown_synthetic_set_is_a_clear_error(ws):
    with pytest.raises(EchoAuditError, match="no synthetic set 'nope'.*it has"):
        R.privacy_view(ws, "nope", 0.5)


def test_coverage_view_matches_the_library(ws):
    from echoaudit.audit.coverage import coverage
    from echoaudit.audit.privacy import best_matches

    name = ws.synthetic_names[0]
    view = R.coverage_view(ws, name, n_rep=3, n_boot=60)
    b = best_matches(ws.synthetic_scores(name), queries=ws.synthetic(name).names)
    ref = generative_recall(b, len(ws.train), None)  # coverage = the best-match rule, no threshold
    assert int(view["covered"]["covered"].sum()) == ref["matched"] == view["coverage"]["synthetic"]["video"]["matched"]
    pats = coverage(b, ws.train.names, list(ws.train.patients))["patient"]
    assert view["coverage"]["synthetic"]["patient"] == pats
    # the real baseline: check patients only, never the calibration part
    check = set(view["coverage"]["check_videos"])
    split = ws.calibration_split
    if split is not None:
        assert check == set(split.check) and not check & set(split.calibration)
    assert view["coverage"]["real"]["video"]["n_queries"] <= len(check) < len(ws.heldout)
    assert view["by_ef"]["n_train"].sum() == len(ws.train) == view["by_view"]["n_train"].sum()
    assert set(view["vs_n"]) == {f"synthetic ({name})", "real held-out (check)"}


def test_temporal_view_in_seconds_and_per_set(ws):
    view = R.temporal_view(ws, n_real=4, seed=1)
    curves, summary = view["curves"], view["summary"]
    # times = frame / FPS of each set's own FileList
    for set_name, part in curves.groupby("set"):
        ds = ws.heldout if set_name == R.REAL_SET else ws.synthetic(set_name)
        fps = ds.table.set_index("FileName")["FPS"]
        np.testing.assert_allclose(part["time_s"], part["frame"] / part["video"].map(fps).to_numpy())
    real = curves[curves["set"] == R.REAL_SET]
    assert real["video"].nunique() == min(4, ws.temporal.query("set == @R.REAL_SET")["video"].nunique())
    # mean leaves frame 0 out, by hand for one video
    vid = summary[summary["measure"] == "first"].iloc[0]
    c = curves[curves["id"] == vid["name"]].sort_values("frame")["first"].to_numpy()
    assert vid["mean"] == pytest.approx(c[1:].mean())
    # per-set numbers count that set's videos only (the report once pooled every synthetic set)
    for set_name in ws.synthetic_names:
        n = R.temporal_set_numbers(summary, set_name)
        own = summary[(summary["set"] == set_name) & (summary["measure"] == "first")]
        assert n["n_videos"] == len(own) == curves.loc[curves["set"] == set_name, "video"].nunique()
        assert n["mean"] == pytest.approx(own["mean"].mean())
        # the interval stays inside the per-video means' range (probabilities never past 1)
        assert own["mean"].min() - 1e-12 <= n["low"] <= n["mean"] <= n["high"] <= own["mean"].max() + 1e-12


def test_conventions_view_matches_the_published_rules_on_stored_first_frames(ws):
    from echoaudit.audit.conventions import echonet_synthetic_threshold, notebook_best_matches, notebook_threshold

    name = ws.synthetic_names[0]
    view = R.conventions_view(ws, name)
    assert list(view["modes"]) == ["echoaudit", "notebooks", "echonet_synthetic"]
    split = ws.calibration_split
    held_names, held = ws.first_frames("heldout")
    cal = held[[held_names.index(v) for v in split.calibration]]
    check = held[[held_names.index(v) for v in split.check]]
    syn_names, syn = ws.first_frames(name)
    meta, train = ws.index.metadata, ws.engine.train_embeddings
    first = meta["frame"].to_numpy() == 0
    assert first.sum() == len(ws.train)  # one first frame per training video

    nb = view["modes"]["notebooks"]
    tau = notebook_threshold(cal, train, ws.head_logits)
    assert nb["threshold"] == pytest.approx(tau, abs=1e-6) and nb["n_calibration"] == len(split.calibration)
    best = notebook_best_matches(syn, syn_names, train, meta["video"].astype(str).tolist(), ws.head_logits)
    assert nb["flagged"]["k"] == int((best["score"] >= tau).sum()) and nb["flagged"]["n"] == len(syn_names)
    chk = notebook_best_matches(check, list(split.check), train, meta["video"].astype(str).tolist(), ws.head_logits)
    assert nb["check"]["k"] == int((chk["score"] >= tau).sum()) and nb["check"]["n"] == len(split.check)

    es = view["modes"]["echonet_synthetic"]
    assert es["threshold"] == pytest.approx(echonet_synthetic_threshold(train[first], cal), abs=1e-6)
    corr = np.corrcoef(np.vstack([syn, train[first]]).astype(np.float64))[: len(syn), len(syn):].max(axis=1)
    assert es["flagged"]["k"] == int((corr >= es["threshold"]).sum())

    own, cal_own = view["modes"]["echoaudit"], ws.calibration(95)
    ref = flag_summary(flag_videos(ws.synthetic_scores(name), cal_own.value, queries=ws.synthetic(name).names))
    assert own["threshold"] == pytest.approx(to_logit(cal_own.value)) and own["flagged"]["k"] == ref["n_flagged"]
    assert own["check"]["k"] == cal_own.check["k"]
    table = view["table"]
    assert table["mode"].tolist() == list(view["modes"]) and "re-ID logit" in table["threshold"].iloc[1]
    assert "correlation" in table["threshold"].iloc[2] and "check patients" in view["rule"]
    assert [m["scale"] for m in view["modes"].values()] == ["re-ID logit", "re-ID logit", "Pearson correlation"]


def test_conventions_are_left_out_of_a_workspace_built_without_first_frames(ws, tmp_path):
    old = Workspace(ws.root)
    del old.manifest["scores"]["first_frames"]  # this instance only: the file stays as built
    assert old.first_frames("heldout") is None and R.conventions_view(old, old.synthetic_names[0]) is None
    paths = RF.write_report(old, tmp_path / "rep", png=False)
    assert "Published conventions" not in paths["html"].read_text() and "table_conventions" not in paths
    assert json.loads(paths["summary"].read_text())["conventions"] is None


def test_threshold_grid_is_even_on_the_logit_scale():
    best = np.array([0.3, 0.99, 0.9999, 0.999999])
    grid = R.threshold_grid(best, [0.995], n=41)
    x = to_logit(grid)
    np.testing.assert_allclose(np.diff(x), np.diff(x)[0])  # evenly spaced in logit units
    assert x[0] <= to_logit(0.3) and x[-1] >= to_logit(0.999999) and len(grid) == 41
    assert np.count_nonzero((grid >= 0.99) & (grid <= 0.999999)) >= 10  # not one point in the last percent


def test_tile_videos_loops_every_tile_in_step():
    a = np.zeros((4, 8, 8), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None] * 60
    b = np.zeros((2, 16, 16), np.float32) + np.array([0.0, 1.0], np.float32)[:, None, None]
    out = M.tile_videos([a, b], ["q", "m"], tile=8, caption_px=10)
    assert out.shape == (4, 18, 16) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 10:, :8].mean(axis=(1, 2)), [0, 60, 120, 180])
    np.testing.assert_array_equal(out[:, 10:, 8:].mean(axis=(1, 2)), [0, 255, 0, 255])  # b looped: t mod 2
    assert out[:, :10].max() > 200 and out[:, :10].min() == 30  # caption text drawn on the dark band
    with pytest.raises(ValueError, match="one caption per video"):
        M.tile_videos([a], ["q", "m"])


def test_thumbnail_is_a_png_data_uri():
    uri = M.thumbnail_data_uri(np.linspace(0, 1, 32 * 32).reshape(32, 32), size=20)
    assert uri.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert img.size == (20, 20) and img.mode == "L"


def test_write_report_html_csv_and_png_failure(ws, tmp_path, monkeypatch):
    import plotly.io as pio

    def broken(*a, **k):
        raise RuntimeError("no Chrome here")

    monkeypatch.setattr(pio, "write_images", broken)
    out = tmp_path / "rep"
    paths = RF.write_report(ws, out, percentile=95)
    name = ws.synthetic_names[0]
    html = paths["html"].read_text()
    assert "no Chrome here" in paths["png_error"] and "PNG figures were not written" in html
    # self-contained: plotly.js inline once, no script fetched from anywhere
    assert html.count("Plotly.newPlot") >= 5 and not re.search(r"<script[^>]*\bsrc=", html)
    assert len(html) > 1_000_000
    t = ws.threshold(95)
    ref = flag_summary(flag_videos(ws.synthetic_scores(name), t.value, queries=ws.synthetic(name).names))
    assert f"{ref['n_flagged']} of {ref['n_videos']}" in html and f"{to_logit(t.value):.2f} re-ID logit" in html
    cal = ws.calibration(95)
    assert html_mod.escape(cal.sentence()) in html and "EchoNet-Synthetic rule (for comparison)" in html
    assert "Excess over chance" in html and "synthetic videos more than chance" in html
    flags = pd.read_csv(paths["table_flags"])
    assert int(flags["flagged"].sum()) == ref["n_flagged"]
    unflagged = pd.read_csv(paths["table_unflagged"])["video"].tolist()
    assert sorted(unflagged) == sorted(flags.loc[~flags["flagged"], "query"])
    summary = json.loads(paths["summary"].read_text())
    assert summary["flags"]["n_flagged"] == ref["n_flagged"] and summary["threshold"]["value"] == pytest.approx(t.value)
    assert summary["threshold"]["check"] == cal.check and summary["excess"]["measured"]
    assert flags["logit"].to_numpy() == pytest.approx(to_logit(flags["score"].to_numpy()))
    assert all(n["sentence"] for n in summary["numbers"])
    for info in ws.models_info()["fingerprint"]:
        assert info in html
    # temporal numbers of this set only, not pooled over every synthetic set
    temporal = summary["temporal"][name]
    n_own = ws.temporal.query("set == @name")["video"].nunique()
    assert temporal["n_videos"] == n_own and f"over {n_own} videos" in html
    assert len(ws.synthetic_names) > 1 and ws.temporal.query("set != @R.REAL_SET")["video"].nunique() >= n_own
    assert "Adjusted recall" not in html and "Adjusted coverage, patient level (synthetic / real)" in html
    for row in summary["numbers"]:
        if "Adjusted coverage" in row["name"] or "Coverage limit" in row["name"]:
            assert "95 % CI" in row["value"]  # no ratio without its interval
    # the published first-frame conventions beside the whole-video rule
    assert "Published conventions (first frame only)" in html
    conv = pd.read_csv(paths["table_conventions"])
    assert conv["mode"].tolist() == ["echoaudit", "notebooks", "echonet_synthetic"]
    modes = summary["conventions"]["modes"]
    assert modes["echoaudit"]["flagged"]["k"] == ref["n_flagged"] and "best" not in modes["notebooks"]
    names = zipfile.ZipFile(io.BytesIO(RF.zip_folder(out))).namelist()
    assert "report.html" in names and "tables/flags.csv" in names


def test_write_report_pngs(ws, tmp_path):
    import shutil

    if shutil.which("chromium") is None and not __import__("os").path.exists("/usr/bin/chromium"):
        pytest.skip("kaleido needs Chromium (/usr/bin/chromium); CI installs it")
    paths = RF.write_report(ws, tmp_path / "rep", threshold=0.5)
    assert "png_error" not in paths, paths.get("png_error")
    pngs = [p for k, p in paths.items() if k.startswith("figure_")]
    assert len(pngs) >= 5
    assert all(Image.open(p).size == (900, 500) for p in pngs)
    assert "Threshold used" in paths["html"].read_text()
