"""A fresh server whose first visitor opens a page by its URL (a bookmark, a tab that reconnects after a
restart) still shows the app: top menu, wide layout, the page asked for. Its own module: its own server."""
from __future__ import annotations

import pytest
from e2e_helpers import wait_for

pytestmark = pytest.mark.e2e


def test_first_visit_by_page_url_runs_inside_the_app(page, app_server, shot):
    page.goto(str(app_server) + "/live")  # the very first page this server renders
    page.locator("h1", has_text="Live").wait_for(timeout=90_000)
    nav = page.get_by_role("link", name="Compare")
    nav.first.wait_for(timeout=30_000)  # the top menu of app.py's st.navigation
    assert page.get_by_role("link", name="app").count() == 0  # not the pages/-folder sidebar (app, compare, ...)
    # one line: the wide layout (the narrow one wraps "Live" next to its controls). Read once the page
    # has settled: on a loaded core the title is measured mid-layout (89 px once, before the web font)
    title = page.locator("h1", has_text="Live").first
    wait_for(lambda: (title.bounding_box() or {"height": 1e9})["height"] < 80, 30,
             "the Live title on one line (the wide layout)", page)
    shot(page, "e2e-30-live-by-url")
    assert not page.console_errors
