"""The app's worker processes: started with it, restarted when they die, stopped with it.

    pool = WorkerPool(store, per_device=2)   # HFT_RUNS_PER_DEVICE=2: two processes per device
    pool.serve("cpu")                        # starts the cpu's workers (warm, then they claim runs)
    pool.close()                             # SIGTERM: running runs stop with a checkpoint; then exit

Each worker runs ``hft_core.worker_process`` (the program `hft worker` runs too), forked from
a fork server that has torch and the trainer imported (hft_core/forkserver.py), so the
server process never trains: it writes requests into the store and reads results.

A thread of the supervising process watches the workers every POLL_S:
* a worker that **died of a signal** (a segfault or abort in native code, the OOM killer):
  the run it trained ends "failed" with the signal named, and a new worker starts;
* a worker that **hung** (SIGSTOP, a deadlock): once its lease expired and the store
  removed it, it is killed and replaced (its run shows "interrupted", resumable);
* a worker that exits by itself (it lost its claim) is replaced. A worker that keeps dying
  right after its start is restarted with a growing delay (at most MAX_BACKOFF_S), and the
  reason is in its log, ``$HFT_HOME/logs/worker-<device>-<slot>.log``.

CPU threads: ``per_device=None`` (HFT_RUNS_PER_DEVICE=auto): one worker per core, sharing the
cores as a budget (each run trains with the threads it claimed, schedule.py); a number N: the
cores split between N workers (``threads_per_run``);
a GPU worker gets its card alone through CUDA_VISIBLE_DEVICES (``placement.pin_env``): the
queue "cuda:N" is the host's GPU N, pinned by its UUID where known, whatever the app's own
CUDA_VISIBLE_DEVICES.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hft_core.control import signal_name
from hft_core.placement import pin_env, threads_per_run

log = logging.getLogger(__name__)

POLL_S = 0.25            # how often the workers are looked at
EXPIRE_EVERY_S = 1.0     # how often dead workers' runs are marked interrupted (a write)
MAX_BACKOFF_S = 30.0     # the longest wait before restarting a worker that keeps dying at start
STOP_GRACE_S = 30.0      # at close: how long a running run has to save its checkpoint before SIGKILL


@dataclass
class Slot:
    device: str
    index: int
    proc: Any = None              # a ForkedProcess (hft_core/forkserver.py)
    started: float = 0.0
    last_alive: float = 0.0
    registered: bool = False      # seen in the store's workers table (warm, serving)
    failures: int = 0             # deaths in a row soon after start
    not_before: float = 0.0       # restart no earlier than this (backoff)
    log_path: Path | None = None
    deaths: list[str] = field(default_factory=list)


_FORK_SERVER: Any = None


def _fork_server() -> Any:
    """One fork server per supervising process (hft_core/forkserver.py): torch and the trainer
    imported once, each worker forked from it in a fraction of a second."""
    global _FORK_SERVER
    if _FORK_SERVER is None:
        from hft_core.forkserver import ForkServer

        _FORK_SERVER = ForkServer()
    return _FORK_SERVER


class WorkerPool:
    """Worker processes per device for one store; thread-safe."""

    def __init__(self, store: Any, *, per_device: int | None = 1, warm: bool = True,
                 extra_env: dict[str, str] | None = None) -> None:
        from hft_core.worker_process import worker_nice

        worker_nice()  # a bad HFT_WORKER_NICE stops here, with what to set, not in each worker at its start
        self.store = store
        # None: HFT_RUNS_PER_DEVICE=auto, per device (a CPU: one worker per core, the cores shared as a
        # budget by the runs' measured shapes, schedule.py; a GPU: one)
        self.per_device = None if per_device is None else max(1, int(per_device))
        self.warm = warm
        self.extra_env = dict(extra_env or {})
        self._slots: dict[tuple[str, int], Slot] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.close)

    # ---- starting -------------------------------------------------------------------------
    def serve(self, device: str) -> None:
        """Start ``device``'s worker processes (if not started yet)."""
        with self._lock:
            if self._closing.is_set():
                return
            for k in range(self.slots_for(device)):  # started by the watcher thread: never blocks the caller
                self._slots.setdefault((device, k), Slot(device, k))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="hft-supervisor", daemon=True)
                self._thread.start()

    def slots_for(self, device: str) -> int:
        """Worker processes for ``device``."""
        from hft_core.worker import runs_per_device

        return self.per_device or runs_per_device(device)

    def budget_for(self, device: str) -> int:
        """The cores its workers share as a budget (auto on a CPU), else 0."""
        from hft_core.worker import cpu_budget

        return cpu_budget(device) if self.per_device is None else 0

    def _threads(self, device: str) -> int:
        if device == "cpu":
            return threads_per_run(self.slots_for(device))
        devices = {d for d, _ in self._slots}
        return threads_per_run(self.slots_for(device) * max(1, len(devices)))

    def _start(self, slot: Slot) -> None:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["HFT_HOME"] = str(self.store.home)
        threads = self._threads(slot.device)
        env["OMP_NUM_THREADS"] = str(threads)
        env.update(pin_env(slot.device))  # a GPU worker sees its card alone, by UUID where known (placement.py)
        argv = ["--home", str(self.store.home), "--device", slot.device, "--threads", str(threads),
                "--max-running", str(self.slots_for(slot.device)), "--budget", str(self.budget_for(slot.device)),
                "--parent", str(os.getpid())]
        if not self.warm:
            argv.append("--no-warm")
        logs = Path(self.store.home) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        slot.log_path = logs / f"worker-{slot.device.replace(':', '')}-{slot.index}.log"
        slot.proc = _fork_server().spawn(argv, env, str(slot.log_path))
        slot.started = slot.last_alive = time.time()
        slot.registered = False

    # ---- watching ----------------------------------------------------------------------------
    def _watch(self) -> None:
        last_expire = 0.0
        while True:
            try:
                self._check_exits()  # first: starts the workers of a device just served
                if time.monotonic() - last_expire >= EXPIRE_EVERY_S:
                    last_expire = time.monotonic()
                    self.store.mark_interrupted()
                    self._check_hung()
            except Exception:  # the supervisor must outlive a store hiccup
                log.exception("worker supervisor")
            if self._closing.wait(POLL_S):
                return

    def _check_hung(self) -> None:
        """A worker whose row the store removed (lease expired) but whose process is still there hung."""
        registered = {w["pid"] for w in self.store.workers()}
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            proc = slot.proc
            if proc is None or not proc.is_alive():
                continue
            if proc.pid in registered:
                slot.registered = True
                slot.last_alive = time.time()
            elif slot.registered:
                log.warning("worker pid %s (%s) stopped answering for longer than its lease: killing it, starting "
                            "another", proc.pid, slot.device)
                proc.kill()

    def _check_exits(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            proc = slot.proc
            if proc is None:
                if not self._closing.is_set() and time.time() >= slot.not_before:
                    self._start(slot)  # only this thread starts workers (the first start waits for the fork server)
                continue
            rc = proc.exitcode
            if rc is None:
                continue
            now = time.time()
            if rc < 0 and -rc not in (signal.SIGKILL, signal.SIGTERM):
                why = (f"the worker process (pid {proc.pid}) training it was killed by {signal_name(-rc)}: a crash "
                       f"in native code (a kernel, a driver, memory). The app and other runs are unaffected; the "
                       f"worker's log is {slot.log_path}")
                failed = self.store.fail_runs_of_dead_process(proc.pid, why, since=slot.last_alive - 2.0)
                slot.deaths.append(f"{signal_name(-rc)} ({', '.join(failed) or 'no run'})")
            else:  # killed as hung (SIGKILL), or exited by itself: its runs are resumable ("interrupted")
                self.store.mark_interrupted()
            lived = now - slot.started
            slot.failures = slot.failures + 1 if lived < 30 else 0
            slot.not_before = now + (min(MAX_BACKOFF_S, 2.0 ** (slot.failures - 1)) if slot.failures else 0.0)
            slot.proc = None
            if slot.failures:
                log.warning("worker for %s exited with %s after %.0f s; restarting in %.0f s (log: %s)",
                            slot.device, rc, lived, slot.not_before - now, slot.log_path)

    # ---- looking and closing --------------------------------------------------------------------
    def processes(self) -> list[tuple[str, int, int]]:
        """(device, slot, pid) of the live worker processes."""
        with self._lock:
            return [(s.device, s.index, s.proc.pid) for s in self._slots.values()
                    if s.proc is not None and s.proc.is_alive()]

    def ready(self, device: str | None = None) -> bool:
        """All workers (of ``device``) are warm and registered in the store."""
        pids = {w["pid"] for w in self.store.workers()}
        with self._lock:
            slots = [s for s in self._slots.values() if device is None or s.device == device]
        return bool(slots) and all(s.proc is not None and s.proc.pid in pids for s in slots)

    def close(self, stop_running: bool = True, timeout: float = STOP_GRACE_S) -> None:
        """Stop every worker: SIGTERM (a running run stops after its step, with a checkpoint; with
        ``stop_running=False`` it is left to finish first), then SIGKILL after ``timeout``."""
        with self._lock:
            if self._closing.is_set() and not any(s.proc for s in self._slots.values()):
                return
            self._closing.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)  # no worker starts after this
        with self._lock:
            procs = [s.proc for s in self._slots.values() if s.proc is not None]
        if not stop_running:  # let what trains finish: wait until no worker holds a run
            pids = {p.pid for p in procs if p.is_alive()}
            while not self.store.closed and any(r.pid in pids for r in self.store.list_runs(status="running")):
                time.sleep(0.2)
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(10)
        with self._lock:
            for s in self._slots.values():
                s.proc = None
