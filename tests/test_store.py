"""RunStore: runs, metrics and events in SQLite; buffered writes; clear errors for a bad home."""
import errno
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from hft_core import schema
from hft_core import store as store_mod
from hft_core.config import RunConfig
from hft_core.store import SCHEMA_VERSION, RunStore, StoreError, UnknownRun, export_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "home", flush_interval=0.2)
    yield s
    s.close()


def cfg(**kw) -> RunConfig:
    return RunConfig(model="tiny:bert", max_steps=5, **kw)


def raw(store: RunStore) -> sqlite3.Connection:
    """A separate connection, as another process (a dashboard, the CLI) would open."""
    return sqlite3.connect(store.path, isolation_level=None)


# ---- runs -------------------------------------------------------------------------------

def test_create_get_list_newest_first(store):
    a = store.create_run(cfg(seed=1), group="sweep", name="first")
    b = store.create_run(cfg(seed=2), status="running", device="cuda:0")
    ra, rb = store.get_run(a), store.get_run(b)
    assert ra.id == a and ra.name == "first" and ra.status == "queued" and ra.group == "sweep" and ra.seed == 1
    assert ra.cfg == cfg(seed=1, group="sweep", name="first")  # the stored config names its run and group
    assert rb.name == "bert baseline" and rb.device == "cuda:0" and rb.started is not None
    assert ra.pid == os.getpid()
    assert rb.position > ra.position
    assert [r.id for r in store.list_runs()] == [b, a]
    assert [r.id for r in store.list_runs(status="queued")] == [a]
    assert [r.id for r in store.list_runs(group="sweep")] == [a]
    assert [r.id for r in store.list_runs(limit=1)] == [b]
    assert store.groups() == ["sweep"]
    assert a.startswith("r-") and len(a) == 8


def test_unknown_run_is_a_clear_key_error(store):
    with pytest.raises(UnknownRun) as e:
        store.get_run("r-000000")
    assert isinstance(e.value, KeyError) and isinstance(e.value, StoreError)
    assert "r-000000" in str(e.value) and str(store.path) in str(e.value)
    with pytest.raises(KeyError):
        store.set_status("r-000000", "running")


def test_status_timestamps_and_queue_position(store):
    a = store.create_run(cfg())
    b = store.create_run(cfg())
    assert store.get_run(a).started is None
    store.set_status(a, "running")
    started = store.get_run(a).started
    assert started is not None and store.get_run(a).ended is None
    store.set_status(a, "failed", error="ValueError: boom", traceback="Traceback ...", checkpoint_dir="/x/ckpt")
    r = store.get_run(a)
    assert (r.status, r.error, r.traceback, r.checkpoint_dir) == ("failed", "ValueError: boom", "Traceback ...",
                                                                  "/x/ckpt")
    assert r.ended >= r.started and r.done
    store.set_status(a, "queued")  # re-queued goes to the back, keeps its first start time
    r = store.get_run(a)
    assert r.ended is None and r.error is None and r.position > store.get_run(b).position
    store.set_status(a, "running")
    assert store.get_run(a).started == started
    with pytest.raises(ValueError, match="status"):
        store.set_status(a, "done")


# ---- metrics and events ---------------------------------------------------------------------

