"""Groups scheduled for the CPU (hft_core/schedule.py): the measured choice of P runs x T threads,
the cores as a budget in the claim, each run trained with the threads it claimed, the group's
estimate, and the measurement queued ahead of a group that needs it.

The claim tests give the store a budget of 2 cores and a schedule written to the cache, so they
hold on any machine (a test process here is pinned to one core)."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch

from hft_core import estimate, schedule
from hft_core.config import RunConfig
from hft_core.runs import Worker, runs_per_device
from hft_core.store import RunStore
from hft_core.worker import cpu_budget, lone_run_threads

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.delenv("HFT_RUNS_PER_DEVICE", raising=False)
    schedule._MEMO.clear()
    estimate._MEMO.clear()
    yield tmp_path
    schedule._MEMO.clear()
    estimate._MEMO.clear()


def cfg(**kw) -> RunConfig:
    base = {"model": "tiny:bert", "data": "bundled:bbc-news", "max_steps": 3, "batch_size": 8, "max_length": 32,
            "n_train": 32, "n_eval": 16, "eval_every": 0, "device": "cpu"}
    return RunConfig.from_dict({**base, **kw})


def cache_schedule(c: RunConfig, runs: int, threads: int, cores: int = 2, rates: dict | None = None) -> None:
    """Write a measured schedule for ``c``'s shape on ``cores`` cores, as ``measure`` would."""
    rates = rates or {f"1x{cores}": 10.0, f"{runs}x{threads}": 13.0}
    s = schedule.Schedule(schedule.schedule_key(c, cores), runs, threads, cores, rates, time.time(), "test")
    schedule._write_cache(s.key, dataclasses.asdict(s))
    schedule._MEMO.clear()


# ---- the options and the mode -------------------------------------------------------------------

def test_options_split_the_cores_exactly():
    assert schedule.options(1) == [(1, 1)]
    assert schedule.options(2) == [(1, 2), (2, 1)]
    assert schedule.options(4) == [(1, 4), (2, 2), (4, 1)]
    assert schedule.options(6) == [(1, 6), (2, 3), (3, 2)]  # at most MAX_SIDE_BY_SIDE, P x T = cores
    for cores in range(1, 17):
        assert all(p * t == cores and p <= schedule.MAX_SIDE_BY_SIDE for p, t in schedule.options(cores))


def test_runs_per_device_auto_is_one_worker_per_core_on_a_cpu_and_one_per_gpu(home, monkeypatch):
    monkeypatch.setattr("hft_core.worker.cpu_cores", lambda: 2)
    assert runs_per_device("cpu") == 2 and cpu_budget("cpu") == 2 and lone_run_threads("cpu") == 2
    assert runs_per_device("cuda:0") == 1 and cpu_budget("cuda:0") == 0
    monkeypatch.setattr("hft_core.worker.cpu_cores", lambda: 16)
    assert runs_per_device("cpu") == schedule.MAX_SIDE_BY_SIDE
    monkeypatch.setenv("HFT_RUNS_PER_DEVICE", "3")
    assert runs_per_device("cpu") == 3 and cpu_budget("cpu") == 0
    monkeypatch.setenv("HFT_RUNS_PER_DEVICE", "two")
    with pytest.raises(ValueError, match="whole number of at least 1, or auto"):
        runs_per_device("cpu")


def test_group_wall_takes_runs_in_queue_order_on_free_lanes():
    assert schedule.group_wall([1, 1, 1, 1], 2) == 2
    assert schedule.group_wall([3, 1, 1, 1], 2) == 3     # lane A: 3; lane B: 1+1+1
    assert schedule.group_wall([1, 3, 1], 2) == 3        # A: 1 then 1; B: 3
    assert schedule.group_wall([2, 2, 2], 1) == 6
    assert schedule.group_wall([], 2) == 0


# ---- the claim: the cores as a budget -------------------------------------------------------------

def _claims(store, budget=2):
    a = store.register_worker("cpu")
    b = store.register_worker("cpu")
    return a, b, lambda w: store.claim(w, "cpu", max_running=4, budget=budget)


