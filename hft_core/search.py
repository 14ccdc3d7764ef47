"""Hyper-parameter search: Optuna studies whose trials are runs in the store.

A thin layer over Optuna: Optuna samples (grid, random, TPE), prunes (median, Hyperband)
and stores the study (RDB storage in ``$HFT_HOME/studies.sqlite``, beside, not inside,
the run store). This module adds what the lab needs around it:

* a search space in YAML over any config field, strategy fields included, checked
  before anything runs (each problem one line naming the field and the fix);
* every trial is a run in the store: queued in the device's queue like any other run
  (group = the study's name, the sampled values in its config), shown on Live, stopped
  by Stop there or ``hft stop``, resumable like any stopped run;
* the driver loop: ask -> queue the run -> watch its eval metric in the store -> report
  each eval to Optuna -> on pruning, a stop request that ends the run "pruned" (metrics
  and checkpoint kept) -> tell Optuna how the trial ended.

The search file's format: ``hft_core.search_spec``.

Continuing: a study is found by name, so running the same file again adds ``trials`` more
trials to it (``optuna.create_study(load_if_exists=True)``); a different space, objective
or base config under the same name is refused. A driver (``hft search``, or the app's
thread) marks the study as its own while it runs; trials that a driver which ended
(killed, app restarted) left RUNNING are settled at the next start: a run that finished
meanwhile counts (COMPLETE), a pruned one is PRUNED, any other is FAIL with its run id,
and its run, if still queued or running, is stopped (resumable).

How a trial ends in Optuna: run finished -> COMPLETE with the metric's last value; run
pruned -> PRUNED; stopped by a user, or with the whole study, failed or interrupted ->
FAIL, with the reason in the trial's user attribute ``reason`` (samplers ignore FAIL trials).

    spec = load_search("search.yaml")
    result = run_search(spec, trials=6)       # trains here, one trial after another
    print(result.best.describe(spec.metric))
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from hft_core.config import ConfigError, RunConfig
# the search file (parsed and checked there), re-exported: callers use hft_core.search for both
from hft_core.search_spec import (DEFAULT_OBJECTIVE, EVAL_METRICS, KINDS, PRUNERS, SAMPLERS,  # noqa: F401
                                  Dimension, SearchError, SearchSpec, _optuna, field_types, load_search,
                                  make_pruner, make_sampler, parse_search, parse_space)

log = logging.getLogger(__name__)

STUDIES_DB = "studies.sqlite"
POLL_S = 0.5          # how often the driver reads the trials' new metrics and states from the store
BEAT_S = 10.0         # how often a driver renews its mark on the study
DRIVER_STALE_S = 60.0  # a driver on another host whose mark is older than this is taken as gone
DONE = ("finished", "stopped", "pruned", "failed", "interrupted")


class StudyBusy(SearchError):
    """Another live driver runs this study."""


# ---- Optuna: the study's storage ---------------------------------------------------------------------

def storage_url(home: str | Path | None = None) -> str:
    """The Optuna RDB storage of the studies: ``$HFT_HOME/studies.sqlite`` (the run store is runs.sqlite)."""
    from hft_core.home import hft_home

    path = (Path(home).expanduser() if home is not None else hft_home()) / STUDIES_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(home: str | Path | None = None) -> Any:
    """Optuna's RDBStorage over ``studies.sqlite``; waits for a busy file instead of failing."""
    optuna = _optuna()
    return optuna.storages.RDBStorage(storage_url(home), engine_kwargs={"connect_args": {"timeout": 30}})


def study_names(home: str | Path | None = None, storage: Any = None) -> list[str]:
    """The studies in ``studies.sqlite`` ([] when there is none yet), newest first."""
    from hft_core.home import hft_home

    if storage is None:
        if not ((Path(home) if home is not None else hft_home()) / STUDIES_DB).exists():
            return []
        storage = open_storage(home)
    return list(reversed(_optuna().get_all_study_names(storage)))  # in creation order: newest first