def test_metrics_round_trip(store):
    a, b = store.create_run(cfg()), store.create_run(cfg())
    for step in range(1, 6):
        store.log_metrics(a, step, {"loss": 1.0 / step, "lr": 1e-4, "tokens_seen": 100 * step})
    store.log_metrics(a, 5, {"eval/accuracy": 0.8, "eval/loss": float("nan")})
    store.log_metrics(b, 1, {"loss": 2.0})
    store.flush()
    df = store.metrics(a)
    assert list(df.columns) == ["run_id", "step", "name", "value", "wall_time"]
    assert len(df) == 17
    loss = df[df.name == "loss"]
    assert list(loss.step) == [1, 2, 3, 4, 5] and loss.value.tolist() == pytest.approx([1, .5, 1 / 3, .25, .2])
    assert math.isnan(df[df.name == "eval/loss"].value.item())  # NaN survives (stored as NULL)
    both = store.metrics([a, b], names=["loss"], since_step=5)
    assert sorted(zip(both.run_id, both.step)) == [(a, 5)]
    assert len(store.metrics([a, b], names=["loss"])) == 6
    assert store.metric_names(a) == ["eval/accuracy", "eval/loss", "loss", "lr", "tokens_seen"]
    last = store.last_metrics(a)
    assert last["loss"] == pytest.approx(0.2) and last["step"] == 5 and last["tokens_seen"] == 500
    assert store.last_metrics(store.create_run(cfg())) == {}
    assert store.metrics([]).empty


def test_a_replayed_step_overwrites_instead_of_duplicating(store):
    a = store.create_run(cfg())
    store.log_metrics(a, 3, {"loss": 1.0})
    store.flush()
    store.log_metrics(a, 3, {"loss": 0.9})
    store.flush()
    df = store.metrics(a)
    assert len(df) == 1 and df.value.item() == pytest.approx(0.9)


def test_truncate_metrics_drops_the_tail_also_from_the_buffer(store):
    a = store.create_run(cfg())
    for step in range(1, 11):
        store.log_metrics(a, step, {"loss": float(step)})
    store.flush()
    store.log_metrics(a, 11, {"loss": 11.0})  # still buffered
    store.truncate_metrics(a, after_step=6)
    store.flush()
    assert list(store.metrics(a).step) == [1, 2, 3, 4, 5, 6]
    store.truncate_metrics(a)
    assert store.metrics(a).empty


def test_events_oldest_first_with_limit(store):
    a = store.create_run(cfg())
    for i in range(5):
        store.log_event(a, f"line {i}", "warning" if i == 4 else "info")
    store.sink(a).event("from the sink")
    store.flush()
    ev = store.events(a)
    assert [m for _, _, m in ev] == ["line 0", "line 1", "line 2", "line 3", "line 4", "from the sink"]
    assert ev[4][1] == "warning"
    assert [m for _, _, m in store.events(a, limit=2)] == ["line 4", "from the sink"]


def test_sink_is_a_metric_sink(store):
    a = store.create_run(cfg())
    sink = store.sink(a)
    sink.log(1, {"loss": 0.5})
    store.flush()
    assert store.last_metrics(a)["loss"] == 0.5


def test_non_numeric_metric_is_refused_with_its_name(store):
    a = store.create_run(cfg())
    with pytest.raises(TypeError, match="'note'"):
        store.log_metrics(a, 1, {"note": "hello"})


# ---- durability and concurrency ----------------------------------------------------------------

def test_store_uses_wal_mode(store):
    assert raw(store).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_another_connection_sees_metrics_without_a_flush_call(tmp_path):
    from hft_core.store import PROMPT_LOGS

    s = RunStore(tmp_path, flush_interval=0.5)
    try:
        a = s.create_run(cfg())
        other = raw(s)
        for step in range(1, PROMPT_LOGS + 2):  # past the first few, which are written at once
            s.log_metrics(a, step, {"loss": 1.0})
        deadline = time.time() + 30  # the flusher writes every 0.5 s by itself; 30 s only bounds a broken one
        while other.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] < PROMPT_LOGS + 1:
            assert time.time() < deadline, "the flusher never wrote the buffered metrics by itself"
            time.sleep(0.02)
    finally:
        s.close()


