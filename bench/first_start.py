"""Time the README's first command from a fresh clone, as a user meets it in a browser.

Clones this repository (its committed HEAD) into a temporary folder, runs
``bash scripts/demo.sh`` there (install, background demo build, dashboard) and watches
with Debian's Chromium (Playwright) until the Home page shows the phantom demo
("Training videos" metric: data, models and index loaded, threshold calibrated). Then,
with ``--complete``, waits until the demo's synthetic sets are in too; then stops the
dashboard as Ctrl-C would, starts it again and times the later start.

Seconds are wall-clock from the command's start. One labelled line per figure, headline
last. Run it on an idle machine: it measures everything a 2-core machine does meanwhile.

    .venv/bin/python bench/first_start.py --complete     # ~5-8 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
FLOOR_FIRST_S, FLOOR_LATER_S = 120.0, 15.0


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start(clone: Path, port: int, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "ECHOAUDIT_"))}
    return subprocess.Popen(["bash", "scripts/demo.sh", f"--server.port={port}", "--server.address=127.0.0.1"],
                            cwd=clone, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C in the terminal: SIGINT to the whole process group (dashboard and build)."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for_home(page, url: str, t0: float, timeout: float, marks: dict) -> float:
    """Seconds from t0 until Home shows the demo's data set (the build panel follows the
    build and reruns the app by itself; the page is never reloaded by hand)."""
    while not healthy(url):
        if time.time() - t0 > timeout:
            raise TimeoutError("the dashboard never started")
        time.sleep(0.2)
    marks.setdefault("server", time.time() - t0)
    page.goto(url)
    page.wait_for_selector('h1:has-text("EchoAudit")', timeout=timeout * 1000)
    marks.setdefault("page", time.time() - t0)
    page.wait_for_selector('[data-testid="stMetricLabel"]:has-text("Training videos")', timeout=timeout * 1000)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--port", type=int, default=8797)
    ap.add_argument("--complete", action="store_true", help="also wait for the synthetic sets, then time a restart")
    ap.add_argument("--keep", type=Path, default=None, help="clone here and keep it (default: a temporary folder)")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    base = args.keep or Path(tempfile.mkdtemp(prefix="echoaudit-first-start-"))
    clone = base / "echoaudit"
    subprocess.run(["git", "clone", "--quiet", str(args.repo), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    print(f"clone: {clone} at {head}, {os.cpu_count()} CPU cores")
    url = f"http://127.0.0.1:{args.port}"
    log = open(base / "demo.log", "wb")
    marks: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        t0 = time.time()
        proc = start(clone, args.port, log)
        try:
            working = wait_for_home(page, url, t0, args.timeout, marks)
            installed = (clone / ".venv/.installed").stat().st_mtime - t0
            print(f"install (venv + requirements): {installed:.1f} s")
            print(f"dashboard serving (build panel with live progress): {marks['server']:.1f} s")
            page.screenshot(path=base / "first_start_home.png")
            ws = clone / "demo_workspace"
            manifest = json.loads((ws / "manifest.json").read_text())
            print(f"workspace usable (manifest written; build stages {manifest['build']['timings']}): "
                  f"{(ws / 'manifest.json').stat().st_mtime - t0:.1f} s")
            print(f"working dashboard (Home shows the phantom demo in Chromium): {working:.1f} s")
            later = None
            if args.complete:
                while json.loads((ws / "manifest.json").read_text()).get("pending"):
                    if time.time() - t0 > args.timeout:
                        raise TimeoutError("the synthetic sets never completed")
                    time.sleep(1)
                m = json.loads((ws / "manifest.json").read_text())
                print(f"synthetic sets complete ({', '.join(m['synthetic'])}; "
                      f"{ {k: v for k, v in m['build']['timings'].items() if k.startswith('synthetic')} }): "
                      f"{(ws / 'manifest.json').stat().st_mtime - t0:.1f} s")
                stop(proc)
                page.goto("about:blank")
                t1 = time.time()
                proc = start(clone, args.port, log)
                later = wait_for_home(page, url, t1, args.timeout, {})
                print(f"later start (complete workspace) to a rendered Home: {later:.1f} s (floor {FLOOR_LATER_S:.0f} s)")
        finally:
            stop(proc)
            browser.close()
    print(f"first start: {working:.1f} s to a working dashboard (floor {FLOOR_FIRST_S:.0f} s)")


if __name__ == "__main__":
    main()