def load_study(name: str, home: str | Path | None = None, storage: Any = None) -> Any:
    """An existing study by name (SearchError naming the studies there when it does not exist)."""
    optuna = _optuna()
    storage = storage if storage is not None else open_storage(home)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise SearchError(f"no study {name!r} in {storage_url(home)}; studies: "
                          f"{study_names(storage=storage) or 'none yet'}") from None


def _open_study(spec: SearchSpec, storage: Any) -> Any:
    """Create the study, or load it to continue; refuses a different space/objective/base under the same name."""
    optuna = _optuna()
    study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                sampler=make_sampler(spec), pruner=make_pruner(spec), load_if_exists=True)
    mine = spec.fingerprint()
    theirs = study.user_attrs.get("hft_search")
    if theirs is None:
        study.set_user_attr("hft_search", json.loads(json.dumps(mine)))
        return study
    theirs = dict(theirs)
    mine = json.loads(json.dumps(mine))  # the same JSON round trip as what is stored
    for key, what in (("space", "search space"), ("metric", "objective metric"), ("direction", "direction")):
        if theirs.get(key) != mine[key]:
            raise SearchError(f"study {spec.name!r} already exists with another {what} ({_short(theirs.get(key))} vs "
                              f"{_short(mine[key])} now); continue it with the same {what}, or give a new --name")
    if theirs.get("base") != mine["base"]:
        differ = sorted(k for k in set(theirs.get("base", {})) | set(mine["base"])
                        if theirs.get("base", {}).get(k) != mine["base"].get(k))
        raise SearchError(f"study {spec.name!r} already exists with another base config (fields {differ} differ); "
                          f"continue it with the same base, or give a new --name")
    return study


