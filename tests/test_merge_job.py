"""`hft merge` is a job on its device's queue, run by a worker process, never in the CLI's process.

Each test has a store of its own (HFT_HOME) with no worker serving it, so `hft merge` starts a
worker process for its job (``python -m hft_core.jobs``); its event log names that process.
"""
from __future__ import annotations

import csv
import json
import os
import re
import threading
import time

import pytest
import torch

from hft_core import jobs
from hft_core.cli import main
from hft_core.store import RunStore

TOPICS = {0: "the match ended with a late goal from the striker", 1: "shares rose after the bank reported profits",
          2: "the band played new songs at the concert"}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny BERT classifier with 3 labels saved as a model folder, and a labelled CSV for it."""
    from hft_core.models import load_model, load_tokenizer

    root = tmp_path_factory.mktemp("merge_job")
    torch.manual_seed(0)
    load_model("tiny:bert", "classification", 3, seed=0).save_pretrained(root / "model")
    load_tokenizer("tiny:bert").save_pretrained(root / "model")
    with open(root / "toy.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(30):
            w.writerow([f"{TOPICS[i % 3]} {i}", ["sport", "business", "music"][i % 3]])
    return root


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def job_rows(home):
    store = RunStore(home)
    try:
        return [r for r in store.list_runs() if r.kind != "train"]
    finally:
        store.close()


def worker_pid(store, run_id) -> int:
    """The pid that ran the job, from its own event log ("trained in pid N ... by worker W on D")."""
    found = [re.search(r"trained in pid (\d+) .*by worker (\S+) on (\S+)", m) for _, _, m in store.events(run_id)]
    found = [f for f in found if f]
    assert len(found) == 1, store.events(run_id)
    return int(found[0].group(1))


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def test_merge_prune_is_a_job_run_by_a_worker_process(model_folder, home, capsys):
    out = home.parent / "rows.csv"
    code = main(["merge", "prune", str(model_folder / "model"), "--task", "classification", "--data",
                 str(model_folder / "toy.csv"), "--sparsity", "0", "0.5", "--seed", "3", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [rec] = job_rows(home)
    assert (rec.kind, rec.status, rec.device) == ("prune", "finished", "cpu")
    # the job says everything it needs: the model as an absolute folder, how to build its held-out examples
    assert rec.job["model"] == str(model_folder / "model")
    assert rec.job["sparsities"] == [0.0, 0.5] and rec.job["scope"] == "global"
    assert rec.job["eval"] == {"task": "classification", "data": str(model_folder / "toy.csv"), "n_eval": 200,
                               "seed": 3, "max_length": 128, "n_train": 0, "eval_fraction": 0.2,
                               "text_column": "", "label_column": ""}
    store = RunStore(home)
    try:
        pid = worker_pid(store, rec.id)
        assert pid != os.getpid()  # a worker process ran it, not the CLI's
        assert f"worker pid {pid} was started for it" in captured.err
        # its points are in the store as metrics (what Live and Compare draw), step = 100 x sparsity
        metrics = store.metrics(rec.id)
        assert sorted(set(metrics["step"])) == [0, 50]
        rows = jobs.rows_of(store, rec.id)
        assert [r["sparsity"] for r in rows] == [0.0, 0.5]
        assert rows[1]["sparsity_achieved"] == pytest.approx(0.5, abs=1e-3)
        # the rows printed and written are the worker's
        assert "sparsity_achieved" in captured.out and f"wrote {out}" in captured.out
        with open(out) as fh:
            written = list(csv.DictReader(fh))
        assert [float(r["eval/accuracy"]) for r in written] == [r["eval/accuracy"] for r in rows]
        # the worker started for the job exits once it is done, leaving no worker behind
        log = home / "logs" / f"job-{rec.id}.log"
        wait_until(lambda: f"job {rec.id} finished" in log.read_text(), 60, "the job worker's last line")
        wait_until(lambda: not store.workers(), 30, "the job worker to unregister")
    finally:
        store.close()


def test_hft_stop_ends_a_merge_job_between_points(home, capsys):
    """WiSE-FT of two tiny models with many points: `hft stop` while it runs ends it "stopped" with
    the points measured so far, printed and kept."""
    stopper_done = threading.Event()
    stopped: list[str] = []

    def stop_after_first_point() -> None:
        store = RunStore(home)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                running = [r for r in store.list_runs(status="running") if r.kind == "wise_ft"]
                if running and not store.metrics(running[0].id).empty:
                    assert main(["stop", running[0].id, "--no-wait"]) == 0
                    stopped.append(running[0].id)
                    return
                time.sleep(0.1)
        finally:
            store.close()
            stopper_done.set()

    RunStore(home).close()  # the store exists before two threads open it (its schema is created once)
    threading.Thread(target=stop_after_first_point, daemon=True).start()
    code = main(["merge", "wise-ft", "--a", "tiny:bert", "--b", "tiny:bert", "--points", "101",
                 "--task", "classification", "--data", "bundled:bbc-news", "--n-eval", "200", "--max-length", "64"])
    assert stopper_done.wait(30)
    captured = capsys.readouterr()
    [rec] = job_rows(home)
    assert stopped == [rec.id]
    assert (rec.kind, rec.status) == ("wise_ft", "stopped"), rec.error
    assert code == 1 and f"job {rec.id} stopped" in captured.err
    store = RunStore(home)
    try:
        assert worker_pid(store, rec.id) != os.getpid()
        rows = jobs.rows_of(store, rec.id)
        assert 1 <= len(rows) < 101 and rows[0]["alpha"] == 0.0
        assert len(set(store.metrics(rec.id)["step"])) == len(rows)
    finally:
        store.close()


@pytest.mark.parametrize("argv, says", [
    (["prune", "./no-such-model-folder"], "model folder './no-such-model-folder' does not exist"),
    (["prune", "tiny:bert", "--data", "no-such.csv"], "data file 'no-such.csv' not found"),
    (["wise-ft", "--b", "tiny:bert", "--points", "1"], "--a is needed"),
    (["wise-ft", "--a", "tiny:bert", "--b", "tiny:bert", "--points", "1"], "--points 1: use at least 2"),
    (["soup", "tiny:bert", "tiny:bert", "--detach", "--out", "rows.csv"], "--out needs this command to wait"),
    (["prune", "tiny:bert", "--device", "cuda:7"], "cuda:7"),
    (["prune", "run:r-nothere"], "run r-nothere has no checkpoint"),
    (["prune", "tiny:bert", "--task", "regression"], "regression"),
])
def test_bad_input_is_one_line_with_exit_2_and_queues_nothing(home, capsys, argv, says):
    args = ["merge", *argv]
    if "--data" not in argv:
        args += ["--data", "bundled:bbc-news"]
    if "--task" not in argv:
        args += ["--task", "classification"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert not (home / "runs.sqlite").exists() or job_rows(home) == []


def test_an_unknown_run_is_named_even_without_task_and_data(home, capsys):
    """Without --task/--data the job takes them from the run: a run that is not there is what to say."""
    assert main(["merge", "wise-ft", "--b", "run:r-nothere", "--points", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run r-nothere has no checkpoint and is not in the store") and "hft list" in err, err


def test_detach_only_queues_the_job_and_says_nobody_serves_it(home, capsys):
    assert main(["merge", "soup", "tiny:bert", "tiny:bert", "--task", "classification", "--data", "bundled:bbc-news",
                 "--save", "soup-here", "--detach"]) == 0
    captured = capsys.readouterr()
    [rec] = job_rows(home)
    assert captured.out.strip() == rec.id
    assert "no worker serves cpu right now" in captured.err and "hft worker --device cpu" in captured.err
    assert (rec.kind, rec.status) == ("soup", "queued")
    assert rec.job["models"] == ["tiny:bert", "tiny:bert"] and os.path.isabs(rec.job["save"])
    assert not (home / "logs").exists()  # no worker process was started
    assert main(["stop", rec.id]) == 0  # a queued job is cancelled
    assert job_rows(home)[0].status == "stopped"


def test_a_job_over_model_sources_is_checked_when_it_is_queued(home):
    store = RunStore(home)
    spec = {"task": "classification", "data": "bundled:bbc-news"}
    try:
        with pytest.raises(jobs.JobError, match="give 'a'"):
            jobs.submit_job(store, "wise_ft", {"b": "tiny:bert", "eval": spec})
        with pytest.raises(jobs.JobError, match="unknown keys \\['lr'\\]"):
            jobs.submit_job(store, "prune", {"model": "tiny:bert", "eval": {**spec, "lr": 0.1}})
        with pytest.raises(jobs.JobError, match="absolute folder"):
            jobs.submit_job(store, "soup", {"models": ["tiny:bert", "tiny:bert"], "save": "rel", "eval": spec})
        with pytest.raises(jobs.JobError, match="at least two"):
            jobs.submit_job(store, "soup", {"models": ["tiny:bert"], "eval": spec})
        run_id = jobs.submit_job(store, "prune", {"model": "tiny:bert", "eval": spec}, device="cpu")
        rec = store.get_run(run_id)
        assert rec.job["eval"]["n_eval"] == 200 and rec.job["eval"]["max_length"] == 128  # filled in
        assert rec.cfg.model == "tiny:bert" and rec.cfg.data == "bundled:bbc-news"
        assert jobs.sources_of("prune", rec.job) == [] and rec.after == []
    finally:
        store.close()


def test_a_failure_caused_by_the_input_is_told_apart_from_a_bug():
    assert jobs.user_error("MergeError: model a and model b differ in 2 tensors")
    assert jobs.user_error("DataError: file 'x.csv' not found")
    assert not jobs.user_error("RuntimeError: CUDA error: an illegal memory access")
    assert not jobs.user_error("")
