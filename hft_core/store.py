"""RunStore: every run, its metrics and its log lines in one SQLite file.

    $HFT_HOME/runs.sqlite       runs, metrics, events (WAL mode)
    $HFT_HOME/runs/<run_id>/    the run's folder: checkpoint/, run_config.yaml

Who writes and who reads:

* The training thread calls ``log_metrics`` / ``log_event`` (through ``StoreSink``).
  These only append to an in-memory buffer under a short lock: training never
  waits on the disk.
* A background flusher thread writes the buffer in one transaction every
  ``flush_interval`` seconds (0.5 s by default), so a crash or ``kill -9`` loses at
  most the last second of metrics. A run's first few ``log_metrics`` calls wake it
  at once, so a new run's first points reach the charts without that wait.
* Run-level writes (``create_run``, ``set_status`` ...) are rare and go straight
  to the database through the same writer connection, under a lock.
* Readers (dashboard pages, the CLI, other processes) use their own connection
  per thread. WAL mode lets them read while a writer commits, and lets several
  processes (the app, a CLI run, rank 0 of a DDP run) share one store.

A run is owned by the process that queued or runs it (pid, host and the pid's
start time). ``mark_interrupted`` turns "running"/"queued" runs whose owner is
gone into "interrupted", so a restart of the app shows killed runs honestly
while a CLI run still training in another process is left alone.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from hft_core.config import RunConfig
from hft_core.home import hft_home

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "finished", "stopped", "pruned", "failed", "interrupted")
DONE_STATUSES = ("finished", "stopped", "pruned", "failed", "interrupted")
DB_NAME = "runs.sqlite"
LEASE_S = 8.0        # a worker that stops renewing (killed, powered off) loses its runs this long after
HEARTBEAT_S = 2.0    # how often a worker renews its lease
PROMPT_LOGS = 3                # a run's first log_metrics calls are written at once, not within flush_interval
MAX_BUFFERED_ROWS = 1_000_000  # if the disk keeps failing, keep at most this many rows in memory


class StoreError(RuntimeError):
    """The store cannot do what was asked. The message names the path and what to do."""


class UnknownRun(StoreError, KeyError):
    """No run with this id in the store (also a KeyError, so ``except KeyError`` works)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


# ---- schema and migrations ----------------------------------------------------------
# MIGRATIONS[v] turns a store at version v-1 into version v. A newer app opens an older
# store by applying the missing steps in order, each in its own transaction, and
# setting PRAGMA user_version after each. Never edit a shipped step: add a new one.

def _migrate_to_v1(con: sqlite3.Connection) -> None:
    _execute_script(con, """
        CREATE TABLE IF NOT EXISTS runs (
            id             TEXT PRIMARY KEY,
            name           TEXT NOT NULL DEFAULT '',
            status         TEXT NOT NULL,
            config_json    TEXT NOT NULL,
            created        REAL NOT NULL,
            started        REAL,
            ended          REAL,
            device         TEXT NOT NULL DEFAULT 'cpu',
            error          TEXT,
            traceback      TEXT,
            checkpoint_dir TEXT,
            group_name     TEXT NOT NULL DEFAULT '',
            seed           INTEGER,
            position       INTEGER NOT NULL DEFAULT 0,   -- queue order
            owner_pid      INTEGER,                      -- process that queued/runs it
            owner_host     TEXT,
            owner_start    TEXT                          -- that pid's start time (guards against pid reuse)
        );
        CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
        CREATE INDEX IF NOT EXISTS runs_by_group ON runs (group_name);
        -- one value per (run, metric, step): a replayed step after resume overwrites, never duplicates
        CREATE TABLE IF NOT EXISTS metrics (
            run_id    TEXT NOT NULL,
            step      INTEGER NOT NULL,
            name      TEXT NOT NULL,
            value     REAL,                               -- NULL stands for NaN (SQLite stores NaN as NULL)
            wall_time REAL NOT NULL,
            PRIMARY KEY (run_id, name, step)
        ) WITHOUT ROWID;
        -- live pages poll "everything of this run from step s on"
        CREATE INDEX IF NOT EXISTS metrics_by_step ON metrics (run_id, step);
        CREATE TABLE IF NOT EXISTS events (
            run_id  TEXT NOT NULL,
            time    REAL NOT NULL,
            level   TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, time);
    """)


