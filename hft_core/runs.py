"""RunManager: runs train in background threads, one queue per device.

    manager = RunManager(RunStore())
    run_id = manager.submit(cfg)            # stored as "queued"; starts when its device is free
    manager.stop(run_id)                    # running: stops within one step (checkpoint kept)
    manager.resume(run_id)                  # same id, the curve continues from the checkpoint

One manager per app process, shared by every browser session (``st.cache_resource``);
every method is thread-safe. Each device ("cpu", "cuda:0", ...) has a FIFO queue and
``max_per_device`` worker threads (1 by default: one run at a time per device, the
rest wait visibly as "queued"). A worker calls
``train_fn(cfg, sink=store.sink(id), stop=event, out_dir=store.run_dir(id), resume=...)``
and records the outcome: finished, stopped, or failed with the error and traceback.

The store is the only channel to the pages: workers never touch Streamlit (this module
never imports it), pages only read the store and ``queue()`` / ``active()``.

Also a command, to run one stored run in its own process:

    python -m hft_core.runs --run-id r-3f9a2c [--home DIR] [--resume]
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hft_core.config import RunConfig
from hft_core.store import RunStore, StoreError

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]
STATE_FILE = "trainer_state.pt"   # = hft_core.trainer.STATE_FILE (not imported: that pulls in the whole trainer)
RESUMABLE = ("stopped", "interrupted", "failed")


def resolve_device(device: str) -> str:
    """The queue a config's device lands in: "auto" -> "cuda:0" if a GPU is visible else "cpu"; "cuda" -> "cuda:0"."""
    if device == "auto":
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return "cuda:0"
    return device


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
    rec = store.get_run(run_id)
    if rec.status not in RESUMABLE:
        raise ValueError(f"run {run_id} is {rec.status}; only {', '.join(RESUMABLE)} runs can be resumed")
    from hft_core.trainer import recover_checkpoint

    recover_checkpoint(store.run_dir(run_id))
    step = checkpoint_step(store.run_dir(run_id))
    if step is None:
        if rec.status == "failed":
            raise ValueError(f"run {run_id} failed before saving a checkpoint, so there is nothing to resume; "
                             f"fix the cause ({rec.error}) and submit its config again")
        store.truncate_metrics(run_id)
        store.log_event(run_id, "no checkpoint to resume from: training starts again from step 0", "warning")
        return False
    store.truncate_metrics(run_id, after_step=step)
    store.log_event(run_id, f"resuming from the checkpoint at step {step}")
    return True


def execute_run(store: RunStore, run_id: str, train_fn: TrainFn, stop: threading.Event | None = None,
                resume: bool = False) -> str:
    """Train one stored run in this thread and record the outcome. Returns the final status.

    Never raises for a training failure: the run ends "failed" with ``error`` = "Type: message",
    the traceback stored and an error event logged. Metrics are flushed before the final
    status is written, so a reader that sees "finished" also sees every metric.
    """
    stop = stop or threading.Event()
    if stop.is_set():
        store.set_status(run_id, "stopped")
        return "stopped"
    store.set_status(run_id, "running")
    try:
        cfg = store.get_run(run_id).cfg
        result = train_fn(cfg, sink=store.sink(run_id), stop=stop, out_dir=store.run_dir(run_id), resume=resume)
    except Exception as e:
        message = f"{type(e).__name__}: {e}"
        store.log_event(run_id, message, "error")
        store.flush()
        ckpt = store.run_dir(run_id) / "checkpoint"
        store.set_status(run_id, "failed", error=message, traceback=traceback.format_exc(),
                         checkpoint_dir=ckpt if ckpt.is_dir() else None)
        return "failed"
    status = getattr(result, "status", "finished")
    if status not in ("finished", "stopped"):
        status = "finished"
    store.flush()
    store.set_status(run_id, status, checkpoint_dir=getattr(result, "checkpoint", None))
    return status


_IMPORT_LOCK = threading.Lock()