def test_a_new_runs_first_logs_are_written_at_once_later_ones_with_the_interval(tmp_path):
    from hft_core.store import PROMPT_LOGS

    s = RunStore(tmp_path, flush_interval=60)  # the interval alone would keep everything in memory for a minute
    try:
        a = s.create_run(cfg())
        other = raw(s)
        count = lambda: other.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        for step in range(1, PROMPT_LOGS + 1):
            s.log_metrics(a, step, {"loss": 1.0 / step})
            deadline = time.time() + 30
            while count() < step:
                assert time.time() < deadline, f"log {step} of a new run was not written at once"
                time.sleep(0.02)
        s.log_metrics(a, PROMPT_LOGS + 1, {"loss": 0.1})
        # buffered until the interval (or close): it did not wake the flusher, and waits in memory
        assert not s._wake.is_set() and [r[1] for r in s._metric_rows] == [PROMPT_LOGS + 1]
    finally:
        s.close()
    assert len(RunStore(tmp_path).metrics(a)) == PROMPT_LOGS + 1  # close flushed the rest


def test_logging_never_waits_on_a_locked_database(store):
    """Another process holds the write lock: log_metrics still completes (it never touches the disk),
    and the buffered rows land once the lock is released."""
    a = store.create_run(cfg())
    blocker = raw(store)
    blocker.execute("BEGIN IMMEDIATE")  # the write lock, as a busy writer in another process would hold it
    logged = threading.Event()

    def training_thread():
        for step in range(200):
            store.log_metrics(a, step, {"loss": 1.0, "lr": 1e-4})
        logged.set()

    try:
        threading.Thread(target=training_thread).start()  # (its first logs wake the flusher: it waits for the lock)
        assert logged.wait(10), "log_metrics blocked while the database was locked"
        assert store.metrics(a).empty
    finally:
        blocker.execute("COMMIT")
    deadline = time.time() + 10
    while len(store.metrics(a)) < 400:
        assert time.time() < deadline, "buffered rows were not written after the lock was released"
        time.sleep(0.05)


def test_an_open_reader_does_not_block_writes(store):
    a = store.create_run(cfg())
    reader = raw(store)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM metrics").fetchone()  # holds a read snapshot
    store.log_metrics(a, 1, {"loss": 1.0})
    store._wcon.execute("PRAGMA busy_timeout = 0")  # a write that had to wait for the reader fails at once
    store.flush()
    assert reader.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0  # its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 1


def test_many_threads_write_at_once(store):
    ids: list[str] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        run_id = store.create_run(cfg(seed=k))
        with lock:
            ids.append(run_id)
        for step in range(50):
            store.log_metrics(run_id, step, {"loss": float(k)})
            store.get_run(run_id)  # reads on this thread's own connection meanwhile
        store.set_status(run_id, "finished")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a writer thread still runs after 120 s (a lock never released?)"
    store.flush()
    assert len(set(ids)) == 8
    assert all(r.status == "finished" for r in store.list_runs())
    assert len(store.metrics(ids)) == 8 * 50


def test_a_full_disk_keeps_rows_in_memory_and_writes_them_later(store):
    a = store.create_run(cfg())
    store.flush()
    pages = store._wcon.execute("PRAGMA page_count").fetchone()[0]
    store._wcon.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now answers "database or disk is full"
    for step in range(2000):
        store.log_metrics(a, step, {"loss": 1.0, "a_long_metric_name/for_more_bytes": 2.0})
    with pytest.raises(StoreError, match="full") as e:
        store.flush()
    assert str(store.path) in str(e.value)
    store._wcon.execute("PRAGMA max_page_count = 1073741823")
    store.flush()
    assert len(store.metrics(a)) == 4000


def test_close_flushes_and_is_idempotent(tmp_path):
    s = RunStore(tmp_path, flush_interval=60)
    a = s.create_run(cfg())
    s.log_metrics(a, 1, {"loss": 1.0})
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.log_metrics(a, 2, {"loss": 1.0})
    with RunStore(tmp_path) as again:
        assert len(again.metrics(a)) == 1


# ---- schema ----------------------------------------------------------------------------------------

