"""Reviewer decisions across real browser sessions: reviewer A records a verdict on the
Privacy page in one Playwright browser context, reviewer B sees it in another context on
the same server after a rerun, and after the server restarts a third context still sees
it (the decision lives in the database, not in a session)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from echoaudit.review import DecisionStore

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian Chromium at {CHROMIUM}")]


@contextmanager
def _server(workspace: Path, db_url: str):
    from test_browser import streamlit_server

    with streamlit_server(workspace, env={"ECHOAUDIT_DB": db_url}) as (base, _):
        yield base


def _privacy(browser, base):
    from test_browser import _go, _settle

    ctx = browser.new_context(viewport={"width": 1400, "height": 2600})
    page = ctx.new_page()
    page.goto(base)
    page.wait_for_selector('h1:has-text("EchoAudit")', timeout=120_000)
    _settle(page, timeout=120_000)
    _go(page, "Privacy")
    return ctx, page


def _review_sentence(page) -> str:
    return page.locator('[data-testid="stMarkdown"]', has_text="still wait for a reviewer").first.inner_text()


def test_a_decision_in_one_browser_is_seen_in_another_and_after_a_restart(tiny_workspace, tmp_path):
    from playwright.sync_api import sync_playwright
    from test_browser import _settle

    db = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            with _server(tiny_workspace, db) as base:
                ctx_a, a = _privacy(browser, base)
                ctx_b, b = _privacy(browser, base)
                assert _review_sentence(b).startswith("0 confirmed copies")
                a.get_by_label("Reviewer", exact=True).fill("Dr. Ada")
                a.get_by_label("Reviewer", exact=True).press("Enter")
                _settle(a, timeout=120_000)
                a.get_by_role("button", name="Confirmed copy").click()
                a.wait_for_selector('[data-testid="stAlertContentSuccess"]:has-text("Recorded: Confirmed copy")',
                                    timeout=120_000)
                with DecisionStore(db) as store:
                    h = store.history()
                assert h[["verdict", "reviewer"]].values.tolist() == [["confirmed_copy", "Dr. Ada"]]
                # B reruns (any interaction does; here the reviewer-name box) and sees A's verdict
                b.get_by_label("Reviewer", exact=True).fill("Dr. Bo")
                b.get_by_label("Reviewer", exact=True).press("Enter")
                _settle(b, timeout=120_000)
                assert _review_sentence(b).startswith("1 confirmed copies")
                assert b.get_by_label("Reviewer", exact=True).input_value() == "Dr. Bo"  # names stay per session
                ctx_a.close()
                ctx_b.close()
            with _server(tiny_workspace, db) as base:  # a restarted server reads the same database
                ctx_c, c = _privacy(browser, base)
                assert _review_sentence(c).startswith("1 confirmed copies")
                ctx_c.close()
        finally:
            browser.close()
