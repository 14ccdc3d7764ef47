"""Runs through one queue in the store: workers claim them, anyone can stop them.

    manager = RunManager(RunStore())        # the app: one worker thread per device it serves
    run_id = manager.submit(cfg)            # stored as "queued"; a worker claims it when its device is free
    manager.stop(run_id)                    # ANY run, trained by any process: a stop request in the store
    manager.resume(run_id)                  # same id, the curve continues from the checkpoint

    result = run_here(cfg)                  # CLI and notebooks: queue it, wait its turn, train it here

The queue, the claims and the stop requests are rows in the SQLite store (see the
control-plane section of hft_core/store.py), so the app, a CLI run, `hft worker` in a
terminal and a notebook share one truth:

* a **worker** serves one device. It claims the next queued run atomically, renews a
  lease every HEARTBEAT_S seconds while it trains, and polls the run's stop flag every
  STOP_POLL_S seconds; a stop request ends the run "stopped" (or "pruned") with a checkpoint.
* a worker that dies (SIGKILL, power) loses its runs: on this host at once (its pid is
  checked), elsewhere when its lease expires (LEASE_S); they show "interrupted", resumable,
  and the device's next run starts.
* at most ``max_per_device`` runs train on a device at a time, across all processes (1 by
  default; ``HFT_RUNS_PER_DEVICE`` or the argument allows more per GPU).
* a "general" worker (the app's threads, `hft worker`) trains any run of its device; a
  "foreground" worker (`hft train`, ``run_here``, presets from the CLI) trains only the runs
  it queued itself, in its turn.

Every job is a run with a record: training runs and the post-training jobs of
hft_core/jobs.py (WiSE-FT, soups, pruning). Failures are stored with their traceback.
Workers never touch Streamlit (this module never imports it); pages only read the store.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from hft_core.config import RunConfig
from hft_core.placement import DeviceError, resolve_device, visible_devices
from hft_core.control import HEARTBEAT_S, RESUMABLE, ClaimLost
from hft_core.store import RunStore, StoreError

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]
STATE_FILE = "trainer_state.pt"   # = hft_core.trainer.STATE_FILE (not imported: that pulls in the whole trainer)
ACTIVE = ("queued", "running")
STOP_POLL_S = 0.5    # a stop request from another process is seen within this (or the current step)
CLAIM_POLL_S = 0.5   # an idle worker looks for work in the store this often (its own process wakes it at once)



class RunStateError(ValueError):
    """The run is not in a state for what was asked (resume a running run, a failed run without checkpoint)."""


__all__ = ["RunManager", "Worker", "run_here", "execute_run", "prepare_resume", "checkpoint_step",
           "resolve_device", "DeviceError"]


def runs_per_device() -> int:
    """How many runs may train at once on one device, across processes (HFT_RUNS_PER_DEVICE, default 1)."""
    raw = os.environ.get("HFT_RUNS_PER_DEVICE", "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"HFT_RUNS_PER_DEVICE={raw!r}: use a whole number of at least 1")
    return n


def checkpoint_step(run_dir: str | Path) -> int | None:
    """The step of the resumable checkpoint in ``run_dir/checkpoint``, or None if there is none."""
    path = Path(run_dir) / "checkpoint" / STATE_FILE
    if not path.is_file():
        return None
    import torch

    try:  # mmap: only the small "step" entry is read, not the optimizer state
        return int(torch.load(path, weights_only=True, mmap=True, map_location="cpu")["step"])
    except Exception as e:
        raise StoreError(f"the checkpoint {path} cannot be read ({type(e).__name__}: {e}); delete the folder "
                         f"{path.parent} to train the run again from step 0") from None


def prepare_resume(store: RunStore, run_id: str) -> bool:
    """Make a stopped/interrupted/failed run ready to train again; returns the ``resume`` flag for train().

    With a checkpoint at step s: metrics after s are deleted (the killed attempt may have logged
    past its last checkpoint; those steps are trained again), and training continues at s.
    Without one, a stopped or interrupted run starts again from step 0 under the same id.
    """
    store.mark_interrupted()  # a run whose process just died is resumable now, not "running"
    rec = store.get_run(run_id)
    if rec.status not in RESUMABLE:
        raise RunStateError(f"run {run_id} is {rec.status}; only {', '.join(RESUMABLE)} runs can be resumed")
    if rec.kind != "train":
        store.truncate_metrics(run_id)
        return False  # a post-training job simply runs again
    from hft_core.trainer import recover_checkpoint

    recover_checkpoint(store.run_dir(run_id))
    step = checkpoint_step(store.run_dir(run_id))
    if step is None:
        if rec.status == "failed":
            raise RunStateError(f"run {run_id} failed before saving a checkpoint, so there is nothing to resume; "
                             f"fix the cause ({rec.error}) and submit its config again")
        store.truncate_metrics(run_id)
        store.log_event(run_id, "no checkpoint to resume from: training starts again from step 0", "warning")
        return False
    store.truncate_metrics(run_id, after_step=step)
    store.log_event(run_id, f"resuming from the checkpoint at step {step}")
    return True


# ---- one run, in this thread -----------------------------------------------------------------------

@dataclass
class Outcome:
    """How a run ended here: its final status and what the trainer returned (None for jobs/failures)."""
    run_id: str
    status: str
    result: Any = None

    @property
    def model(self) -> Any:
        return getattr(self.result, "model", None)

    @property
    def metrics(self) -> dict[str, float]:
        return dict(getattr(self.result, "metrics", {}) or {})

    @property
    def checkpoint(self) -> str | None:
        """The run's checkpoint folder: a model source (weights, tokenizer, run_config.yaml)."""
        return getattr(self.result, "checkpoint", None)