def test_schema_version_is_recorded(store):
    assert raw(store).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_opens_a_v1_store_written_before(tmp_path):
    """A v1 store as an earlier app left it (built by the v1 migration alone) opens with its data."""
    con = sqlite3.connect(tmp_path / "runs.sqlite", isolation_level=None)
    schema._migrate_to_v1(con)
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO runs (id, name, status, config_json, created, device, group_name, seed, position) "
                "VALUES ('r-0ld001', 'old', 'finished', ?, 1.0, 'cpu', '', 0, 1)", (cfg().to_json(),))
    con.execute("INSERT INTO metrics VALUES ('r-0ld001', 1, 'loss', 0.5, 1.0)")
    con.close()
    with RunStore(tmp_path) as s:
        assert s.get_run("r-0ld001").cfg == cfg()
        assert s.last_metrics("r-0ld001") == {"loss": 0.5, "step": 1}
        assert s.mark_interrupted() == []
        old = s.get_run("r-0ld001")  # migrated to the control plane's columns, with their defaults
        assert (old.kind, old.job, old.after, old.worker, old.stop_requested) == ("train", {}, [], None, None)
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_migrations_are_applied_in_order(tmp_path, monkeypatch):
    with RunStore(tmp_path) as s:
        s.create_run(cfg(), name="kept")
    applied = []
    nxt = SCHEMA_VERSION + 1

    def to_next(con):
        applied.append(nxt)
        con.execute("ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT ''")

    monkeypatch.setitem(store_mod.MIGRATIONS, nxt, to_next)
    with RunStore(tmp_path) as s:
        assert [r.name for r in s.list_runs()] == ["kept"]
    with RunStore(tmp_path):
        pass
    assert applied == [nxt]  # once, not at every open
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == nxt
    assert "notes" in [r[1] for r in con.execute("PRAGMA table_info(runs)")]


def test_six_openers_of_a_new_store_at_once_each_get_it_whole(tmp_path):
    """Several openers of one brand-new store race through the migrations: each step is applied once
    (a second ALTER TABLE would fail with "duplicate column name"), and every opener can use the store."""
    for attempt in range(12):
        home = tmp_path / f"home{attempt}"
        home.mkdir()
        start = threading.Barrier(6)
        errors: list[BaseException] = []

        def open_and_use() -> None:
            try:
                start.wait(timeout=30)
                with RunStore(home) as s:
                    s.create_run(cfg(), name="mine")
            except BaseException as e:  # noqa: BLE001 (collected, asserted below)
                errors.append(e)

        threads = [threading.Thread(target=open_and_use) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "an opener hung"
        assert errors == [], f"attempt {attempt}: {errors[0]!r}"
        with RunStore(home) as s:
            assert len(s.list_runs()) == 6
        assert sqlite3.connect(home / "runs.sqlite").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_opener_told_database_is_locked_at_the_wal_switch_tries_again(tmp_path, monkeypatch):
    """SQLite answers one of two connections switching a new file to WAL "database is locked" at once,
    without its busy timeout (both hold a read lock and want the exclusive one): the opener tries again.
    Here the first two switches are refused that way; the third goes through and the store works."""
    refusals = []
    real_connect = RunStore._connect

    class Refusing:
        def __init__(self, con):
            self._con = con

        def execute(self, sql, *args):
            if sql.startswith("PRAGMA journal_mode") and len(refusals) < 2:
                refusals.append(sql)
                raise sqlite3.OperationalError("database is locked")
            return self._con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._con, name)

    monkeypatch.setattr(RunStore, "_connect", lambda self: Refusing(real_connect(self)))
    with RunStore(tmp_path) as s:
        rid = s.create_run(cfg(), name="after two refusals")
        assert s.get_run(rid).name == "after two refusals"
    assert len(refusals) == 2


def test_a_store_from_a_newer_app_is_refused(tmp_path):
    with RunStore(tmp_path):
        pass
    sqlite3.connect(tmp_path / "runs.sqlite").execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer HFT Lab") as e:
        RunStore(tmp_path)
    assert str(tmp_path) in str(e.value)


