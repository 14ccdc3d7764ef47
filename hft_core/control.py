"""The control plane: who trains what. Workers, claims, leases and stop requests are rows of
the run store (hft_core/store.py), so the app, a CLI run, `hft worker` in a terminal and a
notebook see and control the same runs.

    worker = store.register_worker("cpu")        # a row with a lease; renew it every HEARTBEAT_S
    claim = store.claim(worker, "cpu")            # queued -> running, owned by that worker
    store.set_status(run, "finished", worker=worker)   # the end of the claim: refused if it was lost

Every transition is a compare-and-set in one ``BEGIN IMMEDIATE`` transaction: it checks the
run's status (and, for the end of a run, the worker that holds it) and changes it together.
So two workers never hold one run, a run that ended never goes back to running, and a
worker whose claim was taken away (its lease expired while it hung) cannot write the run's
status or metrics any more (``ClaimLost``; see ``RunStore.fence``).

Liveness: a worker is alive while its process exists (pid and start time, on this host)
**and** its lease has not expired. A killed process shows at once; a hung one (SIGSTOP,
a deadlock) loses its runs when its lease runs out, LEASE_S after its last heartbeat.
The heartbeat uses its own connection with a short busy timeout, so it never waits on
another writer for longer than the lease.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from hft_core.errors import StoreError

log = logging.getLogger(__name__)

LEASE_S = 8.0        # a worker that stops renewing (killed, hung, powered off) loses its runs this long after
HEARTBEAT_S = 2.0    # how often a worker renews its lease
LEASE_BUSY_MS = 1000  # the heartbeat waits at most this for another writer (then tries again at the next beat)
RESUMABLE = ("stopped", "interrupted", "failed", "pruned")


class ClaimLost(StoreError):
    """A worker tried to end or write a run it no longer holds (its lease expired, the run was
    interrupted or claimed by another worker meanwhile). Nothing was written."""


@dataclass(frozen=True)
class Claim:
    """A run a worker has just claimed (it is "running" now, owned by that worker)."""
    run_id: str
    resume: bool     # continue from its checkpoint
    kind: str        # train | wise_ft | soup | prune
    threads: int = 0  # the CPU cores it holds (claimed with a budget; 0: not counted)


# the CPU cores the running runs of a device hold (a budget's use); a run claimed without a
# budget (threads NULL) counts as holding all of it. Parameters: (budget, device).
CORES_HELD_SQL = ("SELECT COALESCE(SUM(COALESCE(threads, ?)), 0) FROM runs WHERE status = 'running' "
                  "AND device = ?")


def signal_name(signum: int) -> str:
    """"SIGSEGV (Segmentation fault)" for 11."""
    try:
        sig = signal.Signals(signum)
    except ValueError:
        return f"signal {signum}"
    described = signal.strsignal(sig) or ""
    return f"{sig.name} ({described})" if described else sig.name


class ControlPlane:
    """The queue, claims, leases and stop requests; part of ``RunStore`` (it uses the store's
    connections: ``_write``, ``_query``, and ``_host``)."""

    # ---- owners and workers ------------------------------------------------------------------
    def _owner(self) -> tuple[int, str, str | None]:
        pid = os.getpid()
        return pid, self._host, process_start(pid)

    def _owner_alive(self, pid: int | None, host: str | None, start: str | None) -> bool:
        if pid is None:
            return False
        if host and host != self._host:
            return True  # another machine's process: we cannot tell, so leave it alone
        return pid_alive(pid, start)

    def register_worker(self, device: str, role: str = "general") -> str:
        """A new worker row for this process; returns its id. ``role``: "general" claims any run of
        ``device``; "foreground" claims only the runs reserved for it (a CLI or notebook training
        its own run). Renew with ``renew_lease`` every HEARTBEAT_S, end with ``unregister_worker``."""
        if role not in ("general", "foreground"):
            raise ValueError(f"role={role!r}: use 'general' or 'foreground'")
        worker_id = f"w-{uuid.uuid4().hex[:8]}"
        pid, host, start = self._owner()
        now = time.time()
        with self._write("register a worker in") as con:
            con.execute("INSERT INTO workers (id, device, role, pid, host, pid_start, started, heartbeat, lease_until) "
                        "VALUES (?,?,?,?,?,?,?,?,?)", (worker_id, device, role, pid, host, start, now, now,
                                                       now + LEASE_S))
        return worker_id

    def unregister_worker(self, worker_id: str) -> None:
        with self._write("unregister a worker in") as con:
            con.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def retire_worker(self, worker_id: str) -> None:
        """A closing worker: it finishes what it trains but serves its device no longer."""
        with self._write("retire a worker in") as con:
            con.execute("UPDATE workers SET role = 'closing' WHERE id = ?", (worker_id,))

    def renew_lease(self, worker_id: str) -> set[str] | None:
        """The worker's heartbeat: it and its running runs stay claimed for another LEASE_S seconds.

        Returns the ids of the runs this worker still holds, or None when the worker itself is
        gone (its lease expired and another process removed it): then it holds nothing and must
        not write anything more. Waits at most LEASE_BUSY_MS for another writer (StoreError then;
        the next beat tries again, the lease has slack for several)."""
        now = time.time()
        with self._lease_lock:
            if self._lease_con is None:
                self._lease_con = sqlite3.connect(self.path, timeout=LEASE_BUSY_MS / 1000, isolation_level=None,
                                                  check_same_thread=False)
                self._lease_con.execute(f"PRAGMA busy_timeout = {LEASE_BUSY_MS}")
            con = self._lease_con
            try:
                con.execute("BEGIN IMMEDIATE")
                cur = con.execute("UPDATE workers SET heartbeat = ?, lease_until = ? WHERE id = ?",
                                  (now, now + LEASE_S, worker_id))
                if cur.rowcount == 0:
                    con.execute("COMMIT")
                    return None
                con.execute("UPDATE runs SET lease_until = ? WHERE worker = ? AND status = 'running'",
                            (now + LEASE_S, worker_id))
                held = {r[0] for r in con.execute("SELECT id FROM runs WHERE worker = ? AND status = 'running'",
                                                  (worker_id,))}
                con.execute("COMMIT")
                return held
            except sqlite3.Error as e:
                if con.in_transaction:
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise StoreError(f"cannot renew the lease of worker {worker_id} in {self.path}: {e}") from None

    def widen(self, run_id: str, worker_id: str, device: str, budget: int) -> int:
        """Give a running run the cores of ``device`` nobody holds, when nothing waits for them (the
        tail of a group: the last run would train on 1 of 2 cores while the other idles). Returns its
        new thread count, or 0 when it stays as it is. A run queued afterwards waits for it, as for
        any run holding the whole CPU."""
        queued = "SELECT 1 FROM runs WHERE device = ? AND status = 'queued' LIMIT 1"
        if self._query(queued, (device,)) or self._query(CORES_HELD_SQL, (budget, device))[0][0] >= budget:
            return 0  # cheap reads first: most beats end here, with no write
        with self._write("widen a run in") as con:
            if con.execute(queued, (device,)).fetchone():
                return 0
            used = con.execute(CORES_HELD_SQL, (budget, device)).fetchone()[0]
            row = con.execute("SELECT threads FROM runs WHERE id = ? AND worker = ? AND status = 'running'",
                              (run_id, worker_id)).fetchone()
            if row is None or not row[0] or used >= budget:
                return 0
            new = int(row[0]) + budget - int(used)
            con.execute("UPDATE runs SET threads = ? WHERE id = ?", (new, run_id))
            con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                        (run_id, time.time(), "info", f"trains on with {new} torch threads from its next step: "
                         f"the other cores fell free and no run waits for them"))
            return new

    def held_by(self, worker_id: str, run_ids: Sequence[str]) -> set[str]:
        """Which of ``run_ids`` this worker still holds (running, claimed by it): a cheap read."""
        ids = list(run_ids)
        if not ids:
            return set()
        rows = self._query(f"SELECT id FROM runs WHERE status = 'running' AND worker = ? AND id IN "
                           f"({','.join('?' * len(ids))})", [worker_id, *ids])
        return {r[0] for r in rows}

    def _worker_alive(self, con: sqlite3.Connection, worker_id: str | None, now: float) -> bool:
        """Alive: its lease holds, and on this host its process is there too (a SIGKILL shows at
        once, a hang when the lease runs out); on another host (a Ray node) only the lease can tell."""
        if not worker_id:
            return False
        row = con.execute("SELECT pid, host, pid_start, lease_until FROM workers WHERE id = ?", (worker_id,)).fetchone()
        if row is None:
            return False
        pid, host, start, lease_until = row
        if lease_until < now:
            return False
        return pid_alive(pid, start) if host == self._host else True

    def _expire(self, con: sqlite3.Connection, now: float) -> list[str]:
        """Inside a write transaction: runs whose worker (or owner process) is gone -> "interrupted";
        runs reserved for a worker that is gone -> "interrupted"; dead workers' rows removed."""
        lost: list[tuple[str, str, str]] = []
        for run_id, worker, pid, host, start in con.execute(
                "SELECT id, worker, owner_pid, owner_host, owner_start FROM runs WHERE status = 'running'").fetchall():
            alive = self._worker_alive(con, worker, now) if worker else self._owner_alive(pid, host, start)
            if not alive:
                who = f"worker {worker}" if worker else "process"
                hung = " or stopped answering for longer than its lease" if worker else ""
                lost.append((run_id, "running", f"the {who} that trained it (pid {pid} on {host}) stopped before the "
                                                f"run finished (killed, crashed{hung}, or the app restarted); resume it "
                                                f"to continue from its last checkpoint"))
        for run_id, reserved, pid in con.execute(
                "SELECT id, reserved_for, owner_pid FROM runs WHERE status = 'queued' AND reserved_for IS NOT NULL"
        ).fetchall():
            if not self._worker_alive(con, reserved, now):
                lost.append((run_id, "queued", f"the process that queued it to train it itself (pid {pid}) ended "
                                               f"before its turn came; resume it to queue it again"))
        for run_id, was, why in lost:
            con.execute("UPDATE runs SET status = 'interrupted', ended = ?, error = ?, worker = NULL, "
                        "lease_until = NULL, reserved_for = NULL WHERE id = ? AND status = ?", (now, why, run_id, was))
            con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                        (run_id, now, "warning", f"interrupted: {why}"))
        for (worker_id,) in con.execute("SELECT id FROM workers").fetchall():
            if not self._worker_alive(con, worker_id, now):
                con.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
        return [run_id for run_id, _, _ in lost]

    def mark_interrupted(self) -> list[str]:
        """Runs whose worker or owner process is gone -> "interrupted" (resumable). Returns their ids.

        Any process may call it (workers do, as they look for work; the app at start; `hft list`).
        A run trained by a live process (a CLI run in another terminal, another app) is left alone,
        and so are plain queued runs: the queue outlives the process that filled it.
        """
        now = time.time()
        with self._write("update runs in") as con:
            return self._expire(con, now)

    def fail_runs_of_dead_process(self, pid: int, why: str, since: float) -> list[str]:
        """A worker process died of a signal (a crash in native code, an abort): its runs end
        "failed" with ``why``, whether they still show running or another process already marked
        them interrupted (after ``since``, the last time the process was seen alive). Returns their ids."""
        now = time.time()
        with self._write("record a crash in") as con:
            rows = con.execute("SELECT id FROM runs WHERE owner_pid = ? AND owner_host = ? AND kind != 'probe' AND "
                               "(status = 'running' OR (status = 'interrupted' AND ended >= ?))",
                               (pid, self._host, since)).fetchall()
            for (run_id,) in rows:
                con.execute("UPDATE runs SET status = 'failed', ended = ?, error = ?, worker = NULL, lease_until = NULL "
                            "WHERE id = ? AND status IN ('running', 'interrupted')", (now, why, run_id))
                con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                            (run_id, now, "error", why))
        return [r[0] for r in rows]

    # ---- the queue ----------------------------------------------------------------------------
    def claim(self, worker_id: str, device: str, *, max_running: int = 1, budget: int = 0,
              whole: bool = False) -> "Claim | None":
        """The next run this worker may train on ``device``, now marked running by it; None if none.

        FIFO by queue position, across processes. A run reserved for another live worker is
        that worker's turn: nobody passes it. A run waiting for others (``after``) lets the runs
        behind it pass; if one of those ended other than finished, it fails with the reason.
        A foreground worker takes only its own reserved runs, and passes plain queued runs
        only while no general worker serves the device (else it waits its turn behind them).
        ``max_running``: at most this many running runs on ``device``, all processes together.
        ``budget`` (a CPU under HFT_RUNS_PER_DEVICE=auto): its cores, shared by the running runs;
        each takes ``schedule.claim_width`` of them (its shape's measured thread count), and the
        queue's next run waits until its share is free (nobody passes it: FIFO holds).
        ``whole``: every run this worker claims takes the whole budget (a foreground worker: it
        trains its runs one after another, each with every core).
        """
        now = time.time()
        with self._write("claim a run in") as con:
            self._expire(con, now)
            role = con.execute("SELECT role FROM workers WHERE id = ?", (worker_id,)).fetchone()
            if role is None:
                raise StoreError(f"worker {worker_id} is not registered in {self.path} (its lease expired?)")
            kinds = [k for (k,) in con.execute("SELECT kind FROM runs WHERE status = 'running' AND device = ?",
                                               (device,))]
            running = len(kinds)
            if running >= max_running or "probe" in kinds:
                return None  # full, or a time-estimate probe measures the device alone
            used = 0
            if budget:
                used = con.execute(CORES_HELD_SQL, (budget, device)).fetchone()[0]
            general_alive = None
            for run_id, reserved, after_json, resume, kind, config_json, group in con.execute(
                    "SELECT id, reserved_for, after_json, resume, kind, config_json, group_name FROM runs "
                    "WHERE status = 'queued' "
                    "AND device = ? ORDER BY position, created", (device,)).fetchall():
                if after_json:
                    deps = json.loads(after_json)
                    states = dict(con.execute(f"SELECT id, status FROM runs WHERE id IN ({','.join('?' * len(deps))})",
                                              deps).fetchall())
                    bad = [(d, states.get(d, "deleted")) for d in deps if states.get(d) not in ("queued", "running",
                                                                                                  "finished")]
                    if bad:
                        why = "; ".join(f"run {d} ended {st}" for d, st in bad)
                        con.execute("UPDATE runs SET status = 'failed', ended = ?, error = ?, reserved_for = NULL "
                                    "WHERE id = ? AND status = 'queued'",
                                    (now, f"it needs the result of another run, but {why}; resume or re-run that "
                                          f"one, then submit this one again", run_id))
                        continue
                    if any(states[d] != "finished" for d in deps):
                        continue  # waits; the runs behind it may pass
                if kind == "probe" and running:
                    continue  # a probe never measures beside a run (it would slow it, and measure wrong)
                if reserved and reserved != worker_id:
                    if self._worker_alive(con, reserved, now):
                        return None  # that worker's turn
                    continue  # (expired above)
                if not reserved and role[0] == "foreground":
                    if general_alive is None:
                        general_alive = any(self._worker_alive(con, w, now) for (w,) in con.execute(
                            "SELECT id FROM workers WHERE device = ? AND role = 'general'", (device,)).fetchall())
                    if general_alive:
                        return None  # a general worker will take it; ours comes after
                    continue  # nobody serves it: do not wait behind it
                width = 0
                if budget:
                    from hft_core.schedule import claim_width

                    in_group = bool(group) and con.execute("SELECT COUNT(*) FROM runs WHERE group_name = ?",
                                                           (group,)).fetchone()[0] >= 2
                    width = budget if whole else claim_width(kind or "train", config_json, budget, in_group)
                    if used + width > budget:
                        return None  # its share of the cores is not free yet; it stays first in line
                pid, host, start = self._owner()
                cur = con.execute(
                    "UPDATE runs SET status = 'running', worker = ?, lease_until = ?, reserved_for = NULL, threads = ?, "
                    "started = COALESCE(started, ?), ended = NULL, error = NULL, traceback = NULL, "
                    "stop_requested = NULL, stop_reason = NULL, stop_status = NULL, owner_pid = ?, "
                    "owner_host = ?, owner_start = ? WHERE id = ? AND status = 'queued'",
                    (worker_id, now + LEASE_S, width or None, now, pid, host, start, run_id))
                if cur.rowcount != 1:  # cannot happen inside one transaction; never claim on a doubt
                    continue
                con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                            (run_id, now, "info", f"claimed by worker {worker_id} (pid {pid})"))
                return Claim(run_id, bool(resume), kind or "train", width)
            return None

    def requeue(self, run_id: str, *, resume: bool, reserved_for: str | None = None) -> None:
        """Put a stopped/interrupted/failed/pruned run back at the end of its device's queue (same id).

        A compare-and-set: a run that is queued, running or finished meanwhile is left alone and
        the call raises StoreError saying what it is now."""
        with self._write("queue a run in") as con:
            cur = con.execute(
                "UPDATE runs SET status = 'queued', resume = ?, reserved_for = ?, ended = NULL, error = NULL, "
                "traceback = NULL, worker = NULL, lease_until = NULL, stop_requested = NULL, stop_reason = NULL, "
                "stop_status = NULL, position = (SELECT COALESCE(MAX(position), 0) + 1 FROM runs) "
                f"WHERE id = ? AND status IN ({','.join('?' * len(RESUMABLE))})",
                (int(resume), reserved_for, run_id, *RESUMABLE))
            if cur.rowcount == 0:
                row = con.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise self._unknown(run_id)
                raise StoreError(f"run {run_id} is {row[0]} now, so it cannot be queued again; only "
                                 f"{', '.join(RESUMABLE)} runs can")
            con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                        (run_id, time.time(), "info", "queued again" + (" (resume)" if resume else "")))

    def reserve(self, run_id: str, worker_id: str) -> None:
        """A queued run only ``worker_id`` may claim from now on (a process that trains a run queued
        elsewhere itself). Compare-and-set: refused unless the run is still queued."""
        with self._write("reserve a run in") as con:
            cur = con.execute("UPDATE runs SET reserved_for = ? WHERE id = ? AND status = 'queued'", (worker_id, run_id))
            if cur.rowcount == 0:
                row = con.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise self._unknown(run_id)
                raise StoreError(f"run {run_id} is {row[0]} now, no longer queued, so it cannot be reserved")

    def request_stop(self, run_id: str, reason: str = "", *, status: str = "stopped") -> str:
        """Ask a run to stop, from any process. Returns what happened:

        "cancelled": it was queued; it ends ``status`` now without training.
        "requested": it is running; its worker sees the request within a second (or a step),
        saves a checkpoint and ends ``status`` ("stopped", or "pruned" for a search trial).
        Raises UnknownRun, or StoreError for a run that has ended or whose process is gone.
        """
        if status not in ("stopped", "pruned"):
            raise ValueError(f"status={status!r}: a stopped run ends 'stopped' or 'pruned'")
        now = time.time()
        with self._write("request a stop in") as con:
            row = con.execute("SELECT status, worker, owner_pid, owner_host, owner_start FROM runs WHERE id = ?",
                              (run_id,)).fetchone()
            if row is None:
                raise self._unknown(run_id)
            current, worker, pid, host, start = row
            if current == "queued":
                con.execute("UPDATE runs SET status = ?, ended = ?, stop_requested = ?, stop_reason = ?, "
                            "reserved_for = NULL WHERE id = ? AND status = 'queued'", (status, now, now, reason, run_id))
                con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                            (run_id, now, "info", "cancelled while queued" + (f" ({reason})" if reason else "")))
                return "cancelled"
            if current == "running":
                alive = self._worker_alive(con, worker, now) if worker else self._owner_alive(pid, host, start)
                if not alive:
                    raise StoreError(f"run {run_id} was running in pid {pid} on {host}, which is gone, so there is "
                                     f"nothing to stop; it shows as interrupted from now on. Resume it with "
                                     f"`hft train --resume {run_id}`")
                con.execute("UPDATE runs SET stop_requested = COALESCE(stop_requested, ?), stop_reason = ?, "
                            "stop_status = ? WHERE id = ?", (now, reason, status, run_id))
                return "requested"
            hint = f"; resume it with `hft train --resume {run_id}`" if current in ("stopped", "interrupted") else ""
            raise StoreError(f"run {run_id} has already ended ({current}), so there is nothing to stop{hint}")

    def pending_stops(self, run_ids: Sequence[str]) -> dict[str, str]:
        """{run id: the status it should end with} for those of ``run_ids`` with a stop request."""
        ids = list(run_ids)
        if not ids:
            return {}
        rows = self._query(f"SELECT id, COALESCE(stop_status, 'stopped') FROM runs WHERE stop_requested IS NOT NULL "
                           f"AND id IN ({','.join('?' * len(ids))})", ids)
        return dict(rows)

    def workers(self, device: str | None = None) -> list[dict[str, Any]]:
        """Registered workers (live or not yet expired), oldest first."""
        sql = "SELECT id, device, role, pid, host, started, heartbeat FROM workers"
        rows = self._query(sql + (" WHERE device = ?" if device else "") + " ORDER BY started",
                           (device,) if device else ())
        return [dict(zip(("id", "device", "role", "pid", "host", "started", "heartbeat"), r)) for r in rows]

    def queued(self, device: str | None = None) -> list[str]:
        """Queued run ids in the order they will start (per device; all devices by name when None)."""
        if device is not None:
            rows = self._query("SELECT id FROM runs WHERE status = 'queued' AND device = ? ORDER BY position, created",
                               (device,))
        else:
            rows = self._query("SELECT id FROM runs WHERE status = 'queued' ORDER BY device, position, created")
        return [r[0] for r in rows]

    def move(self, run_id: str, position: int) -> None:
        """Put a queued run at ``position`` (0 = next) within its device's queue."""
        with self._write("reorder the queue in") as con:
            row = con.execute("SELECT status, device FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._unknown(run_id)
            if row[0] != "queued":
                raise ValueError(f"run {run_id} is {row[0]}, not queued, so it cannot be moved in the queue")
            queue = [r[0] for r in con.execute("SELECT id FROM runs WHERE status = 'queued' AND device = ? "
                                               "ORDER BY position, created", (row[1],))]
            positions = sorted(r[0] for r in con.execute(
                f"SELECT position FROM runs WHERE id IN ({','.join('?' * len(queue))})", queue))
            queue.remove(run_id)
            queue.insert(max(0, min(int(position), len(queue))), run_id)
            for pos, rid in zip(positions, queue):
                con.execute("UPDATE runs SET position = ? WHERE id = ?", (pos, rid))

    # ---- fencing: a worker's metric writes count only while it holds the run ------------------
    def fence(self, run_id: str, worker: str) -> None:
        """From now on this store writes ``run_id``'s buffered metrics and events only while
        ``worker`` holds the run; rows logged after the claim was lost are dropped (logged once)."""
        with self._block:
            self._fences[run_id] = worker

    def unfence(self, run_id: str) -> None:
        with self._block:
            self._fences.pop(run_id, None)

    def _drop_unheld(self, con: sqlite3.Connection, metric_rows: list, event_rows: list) -> tuple[list, list]:
        """Inside the flush's transaction: the rows of fenced runs whose claim is lost are dropped."""
        with self._block:
            fences = dict(self._fences)
        if not fences:
            return metric_rows, event_rows
        ids = {r[0] for r in metric_rows} | {r[0] for r in event_rows}
        lost = set()
        for run_id in ids & set(fences):
            row = con.execute("SELECT status, worker FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row[0] != "running" or row[1] != fences[run_id]:
                lost.add(run_id)
        if lost:
            log.warning("not writing metrics of run(s) %s: this process no longer holds them (lease lost)",
                        ", ".join(sorted(lost)))
            metric_rows = [r for r in metric_rows if r[0] not in lost]
            event_rows = [r for r in event_rows if r[0] not in lost]
        return metric_rows, event_rows

    def _init_control(self) -> None:
        self._lease_lock = threading.Lock()
        self._lease_con: sqlite3.Connection | None = None

    def _close_control(self) -> None:
        with self._lease_lock:
            if self._lease_con is not None:
                self._lease_con.close()
                self._lease_con = None


# ---- processes on this host -------------------------------------------------------------------

def process_start(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields_ = fh.read().rsplit(b")", 1)[1].split()
        return fields_[19].decode()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, start: str | None) -> bool:
    """Is this process still there, and the same one (not a zombie, not a reused pid)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields_ = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return True  # no /proc (macOS): os.kill said it exists
    if fields_[0] in (b"Z", b"X"):  # killed but not yet reaped by its parent
        return False
    return start is None or fields_[19].decode() == start
