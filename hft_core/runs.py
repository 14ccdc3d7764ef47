"""Runs through one queue in the store: workers claim them, anyone can stop them.

    manager = RunManager(RunStore())        # the app: worker processes for the devices it serves
    run_id = manager.submit(cfg)            # stored as "queued"; a worker claims it when its device is free
    manager.stop(run_id)                    # ANY run, trained by any process: a stop request in the store
    manager.resume(run_id)                  # same id, the curve continues from the checkpoint

    result = run_here(cfg)                  # CLI and notebooks: queue it, wait its turn, train it here

The queue, the claims and the stop requests are rows in the SQLite store (the control plane,
hft_core/control.py), so the app, a CLI run, `hft worker` in a terminal and a notebook share
one truth:

* a **worker** (hft_core/worker.py) serves one device: it claims the next queued run
  atomically, renews a lease while it trains and sees stop requests within STOP_POLL_S;
  a stop ends the run "stopped" (or "pruned") with a checkpoint.
* the app's workers are **processes** (hft_core/supervisor.py, hft_core/worker_process.py),
  one per slot of each device, each training one run at a time on its main thread: a run's
  numbers depend on its config alone, a crash stays in its process, the server never trains.
* a worker that dies loses its runs at once on this host; one that hangs, when its lease
  expires (LEASE_S); they show "interrupted", resumable, and the device's next run starts.
* on a CPU (HFT_RUNS_PER_DEVICE=auto, the default) its cores are a budget the running runs
  share, across all processes: a group's run takes its shape's measured thread count, a lone
  run every core (schedule.py); on a GPU one run at a time. ``HFT_RUNS_PER_DEVICE=N`` or
  ``max_per_device`` fixes the number of runs per device instead.
* a "general" worker (the app's, `hft worker`) trains any run of its device; a "foreground"
  worker (`hft train`, ``run_here``, presets from the CLI) only the runs it queued itself.

Every job is a run with a record: training runs, the post-training jobs of hft_core/jobs.py
(WiSE-FT, soups, pruning) and the time estimate's probes. Failures keep their traceback.
Workers never touch Streamlit (this module never imports it); pages only read the store.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from hft_core.config import RunConfig
from hft_core.placement import DeviceError, resolve_device, visible_devices
from hft_core.control import RESUMABLE
from hft_core.store import RunStore, StoreError
from hft_core.worker import (ACTIVE, CLAIM_POLL_S, STOP_POLL_S, Outcome, TrainFn, Worker,  # noqa: F401
                             cpu_budget, load_trainer, runs_per_device)

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"   # = hft_core.trainer.STATE_FILE (not imported: that pulls in the whole trainer)


class RunStateError(ValueError):
    """The run is not in a state for what was asked (resume a running run, a failed run without checkpoint)."""


__all__ = ["RunManager", "Worker", "run_here", "prepare_resume", "checkpoint_step", "runs_per_device",
           "resolve_device", "DeviceError", "STOP_POLL_S", "CLAIM_POLL_S"]



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


# ---- the app's manager: submit, stop, resume, look ---------------------------------------------------

class RunManager:
    """The app's handle on the queue: worker processes for the devices it serves (started on the
    first run for a device, or all at once by ``serve_all``), and submit/stop/resume/queue over
    the store. Thread-safe.

    ``max_per_device`` (default: HFT_RUNS_PER_DEVICE, "auto": one worker process per core of a CPU
    sharing its cores as the runs' measured shapes say, one per GPU): runs at once per device =
    worker processes per device; with a number they split a CPU's cores (``threads_per_run``).
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
        auto = max_per_device is None
        in_threads = (train_fn is not None) if processes is None else not processes
        if auto and in_threads and cpu_budget("cpu"):
            max_per_device = 1  # threads of one process share its torch thread pool: one run at a time
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

            self._pool = WorkerPool(store, per_device=None if auto else max_per_device, warm=warm)
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