def test_a_group_of_a_measured_shape_trains_side_by_side_with_its_threads(home):
    c = cfg()
    cache_schedule(c, runs=2, threads=1)
    with RunStore(home) as store:
        ids = [store.create_run(c, status="queued", device="cpu", group="g", name=f"r{i}") for i in range(3)]
        a, b, claim = _claims(store)
        first, second = claim(a), claim(b)
        assert (first.run_id, first.threads) == (ids[0], 1)
        assert (second.run_id, second.threads) == (ids[1], 1)
        assert claim(a) is None                       # 1 + 1 of 2 cores held: the third waits
        store.set_status(ids[0], "finished", worker=a)
        third = claim(a)
        assert (third.run_id, third.threads) == (ids[2], 1)


def test_an_unmeasured_shape_or_a_lone_run_takes_every_core(home):
    c = cfg()
    with RunStore(home) as store:
        g = [store.create_run(c, status="queued", device="cpu", group="g", name=f"r{i}") for i in range(2)]
        a, b, claim = _claims(store)
        assert claim(a).threads == 2                  # no schedule cached for its shape: all cores
        assert claim(b) is None
        store.set_status(g[0], "finished", worker=a)
        cache_schedule(c, runs=2, threads=1)
        lone = store.create_run(c, status="queued", device="cpu", group="", name="alone")
        assert claim(a).run_id == g[1]                # a group run: its shape's 1 thread
        assert claim(b) is None                       # the lone run needs 2 cores; 1 is held; nobody passes it
        store.set_status(g[1], "finished", worker=a)
        got = claim(b)
        assert (got.run_id, got.threads) == (lone, 2)


def test_a_queued_run_that_does_not_fit_is_not_passed_by_a_smaller_one(home):
    small, big = cfg(), cfg(max_length=64)
    cache_schedule(small, runs=2, threads=1)          # big's shape is unmeasured: 2 cores
    with RunStore(home) as store:
        s1 = store.create_run(small, status="queued", device="cpu", group="g", name="s1")
        store.create_run(big, status="queued", device="cpu", group="g", name="big")
        store.create_run(small, status="queued", device="cpu", group="g", name="s2")
        a, b, claim = _claims(store)
        assert claim(a).run_id == s1
        assert claim(b) is None                       # big waits for 2 free cores; s2 stays behind it (FIFO)


def test_a_probe_takes_the_whole_cpu(home):
    c = cfg()
    cache_schedule(c, runs=2, threads=1)
    with RunStore(home) as store:
        g = store.create_run(c, status="queued", device="cpu", group="g", name="r0")
        store.create_run(c, status="queued", device="cpu", group="g", name="r1")
        a, b, claim = _claims(store)
        assert claim(a).run_id == g
        from hft_core import jobs

        jobs.submit_job(store, "probe", {"key": "k", "what": "schedule", "cfg": c.to_dict()})
        got = claim(b)
        assert got.run_id != g and got.kind == "train"  # r1 fits beside r0 (the probe queued after it)
        store.set_status(g, "finished", worker=a)
        store.set_status(got.run_id, "finished", worker=b)
        probe = claim(a)
        assert probe.kind == "probe" and probe.threads == 2


def test_a_worker_trains_each_run_with_the_threads_it_claimed_and_restores_its_own(home):
    c = cfg()
    cache_schedule(c, runs=2, threads=1)
    seen: dict[str, int] = {}

    def train_fn(cfg, sink=None, stop=None, out_dir=None, resume=False):
        seen[cfg.name] = torch.get_num_threads()

    torch.set_num_threads(1)
    with RunStore(home) as store:
        store.create_run(dataclasses.replace(c, name="grouped"), status="queued", device="cpu", group="g",
                         name="grouped")
        store.create_run(dataclasses.replace(c, name="other"), status="queued", device="cpu", group="g",
                         name="other")
        store.create_run(dataclasses.replace(c, name="alone"), status="queued", device="cpu", group="",
                         name="alone")
        w = Worker(store, "cpu", train_fn=train_fn, role="general", budget=2)
        try:
            t = threading.Thread(target=w.serve_forever, kwargs={"idle_poll": 0.05}, daemon=True)
            t.start()
            deadline = time.time() + 60
            while len(seen) < 3 and time.time() < deadline:
                time.sleep(0.05)
        finally:
            w.close(wait=False)
        events = [m for r in store.list_runs() for _, _, m in store.events(r.id) if m.startswith("trained in pid")]
    assert seen == {"grouped": 1, "other": 1, "alone": 2}
    assert torch.get_num_threads() == 1               # the worker's own count is back
    assert sorted(e.split(" with ")[1].split(" torch")[0] for e in events) == ["1", "1", "2"]


