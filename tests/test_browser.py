"""End to end in a real browser: `streamlit run app.py` on the tiny workspace, driven by
Playwright with Debian Chromium. Upload a planted copy of a training video on Inspect,
move the Privacy threshold with the keyboard, and check what the page shows against the
library. Screenshots of every page go to test-artifacts/ (gitignored)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from echoaudit.audit.privacy import flag_summary, flag_videos
from echoaudit.data.video import load_video, write_video
from echoaudit.workspace import Workspace

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
SLIDER = "Memorization threshold (re-ID logit)"

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian Chromium at {CHROMIUM}")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(workspace, *, env: dict | None = None, args: tuple[str, ...] | None = None, output=None):
    """`streamlit run app.py` on ``workspace`` at a free port; yields (base URL, port).
    ``args`` replaces the default flags (headless on 127.0.0.1, no usage stats);
    ``output`` takes the server's output (default: a pipe read on failure)."""
    port = _free_port()
    full_env = dict(os.environ, ECHOAUDIT_WORKSPACE=str(workspace), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                    **(env or {}))
    flags = args if args is not None else ("--server.headless=true", "--server.address=127.0.0.1",
                                           "--browser.gatherUsageStats=false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}", "--server.fileWatcherType=none",
         *flags], cwd=REPO, env=full_env, stdout=output if output is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                said = proc.stdout.read().decode(errors="replace")[-2000:] if proc.stdout else "(see its log)"
                raise RuntimeError(f"streamlit did not start: {said}")
            time.sleep(0.3)
        yield base, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tiny_workspace):
    with streamlit_server(tiny_workspace) as (base, _):
        yield base


