"""kill -9 in the middle of a real training run, then restart and resume.

A run trains in a separate process (``python -m hft_core.runs``) and is SIGKILLed once
its metrics show up in the store. After the "restart" (a fresh RunStore + RunManager):
the run shows as interrupted, its config is intact, its metrics reach to within about a
second of the kill, and resuming it finishes the run with one continuous step axis.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from hft_core.config import RunConfig
from hft_core.runs import RunManager, checkpoint_step
from hft_core.store import RunStore
from hft_core.trainer import train  # the real trainer: a failure to import it fails this module, never a skip

ROOT = Path(__file__).resolve().parents[1]


def test_kill_9_mid_run_then_interrupted_then_resume(tmp_path):
    rows = [(f"the match ended with a late goal number {i}", "sport") if i % 2 else
            (f"shares fell as the bank cut rates again {i}", "business") for i in range(64)]
    data = tmp_path / "toy.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    home = tmp_path / "home"
    cfg = RunConfig(model="tiny:bert", data=str(data), batch_size=8, max_length=32, max_steps=100, eval_every=0,
                    n_eval=16, checkpoint_every=20, lr=1e-3, seed=0, device="cpu", precision="fp32", name="fault")
    store = RunStore(home)
    run_id = store.create_run(cfg, device="cpu")

    log = (tmp_path / "child.log").open("w")  # a file, never an undrained pipe
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "hft_core.runs", "--home", str(home), "--run-id", run_id],
                             env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while store.last_metrics(run_id).get("step", 0) < 30:  # past the first checkpoint (20)
            assert child.poll() is None, f"the run ended before the kill:\n{(tmp_path / 'child.log').read_text()}"
            assert time.monotonic() < deadline, "no metrics in the store after 120 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        killed_at = time.time()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        log.close()

    # ---- the "restart": a fresh store object and manager, as a relaunched app would make
    store.close()
    store = RunStore(home)
    assert store.get_run(run_id).status == "running"  # as the dead process left it
    manager = RunManager(store, train_fn=train)
    assert manager.interrupted == [run_id]
    rec = store.get_run(run_id)
    assert rec.status == "interrupted" and f"pid {child.pid}" in rec.error
    assert rec.cfg == cfg  # config intact

    before = store.metrics(run_id, names=["loss"])
    last_step = int(before.step.max())
    assert 30 <= last_step < 100
    assert list(before.step) == list(range(1, last_step + 1))
    lost = killed_at - before.wall_time.max()
    print(f"metrics lost to the kill: the last {lost:.2f} s")
    assert lost <= 1.0, f"the last {lost:.2f} s of metrics before the kill were lost (allowed: 1 s)"
    resumed_from = checkpoint_step(store.run_dir(run_id))
    assert resumed_from is not None and resumed_from % 20 == 0 and 20 <= resumed_from <= last_step

    # ---- resume: same id, the curve continues from the checkpoint
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only fight over 2 busy cores (3x slower here)
    try:
        manager.resume(run_id)
        assert manager.wait(run_id, timeout=300)
    finally:
        torch.set_num_threads(threads)
    rec = store.get_run(run_id)
    assert rec.status == "finished", rec.error
    after = store.metrics(run_id, names=["loss"])
    assert list(after.step) == list(range(1, 101)), "gap or duplicate in the step axis"
    old, new = after[after.step <= resumed_from], after[after.step > resumed_from]
    assert (old.wall_time < killed_at).all() and (new.wall_time > killed_at).all()
    assert f"resuming from the checkpoint at step {resumed_from}" in [m for _, _, m in store.events(run_id)]
    assert checkpoint_step(store.run_dir(run_id)) == 100
    manager.shutdown()
    store.close()
