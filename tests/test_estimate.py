"""Time estimates: a probe on tiny:bert, the cache, earlier runs, and the arithmetic from the parts."""
from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

from hft_core import estimate as est
from hft_core.config import RunConfig
from hft_core.store import RunStore

TINY = RunConfig(model="tiny:bert", data="bundled:bbc-news", n_train=64, n_eval=40, max_steps=20, batch_size=8,
                 max_length=32, lr=1e-3, eval_every=10, device="cpu", precision="fp32", seed=0)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    est.forget()
    yield tmp_path
    est.forget()


def test_probe_on_tiny_bert_measures_every_part_and_is_cached(home, monkeypatch):
    probe = est.measure(TINY)
    assert probe.step_s > 0 and probe.load_s > 0 and probe.eval_s_per_example > 0 and probe.save_s > 0
    assert probe.steps_timed == est.PROBE_STEPS - 1
    assert probe.eval_pool == 425  # 20% of BBC News's 2,125 distinct articles
    assert probe.load_per_core >= 0
    assert "tiny:bert fp32 on cpu, batch 8 × 32 tokens" == probe.what
    stored = json.loads((home / "cache" / est.CACHE_FILE).read_text())
    assert stored[probe.key]["step_s"] == probe.step_s
    assert not list((home / "cache").glob("probe-*"))  # the probe's checkpoint folder is gone

    import hft_core.trainer as trainer

    def no_training(*a, **k):
        raise AssertionError("a cache hit must not train")
    monkeypatch.setattr(trainer, "train", no_training)
    assert est.measure(TINY) == probe                          # memory
    est._MEMO.clear()
    assert est.measure(TINY) == probe                          # the file in $HFT_HOME
    other_run_same_shape = dataclasses.replace(TINY, lr=5e-4, seed=3, max_steps=99, n_eval=7, eval_every=0)
    assert est.measure(other_run_same_shape) == probe          # lr, seed, steps, evals: same shape
    with pytest.raises(est.EstimateError, match="cache hit"):
        est.measure(dataclasses.replace(TINY, batch_size=4))   # another shape: measured anew


def test_estimate_adds_load_steps_evals_and_checkpoints():
    probe = est.Probe(key="k", step_s=0.5, first_step_extra_s=0.25, load_s=2.0, eval_s_per_example=0.01,
                      eval_fixed_s=1.5, save_s=0.75, eval_pool=300, steps_timed=3, measured_at=time.time(), what="")
    cfg = dataclasses.replace(TINY, max_steps=40, eval_every=10, n_eval=100, checkpoint_every=15)
    e = est.estimate_from_probe(cfg, probe)
    # evals after steps 10, 20, 30 + the final one (with its sample generations); saves at 15, 30 + final
    assert e.eval_s == pytest.approx(4 * 100 * 0.01 + 1.5)
    assert e.save_s == pytest.approx(3 * 0.75)
    assert e.load_s == pytest.approx(2.25)
    assert e.total_s == pytest.approx(2.25 + 40 * 0.5 + 5.5 + 2.25)
    assert e.line().startswith("≈ 0.5 s/step here → 40 steps ≈ 30 s")
    assert "busy" not in e.detail
    busy = est.estimate_from_probe(cfg, dataclasses.replace(probe, load_per_core=4.2))
    assert "while the CPU was busy (load 4.2 per core): measure again" in busy.detail
    everything = dataclasses.replace(cfg, n_eval=0, eval_every=0, checkpoint_every=0)
    assert est.estimate_from_probe(everything, probe).eval_s == pytest.approx(300 * 0.01 + 1.5)  # n_eval 0 = all


