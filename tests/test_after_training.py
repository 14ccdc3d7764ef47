"""Runs page, "After training": the confusion matrix of a real run, and WiSE-FT / pruning / soup
jobs queued from the page, trained by the real job runner, their results drawn on their own axis.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hft_core.config import RunConfig  # noqa: E402
from hft_core.runs import RunManager  # noqa: E402
from hft_core.store import RunStore  # noqa: E402
from ui import after_training as A  # noqa: E402
from ui.state import MANAGER_KEY  # noqa: E402

N_EVAL = 24


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Two real tiny:bert fine-tunings (seeds 0, 1) on BBC News, finished, in a store with a real manager."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("HFT_HOME", str(home))
    mp.setenv("HFT_OFFLINE", "1")
    mp.setenv("HFT_ESTIMATE_PROBES", "0")
    store = RunStore(home)
    mgr = RunManager(store)
    ids = [mgr.submit(RunConfig(model="tiny:bert", data="bundled:bbc-news", n_train=32, n_eval=N_EVAL, batch_size=8,
                                max_length=32, max_steps=4, eval_every=0, lr=1e-3, seed=s, device="cpu"),
                      group="after", name=f"tiny {s}") for s in (0, 1)]
    for rid in ids:
        assert mgr.wait(rid, timeout=300) and store.get_run(rid).status == "finished", store.get_run(rid).error
    yield store, mgr, ids
    mgr.shutdown()
    store.close()
    mp.undo()


def runs_page(mgr, selected: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state[MANAGER_KEY] = mgr
    at.run()
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="runs.selected").set_value(selected).run()
    assert not at.exception, at.exception
    return at


def test_the_confusion_matrix_of_a_real_run_counts_every_eval_example(lab):
    store, _, ids = lab
    found = A.confusion(store.events(ids[0], limit=1000))
    assert found is not None
    names, matrix = found
    assert names == ["business", "entertainment", "politics", "sports", "tech"]  # the BBC topics, in label order
    assert sum(map(sum, matrix)) == N_EVAL                      # every eval example once
    accuracy = store.last_metrics(ids[0])["eval/accuracy"]
    assert sum(matrix[i][i] for i in range(5)) == round(accuracy * N_EVAL)   # the diagonal is the accuracy
    spec = A.confusion_figure(names, matrix)
    assert spec["data"][0]["z"] == matrix and spec["layout"]["yaxis"]["autorange"] == "reversed"


def test_confusion_is_none_without_the_event_and_reads_old_python_lists():
    assert A.confusion([(0.0, "info", "eval at step 4")]) is None
    old = "confusion matrix (rows = true, columns = predicted; labels ['a', 'b']): [[1, 0], [2, 3]]"
    assert A.confusion([(0.0, "info", old)]) == (["a", "b"], [[1, 0], [2, 3]])
    assert A.confusion([(0.0, "info", old.replace("[[1, 0], [2, 3]]", "[[1, 0]]"))]) is None  # not square


def test_wise_ft_queued_from_the_runs_page_runs_and_shows_its_line(lab):
    store, mgr, ids = lab
    at = runs_page(mgr, ids[0])
    assert any(e.label.startswith("After training") for e in at.expander)
    assert at.get("plotly_chart")                            # the confusion matrix is drawn
    at.number_input(key="after.points").set_value(3).run()
    at.button(key="after.wise_ft").click().run()
    assert not at.exception, at.exception
    job = next(r for r in store.list_runs(group="after") if r.kind == "wise_ft")
    assert any(f"Queued as run {job.id}" in s.value for s in at.success)
    assert job.job == {"of": ids[0], "points": 3} and job.after == [ids[0]]
    assert mgr.wait(job.id, timeout=300) and store.get_run(job.id).status == "finished", store.get_run(job.id).error
    table = A.job_results("wise_ft", store.metrics(job.id))
    assert table.iloc[:, 0].tolist() == [0.0, 0.5, 1.0]     # a = 0, 0.5, 1
    # a = 1 is the fine-tuned model itself: its accuracy is the run's own final eval
    assert table["eval/accuracy"].iloc[-1] == pytest.approx(store.last_metrics(ids[0])["eval/accuracy"])
    at = runs_page(mgr, job.id)                                # the job's page: its results, not training curves
    assert any("Results" in m.value for m in at.markdown)
    assert not any(e.label.startswith("After training") for e in at.expander)


def test_a_soup_needs_a_partner_of_the_same_model_and_task(lab):
    store, mgr, ids = lab
    finished = store.list_runs(status="finished")
    assert [r.id for r in A.soup_partners(store.get_run(ids[0]), finished)] == [ids[1]]
    at = runs_page(mgr, ids[0])
    assert at.button(key="after.soup").disabled              # nothing chosen to mix with yet
    at.multiselect(key="after.mates").set_value([ids[1]]).run()
    at.button(key="after.soup").click().run()
    assert not at.exception, at.exception
    job = next(r for r in store.list_runs(group="after") if r.kind == "soup")
    assert job.job == {"of": [ids[0], ids[1]]}
    assert mgr.wait(job.id, timeout=300) and store.get_run(job.id).status == "finished", store.get_run(job.id).error
    table = A.job_results("soup", store.metrics(job.id))
    assert len(table) >= 2 and table["eval/accuracy"].between(0, 1).all()  # the best single run, then the soups


def test_pruning_with_no_sparsity_is_refused_with_the_reason(lab):
    store, mgr, ids = lab
    at = runs_page(mgr, ids[1])
    at.multiselect(key="after.sparsities").set_value([]).run()
    before = len(store.list_runs())
    at.button(key="after.prune").click().run()
    assert any("sparsities=[]" in e.value for e in at.error)
    assert len(store.list_runs()) == before                  # nothing queued
