"""Several people on one server, and the privacy of what they upload (SECURITY.md).

Unit level: the Streamlit config binds to 127.0.0.1; upload-derived caches are
session-scoped and never land in the process-wide cache; an upload is logged by hash,
never by name; decoding and scoring an upload write nothing to disk; the pages never
mutate the Workspace every session shares. Browser level: two Playwright contexts on
one server upload different videos and move the threshold independently, and the
server drops one session's upload-derived cache entries when that session closes."""

import builtins
import hashlib
import io
import logging
import os
import re
import socket
import sys
import time
import tomllib
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echoaudit.data.video import VideoLimits, load_video, write_video
from echoaudit.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
APP = "../app.py"
SECRET_NAME = "Jane-Doe_MRN-0042_echo.avi"  # a file name that must never reach the log
if str(REPO) not in sys.path:  # widgets.py sits at the repository root, beside app.py
    sys.path.insert(0, str(REPO))


def _planted(ws: Workspace, path: Path, index: int = 0, seed: int = 0) -> bytes:
    """A training video with a little noise, written as AVI: a planted copy."""
    frames = ws.train.load(index).frames
    noisy = np.clip(frames + np.random.default_rng(seed).normal(0, 0.01, frames.shape), 0, 1)
    return write_video(path, noisy, 25.0).read_bytes()


@contextmanager
def _disk_writes():
    """Record every file or temporary folder Python code opens for writing or creates.

    Catches ``open``/``io.open`` in a writing mode, ``os.open`` with a writing flag (every
    ``tempfile`` file goes through it) and ``tempfile.mkdtemp`` (TemporaryDirectory)."""
    import tempfile

    seen: list[str] = []
    real_open, real_os_open, real_mkdtemp = builtins.open, os.open, tempfile.mkdtemp
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def rec_open(file, mode="r", *a, **kw):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in str(mode) for c in "wax+"):
            seen.append(f"open({file!s}, {mode!r})")
        return real_open(file, mode, *a, **kw)

    def rec_os_open(path, flags, *a, **kw):
        if flags & writing:
            seen.append(f"os.open({path!s})")
        return real_os_open(path, flags, *a, **kw)

    def rec_mkdtemp(*a, **kw):
        path = real_mkdtemp(*a, **kw)
        seen.append(f"mkdtemp -> {path}")
        return path

    mp = pytest.MonkeyPatch()
    mp.setattr(builtins, "open", rec_open)
    mp.setattr(io, "open", rec_open)
    mp.setattr(os, "open", rec_os_open)
    mp.setattr(tempfile, "mkdtemp", rec_mkdtemp)
    try:
        yield seen
    finally:
        mp.undo()


# ---------------------------------------------------------------------------------------
# configuration


def test_config_binds_to_localhost_and_takes_what_the_reader_takes():
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["headless"] is True
    assert cfg["browser"]["gatherUsageStats"] is False
    # server.maxUploadSize is in MiB (Streamlit multiplies it by 1024 * 1024).
    assert cfg["server"]["maxUploadSize"] * 2**20 == VideoLimits().max_bytes


# ---------------------------------------------------------------------------------------
# caches and logs, under AppTest