def test_marks_become_a_probe_with_known_answers():
    # setup at 2 s; steps of 1 s; evals of 0.5 s (the first 0.9 s: one-time costs), the final one 2 s
    marks = [(2.0, 0, "setup"), (3.5, 1, "train"), (4.4, 1, "eval"), (5.4, 2, "train"), (5.9, 2, "eval"),
             (6.9, 3, "train"), (7.4, 3, "eval"), (8.4, 4, "train"), (10.4, 4, "eval")]
    p = est._probe_from_marks("k", marks, t0=0.0, t_end=11.0, n_eval=50, pool=400, status="finished", what="")
    assert p.step_s == pytest.approx(1.0) and p.load_s == pytest.approx(2.0)
    assert p.first_step_extra_s == pytest.approx(0.5)
    assert p.eval_s_per_example == pytest.approx(0.5 / 50) and p.eval_fixed_s == pytest.approx(1.5)
    assert p.save_s == pytest.approx(0.6) and p.steps_timed == 3
    # a slow run stopped after step 2: one timed step, the warm eval of step 2, no final eval
    slow = marks[:5]
    p = est._probe_from_marks("k", slow, t0=0.0, t_end=7.0, n_eval=50, pool=400, status="stopped", what="")
    assert p.step_s == pytest.approx(1.0) and p.eval_s_per_example == pytest.approx(0.5 / 50)
    assert p.eval_fixed_s == 0.0 and p.save_s == pytest.approx(1.1) and p.steps_timed == 1


def test_estimate_from_earlier_runs_of_the_same_shape(home):
    store = RunStore(home)
    try:
        ids = []
        for seed, sps in ((0, 16.0), (1, 8.0), (2, 16.0)):   # s/step = 8 / sps: 0.5, 1.0, 0.5 -> median 0.5
            cfg = dataclasses.replace(TINY, seed=seed, max_steps=10)
            rid = store.create_run(cfg, status="running", device="cpu")
            for step in range(1, 11):
                store.log_metrics(rid, step, {"samples_per_s": sps, "loss": 1.0})
            store.flush()
            store.set_status(rid, "finished")
            ids.append(rid)
        other = store.create_run(dataclasses.replace(TINY, batch_size=4), status="running", device="cpu")
        store.log_metrics(other, 1, {"samples_per_s": 1.0})
        store.flush()
        store.set_status(other, "finished")
        recs = {r.id: r for r in store.list_runs()}
        overheads = sorted((recs[r].ended - recs[r].started) - 10 * s for r, s in zip(ids, (0.5, 1.0, 0.5)))
        e = est.estimate_from_history(dataclasses.replace(TINY, max_steps=40, lr=1e-4), store)
        assert e is not None and e.source == "history" and "3 earlier runs" in e.detail
        assert e.step_s == pytest.approx(0.5)
        assert e.total_s == pytest.approx(max(0.0, overheads[1]) + 40 * 0.5)
        assert est.estimate(dataclasses.replace(TINY, max_steps=40), store).source == "history"  # no probe cached
        assert est.estimate_from_history(dataclasses.replace(TINY, max_length=64), store) is None
    finally:
        store.close()


def wait_state(probes, cfg, until, timeout=300):
    deadline = time.time() + timeout
    while (state := probes.state(cfg))[0] not in until:
        assert time.time() < deadline, f"still {state} after {timeout} s"
        time.sleep(0.1)
    return state


def test_probes_are_jobs_measured_by_a_worker_process_and_failures_are_reported(home):
    from hft_core.runs import RunManager

    store = RunStore(home)
    manager = RunManager(store, warm=False)
    try:
        probes = est.ProbeQueue(manager)
        cfg = dataclasses.replace(TINY, batch_size=4)
        assert probes.state(cfg) == ("idle", None)
        probes.request(cfg)
        probes.request(cfg)  # a second request while the first is queued adds nothing
        assert len(store.list_runs(kind="probe")) == 1 and store.list_runs() == [], "probes are not user runs"
        status, estimate = wait_state(probes, cfg, ("ready", "failed"))
        assert status == "ready" and estimate.source == "probe" and estimate.steps == cfg.max_steps
        (job,) = store.list_runs(kind="probe")
        assert job.status == "finished" and job.pid not in (None, os.getpid()), "measured in the app's process"
        bad = dataclasses.replace(TINY, data="/no/such/file.csv")
        probes.request(bad)
        status, message = wait_state(probes, bad, ("ready", "failed"))
        assert status == "failed" and "/no/such/file.csv" in message
        probes.forget(est.shape_key(bad))
        assert probes.state(bad) == ("idle", None)
    finally:
        manager.shutdown(wait=True)
        store.close()


