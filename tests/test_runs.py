"""RunManager: per-device FIFO queues in background threads, stop/cancel/resume, sweeps, failures.

Most tests use a fake train_fn with the trainer's signature (fast, and it records what the
manager did); the last two use the real trainer on a tiny model.
"""
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from hft_core.config import ConfigError, RunConfig
from hft_core.runs import RunManager, Worker, _short_labels, checkpoint_step, resolve_device
from hft_core.store import RunStore, StoreError
from hft_core.trainer import STATE_FILE as _state_file
from hft_core.trainer import train as real_train

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    status: str
    step: int
    metrics: dict
    checkpoint: str | None = None


class FakeTrainer:
    """Logs "loss" each step, checks ``stop`` between steps, saves a checkpoint (trainer_state.pt with
    the step, as the real trainer does) when stopped and at the end, resumes from it.

    ``fail`` maps a run name to (step, exception): log up to that step, optionally save a checkpoint
    at ``ckpt_at`` on the way, then raise.
    """

    def __init__(self, step_time: float = 0.0, fail: dict | None = None, ckpt_at: int | None = None):
        self.step_time = step_time
        self.fail = fail or {}
        self.ckpt_at = ckpt_at
        self.lock = threading.Lock()
        self.calls: list[dict] = []
        self.step_now = 0  # the step the latest run has completed

    def save(self, out_dir: Path, step: int) -> Path:
        ckpt = Path(out_dir) / "checkpoint"
        ckpt.mkdir(parents=True, exist_ok=True)
        torch.save({"step": step}, ckpt / "trainer_state.pt")
        return ckpt

    def __call__(self, cfg, sink=None, stop=None, *, out_dir=None, resume=False):
        call = {"name": cfg.name, "resume": resume, "start": time.monotonic(), "thread": threading.get_ident()}
        with self.lock:
            self.calls.append(call)
        step = checkpoint_step(out_dir) if resume else 0
        call["from_step"] = step
        status = "finished"
        try:
            while step < cfg.max_steps:
                if stop.is_set():
                    status = "stopped"
                    break
                if self.step_time:
                    time.sleep(self.step_time)
                step += 1
                self.step_now = step
                sink.log(step, {"loss": 1.0 / step})
                if step == self.ckpt_at:
                    self.save(out_dir, step)
                if cfg.name in self.fail and step == self.fail[cfg.name][0]:
                    raise self.fail[cfg.name][1]
            ckpt = self.save(out_dir, step)
            sink.event(f"{status} at step {step}")
            return Result(status, step, {"eval/accuracy": 0.5}, str(ckpt))
        finally:
            call["end"] = time.monotonic()


managers: list[RunManager] = []


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "home", flush_interval=0.1)
    yield s
    while managers:  # before the store closes: their workers still write to it
        m = managers.pop()
        m.shutdown(wait=False)
        m.wait(timeout=30)
    s.close()


def make_manager(store, trainer, **kw) -> RunManager:
    m = RunManager(store, train_fn=trainer, **kw)
    managers.append(m)
    return m


def cfg(**kw) -> RunConfig:
    kw.setdefault("max_steps", 3)
    kw.setdefault("device", "cpu")
    return RunConfig(model="tiny:bert", **kw)


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# ---- queues -----------------------------------------------------------------------------------

def test_runs_start_in_fifo_order_and_finish(store):
    fake = FakeTrainer(step_time=0.005)
    m = make_manager(store, fake)
    ids = [m.submit(cfg(), name=f"run{i}") for i in range(4)]
    assert m.wait(ids, timeout=10)
    assert [c["name"] for c in fake.calls] == ["run0", "run1", "run2", "run3"]
    for run_id in ids:
        r = store.get_run(run_id)
        assert r.status == "finished" and r.started <= r.ended and r.device == "cpu"
        assert r.checkpoint_dir == str(store.run_dir(run_id) / "checkpoint")
        assert list(store.metrics(run_id, names=["loss"]).step) == [1, 2, 3]  # flushed before "finished"
    assert m.queue() == [] and m.active() == []