class RunManager:
    def __init__(self, store: RunStore, *, train_fn: TrainFn | None = None, max_per_device: int = 1) -> None:
        if max_per_device < 1:
            raise ValueError(f"max_per_device={max_per_device!r}: use 1 or more runs at a time per device")
        self.store = store
        self.max_per_device = max_per_device
        self._train_fn = train_fn
        self._cond = threading.Condition(threading.RLock())  # guards everything below
        self._queues: dict[str, list[str]] = {}              # device -> queued run ids, in order
        self._resume: dict[str, bool] = {}                    # queued run id -> resume flag
        self._stops: dict[str, threading.Event] = {}          # queued or running run id -> its stop event
        self._running: dict[str, str] = {}                    # running run id -> device
        self._workers: dict[str, list[threading.Thread]] = {}
        self._closed = False
        # runs a dead process left running/queued are shown as interrupted; none restarts by itself
        self.interrupted: list[str] = store.mark_interrupted()

    # ---- submitting ----------------------------------------------------------------------
    def submit(self, cfg: RunConfig, *, group: str = "", name: str = "") -> str:
        """Validate, store as "queued" and put in its device's queue. Returns the run id."""
        # by name, not isinstance: an app whose modules were reloaded holds RunConfigs of the new class
        if type(cfg).__name__ != "RunConfig" or not hasattr(cfg, "to_dict"):
            raise TypeError(f"submit() takes a RunConfig, got {type(cfg).__name__}; build one with "
                            f"RunConfig(...) or RunConfig.from_dict(...)")
        cfg = RunConfig.from_dict(cfg.to_dict())  # validate again: fields may have been set after construction
        self._load_train_fn()
        device = resolve_device(cfg.device)
        with self._cond:
            self._check_open()
            run_id = self.store.create_run(cfg, status="queued", device=device, group=group, name=name)
            self._enqueue(run_id, device, resume=False)
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
        with self._cond:  # contiguous in the queue even when other sessions submit meanwhile
            return [self.submit(c, group=group, name=name) for c, name in planned]

    def resume(self, run_id: str) -> None:
        """Queue a stopped, interrupted or failed run again under the same id (see ``prepare_resume``)."""
        self._load_train_fn()
        with self._cond:
            self._check_open()
            if run_id in self._running or self._queued_device(run_id):
                raise ValueError(f"run {run_id} is already {'running' if run_id in self._running else 'queued'}")
            resume = prepare_resume(self.store, run_id)
            self.store.set_status(run_id, "queued")
            self._enqueue(run_id, self.store.get_run(run_id).device, resume=resume)

    # ---- controlling -------------------------------------------------------------------------
    def stop(self, run_id: str) -> None:
        """Running: ask it to stop (it checks between steps, saves a checkpoint, ends "stopped").
        Queued: cancel it (ends "stopped" without training). Finished runs: nothing to do."""
        with self._cond:
            device = self._queued_device(run_id)
            if device:
                self._queues[device].remove(run_id)
                self._resume.pop(run_id, None)
                self._stops.pop(run_id, None)
                self.store.log_event(run_id, "cancelled while queued")
                self.store.set_status(run_id, "stopped")
                self._cond.notify_all()
                return
            if run_id in self._running:
                self._stops[run_id].set()
                return
        rec = self.store.get_run(run_id)  # unknown id -> UnknownRun
        if rec.status in ("running", "queued"):
            raise StoreError(f"run {run_id} is {rec.status} in another process (pid {rec.pid} on {rec.host}); "
                             f"stop it there (Ctrl+C in its terminal)")

    def move(self, run_id: str, position: int) -> None:
        """Put a queued run at ``position`` (0 = next) within its device's queue."""
        with self._cond:
            device = self._queued_device(run_id)
            if not device:
                raise ValueError(f"run {run_id} is not queued here, so it cannot be moved; queued: {self.queue()}")
            q = self._queues[device]
            q.remove(run_id)
            q.insert(max(0, min(int(position), len(q))), run_id)
            self.store.set_positions(q)

    # ---- looking -------------------------------------------------------------------------------
    def queue(self, device: str | None = None) -> list[str]:
        """Queued run ids in the order they will start (all devices, by device name, when None)."""
        with self._cond:
            if device is not None:
                return list(self._queues.get(resolve_device(device), []))
            return [r for d in sorted(self._queues) for r in self._queues[d]]

    def active(self) -> list[str]:
        """Ids of the runs training now."""
        with self._cond:
            return list(self._running)

    def wait(self, run_ids: str | Sequence[str] | None = None, timeout: float | None = None) -> bool:
        """Block until these runs (or all this manager has) are neither queued nor running.
        Returns False if ``timeout`` seconds passed first."""
        ids = None if run_ids is None else ({run_ids} if isinstance(run_ids, str) else set(run_ids))
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                pending = set(self._running) | {r for q in self._queues.values() for r in q}
                if ids is not None:
                    pending &= ids
                if not pending:
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def shutdown(self, wait: bool = False) -> None:
        """Take no more runs. wait=False: cancel the queued runs, ask running ones to stop, return at
        once. wait=True: let queued and running runs finish, then return."""
        with self._cond:
            self._closed = True
            if not wait:
                for q in self._queues.values():
                    for run_id in q:
                        self.store.log_event(run_id, "cancelled: the run manager shut down")
                        self.store.set_status(run_id, "stopped")
                        self._resume.pop(run_id, None)
                        self._stops.pop(run_id, None)
                    q.clear()
                for run_id in self._running:
                    self._stops[run_id].set()
            self._cond.notify_all()
            workers = [t for ts in self._workers.values() for t in ts]
        if wait:
            for t in workers:
                t.join()

    # ---- inside ------------------------------------------------------------------------------
    def _load_train_fn(self) -> None:
        # The trainer's first import of accelerate & co. must not happen in two threads at once.
        with _IMPORT_LOCK:
            if self._train_fn is None:
                from hft_core.trainer import train

                self._train_fn = train

    def warm_up(self, data: Sequence[str] = ("bundled:bbc-news",)) -> threading.Thread:
        """In the background: import the trainer and read ``data`` once (both are cached), so the
        first Start of a fresh app does not wait for them (a few seconds on 2 cores). Errors are
        ignored here: a missing package is reported when a run needs it."""
        def work() -> None:
            try:
                self._load_train_fn()
                from hft_core import data as data_sources

                for source in data:
                    data_sources.load_data(source, "classification")
            except Exception:  # noqa: BLE001 - only a warm-up; the run itself reports problems
                log.debug("warm-up failed", exc_info=True)

        t = threading.Thread(target=work, name="hft-warm-up", daemon=True)
        t.start()
        return t

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this RunManager was shut down; create a new one to submit runs")

    def _queued_device(self, run_id: str) -> str | None:
        return next((d for d, q in self._queues.items() if run_id in q), None)

    def _enqueue(self, run_id: str, device: str, resume: bool) -> None:
        q = self._queues.setdefault(device, [])
        q.append(run_id)
        self._resume[run_id] = resume
        self._stops[run_id] = threading.Event()
        workers = self._workers.setdefault(device, [])
        workers[:] = [t for t in workers if t.is_alive()]
        while len(workers) < self.max_per_device:
            t = threading.Thread(target=self._work, args=(device,), daemon=True,
                                 name=f"hft-run-worker:{device}:{len(workers)}")
            workers.append(t)
            t.start()
        self._cond.notify_all()

    def _work(self, device: str) -> None:
        """A worker: take the next run of this device's queue, train it, repeat.
        Daemon thread: if the app exits mid-run, the run is marked interrupted at the next start."""
        while True:
            with self._cond:
                while not self._queues[device] and not self._closed:
                    self._cond.wait()
                if not self._queues[device]:
                    return
                run_id = self._queues[device].pop(0)
                resume = self._resume.pop(run_id, False)
                stop = self._stops[run_id]
                self._running[run_id] = device
            try:
                execute_run(self.store, run_id, self._train_fn, stop, resume)
            except Exception:  # the store itself failed (e.g. disk full): keep the worker alive
                log.exception("run %s: could not record its outcome in %s", run_id, self.store.path)
            finally:
                with self._cond:
                    self._running.pop(run_id, None)
                    self._stops.pop(run_id, None)
                    self._cond.notify_all()


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
    p.add_argument("--resume", action="store_true", help="continue a stopped/interrupted run from its checkpoint")
    args = p.parse_args(argv)
    from hft_core.trainer import train

    store = RunStore(args.home)
    try:
        resume = prepare_resume(store, args.run_id) if args.resume else False
        status = execute_run(store, args.run_id, train, resume=resume)
        rec = store.get_run(args.run_id)
        print(f"run {args.run_id} {status}" + (f": {rec.error}" if rec.error else ""))
        return 0 if status != "failed" else 1
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
