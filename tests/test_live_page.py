"""The Live page with AppTest: what the chart iframe is sent, Stop that cannot stop, a pruned run.

The browser side (drawing, zoom, pause, a CLI run showing up by itself) is in tests/e2e.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hft_core.config import RunConfig  # noqa: E402
from hft_core.store import RunStore, StoreError  # noqa: E402
from ui.state import MANAGER_KEY  # noqa: E402

APP = str(ROOT / "app.py")


class Manager:
    """Stands in for the RunManager: the page needs its store, and Stop; stop() can refuse."""

    def __init__(self, store: RunStore, refuse: str | None = None) -> None:
        self.store, self.refuse, self.stopped = store, refuse, []

    def stop(self, run_id: str) -> str:
        if self.refuse:
            raise StoreError(self.refuse)
        self.stopped.append(run_id)
        return "requested"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    with RunStore(tmp_path) as s:
        yield s


def live(mgr) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[MANAGER_KEY] = mgr
    at.run()
    at.switch_page("pages/live.py").run()
    assert not at.exception, at.exception
    return at


def running(store: RunStore, name: str, steps: int) -> str:
    rid = store.create_run(RunConfig(model="tiny:bert", max_steps=100), status="running", device="cpu", name=name)
    log(store, rid, 1, steps)
    return rid


def log(store: RunStore, rid: str, first: int, last: int) -> None:
    for step in range(first, last + 1):
        store.log_metrics(rid, step, {"loss": 2.0 / step, "lr": 1e-3, "samples_per_s": 50.0, "progress": step / 100})
    store.flush()


def panels(at: AppTest) -> dict[str, dict]:
    (chart,) = [e for e in at.get("component_instance") if "panels" in json.loads(e.proto.json_args)]
    return {p["id"]: p for p in json.loads(chart.proto.json_args)["panels"]}


def test_the_chart_iframe_gets_whole_figures_once_then_only_new_points(store):
    rid = running(store, "growing", 5)
    at = live(Manager(store))
    first = panels(at)["loss"]
    assert [len(t["x"]) for t in first["figure"]["data"]] == [5] and first["chunks"] == []
    log(store, rid, 6, 8)
    at.run()
    again = panels(at)["loss"]
    assert "figure" not in again and again["rev"] == first["rev"]  # the same figure, grown
    (chunk,) = again["chunks"]
    assert chunk["i"] == [0] and chunk["x"] == [[6.0, 7.0, 8.0]] and chunk["y"] == [[2.0 / 6, 2.0 / 7, 2.0 / 8]]
    at.slider(key="live.smoothing").set_value(0.5).run()  # a setting: the whole figure again, smoothed
    smoothed = panels(at)["loss"]
    assert smoothed["rev"] != first["rev"] and [t["name"] for t in smoothed["figure"]["data"]] == \
        ["growing (raw)", "growing"]
    (bar,) = at.get("progress")  # the running run's progress, refreshed in its row
    assert bar.proto.text.startswith("step 8 / 100 · 8% · ETA")


def test_a_stop_that_cannot_happen_says_why(store):
    rid = running(store, "elsewhere", 3)
    reason = f"run {rid} was running in pid 4242 on lab, which is gone, so there is nothing to stop"
    at = live(Manager(store, refuse=reason))
    at.button(key=f"live.stop.{rid}").click().run()
    assert not at.exception, at.exception
    assert any(reason in w.value for w in at.warning)
    assert any(reason in t.value for t in at.toast)


def test_stop_asks_the_manager(store):
    rid = running(store, "mine", 3)
    mgr = Manager(store)
    at = live(mgr)
    at.button(key=f"live.stop.{rid}").click().run()
    assert mgr.stopped == [rid] and not at.warning


def test_a_pruned_run_shows_as_pruned_with_its_own_colour(store):
    rid = running(store, "trial 3", 4)
    store.set_status(rid, "pruned")
    at = live(Manager(store))
    row = " ".join(m.value for m in at.markdown)
    assert ":violet[:material/content_cut: pruned]" in row
    assert at.button(key=f"live.resume.{rid}")  # resumable like a stopped run


def test_nothing_active_says_how_runs_appear_and_the_charts_do_not_poll(store):
    at = live(Manager(store))
    assert any("shows up here by itself" in i.value for i in at.info)
    rid = running(store, "finished one", 3)
    store.set_status(rid, "finished")
    at.run()
    assert panels(at)["loss"]["figure"]["data"][0]["name"] == "finished one"
    assert json.loads(next(e for e in at.get("component_instance")).proto.json_args)["poll"] == 0


def chart_args(at: AppTest) -> dict:
    return next(json.loads(e.proto.json_args) for e in at.get("component_instance")
                if "panels" in json.loads(e.proto.json_args))


@pytest.mark.parametrize("device, poll, budget, secondary", [("cpu", 3.0, 0.01, 6.0), ("cuda:0", 2.0, 0.02, 3.0)])
def test_a_browser_on_the_machine_of_a_cpu_run_asks_and_draws_less_often(store, device, poll, budget, secondary):
    # AppTest has no client address, as a browser on localhost: a run on this CPU shares its cores with the page
    rid = store.create_run(RunConfig(model="tiny:bert", max_steps=100), status="running", device=device, name="r")
    log(store, rid, 1, 3)
    args = chart_args(live(Manager(store)))
    assert (args["poll"], args["budget"]) == (poll, budget)
    every = {p["id"]: p["every"] for p in args["panels"]}
    assert every["loss"] == 1.0 and every["lr"] == every["throughput"] == every["eval"] == secondary


def test_compare_paces_its_chart_by_the_same_rule(store):
    rid = store.create_run(RunConfig(model="tiny:bert", max_steps=100), status="running", device="cpu", name="r")
    log(store, rid, 1, 3)
    at = live(Manager(store))
    at.session_state["compare.runs"] = [rid]
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    assert (chart_args(at)["poll"], chart_args(at)["budget"]) == (3.0, 0.01)
    assert any("refresh every 3 s" in c.value for c in at.caption)
