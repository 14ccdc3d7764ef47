"""Browser tests: the real app (`streamlit run app.py`) in Debian's Chromium via Playwright.

One app server per test module, on a free port, with its own temp HFT_HOME and
HFT_OFFLINE=1 (a server takes seconds to start, so it is shared by the module's tests); before
each test its store is emptied (``fresh_home``: every study and run stopped and deleted), so each
test starts from the state it sets up, whatever ran before it; then a fresh page (= a fresh
Streamlit session) at 1280x800. Screenshots go to artifacts/screenshots/ (gitignored).

Chromium at /usr/bin/chromium and the playwright package are required: `bash run.sh setup`
installs both (never `playwright install`); without them every browser test fails, saying so.
`.ci/run` checks the same condition through ``missing_browser()``.
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


INSTALL = "`bash run.sh setup` installs it (Debian's chromium package; playwright from requirements.txt)"
RESET_TIMEOUT_S = 120  # emptying the store: active runs end within a poll and a checkpoint, generous on 2 busy cores


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can): the one check, also used by .ci/run."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}: {INSTALL}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        return f"the playwright package cannot be imported ({e}): {INSTALL}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, request):
    """Base URL of a running app; its HFT_HOME is ``app_server.home``. A test module's ``APP_ENV``
    (a dict) is added to the server's environment (and so its workers')."""
    why = missing_browser()
    if why:
        pytest.fail(why, pytrace=False)
    home = tmp_path_factory.mktemp("e2e_home")
    port = _free_port()
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           **getattr(request.module, "APP_ENV", {})}
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


def _until(cond, what: str, deadline: float) -> None:
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"resetting the e2e store: timed out waiting for {what}")
        time.sleep(0.2)


def reset_home(home: Path, timeout: float = RESET_TIMEOUT_S) -> None:
    """Empty the store of ``home`` through the library's own API, as a user could: stop every study's
    driver (it would queue new trials), stop or cancel every queued and running run, wait until they
    ended, then delete the runs (rows and folders) and the studies. Uploads and the model cache stay:
    they are content-addressed, so no test sees another's state through them."""
    from hft_core.store import RunStore, StoreError

    deadline = time.time() + timeout
    studies = []
    if (home / "studies.sqlite").exists():
        from hft_core import search

        studies = search.study_names(home)
        for name in studies:
            search.request_study_stop(name, home=home, reason="e2e: a fresh store for the next test")
        _until(lambda: all(search.study_driver(n, home=home) is None for n in studies), "the study drivers to end",
               deadline)
    with RunStore(home) as store:
        def all_ended() -> bool:  # asked again on each look: a run queued meanwhile (a preset's next job) too
            store.mark_interrupted()  # a run whose process died is not "running": it shows interrupted
            active = store.list_runs(status=["queued", "running"])
            for rec in active:
                try:
                    store.request_stop(rec.id, "e2e: a fresh store for the next test")  # again: a no-op
                except StoreError:  # it ended meanwhile, or its process is gone
                    pass
            return not active

        _until(all_ended, "every run to end", deadline)
        for rec in store.list_runs():
            store.delete_run(rec.id)
        assert store.list_runs() == []
    if studies:
        import optuna

        storage = search.open_storage(home)
        for name in studies:
            optuna.delete_study(study_name=name, storage=storage)
        assert search.study_names(home) == []


@pytest.fixture
def fresh_home(app_server):
    """The app server's HFT_HOME with no runs and no studies, whatever the module's earlier tests left."""
    reset_home(app_server.home)
    return app_server.home


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
def page(browser, app_server, fresh_home, request):
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
