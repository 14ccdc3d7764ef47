"""Search: Optuna studies whose trials are runs in the store (hft_core/search.py).

A real 6-trial TPE study on tiny:bert with a median pruner (some trials pruned, continued with
3 more through the CLI), bad search spaces refused before anything runs, and the driver's
bookkeeping (user stops, failures, a stopped study, trials left by a dead driver, grid
capping) with a fake trainer that logs like the real one.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml

from hft_core import cli
from hft_core import search as S
from hft_core.store import RunStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("HFT_HOME", str(h))
    monkeypatch.setenv("HFT_OFFLINE", "1")
    return h


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory):
    """Two word sets that a tiny BERT separates within ~15 steps at a good learning rate, never at a bad one."""
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    rows = []
    for i in range(60):
        rows.append((f"the striker scored a late goal in match {i}", "sport"))
        rows.append((f"the bank raised interest rates as shares fell {i}", "business"))
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def tiny_base(toy_csv: str, **kw) -> dict:
    return {"model": "tiny:bert", "data": toy_csv, "batch_size": 8, "max_length": 32, "max_steps": 40,
            "eval_every": 5, "n_eval": 24, "device": "cpu", "precision": "fp32", "checkpoint_every": 0, "seed": 0,
            **kw}


def wait_until(predicate, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# ---- a real study: TPE + median pruner on tiny:bert, continued from the CLI --------------------------

class Lockstep:
    """The trainer waits after each eval until the driver has read it and, when the driver asked
    the run to stop (pruned), until the stop has reached the trainer.

    A tiny model trains 40 steps in a fraction of the driver's poll on a fast machine, so without
    this whether a bad trial is seen before it ends is a race. In lockstep the study sees every
    eval of every run, as it does with a model whose evals are seconds apart.
    """

    def __init__(self, store: RunStore, monkeypatch, metric: str = "eval/accuracy") -> None:
        self.store, self.metric, self.cond, self.seen = store, metric, threading.Condition(), set()
        watch = S._Driver._watch

        def watched(driver, live):
            watch(driver, live)
            with self.cond:
                self.seen.add((live.run_id, live.last_step))
                self.cond.notify_all()

        monkeypatch.setattr(S._Driver, "_watch", watched)
        monkeypatch.setattr(S, "POLL_S", 0.1)

    def train(self, cfg, sink, stop, out_dir, resume=False):
        from hft_core.trainer import train

        run_id, gate = Path(out_dir).name, self

        class Gated:
            def log(self, step, values):
                sink.log(step, values)
                if gate.metric in values:
                    gate.store.flush()
                    with gate.cond:
                        assert gate.cond.wait_for(lambda: (run_id, step) in gate.seen or stop.is_set(), 60), \
                            f"the driver never read step {step} of {run_id}"
                    if gate.store.pending_stops([run_id]):
                        assert stop.wait(30), f"the stop request of {run_id} never reached its trainer"

            def __getattr__(self, name):
                return getattr(sink, name)

        return train(cfg, sink=Gated(), stop=stop, out_dir=out_dir, resume=resume)


def test_tpe_study_with_median_pruner_prunes_and_continues(home, toy_csv, tmp_path):
    # lr spans 1e-5 .. 1e-1: the tiny model learns the toy task only around 1e-3 .. 1e-2, so a
    # good share of the trials are clearly worse than the median at the same eval and get pruned.
    doc = {"name": "tiny-lr", "base": tiny_base(toy_csv), "space": {"lr": {"log_uniform": [1.0e-5, 1.0e-1]}},
           "sampler": {"name": "tpe", "n_startup_trials": 3}, "pruner": {"name": "median", "n_startup_trials": 2},
           "seed": 0, "trials": 6}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec = S.load_search(path)
    assert (spec.metric, spec.direction) == ("eval/accuracy", "maximize")  # the classification default
    ended = []
    store = RunStore(home)
    with pytest.MonkeyPatch.context() as mp:  # the CLI below runs the driver as it is
        launcher = S.LocalLauncher(store, "cpu", train_fn=Lockstep(store, mp).train)
        try:
            result = S.run_search(spec, on_trial=ended.append, store=store, launcher=launcher)
        finally:
            launcher.close()
    runs = store.list_runs(group="tiny-lr")
    assert len(runs) == 6 and len(result.trials) == 6 and [t.number for t in ended] == sorted(t.number for t in ended)
    by_run = {t.run_id: t for t in result.trials}
    assert set(by_run) == {r.id for r in runs}       # one run per trial, its id on the trial
    for r in runs:
        trial = by_run[r.id]
        assert r.config["lr"] == pytest.approx(trial.params["lr"])   # the trial's parameters are in its config
        assert {"finished": "COMPLETE", "pruned": "PRUNED"}[r.status] == trial.state, (r.status, r.error)
    pruned = [r for r in runs if r.status == "pruned"]
    assert pruned, [(t.params, t.state, t.value) for t in result.trials]
    for r in pruned:
        trial = by_run[r.id]
        assert "median pruner" in trial.reason and "median pruner" in r.stop_reason
        steps = store.metrics(r.id, names=["loss"])["step"]
        assert 0 < steps.max() < 40                  # stopped early, metrics kept
        assert (store.run_dir(r.id) / "checkpoint" / "trainer_state.pt").is_file()
        values = store.metrics(r.id, names=["eval/accuracy"])
        assert trial.value == pytest.approx(values.sort_values("step")["value"].iloc[-1])
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert result.best.value == max(t.value for t in complete) and result.best.value == 1.0
    assert result.steps_trained() < 6 * 40
    store.close()

    # the same study, 3 more trials, from the command line: the study is found by name and continues
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "hft_core", "search", "--config", str(path), "--trials", "3"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    trial_lines = [line for line in out.stdout.splitlines() if line.startswith("trial ")]
    assert [line.split()[1] for line in trial_lines] == ["6", "7", "8"]
    assert "3 trial(s) now" in out.stdout and "9 in the study" in out.stdout
    best = [line for line in out.stdout.splitlines() if line.startswith("best: trial")]
    assert best and "eval/accuracy = 1.0000" in best[0]
    assert "  lr = " in out.stdout
    store = RunStore(home)
    assert len(store.list_runs(group="tiny-lr")) == 9
    assert len(S.load_study("tiny-lr", home=home).trials) == 9
    store.close()


# ---- bad input: one line, before anything runs ------------------------------------------------------

BAD = [
    ({"mix.blend.alpah": {"uniform": [0, 1]}}, {}, "mix.blend.alpah: unknown field (did you mean 'mix.blend.alpha'?)"),
    ({"lr": {"log_uniform": [1.0e-3, 1.0e-3]}}, {}, "lr: the range [0.001, 0.001] is empty or inverted"),
    ({"lr": {"uniform": [0.1, 0.01]}}, {}, "lr: the range [0.1, 0.01] is empty or inverted"),
    ({"mix.blend.alpha": {"choice": [0.5, "half"]}}, {}, "mix.blend.alpha: the choice 'half' is not a number"),
    ({"mix.lora.r": {"choice": [4, 8.5]}}, {}, "mix.lora.r: the choice 8.5 is not a whole number"),
    ({"lr": {"log_uniform": [0, 1.0e-3]}}, {}, "lr: a log_uniform range needs low > 0"),
    ({"mix.blend.alpha": {"uniform": [0, 2]}}, {}, "mix.blend.alpha: 2.0 (the range's high end) is not a valid value"),
    ({"lr": {"log_uniform": [1.0e-5, 1.0e-3]}}, {"sampler": "bayes"}, "unknown sampler 'bayes'"),
    ({"lr": {"log_uniform": [1.0e-5, 1.0e-3]}}, {"pruner": "asha"}, "unknown pruner 'asha'"),
    ({"lr": {"log_uniform": [1.0e-5, 1.0e-3]}}, {"sampler": "grid"}, "sampler grid cannot enumerate the continuous "
                                                                       "range of lr"),
    ({"lr": {"log_uniform": [1.0e-5, 1.0e-3]}}, {"pruner": "median", "base_eval_every": 0},
     "pruner median compares trials at their evaluations"),
]


@pytest.mark.parametrize("space, extra, message", BAD, ids=[b[2].split(":")[0][:30] for b in BAD])
def test_a_bad_search_file_is_one_line_before_anything_runs(home, toy_csv, tmp_path, capsys, space, extra, message):
    base = tiny_base(toy_csv)
    if "base_eval_every" in extra:
        base["eval_every"] = extra.pop("base_eval_every")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "base": base, "space": space, **extra}))
    assert cli.main(["search", "--config", str(path), "--trials", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (home / "studies.sqlite").exists()             # no study was created
    if (home / "runs.sqlite").exists():
        assert RunStore(home).list_runs() == []                # and no run queued


def test_yaml_numbers_without_a_dot_and_strategy_fields_parse(toy_csv):
    # YAML 1.1 reads 1e-5 as a string; a strategy field switches its strategy on
    spec = S.parse_search({"base": tiny_base(toy_csv), "space": {"lr": {"log_uniform": ["1e-5", "1e-3"]},
                                                                 "mix.l2sp.beta": {"choice": [0, 0.01, 0.1]},
                                                                 "mix.lora.r": {"int": [4, 16], "step": 4}}},
                          name="ok")
    assert [d.describe() for d in spec.space] == ["lr log_uniform [1e-05, 0.001]", "mix.l2sp.beta in [0, 0.01, 0.1]",
                                                  "mix.lora.r int [4, 16] step 4"]
    cfg = spec.config_for({"lr": 3e-4, "mix.l2sp.beta": 0.1, "mix.lora.r": 8}, name="t")
    assert cfg.lr == 3e-4 and cfg.mix["l2sp"].beta == 0.1 and cfg.mix["lora"].r == 8 and cfg.group == "ok"
    with pytest.raises(S.SearchError, match=r"step=0: use a whole number"):
        S.parse_search({"base": tiny_base(toy_csv), "space": {"mix.lora.r": {"int": [4, 16], "step": 0}}}, name="x")
    with pytest.raises(S.SearchError, match=r"objective.metric 'eval/acc' is not logged by classification runs"):
        S.parse_search({"base": tiny_base(toy_csv), "space": {"lr": {"uniform": [1e-4, 1e-3]}},
                        "objective": {"metric": "eval/acc"}}, name="x")
    lm = S.parse_search({"base": tiny_base(toy_csv, model="tiny:gpt2", task="causal-lm", data="bundled:qa"),
                         "space": {"lr": {"uniform": [1e-4, 1e-3]}}}, name="lm")
    assert (lm.metric, lm.direction) == ("eval/loss", "minimize")


def test_import_pulls_in_neither_optuna_nor_ray():
    code = ("import sys\nimport hft_core.search, hft_core.cli\nhft_core.cli.build_parser()\n"
            "print(sorted(m for m in ('ray', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---- the driver's bookkeeping, with a fake trainer --------------------------------------------------

def fake_train(cfg, sink=None, stop=None, out_dir=None, resume=False):
    """Logs like the trainer: loss every step, eval/accuracy every eval_every steps; accuracy grows
    with lr (so the sampler and pruner see a clear signal); fails for lr above 0.5; honours stop."""
    stop = stop or threading.Event()
    if cfg.lr > 0.5:
        raise ValueError(f"diverged at lr {cfg.lr}")
    step = 0
    while step < cfg.max_steps:
        if stop.is_set():
            return SimpleNamespace(status="stopped", checkpoint=None)
        step += 1
        sink.log(step, {"loss": 1.0 / step})
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            sink.log(step, {"eval/accuracy": min(1.0, cfg.lr * 2) * step / cfg.max_steps})
        stop.wait(float(os.environ.get("FAKE_STEP_S", "0.01")))  # the work of a step
    return SimpleNamespace(status="finished", checkpoint=None)


def fake_spec(name: str = "fake", **kw) -> S.SearchSpec:
    base = {"model": "tiny:bert", "data": "bundled:bbc-news", "max_steps": 20, "eval_every": 5, "device": "cpu"}
    doc = {"base": base, "space": {"lr": {"uniform": [0.01, 0.45]}}, "sampler": "random", **kw}
    return S.parse_search(doc, name=name)


def test_a_user_stop_fails_its_trial_and_the_study_goes_on(home):
    """A user stops the first trial while it trains (Stop on Live: a stop request in the store). In
    lockstep, not a race: the first trial trains a step, then waits for the stop (as a long run would
    still be training); the user asks for it once that step is trained."""
    store = RunStore(home)
    spec = fake_spec("user-stop")
    ended = []
    first: dict = {}                 # the first trial's run id, once it has trained a step
    trained = threading.Event()
    errors: list[BaseException] = []

    def on_trial(info):
        ended.append(info)

    def train_fn(cfg, sink=None, stop=None, out_dir=None, resume=False):
        if first:  # the other trials: the fake trainer as it is
            return fake_train(cfg, sink=sink, stop=stop, out_dir=out_dir, resume=resume)
        first["run_id"] = Path(out_dir).name
        sink.log(1, {"loss": 1.0})
        trained.set()
        assert stop.wait(60), "the user's stop request never reached the first trial's trainer"
        return SimpleNamespace(status="stopped", checkpoint=None)

    def user_stops_the_first_trial():
        try:
            assert trained.wait(60), "the first trial never trained a step"
            assert store.get_run(first["run_id"]).status == "running"
            assert store.request_stop(first["run_id"], "Stop on Live") == "requested"
        except BaseException as e:  # raised in the main thread below
            errors.append(e)

    user = threading.Thread(target=user_stops_the_first_trial)
    user.start()
    result = S.run_search(spec, trials=3, store=store, train_fn=train_fn, on_trial=on_trial)
    user.join(timeout=60)
    assert not user.is_alive() and not errors, errors
    stopped = first["run_id"]
    states = {i.run_id: i for i in result.trials}
    assert states[stopped].state == "FAIL" and "stopped by a user while training (Stop on Live)" in \
        states[stopped].reason
    assert [i.state for i in result.trials].count("COMPLETE") == 2 and len(ended) == 3
    assert store.get_run(stopped).status == "stopped"   # the run itself is stopped, resumable
    store.close()


def test_a_failed_run_fails_its_trial_with_the_error(home):
    store = RunStore(home)
    spec = S.parse_search({"base": {"model": "tiny:bert", "max_steps": 10, "eval_every": 5, "device": "cpu"},
                           "space": {"lr": {"choice": [0.2, 0.9]}}, "sampler": "grid"}, name="fails")
    result = S.run_search(spec, trials=2, store=store, train_fn=fake_train)
    by_lr = {t.params["lr"]: t for t in result.trials}
    assert by_lr[0.2].state == "COMPLETE" and by_lr[0.9].state == "FAIL"
    assert "ValueError: diverged at lr 0.9" in by_lr[0.9].reason and by_lr[0.9].status == "failed"
    store.close()


def test_stopping_the_study_stops_its_running_trials_and_asks_no_more(home, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    store = RunStore(home)
    spec = fake_spec("stop-all")
    holder = {}

    def drive():
        holder["result"] = S.run_search(spec, trials=10, parallel=2, store=store, train_fn=fake_train)

    t = threading.Thread(target=drive)
    t.start()
    wait_until(lambda: store.list_runs(group="stop-all", status="running"), what="a running trial")
    assert S.study_driver("stop-all", home=home)["pid"] == os.getpid()
    assert S.request_study_stop("stop-all", home=home)      # as another process would: a flag on the study
    t.join(timeout=120)
    assert not t.is_alive()
    result = holder["result"]
    assert result.stopped and len(result.trials) < 10
    assert any(i.state == "FAIL" and i.reason.startswith("stopped with the study") for i in result.trials)
    assert all(r.status in ("finished", "stopped") for r in store.list_runs(group="stop-all"))
    assert S.study_driver("stop-all", home=home) is None     # released: the study can be continued
    assert not S.request_study_stop("stop-all", home=home)
    store.close()


def test_trials_left_running_by_a_dead_driver_are_settled_at_the_next_start(home):
    store = RunStore(home)
    spec = fake_spec("orphans")
    study = S._open_study(spec, S.open_storage(home))
    cfg = spec.config_for({"lr": 0.2}, name="t")
    finished = store.create_run(cfg, status="running", group="orphans")
    store.log_metrics(finished, 20, {"eval/accuracy": 0.4, "loss": 0.1})
    store.set_status(finished, "finished")
    lost = store.create_run(cfg, status="interrupted", group="orphans")
    for run_id in (finished, lost):
        trial = study.ask()
        trial.suggest_float("lr", 0.01, 0.45)
        trial.set_user_attr("run_id", run_id)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60)
    study.set_user_attr("hft_driver", {"pid": int(dead.stdout), "host": socket.gethostname(), "start": None,
                                       "thread": 1, "beat": time.time()})
    notes = []
    result = S.run_search(spec, trials=1, store=store, train_fn=fake_train, on_start=lambda r: notes.extend(r.notes))
    first, second, new = result.trials
    assert first.state == "COMPLETE" and first.value == 0.4            # its run finished: counted
    assert second.state == "FAIL" and lost in second.reason and "interrupted" in second.reason
    assert new.state == "COMPLETE" and result.new == [2]
    assert any(lost in n and "marked FAIL" in n for n in notes)
    store.close()


def test_a_live_driver_owns_its_study_and_a_changed_space_is_refused(home, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    store = RunStore(home)
    spec = fake_spec("owned")
    t = threading.Thread(target=S.run_search, args=(spec,), kwargs={"trials": 2, "store": store,
                                                                    "train_fn": fake_train})
    t.start()
    wait_until(lambda: store.list_runs(group="owned"), what="the first trial")
    with pytest.raises(S.StudyBusy, match="is being run by pid"):
        S.run_search(spec, trials=1, store=store, train_fn=fake_train)
    t.join(timeout=120)
    other = S.parse_search({"base": {"model": "tiny:bert", "max_steps": 20, "eval_every": 5, "device": "cpu"},
                            "space": {"lr": {"uniform": [0.01, 0.3]}}}, name="owned")
    with pytest.raises(S.SearchError, match="already exists with another search space"):
        S.run_search(other, trials=1, store=store, train_fn=fake_train)
    store.close()


def test_grid_visits_each_point_once_and_stops_at_the_grid_size(home):
    store = RunStore(home)
    spec = S.parse_search({"base": {"model": "tiny:bert", "max_steps": 10, "eval_every": 5, "device": "cpu"},
                           "space": {"lr": {"choice": [0.1, 0.2]}, "batch_size": {"int": [4, 8], "step": 4}},
                           "sampler": "grid"}, name="grid")
    notes = []
    result = S.run_search(spec, trials=10, store=store, train_fn=fake_train, on_start=lambda r: notes.extend(r.notes))
    assert sorted((t.params["lr"], t.params["batch_size"]) for t in result.trials) == \
        [(0.1, 4), (0.1, 8), (0.2, 4), (0.2, 8)]
    assert any("the grid has 4 points" in n for n in notes)
    assert {r.config["batch_size"] for r in store.list_runs(group="grid")} == {4, 8}
    again = S.run_search(spec, trials=3, store=store, train_fn=fake_train)
    assert len(again.trials) == 4 and again.new == []     # nothing left to try
    store.close()


def test_pruners_and_samplers_are_optunas(toy_csv):
    spec = S.parse_search({"base": tiny_base(toy_csv), "space": {"lr": {"log_uniform": [1e-5, 1e-2]}},
                           "sampler": {"name": "tpe", "n_startup_trials": 4}, "pruner": "hyperband", "seed": 3},
                          name="x")
    pruner, sampler = S.make_pruner(spec), S.make_sampler(spec)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner) and pruner._min_resource == 5 \
        and pruner._max_resource == 40   # the resource is the training step: first eval .. max_steps
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 4
    with pytest.raises(S.SearchError, match=r"sampler tpe: unknown option\(s\) \['n_start'\]"):
        S.parse_search({"base": tiny_base(toy_csv), "space": {"lr": {"uniform": [1e-4, 1e-3]}},
                        "sampler": {"name": "tpe", "n_start": 3}}, name="x")


def test_parallel_beyond_the_device_limit_says_trials_queue(home, toy_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HFT_RUNS_PER_DEVICE", "1")
    spec = S.parse_search({"base": tiny_base(toy_csv), "space": {"lr": {"uniform": [1e-4, 1e-3]}}, "parallel": 3},
                          name="x")
    S._say_parallel(spec, "local")
    err = capsys.readouterr().err
    assert "--parallel 3, but cpu trains 1 run(s) at a time" in err and "HFT_RUNS_PER_DEVICE=3" in err