def test_a_probe_never_measures_beside_a_run_nor_a_run_beside_a_probe(home):
    from hft_core.runs import RunManager

    store = RunStore(home)
    manager = RunManager(store, warm=False, max_per_device=2)  # room for two at once: the probe must not take it
    holder = store.register_worker("cpu")
    try:
        training = store.create_run(dataclasses.replace(TINY, name="a run"), device="cpu")
        assert store.claim(holder, "cpu", max_running=2).run_id == training
        probes = est.ProbeQueue(manager)
        cfg = dataclasses.replace(TINY, max_length=16)
        probes.request(cfg)
        deadline = time.time() + 3
        while time.time() < deadline:   # a run trains on the device: the probe waits its turn
            assert probes.state(cfg)[0] == "queued"
            store.renew_lease(holder)
            time.sleep(0.1)
        store.set_status(training, "finished", worker=holder)
        wait_state(probes, cfg, ("measuring", "ready"))
        if probes.state(cfg)[0] == "measuring":  # while it measures, nothing else may start on the device
            other = store.create_run(dataclasses.replace(TINY, name="next"), device="cpu")
            assert store.claim(holder, "cpu", max_running=2) is None
            store.request_stop(other)
        assert wait_state(probes, cfg, ("ready", "failed"))[0] == "ready"
    finally:
        store.unregister_worker(holder)
        manager.shutdown(wait=True)
        store.close()


def test_a_probe_stops_when_asked_and_leaves_no_figure(home):
    with pytest.raises(est.ProbeCancelled, match="cancelled"):
        est.run_probe(TINY, lambda: True)
    assert est.cached_probe(TINY) is None


def test_shape_key_follows_speed_not_learning_settings():
    k = est.shape_key(TINY)
    assert k == est.shape_key(dataclasses.replace(TINY, lr=0.1, seed=5, max_steps=3, name="x", n_train=0))
    blended = est.shape_key(dataclasses.replace(TINY, mix={"blend": {"alpha": 0.5}}))
    assert blended != k  # blending loads a second (random) model: more load time
    assert blended == est.shape_key(dataclasses.replace(TINY, mix={"blend": {"alpha": 0.2}}))
    for change in ({"batch_size": 4}, {"max_length": 64}, {"model": "tiny:gpt2"}, {"grad_accum": 2},
                   {"mix": {"lora": {}}}, {"corpus_vocab": 4000}):
        assert est.shape_key(dataclasses.replace(TINY, **change)) != k, change
    assert est.shape_key(dataclasses.replace(TINY, corpus_vocab=4000)) != est.shape_key(
        dataclasses.replace(TINY, corpus_vocab=8000))   # embeddings and output layer follow the vocabulary


def test_bf16_slowdown_is_measured_once_and_cached(home):
    ratio = est.bf16_slowdown("cpu")
    assert ratio > 0
    assert est.cached_bf16_slowdown("cpu") == ratio
    est._RATIOS.clear()
    assert est.cached_bf16_slowdown("cpu") == pytest.approx(ratio)  # from the file


def test_words():
    assert [est.format_seconds(s) for s in (0.4, 36, 150, 5400)] == ["0.4 s", "36 s", "2.5 min", "1.5 h"]
    assert [est.format_step(s) for s in (0.05, 0.9, 12.0)] == ["50 ms", "0.9 s", "12 s"]