def test_upload_caches_are_declared_per_session():
    import widgets

    assert {f.__name__ for f in widgets.UPLOAD_CACHES} == {"_decode_upload", "_query_upload", "_tiled_upload"}
    assert all(f._info.scope == "session" for f in widgets.UPLOAD_CACHES)
    # Their workspace-only twins are shared between sessions, as they should be.
    assert widgets._query_shared._info.scope == widgets._tiled_shared._info.scope == "global"


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def upload_session(tiny_workspace, tmp_path_factory):
    """One AppTest session: upload a planted copy on Inspect, rerun, then visit every
    other page (moving the threshold, writing a report). Returns what the tests check:
    log lines, the data caches by session, the shared Workspace object and the upload."""
    from streamlit.runtime.caching.cache_data_api import _data_caches
    from streamlit.testing.v1 import AppTest

    ws = Workspace(tiny_workspace)
    data = _planted(ws, tmp_path_factory.mktemp("upload") / "copy.avi")
    handler = _ListHandler()
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)  # every logger's lines, Streamlit's included where they propagate
    mp = pytest.MonkeyPatch()
    mp.setenv("ECHOAUDIT_WORKSPACE", str(tiny_workspace))
    try:
        # Every AppTest runs as the session "test session id": start it fresh, as a new browser tab would.
        _data_caches._function_caches.pop("test session id", None)
        before = set(_data_caches._function_caches)
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.switch_page("pages/inspect.py").run()
        at.file_uploader(key="inspect_upload").upload(SECRET_NAME, data, "video/x-msvideo").run()
        assert not at.exception, [e.value for e in at.exception]
        badge = (at.error or at.success)[0].value
        at.run()  # a rerun with the same upload
        assert not at.exception, [e.value for e in at.exception]
        # Entries per cached function, per session id (None: the process-wide cache).
        caches = {sid: {key: len(c.get_stats().get("cache_memory_bytes", [])) for key, c in fcs.items()}
                  for sid, fcs in _data_caches._function_caches.items() if sid is None or sid not in before}
        for page in ("home", "privacy", "coverage", "temporal", "report"):
            at.switch_page(f"pages/{page}.py").run()
            assert not at.exception, (page, [e.value for e in at.exception])
            if page == "privacy":
                at.slider(key="privacy_threshold").set_value(at.slider(key="privacy_threshold").value - 0.05).run()
            if page == "report":
                at.checkbox(key="report_png").uncheck().run()
                at.button(key="report_write").click().run(timeout=180)
            assert not at.exception, (page, [e.value for e in at.exception])
        import widgets  # the module the pages used: AppTest runs them in this process

        shared = widgets.open_workspace(str(tiny_workspace))
    finally:
        mp.undo()
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
    return {"data": data, "badge": badge, "log": handler.lines, "caches": caches, "shared": shared}


def test_upload_logs_its_hash_never_its_name(upload_session):
    data, lines = upload_session["data"], upload_session["log"]
    digest = hashlib.sha256(data).hexdigest()[:16]
    ours = [line for line in lines if line.startswith("echoaudit.dashboard: upload")]
    # One line per upload, not one per rerun, with the hash prefix and the size only.
    assert ours == [f"echoaudit.dashboard: upload sha256:{digest} {len(data)} bytes"], ours
    stem = SECRET_NAME.rsplit(".", 1)[0]
    assert not [line for line in lines if stem in line or "Jane-Doe" in line], "a log line names the upload"
    assert upload_session["badge"].split(":")[0] in ("MEMORIZED", "NOT MEMORIZED")  # the upload was scored


def test_upload_results_stay_in_the_session_cache(upload_session):
    import widgets

    caches = upload_session["caches"]
    keys = {f.__name__: f._function_key for f in widgets.UPLOAD_CACHES}
    shared = caches.get(None, {})
    assert not set(keys.values()) & set(shared), "an upload-derived cache is process-wide"
    sessions = [sid for sid in caches if sid is not None and set(keys.values()) <= set(caches[sid])]
    assert len(sessions) == 1, caches.keys()
    # The decode, the scores and the MP4 of the upload are held there, one entry each
    # (the rerun hit them), and the training frames of the matches are shared as usual.
    assert [caches[sessions[0]][k] for k in keys.values()] == [1, 1, 1], caches[sessions[0]]
    assert shared.get(widgets.training_frames._function_key)


def test_pages_leave_the_shared_workspace_unchanged(upload_session, tiny_workspace):
    """Every page, an upload, a threshold move and a report later, the Workspace object all
    sessions share (st.cache_resource) holds what a freshly opened one reads from disk."""
    shared, fresh = upload_session["shared"], Workspace(tiny_workspace)
    assert shared.manifest == fresh.manifest
    for table in ("heldout_scores", "temporal", "video_embeddings", "reid_roc"):
        if table in vars(shared):  # cached_property: compared when a page loaded it
            pd.testing.assert_frame_equal(getattr(shared, table), getattr(fresh, table), obj=table)
    for part in ("dataset", "train", "heldout"):
        if part in vars(shared):
            pd.testing.assert_frame_equal(getattr(shared, part).table, getattr(fresh, part).table, obj=part)
    assert "heldout_scores" in vars(shared) and "train" in vars(shared)  # the pages did load them