def _migrate_to_v2(con: sqlite3.Connection) -> None:
    """The store becomes the control plane: queue, claims, leases and stop requests are rows."""
    _execute_script(con, """
        ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train';   -- train | wise_ft | soup | prune
        ALTER TABLE runs ADD COLUMN job_json TEXT;                        -- a job's parameters (kind != train)
        ALTER TABLE runs ADD COLUMN after_json TEXT;                      -- run ids it waits for (JSON list)
        ALTER TABLE runs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;    -- queued: continue from its checkpoint
        ALTER TABLE runs ADD COLUMN reserved_for TEXT;                    -- queued: only this worker may claim it
        ALTER TABLE runs ADD COLUMN worker TEXT;                          -- running: the worker training it
        ALTER TABLE runs ADD COLUMN lease_until REAL;                     -- running: its worker's lease
        ALTER TABLE runs ADD COLUMN stop_requested REAL;                  -- when a stop was asked for
        ALTER TABLE runs ADD COLUMN stop_reason TEXT;
        ALTER TABLE runs ADD COLUMN stop_status TEXT;                     -- stopped | pruned
        CREATE INDEX IF NOT EXISTS runs_by_queue ON runs (status, device, position);
        -- one row per live worker (app thread, `hft worker`, a CLI training its own run)
        CREATE TABLE IF NOT EXISTS workers (
            id          TEXT PRIMARY KEY,
            device      TEXT NOT NULL,
            role        TEXT NOT NULL,      -- general (any run of its device), foreground (only runs reserved for it)
            pid         INTEGER NOT NULL,
            host        TEXT NOT NULL,
            pid_start   TEXT,
            started     REAL NOT NULL,
            heartbeat   REAL NOT NULL,
            lease_until REAL NOT NULL
        )
    """)