def _short(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 80 else s[:77] + "..."


# ---- who trains the trials' runs -------------------------------------------------------------------

class Launcher(Protocol):
    """Queues one trial's run; something (a worker of this process, the app's, Ray) trains it."""

    def submit(self, cfg: RunConfig, *, group: str, name: str) -> str: ...
    def close(self, *, stop_running: bool = False) -> None: ...


class LocalLauncher:
    """`hft search` and notebooks: the trials are reserved for a foreground worker of this process,
    which trains them in ``slots`` background threads, each in its turn on the device's queue.

    How many train at once is the device's limit (``HFT_RUNS_PER_DEVICE``, 1 by default), as for
    every run: ``--parallel 2`` on a 1-run device keeps two trials queued, one trains.
    """

    def __init__(self, store: Any, device: str, *, slots: int = 1, train_fn: Callable[..., Any] | None = None) -> None:
        from hft_core.runs import Worker

        self.worker = Worker(store, device, train_fn=train_fn, role="foreground", slots=slots).start()

    def submit(self, cfg: RunConfig, *, group: str, name: str) -> str:
        run_id = self.worker.reserve(cfg, group=group, name=name)
        self.worker.wake()
        return run_id

    def close(self, *, stop_running: bool = False) -> None:
        self.worker.close(stop_running=stop_running, wait=True)


class ManagerLauncher:
    """The app: trials are plain queued runs of its RunManager, trained by its worker threads."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def submit(self, cfg: RunConfig, *, group: str, name: str) -> str:
        return self.manager.submit(cfg, group=group, name=name)

    def close(self, *, stop_running: bool = False) -> None:
        pass  # the app's workers live on


def make_launcher(backend: str, store: Any, spec: SearchSpec, parallel: int, address: str | None = None,
                  train_fn: Callable[..., Any] | None = None) -> Any:
    """"local": this process's foreground worker; "ray": each trial a Ray task (hft_core.ray_backend)."""
    if backend == "local":
        if address:
            raise SearchError(f"--address {address} goes with --backend ray; add --backend ray, or drop --address")
        from hft_core.placement import resolve_device

        return LocalLauncher(store, resolve_device(spec.base.device), slots=parallel, train_fn=train_fn)
    if backend == "ray":
        from hft_core.ray_backend import RayLauncher

        return RayLauncher(store, spec.base.device, address=address, slots=parallel)
    raise SearchError(f"unknown backend {backend!r}; use 'local' (this machine) or 'ray' (a Ray cluster)")


# ---- results ----------------------------------------------------------------------------------------

@dataclass
class TrialInfo:
    """One trial as the lab shows it: Optuna's state and value, its run's id, status and trained steps."""

    number: int
    state: str                 # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    value: float | None
    params: dict[str, Any]
    run_id: str = ""
    status: str = ""           # the run's status in the store
    steps: int = 0             # optimizer steps the run trained (its last "loss" step)
    reason: str = ""           # why it was pruned or failed

    def describe(self, metric: str) -> str:
        value = f"{metric}={self.value:.4g}" if self.value is not None else f"{metric}=-"
        state = self.state.lower()
        if self.state == "COMPLETE":
            state = "finished"
        where = f" at step {self.steps}" if self.steps else ""
        params = ", ".join(f"{k.split('.')[-1] if k.startswith('mix.') else k}={_fmt(v)}"
                           for k, v in self.params.items())
        why = f" ({self.reason})" if self.reason and self.state == "FAIL" else ""
        return f"trial {self.number} {state}{where} (run {self.run_id or '-'}): {value} | {params}{why}"


@dataclass
class SearchResult:
    name: str
    metric: str
    direction: str
    trials: list[TrialInfo]            # every trial of the study, in order
    new: list[int] = field(default_factory=list)       # numbers of the trials this call ran
    notes: list[str] = field(default_factory=list)     # what was settled at start (trials of an ended driver)
    stopped: bool = False              # the study was stopped before all trials ran

    @property
    def best(self) -> TrialInfo | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: (t.value, -t.number) if self.direction == "maximize" else (t.value, t.number))

    def counts(self, numbers: Sequence[int] | None = None) -> dict[str, int]:
        chosen = [t for t in self.trials if numbers is None or t.number in numbers]
        out = {s: 0 for s in ("COMPLETE", "PRUNED", "FAIL")}
        for t in chosen:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def steps_trained(self, numbers: Sequence[int] | None = None) -> int:
        return sum(t.steps for t in self.trials if numbers is None or t.number in numbers)


def summarize(study: Any, store: Any) -> SearchResult:
    """The study's trials joined with their runs in the store."""
    infos = []
    for t in study.get_trials(deepcopy=False):
        run_id = str(t.user_attrs.get("run_id", ""))
        status, steps = "", 0
        if run_id:
            try:
                status = store.get_run(run_id).status
                steps = _steps_trained(store, run_id)
            except KeyError:
                status = "deleted"
        value = t.value if t.state.name in ("COMPLETE", "PRUNED") else None
        infos.append(TrialInfo(t.number, t.state.name, value, dict(t.params), run_id, status, steps,
                               str(t.user_attrs.get("reason", ""))))
    direction = "maximize" if study.direction.name == "MAXIMIZE" else "minimize"
    metric = str(dict(study.user_attrs.get("hft_search") or {}).get("metric", ""))
    return SearchResult(study.study_name, metric, direction, infos)


def _steps_trained(store: Any, run_id: str) -> int:
    df = store.metrics(run_id, names=["loss"])
    return int(df["step"].max()) if not df.empty else 0


def study_result(name: str, *, store: Any = None, home: str | Path | None = None) -> SearchResult:
    """A study's trials as they stand (for the app's study view and `hft search --show`)."""
    from hft_core.store import RunStore

    own = store is None
    store = store if store is not None else RunStore(home)
    try:
        return summarize(load_study(name, home=store.home), store)
    finally:
        if own:
            store.close()


# ---- the driver: ask -> queue -> watch -> report/prune -> tell ----------------------------------------

@dataclass
class _Live:
    trial: Any
    run_id: str
    params: dict[str, Any]
    last_step: int = -1
    last_value: float | None = None
    prune_asked: str = ""