# ---------------------------------------------------------------------------------------
# disk


def test_upload_is_decoded_and_scored_without_writing_to_disk(tiny_workspace, tmp_path):
    import widgets

    ws = Workspace(tiny_workspace)
    data = _planted(ws, tmp_path / "copy.avi")
    ws.engine  # noqa: B018 - models and index load before recording (reading only)
    with _disk_writes() as seen:
        frames, fps, digest = widgets._decode_upload.__wrapped__(data, ".avi", ws.size)
        scores = ws.query(frames, SECRET_NAME, fps=fps)
    assert seen == [], seen
    assert digest == widgets.upload_digest(data) and len(scores.per_train)
    with _disk_writes() as seen:  # the recorder does see a write
        (tmp_path / "probe.txt").write_text("x")
    assert seen and "probe.txt" in seen[0]


def test_side_by_side_mp4_of_an_upload_is_made_in_memory(tiny_workspace):
    import widgets

    ws = Workspace(tiny_workspace)
    frames = ws.train.load(0, size=ws.size).frames
    with _disk_writes() as seen:
        mp4 = widgets._tiled((frames, frames), ("query", "match"), 25.0)
    assert mp4[4:8] == b"ftyp"
    assert seen == [], seen


# ---------------------------------------------------------------------------------------
# two browsers on one server

CHROMIUM = "/usr/bin/chromium"


def _lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


@pytest.fixture(scope="module")
def config_server(tiny_workspace, tmp_path_factory):
    """`streamlit run app.py` with only the flags tests need (a short reconnection window):
    address, headless and usage stats come from .streamlit/config.toml. Yields (base URL,
    port, log file)."""
    from test_browser import streamlit_server

    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    with open(log_path, "wb") as log, streamlit_server(tiny_workspace, args=("--server.disconnectedSessionTTL=2",),
                                                       output=log) as (base, port):
        yield base, port, log_path


def _held_bytes(base: str) -> dict[str, int]:
    """What the server holds, from /_stcore/metrics (refreshed every 5 s): bytes of the
    session-scoped upload caches, of uploaded files and of media files (the MP4s)."""
    text = urllib.request.urlopen(f"{base}/_stcore/metrics", timeout=10).read().decode()

    def total(pattern: str) -> int:
        return sum(int(n) for n in re.findall(r"^cache_memory_bytes\{" + pattern + r"\} (\d+)$", text, re.MULTILINE))

    return {"caches": total(r'cache_type="st_cache_data",cache="widgets\._(?:decode|query|tiled)_upload"'),
            "uploads": total(r'cache_type="UploadedFileManager",cache=""'),
            "media": total(r'cache_type="st_memory_media_file_storage",cache=""')}


def _held_if(base: str, cond) -> dict[str, int] | None:
    held = _held_bytes(base)
    return held if cond(held) else None


def _wait_for(cond, timeout=45.0, every=1.0):
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value or time.time() > deadline:
            return value
        time.sleep(every)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian Chromium at {CHROMIUM}")
