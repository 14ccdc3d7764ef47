"""Browser tests: the real app (`streamlit run app.py`) in Debian's Chromium via Playwright.

One app server per test module, on a free port, with its own temp HFT_HOME and
HFT_OFFLINE=1; a fresh page (= a fresh Streamlit session) per test at 1280x800.
Screenshots go to artifacts/screenshots/ (gitignored). Skipped when there is no
Chromium at /usr/bin/chromium (never `playwright install`).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """Base URL of a running app; its HFT_HOME is ``app_server.home``."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    pytest.importorskip("playwright")
    home = tmp_path_factory.mktemp("e2e_home")
    port = _free_port()
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                             str(port), "--server.headless", "true", "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"the app did not start; log:\n{(home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)

    class Server(str):
        pass

    server = Server(url)
    server.home = home
    server.log = home / "server.log"
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def page(browser, app_server, request):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.console_errors = []
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:  # what the page looked like when the test failed
        SHOTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(SHOTS / f"FAILED-{request.node.name}.png"))
        except Exception:
            pass
    context.close()


def _settle(pg, timeout: float = 3) -> None:
    """Let the current script run finish (no 'running' status widget) so the shot is not half-updated."""
    pg.wait_for_timeout(400)
    deadline = time.time() + timeout
    while time.time() < deadline and pg.locator('[data-testid="stStatusWidget"]').count():
        pg.wait_for_timeout(200)
    pg.wait_for_timeout(300)


@pytest.fixture
def shot():
    """shot(page, "name"): save artifacts/screenshots/<name>.png (the 1280x800 viewport)."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(pg, name: str) -> Path:
        _settle(pg)
        path = SHOTS / f"{name}.png"
        pg.screenshot(path=str(path))
        return path
    return take