def _pid_start(pid: int) -> str | None:
    from hft_core.control import process_start as _process_start

    return _process_start(pid)


def _driver_alive(mark: Mapping[str, Any] | None) -> bool:
    """Is the driver that left this mark still running? Another host: only its beat can tell."""
    from hft_core.control import pid_alive as _pid_alive

    if not mark:
        return False
    if mark.get("host") != socket.gethostname():
        return time.time() - float(mark.get("beat", 0)) < DRIVER_STALE_S
    if mark.get("pid") == os.getpid():  # this process (the app): is that driver thread still there?
        return any(t.ident == mark.get("thread") for t in threading.enumerate())
    return _pid_alive(int(mark["pid"]), mark.get("start"))


class _Driver:
    def __init__(self, spec: SearchSpec, study: Any, store: Any, launcher: Any, *, parallel: int,
                 stop: threading.Event, on_trial: Callable[[TrialInfo], None] | None) -> None:
        self.spec, self.study, self.store, self.launcher = spec, study, store, launcher
        self.parallel = parallel
        self.stop = stop
        self.on_trial = on_trial or (lambda info: None)
        self.live: dict[str, _Live] = {}
        self.stopping = False
        self.new: list[int] = []
        self._optuna = _optuna()
        self._beat = 0.0
        self._checked_flags = 0.0
        self._swept = 0.0
        self.claimed = False

    # the mark that says "this process drives the study"
    def claim(self) -> None:
        mark = self.study.user_attrs.get("hft_driver")
        if _driver_alive(mark) and not (mark.get("pid") == os.getpid() and mark.get("thread") == threading.get_ident()):
            where = f"pid {mark.get('pid')} on {mark.get('host')}"
            raise StudyBusy(f"study {self.spec.name!r} is being run by {where}; stop it first (`hft search --stop "
                            f"{self.spec.name}` or Ctrl-C there), or give another --name")
        self.study.set_user_attr("hft_stop", None)
        self._mark()
        self.claimed = True

    def _mark(self) -> None:
        pid = os.getpid()
        self.study.set_user_attr("hft_driver", {"pid": pid, "host": socket.gethostname(), "start": _pid_start(pid),
                                                "thread": threading.get_ident(), "beat": time.time()})
        self._beat = time.monotonic()

    def release(self) -> None:
        if not self.claimed:  # refused (another driver runs it): its mark is not ours to clear
            return
        try:
            self.study.set_user_attr("hft_driver", None)
        except Exception:  # noqa: BLE001 - the storage may be gone at exit; the mark's pid check covers it
            log.debug("could not release the study's driver mark", exc_info=True)

    # trials an ended driver left RUNNING
    def settle_orphans(self) -> list[str]:
        notes = []
        TrialState = self._optuna.trial.TrialState
        self.store.mark_interrupted()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run_id = str(t.user_attrs.get("run_id", ""))
            rec = None
            if run_id:
                try:
                    rec = self.store.get_run(run_id)
                except KeyError:
                    rec = None
            if rec is not None and rec.status == "finished":
                value = self._final_value(run_id)
                if value is not None:
                    self.study.tell(t.number, value)
                    notes.append(f"trial {t.number} (run {run_id}) finished after its driver ended: counted")
                    continue
            if rec is not None and rec.status == "pruned":
                self.study.tell(t.number, state=TrialState.PRUNED)
                notes.append(f"trial {t.number} (run {run_id}) was pruned: marked PRUNED")
                continue
            status = rec.status if rec is not None else ("deleted" if run_id else "not queued yet")
            if rec is not None and rec.status in ("queued", "running"):
                try:
                    self.store.request_stop(run_id, f"its study {self.spec.name!r} was restarted without it")
                    status += ", now stopped (resumable)"
                except Exception:  # noqa: BLE001 - it ended or its process is gone meanwhile
                    pass
            reason = f"its driver ended while its run {run_id or '-'} was {status}"
            self._optuna.trial.Trial(self.study, t._trial_id).set_user_attr("reason", reason)
            self.study.tell(t.number, state=TrialState.FAIL)
            notes.append(f"trial {t.number} left running by an ended driver: marked FAIL ({reason})")
        return notes

    def run(self, n_new: int) -> None:
        asked = 0
        while True:
            self._check_stop()
            while not self.stopping and asked < n_new and len(self.live) < self.parallel:
                self._ask()
                asked += 1
            if not self.live:
                return
            for run_id in list(self.live):
                self._watch(self.live[run_id])
            if time.monotonic() - self._beat >= BEAT_S:
                self._mark()
            if self.stopping:
                time.sleep(POLL_S)  # the stop event stays set: waiting on it would not wait at all
            else:
                self.stop.wait(POLL_S)  # a stop wakes the loop at once

    def _check_stop(self) -> None:
        if not self.stopping and time.monotonic() - self._checked_flags >= 1.0:
            self._checked_flags = time.monotonic()
            if self.study.user_attrs.get("hft_stop"):
                self.stop.set()
        if self.stop.is_set() and not self.stopping:
            self.stopping = True
            for live in self.live.values():
                try:
                    self.store.request_stop(live.run_id, f"the study {self.spec.name!r} was stopped")
                except Exception:  # noqa: BLE001 - ended meanwhile: its state is read below
                    pass

    def _ask(self) -> None:
        trial = self.study.ask()
        self.new.append(trial.number)
        try:
            params = {d.field: d.suggest(trial) for d in self.spec.space}
            name = f"trial {trial.number} " + " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in params.items())
            cfg = self.spec.config_for(params, name=name[:80])
        except ConfigError as e:  # a combination the config refuses: a failed trial, not a failed study
            trial.set_user_attr("reason", f"invalid config: {e}")
            frozen = self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            self.on_trial(TrialInfo(frozen.number, "FAIL", None, dict(frozen.params), reason=f"invalid config: {e}"))
            return
        run_id = self.launcher.submit(cfg, group=self.spec.name, name=cfg.name)
        trial.set_user_attr("run_id", run_id)
        self.store.log_event(run_id, f"trial {trial.number} of study {self.spec.name!r}: "
                             + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
        self.live[run_id] = _Live(trial, run_id, params)

    def _report(self, live: _Live) -> None:
        df = self.store.metrics(live.run_id, names=[self.spec.metric], since_step=live.last_step + 1)
        for step, value in zip(df["step"], df["value"]):
            step, value = int(step), float(value)
            if math.isnan(value):
                continue
            live.trial.report(value, step)
            live.last_step, live.last_value = step, value

    def _watch(self, live: _Live) -> None:
        rec = self.store.get_run(live.run_id)
        if rec.status == "running" and time.monotonic() - self._swept > 5.0:
            self._swept = time.monotonic()
            self.store.mark_interrupted()  # a worker that died must not leave the study waiting forever
            rec = self.store.get_run(live.run_id)
        before = live.last_step
        self._report(live)
        if (rec.status == "running" and live.last_step > before and not live.prune_asked and not self.stopping
                and self.spec.pruner != "none" and live.trial.should_prune()):
            why = (f"pruned by the {self.spec.pruner} pruner at step {live.last_step} "
                   f"({self.spec.metric}={live.last_value:.4g})")
            try:
                self.store.request_stop(live.run_id, why, status="pruned")
                live.prune_asked = why
            except Exception:  # noqa: BLE001 - it finished meanwhile: it counts as complete
                pass
        if rec.status in DONE:
            self._tell(live, rec)

    def _tell(self, live: _Live, rec: Any) -> None:
        TrialState = self._optuna.trial.TrialState
        self.store.flush()
        self._report(live)  # the last eval may have landed with the final status
        reason = ""
        value = None
        if rec.status == "finished":
            value = self._final_value(live.run_id)
            state = TrialState.COMPLETE if value is not None else TrialState.FAIL
            if value is None:
                reason = f"the run finished without logging {self.spec.metric}"
        elif rec.status == "pruned":
            state, reason = TrialState.PRUNED, live.prune_asked or (rec.stop_reason or "pruned")
        elif rec.status == "stopped":
            state = TrialState.FAIL
            who = "with the study" if self.stopping else "by a user"
            when = "before it trained" if live.last_step < 0 and _steps_trained(self.store, live.run_id) == 0 else \
                "while training"
            if rec.stop_reason and not self.stopping:
                when += f" ({rec.stop_reason})"
            reason = f"stopped {who} {when}"
        else:
            state = TrialState.FAIL
            reason = f"the run {rec.status}" + (f": {rec.error}" if rec.error else "")
        if reason:
            live.trial.set_user_attr("reason", reason[:500])
        live.trial.set_user_attr("status", rec.status)
        frozen = self.study.tell(live.trial, value if state == TrialState.COMPLETE else None, state=state)
        del self.live[live.run_id]
        shown = frozen.value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None
        self.on_trial(TrialInfo(frozen.number, state.name, shown, dict(live.params), live.run_id, rec.status,
                                _steps_trained(self.store, live.run_id), reason))

    def _final_value(self, run_id: str) -> float | None:
        df = self.store.metrics(run_id, names=[self.spec.metric])
        df = df[df["value"].notna()]
        return float(df.sort_values("step")["value"].iloc[-1]) if not df.empty else None

    def abandon(self) -> None:
        """The driver ends with trials still running (a second Ctrl-C, an error): FAIL them now."""
        TrialState = self._optuna.trial.TrialState
        for live in list(self.live.values()):
            try:
                live.trial.set_user_attr("reason", f"its driver ended while the run {live.run_id} was training")
                self.study.tell(live.trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001
                log.debug("could not fail trial %s", live.trial.number, exc_info=True)
        self.live.clear()


def run_search(spec: SearchSpec, *, trials: int | None = None, parallel: int | None = None, store: Any = None,
               launcher: Any = None, backend: str = "local", address: str | None = None,
               train_fn: Callable[..., Any] | None = None, stop: threading.Event | None = None,
               on_trial: Callable[[TrialInfo], None] | None = None,
               on_start: Callable[[SearchResult], None] | None = None) -> SearchResult:
    """Run ``trials`` more trials of the study (create it, or continue it), ``parallel`` queued at a time.

    Blocks until they have all ended (or ``stop`` is set: the running trials stop with a
    checkpoint and count as FAIL). ``launcher``: who trains the runs (default: ``backend``,
    "local" = a foreground worker of this process, "ray" = Ray tasks). ``on_trial`` is called
    as each trial ends; ``on_start`` once the study is open (with the settled orphans' notes).
    """
    from hft_core.store import RunStore

    trials = trials if trials is not None else spec.trials
    parallel = parallel if parallel is not None else spec.parallel
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SearchError(f"trials={trials!r}: use a whole number of at least 1")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise SearchError(f"parallel={parallel!r}: use a whole number of at least 1")
    own_store = store is None
    store = store if store is not None else RunStore()
    stop = stop or threading.Event()
    driver = None
    own_launcher = launcher is None
    try:
        study = _open_study(spec, open_storage(store.home))
        driver = _Driver(spec, study, store, None, parallel=parallel, stop=stop, on_trial=on_trial)
        driver.claim()
        notes = driver.settle_orphans()
        if spec.sampler == "grid":
            tried = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED",
                                                                                       "RUNNING"))
            left = max(0, spec.grid_size() - tried)
            if trials > left:
                notes.append(f"the grid has {spec.grid_size()} points and {tried} were tried: running {left} "
                             f"trial(s), not {trials}")
                trials = left
        if on_start is not None:
            on_start(SearchResult(spec.name, spec.metric, spec.direction, [], notes=notes))
        if trials and not stop.is_set():
            driver.launcher = launcher if launcher is not None else make_launcher(backend, store, spec, parallel,
                                                                                  address, train_fn)
            driver.run(trials)
        result = summarize(study, store)
        result.metric, result.new, result.notes, result.stopped = spec.metric, driver.new, notes, driver.stopping
        return result
    finally:
        if driver is not None:
            if driver.launcher is not None and own_launcher:
                driver.launcher.close(stop_running=bool(driver.live))
            if driver.live:
                driver.abandon()
            driver.release()
        if own_store:
            store.close()