def _execute_script(con: sqlite3.Connection, script: str) -> None:
    """Run ;-separated statements inside the caller's transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            con.execute(statement)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_v1, 2: _migrate_to_v2}
SCHEMA_VERSION = max(MIGRATIONS)
_OUR_TABLES = {"runs", "metrics", "events", "workers"}


@dataclass
class RunRecord:
    id: str
    name: str
    status: str
    config: dict[str, Any]
    created: float
    started: float | None
    ended: float | None
    device: str
    error: str | None
    traceback: str | None
    checkpoint_dir: str | None
    group: str
    seed: int | None
    position: int
    pid: int | None = None     # owner process
    host: str | None = None
    kind: str = "train"        # train | wise_ft | soup | prune
    job: dict[str, Any] = field(default_factory=dict)   # a job's parameters
    after: list[str] = field(default_factory=list)      # run ids it waits for
    worker: str | None = None  # running: the worker training it
    reserved_for: str | None = None                     # queued: the only worker that may claim it
    stop_requested: float | None = None
    stop_reason: str | None = None

    @property
    def cfg(self) -> RunConfig:
        return RunConfig.from_dict(self.config)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass(frozen=True)
class Claim:
    """A run a worker has just claimed (it is "running" now, owned by that worker)."""
    run_id: str
    resume: bool     # continue from its checkpoint
    kind: str        # train | wise_ft | soup | prune


class StoreSink:
    """A MetricSink that writes one run's metrics and log lines to a RunStore (buffered)."""

    def __init__(self, store: "RunStore", run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.store.log_metrics(self.run_id, step, values)

    def event(self, message: str, level: str = "info") -> None:
        self.store.log_event(self.run_id, message, level)


class _Reader:
    """Holds one thread's read connection (sqlite3 connections cannot be weak-referenced)."""

    __slots__ = ("con", "lock", "__weakref__")

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.lock = threading.Lock()  # held while a query runs, so close() never closes it under a query

    def __del__(self) -> None:  # the thread ended: its thread-local dies, and with it the connection
        try:
            self.con.close()
        except Exception:
            pass


_OPEN_STORES: "weakref.WeakSet[RunStore]" = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    """At a normal interpreter exit, write what is still buffered (daemon threads just die)."""
    for store in list(_OPEN_STORES):
        try:
            store.close()
        except Exception:
            pass


class RunStore:
    def __init__(self, home: str | Path | None = None, *, flush_interval: float = 0.5) -> None:
        if flush_interval <= 0:
            raise ValueError(f"flush_interval={flush_interval!r}: use a positive number of seconds, e.g. 0.5")
        self.home = Path(home).expanduser() if home is not None else hft_home()
        self.path = self.home / DB_NAME
        self.flush_interval = float(flush_interval)
        self._check_folder()
        self._host = socket.gethostname()
        self._wlock = threading.RLock()          # the writer connection and its transactions
        self._block = threading.Lock()           # the in-memory buffers (held for microseconds)
        self._metric_rows: list[tuple[str, int, str, float, float]] = []
        self._event_rows: list[tuple[str, float, str, str]] = []
        self._local = threading.local()
        self._readers: "weakref.WeakSet[_Reader]" = weakref.WeakSet()
        self._closed = False
        self._warned_at = 0.0
        self.last_write_error: str | None = None  # set while background writes fail (e.g. disk full)
        self._wcon = self._open_writer()
        self._closing = threading.Event()
        self._wake = threading.Event()           # flush now, not at the next interval
        self._logs_seen: Counter[str] = Counter()  # log_metrics calls per run (the first few flush at once)
        self._flusher = threading.Thread(target=self._flush_loop, name=f"hft-store-flusher:{self.path}", daemon=True)
        self._flusher.start()
        _OPEN_STORES.add(self)

    def __repr__(self) -> str:
        return f"RunStore({str(self.home)!r})"

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- opening: clear errors for the ways a home folder can be wrong -------------
    def _check_folder(self) -> None:
        home, what_to_do = self.home, "Set HFT_HOME (or pass home=) to a writable folder."
        if home.exists() and not home.is_dir():
            raise StoreError(f"the HFT Lab home {home} is a file, not a folder. {what_to_do} "
                             f"(it is created if missing), or move the file away.")
        try:
            home.mkdir(parents=True, exist_ok=True)
        except NotADirectoryError:
            raise StoreError(f"cannot create the HFT Lab home {home}: a part of that path is a file, not a "
                             f"folder. {what_to_do}") from None
        except OSError as e:
            raise StoreError(f"cannot create the HFT Lab home {home}: {e.strerror or e}. {what_to_do}") from None
        # os.access alone is not enough (root passes it on a read-only or immutable folder,
        # and it says nothing about a full disk): write and remove a real byte.
        probe = home / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreError(f"the HFT Lab home {home} is not writable ({e.strerror or e}): check the disk has "
                             f"free space and the folder's permissions. {what_to_do}") from None
        finally:
            try:
                probe.unlink()
            except OSError:
                pass
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path} is a folder, not a store file; move it away or set HFT_HOME "
                             f"to another folder.")

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE in _write)
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA busy_timeout = 30000")   # wait for another writer instead of failing
        con.execute("PRAGMA synchronous = NORMAL")   # WAL + NORMAL: a commit survives a process kill
        return con

    def _open_writer(self) -> sqlite3.Connection:
        try:
            con = self._connect()
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite would not switch %s to WAL mode (got %r); readers may block the writer",
                            self.path, mode)
            self._migrate(con)
        except sqlite3.DatabaseError as e:
            raise self._db_error(e, "open") from None
        return con

    def _migrate(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        latest = max(MIGRATIONS)
        if version > latest:
            raise StoreError(f"{self.path} was written by a newer HFT Lab (store schema v{version}; this one "
                             f"reads up to v{latest}). Upgrade HFT Lab, or set HFT_HOME to another folder.")
        if version == 0:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            foreign = tables - _OUR_TABLES
            if foreign:
                raise StoreError(f"{self.path} is a SQLite database but not an HFT Lab store (it has tables "
                                 f"{sorted(foreign)}). Move it away, or set HFT_HOME to another folder.")
        for v in range(version + 1, latest + 1):
            con.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[v](con)
                con.execute(f"PRAGMA user_version = {int(v)}")
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def _db_error(self, e: sqlite3.Error, doing: str) -> StoreError:
        msg = str(e)
        if "not a database" in msg or "malformed" in msg:
            return StoreError(f"{self.path} is not a readable HFT Lab store (SQLite says: {msg}). Move it away "
                              f"(e.g. rename it to {DB_NAME}.bad) and a new store is created, or set HFT_HOME "
                              f"to another folder.")
        if "full" in msg or "readonly" in msg or "read-only" in msg or "unable to open" in msg or "disk I/O" in msg:
            return StoreError(f"cannot {doing} the store {self.path} (SQLite says: {msg}): check the disk has "
                              f"free space and the folder is writable, or set HFT_HOME to another folder.")
        return StoreError(f"cannot {doing} the store {self.path}: {msg}")

    # ---- connections -----------------------------------------------------------------
    @contextmanager
    def _write(self, doing: str = "write to") -> Iterator[sqlite3.Connection]:
        """One transaction on the writer connection. Serialised within this process by a lock
        and across processes by SQLite (BEGIN IMMEDIATE waits up to busy_timeout)."""
        if self._closed:
            raise StoreError(f"the store {self.path} is closed; open a new RunStore")
        with self._wlock:
            if self._closed:  # closed by another thread while we waited for the lock
                raise StoreError(f"the store {self.path} is closed; open a new RunStore")
            con = self._wcon
            try:
                con.execute("BEGIN IMMEDIATE")
                yield con
                con.execute("COMMIT")
            except BaseException as e:
                if con.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(e, sqlite3.Error):
                    raise self._db_error(e, doing) from None
                raise

    def _read(self) -> sqlite3.Connection:
        """This thread's read connection (query-only). WAL: reading never blocks the writer."""
        if self._closed:
            raise StoreError(f"the store {self.path} is closed; open a new RunStore")
        reader = getattr(self._local, "reader", None)
        if reader is None:
            con = self._connect()
            con.execute("PRAGMA query_only = 1")
            reader = _Reader(con)
            self._local.reader = reader
            self._readers.add(reader)
        return reader.con

    def _query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        con = self._read()
        reader = self._local.reader
        try:
            with reader.lock:
                if self._closed:
                    raise StoreError(f"the store {self.path} is closed; open a new RunStore")
                return con.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._db_error(e, "read") from None

    # ---- runs ------------------------------------------------------------------------
    def create_run(self, cfg: RunConfig | Mapping[str, Any], *, status: str = "queued", device: str = "cpu",
                   group: str = "", name: str = "", kind: str = "train", job: Mapping[str, Any] | None = None,
                   after: Sequence[str] = (), reserved_for: str | None = None) -> str:
        """Store a new run; returns its id (e.g. "r-3f9a2c"). The owner is this process.

        A "queued" run waits in ``device``'s queue (at the back) for a worker to claim it;
        ``after``: it waits until those runs have finished (fails if one of them does not);
        ``reserved_for``: only that worker may claim it (a CLI training its own run).
        ``kind``/``job``: a post-training job (wise_ft, soup, prune) and its parameters.
        """
        if not isinstance(cfg, RunConfig):
            cfg = RunConfig.from_dict(cfg)  # validates
        _check_status(status)
        group = group or cfg.group
        name = name or cfg.name or default_name(cfg)
        config = cfg.to_dict()
        config["group"], config["name"] = group, name
        now = time.time()
        pid, host, start = self._owner()
        after = list(after)
        for _ in range(20):
            run_id = new_run_id()
            try:
                with self._write("add a run to") as con:
                    if after:
                        known = {r[0] for r in con.execute(
                            f"SELECT id FROM runs WHERE id IN ({','.join('?' * len(after))})", after)}
                        missing = [a for a in after if a not in known]
                        if missing:
                            raise StoreError(f"the new run would wait for {missing}, which are not in {self.path}")
                    pos = con.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM runs").fetchone()[0]
                    con.execute(
                        "INSERT INTO runs (id, name, status, config_json, created, started, device, group_name, "
                        "seed, position, owner_pid, owner_host, owner_start, kind, job_json, after_json, "
                        "reserved_for) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (run_id, name, status, json.dumps(config), now, now if status == "running" else None,
                         device, group, cfg.seed, pos, pid, host, start, kind, json.dumps(dict(job or {})),
                         json.dumps(after) if after else None, reserved_for))
                return run_id
            except StoreError as e:
                if "UNIQUE" not in str(e):
                    raise
        raise StoreError(f"could not find a free run id in {self.path} after 20 tries")

    def set_status(self, run_id: str, status: str, *, error: str | None = None, traceback: str | None = None,
                   checkpoint_dir: str | Path | None = None) -> None:
        """Change a run's status. "running" sets ``started`` (first time only) and makes this process the
        owner; "queued" moves it to the back of the queue; a final status sets ``ended`` and ends its
        claim (worker, lease and stop request are cleared).

        Buffered metrics and events are written first, so whoever sees the new status
        (e.g. "finished") also sees everything logged before it."""
        _check_status(status)
        self.flush()
        now = time.time()
        sets, params = ["status = ?"], [status]
        if status == "running":
            sets += ["started = COALESCE(started, ?)", "ended = NULL", "error = NULL", "traceback = NULL"]
            params.append(now)
        elif status == "queued":
            sets += ["ended = NULL", "error = NULL", "traceback = NULL", "worker = NULL", "lease_until = NULL",
                     "stop_requested = NULL", "stop_reason = NULL", "stop_status = NULL",
                     "position = (SELECT COALESCE(MAX(position), 0) + 1 FROM runs)"]
        else:
            sets += ["ended = ?", "error = ?", "traceback = ?", "worker = NULL", "lease_until = NULL",
                     "reserved_for = NULL"]
            params += [now, error, traceback]
        if status in ("running", "queued"):
            sets += ["owner_pid = ?", "owner_host = ?", "owner_start = ?"]
            params += list(self._owner())
        if checkpoint_dir is not None:
            sets.append("checkpoint_dir = ?")
            params.append(str(checkpoint_dir))
        with self._write("update a run in") as con:
            cur = con.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*params, run_id))
            if cur.rowcount == 0:
                raise self._unknown(run_id)

    def set_positions(self, run_ids: list[str]) -> None:
        """Queue order: give these runs increasing positions in the order given."""
        with self._write("reorder runs in") as con:
            base = con.execute("SELECT COALESCE(MIN(position), 0) FROM runs WHERE id IN (%s)"
                               % ",".join("?" * len(run_ids)), run_ids).fetchone()[0] if run_ids else 0
            for i, run_id in enumerate(run_ids):
                con.execute("UPDATE runs SET position = ? WHERE id = ?", (base + i, run_id))

    _RUN_COLUMNS = ("id, name, status, config_json, created, started, ended, device, error, traceback, "
                    "checkpoint_dir, group_name, seed, position, owner_pid, owner_host, kind, job_json, after_json, "
                    "worker, reserved_for, stop_requested, stop_reason")

    def _record(self, row: tuple) -> RunRecord:
        (run_id, name, status, config_json, created, started, ended, device, error, tb, ckpt, group, seed, pos,
         pid, host, kind, job_json, after_json, worker, reserved, stop_requested, stop_reason) = row
        if not ckpt:  # runs started outside the manager (CLI, DDP) still show their checkpoint
            guess = self.run_dir(run_id) / "checkpoint"
            ckpt = str(guess) if guess.is_dir() else None
        return RunRecord(run_id, name, status, json.loads(config_json), created, started, ended, device, error, tb,
                         ckpt, group, seed, pos, pid, host, kind or "train", json.loads(job_json or "{}"),
                         json.loads(after_json or "[]"), worker, reserved, stop_requested, stop_reason)

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._query(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise self._unknown(run_id)
        return self._record(rows[0])

    def list_runs(self, *, status: str | list[str] | None = None, group: str | None = None,
                  limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first; optionally only some statuses and/or one group."""
        where, params = [], []
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                _check_status(s)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if group is not None:
            where.append("group_name = ?")
            params.append(group)
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._record(r) for r in self._query(sql, params)]

    def groups(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT group_name FROM runs WHERE group_name != '' "
                                          "ORDER BY group_name")]

    def run_dir(self, run_id: str) -> Path:
        """The run's folder (not created here): checkpoint/, run_config.yaml."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", run_id or ""):
            raise StoreError(f"{run_id!r} is not a run id (ids look like 'r-3f9a2c')")
        return self.home / "runs" / run_id

    def delete_run(self, run_id: str) -> None:
        """Remove the run's rows and its folder (checkpoints). A run still training must be stopped first."""
        rec = self.get_run(run_id)
        if rec.status == "running":
            self.mark_interrupted()
            if self.get_run(run_id).status == "running":
                raise StoreError(f"run {run_id} is still running (pid {rec.pid}); stop it first "
                                 f"(`hft stop {run_id}`), then delete it")
        with self._block:
            self._metric_rows = [r for r in self._metric_rows if r[0] != run_id]
            self._event_rows = [r for r in self._event_rows if r[0] != run_id]
        with self._write("delete a run from") as con:
            for table, key in (("metrics", "run_id"), ("events", "run_id"), ("runs", "id")):
                con.execute(f"DELETE FROM {table} WHERE {key} = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # ---- the control plane: workers, claims, leases, stop requests ---------------------------
    # Every process (the app, a CLI run, `hft worker`, a notebook) sees and changes the same rows,
    # so the queue, who trains what, and Stop work across processes. A claim is one
    # BEGIN IMMEDIATE transaction: two workers can never take the same run, and the count of
    # running runs per device holds across processes.

    def _owner(self) -> tuple[int, str, str | None]:
        pid = os.getpid()
        return pid, self._host, _process_start(pid)

    def _owner_alive(self, pid: int | None, host: str | None, start: str | None) -> bool:
        if pid is None:
            return False
        if host and host != self._host:
            return True  # another machine's process: we cannot tell, so leave it alone
        return _pid_alive(pid, start)

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

    def renew_lease(self, worker_id: str) -> None:
        """The worker's heartbeat: it and the runs it trains stay claimed for another LEASE_S seconds."""
        now = time.time()
        with self._write("renew a lease in") as con:
            con.execute("UPDATE workers SET heartbeat = ?, lease_until = ? WHERE id = ?", (now, now + LEASE_S,
                                                                                         worker_id))
            con.execute("UPDATE runs SET lease_until = ? WHERE worker = ? AND status = 'running'",
                        (now + LEASE_S, worker_id))

    def _worker_alive(self, con: sqlite3.Connection, worker_id: str | None, now: float) -> bool:
        """On this host the worker's process is checked directly (a SIGKILL shows at once); on
        another host (a Ray node) only its lease can tell."""
        if not worker_id:
            return False
        row = con.execute("SELECT pid, host, pid_start, lease_until FROM workers WHERE id = ?", (worker_id,)).fetchone()
        if row is None:
            return False
        pid, host, start, lease_until = row
        if host == self._host:
            return _pid_alive(pid, start)
        return lease_until >= now

    def _expire(self, con: sqlite3.Connection, now: float) -> list[str]:
        """Inside a write transaction: runs whose worker (or owner process) is gone -> "interrupted";
        runs reserved for a worker that is gone -> "interrupted"; dead workers' rows removed."""
        lost: list[tuple[str, str]] = []
        for run_id, worker, pid, host, start in con.execute(
                "SELECT id, worker, owner_pid, owner_host, owner_start FROM runs WHERE status = 'running'").fetchall():
            alive = self._worker_alive(con, worker, now) if worker else self._owner_alive(pid, host, start)
            if not alive:
                who = f"worker {worker}" if worker else "process"
                lost.append((run_id, f"the {who} that trained it (pid {pid} on {host}) stopped before the run "
                                     f"finished (killed, crashed or the app restarted); resume it to continue from "
                                     f"its last checkpoint"))
        for run_id, reserved, pid in con.execute(
                "SELECT id, reserved_for, owner_pid FROM runs WHERE status = 'queued' AND reserved_for IS NOT NULL"
        ).fetchall():
            if not self._worker_alive(con, reserved, now):
                lost.append((run_id, f"the process that queued it to train it itself (pid {pid}) ended before "
                                     f"its turn came; resume it to queue it again"))
        for run_id, why in lost:
            con.execute("UPDATE runs SET status = 'interrupted', ended = ?, error = ?, worker = NULL, "
                        "lease_until = NULL, reserved_for = NULL WHERE id = ?", (now, why, run_id))
            con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                        (run_id, now, "warning", f"interrupted: {why}"))
        for (worker_id,) in con.execute("SELECT id FROM workers").fetchall():
            if not self._worker_alive(con, worker_id, now):
                con.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
        return [run_id for run_id, _ in lost]

    def mark_interrupted(self) -> list[str]:
        """Runs whose worker or owner process is gone -> "interrupted" (resumable). Returns their ids.

        Any process may call it (workers do, as they look for work; the app at start; `hft list`).
        A run trained by a live process (a CLI run in another terminal, another app) is left alone,
        and so are plain queued runs: the queue outlives the process that filled it.
        """
        now = time.time()
        with self._write("update runs in") as con:
            return self._expire(con, now)

    def claim(self, worker_id: str, device: str, *, max_running: int = 1) -> "Claim | None":
        """The next run this worker may train on ``device``, now marked running by it; None if none.

        FIFO by queue position, across processes. A run reserved for another live worker is
        that worker's turn: nobody passes it. A run waiting for others (``after``) lets the runs
        behind it pass; if one of those ended other than finished, it fails with the reason.
        A foreground worker takes only its own reserved runs, and passes plain queued runs
        only while no general worker serves the device (else it waits its turn behind them).
        ``max_running``: at most this many running runs on ``device``, all processes together.
        """
        now = time.time()
        with self._write("claim a run in") as con:
            self._expire(con, now)
            role = con.execute("SELECT role FROM workers WHERE id = ?", (worker_id,)).fetchone()
            if role is None:
                raise StoreError(f"worker {worker_id} is not registered in {self.path} (its lease expired?)")
            running = con.execute("SELECT COUNT(*) FROM runs WHERE status = 'running' AND device = ?",
                                  (device,)).fetchone()[0]
            if running >= max_running:
                return None
            general_alive = None
            for run_id, reserved, after_json, resume, kind in con.execute(
                    "SELECT id, reserved_for, after_json, resume, kind FROM runs WHERE status = 'queued' AND device = ? "
                    "ORDER BY position, created", (device,)).fetchall():
                if after_json:
                    deps = json.loads(after_json)
                    states = dict(con.execute(f"SELECT id, status FROM runs WHERE id IN ({','.join('?' * len(deps))})",
                                              deps).fetchall())
                    bad = [(d, states.get(d, "deleted")) for d in deps if states.get(d) not in ("queued", "running",
                                                                                                  "finished")]
                    if bad:
                        why = "; ".join(f"run {d} ended {st}" for d, st in bad)
                        con.execute("UPDATE runs SET status = 'failed', ended = ?, error = ?, reserved_for = NULL "
                                    "WHERE id = ?", (now, f"it needs the result of another run, but {why}; resume "
                                                          f"or re-run that one, then submit this one again", run_id))
                        continue
                    if any(states[d] != "finished" for d in deps):
                        continue  # waits; the runs behind it may pass
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
                pid, host, start = self._owner()
                con.execute("UPDATE runs SET status = 'running', worker = ?, lease_until = ?, reserved_for = NULL, "
                            "started = COALESCE(started, ?), ended = NULL, error = NULL, traceback = NULL, "
                            "stop_requested = NULL, stop_reason = NULL, stop_status = NULL, owner_pid = ?, "
                            "owner_host = ?, owner_start = ? WHERE id = ?",
                            (worker_id, now + LEASE_S, now, pid, host, start, run_id))
                return Claim(run_id, bool(resume), kind or "train")
            return None

    def requeue(self, run_id: str, *, resume: bool, reserved_for: str | None = None) -> None:
        """Put a stopped/interrupted/failed run back at the end of its device's queue (same id)."""
        with self._write("queue a run in") as con:
            cur = con.execute(
                "UPDATE runs SET status = 'queued', resume = ?, reserved_for = ?, ended = NULL, error = NULL, "
                "traceback = NULL, worker = NULL, lease_until = NULL, stop_requested = NULL, stop_reason = NULL, "
                "stop_status = NULL, position = (SELECT COALESCE(MAX(position), 0) + 1 FROM runs) WHERE id = ?",
                (int(resume), reserved_for, run_id))
            if cur.rowcount == 0:
                raise self._unknown(run_id)

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
                            "reserved_for = NULL WHERE id = ?", (status, now, now, reason, run_id))
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

    # ---- metrics and events: buffered writes -----------------------------------------------
    def log_metrics(self, run_id: str, step: int, values: Mapping[str, float]) -> None:
        """Buffer one step's metrics; the flusher writes them within ``flush_interval``. Never blocks on disk."""
        if self._closed:
            raise StoreError(f"the store {self.path} is closed; cannot log metrics of run {run_id}")
        now, step = time.time(), int(step)
        rows = []
        for name, value in values.items():
            try:
                rows.append((run_id, step, str(name), float(value), now))
            except (TypeError, ValueError):
                raise TypeError(f"metric {name!r} at step {step} is {value!r}; metrics must be numbers") from None
        with self._block:
            self._metric_rows.extend(rows)
            self._logs_seen[run_id] += 1
            if self._logs_seen[run_id] <= PROMPT_LOGS:  # a new run's first points show without the interval's wait
                self._wake.set()

    def log_event(self, run_id: str, message: str, level: str = "info") -> None:
        """Buffer one log line of the run (written with the next flush)."""
        if self._closed:
            raise StoreError(f"the store {self.path} is closed; cannot log to run {run_id}")
        with self._block:
            self._event_rows.append((run_id, time.time(), str(level), str(message)))

    def flush(self) -> None:
        """Write everything buffered now (the flusher does this by itself every ``flush_interval``)."""
        with self._wlock:  # one flush at a time, so batches reach the disk in the order they were logged
            with self._block:
                metric_rows, self._metric_rows = self._metric_rows, []
                event_rows, self._event_rows = self._event_rows, []
            if not metric_rows and not event_rows:
                return
            try:
                with self._write("write metrics to") as con:
                    con.executemany("INSERT OR REPLACE INTO metrics (run_id, step, name, value, wall_time) "
                                    "VALUES (?,?,?,?,?)", metric_rows)
                    con.executemany("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                                    event_rows)
            except StoreError:
                with self._block:  # keep them for the next try, oldest first, within a cap
                    self._metric_rows = (metric_rows + self._metric_rows)[-MAX_BUFFERED_ROWS:]
                    self._event_rows = (event_rows + self._event_rows)[-MAX_BUFFERED_ROWS:]
                raise
        self.last_write_error = None

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._closing.is_set():
                return  # close() flushes what is left
            try:
                self.flush()
            except StoreError as e:
                self.last_write_error = str(e)
                if time.time() - self._warned_at > 60:  # say it, but not 2x a second
                    self._warned_at = time.time()
                    log.warning("metrics are kept in memory and retried: %s", e)
            except Exception as e:  # never let the flusher die silently
                self.last_write_error = f"{type(e).__name__}: {e}"
                log.exception("store flusher")

    def truncate_metrics(self, run_id: str, after_step: int | None = None) -> None:
        """Delete a run's metrics after ``after_step`` (all of them when None). Used before resuming
        from a checkpoint, so the steps the killed attempt logged past it are not left behind."""
        cut = -1 if after_step is None else int(after_step)
        with self._block:
            self._metric_rows = [r for r in self._metric_rows if not (r[0] == run_id and r[1] > cut)]
        with self._write("delete metrics from") as con:
            con.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, cut))

    # ---- metrics and events: reads ------------------------------------------------------------
    def metrics(self, run_ids: str | list[str], names: list[str] | None = None,
                since_step: int | None = None):
        """Long table of metrics: columns run_id, step, name, value, wall_time, ordered by run, step, name.

        ``since_step`` keeps rows with ``step >= since_step`` (inclusive: an eval at the last
        step you have may arrive in a later flush than that step's training metrics).
        Only flushed rows are seen (at most ``flush_interval`` behind).
        """
        import pandas as pd

        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        cols = ["run_id", "step", "name", "value", "wall_time"]
        if not ids:
            return pd.DataFrame(columns=cols)
        sql = f"SELECT {', '.join(cols)} FROM metrics WHERE run_id IN ({','.join('?' * len(ids))})"
        params: list[Any] = list(ids)
        if names is not None:
            if not names:
                return pd.DataFrame(columns=cols)
            sql += f" AND name IN ({','.join('?' * len(names))})"
            params += list(names)
        if since_step is not None:
            sql += " AND step >= ?"
            params.append(int(since_step))
        sql += " ORDER BY run_id, step, name"
        df = pd.DataFrame(self._query(sql, params), columns=cols)
        df["step"] = df["step"].astype("int64")
        df["value"] = df["value"].astype("float64")  # NULL (a NaN that was logged) -> NaN
        df["wall_time"] = df["wall_time"].astype("float64")
        return df

    def metric_names(self, run_id: str) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name",
                                          (run_id,))]

    def last_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric, plus "step": the last step with any metric ({} if none)."""
        # SQLite: with MAX() the bare column `value` comes from the row holding the max
        rows = self._query("SELECT name, value, MAX(step) FROM metrics WHERE run_id = ? GROUP BY name", (run_id,))
        if not rows:
            return {}
        out = {name: float("nan") if value is None else float(value) for name, value, _ in rows}
        out["step"] = max(r[2] for r in rows)
        return out

    def events(self, run_id: str, limit: int = 200) -> list[tuple[float, str, str]]:
        """The run's last ``limit`` log lines as (time, level, message), oldest first."""
        rows = self._query("SELECT time, level, message FROM events WHERE run_id = ? ORDER BY time DESC, rowid DESC "
                           "LIMIT ?", (run_id, int(limit)))
        return [tuple(r) for r in reversed(rows)]

    def sink(self, run_id: str) -> StoreSink:
        return StoreSink(self, run_id)

    # ---- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, stop the flusher, close connections. Safe to call twice."""
        if self._closed:
            return
        self._closing.set()
        self._wake.set()
        if self._flusher is not threading.current_thread():
            self._flusher.join(timeout=10)
        try:
            self.flush()
        finally:
            self._closed = True
            _OPEN_STORES.discard(self)
            with self._wlock:
                self._wcon.close()
            for reader in list(self._readers):  # other threads' too (workers): after their query ends
                with reader.lock:
                    try:
                        reader.con.close()
                    except Exception:
                        pass

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _unknown(self, run_id: str) -> UnknownRun:
        return UnknownRun(f"no run {run_id!r} in {self.path}; `hft list` shows the runs there")


