"""A run that kills its training process (SIGSEGV, as a bug in a native kernel would) ends `failed`
with the signal named, while the app goes on serving and its next run trains: the app's server
never trains, its workers do. Its own module: its own server, with the test-only crash strategy."""
from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

from hft_core.config import RunConfig
from hft_core.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
APP_ENV = {"HFT_PLUGINS": "hft_test_crash",   # tests/plugins: known to the server and its workers
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "plugins")])}


def reaches(store: RunStore, run_id: str, status: str, timeout: float) -> None:
    """Waits for ``status``. A crashed run may show "interrupted" for a moment first: any process that
    finds its worker's pid gone says so; the app's supervisor, which alone sees the signal, then fails it."""
    deadline = time.time() + timeout
    while (now := store.get_run(run_id).status) != status:
        assert now in ("queued", "running", "interrupted"), f"run {run_id} ended {now}: {store.get_run(run_id).error}"
        assert time.time() < deadline, f"run {run_id} still {now} after {timeout:.0f} s"
        time.sleep(0.2)


def test_a_segfault_in_a_run_fails_that_run_only_and_the_app_serves_on(page, app_server, shot, crash_strategy):
    page.goto(str(app_server) + "/live")   # the first page view starts the app's worker processes
    page.locator("h1", has_text="Live").wait_for(timeout=90_000)
    tiny = dict(model="tiny:bert", data="bundled:bbc-news", n_train=32, n_eval=8, batch_size=4, max_length=16,
                eval_every=0, checkpoint_every=0, device="cpu")
    with RunStore(app_server.home) as store:   # queued as `hft train --detach` would: the app's workers claim it
        crash = store.create_run(RunConfig(**tiny, max_steps=5, mix={"crash": {"how": "segv"}}), name="segfault")
        reaches(store, crash, "failed", 120)
        rec = store.get_run(crash)
        assert "SIGSEGV" in rec.error and f"pid {rec.pid}" in rec.error and rec.pid != 0, rec.error
        assert urllib.request.urlopen(f"{app_server}/_stcore/health", timeout=5).status == 200
        after = store.create_run(RunConfig(**tiny, max_steps=3), name="after the crash")
        reaches(store, after, "finished", 120)
        assert store.get_run(after).pid != rec.pid   # a new worker process took the device's next run
    page.reload()
    row = page.locator('[class*="st-key-run-"]').filter(has_text="segfault")
    row.wait_for(timeout=30_000)
    assert "SIGSEGV" in row.inner_text()   # the Live page shows the failure with its reason
    shot(page, "e2e-40-a-crash-in-a-run")
    assert not page.console_errors