class StopFlag(threading.Event):
    """A run's stop event. ``abandoned``: the worker lost its claim on the run (its lease expired
    while it hung): the trainer stops without saving a checkpoint, whose folder may be another's now."""

    abandoned = False

    def abandon(self) -> None:
        self.abandoned = True
        self.set()


def execute_run(store: RunStore, run_id: str, train_fn: TrainFn, stop: threading.Event | None = None,
                resume: bool = False) -> str:
    """Train one stored run in this thread and record the outcome. Returns the final status."""
    return _execute(store, run_id, train_fn, stop, resume).status


def _execute(store: RunStore, run_id: str, train_fn: TrainFn, stop: threading.Event | None = None,
             resume: bool = False, worker: str | None = None) -> Outcome:
    """Never raises for a failure of the run: it ends "failed" with ``error`` = "Type: message", the
    traceback stored and an error event logged. Metrics are flushed before the final status is
    written, so a reader that sees "finished" also sees every metric. A run stopped on request
    ends with the status the request asked for ("stopped", or "pruned" for a search trial).

    ``worker``: the worker that claimed the run; its end is recorded only while that worker still
    holds it (else the outcome is "lost" and nothing is written: see ``RunStore.set_status``)."""
    stop = stop or threading.Event()
    rec = store.get_run(run_id)
    if rec.status != "running":  # claimed runs are running already; direct callers (DDP rank 0) are not
        store.set_status(run_id, "running")
    store.log_event(run_id, f"trained in pid {os.getpid()} with {_torch_threads()} torch thread(s)"
                    + (f" by worker {worker}" if worker else ""))
    try:
        try:
            if stop.is_set():
                result = None
                status = "stopped"
            elif rec.kind == "train":
                result = train_fn(rec.cfg, sink=store.sink(run_id), stop=stop, out_dir=store.run_dir(run_id),
                                  resume=resume)
                status = getattr(result, "status", "finished")
            else:
                from hft_core import jobs

                result = None
                status = jobs.run_job(store, rec, store.sink(run_id), stop)
        except Exception as e:
            message = f"{type(e).__name__}: {e}" + _advice(e)
            store.log_event(run_id, message, "error")
            ckpt = store.run_dir(run_id) / "checkpoint"
            _free_accelerator_memory()
            store.set_status(run_id, "failed", error=message, traceback=traceback.format_exc(),
                             checkpoint_dir=ckpt if ckpt.is_dir() else None, worker=worker)
            return Outcome(run_id, "failed")
        if getattr(stop, "abandoned", False):
            return Outcome(run_id, "lost")
        if status not in ("finished", "stopped"):
            status = "finished"
        if status == "stopped":
            status = store.pending_stops([run_id]).get(run_id, "stopped")  # "pruned" when a pruner asked
        store.set_status(run_id, status, checkpoint_dir=getattr(result, "checkpoint", None), worker=worker)
        return Outcome(run_id, status, result)
    except ClaimLost as e:
        log.warning("run %s: %s", run_id, e)
        return Outcome(run_id, "lost")


def _torch_threads() -> int | str:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else "?"


