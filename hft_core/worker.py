"""A worker: it claims the queued runs of one device from the store and trains them, one at a time.

    worker = Worker(store, "cpu")                    # registers in the store, renews its lease
    worker.serve_forever()                           # a worker process's main thread (hft_core/worker_process.py)
    outcome = worker.work_on([run_id])               # a CLI or notebook training the run it queued itself

A heartbeat thread renews the worker's lease every HEARTBEAT_S, turns stop requests into
the runs' stop events within STOP_POLL_S, and notices when the worker lost its claim on a
run (it hung longer than its lease): that run is abandoned, writing nothing more.
``_execute`` trains one claimed run and records how it ended, fenced by the claim.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from hft_core.config import RunConfig
from hft_core.control import HEARTBEAT_S, Claim, ClaimLost
from hft_core.placement import DeviceError, cpu_cores, device_label, resolve_device, threads_per_run, visible_devices
from hft_core.store import RunStore, StoreError

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]
ACTIVE = ("queued", "running")
STOP_POLL_S = 0.5    # a stop request from another process is seen within this (or the current step)
CLAIM_POLL_S = 0.5   # an idle worker claims this often while runs wait that it could not take


def runs_per_device(device: str = "cpu") -> int:
    """How many runs may train at once on one device, across processes: HFT_RUNS_PER_DEVICE, a whole
    number of at least 1, or "auto" (the default): on a CPU up to one per core (at most
    schedule.MAX_SIDE_BY_SIDE), sharing the cores by the thread counts measured for their shapes
    (``cpu_budget``, schedule.py); one per GPU."""
    from hft_core.schedule import MAX_SIDE_BY_SIDE, auto

    raw = os.environ.get("HFT_RUNS_PER_DEVICE", "auto")
    if auto():
        return min(cpu_cores(), MAX_SIDE_BY_SIDE) if resolve_device(device) == "cpu" else 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"HFT_RUNS_PER_DEVICE={raw!r}: use a whole number of at least 1, or auto (the default: "
                         "on a CPU, runs side by side as their measured shapes say)")
    return n


def cpu_budget(device: str) -> int:
    """The cores the runs of ``device`` share under HFT_RUNS_PER_DEVICE=auto: each run claims its
    share (control.claim); 0 when runs are counted instead (a GPU, or a number set)."""
    from hft_core.schedule import auto

    return cpu_cores() if auto() and resolve_device(device) == "cpu" else 0


def lone_run_threads(device: str = "cpu") -> int:
    """Torch threads of a run that trains on its own (not part of a group): every core under auto,
    else the share HFT_RUNS_PER_DEVICE leaves it (placement.threads_per_run)."""
    if resolve_device(device) != "cpu":
        return threads_per_run(1)
    return cpu_cores() if cpu_budget(device) else threads_per_run(runs_per_device(device))


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
    threads = 0       # set by the heartbeat when the run may take more cores (Worker._widen); the trainer applies it

    def abandon(self) -> None:
        self.abandoned = True
        self.set()


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
                    + (f" by worker {worker}" if worker else "") + f" on {device_label(rec.device)}")
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


@contextlib.contextmanager
def _torch_threads_set(n: int):
    """Train with ``n`` torch threads (0: leave them), then restore the process's count."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
                 on_lost: Callable[[list[str]], None] | None = None, budget: int | None = None) -> None:
        self.store = store
        self.device = resolve_device(device)
        if check and self.device not in visible_devices():
            raise DeviceError(f"device {device!r} does not exist in this process; devices here: "
                              f"{', '.join(visible_devices())}")
        self.role = role
        self.slots = max(1, int(slots))
        # the CPU's cores as a budget (auto): only where the claimed run's thread count can be set,
        # i.e. one run at a time in this process; with a count given, runs are counted instead
        if budget is None:
            budget = cpu_budget(self.device) if max_per_device is None and self.slots == 1 else 0
        if max_per_device is None and self.slots > 1 and cpu_budget(self.device):
            max_per_device = 1  # threads of one process share one torch thread pool: one run at a time
        self.budget = budget
        self.max_per_device = max_per_device or runs_per_device(self.device)
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
            claim = self._claim_or_wait(idle_poll)
            if claim is not None:
                seen = None  # after a run, look again at once
                self._run(claim.run_id, claim.resume, claim.threads)

    def _serve(self) -> None:
        while not self._closed.is_set():
            if self.store.closed:  # the store went away under us (its owner closed it): nothing to serve
                self._closed.set()
                return
            claim = self._claim_or_wait(CLAIM_POLL_S)
            if claim is not None:
                self._run(claim.run_id, claim.resume, claim.threads)

    def _claim_or_wait(self, wait_s: float) -> Claim | None:
        """Claim the device's next run for this worker; with none to take (or the store unreadable for
        a moment, logged), wait up to ``wait_s`` for a ``wake`` and return None."""
        try:
            claim = self.store.claim(self.id, self.device, max_running=self.max_per_device, budget=self.budget,
                                     whole=self.role == "foreground")
        except StoreError as e:
            log.warning("worker %s: cannot claim from %s: %s", self.id, self.store.path, e)
            claim = None
        if claim is None:
            self._wake.wait(wait_s)
            self._wake.clear()
        return claim

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
            claim = self.store.claim(self.id, self.device, max_running=self.max_per_device, budget=self.budget,
                                     whole=self.role == "foreground")
            if claim is not None and claim.run_id in pending:
                outcomes[claim.run_id] = self._run(claim.run_id, claim.resume, claim.threads)
                pending.remove(claim.run_id)
                continue
            if claim is not None:  # reserved for us by someone else's call: train it anyway, it is ours
                self._run(claim.run_id, claim.resume, claim.threads)
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
    def _run(self, run_id: str, resume: bool, threads: int = 0) -> Outcome:
        """Train a claimed run here; ``threads``: the cores it claimed (a CPU's budget), its torch threads."""
        stop = StopFlag()
        with self._lock:
            self._running[run_id] = stop
        self.store.fence(run_id, self.id)  # its metrics are written only while we hold it
        try:
            train_fn = self._train_fn or load_trainer()
            with _torch_threads_set(threads if self.budget else 0):
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

    def _widen(self, mine: Mapping[str, StopFlag]) -> None:
        """Our run may use cores that fell free at a group's tail (control.widen); at most one beat's
        read when it may not."""
        for run_id, flag in mine.items():
            if flag.threads >= self.budget or flag.is_set():
                continue
            new = self.store.widen(run_id, self.id, self.device, self.budget)
            if new:
                flag.threads = new

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
                if mine and self.budget and self.slots == 1:
                    self._widen(mine)
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