def request_study_stop(name: str, *, home: str | Path | None = None, reason: str = "") -> bool:
    """Ask the driver of a study (any process on this host, or another host) to stop it: no new
    trials; running trials stop with a checkpoint. Returns False when no driver runs it."""
    study = load_study(name, home=home)
    if not _driver_alive(study.user_attrs.get("hft_driver")):
        return False
    study.set_user_attr("hft_stop", {"time": time.time(), "pid": os.getpid(), "reason": reason})
    return True


def study_driver(name: str, *, home: str | Path | None = None) -> dict[str, Any] | None:
    """The live driver's mark of a study ({pid, host, ...}), or None when nobody runs it now."""
    mark = load_study(name, home=home).user_attrs.get("hft_driver")
    return dict(mark) if _driver_alive(mark) else None


class SearchThread:
    """A study driven from a background thread of a long-lived process (the app).

    The app's RunManager trains the trials (``ManagerLauncher``); this thread only asks,
    queues and watches, so it never runs in a Streamlit script thread. ``stop()`` stops the
    whole study; Stop on one trial's run (Live, `hft stop`) ends that trial only.
    """

    def __init__(self, spec: SearchSpec, *, manager: Any, trials: int | None = None,
                 parallel: int | None = None) -> None:
        self.spec = spec
        self.manager = manager
        self.trials = trials
        self.parallel = parallel
        self.ended: list[TrialInfo] = []
        self.notes: list[str] = []
        self.result: SearchResult | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"hft-search:{spec.name}", daemon=True)

    def start(self) -> "SearchThread":
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _work(self) -> None:
        try:
            self.result = run_search(self.spec, trials=self.trials, parallel=self.parallel, store=self.manager.store,
                                     launcher=ManagerLauncher(self.manager), stop=self._stop,
                                     on_trial=self.ended.append, on_start=lambda r: self.notes.extend(r.notes))
        except Exception as e:  # noqa: BLE001 - shown on the page; the thread must not die silently
            self.error = f"{type(e).__name__}: {e}"
            log.exception("study %s", self.spec.name)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# ---- hft search -------------------------------------------------------------------------------------