def _advice(e: Exception) -> str:
    """What to try, for failures a user can act on (out of GPU memory)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, torch.cuda.OutOfMemoryError):
        return (". The GPU ran out of memory: try a smaller batch_size (with grad_accum to keep the effective "
                "batch), precision bf16, a shorter max_length, or LoRA/freezing")
    return ""


def _free_accelerator_memory() -> None:
    """After a failed run, give its cached GPU memory back (a CUDA OOM must not starve the next run)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        import gc

        gc.collect()
        torch.cuda.empty_cache()


# ---- workers ------------------------------------------------------------------------------------------

_IMPORT_LOCK = threading.Lock()


def load_trainer() -> TrainFn:
    # The trainer's first import of transformers & co. must not happen in two threads at once.
    with _IMPORT_LOCK:
        from hft_core.trainer import train

        return train


class Worker:
    """Trains the queued runs of one device, claimed from the store; one per device per process.

    ``role="general"``: any run of the device (the app's threads, `hft worker`).
    ``role="foreground"``: only runs reserved for it (``reserve``), trained in the calling
    thread by ``work_on`` (a CLI run or notebook: Ctrl-C reaches the training thread).
    A heartbeat thread renews the lease and turns stop requests into the runs' stop events.
    """

    def __init__(self, store: RunStore, device: str, *, train_fn: TrainFn | None = None, role: str = "general",
                 max_per_device: int | None = None, slots: int = 1, check: bool = True,
                 on_lost: Callable[[list[str]], None] | None = None) -> None:
        self.store = store
        self.device = resolve_device(device)
        if check and self.device not in visible_devices():
            raise DeviceError(f"device {device!r} does not exist in this process; devices here: "
                              f"{', '.join(visible_devices())}")
        self.role = role
        self.max_per_device = max_per_device or runs_per_device()
        self.slots = max(1, int(slots))
        self._train_fn = train_fn
        self._on_lost = on_lost    # called with the runs whose claim was lost (after they were abandoned)
        self._running: dict[str, StopFlag] = {}
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.id = store.register_worker(self.device, role)
        self._beat = threading.Thread(target=self._heartbeat, name=f"hft-heartbeat:{self.id}", daemon=True)
        self._beat.start()

    def __repr__(self) -> str:
        return f"Worker({self.id}, {self.device}, {self.role})"

    # ---- serving a device in background threads (general workers) -------------------------------
    def start(self) -> "Worker":
        for k in range(self.slots):
            t = threading.Thread(target=self._serve, name=f"hft-worker:{self.device}:{k}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def wake(self) -> None:
        """Look for work now (this process just queued or resumed a run)."""
        self._wake.set()

    def serve_forever(self, *, idle_poll: float = 0.1) -> None:
        """Serve the device in the calling thread (a worker process's main thread) until ``close``.

        Between runs it reads the device's queue every ``idle_poll`` seconds (a read: cheap) and
        claims (a write transaction) when the queue changed, or every CLAIM_POLL_S while runs wait
        that it could not take (the device is full) and every few seconds anyway (to expire dead
        workers' runs). A run queued by another process starts within ``idle_poll``."""
        last_claim, seen = 0.0, None
        while not self._closed.is_set():
            if self.store.closed:
                return
            queued = self.store.queued(self.device)
            since = time.monotonic() - last_claim
            if not (queued != seen or (queued and since >= CLAIM_POLL_S) or since >= CLAIM_POLL_S * 4):
                self._wake.wait(idle_poll)
                self._wake.clear()
                continue
            last_claim, seen = time.monotonic(), queued
            try:
                claim = self.store.claim(self.id, self.device, max_running=self.max_per_device)
            except StoreError as e:
                log.warning("worker %s: cannot claim from %s: %s", self.id, self.store.path, e)
                claim = None
            if claim is None:
                self._wake.wait(idle_poll)
                self._wake.clear()
                continue
            seen = None  # after a run, look again at once
            self._run(claim.run_id, claim.resume)

    def _serve(self) -> None:
        while not self._closed.is_set():
            if self.store.closed:  # the store went away under us (its owner closed it): nothing to serve
                self._closed.set()
                return
            try:
                claim = self.store.claim(self.id, self.device, max_running=self.max_per_device)
            except StoreError as e:
                log.warning("worker %s: cannot claim from %s: %s", self.id, self.store.path, e)
                claim = None
            if claim is None:
                self._wake.wait(CLAIM_POLL_S)
                self._wake.clear()
                continue
            self._run(claim.run_id, claim.resume)

    # ---- training reserved runs in the calling thread (foreground workers) ------------------------
    def reserve(self, cfg: RunConfig, *, group: str = "", name: str = "", kind: str = "train",
                job: Mapping[str, Any] | None = None, after: Sequence[str] = ()) -> str:
        """Queue a run on this worker's device that only this worker will train."""
        return self.store.create_run(cfg, status="queued", device=self.device, group=group, name=name, kind=kind,
                                     job=job, after=after, reserved_for=self.id)

    def work_on(self, run_ids: Sequence[str], *, on_wait: Callable[[str], None] | None = None) -> dict[str, Outcome]:
        """Train these reserved runs here, each in its turn; returns their outcomes when all have ended.

        ``on_wait(message)`` is called when the message about what we wait for changes.
        """
        pending = list(run_ids)
        outcomes: dict[str, Outcome] = {}
        said = ""
        while pending:
            claim = self.store.claim(self.id, self.device, max_running=self.max_per_device)
            if claim is not None and claim.run_id in pending:
                outcomes[claim.run_id] = self._run(claim.run_id, claim.resume)
                pending.remove(claim.run_id)
                continue
            if claim is not None:  # reserved for us by someone else's call: train it anyway, it is ours
                self._run(claim.run_id, claim.resume)
                continue
            for rid in list(pending):  # ended without us (cancelled while queued, failed dependency)
                rec = self.store.get_run(rid)
                if rec.status not in ACTIVE:
                    outcomes[rid] = Outcome(rid, rec.status)
                    pending.remove(rid)
            if pending and on_wait is not None:
                message = self.waiting_for(pending[0])
                if message != said:
                    said = message
                    on_wait(message)
            if pending:
                self._wake.wait(CLAIM_POLL_S)
                self._wake.clear()
        return outcomes

    def waiting_for(self, run_id: str) -> str:
        """What a queued run of ours waits for, in words."""
        rec = self.store.get_run(run_id)
        if rec.status != "queued":
            return ""
        waits = [r for r in rec.after if self.store.get_run(r).status != "finished"]
        if waits:
            return f"run {run_id} waits for run(s) {', '.join(waits)} to finish"
        running = self.store.list_runs(status="running")
        busy = [r for r in running if r.device == self.device]
        ahead = self.store.queued(self.device)
        ahead = ahead[:ahead.index(run_id)] if run_id in ahead else []
        parts = []
        if busy:
            parts.append(", ".join(f"{r.id} running (pid {r.pid})" for r in busy))
        if ahead:
            parts.append(f"{len(ahead)} queued ahead")
        return f"run {run_id} waits its turn on {self.device}: {'; '.join(parts) or 'the device is busy'}"

    # ---- both ------------------------------------------------------------------------------------
    def _run(self, run_id: str, resume: bool) -> Outcome:
        stop = StopFlag()
        with self._lock:
            self._running[run_id] = stop
        self.store.fence(run_id, self.id)  # its metrics are written only while we hold it
        try:
            train_fn = self._train_fn or load_trainer()
            return _execute(self.store, run_id, train_fn, stop, resume, worker=self.id)
        except Exception:  # the store itself failed (e.g. disk full): keep the worker alive
            log.exception("run %s: could not record its outcome in %s", run_id, self.store.path)
            return Outcome(run_id, "failed")
        finally:
            self.store.unfence(run_id)
            with self._lock:
                self._running.pop(run_id, None)
                self._lock.notify_all()
                last = self._closed.is_set() and not self._running
            if last:
                self._unregister()

    def _lose(self, run_ids: list[str], why: str, gone: bool = False) -> None:
        """Runs we no longer hold: stop training them without a checkpoint or a status (both may
        belong to another worker now), then tell ``on_lost`` (a worker process exits there).
        ``gone``: our worker row itself expired; without ``on_lost`` we rejoin under a new id."""
        for run_id in run_ids:
            log.warning("worker %s lost its claim on run %s (%s); it stops training it and writes nothing more",
                        self.id, run_id, why)
            with self._lock:
                flag = self._running.get(run_id)
            if flag is not None:
                flag.abandon()
        if self._on_lost is not None:
            self._on_lost(run_ids)
        elif gone:
            old, self.id = self.id, self.store.register_worker(self.device, self.role)
            log.warning("worker %s rejoined as %s", old, self.id)

    def stop_local(self, run_id: str) -> bool:
        """Set the stop event of a run this worker trains (no store round trip). False if not ours."""
        with self._lock:
            ev = self._running.get(run_id)
        if ev is not None:
            ev.set()
        return ev is not None

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def _heartbeat(self) -> None:
        last_renew = time.monotonic()
        while True:
            self._closed.wait(STOP_POLL_S)
            if (self._closed.is_set() and not self.running()) or self.store.closed:
                return
            try:
                with self._lock:
                    mine = dict(self._running)
                for run_id in self.store.pending_stops(list(mine)):
                    mine[run_id].set()
                held: set[str] | None = None
                if time.monotonic() - last_renew >= HEARTBEAT_S:
                    held = self.store.renew_lease(self.id)
                    last_renew = time.monotonic()
                    if held is None:  # our lease ran out (we hung) and another process removed us
                        self._lose(list(mine), "its lease expired", gone=True)
                        continue
                if mine:
                    held = self.store.held_by(self.id, list(mine)) if held is None else held
                    lost = [r for r in mine if r not in held]
                    with self._lock:  # a run that just ended by itself is not lost
                        lost = [r for r in lost if r in self._running]
                    if lost:
                        self._lose(lost, "it was interrupted or claimed by another worker meanwhile")
            except StoreError as e:  # the disk hiccupped: try again next beat, the lease has slack
                log.warning("worker %s heartbeat: %s", self.id, e)
            except Exception:
                log.exception("worker %s heartbeat", self.id)

    def close(self, *, stop_running: bool = False, wait: bool = True) -> None:
        """Take no more runs; ``stop_running``: ask our running runs to stop; ``wait``: until they ended."""
        self._closed.set()
        self._wake.set()
        if stop_running:
            for run_id in self.running():
                self.stop_local(run_id)
                try:
                    self.store.request_stop(run_id, "the worker shut down")
                except StoreError:  # it ended meanwhile
                    pass
        if wait:
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()
        if self.running():  # it unregisters when its last run ends; meanwhile it serves nothing new
            self.store.retire_worker(self.id)
        else:
            self._unregister()

    def _unregister(self) -> None:
        if self.store.closed:
            return
        try:
            self.store.unregister_worker(self.id)
        except StoreError:
            pass


# ---- the app's manager: submit, stop, resume, look ---------------------------------------------------

class RunManager:
    """The app's handle on the queue: worker processes for the devices it serves (started on the
    first run for a device, or all at once by ``serve_all``), and submit/stop/resume/queue over
    the store. Thread-safe.

    ``max_per_device`` (default HFT_RUNS_PER_DEVICE, 1): runs at once per device = worker
    processes per device; on a CPU they split its cores (``placement.threads_per_run``).
    ``devices``: the devices this manager may queue runs for (default: all this process sees).
    ``serve=False``: only queue and control runs; other processes' workers train them.
    ``train_fn``: a training function of your own (a test's fake trainer). A function cannot be
    sent to another process, so such a manager trains in threads of this process instead: its
    runs share this process's random generators and thread pool (fine for fakes, not for
    comparisons). ``processes=True/False`` forces one or the other.
    """

    def __init__(self, store: RunStore, *, train_fn: TrainFn | None = None, max_per_device: int | None = None,
                 devices: Sequence[str] | None = None, serve: bool = True, processes: bool | None = None,
                 warm: bool = True) -> None:
        max_per_device = max_per_device if max_per_device is not None else runs_per_device()
        if max_per_device < 1:
            raise ValueError(f"max_per_device={max_per_device!r}: use 1 or more runs at a time per device")
        self.store = store
        self.max_per_device = max_per_device
        self.serve = serve
        self.devices = [resolve_device(d) for d in (devices or visible_devices())]
        self.processes = (train_fn is None) if processes is None else processes
        if self.processes and train_fn is not None:
            raise ValueError("train_fn= trains in threads of this process; it cannot go to worker processes "
                             "(drop processes=True, or drop train_fn to train with the real trainer in processes)")
        self._train_fn = train_fn
        self._workers: dict[str, Worker] = {}
        self._pool = None
        if self.processes and serve:
            from hft_core.supervisor import WorkerPool

            self._pool = WorkerPool(store, per_device=max_per_device, warm=warm)
        self._submitted: set[str] = set()
        self._lock = threading.RLock()
        self._closed = False
        # runs a dead process left running are shown as interrupted; none restarts by itself
        self.interrupted: list[str] = store.mark_interrupted()

    @property
    def pool(self):
        """The supervisor of this manager's worker processes (None in thread mode or with serve=False)."""
        return self._pool

    # ---- submitting ----------------------------------------------------------------------
    def submit(self, cfg: RunConfig, *, group: str = "", name: str = "", after: Sequence[str] = ()) -> str:
        """Validate, store as "queued" on its device. Returns the run id. ``after``: run ids it waits for."""
        # by name, not isinstance: an app whose modules were reloaded holds RunConfigs of the new class
        if type(cfg).__name__ != "RunConfig" or not hasattr(cfg, "to_dict"):
            raise TypeError(f"submit() takes a RunConfig, got {type(cfg).__name__}; build one with "
                            f"RunConfig(...) or RunConfig.from_dict(...)")
        cfg = RunConfig.from_dict(cfg.to_dict())  # validate again: fields may have been set after construction
        device = self._device(cfg.device)
        with self._lock:
            self._check_open()
            run_id = self.store.create_run(cfg, status="queued", device=device, group=group, name=name, after=after)
            self._submitted.add(run_id)
        self._serve(device)
        return run_id

    def submit_job(self, kind: str, params: Mapping[str, Any], *, group: str = "", name: str = "") -> str:
        """Queue a post-training job (``kind`` "wise_ft", "soup" or "prune"; see hft_core/jobs.py)."""
        from hft_core import jobs

        with self._lock:
            self._check_open()
            run_id = jobs.submit_job(self.store, kind, params, group=group, name=name)
            self._submitted.add(run_id)
        self._serve(self.store.get_run(run_id).device)
        return run_id

    def submit_sweep(self, cfg: RunConfig, grid: dict[str, list], *, group: str = "") -> list[str]:
        """One run per point of the grid's cartesian product (in order), all in one group.

        Keys are dotted config fields: {"mix.blend.alpha": [0, 0.5, 1], "seed": [0, 1]} gives 6
        runs named "alpha=0 seed=0", "alpha=0 seed=1", ... Every config is validated before any
        run is queued.
        """
        if not grid:
            raise ValueError("the sweep grid is empty; give at least one field, e.g. {'seed': [0, 1, 2]}")
        for key, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or not list(values):
                raise ValueError(f"sweep grid {key!r}: give a non-empty list of values, got {values!r}")
        keys = list(grid)
        labels = _short_labels(keys)
        points = list(itertools.product(*(list(grid[k]) for k in keys)))
        group = group or cfg.group or f"sweep-{uuid.uuid4().hex[:4]}"
        planned = []
        for point in points:
            name = " ".join(f"{label}={_fmt(v)}" for label, v in zip(labels, point))
            planned.append((cfg.with_overrides(dict(zip(keys, point))), name))
        with self._lock:  # contiguous positions in the queue
            return [self.submit(c, group=group, name=name) for c, name in planned]

    def resume(self, run_id: str) -> None:
        """Queue a stopped, interrupted or failed run again under the same id (see ``prepare_resume``)."""
        with self._lock:
            self._check_open()
            rec = self.store.get_run(run_id)
            if rec.status in ACTIVE:
                raise RunStateError(f"run {run_id} is already {rec.status}")
            resume = prepare_resume(self.store, run_id)
            self.store.requeue(run_id, resume=resume)
            self._submitted.add(run_id)
        self._serve(rec.device)

    # ---- controlling -------------------------------------------------------------------------
    def stop(self, run_id: str, reason: str = "") -> str:
        """Stop any run, whichever process trains it. Queued: cancelled at once ("cancelled").
        Running: asked to stop; it saves a checkpoint and ends "stopped" within a step or
        STOP_POLL_S ("requested"). Raises UnknownRun (a KeyError), or StoreError when the run has
        already ended or its process is gone, with what to do instead."""
        what = self.store.request_stop(run_id, reason)
        if what == "requested":
            for w in list(self._workers.values()):  # ours: no need to wait for the heartbeat
                if w.stop_local(run_id):
                    break
        return what

    def move(self, run_id: str, position: int) -> None:
        """Put a queued run at ``position`` (0 = next) within its device's queue."""
        self.store.move(run_id, position)

    # ---- looking -------------------------------------------------------------------------------
    def queue(self, device: str | None = None) -> list[str]:
        """Queued run ids in the order they will start (all devices, by device name, when None)."""
        return self.store.queued(None if device is None else resolve_device(device))

    def active(self) -> list[str]:
        """Ids of the runs training now, in any process."""
        self.store.mark_interrupted()
        return [r.id for r in sorted(self.store.list_runs(status="running"), key=lambda r: r.started or 0)]

    def wait(self, run_ids: str | Sequence[str] | None = None, timeout: float | None = None) -> bool:
        """Block until these runs (or all this manager submitted) are neither queued nor running.
        Returns False if ``timeout`` seconds passed first."""
        ids = self._submitted if run_ids is None else ({run_ids} if isinstance(run_ids, str) else set(run_ids))
        return wait_for_runs(self.store, lambda: set(ids), timeout)

    def shutdown(self, wait: bool = False) -> None:
        """Take no more runs. wait=False: cancel the runs this manager queued, ask its running runs to
        stop, return at once. wait=True: let queued and running runs finish, then return."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
        if self.store.closed:
            for w in workers:
                w._closed.set()
            if self._pool is not None:
                self._pool.close()
            return
        if wait:
            self.wait()
        else:
            for run_id in self.store.queued():
                if run_id in self._submitted:
                    try:
                        self.store.request_stop(run_id, "the run manager shut down")
                    except StoreError:
                        pass
        for w in workers:
            w.close(stop_running=not wait, wait=False)
        if self._pool is not None:
            if wait:
                self._pool.close(stop_running=False)
            else:  # the running runs stop after their step, with a checkpoint; do not block the caller
                threading.Thread(target=self._pool.close, name="hft-pool-close", daemon=False).start()

    # ---- inside ------------------------------------------------------------------------------
    def _device(self, device: str) -> str:
        resolved = resolve_device(device)
        if resolved not in self.devices:
            raise DeviceError(f"device {device!r} is not served here; devices: {', '.join(self.devices)}. "
                              f"Pick one of those, or start `hft worker --device {resolved}` where it exists "
                              f"and queue the run there.")
        return resolved

    def _serve(self, device: str) -> None:
        if not self.serve:
            return
        if self._pool is not None:
            self._pool.serve(device)  # its workers see the queued run within their poll (0.1 s)
            return
        with self._lock:
            w = self._workers.get(device)
            if w is None:
                train_fn = self._train_fn
                w = self._workers[device] = Worker(self.store, device, train_fn=train_fn,
                                                   max_per_device=self.max_per_device,
                                                   slots=self.max_per_device, check=False).start()
        w.wake()

    def serve_all(self) -> "RunManager":
        """Start a worker for every device this manager serves now (the app does, at start: runs queued
        by `hft train --detach`, a notebook or an earlier app session are trained without a click)."""
        for device in self.devices:
            self._serve(device)
        return self

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this RunManager was shut down; create a new one to submit runs")

    def warm_up(self, data: Sequence[str] = ("bundled:bbc-news",)) -> threading.Thread:
        """In the background: import the trainer and read ``data`` once (both are cached), so the
        first Start of a fresh app does not wait for them (a few seconds on 2 cores). Errors are
        ignored here: a missing package is reported when a run needs it."""
        def work() -> None:
            try:
                if self._train_fn is None and not self.processes:
                    self._train_fn = load_trainer()
                from hft_core import data as data_sources

                for source in data:
                    data_sources.load_data(source, "classification")
            except Exception:  # noqa: BLE001 - only a warm-up; the run itself reports problems
                log.debug("warm-up failed", exc_info=True)

        t = threading.Thread(target=work, name="hft-warm-up", daemon=True)
        t.start()
        return t


def wait_for_runs(store: RunStore, ids: Callable[[], set[str]], timeout: float | None = None,
                  poll: float = 0.05) -> bool:
    """Poll the store until none of ``ids()`` is queued or running; False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wanted = ids()
        active = {r.id for r in store.list_runs(status=list(ACTIVE))} & wanted
        if not active:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if any(store.get_run(r).status == "running" for r in active):
            store.mark_interrupted()  # a run whose worker died must not keep us waiting
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


# ---- the CLI's and notebooks' way: queue it, wait its turn, train it here -----------------------

def run_here(cfg: RunConfig | None = None, *, resume_id: str | None = None, store: RunStore | None = None,
             sink: Any = None, group: str = "", name: str = "", device: str | None = None,
             train_fn: TrainFn | None = None, on_wait: Callable[[str], None] | None = None,
             on_start: Callable[[str], None] | None = None, handle_ctrl_c: bool = True) -> Outcome:
    """Queue one run (or ``resume_id``) in the store, wait for its device, train it in this thread.

    The run is in the store like any other: the app's Live page shows it while it trains and
    Stop there ends it. ``sink``: an extra MetricSink (a progress bar, a MemorySink for a
    notebook's plots). In the main thread, a first Ctrl-C asks the run to stop (it saves a
    checkpoint and ends "stopped"); a second one interrupts at once. Returns the Outcome
    (status, and the trainer's result with ``.model`` and ``.metrics``).

    The run trains in this process, seeded from its own config: the caller's random generators
    (Python's ``random``, numpy's global one, torch's CPU and CUDA ones) are saved before and
    restored after, so a notebook's own draws go on as if the run had not happened. Its torch
    thread count is left as the caller set it.
    """
    if (cfg is None) == (resume_id is None):
        raise RunStateError("give either a config to train or resume_id of a run to continue")
    own_store = store is None
    store = store if store is not None else RunStore()
    base_train = train_fn or load_trainer()
    if sink is not None:
        from hft_core.sinks import MultiSink

        def trainer(cfg, sink=None, **kw):
            return base_train(cfg, MultiSink(sink, extra_sink), **kw)
        extra_sink = sink
    else:
        trainer = base_train
    if resume_id is not None:
        rec = store.get_run(resume_id)
        if rec.status in ACTIVE:
            raise RunStateError(f"run {resume_id} is {rec.status}, so it cannot be resumed now; "
                             f"`hft stop {resume_id}` first, or wait for it")
        dev = device or rec.device
    else:
        dev = device or resolve_device(cfg.device)
    worker = Worker(store, dev, train_fn=trainer, role="foreground", check=device is None)
    previous_handler = None
    try:
        if resume_id is not None:
            resume = prepare_resume(store, resume_id)
            store.requeue(resume_id, resume=resume, reserved_for=worker.id)
            run_id = resume_id
        else:
            run_id = worker.reserve(cfg, group=group, name=name)
        if on_start is not None:
            on_start(run_id)
        if handle_ctrl_c and threading.current_thread() is threading.main_thread():
            previous_handler = _install_ctrl_c(store, worker, run_id)
        try:
            with callers_generators_kept():
                return worker.work_on([run_id], on_wait=on_wait)[run_id]
        except KeyboardInterrupt:  # the second Ctrl-C: no checkpoint of this attempt, say so
            if store.get_run(run_id).status in ACTIVE:
                store.flush()
                store.set_status(run_id, "interrupted", error="interrupted from the keyboard before it could save "
                                 "a checkpoint; resume continues from the last periodic checkpoint, if any")
            raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        worker.close(wait=False)
        if own_store:
            store.close()


@contextlib.contextmanager
def callers_generators_kept() -> Iterator[None]:
    """Save the process's global random generators and restore them on the way out."""
    import random

    saved: list[tuple[Callable[[Any], Any], Any]] = [(random.setstate, random.getstate())]
    np = sys.modules.get("numpy")
    if np is not None:
        saved.append((np.random.set_state, np.random.get_state()))
    torch = sys.modules.get("torch")
    if torch is not None:
        saved.append((torch.set_rng_state, torch.get_rng_state()))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            saved.append((torch.cuda.set_rng_state_all, torch.cuda.get_rng_state_all()))
    try:
        yield
    finally:
        for restore, state in saved:
            restore(state)


def _install_ctrl_c(store: RunStore, worker: Worker, run_id: str):
    """First Ctrl-C: a stop request (checkpoint, "stopped"). Second: the default KeyboardInterrupt."""
    previous = signal.getsignal(signal.SIGINT)

    def on_ctrl_c(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"\nstopping run {run_id} after this step (Ctrl-C again to abort at once)", file=sys.stderr)
        worker.stop_local(run_id)
        try:
            store.request_stop(run_id, "Ctrl-C in its terminal")
        except StoreError:
            pass

    signal.signal(signal.SIGINT, on_ctrl_c)
    return previous


def _short_labels(keys: list[str]) -> list[str]:
    """Last part of each dotted key ("mix.blend.alpha" -> "alpha"), the full key where that is ambiguous."""
    last = [k.split(".")[-1] for k in keys]
    counts = Counter(last)
    return [lab if counts[lab] == 1 else k for k, lab in zip(keys, last)]


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---- python -m hft_core.runs --------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hft_core.runs",
                                description="Train one run that is already in the store, in this process.")
    p.add_argument("--run-id", required=True)
    p.add_argument("--home", default=None, help="the store's folder (default: $HFT_HOME)")
    args = p.parse_args(argv)
    store = RunStore(args.home)
    try:
        rec = store.get_run(args.run_id)
        if rec.status == "queued":  # claim it for a foreground worker of this process
            worker = Worker(store, rec.device, role="foreground")
            try:
                store.reserve(args.run_id, worker.id)
                outcome = worker.work_on([args.run_id])[args.run_id]
            finally:
                worker.close(wait=False)
        else:
            outcome = run_here(resume_id=args.run_id, store=store)
        rec = store.get_run(args.run_id)
        print(f"run {args.run_id} {outcome.status}" + (f": {rec.error}" if rec.error else ""))
        return 0 if outcome.status != "failed" else 1
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