def test_two_sessions_keep_their_uploads_and_thresholds(config_server, tiny_workspace, tmp_path):
    from playwright.sync_api import sync_playwright
    from test_browser import SLIDER, _go, _set_slider, _settle

    from echoaudit.audit.scale import from_logit, to_logit

    base, port, log_path = config_server
    ws = Workspace(tiny_workspace)
    t0 = round(to_logit(ws.threshold(95).value), 2)  # the slider's calibrated start
    t_a = round(t0 - 0.05, 2)  # what A moves it to

    def expected(data: bytes) -> float:
        video = load_video(data, extension=".avi", size=ws.size)
        return float(ws.query(video.frames, fps=video.fps).per_train["score"].max())

    # A: a planted copy of a training video. B: a real held-out video, another patient.
    path_a, path_b = tmp_path / "patient-A_Jane-Doe.avi", tmp_path / "patient-B_John-Roe.avi"
    data_a = _planted(ws, path_a)
    data_b = write_video(path_b, ws.heldout.load(0).frames, 25.0).read_bytes()
    score_a, score_b = expected(data_a), expected(data_b)
    assert f"{score_a:.6f}" != f"{score_b:.6f}"  # the two verdicts are told apart by their numbers

    # Bound to loopback by the config file alone: not reachable on this machine's LAN address.
    lan = _lan_address()
    if lan is not None:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{lan}:{port}/_stcore/health", timeout=3)

    def verdict(page):
        sel = '[data-testid="stAlertContentError"], [data-testid="stAlertContentSuccess"]'
        page.wait_for_selector(sel, timeout=120_000)
        _settle(page, timeout=120_000)
        return page.locator(sel).first.inner_text()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            ctx_a = browser.new_context(viewport={"width": 1400, "height": 2000})
            ctx_b = browser.new_context(viewport={"width": 1400, "height": 2000})
            page_a, page_b = ctx_a.new_page(), ctx_b.new_page()
            for page in (page_a, page_b):
                page.set_default_timeout(120_000)  # two sessions' reruns share two loaded cores
                page.goto(base)
                page.wait_for_selector('h1:has-text("EchoAudit")', timeout=60_000)
                _settle(page)
                _go(page, "Privacy")

            # A lowers the threshold; B's Privacy page still shows the calibrated default.
            _set_slider(page_a, page_a.get_by_role("slider", name=SLIDER), t_a)
            assert page_a.get_by_text(f"{t_a:.2f} = probability").count() == 1
            _go(page_b, "Home")
            _go(page_b, "Privacy")
            assert float(page_b.get_by_role("slider", name=SLIDER).input_value()) == pytest.approx(t0)
            assert page_b.get_by_text(f"{t0:.2f} = probability").count() == 1
            assert page_b.locator('[data-testid="stSidebar"]').get_by_text(f"threshold {t0:.2f}").count() == 1

            # Both upload before either waits for its verdict: the two runs overlap on the server.
            _go(page_a, "Inspect")
            _go(page_b, "Inspect")
            page_a.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path_a))
            page_b.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path_b))
            badge_a, badge_b = verdict(page_a), verdict(page_b)
            # Each sees its own video's score, judged at its own threshold.
            assert f"{score_a:.6f}" in badge_a and f"threshold {t_a:.2f}" in badge_a, badge_a
            assert f"{score_b:.6f}" in badge_b and f"threshold {t0:.2f}" in badge_b, badge_b
            assert badge_a.startswith("MEMORIZED" if score_a >= from_logit(t_a) else "NOT MEMORIZED"), badge_a
            assert badge_b.startswith("MEMORIZED" if score_b >= from_logit(t0) else "NOT MEMORIZED"), badge_b
            page_a.wait_for_selector("video", timeout=60_000)
            page_b.wait_for_selector("video", timeout=60_000)

            # The server holds both uploads and their results.
            both = _wait_for(lambda: _held_if(base, lambda h: h["uploads"] == len(data_a) + len(data_b)))
            assert both and both["caches"] > 0 and both["media"] > 0, _held_bytes(base)

            # A closes its tab: its cached results go at once; once its reconnection window
            # (--server.disconnectedSessionTTL=2) is over, B's next run drops A's upload and MP4.
            ctx_a.close()
            assert _wait_for(lambda: _held_bytes(base)["caches"] < both["caches"]), (both, _held_bytes(base))
            time.sleep(3)
            _set_slider(page_b, page_b.get_by_role("slider", name="Nearest training videos shown"), 3, step=1)
            held = _wait_for(lambda: _held_if(base, lambda h: h["uploads"] == len(data_b)))
            assert held, _held_bytes(base)
            assert held["caches"] > 0 and 0 < held["media"] < both["media"], (both, held)  # B's are kept
            assert verdict(page_b).startswith(badge_b.split(":")[0])  # B still works on its upload

            ctx_b.close()
            assert _wait_for(lambda: _held_bytes(base)["caches"] == 0), _held_bytes(base)
        finally:
            browser.close()

    log = log_path.read_text(errors="replace")
    for data in (data_a, data_b):
        assert f"upload sha256:{hashlib.sha256(data).hexdigest()[:16]} {len(data)} bytes" in log
    assert "Jane-Doe" not in log and "John-Roe" not in log and "patient-" not in log