def test_many_sessions_submit_at_once(store):
    """8 threads submit 20 runs at the same moment: each stored exactly once, each trained exactly
    once, and runs on one device never overlap in time."""
    fake = FakeTrainer(step_time=0.002)
    m = make_manager(store, fake)
    barrier = threading.Barrier(8, timeout=60)
    submitted: list[str] = []
    lock = threading.Lock()

    def session(k: int) -> None:
        barrier.wait()
        for j in range(3 if k < 4 else 2):
            run_id = m.submit(cfg(seed=k), name=f"s{k}-{j}")
            with lock:
                submitted.append(run_id)

    threads = [threading.Thread(target=session, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a submitting session hung"
    assert len(submitted) == 20 and len(set(submitted)) == 20
    assert m.wait(timeout=30)
    stored = store.list_runs()
    assert sorted(r.id for r in stored) == sorted(submitted)
    assert all(r.status == "finished" for r in stored)
    names = sorted(c["name"] for c in fake.calls)
    assert names == sorted(r.name for r in stored) and len(set(names)) == 20  # each trained once
    spans = sorted((c["start"], c["end"]) for c in fake.calls)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two runs trained on the cpu at the same time"
    # the queue order is the submission order
    by_start = [c["name"] for c in sorted(fake.calls, key=lambda c: c["start"])]
    by_position = [r.name for r in sorted(stored, key=lambda r: r.position)]
    assert by_start == by_position


def test_each_device_has_its_own_queue(store):
    fake = FakeTrainer(step_time=0.05)
    m = make_manager(store, fake, devices=["cpu", "cuda:1"])  # the fake does not care about devices
    a = m.submit(cfg(max_steps=4, device="cpu"), name="cpu")
    b = m.submit(cfg(max_steps=4, device="cuda:1"), name="gpu1")
    wait_for(lambda: len(m.active()) == 2, what="both devices busy")
    assert store.get_run(b).device == "cuda:1"
    assert m.wait([a, b], timeout=10)
    ca, cb = sorted(fake.calls, key=lambda c: c["name"])
    assert ca["start"] < cb["end"] and cb["start"] < ca["end"], "the two devices should train in parallel"


def test_max_per_device_allows_parallel_runs(store):
    fake = FakeTrainer(step_time=0.05)
    m = make_manager(store, fake, max_per_device=2)
    ids = [m.submit(cfg(max_steps=4)) for _ in range(2)]
    wait_for(lambda: len(m.active()) == 2, what="two runs on one device")
    assert m.wait(ids, timeout=10)


def test_resolve_device():
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:2") == "cuda:2"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_move_reorders_the_queue(store):
    fake = FakeTrainer(step_time=0.02)
    m = make_manager(store, fake)
    first = m.submit(cfg(max_steps=1000), name="first")
    # training, not only claimed: a stop that lands between the claim and train() ends it untrained
    wait_for(lambda: m.active() == [first] and [x["name"] for x in fake.calls] == ["first"],
             what="first run to start training")
    a, b, c = (m.submit(cfg(), name=n) for n in "abc")
    assert m.queue() == [a, b, c] and m.queue("cpu") == [a, b, c]
    m.move(c, 0)
    assert m.queue() == [c, a, b]
    m.move(a, 99)
    assert m.queue() == [c, b, a]
    assert [r.id for r in sorted(store.list_runs(status="queued"), key=lambda r: r.position)] == [c, b, a]
    with pytest.raises(ValueError, match="not queued"):
        m.move(first, 0)
    m.stop(first)
    assert m.wait(timeout=60)
    assert [x["name"] for x in fake.calls] == ["first", "c", "b", "a"]


# ---- failures, stop, cancel, resume ------------------------------------------------------------

def test_a_failing_run_is_recorded_and_the_next_one_starts(store):
    fake = FakeTrainer(fail={"bad": (2, ValueError("the batch had no labels"))})
    m = make_manager(store, fake)
    bad = m.submit(cfg(), name="bad")
    good = m.submit(cfg(), name="good")
    assert m.wait(timeout=60)
    r = store.get_run(bad)
    assert r.status == "failed" and r.error == "ValueError: the batch had no labels"
    assert "Traceback" in r.traceback and "the batch had no labels" in r.traceback
    assert (0, "error", "ValueError: the batch had no labels") in [(0, lv, msg) for _, lv, msg in store.events(bad)]
    assert list(store.metrics(bad).step) == [1, 2]  # what it logged before failing is kept
    assert store.get_run(good).status == "finished"


def test_stop_a_running_run_at_the_next_step(store):
    fake = FakeTrainer(step_time=0.01)
    m = make_manager(store, fake)
    run_id = m.submit(cfg(max_steps=100_000))
    wait_for(lambda: m.active() == [run_id] and store.last_metrics(run_id).get("step", 0) > 3, what="steps")
    before = fake.step_now
    assert m.stop(run_id) == "requested"
    after = fake.step_now  # read once the stop event is set: the trainer may have gone on until then
    assert m.wait(run_id, timeout=60)
    r = store.get_run(run_id)
    assert r.status == "stopped" and r.error is None
    stopped_at = checkpoint_step(store.run_dir(run_id))
    # in this process the stop event is set directly: the step under way ends, and no other starts
    assert before <= stopped_at <= after + 1, (before, after, stopped_at)
    assert int(store.last_metrics(run_id)["step"]) == stopped_at  # the checkpoint is at the last logged step


def test_cancel_a_queued_run(store):
    fake = FakeTrainer(step_time=0.01)
    m = make_manager(store, fake)
    running = m.submit(cfg(max_steps=100_000), name="long")
    queued = m.submit(cfg(), name="waiting")
    # claimed is not yet trained: wait until the trainer has taken a step, so "long" surely trained
    wait_for(lambda: m.active() == [running] and fake.step_now > 0, what="first run to train")
    m.stop(queued)
    assert store.get_run(queued).status == "stopped" and m.queue() == []
    assert "cancelled while queued" in [msg for _, _, msg in store.events(queued)]
    m.stop(running)
    assert m.wait(timeout=60)
    assert [c["name"] for c in fake.calls] == ["long"]  # the cancelled run never trained
    with pytest.raises(StoreError, match="already ended .stopped.*nothing to stop.*--resume"):
        m.stop(queued)  # an ended run: a message that says so, never a silent no-op


def test_resume_continues_the_same_run_and_curve(store):
    fake = FakeTrainer(step_time=0.01)
    m = make_manager(store, fake)
    run_id = m.submit(cfg(max_steps=40))
    wait_for(lambda: store.last_metrics(run_id).get("step", 0) >= 5, what="some steps")
    m.stop(run_id)
    assert m.wait(run_id, timeout=5)
    stopped_at = checkpoint_step(store.run_dir(run_id))
    assert store.get_run(run_id).status == "stopped" and 5 <= stopped_at < 40
    m.resume(run_id)
    assert m.wait(run_id, timeout=10)
    r = store.get_run(run_id)
    assert r.status == "finished" and r.ended >= r.started
    assert [(c["resume"], c["from_step"]) for c in fake.calls] == [(False, 0), (True, stopped_at)]
    assert list(store.metrics(run_id, names=["loss"]).step) == list(range(1, 41))  # no gap, no duplicate
    assert len(store.list_runs()) == 1
    with pytest.raises(ValueError, match="finished"):
        m.resume(run_id)


def test_resume_after_a_crash_drops_the_steps_past_the_checkpoint(store):
    """The crashed attempt logged steps 6..8 after its checkpoint at 5: they are trained again, once."""
    fake = FakeTrainer(fail={"crash": (8, RuntimeError("CUDA error: an illegal memory access"))}, ckpt_at=5)
    m = make_manager(store, fake)
    run_id = m.submit(cfg(max_steps=12), name="crash")
    assert m.wait(timeout=60)
    r = store.get_run(run_id)
    assert r.status == "failed" and r.checkpoint_dir and list(store.metrics(run_id).step) == list(range(1, 9))
    fake.fail.clear()
    m.resume(run_id)
    assert m.wait(timeout=60)
    assert store.get_run(run_id).status == "finished"
    assert fake.calls[-1]["from_step"] == 5
    df = store.metrics(run_id)
    assert list(df.step) == list(range(1, 13))
    assert (df[df.step > 5].wall_time > df[df.step == 5].wall_time.item()).all()  # 6..8 are the new ones
    assert "resuming from the checkpoint at step 5" in [msg for _, _, msg in store.events(run_id)]


def test_resume_without_a_checkpoint(store):
    fake = FakeTrainer(step_time=0.01, fail={"early": (1, OSError("no such file: data.csv"))})
    m = make_manager(store, fake)
    blocker = m.submit(cfg(max_steps=100_000), name="blocker")
    cancelled = m.submit(cfg(), name="cancelled")
    wait_for(lambda: m.active() == [blocker])
    m.stop(cancelled)
    m.stop(blocker)
    assert m.wait(timeout=60)
    m.resume(cancelled)  # never trained: no checkpoint, so it simply starts from step 0
    assert m.wait(timeout=60)
    assert store.get_run(cancelled).status == "finished" and fake.calls[-1]["resume"] is False
    early = m.submit(cfg(), name="early")
    assert m.wait(timeout=60)
    shutil_rm = store.run_dir(early) / "checkpoint"
    assert not shutil_rm.exists()
    with pytest.raises(ValueError, match="failed before saving a checkpoint"):
        m.resume(early)


def test_a_run_that_dies_with_its_process_is_interrupted_and_not_restarted(store, tmp_path):
    """A real other process creates a running run and dies without a word (os._exit)."""
    code = ("import os, sys\n"
            "from hft_core.config import RunConfig\n"
            "from hft_core.store import RunStore\n"
            "s = RunStore(sys.argv[1])\n"
            "rid = s.create_run(RunConfig(model='tiny:bert'), status='running')\n"
            "s.log_metrics(rid, 1, {'loss': 1.0}); s.flush(); print(rid, flush=True)\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code, str(store.home)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.split()[-1]
    assert store.get_run(run_id).status == "running"
    fake = FakeTrainer()
    m = make_manager(store, fake)
    assert m.interrupted == [run_id]
    r = store.get_run(run_id)
    assert r.status == "interrupted" and "resume" in r.error
    assert m.queue() == [] and fake.calls == []
    assert len(store.metrics(run_id)) == 1
    m.resume(run_id)
    assert m.wait(timeout=60) and store.get_run(run_id).status == "finished"


def test_stop_a_run_that_another_worker_trains(store):
    """The app's Stop reaches a run trained by another worker (another process in real life: the
    request is a row in the store, which that worker's heartbeat reads)."""
    other = RunStore(store.home, flush_interval=0.1)  # another process's own connection to the store
    fake = FakeTrainer(step_time=0.01)
    elsewhere = Worker(other, "cpu", train_fn=fake).start()
    try:
        run_id = other.create_run(cfg(max_steps=100_000), device="cpu")
        elsewhere.wake()
        wait_for(lambda: store.get_run(run_id).status == "running" and store.last_metrics(run_id).get("step", 0) > 2,
                 timeout=30, what="the other worker to train")
        m = make_manager(store, FakeTrainer())
        assert m.stop(run_id) == "requested"
        wait_for(lambda: store.get_run(run_id).status == "stopped", timeout=30, what="the run to stop")
        assert checkpoint_step(store.run_dir(run_id)) > 2
        with pytest.raises(KeyError):
            m.stop("r-000000")
    finally:
        elsewhere.close(wait=True)
        other.close()


def test_stop_a_run_whose_process_died_says_so_and_changes_nothing(store, tmp_path):
    code = ("import os, sys\n"
            "from hft_core.config import RunConfig\n"
            "from hft_core.store import RunStore\n"
            "s = RunStore(sys.argv[1])\n"
            "print(s.create_run(RunConfig(model='tiny:bert'), status='running'), flush=True)\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code, str(store.home)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    run_id = out.stdout.split()[-1]
    before = store.get_run(run_id)
    with pytest.raises(StoreError, match=r"which is gone.*--resume"):
        store.request_stop(run_id)
    assert store.get_run(run_id) == before


# ---- sweeps, validation, shutdown ------------------------------------------------------------------

def test_sweep_is_the_cartesian_product_in_one_group(store):
    fake = FakeTrainer()
    m = make_manager(store, fake)
    ids = m.submit_sweep(cfg(), {"lr": [1e-4, 3e-4], "seed": [1, 2, 3]}, group="lr-sweep")
    assert m.wait(ids, timeout=10)
    runs = [store.get_run(i) for i in ids]
    assert [r.name for r in runs] == ["lr=0.0001 seed=1", "lr=0.0001 seed=2", "lr=0.0001 seed=3",
                                      "lr=0.0003 seed=1", "lr=0.0003 seed=2", "lr=0.0003 seed=3"]
    assert [(r.cfg.lr, r.cfg.seed, r.seed) for r in runs] == [(lr, s, s) for lr in (1e-4, 3e-4) for s in (1, 2, 3)]
    assert {r.group for r in runs} == {"lr-sweep"} and store.groups() == ["lr-sweep"]
    assert [c["name"] for c in fake.calls] == [r.name for r in runs]
    auto = m.submit_sweep(cfg(), {"seed": [0, 1]})
    assert len({store.get_run(i).group for i in auto}) == 1 and store.get_run(auto[0]).group.startswith("sweep-")


def test_a_bad_sweep_queues_nothing(store):
    m = make_manager(store, FakeTrainer())
    with pytest.raises(ConfigError):
        m.submit_sweep(cfg(), {"seed": [0, 1], "lr": [1e-4, 5.0]})
    with pytest.raises(ValueError, match="non-empty list"):
        m.submit_sweep(cfg(), {"seed": []})
    with pytest.raises(ValueError, match="empty"):
        m.submit_sweep(cfg(), {})
    assert store.list_runs() == []


def test_sweep_labels_stay_unambiguous():
    assert _short_labels(["mix.blend.alpha", "seed"]) == ["alpha", "seed"]
    assert _short_labels(["mix.blend.alpha", "mix.kd.alpha"]) == ["mix.blend.alpha", "mix.kd.alpha"]


def test_submit_validates_the_config(store):
    m = make_manager(store, FakeTrainer())
    c = cfg()
    c.lr = 5.0  # set after construction, so __post_init__ never saw it
    with pytest.raises(ConfigError, match="lr"):
        m.submit(c)
    with pytest.raises(TypeError, match="RunConfig"):
        m.submit({"model": "tiny:bert"})
    assert store.list_runs() == []


def test_wait_times_out(store):
    m = make_manager(store, FakeTrainer(step_time=0.01))
    run_id = m.submit(cfg(max_steps=100_000))
    assert m.wait(run_id, timeout=0.1) is False
    m.stop(run_id)
    assert m.wait(run_id, timeout=5) is True


def test_shutdown_cancels_the_queue_and_stops_the_running(store):
    fake = FakeTrainer(step_time=0.01)
    m = RunManager(store, train_fn=fake)
    running = m.submit(cfg(max_steps=100_000))
    queued = m.submit(cfg())
    wait_for(lambda: m.active() == [running])
    m.shutdown(wait=False)
    assert store.get_run(queued).status == "stopped"
    assert m.wait(timeout=60)
    assert store.get_run(running).status == "stopped"
    with pytest.raises(RuntimeError, match="shut down"):
        m.submit(cfg())


def test_shutdown_wait_lets_runs_finish(store):
    m = RunManager(store, train_fn=FakeTrainer(step_time=0.01))
    ids = [m.submit(cfg(max_steps=5)) for _ in range(3)]
    m.shutdown(wait=True)
    assert [store.get_run(i).status for i in ids] == ["finished"] * 3


def test_the_manager_never_imports_streamlit():
    code = ("import sys, tempfile, time\n"
            "from hft_core.config import RunConfig\n"
            "from hft_core.runs import RunManager\n"
            "from hft_core.store import RunStore\n"
            "class R: status, checkpoint = 'finished', None\n"
            "m = RunManager(RunStore(tempfile.mkdtemp()), train_fn=lambda cfg, **kw: R())\n"
            "m.wait(m.submit(RunConfig(model='tiny:bert', device='cpu')), timeout=10)\n"
            "print('streamlit' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---- with the real trainer (tiny model) ----------------------------------------------------------------

def tiny_csv(folder: Path) -> Path:
    rows = [(f"the match ended with a late goal number {i}", "sport") if i % 2 else
            (f"shares fell as the bank cut rates again {i}", "business") for i in range(48)]
    path = folder / "toy.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def test_real_trainer_run_through_the_manager(store, tmp_path):
    assert _state_file == "trainer_state.pt"  # runs.STATE_FILE mirrors it
    m = make_manager(store, real_train)
    c = RunConfig(model="tiny:bert", data=str(tiny_csv(tmp_path)), batch_size=4, max_length=32, max_steps=6,
                  eval_every=3, n_eval=8, lr=1e-3, device="cpu", precision="fp32")
    ok = m.submit(c, name="tiny")
    bad = m.submit(RunConfig(model="tiny:bert", data=str(tmp_path / "missing.csv"), device="cpu"), name="bad")
    assert m.wait(timeout=120)
    r = store.get_run(ok)
    assert r.status == "finished", r.error
    assert checkpoint_step(store.run_dir(ok)) == 6 and r.checkpoint_dir
    df = store.metrics(ok)
    assert list(df[df.name == "loss"].step) == [1, 2, 3, 4, 5, 6]
    assert {"loss/task", "lr", "samples_per_s", "eval/accuracy"} <= set(df.name)
    assert any("finished" in msg for _, _, msg in store.events(ok))
    b = store.get_run(bad)
    assert b.status == "failed" and "missing.csv" in b.error and b.traceback


def test_the_app_manager_starts_warm_worker_processes_and_reads_the_data_in_the_background(tmp_path):
    """The app's RunManager trains nothing itself: its workers are processes, registered in the
    store once warm (torch, the trainer, the bundled tokenizer and data loaded); the manager's
    own warm-up only reads the default data (the Train page's data check)."""
    from hft_core import data as data_sources

    store = RunStore(tmp_path)
    mgr = RunManager(store).serve_all()
    try:
        assert mgr.processes and mgr._train_fn is None
        data_sources._bbc_articles.cache_clear()
        mgr.warm_up().join(timeout=120)
        assert data_sources._bbc_articles.cache_info().currsize == 1
        mgr.warm_up(data=("no-such-source",)).join(timeout=60)  # a bad source is only logged, never raised
        deadline = time.monotonic() + 180
        while not mgr.pool.ready("cpu"):
            assert time.monotonic() < deadline, "the cpu's worker process did not get warm"
            time.sleep(0.1)
        (pid,) = [w["pid"] for w in store.workers("cpu")]
        assert pid != os.getpid() and pid in {p for _, _, p in mgr.pool.processes()}
        # it competes for the CPU like `hft train` (bench/ui_overhead.py: nice 5 cost a MiniLM run 0.78x)
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
        log = (tmp_path / "logs" / "worker-cpu-0.log").read_text()
        assert "serves cpu" in log and "could not load" not in log, log
        assert mgr._train_fn is None, "the app process must not load the trainer to train"
    finally:
        mgr.shutdown(wait=True)
        store.close()
    assert mgr.pool.processes() == [] and store.closed