def _settle(page, timeout=60_000):
    """Wait until the app has finished its rerun."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    try:  # a rerun may take a moment to start after an input
        page.wait_for_selector('[data-test-script-state="running"]', timeout=700)
    except Exception:  # noqa: BLE001 - it was quick, or already over
        pass
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=timeout)


def _go(page, title):
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.wait_for_selector(f'h1:has-text("{_H1[title]}")', timeout=60_000)
    _settle(page)


_H1 = {"Home": "EchoAudit", "Inspect": "Inspect a video", "Privacy": "Privacy: memorization",
       "Coverage": "Coverage: generative recall", "Temporal": "Temporal consistency", "Report": "Meeting report"}


def _set_slider(page, slider, target, step=0.01, rounds=20):
    """Move a Streamlit slider to `target` with arrow presses, as a keyboard user would. A rerun
    that starts mid-sequence can swallow presses on a slow machine, so read the thumb's value
    back after each burst and press again for what is left."""
    for _ in range(rounds):
        now = float(slider.input_value())  # an <input type="range">
        left = int(round((now - target) / step))
        if left == 0:
            return
        slider.focus()
        for _ in range(abs(left)):
            slider.press("ArrowLeft" if left > 0 else "ArrowRight")
        _settle(page)
    raise AssertionError(f"slider stuck at {slider.input_value()}, wanted {target}")


def _metric(page, label):
    box = page.locator('[data-testid="stMetric"]', has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _upload(page, path):
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    page.wait_for_selector('[data-testid="stAlertContentError"], [data-testid="stAlertContentSuccess"]',
                           timeout=60_000)
    _settle(page)
    return page.locator('[data-testid="stAlertContentError"], [data-testid="stAlertContentSuccess"]').first.inner_text()


def test_inspect_upload_then_privacy_slider(server, tiny_workspace, tmp_path):
    from playwright.sync_api import sync_playwright

    ws = Workspace(tiny_workspace)
    name = ws.synthetic_names[0]
    # The planted copy: a training video with a little noise, as a user would upload it.
    frames = ws.train.load(0).frames
    noisy = np.clip(frames + np.random.default_rng(0).normal(0, 0.01, frames.shape), 0, 1)
    planted = write_video(tmp_path / "planted_copy.avi", noisy, 25.0)
    from echoaudit.audit.scale import from_logit, to_logit
    from echoaudit.report import calibration_view

    video = load_video(planted.read_bytes(), extension=".avi", size=ws.size)  # conformed to the clip spec
    score = float(ws.query(video.frames, fps=video.fps).per_train["score"].max())
    t_cal = ws.threshold(95).value  # what Inspect uses before the Privacy page is visited
    t0 = round(to_logit(t_cal), 2)  # the slider's start, in re-ID logit units (step 0.01)
    lo = calibration_view(ws, name)["range"][0]
    count = lambda x: flag_summary(flag_videos(ws.synthetic_scores(name), from_logit(x),
                                               queries=ws.synthetic(name).names))
    # Arrow presses (step 0.01) until the planted copy is flagged and the flagged count has changed.
    k = next(k for k in range(1, int(round(100 * (t0 - lo))) + 1) if from_logit(round(t0 - 0.01 * k, 2)) <= score
             and count(round(t0 - 0.01 * k, 2))["n_flagged"] != count(t0)["n_flagged"])
    t_k = round(t0 - 0.01 * k, 2)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(server)
            page.wait_for_selector('h1:has-text("EchoAudit")', timeout=60_000)
            _settle(page)
            page.screenshot(path=ARTIFACTS / "home.png")

            _go(page, "Inspect")
            badge = _upload(page, planted)
            assert badge.startswith("MEMORIZED" if score >= t_cal else "NOT MEMORIZED"), badge
            assert f"{score:.6f}" in badge
            page.wait_for_selector("video", timeout=30_000)
            page.screenshot(path=ARTIFACTS / "inspect_default_threshold.png")

            _go(page, "Privacy")
            before = count(t0)
            assert _metric(page, "Flagged synthetic videos") == f"{before['n_flagged']} of {before['n_videos']}"
            _set_slider(page, page.get_by_role("slider", name=SLIDER), t_k)
            after = count(t_k)
            expected = f"{after['n_flagged']} of {after['n_videos']}"
            try:
                page.wait_for_function(
                    """([label, want]) => [...document.querySelectorAll('[data-testid="stMetric"]')]
                         .some(m => m.innerText.includes(label) && m.innerText.includes(want))""",
                    arg=["Flagged synthetic videos", expected], timeout=180_000)  # reruns on a loaded machine
            except Exception as exc:  # noqa: BLE001 - say what the page showed instead
                page.screenshot(path=ARTIFACTS / "privacy_timeout.png")
                raise AssertionError(
                    f"metric never showed {expected!r} for threshold {t_k:.2f}: slider at "
                    f"{page.get_by_role('slider', name=SLIDER).input_value()}, metric "
                    f"{_metric(page, 'Flagged synthetic videos')!r}, errors on page: "
                    f"{page.locator('[data-testid=stException]').all_inner_texts()}") from exc
            _settle(page)
            assert _metric(page, "Flagged synthetic videos") == expected != f"{before['n_flagged']} of {before['n_videos']}"
            assert page.get_by_text(f"{t_k:.2f} = probability").count() == 1  # the caption names the new threshold
            page.screenshot(path=ARTIFACTS / "privacy.png")

            _go(page, "Inspect")  # the lowered threshold carries over: the planted copy is flagged
            badge = _upload(page, planted)
            assert badge.startswith("MEMORIZED"), badge
            assert f"threshold {t_k:.2f}" in badge
            page.screenshot(path=ARTIFACTS / "inspect.png")

            for title in ("Coverage", "Temporal", "Report"):
                _go(page, title)
                page.screenshot(path=ARTIFACTS / f"{title.lower()}.png")
        finally:
            browser.close()
    assert all((ARTIFACTS / f).stat().st_size > 10_000 for f in
               ("home.png", "inspect.png", "privacy.png", "coverage.png", "temporal.png", "report.png"))
