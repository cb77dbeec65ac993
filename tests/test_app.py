"""The dashboard pages under streamlit.testing.v1.AppTest, on the tiny workspace: drive the
widgets and check the numbers shown against the library."""

import base64
import json
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from echoaudit.audit.privacy import best_matches, flag_summary, flag_videos
from echoaudit.audit.recall import generative_recall
from echoaudit.audit.scale import from_logit, to_logit
from echoaudit.data.video import load_video, write_video
from echoaudit.workspace import Workspace

APP = "../app.py"


@pytest.fixture(scope="module")
def ws(tiny_workspace):
    return Workspace(tiny_workspace)


@pytest.fixture
def app(ws, monkeypatch):
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(ws.root))

    def open_page(page: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        if page:
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def array(v):
    """A plotly spec array: a list, or plotly's typed-array dict {dtype, bdata}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_missing_workspace_offers_the_demo_build(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(tmp_path / "empty"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Build the demo workspace"]
    assert "No EchoAudit workspace" in at.warning[0].value and str(tmp_path / "empty") in at.warning[0].value


def test_a_running_build_shows_its_progress(tmp_path, monkeypatch):
    from echoaudit import buildjob

    root = tmp_path / "building"
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(root))
    with buildjob.build_lock(root):  # this test plays the build process
        buildjob.StatusWriter(root)(0.3, "indexing training frames: embedded item 10 of 320")
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert not at.exception
        assert "Building the phantom demo workspace" in at.info[0].value
        bar = at.get("progress")[0].proto
        assert bar.value == 30 and "indexing training frames: embedded item 10 of 320" in bar.text
        assert not at.button  # no second build offered while one runs
    at = AppTest.from_file(APP, default_timeout=60).run()  # the "process" is gone
    assert "A build stopped at 30 %" in at.warning[1].value
    assert [b.label for b in at.button] == ["Build the demo workspace"]


def test_a_workspace_with_pending_sets_is_usable(ws, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "partial"
    shutil.copytree(ws.root, root)
    m = json.loads((root / "manifest.json").read_text())
    m["pending"], m["synthetic"] = list(m["synthetic"]), {}
    m["scores"] = {k: v for k, v in m["scores"].items() if not k.startswith("synthetic_")}
    for key in ("temporal", "video_embeddings"):
        m["scores"][key] = [p for p in m["scores"][key] if "heldout" in p or "real" in p]
    (root / "manifest.json").write_text(json.dumps(m))
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Synthetic sets") == "0"
    assert any("still being generated: memorizing, regular" in i.value for i in at.info)
    assert [b.label for b in at.sidebar.button] == ["Make them now"]  # no build runs: offer to resume
    for page in ("privacy", "coverage", "report"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert "still being generated" in at.info[0].value
    at.switch_page("pages/temporal.py").run()  # real held-out curves are there already
    assert not at.exception and at.get("plotly_chart")


def test_broken_workspace_shows_the_error_text(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text("{not json")
    monkeypatch.setenv("ECHOAUDIT_WORKSPACE", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "is not valid JSON" in at.error[0].value


def test_home_shows_what_is_loaded(app, ws):
    at = app()
    assert metric(at, "Training videos") == str(len(ws.train))
    assert metric(at, "Held-out videos (VAL + TEST)") == str(len(ws.heldout))
    assert metric(at, "Indexed training frames") == f"{ws.manifest['index']['ntotal']:,}"
    models = at.dataframe[1].value
    assert list(models["fingerprint"]) == list(ws.models_info()["fingerprint"])


def _flagged(ws, name, t):
    return flag_summary(flag_videos(ws.synthetic_scores(name), t, queries=ws.synthetic(name).names))


def test_privacy_slider_updates_the_flagged_count(app, ws):
    at = app("privacy")
    name = at.selectbox(key="synthetic_set").value
    cal = ws.calibration(95)
    t0 = cal.value
    slider = at.slider(key="privacy_threshold")
    assert slider.value == pytest.approx(round(to_logit(t0), 2)) and "logit" in slider.label
    assert slider.min < slider.value < slider.max  # the calibrated default sits inside the range
    s = _flagged(ws, name, at.session_state["audit_threshold"])
    assert metric(at, "Flagged synthetic videos") == f"{s['n_flagged']} of {s['n_videos']}"
    assert metric(at, "Calibrated threshold (95th pct.)") == f"{to_logit(t0):.2f}"
    captions = " ".join(c.value for c in at.caption)
    assert cal.sentence() in captions  # the same sentence as the CLI and the report
    # the measured false-flag rate at the slider's value
    assert f"of {cal.check['n']} real videos of {cal.check['n_patients']} check patients" in captions
    assert any("more than chance" in m.value for m in at.markdown)
    # the lowest end, just above the lowest synthetic best score, the top end: counts must follow
    best = best_matches(ws.synthetic_scores(name), queries=ws.synthetic(name).names)["score"]
    lo, hi = slider.min, slider.max
    for x in (lo, round(float(to_logit(best.min())) + 0.005, 2), hi):
        at.slider(key="privacy_threshold").set_value(x).run()  # elements go stale after a run: fetch again
        t = from_logit(x)
        assert at.session_state["audit_threshold"] == pytest.approx(t, rel=0, abs=1e-15)
        s = _flagged(ws, name, t)
        assert metric(at, "Flagged synthetic videos") == f"{s['n_flagged']} of {s['n_videos']}"
        assert metric(at, "Flagged share") == f"{100 * s['share']:.1f} %"
    assert at.session_state["audit_threshold"] == pytest.approx(from_logit(hi))
    hist = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert hist["layout"]["shapes"][0]["x0"] == pytest.approx(hi)
    assert "logit" in hist["layout"]["xaxis"]["title"]["text"]
    assert len(at.get("download_button")) == 1


def test_privacy_rule_switch_and_its_measured_rate(app, ws):
    at = app("privacy")
    table = next(d.value for d in at.dataframe if "rule" in d.value.columns)
    pub = ws.calibration(95, "train_to_heldout")
    assert table["measured on check patients (%)"].tolist()[1] == pytest.approx(100 * pub.check["rate"])
    at.radio(key="privacy_rule").set_value("train_to_heldout").run()
    assert not at.exception
    assert at.slider(key="privacy_threshold").value == pytest.approx(round(to_logit(pub.value), 2))
    assert pub.sentence() in " ".join(c.value for c in at.caption)
    at.switch_page("pages/coverage.py").run()
    at.switch_page("pages/privacy.py").run()  # back: rule and threshold kept
    assert at.radio(key="privacy_rule").value == "train_to_heldout"
    assert at.slider(key="privacy_threshold").value == pytest.approx(round(to_logit(pub.value), 2))


def test_privacy_other_set_and_flagged_table(app, ws):
    at = app("privacy")
    other = ws.synthetic_names[-1]
    at.selectbox(key="synthetic_set").select(other).run()
    lo = at.slider(key="privacy_threshold").min
    at.slider(key="privacy_threshold").set_value(lo).run()
    s = _flagged(ws, other, from_logit(lo))
    assert metric(at, "Flagged synthetic videos") == f"{s['n_videos']} of {s['n_videos']}"
    table = next(d.value for d in at.dataframe if "synthetic" in d.value.columns)
    assert len(table) == s["n_videos"] and table["synthetic"].str.startswith("data:image/png;base64,").all()


def test_coverage_recall_matches_the_library(app, ws):
    from echoaudit.audit.coverage import coverage

    at = app("coverage")
    name = at.selectbox(key="synthetic_set").value
    best = best_matches(ws.synthetic_scores(name), queries=ws.synthetic(name).names)
    r = generative_recall(best, len(ws.train), None)  # coverage: best match, no threshold
    assert metric(at, "Coverage, video level (synthetic)") == f"{100 * r['recall']:.1f} %"
    cov = coverage(best, ws.train.names, list(ws.train.patients))
    assert metric(at, "Coverage, patient level (synthetic)") == f"{100 * cov['patient']['share']:.1f} %"
    assert "Adjusted recall (synthetic / real)" not in [m.label for m in at.metric]
    adjusted = [m for m in at.metric if m.label.startswith("Adjusted coverage")]
    assert len(adjusted) == 2
    captions = [c.value for c in at.caption]
    assert sum("95 % CI" in c and "both sets at n =" in c for c in captions) == 2  # no ratio without its interval
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = [tr.get("name", "") for sp in specs for tr in sp["data"]]
    assert "ideal: 1-(1-1/N)^n" in names and any(n.startswith("synthetic") for n in names)
    pca = next(sp for sp in specs if "PCA" in sp["layout"]["title"]["text"])
    shown = {v for tr in pca["data"] if "training" in tr["name"] or tr["name"] == "not covered" for v in tr["customdata"]}
    assert shown == set(ws.train.names)


def test_temporal_page_draws_the_selected_curves(app, ws):
    at = app("temporal")
    chosen = at.multiselect(key="temporal_videos").value
    assert chosen
    at.radio(key="temporal_measure").set_value("correlation").run()
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(curves["data"]) == len(chosen) and "correlation" in curves["layout"]["yaxis"]["title"]["text"]
    assert len({c.split(" / ")[0] for c in chosen}) == 1 + len(ws.synthetic_names)  # real + every set
    tmp = ws.temporal
    set_name, video = chosen[-1].split(" / ")
    first = tmp[(tmp["video"] == video) & (tmp["set"] == set_name)].sort_values("frame")["correlation"].to_numpy()
    np.testing.assert_allclose(array(curves["data"][-1]["y"]), first, rtol=1e-6)
    # one time axis in seconds: frame numbers over the set's own FPS
    assert "(s)" in curves["layout"]["xaxis"]["title"]["text"]
    ds = ws.heldout if set_name == "real held-out" else ws.synthetic(set_name)
    frames = tmp[(tmp["video"] == video) & (tmp["set"] == set_name)].sort_values("frame")["frame"].to_numpy()
    fps = float(ds.table.set_index("FileName").loc[video, "FPS"])
    np.testing.assert_allclose(array(curves["data"][-1]["x"]), frames / fps, rtol=1e-6)


def test_inspect_workspace_video_verdict(app, ws):
    at = app("inspect")
    at.radio(key="inspect_source").set_value("From the workspace").run()
    name = ws.synthetic_names[0]
    at.selectbox(key="inspect_set").select(name).run()
    video = at.selectbox(key="inspect_video").value
    t = ws.threshold(95).value
    stored = ws.synthetic_scores(name).query("query == @video")["score"].max()
    badge = (at.error or at.success)[0].value
    shown = float(re.search(r"probability ([0-9.]+)", badge).group(1))
    logit = float(re.search(r"re-ID logit (-?[0-9.]+)", badge).group(1))
    assert shown == pytest.approx(stored, abs=2e-3) and logit == pytest.approx(to_logit(shown), abs=0.01)
    assert badge.startswith("MEMORIZED" if shown >= t else "NOT MEMORIZED")
    assert at.get("video")[0].proto.url  # the tiled H.264 clip
    strip = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert strip["layout"]["xaxis"]["title"]["text"].startswith("frame")


def test_inspect_upload_planted_copy_and_bad_file(app, ws, tmp_path):
    at = app("inspect")
    frames = ws.train.load(0).frames
    rng = np.random.default_rng(0)
    path = write_video(tmp_path / "copy.avi", np.clip(frames + rng.normal(0, 0.01, frames.shape), 0, 1), 25.0)
    data = path.read_bytes()
    at.file_uploader(key="inspect_upload").upload("copy.avi", data, "video/x-msvideo").run()
    assert not at.exception
    video = load_video(data, extension=".avi", size=ws.size)  # scored on the workspace's clip spec
    expected = ws.query(video.frames, fps=video.fps).per_train["score"].max()
    badge = (at.error or at.success)[0].value
    t = ws.threshold(95).value
    assert badge.startswith("MEMORIZED" if expected >= t else "NOT MEMORIZED")
    assert f"{expected:.6f}" in badge and f"{to_logit(expected):.2f}" in badge
    table = at.dataframe[0].value  # the 4 nearest training videos (the slider's default), best first
    assert list(table["training video"]) == list(ws.query(video.frames, fps=video.fps).per_train["train_video"][:4])

    at2 = app("inspect")
    at2.file_uploader(key="inspect_upload").upload("bad.avi", b"RIFF0000nonsense" * 10, "video/x-msvideo").run()
    assert not at2.exception
    assert at2.error[0].value.startswith("uploaded .avi (160 bytes) is not a video")  # names what it got, not a traceback


def test_report_page_writes_and_offers_the_zip(app, ws):
    at = app("report")
    at.checkbox(key="report_png").uncheck().run()
    at.button(key="report_write").click().run(timeout=120)
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the report (zip)" in labels
    folders = list((ws.root / "reports").iterdir())
    assert folders and (folders[-1] / "report.html").exists() and (folders[-1] / "tables" / "flags.csv").exists()
