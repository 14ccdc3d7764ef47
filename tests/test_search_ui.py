"""The Search form (ui/search_form.py) and the study view (ui/study_view.py), without a browser.

A study started from the form runs in a background thread of the app process; its trials are
plain queued runs of the app's RunManager (here with a fake trainer that logs like the real one).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna  # noqa: F401  (pinned in requirements.txt: missing, this module fails to import, not skipped)
import pytest

REPO = Path(__file__).resolve().parents[1]

from hft_core import search as S  # noqa: E402
from hft_core.config import RunConfig  # noqa: E402
from hft_core.runs import RunManager  # noqa: E402
from hft_core.store import RunStore  # noqa: E402
from ui import search_form as F  # noqa: E402
from ui import study_view as V  # noqa: E402


def fake_train(step_s: float = 0.01):
    """Loss every step, eval/accuracy every eval_every steps, growing with lr; honours stop."""
    def train(cfg, sink=None, stop=None, out_dir=None, resume=False):
        stop = stop or threading.Event()
        for step in range(1, cfg.max_steps + 1):
            if stop.is_set():
                return SimpleNamespace(status="stopped", checkpoint=None)
            sink.log(step, {"loss": 1.0 / step})
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                sink.log(step, {"eval/accuracy": min(1.0, cfg.lr * 2) * step / cfg.max_steps})
            stop.wait(step_s)
        return SimpleNamespace(status="finished", checkpoint=None)
    return train


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    store = RunStore(tmp_path)
    mgr = RunManager(store, train_fn=fake_train(), devices=["cpu"])
    yield SimpleNamespace(store=store, mgr=mgr, home=tmp_path)
    mgr.shutdown()
    store.close()


def form_cfg(**kw) -> RunConfig:
    return RunConfig(**{"model": "tiny:bert", "max_steps": 20, "eval_every": 5, "device": "cpu", "lr": 0.1, **kw})


def test_rows_become_a_search_space():
    rows = [{"field": "lr", "kind": "log_uniform", "low": 1e-5, "high": 1e-3, "values": None},
            {"field": "mix.l2sp.beta", "kind": "choice", "low": None, "high": None, "values": "0, 0.01, 1e-3"},
            {"field": "mix.lora.r", "kind": "int", "low": 4.0, "high": 16.0, "values": ""},
            {"field": "optimizer", "kind": "choice", "low": None, "high": None, "values": "adamw, sgd"},
            {"field": None, "kind": None, "low": None, "high": None, "values": None}]   # the editor's empty new row
    assert F.rows_to_space(rows) == {"lr": {"log_uniform": [1e-5, 1e-3]}, "mix.l2sp.beta": {"choice": [0, 0.01, 0.001]},
                                     "mix.lora.r": {"int": [4, 16]}, "optimizer": {"choice": ["adamw", "sgd"]}}
    with pytest.raises(S.SearchError, match=r"row 2 \(lr\): lr is in the table twice"):
        F.rows_to_space([rows[0], rows[0]])
    with pytest.raises(S.SearchError, match=r"row 1 \(lr\): give low and high for a uniform range"):
        F.rows_to_space([{"field": "lr", "kind": "uniform", "low": 1e-4, "high": float("nan")}])
    with pytest.raises(S.SearchError, match=r"a choice needs its values"):
        F.rows_to_space([{"field": "seed", "kind": "choice", "values": " , "}])
    with pytest.raises(S.SearchError, match="the search table is empty"):
        F.rows_to_space([rows[-1]])


def test_the_form_builds_a_checked_study_over_the_train_form():
    cfg = form_cfg(lr=1e-4)
    rows = F.default_rows(cfg)
    assert rows[0] == {"field": "lr", "kind": "log_uniform", "low": 1e-5, "high": 1e-3, "values": ""}
    spec = F.build_spec(cfg, rows, name="s1", sampler="random", pruner="median", trials=4)
    assert spec.name == "s1" and spec.base.model == "tiny:bert" and spec.trials == 4 and spec.pruner == "median"
    assert [d.field for d in spec.space] == ["lr", "mix.blend.alpha"]
    assert F.build_spec(cfg, rows).name.startswith("search-")
    with pytest.raises(S.SearchError, match="the Train form's config is not ready: data: no such file"):
        F.build_spec(None, rows, problem="data: no such file")
    with pytest.raises(S.SearchError, match=r"mix.blend.alpha: 1.5 \(the range's high end\) is not a valid value"):
        F.build_spec(cfg, [{"field": "mix.blend.alpha", "kind": "uniform", "low": 0.0, "high": 1.5}])
    with pytest.raises(S.SearchError, match="pruner median compares trials at their evaluations"):
        F.build_spec(form_cfg(eval_every=0), rows)
    assert F.field_options()[:2] == ["lr", "mix.blend.alpha"] and "mix.l2sp.beta" in F.field_options()


def test_a_study_from_the_app_runs_in_a_background_thread_on_the_apps_queue(lab):
    spec = F.build_spec(form_cfg(), [{"field": "lr", "kind": "uniform", "low": 0.05, "high": 0.45}],
                        name="from-app", sampler="random", pruner="none", trials=3)
    studies = F.Studies()
    thread = studies.start(spec, lab.mgr)
    assert thread.alive and threading.current_thread() is not thread._thread
    with pytest.raises(S.SearchError, match="already running here"):
        studies.start(spec, lab.mgr)
    thread.join(timeout=120)
    assert not thread.alive and thread.error is None
    assert len(thread.ended) == 3 and all(t.state == "COMPLETE" for t in thread.ended)
    assert "3 of 3 trials ended (0 pruned, 0 failed); best so far eval/accuracy" in F.progress_line(thread)
    runs = lab.store.list_runs(group="from-app")
    assert len(runs) == 3 and all(r.status == "finished" and r.reserved_for is None for r in runs)  # the app's queue

    # the study view draws it
    result = S.summarize(S.load_study("from-app", home=lab.home), lab.store)
    table = V.trials_table(result)
    assert list(table["trial"]) == [0, 1, 2] and set(table["state"]) == {"finished"} and "lr" in table
    curves = V.curves_figure(lab.store, result)
    assert len(curves.data) == 3
    best = [tr for tr in curves.data if tr.line.color == V.BEST_COLOR]
    assert len(best) == 1 and best[0].name == f"trial {result.best.number} (best)"
    assert list(best[0].y)[-1] == result.best.value
    study = S.load_study("from-app", home=lab.home)
    hist = {tr.name: tr for tr in V.history_figure(study).data}
    values = [t.value for t in result.trials]
    assert list(hist["Objective Value"].y) == values
    assert list(hist["Best Value"].y) == [max(values[:i + 1]) for i in range(3)]    # best so far, maximising
    assert len(V.parallel_figure(study).data) >= 3
    fig, why = V.importance_figure(study)
    assert fig is not None and why == ""
    assert V.has_studies(lab.home)


def test_stop_study_from_the_app_stops_its_running_trial(lab):
    lab.mgr._train_fn = fake_train(step_s=0.05)
    spec = F.build_spec(form_cfg(max_steps=200), [{"field": "lr", "kind": "uniform", "low": 0.05, "high": 0.45}],
                        name="stop-me", sampler="random", pruner="none", trials=5)
    studies = F.Studies()
    thread = studies.start(spec, lab.mgr)
    deadline = time.monotonic() + 60
    while not lab.store.list_runs(group="stop-me", status="running") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert studies.stop("stop-me")
    thread.join(timeout=60)
    assert not thread.alive and thread.result.stopped
    assert "(stopped)" in F.progress_line(thread)
    assert [t.state for t in thread.ended] == ["FAIL"] and "stopped with the study" in thread.ended[0].reason
    assert not studies.stop("stop-me")
    fig, why = V.importance_figure(S.load_study("stop-me", home=lab.home))
    assert fig is None and "needs at least 2 finished trials (0 so far)" in why


# ---- the pages, in AppTest ----------------------------------------------------------------------------

def test_train_page_starts_a_study_and_compare_shows_it(lab, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui.state import MANAGER_KEY

    monkeypatch.setenv("HFT_ESTIMATE_PROBES", "0")
    studies = F.Studies()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state[MANAGER_KEY] = lab.mgr
    at.session_state["search.registry"] = studies
    at.run()
    assert not at.exception, at.exception
    assert any(e.label.startswith("Search: an Optuna study") for e in at.expander)
    at.selectbox(key="search.pruner").set_value("none")
    at.selectbox(key="search.sampler").set_value("random")
    at.number_input(key="search.trials").set_value(2)
    at.text_input(key="search.name").set_value("app-study")
    next(b for b in at.button if b.label == "Start the study").click().run()
    assert not at.exception, at.exception
    assert any("Study 'app-study' started: 2 trials" in s.value for s in at.success), [e.value for e in at.error]
    thread = studies.all()[0]
    thread.join(timeout=120)
    assert len(thread.ended) == 2 and len(lab.store.list_runs(group="app-study")) == 2

    at.switch_page("pages/compare.py").run()
    at.selectbox(key="compare.group").set_value("app-study").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="compare.study").value == "app-study"   # the group's study, shown
    assert any("**2 trials** (2 finished, 0 pruned, 0 failed" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 3