# ---- a bad home folder ----------------------------------------------------------------------------

def test_home_that_is_a_file(tmp_path, monkeypatch):
    f = tmp_path / "not_a_folder"
    f.write_text("x")
    monkeypatch.setenv("HFT_HOME", str(f))
    with pytest.raises(StoreError, match="is a file, not a folder") as e:
        RunStore()
    assert str(f) in str(e.value) and "HFT_HOME" in str(e.value)
    with pytest.raises(StoreError, match="part of that path is a file"):
        RunStore(f / "sub")


def test_runs_sqlite_that_is_not_a_database(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is some text, not SQLite " * 100)
    with pytest.raises(StoreError, match="not a database") as e:
        RunStore(tmp_path)
    assert str(tmp_path / "runs.sqlite") in str(e.value) and "Move it away" in str(e.value)


def test_a_foreign_sqlite_database_is_not_taken_over(tmp_path):
    sqlite3.connect(tmp_path / "runs.sqlite").execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StoreError, match="not an HFT Lab store"):
        RunStore(tmp_path)


def _make_unwritable(folder: Path, monkeypatch) -> str:
    """Make a folder unwritable in a way that holds for the current user. Root ignores
    permission bits, so as root use the immutable attribute (chattr +i); where the filesystem
    has none (overlayfs, tmpfs), refuse writes under the folder as a read-only mount does (EROFS
    from os.open, which the store's write probe uses)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return "chmod"
    try:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
            return "chattr"
    except OSError:  # no chattr at all
        pass
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(folder)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    return "read-only"


def _restore(folder: Path, how: str) -> None:
    if how == "chmod":
        folder.chmod(0o700)
    elif how == "chattr":
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_unwritable_home_folder(tmp_path, monkeypatch):
    home = tmp_path / "ro"
    home.mkdir()
    how = _make_unwritable(home, monkeypatch)
    try:
        with pytest.raises(StoreError, match="not writable") as e:
            RunStore(home)
        assert str(home) in str(e.value) and "HFT_HOME" in str(e.value)
    finally:
        _restore(home, how)


def test_an_unwritable_home_with_an_existing_store(tmp_path, monkeypatch):
    with RunStore(tmp_path / "h") as s:
        s.create_run(cfg())
    how = _make_unwritable(tmp_path / "h", monkeypatch)
    try:
        with pytest.raises(StoreError, match="not writable"):
            RunStore(tmp_path / "h")
    finally:
        _restore(tmp_path / "h", how)


def test_a_home_that_cannot_be_created(tmp_path):
    # a folder under a file cannot be made by anyone, root included, on any system
    (tmp_path / "a-file").write_text("not a folder")
    home = tmp_path / "a-file" / "home"
    with pytest.raises(StoreError, match="cannot create the HFT Lab home .*a part of that path is a file"):
        RunStore(home)


def test_a_full_disk_at_start(tmp_path):
    """A process that may not write a single byte (RLIMIT_FSIZE=0: writes fail with EFBIG, as on a
    full disk, for root too) gets a StoreError, not a traceback from deep inside SQLite."""
    code = ("import resource, sys\n"
            "from hft_core.store import RunStore, StoreError\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))\n"
            "try:\n"
            "    RunStore(sys.argv[1])\n"
            "except StoreError as e:\n"
            "    print(e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "not writable" in r.stdout and "free space" in r.stdout and str(tmp_path) in r.stdout


# ---- delete, interrupted, export ----------------------------------------------------------------------

def test_delete_removes_rows_and_folder(store):
    a, b = store.create_run(cfg()), store.create_run(cfg())
    for run_id in (a, b):
        store.log_metrics(run_id, 1, {"loss": 1.0})
        store.log_event(run_id, "hi")
        (store.run_dir(run_id) / "checkpoint").mkdir(parents=True)
    store.flush()
    assert store.get_run(a).checkpoint_dir == str(store.run_dir(a) / "checkpoint")
    store.log_metrics(a, 2, {"loss": 1.0})  # buffered rows go too
    store.delete_run(a)
    store.flush()
    with pytest.raises(KeyError):
        store.get_run(a)
    assert store.metrics(a).empty and store.events(a) == [] and not store.run_dir(a).exists()
    assert len(store.metrics(b)) == 1 and store.run_dir(b).exists()


def test_delete_refuses_a_run_that_is_still_training(store):
    a = store.create_run(cfg(), status="running")  # owned by this live process
    with pytest.raises(StoreError, match="stop it first"):
        store.delete_run(a)


def test_run_dir_refuses_path_tricks(store):
    assert store.run_dir("r-abc123") == store.home / "runs" / "r-abc123"
    with pytest.raises(StoreError):
        store.run_dir("../../etc")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=60)
    return p.pid


def test_mark_interrupted_only_touches_runs_of_dead_owners(store):
    mine = store.create_run(cfg(), status="running")
    dead_running = store.create_run(cfg(), status="running")
    dead_queued = store.create_run(cfg())
    reused_pid = store.create_run(cfg(), status="running")
    other_host = store.create_run(cfg(), status="running")
    finished = store.create_run(cfg(), status="finished")
    con = raw(store)
    pid = _dead_pid()
    con.execute("UPDATE runs SET owner_pid = ? WHERE id IN (?, ?, ?)", (pid, dead_running, dead_queued, finished))
    # a live pid whose start time does not match: the pid was reused by another process
    con.execute("UPDATE runs SET owner_start = '1' WHERE id = ?", (reused_pid,))
    con.execute("UPDATE runs SET owner_pid = ?, owner_host = 'elsewhere' WHERE id = ?", (pid, other_host))
    assert sorted(store.mark_interrupted()) == sorted([dead_running, reused_pid])
    r = store.get_run(dead_running)
    assert r.status == "interrupted" and r.ended is not None and f"pid {pid}" in r.error and "resume" in r.error
    assert store.get_run(mine).status == "running"
    assert store.get_run(other_host).status == "running"  # cannot tell from here: left alone
    assert store.get_run(finished).status == "finished"
    assert store.get_run(dead_queued).status == "queued"  # the queue outlives the process that filled it
    assert store.mark_interrupted() == []


def test_export_wide_and_long_csv_and_parquet(store, tmp_path):
    c = cfg(seed=3)
    a = store.create_run(c, name="exp")
    for step in range(1, 4):
        store.log_metrics(a, step, {"loss": 1.0 / step, "lr": 1e-4})
    store.log_metrics(a, 3, {"eval/accuracy": 0.75})
    store.log_event(a, "done")
    files = export_run(store, a, tmp_path / "out")  # flushes first
    assert [f.name for f in files] == ["metrics.csv", "config.yaml", "events.csv"]
    wide = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert list(wide.columns) == ["step", "wall_time", "eval/accuracy", "loss", "lr"]
    assert list(wide.step) == [1, 2, 3] and wide["eval/accuracy"].isna().tolist() == [True, True, False]
    assert RunConfig.load(str(tmp_path / "out" / "config.yaml")) == store.get_run(a).cfg
    assert pd.read_csv(tmp_path / "out" / "events.csv").message.tolist() == ["done"]

    export_run(store, a, tmp_path / "pq", fmt="parquet")
    assert pd.read_parquet(tmp_path / "pq" / "metrics.parquet").equals(wide)
    export_run(store, a, tmp_path / "long", fmt="parquet", layout="long")
    long = pd.read_parquet(tmp_path / "long" / "metrics.parquet")
    assert list(long.columns) == ["run_id", "step", "name", "value", "wall_time"] and len(long) == 7
    with pytest.raises(ValueError, match="csv"):
        export_run(store, a, tmp_path / "x", fmt="xlsx")
