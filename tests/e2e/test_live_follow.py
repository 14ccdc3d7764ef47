"""Live follows the store: a run started elsewhere (here: the CLI in a terminal) shows up on an open,
idle Live page within 3 s, without a click, and Stop on Live stops it in its own process.

Its own module, so its own app server, whose store is emptied before each test (conftest's
fresh_home): Live starts idle (nothing active), which is when the page only looks at the store
every 1.5 s. The 3 s are measured from the moment the
run's row exists in the store (read here through RunStore, as often as the test can), to the
moment the page shows the run's row.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from e2e_helpers import LOSS_POINTS_JS, ROW_STATUS_JS, wait_for

pytestmark = pytest.mark.e2e

APPEARS_WITHIN_S = 3.0  # issue 13: a run started anywhere appears on Live within 3 s, no click
LONG = 180
# Stop from another process: the store promises the worker sees the request within STOP_POLL_S
# (0.5 s; hft_core/runs.py) or the current step, then saves a checkpoint and ends "stopped". For
# a tiny:bert step and checkpoint that is well under a second on an idle machine; a busy 2-core
# machine (the app server, Chromium and this test besides the run) measured 2.0 s once. The bound,
# 60 polls (30 s), leaves margin for one core shared by all of them, and is still far below what
# a stop missed by the poll would take (the run has 100,000 steps: it would go on for many minutes).
STOP_ENDS_WITHIN_POLLS = 60


def test_a_run_started_from_the_cli_appears_on_live_by_itself(page, app_server, shot):
    from hft_core.runs import STOP_POLL_S, checkpoint_step
    from hft_core.store import RunStore

    stop_bound = STOP_ENDS_WITHIN_POLLS * STOP_POLL_S  # 30 s
    page.goto(str(app_server) + "/live")
    page.get_by_text("Nothing is training right now").first.wait_for(timeout=LONG * 1000)
    env = {**os.environ, "HFT_HOME": str(app_server.home), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    name = "from-the-terminal"
    started = time.time()
    cli = subprocess.Popen([sys.executable, "-m", "hft_core", "train", "--set", "model=tiny:bert", "--set",
                            "max_steps=100000", "--set", f"name={name}", "--quiet"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with RunStore(app_server.home) as store:
            deadline = time.time() + LONG
            created = shown = None
            run_id = ""
            while time.time() < deadline and shown is None:
                if created is None:  # this test's run: its name, created after the CLI started (whatever else is stored)
                    mine = [r for r in store.list_runs() if r.name == name and r.created >= started - 1]
                    if mine:
                        assert len(mine) == 1, mine
                        created, run_id = time.time(), mine[0].id
                        continue  # look at the page at once
                elif page.evaluate(ROW_STATUS_JS, run_id):
                    shown = time.time()
                time.sleep(0.05)
            assert created is not None, f"the CLI run never reached the store: {cli.stderr.read()[-2000:]}"
            assert shown is not None, "the run never appeared on Live"
            print(f"on Live {shown - created:.2f} s after its row was in the store")
            assert shown - created <= APPEARS_WITHIN_S, f"appeared {shown - created:.1f} s after it was stored"
            # and its curve grows there, like a run started from the app
            wait_for(lambda: page.evaluate(LOSS_POINTS_JS, name) >= 2, LONG,
                     "2 points of the CLI run on Live's loss chart")
            shot(page, "e2e-40-live-follows-a-cli-run")
            # Stop on Live stops a run that another process trains (a stop request through the store):
            # it ends stopped, soon after the request by the store's own clock (see STOP_ENDS_WITHIN_POLLS), with a
            # checkpoint at its last step
            assert store.get_run(run_id).status == "running"  # 100,000 steps: it cannot have ended
            page.locator(f'[class*="st-key-run-{run_id}"]').get_by_role("button", name="Stop").click()
            assert cli.wait(timeout=LONG) == 0  # stopped on request: the CLI process ends normally
            rec = store.get_run(run_id)
            assert rec.status == "stopped" and rec.stop_requested is not None, rec
            print(f"ended {rec.ended - rec.stop_requested:.2f} s after Stop")
            assert rec.ended - rec.stop_requested <= stop_bound, \
                f"ended {rec.ended - rec.stop_requested:.1f} s after Stop (bound {stop_bound:g} s)"
            assert checkpoint_step(store.run_dir(run_id)) == store.last_metrics(run_id)["step"]
            wait_for(lambda: page.evaluate(ROW_STATUS_JS, run_id) == "stopped", LONG,
                     "Live to show the run as stopped")
        assert not page.console_errors
    finally:
        if cli.poll() is None:
            cli.send_signal(signal.SIGINT)  # as Ctrl-C in its terminal: it stops and records it
            try:
                cli.wait(timeout=60)
            except subprocess.TimeoutExpired:
                cli.kill()


AXIS_JS = """(name) => {
  // the loss chart as drawn: its x axis title, the names of its curves, the points of `name`
  for (const f of document.querySelectorAll('iframe')) {
    let p = null;
    try { p = f.contentDocument && f.contentDocument.querySelector('.js-plotly-plot'); } catch (e) {}
    if (!p || !p._fullData) continue;
    const mine = p._fullData.filter(t => t.name === name || (t.name || '').startsWith(name + ' ('));
    return {x: p._fullLayout.xaxis.title.text, names: p._fullData.map(t => t.name),
            points: mine.length ? Math.max(...mine.map(t => (t.x || []).length)) : 0};
  }
  return null;
}"""


def test_smoothing_and_the_x_axis_redraw_the_chart_and_new_points_keep_coming(page, app_server, shot):
    env = {**os.environ, "HFT_HOME": str(app_server.home), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = subprocess.Popen([sys.executable, "-m", "hft_core", "train", "--set", "model=tiny:bert", "--set",
                            "max_steps=2000", "--set", "name=settings-run", "--quiet"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page.goto(str(app_server) + "/live")
        page.locator("h1", has_text="Live").wait_for(timeout=LONG * 1000)
        before = wait_for(lambda: (v := page.evaluate(AXIS_JS, "settings-run")) and v["points"] >= 2 and v, LONG,
                          "2 points of the CLI run")
        assert before["x"] == "step" and "settings-run (raw)" not in before["names"]
        # smoothing (the slider's top end): a smoothed curve over the faint raw one, and it still grows
        page.locator('[data-testid="stSlider"]').filter(has_text="smoothing").get_by_role("slider").press("End")
        smooth = wait_for(lambda: (v := page.evaluate(AXIS_JS, "settings-run")) and "settings-run (raw)" in v["names"]
                          and v, LONG, "the smoothed curve")
        assert "settings-run" in smooth["names"]
        wait_for(lambda: page.evaluate(AXIS_JS, "settings-run")["points"] > smooth["points"], LONG,
                 "new points on the smoothed chart")
        # x axis: wall time; the curves are redrawn against seconds and keep growing
        page.get_by_role("radio", name="wall time (s)").click()
        timed = wait_for(lambda: (v := page.evaluate(AXIS_JS, "settings-run")) and v["x"] == "wall time (s)" and v,
                         LONG, "the x axis in seconds")
        wait_for(lambda: page.evaluate(AXIS_JS, "settings-run")["points"] > timed["points"], LONG,
                 "new points against wall time")
        shot(page, "e2e-41-live-smoothed-wall-time")
        assert not page.console_errors
    finally:
        cli.send_signal(signal.SIGINT)
        try:
            cli.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cli.kill()
