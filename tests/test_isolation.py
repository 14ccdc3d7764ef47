"""Every run in a worker process of its own: a run's numbers never depend on what else trains,
and a crash or a hang stays in its process.

Real processes and the real trainer on tiny:bert (dropout on). Thread policy under test: on
a CPU, runs side by side split the cores (``placement.threads_per_run``): with
HFT_RUNS_PER_DEVICE=2 on this 2-core machine every training process (app worker, `hft
train`) uses 1 torch thread, and the reference run alone is trained with 1 thread too.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from hft_core.config import RunConfig
from hft_core.control import HEARTBEAT_S, LEASE_S
from hft_core.runs import RunManager, checkpoint_step, prepare_resume, run_here
from hft_core.store import RunStore
from hft_core.worker_process import EXIT_CLAIM_LOST

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"
PY = sys.executable


@pytest.fixture
def iso(tmp_path, monkeypatch):
    """A store, a toy CSV, and the environment of this process and its children: 2 runs per device."""
    rows = [(f"the match ended with a late goal number {i}", "sport") if i % 2 else
            (f"shares fell as the bank cut rates again {i}", "business") for i in range(64)]
    data = tmp_path / "toy.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HFT_HOME", str(home))
    monkeypatch.setenv("HFT_OFFLINE", "1")
    monkeypatch.setenv("HFT_RUNS_PER_DEVICE", "2")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(PLUGINS)]))
    store = RunStore(home, flush_interval=0.2)
    yield SimpleNamespace(home=home, data=data, store=store, env=dict(os.environ))
    store.close()


def tiny(iso, **kw) -> RunConfig:
    base = dict(model="tiny:bert", data=str(iso.data), batch_size=8, max_length=32, max_steps=60, eval_every=0,
                n_eval=8, checkpoint_every=0, lr=1e-3, seed=0, device="cpu", precision="fp32")
    return RunConfig(**{**base, **kw})


def cli_sets(cfg: RunConfig) -> list[str]:
    out = []
    for k in ("model", "data", "batch_size", "max_length", "max_steps", "eval_every", "n_eval", "checkpoint_every",
              "lr", "seed", "device", "precision", "name"):
        out += ["--set", f"{k}={getattr(cfg, k)}"]
    return out


def child(iso, args: list[str]) -> subprocess.Popen:
    log = open(iso.home.parent / f"child-{time.monotonic_ns()}.log", "w")  # a file, never an undrained pipe
    return subprocess.Popen([PY, *args], env=iso.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)


def losses(store: RunStore, run_id: str) -> list[float]:
    return store.metrics(run_id, names=["loss"]).value.tolist()


def run_named(store: RunStore, name: str):
    return next((r for r in store.list_runs() if r.name == name), None)


def test_identical_runs_side_by_side_from_the_app_workers_and_the_cli_equal_the_run_alone_to_the_bit(iso):
    cfg = tiny(iso, name="alone")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # alone, in this process, with the thread count the side-by-side runs get
    try:
        with torch.random.fork_rng():
            alone = run_here(cfg, store=iso.store, handle_ctrl_c=False)
    finally:
        torch.set_num_threads(threads)
    assert alone.status == "finished"
    reference = losses(iso.store, alone.run_id)
    assert len(reference) == cfg.max_steps

    manager = RunManager(iso.store, warm=False)  # what the app and a notebook use: 2 worker processes
    assert manager.processes and manager.max_per_device == 2
    try:
        # two identical runs through RunManager, side by side on its two workers
        pair = [manager.submit(tiny(iso, name=f"manager {k}")) for k in range(2)]
        assert manager.wait(pair, timeout=240)
        recs = [iso.store.get_run(r) for r in pair]
        assert [r.status for r in recs] == ["finished"] * 2, [r.error for r in recs]
        assert recs[0].pid != recs[1].pid != os.getpid(), "not trained in two worker processes"
        assert recs[0].started < recs[1].ended and recs[1].started < recs[0].ended, "they did not overlap"
        for r in pair:
            assert losses(iso.store, r) == reference, "a run beside another differs from the run alone"

        # the same run from `hft train` in a terminal and from an app worker, at once
        cli = child(iso, ["-m", "hft_core", "train", *cli_sets(tiny(iso, name="cli")), "--quiet"])
        try:
            wait_for(lambda: (r := run_named(iso.store, "cli")) and iso.store.last_metrics(r.id).get("step", 0) >= 1,
                     180, "the CLI run to train")
            app_run = manager.submit(tiny(iso, name="app"))
            assert manager.wait(app_run, timeout=240)
            assert cli.wait(timeout=240) == 0
        finally:
            if cli.poll() is None:
                cli.kill()
    finally:
        manager.shutdown(wait=True)
    cli_rec, app_rec = run_named(iso.store, "cli"), iso.store.get_run(app_run)
    assert cli_rec.status == app_rec.status == "finished", (cli_rec.error, app_rec.error)
    cli_loss, app_loss = losses(iso.store, cli_rec.id), losses(iso.store, app_rec.id)
    first_app = iso.store.metrics(app_rec.id, names=["loss"]).wall_time.min()
    last_cli = iso.store.metrics(cli_rec.id, names=["loss"]).wall_time.max()
    assert first_app < last_cli, "the app's run did not train while the CLI's did"
    assert cli_loss == app_loss, "the CLI run and the app worker's run differ"
    assert cli_loss == reference, "side by side from two entry points, they differ from the run alone"
    for rec in (cli_rec, app_rec):
        assert any("with 1 torch thread(s)" in m for _, _, m in iso.store.events(rec.id)), "thread count not recorded"


def test_a_run_that_crashes_its_process_fails_with_the_signal_named_and_the_others_go_on(iso, monkeypatch,
                                                                                      crash_strategy):
    """SIGSEGV and os.abort() (SIGABRT) in two runs at once, beside a healthy one that goes on."""
    monkeypatch.setenv("HFT_PLUGINS", "hft_test_crash")
    iso.env = dict(os.environ)
    manager = RunManager(iso.store, warm=False)  # 2 worker processes
    try:
        healthy = manager.submit(tiny(iso, name="healthy", max_steps=100_000))
        wait_for(lambda: iso.store.last_metrics(healthy).get("step", 0) >= 1, 120, "the healthy run to train")
        crashes = {signame: manager.submit(tiny(iso, name=how, mix={"crash": {"how": how}}))
                   for how, signame in (("segv", "SIGSEGV"), ("abort", "SIGABRT"))}
        nxt = manager.submit(tiny(iso, name="next", max_steps=5))
        assert manager.wait([*crashes.values(), nxt], timeout=240)
        for signame, run_id in crashes.items():
            rec = iso.store.get_run(run_id)
            assert rec.status == "failed" and signame in rec.error and f"pid {rec.pid}" in rec.error, rec.error
            assert any(signame in m for _, _, m in iso.store.events(run_id))
        assert iso.store.get_run(nxt).status == "finished", iso.store.get_run(nxt).error
        pids = {iso.store.get_run(r).pid for r in [*crashes.values(), nxt]}
        assert len(pids) == 3 and os.getpid() not in pids, "each crash must take only its own worker process"
        step = iso.store.last_metrics(healthy)["step"]
        wait_for(lambda: iso.store.last_metrics(healthy)["step"] > step, 60, "the healthy run to go on training")
        assert manager.stop(healthy) == "requested"
        assert manager.wait(healthy, timeout=60)
        assert iso.store.get_run(healthy).status == "stopped", "a crash in another worker took this run with it"
    finally:
        manager.shutdown(wait=True)


WORKER = ["-m", "hft_core.worker_process", "--device", "cpu", "--threads", "1", "--max-running", "1", "--no-warm"]


def test_a_stopped_worker_loses_its_run_within_the_lease_and_its_late_writes_are_refused(iso):
    store = iso.store
    long_run = store.create_run(tiny(iso, name="long", max_steps=100_000, checkpoint_every=20), device="cpu")
    short_run = store.create_run(tiny(iso, name="short", max_steps=5), device="cpu")
    # both workers first (they import at the same time), so nothing waits between the run's progress
    # and the stop; the one that claimed the long run is A, the other B
    workers = [child(iso, [*WORKER, "--home", str(iso.home)]) for _ in range(2)]
    a = b = None
    try:
        wait_for(lambda: len(store.workers("cpu")) == 2, 180, "both workers to register")
        wait_for(lambda: store.get_run(long_run).status == "running" and store.last_metrics(long_run).get("step", 0)
                 >= 25, 180, "a worker to train past its first checkpoint")
        a = next(w for w in workers if w.pid == store.get_run(long_run).pid)
        b = next(w for w in workers if w is not a)
        a.send_signal(signal.SIGSTOP)
        t_stop = time.time()
        rec = wait_for(lambda: (r := store.get_run(long_run)).status == "interrupted" and r, 30,
                       "the stopped worker's run to be interrupted")
        print(f"SIGSTOP -> interrupted in {rec.ended - t_stop:.2f} s (lease {LEASE_S:g} s)")
        # promised: the lease runs out at most LEASE_S after the last heartbeat (so by LEASE_S + HEARTBEAT_S
        # after the stop), seen at the other worker's next claim (every 0.5 s); 2 s more for a loaded machine
        assert rec.ended - t_stop <= LEASE_S + HEARTBEAT_S + 2.0, "not interrupted within the lease"
        assert "longer than its lease" in rec.error
        kept = store.metrics(long_run)
        wait_for(lambda: store.get_run(short_run).status == "finished", 120, "the next run to start and finish")
        assert store.get_run(short_run).pid == b.pid

        store.requeue(long_run, resume=prepare_resume(store, long_run))  # B resumes it from its checkpoint ...
        wait_for(lambda: store.get_run(long_run).status == "running", 60, "worker B to resume the run")
        assert store.get_run(long_run).pid == b.pid
        a.send_signal(signal.SIGCONT)  # ... while A wakes up and finds its claim gone
        assert a.wait(timeout=60) == EXIT_CLAIM_LOST
        store.flush()  # prepare_resume's log line is buffered in this process's store
        resumed_from = int(next(m for _, _, m in store.events(long_run) if m.startswith("resuming from")).split()[-1])
        wait_for(lambda: store.last_metrics(long_run).get("step", 0) >= resumed_from + 5, 120, "B to train on")
        assert store.request_stop(long_run, "enough") == "requested"
        wait_for(lambda: store.get_run(long_run).status == "stopped", 120, "worker B to stop the resumed run")
    finally:
        for p in workers:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(timeout=30)
    rec = store.get_run(long_run)
    assert rec.pid == b.pid and rec.status == "stopped"
    after = store.metrics(long_run, names=["loss"])
    last = int(after.step.max())
    assert list(after.step) == list(range(1, last + 1)), "a gap or a duplicate in the step axis"
    assert checkpoint_step(store.run_dir(long_run)) == last, "B's checkpoint is not at its last step"
    before = kept[kept.name == "loss"]
    same = after[after.step <= resumed_from].set_index("step").value
    assert (same == before[before.step <= resumed_from].set_index("step").value).all(), \
        "the metrics up to the checkpoint changed"