# ---- the measurement ---------------------------------------------------------------------------------

def test_measure_times_every_option_and_chooses_by_the_rule(home):
    c = cfg(batch_size=4, max_length=16)
    sched = schedule.measure(c, cores=2)
    assert set(sched.rates) == {"1x2", "2x1"} and all(v > 0 for v in sched.rates.values())
    best = max(sched.rates, key=sched.rates.get)
    expected = best if sched.rates[best] >= schedule.MIN_GAIN * sched.rates["1x2"] else "1x2"
    assert f"{sched.runs}x{sched.threads}" == expected
    assert schedule.cached(c, 2) == sched and schedule.threads_for(c, 2) == sched.threads
    schedule._MEMO.clear()
    assert schedule.cached(c, 2) == sched             # from $HFT_HOME/cache/schedules.json
    assert schedule.cached(dataclasses.replace(c, max_length=17), 2) is None  # another shape
    assert "measured" in sched.line()


def test_a_learnt_vocabulary_is_its_own_shape_and_the_measuring_step_has_its_size(home, monkeypatch):
    import io

    from hft_core import models

    c = cfg(model="tiny:bert-small", corpus_vocab=4000)
    assert schedule.schedule_key(c, 2) != schedule.schedule_key(cfg(model="tiny:bert-small"), 2)
    assert schedule.schedule_key(c, 2) != schedule.schedule_key(dataclasses.replace(c, corpus_vocab=8000), 2)
    built = []
    load = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **kw: built.append(load(*a, **kw)) or built[-1])
    monkeypatch.setattr("sys.stdin", io.StringIO("quit\n"))
    schedule._child(c)   # the measuring process's body: one step of the run's shape, then its commands
    assert built[0].get_input_embeddings().weight.shape[0] == 4000   # not the bundled 30,522 words


def test_a_model_that_does_not_load_fails_the_measurement_saying_why(home):
    with pytest.raises(Exception, match="no-such-model|not found|does not exist|cannot"):
        schedule.measure(cfg(model="/no-such-model"), cores=2)


# ---- the measurement queued ahead of a group -------------------------------------------------------

def test_a_group_of_an_unmeasured_shape_queues_one_measurement_ahead(home, monkeypatch):
    monkeypatch.setattr("hft_core.placement.cpu_cores", lambda: 2)
    c = cfg()
    with RunStore(home) as store:
        assert schedule.queue_measurements(store, [c]) == []              # one run: nothing to share
        ids = schedule.queue_measurements(store, [c, dataclasses.replace(c, lr=1e-3)])
        assert len(ids) == 1 and store.get_run(ids[0]).kind == "probe"
        assert store.get_run(ids[0]).job["what"] == "schedule"
        assert schedule.queue_measurements(store, [c, c]) == []           # already queued
        cache_schedule(c, runs=2, threads=1)
        other = dataclasses.replace(c, max_length=64)
        assert len(schedule.queue_measurements(store, [c, c, other, other])) == 1  # only the new shape
        monkeypatch.setenv("HFT_RUNS_PER_DEVICE", "1")
        assert schedule.needs_measure([other, other]) == []               # a number set: no schedule


def test_the_schedule_probe_job_measures_and_caches(home, monkeypatch):
    from hft_core import jobs
    from hft_core.sinks import MemorySink

    c = cfg(batch_size=4, max_length=16)
    monkeypatch.setattr("hft_core.placement.cpu_cores", lambda: 2)
    with RunStore(home) as store:
        run_id = jobs.submit_job(store, "probe", {"key": schedule.schedule_key(c), "what": "schedule",
                                                  "cfg": c.to_dict()})
        sink = MemorySink()
        status = jobs.run_job(store, store.get_run(run_id), sink, threading.Event())
    assert status == "finished"
    assert schedule.cached(c) is not None
    assert any("schedule of tiny:bert" in m for _, m in sink.events)


# ---- the group's estimate ---------------------------------------------------------------------------