def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The `search` verb of hft_core.cli."""
    s = sub.add_parser("search", help="an Optuna study: each trial a queued run; running it again continues it",
                       description="Search hyper-parameters with Optuna. Every trial is a run in the store (group = "
                       "the study), so Live shows it and Stop stops it. The study lives in $HFT_HOME/studies.sqlite: "
                       "the same command again adds --trials more trials.")
    s.add_argument("--config", help="the search file (YAML: base/config, space, objective, sampler, pruner)")
    s.add_argument("--trials", type=int, default=None, help="trials to run now (default: the file's, else 10)")
    s.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the file's, else tpe")
    s.add_argument("--pruner", choices=PRUNERS, default=None, help="default: the file's, else none")
    s.add_argument("--parallel", type=int, default=None,
                   help="trials queued at a time (default 1). Locally, how many TRAIN at once is the device's "
                        "limit, HFT_RUNS_PER_DEVICE (1 by default): raise it to train several side by side. With "
                        "--backend ray: trials sent to the cluster at once (Ray runs what its resources hold)")
    s.add_argument("--name", default=None, help="the study's name (default: the file's 'name', else its file name)")
    s.add_argument("--seed", type=int, default=None, help="the sampler's seed (default: the file's, else 0)")
    s.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: train here; ray: each trial a Ray task on a cluster")
    s.add_argument("--address", default=None, help="with --backend ray: 'auto' (a cluster started with `ray start` "
                   "on this machine) or ray://host:10001; default: a local Ray instance for this command")
    s.add_argument("--stop", metavar="STUDY", default=None, help="ask the driver of a running study to stop it")
    s.add_argument("--show", metavar="STUDY", default=None, help="print a study's trials and best result")
    return s


def cli(args: argparse.Namespace) -> int:
    """`hft search`: prints each trial as it ends and, at the end, the best value and its parameters."""
    if args.stop:
        if request_study_stop(args.stop, reason=f"`hft search --stop` from pid {os.getpid()}"):
            print(f"asked the driver of study {args.stop!r} to stop: no new trials; running ones stop with a "
                  f"checkpoint")
        else:
            print(f"study {args.stop!r} has no running driver: nothing to stop")
        return 0
    if args.show:
        result = study_result(args.show)
        for t in result.trials:
            print(t.describe(result.metric))
        _print_best(result)
        return 0
    if not args.config:
        raise SearchError("give --config search.yaml (or --show STUDY / --stop STUDY); see presets/search/ for "
                          "examples")
    spec = load_search(args.config, name=args.name, sampler=args.sampler, pruner=args.pruner, trials=args.trials,
                       parallel=args.parallel, seed=args.seed)
    _say_parallel(spec, args.backend)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_ctrl_c(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print("\nstopping the study: running trials stop after their step, with a checkpoint "
                  "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)
            stop.set()
        previous = signal.signal(signal.SIGINT, on_ctrl_c)

    def started(r: SearchResult) -> None:
        for note in r.notes:
            print(note, file=sys.stderr, flush=True)
        print(f"study {spec.name!r} ({storage_url()}): {spec.trials} trial(s), sampler {spec.sampler}, pruner "
              f"{spec.pruner}, {spec.direction} {spec.metric}; runs in group {spec.name!r} (Live shows them; "
              f"`hft search --stop {spec.name}` or Ctrl-C stops the study)", file=sys.stderr, flush=True)

    try:
        result = run_search(spec, backend=args.backend, address=args.address, stop=stop, on_start=started,
                            on_trial=lambda t: print(t.describe(spec.metric), flush=True))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    c = result.counts(result.new)
    total = len(result.trials)
    print(f"study {spec.name}: {len(result.new)} trial(s) now ({c['COMPLETE']} finished, {c['PRUNED']} pruned, "
          f"{c['FAIL']} failed), {total} in the study; {result.steps_trained(result.new)} steps trained now"
          + ("; stopped before all trials ran" if result.stopped else ""))
    _print_best(result)
    print(f"continue it with the same command (more trials), or see it on Compare (group {spec.name!r})",
          file=sys.stderr)
    return 130 if result.stopped else 0


def _print_best(result: SearchResult) -> None:
    best = result.best
    if best is None:
        print("best: none yet (no trial finished)")
        return
    print(f"best: trial {best.number} (run {best.run_id}) {result.metric} = {best.value:.4f}")
    for k, v in best.params.items():
        print(f"  {k} = {_fmt(v)}")


def _say_parallel(spec: SearchSpec, backend: str) -> None:
    """--parallel N on a device that trains fewer at once: say that the trials will queue."""
    if spec.parallel <= 1 or backend != "local":
        return
    from hft_core.placement import resolve_device
    from hft_core.runs import runs_per_device

    from hft_core.worker import cpu_budget

    limit = 1 if cpu_budget(spec.base.device) else runs_per_device()  # trials in threads of this process
    if spec.parallel > limit:
        print(f"note: --parallel {spec.parallel}, but {resolve_device(spec.base.device)} trains {limit} run(s) at a "
              f"time (HFT_RUNS_PER_DEVICE={limit}): {spec.parallel} trials stay queued and train in turn. Set "
              f"HFT_RUNS_PER_DEVICE={spec.parallel} to train them side by side.", file=sys.stderr)
