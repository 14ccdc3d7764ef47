"""Ray backend: runs as Ray tasks, their metrics, status and checkpoints back in this machine's store.

One local Ray instance for the module (``ray.init(num_cpus=2)``: 2-20 s, slower on a busy
machine), so the tests are few: a 4-trial search as Ray tasks (every metric reaches the store
exactly once, every step present, checkpoints here), and a Stop request that ends its task.
"""
from __future__ import annotations

import time

import optuna  # noqa: F401  (pinned in requirements.txt, as ray: missing, this module fails, not skipped)
import pandas as pd
import pytest
import ray

from hft_core import ray_backend  # noqa: E402
from hft_core import search as S  # noqa: E402
from hft_core.config import RunConfig  # noqa: E402
from hft_core.runs import checkpoint_step  # noqa: E402
from hft_core.store import RunStore  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    s = RunStore(tmp_path / "home")
    yield s
    s.close()


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    rows = []
    for i in range(60):
        rows.append((f"the striker scored a late goal in match {i}", "sport"))
        rows.append((f"the bank raised interest rates as shares fell {i}", "business"))
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def base(toy_csv: str, **kw) -> dict:
    return {"model": "tiny:bert", "data": toy_csv, "batch_size": 8, "max_length": 32, "max_steps": 12,
            "eval_every": 4, "n_eval": 24, "device": "cpu", "precision": "fp32", "checkpoint_every": 0, **kw}


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def test_four_trials_as_ray_tasks_every_metric_reaches_the_store_once(cluster, store, toy_csv):
    spec = S.parse_search({"base": base(toy_csv), "space": {"lr": {"log_uniform": [1e-4, 1e-2]}},
                           "sampler": "random", "seed": 1}, name="on-ray")
    result = S.run_search(spec, trials=4, parallel=2, store=store, backend="ray")
    assert len(result.trials) == 4 and all(t.state == "COMPLETE" for t in result.trials), result.trials
    for t in result.trials:
        rec = store.get_run(t.run_id)
        assert rec.status == "finished" and rec.device == "ray:cpu" and rec.kind == "train"
        df = store.metrics(t.run_id)
        # exactly once: as many values in the store as the driver received from the task's relay
        # (the store keeps one value per (run, name, step), so a duplicate sent would show as fewer rows)
        assert len(df) == ray_backend.RELAYED[t.run_id] > 0
        assert not df.duplicated(["name", "step"]).any()
        assert list(df[df.name == "loss"].step) == list(range(1, 13))          # every step present
        assert list(df[df.name == "eval/accuracy"].step) == [4, 8, 12]
        assert {"loss/task", "lr", "samples_per_s", "eval/loss"} <= set(df.name)
        messages = [m for _, _, m in store.events(t.run_id)]
        assert any("training as a Ray task" in m for m in messages) and any(m.startswith("finished at step 12")
                                                                            for m in messages)
        assert checkpoint_step(store.run_dir(t.run_id)) == 12                 # the checkpoint came back here
        assert (store.run_dir(t.run_id) / "checkpoint" / "model.safetensors").is_file()
        assert t.value == df[(df.name == "eval/accuracy") & (df.step == 12)].value.item()
    wait_until(lambda: ray.available_resources().get("CPU") == 2, 60, "every task to end and free its CPU")


def test_a_stop_request_ends_its_ray_task_with_a_checkpoint_here(cluster, store, toy_csv):
    launcher = ray_backend.RayLauncher(store, "cpu")
    try:
        cfg = RunConfig.from_dict(base(toy_csv, max_steps=100_000, eval_every=0))
        run_id = launcher.submit(cfg, group="ray-stop", name="long")
        wait_until(lambda: len(store.metrics(run_id, names=["loss"])) >= 3, 300, "the task's first steps")
        assert store.get_run(run_id).status == "running"
        assert store.request_stop(run_id, "Stop on Live") == "requested"   # as the app or `hft stop` does
        rec = wait_until(lambda: (r := store.get_run(run_id)).status != "running" and r, 60, "the run to stop")
        assert rec.status == "stopped"
        last = int(store.metrics(run_id, names=["loss"])["step"].max())
        assert last < 100_000
        assert checkpoint_step(store.run_dir(run_id)) == last              # on this machine, at the step it stopped
        assert rec.checkpoint_dir == str(store.run_dir(run_id) / "checkpoint")
        wait_until(lambda: ray.available_resources().get("CPU") == 2, 60, "the Ray task to end")
    finally:
        launcher.close()