def test_group_estimate_is_each_runs_time_times_the_schedules_factor_on_its_lanes(home, monkeypatch):
    monkeypatch.setattr("hft_core.placement.cpu_cores", lambda: 2)
    c = cfg(max_steps=100)
    probe = estimate.Probe(key=estimate.shape_key(c), step_s=0.5, first_step_extra_s=0.0, load_s=2.0,
                           eval_s_per_example=0.0, eval_fixed_s=0.0, save_s=0.0, eval_pool=16, steps_timed=3,
                           measured_at=time.time(), what="test")
    estimate._write_cache(probe.key, dataclasses.asdict(probe))
    alone = estimate.estimate(c).total_s
    cfgs = [dataclasses.replace(c, seed=s) for s in range(4)]
    before = schedule.group_estimate(cfgs)
    assert before.lanes == 1 and before.measure_s > 0                      # measured first, then shared
    assert before.total_s == pytest.approx(4 * alone + before.measure_s)
    cache_schedule(c, runs=2, threads=1, rates={"1x2": 10.0, "2x1": 12.5})  # 1.25x: a run takes 2/1.25 = 1.6x
    est = schedule.group_estimate(cfgs)
    assert (est.lanes, est.threads, est.measure_s) == (2, 1, 0)
    assert est.total_s == pytest.approx(2 * alone * 1.6)
    assert est.one_by_one_s == pytest.approx(4 * alone)
    assert "2 side by side" in est.line()
    assert schedule.group_estimate([dataclasses.replace(c, model="tiny:gpt2", task="causal-lm")] * 2) is None


def test_a_run_with_one_thread_ends_where_it_ends_with_two(home):
    """A group run trains with its shape's thread count, a lone run with every core: their final
    metrics agree within 1e-3 (the issue's bound), and each run's log says its count."""
    from hft_core.sinks import MemorySink
    from hft_core.trainer import train

    c = cfg(max_steps=30, max_length=64, n_train=64, n_eval=32, lr=1e-3)
    before = torch.get_num_threads()
    finals = {}
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            finals[t] = train(c, MemorySink()).metrics
    finally:
        torch.set_num_threads(before)
    for name in ("eval/loss", "eval/accuracy"):
        assert abs(finals[1][name] - finals[2][name]) <= 1e-3, (name, finals)


def test_a_foreground_worker_trains_its_group_runs_one_after_another_with_every_core(home):
    """`hft preset` and `hft train` train their reserved runs themselves, one at a time: all cores."""
    c = cfg()
    cache_schedule(c, runs=2, threads=1)
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with RunStore(home) as store:
            w = Worker(store, "cpu", role="foreground", budget=2,
                       train_fn=lambda *a, **k: seen.append(torch.get_num_threads()))
            try:
                ids = [w.reserve(c, group="g", name=f"r{i}") for i in range(2)]
                outcomes = w.work_on(ids)
            finally:
                w.close(wait=False)
    finally:
        torch.set_num_threads(before)
    assert [o.status for o in outcomes.values()] == ["finished", "finished"]
    assert seen == [2, 2]


def test_the_last_run_of_a_group_takes_the_cores_that_fell_free(home):
    c = cfg()
    cache_schedule(c, runs=2, threads=1)
    with RunStore(home) as store:
        r0, r1 = (store.create_run(c, status="queued", device="cpu", group="g", name=f"r{i}") for i in range(2))
        a, b, claim = _claims(store)
        claim(a), claim(b)
        assert store.widen(r0, a, "cpu", 2) == 0          # both cores held
        store.set_status(r1, "finished", worker=b)
        late = store.create_run(c, status="queued", device="cpu", group="", name="late")
        assert store.widen(r0, a, "cpu", 2) == 0          # a run waits for the free core: it gets it
        store.delete_run(late)
        assert store.widen(r0, b, "cpu", 2) == 0          # not b's run
        assert store.widen(r0, a, "cpu", 2) == 2
        assert any("trains on with 2 torch threads" in m for _, _, m in store.events(r0))
        store.create_run(c, status="queued", device="cpu", group="", name="next")
        assert claim(b) is None                           # r0 holds both cores now


def test_the_trainer_applies_a_wider_thread_count_between_steps(home):
    from hft_core.sinks import MemorySink
    from hft_core.trainer import train
    from hft_core.worker import StopFlag

    flag = StopFlag()
    flag.threads = 2
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(cfg(max_steps=2), MemorySink(), flag)
        assert torch.get_num_threads() == 2 and result.status == "finished"
    finally:
        torch.set_num_threads(before)
