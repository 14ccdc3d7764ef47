"""The run store's SQLite schema and its migrations (see hft_core/store.py), and RunRecord: a row of runs.

MIGRATIONS[v] turns a store at version v-1 into version v. A newer app opens an older
store by applying the missing steps in order, each in its own transaction, and setting
PRAGMA user_version after each. Never edit a shipped step: add a new one.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

from hft_core.config import RunConfig

STATUSES = ("queued", "running", "finished", "stopped", "pruned", "failed", "interrupted")
DONE_STATUSES = ("finished", "stopped", "pruned", "failed", "interrupted")


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


def _migrate_to_v3(con: sqlite3.Connection) -> None:
    """A running run on a CPU holds a number of its cores (schedule.py: the device's cores are a budget)."""
    _execute_script(con, """
        ALTER TABLE runs ADD COLUMN threads INTEGER;                      -- running: the CPU cores it holds
    """)


def _execute_script(con: sqlite3.Connection, script: str) -> None:
    """Run ;-separated statements inside the caller's transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            con.execute(statement)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_v1, 2: _migrate_to_v2,
                                                                  3: _migrate_to_v3}
SCHEMA_VERSION = max(MIGRATIONS)
OUR_TABLES = {"runs", "metrics", "events", "workers"}