# ---- helpers ----------------------------------------------------------------------------------

def new_run_id() -> str:
    return "r-" + uuid.uuid4().hex[:6]


def default_name(cfg: RunConfig) -> str:
    """E.g. "minilm-l6 blend+kd" or "bert baseline"."""
    model = cfg.model.rstrip("/").split(":")[-1].split("/")[-1] or cfg.model
    return f"{model} {'+'.join(cfg.mix) if len(cfg.mix) else 'baseline'}"


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status={status!r} is not valid: use one of {list(STATUSES)}")


def _process_start(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields_ = fh.read().rsplit(b")", 1)[1].split()
        return fields_[19].decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
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


# ---- export --------------------------------------------------------------------------------------

def export_run(store: RunStore, run_id: str, out_dir: str | Path, fmt: str = "csv", *,
               layout: str = "wide") -> list[Path]:
    """Write a run's metrics, log lines and config to ``out_dir``; returns the files written.

    layout="wide": one row per step, one column per metric (plus wall_time, the latest
    write time of that step); layout="long": the store's rows (run_id, step, name, value,
    wall_time). ``config.yaml`` loads back with ``RunConfig.load``.
    """
    import pandas as pd
    import yaml

    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt={fmt!r}: use 'csv' or 'parquet'")
    if layout not in ("wide", "long"):
        raise ValueError(f"layout={layout!r}: use 'wide' or 'long'")
    rec = store.get_run(run_id)
    store.flush()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the export folder {out}: {e.strerror or e}; choose another --out") from None
    df = store.metrics(run_id)
    if layout == "wide":
        table = df.pivot(index="step", columns="name", values="value")
        table = table.reindex(columns=sorted(table.columns))
        table.insert(0, "wall_time", df.groupby("step")["wall_time"].max())
        table = table.reset_index()
        table.columns.name = None
    else:
        table = df
    files = []
    metrics_path = out / f"metrics.{fmt}"
    if fmt == "csv":
        table.to_csv(metrics_path, index=False)
    else:
        try:
            table.to_parquet(metrics_path, index=False)
        except ImportError as e:
            raise StoreError(f"writing parquet needs pyarrow ({e}); `pip install pyarrow` or use --format csv") \
                from None
    files.append(metrics_path)
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(rec.config, sort_keys=False))
    files.append(config_path)
    events_path = out / "events.csv"
    pd.DataFrame(store.events(run_id, limit=1_000_000), columns=["time", "level", "message"]) \
        .to_csv(events_path, index=False)
    files.append(events_path)
    return files
