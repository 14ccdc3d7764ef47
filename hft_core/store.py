"""RunStore: every run, its metrics and its log lines in one SQLite file.

    $HFT_HOME/runs.sqlite       runs, metrics, events, workers (WAL mode)
    $HFT_HOME/runs/<run_id>/    the run's folder: checkpoint/, run_config.yaml

* The training loop calls ``log_metrics`` / ``log_event`` (through ``StoreSink``): they only
  append to an in-memory buffer under a short lock, so training never waits on the disk.
* A flusher thread writes the buffer in one transaction every ``flush_interval`` seconds
  (0.5 s), so a crash or ``kill -9`` loses at most the last second. A run's first few
  ``log_metrics`` calls wake it at once, so a new run's first points show without that wait.
* Run-level writes (``create_run``, ``set_status`` ...) go straight to the database.
* Readers (pages, the CLI, other processes) use a connection per thread; WAL lets them read
  while a writer commits, and lets several processes share one store.
* The control plane (queue, claims, leases, stop requests, fencing) is hft_core/control.py;
  the schema and its migrations hft_core/schema.py.
"""
from __future__ import annotations

import atexit
import json
import logging
import shutil
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from hft_core.config import RunConfig
from hft_core.control import HEARTBEAT_S, LEASE_S, Claim, ClaimLost, ControlPlane  # noqa: F401 (re-exported)
from hft_core.errors import StoreError, UnknownRun
from hft_core.home import check_home, hft_home, run_dir
from hft_core.sinks import StoreSink
from hft_core.schema import (DONE_STATUSES, MIGRATIONS, OUR_TABLES, SCHEMA_VERSION, STATUSES,  # noqa: F401 (re-exported)
                             RunRecord)

log = logging.getLogger(__name__)

DB_NAME = "runs.sqlite"
PROMPT_LOGS = 3                # a run's first log_metrics calls are written at once, not within flush_interval
MAX_BUFFERED_ROWS = 1_000_000  # if the disk keeps failing, keep at most this many rows in memory


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


class RunStore(ControlPlane):
    """Runs, metrics and events in one SQLite file; the control plane's methods (claims, leases,
    stop requests) come from hft_core/control.py."""

    def __init__(self, home: str | Path | None = None, *, flush_interval: float = 0.5) -> None:
        if flush_interval <= 0:
            raise ValueError(f"flush_interval={flush_interval!r}: use a positive number of seconds, e.g. 0.5")
        self.home = Path(home).expanduser() if home is not None else hft_home()
        self.path = self.home / DB_NAME
        self.flush_interval = float(flush_interval)
        check_home(self.home, DB_NAME)
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
        self._fences: dict[str, str] = {}        # run id -> the worker of this process that holds it
        self._init_control()
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

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE in _write)
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA busy_timeout = 30000")   # wait for another writer instead of failing
        con.execute("PRAGMA synchronous = NORMAL")   # WAL + NORMAL: a commit survives a process kill
        return con

    def _open_writer(self) -> sqlite3.Connection:
        # Two connections switching a brand-new file to WAL at once both hold a read lock and want the
        # exclusive one: SQLite answers one of them "database is locked" at once, without waiting (its
        # deadlock rule), so the busy timeout does not cover it. That opener tries again, for as long
        # as the busy timeout would have waited.
        deadline = time.monotonic() + 30.0
        while True:
            con = None
            try:
                con = self._connect()
                mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("SQLite would not switch %s to WAL mode (got %r); readers may block the writer",
                                self.path, mode)
                self._migrate(con)
                return con
            except sqlite3.OperationalError as e:
                if con is not None:
                    con.close()
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise self._db_error(e, "open") from None
                time.sleep(0.01 + 0.04 * (uuid.uuid4().int % 100) / 100)  # apart, not in step again
            except sqlite3.DatabaseError as e:
                if con is not None:
                    con.close()
                raise self._db_error(e, "open") from None

    def _migrate(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        latest = max(MIGRATIONS)
        if version > latest:
            raise StoreError(f"{self.path} was written by a newer HFT Lab (store schema v{version}; this one "
                             f"reads up to v{latest}). Upgrade HFT Lab, or set HFT_HOME to another folder.")
        if version == 0:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            foreign = tables - OUR_TABLES
            if foreign:
                raise StoreError(f"{self.path} is a SQLite database but not an HFT Lab store (it has tables "
                                 f"{sorted(foreign)}). Move it away, or set HFT_HOME to another folder.")
        for v in range(version + 1, latest + 1):
            con.execute("BEGIN IMMEDIATE")
            try:
                # read again under the write lock: another process opening a new store at the same
                # moment may have applied this step since the read above
                if con.execute("PRAGMA user_version").fetchone()[0] < v:
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
                   checkpoint_dir: str | Path | None = None, worker: str | None = None) -> None:
        """Change a run's status. "running" sets ``started`` (first time only) and makes this process the
        owner; "queued" moves it to the back of the queue; a final status sets ``ended`` and ends its
        claim (worker, lease and stop request are cleared).

        ``worker``: the worker that claimed the run ends it. A compare-and-set, fenced by the claim:
        only while the run is still running and held by that worker; otherwise nothing is written
        and ClaimLost says what the run is now (a late writer never overwrites "interrupted").

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
        where, wparams = "id = ?", [run_id]
        if worker is not None:
            where += " AND status = 'running' AND worker = ?"
            wparams.append(worker)
        with self._write("update a run in") as con:
            cur = con.execute(f"UPDATE runs SET {', '.join(sets)} WHERE {where}", (*params, *wparams))
            if cur.rowcount == 0:
                row = con.execute("SELECT status, worker FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise self._unknown(run_id)
                raise ClaimLost(f"run {run_id} is no longer held by worker {worker} (it is {row[0]}"
                                f"{', held by ' + row[1] if row[1] else ''}), so its end ({status}) was not recorded")
            if worker is not None:
                con.execute("INSERT INTO events (run_id, time, level, message) VALUES (?,?,?,?)",
                            (run_id, now, "info", f"ended {status} by worker {worker}"))

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
                  limit: int | None = None, kind: str | None = None) -> list[RunRecord]:
        """Runs, newest first; optionally only some statuses and/or one group. ``kind``: only runs of
        that kind ("train", "wise_ft", "probe" ...); by default every kind but the time-estimate
        probes (jobs of the app's own, not runs a user started)."""
        where, params = ["kind = ?" if kind else "kind != 'probe'"], [kind] if kind else []
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
        """The run's folder (not created here): checkpoint/, run_config.yaml (``home.run_dir``)."""
        return run_dir(run_id, self.home)

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
                    metric_rows, event_rows = self._drop_unheld(con, metric_rows, event_rows)
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
            self._close_control()
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


from hft_core.export import export_run  # noqa: E402,F401 (its home was here; import it from hft_core.export)
