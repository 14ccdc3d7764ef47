"""Scale-out on Ray: each run a Ray task; its metrics, events, status and checkpoint land in the
store of the machine that started it.

    hft search --config search.yaml --backend ray --address auto     # a cluster from `ray start`
    hft preset finetune_vs_scratch --seeds 3 --backend ray            # a local Ray instance for this command

Ray does the cluster work (nodes, resources, scheduling, transfer); nothing here is a cluster
protocol of our own. What this module adds is the bridge to the store:

* the driver (this process) is a **worker** of the control plane for the queue ``ray:cpu`` (or
  ``ray:gpu``): it claims the runs it queued, holds their leases with its heartbeat, and its
  train function sends each run to Ray as a task with the run's resources (``num_gpus=1`` for a
  GPU run, ``num_cpus`` otherwise) and blocks until it ends. So a run shows "running" while its
  task trains, "interrupted" if the driver dies, and the local queues (``cpu``, ``cuda:0``) are
  untouched: Ray's own scheduler decides what runs where at once.
* a small **relay actor** carries the traffic both ways: the task's sink pushes its metric rows
  and log lines to it in batches (every RELAY_S), the driver drains them into the store; the
  driver forwards a stop request (Stop on Live, ``hft stop``, Ctrl-C: all reach the driver's
  worker as the run's stop event) and the task's watcher thread polls for it and sets the
  trainer's stop event. The driver only ever talks to Ray as a client, so this works the same
  through Ray Client (``ray://host:10001``), where no actor could live on the driver's machine.
* the **checkpoint** is the task's return value (a tar of the run's checkpoint folder), unpacked
  into the run's folder here; a resumed run sends its checkpoint along with the task.

Nodes need HFT Lab and its requirements installed (the same versions); a run that reads another
run's checkpoint (``run:<id>``: a KD teacher, ``mix.kd.teacher``) needs that run's folder on the
node, i.e. a shared ``HFT_HOME`` or a single-machine cluster. Post-training jobs (WiSE-FT,
soups) run in the driver's process, on the checkpoints that came back.

This module imports Ray only inside its functions: without ``--backend ray`` Ray is never imported.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from hft_core.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

RELAY_S = 0.5          # the task pushes its buffered metrics this often; the driver drains as often
STOP_POLL_S = 0.5      # the task asks the relay for a stop request this often
ENV_PASSED = ("HFT_HOME", "HFT_OFFLINE", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HFT_VERBOSE")
RELAYED: Counter[str] = Counter()   # run id -> metric values the driver wrote to the store for it (tests, bench)


class RayBackendError(ConfigError):
    """Ray is missing, cannot be reached, or the cluster cannot run what was asked; the message says what to do."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayBackendError("--backend ray needs Ray: pip install ray==2.60.0 (pinned in requirements.txt), "
                              "or drop --backend ray to train here") from None
    return ray


def connect(address: str | None = None) -> Any:
    """Join a Ray cluster (``"auto"``: the one `ray start` runs on this machine; ``ray://host:10001``:
    Ray Client), or start a local Ray instance for this process when ``address`` is None. A
    process that already called ``ray.init`` keeps its connection."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address and address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (Ray Client talks gRPC)
        except ImportError:
            raise RayBackendError(f"--address {address} uses Ray Client, which needs its extra: "
                                  f"pip install 'ray[client]==2.60.0'; or run the lab on a cluster node and use "
                                  f"--address auto") from None
    env = {k: os.environ[k] for k in ENV_PASSED if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
    if not address:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address or None, **kwargs)
    except ConnectionError as e:
        raise RayBackendError(f"cannot reach a Ray cluster at {address!r} ({e}); start one with `ray start --head` "
                              f"(then --address auto), or leave out --address for a local Ray instance") from None
    return ray


def resources(device: str, cpus_per_run: int | None = None) -> dict[str, float]:
    """The Ray resources of one run: a GPU run asks for num_gpus=1 (and 1 CPU to feed it), a CPU
    run for ``cpus_per_run`` CPUs (HFT_RAY_CPUS_PER_RUN, default 1)."""
    cpus = cpus_per_run or int(os.environ.get("HFT_RAY_CPUS_PER_RUN", "1") or 1)
    if cpus < 1:
        raise RayBackendError(f"HFT_RAY_CPUS_PER_RUN={cpus}: use a whole number of at least 1")
    return {"num_cpus": 1, "num_gpus": 1} if wants_gpu(device) else {"num_cpus": cpus, "num_gpus": 0}


def wants_gpu(device: str) -> bool:
    """'cuda', 'cuda:N' -> a GPU; 'cpu' -> not; 'auto' -> a GPU when the cluster has any."""
    if device.startswith("cuda"):
        return True
    if device == "auto":
        ray = _ray()
        return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    return False


def task_device(device: str) -> str:
    """The device inside the task: Ray gives a GPU task its GPU as cuda:0 (CUDA_VISIBLE_DEVICES)."""
    return "cuda" if device.startswith("cuda") else device


# ---- the relay actor: metrics up, stop requests down ----------------------------------------------

def _relay_class() -> type:
    """Defined in a function so Ray ships it by value: the actor's process needs no hft_core (no torch)."""

    class RunRelay:
        """Per run: metric rows and log lines pushed by its task, drained by the driver; stop flags."""

        def __init__(self) -> None:
            self.rows: dict[str, list] = {}
            self.events: dict[str, list] = {}
            self.stops: set[str] = set()

        def push(self, run_id: str, rows: list, events: list) -> int:
            self.rows.setdefault(run_id, []).extend(rows)
            self.events.setdefault(run_id, []).extend(events)
            return len(rows)

        def drain(self, run_id: str) -> tuple[list, list]:
            return self.rows.pop(run_id, []), self.events.pop(run_id, [])

        def request_stop(self, run_id: str) -> None:
            self.stops.add(run_id)

        def stop_requested(self, run_id: str) -> bool:
            return run_id in self.stops

        def forget(self, run_id: str) -> None:
            self.stops.discard(run_id)
            self.rows.pop(run_id, None)
            self.events.pop(run_id, None)

    return RunRelay


class RelaySink:
    """The task's MetricSink: buffers rows and log lines, a thread pushes them to the relay every
    RELAY_S; ``close`` pushes the rest and waits for the relay to have them (so the driver, which
    sees the task end after that, drains every row)."""

    def __init__(self, relay: Any, run_id: str) -> None:
        self.relay, self.run_id = relay, run_id
        self._rows: list[tuple[int, dict[str, float]]] = []
        self._events: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"hft-relay:{run_id}", daemon=True)
        self._thread.start()

    def log(self, step: int, values: Mapping[str, float]) -> None:
        row = (int(step), {str(k): float(v) for k, v in values.items()})
        with self._lock:
            self._rows.append(row)

    def event(self, message: str, level: str = "info") -> None:
        with self._lock:
            self._events.append((str(message), str(level)))

    def _push(self) -> None:
        import ray

        with self._lock:
            rows, self._rows = self._rows, []
            events, self._events = self._events, []
        if not rows and not events:
            return
        try:
            ray.get(self.relay.push.remote(self.run_id, rows, events))  # in order: one batch at a time
        except Exception:
            with self._lock:  # keep them, oldest first, for the next push
                self._rows[:0], self._events[:0] = rows, events
            raise

    def _loop(self) -> None:
        while not self._done.wait(RELAY_S):
            try:
                self._push()
            except Exception:  # noqa: BLE001 - a hiccup of the relay: the rows are kept and pushed next time
                log.warning("run %s: pushing metrics to the relay failed; retrying", self.run_id, exc_info=True)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._push()


# ---- the task ---------------------------------------------------------------------------------------

def _train_task(cfg: dict[str, Any], run_id: str, relay: Any, resume_tar: bytes | None,
                threads: int) -> dict[str, Any]:
    """One run on a Ray worker: train into a temporary folder, relay metrics, watch for a stop,
    return the status and the checkpoint (tar bytes). Raises what the trainer raises."""
    import socket

    import ray
    import torch

    from hft_core.trainer import train

    if threads:
        torch.set_num_threads(threads)  # the CPUs Ray gave this task, not every core of the node
    work = Path(tempfile.mkdtemp(prefix=f"hft-ray-{run_id}-"))
    stop, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(STOP_POLL_S):
            try:
                if ray.get(relay.stop_requested.remote(run_id)):
                    stop.set()
                    return
            except Exception:  # noqa: BLE001 - the relay is gone: the driver is gone; stop with a checkpoint
                stop.set()
                return

    try:
        if resume_tar:
            _unpack(resume_tar, work / "checkpoint")
        sink = RelaySink(relay, run_id)
        watcher = threading.Thread(target=watch, name=f"hft-stop-watch:{run_id}", daemon=True)
        watcher.start()
        sink.event(f"training as a Ray task on {socket.gethostname()} (pid {os.getpid()}, "
                   f"{'GPU ' + ','.join(map(str, ray.get_gpu_ids())) if ray.get_gpu_ids() else f'{threads} CPU'})")
        try:
            result = train(RunConfig.from_dict(cfg), sink, stop, out_dir=work, resume=bool(resume_tar))
        finally:
            done.set()
            sink.close()
        ckpt = work / "checkpoint"
        return {"status": result.status, "step": result.step, "metrics": dict(result.metrics),
                "checkpoint": _pack(ckpt) if ckpt.is_dir() else None}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def _unpack(data: bytes, folder: Path) -> None:
    """Unpack a checkpoint into ``folder``, swapped in whole (the trainer's checkpoint.tmp/.old dance)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(tmp, filter="data")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)  # left by a kill in the last swap's clean-up
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class RayResult:
    """What the driver's train function returns to the worker (``_execute`` reads status and checkpoint)."""
    status: str
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    model: Any = None


class RayTrainFn:
    """The driver side of a run: a train function for a Worker that sends the run to Ray and blocks."""

    def __init__(self, relay: Any, cpus_per_run: int | None = None) -> None:
        self.relay = relay
        self.cpus_per_run = cpus_per_run
        self._remote = _ray().remote(_train_task)

    def __call__(self, cfg: RunConfig, sink: Any = None, stop: threading.Event | None = None, *,
                 out_dir: str | Path | None = None, resume: bool = False) -> RayResult:
        ray = _ray()
        if out_dir is None:
            raise ValueError("a Ray run needs its run folder (out_dir) to bring the checkpoint back to")
        out = Path(out_dir)
        run_id = out.name
        stop = stop or threading.Event()
        out.mkdir(parents=True, exist_ok=True)
        (out / "run_config.yaml").write_text(cfg.to_yaml())
        opts = resources(cfg.device, self.cpus_per_run)
        task_cfg = cfg.with_overrides({"device": task_device(cfg.device)}).to_dict()
        resume_tar = _pack(out / "checkpoint") if resume and (out / "checkpoint").is_dir() else None
        threads = int(opts["num_cpus"]) if not opts["num_gpus"] else 0
        ref = self._remote.options(**opts, max_retries=0, name=f"hft-run-{run_id}").remote(
            task_cfg, run_id, self.relay, resume_tar, threads)
        if sink is not None:
            sink.event(f"sent to Ray as a task ({', '.join(f'{k}={v:g}' for k, v in opts.items() if v)}); "
                       f"waiting for the cluster's resources")
        forwarded, finished = False, False
        try:
            while not finished:
                finished = bool(ray.wait([ref], timeout=RELAY_S)[0])
                self._drain(run_id, sink)
                if stop.is_set() and not forwarded:
                    self.relay.request_stop.remote(run_id)
                    forwarded = True
            self._drain(run_id, sink)  # the task pushed its last rows before it returned
            try:
                got = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                raise _cause(e) from None
        except BaseException:
            if not finished:
                ray.cancel(ref, force=True)
            raise
        finally:
            self.relay.forget.remote(run_id)
        ckpt = None
        if got.get("checkpoint"):
            _unpack(got["checkpoint"], out / "checkpoint")
            ckpt = str(out / "checkpoint")
        return RayResult(got["status"], int(got["step"]), got.get("metrics") or {}, ckpt)

    def _drain(self, run_id: str, sink: Any) -> None:
        ray = _ray()
        rows, events = ray.get(self.relay.drain.remote(run_id))
        if sink is None:
            return
        for step, values in rows:
            sink.log(step, values)
            RELAYED[run_id] += len(values)
        for message, level in events:
            sink.event(message, level)


def _cause(e: Any) -> BaseException:
    """The trainer's own exception from a failed task (its type and message), with the remote traceback as a note."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        try:
            cause.add_note(f"raised in a Ray task:\n{e}")
        except AttributeError:
            pass
        return cause
    return RuntimeError(str(e))


# ---- launching: search trials, preset runs, sweeps -------------------------------------------------

class RayLauncher:
    """Queues runs for Ray and trains them there: a foreground worker of this process for the queue
    ``ray:cpu``/``ray:gpu`` whose train function is a RayTrainFn. ``slots``: runs in flight at once
    (default: as many as the cluster's CPUs/GPUs hold); the cluster's resources decide what trains."""

    def __init__(self, store: Any, device: str = "auto", *, address: str | None = None, slots: int | None = None,
                 cpus_per_run: int | None = None) -> None:
        from hft_core.runs import Worker

        ray = connect(address)
        self.store = store
        self.gpu = wants_gpu(device)
        self.queue = "ray:gpu" if self.gpu else "ray:cpu"
        have = ray.cluster_resources()
        need = resources(device, cpus_per_run)
        if self.gpu and have.get("GPU", 0) < 1:
            raise RayBackendError(f"device={device!r} asks for a GPU, but the Ray cluster has none "
                                  f"(resources: {dict(have)}); add a GPU node (`ray start --address=... --num-gpus=1`) "
                                  f"or set device: cpu")
        room = int(have.get("GPU", 0)) if self.gpu else int(have.get("CPU", 1) // max(1, need["num_cpus"]))
        if room < 1:
            raise RayBackendError(f"a run asks for {need}, more than the Ray cluster has ({dict(have)}); lower "
                                  f"HFT_RAY_CPUS_PER_RUN or add nodes")
        self.slots = max(1, slots or room)
        self.relay = ray.remote(num_cpus=0)(_relay_class()).remote()
        self.worker = Worker(store, self.queue, train_fn=RayTrainFn(self.relay, cpus_per_run), role="foreground",
                             max_per_device=self.slots, slots=self.slots, check=False).start()

    def submit(self, cfg: RunConfig, *, group: str = "", name: str = "", after: Sequence[str] = ()) -> str:
        run_id = self.worker.reserve(cfg, group=group, name=name, after=after)
        self.worker.wake()
        return run_id

    def close(self, *, stop_running: bool = False) -> None:
        self.worker.close(stop_running=stop_running, wait=True)
        try:
            _ray().kill(self.relay)
        except Exception:  # noqa: BLE001 - Ray already shut down
            pass


def run_preset_on_ray(preset: Any, seeds: Iterable[int] | None = None, *, quick: bool = False,
                      address: str | None = None, store: Any = None,
                      log: Callable[[str], None] | None = None) -> Any:
    """Every run of a preset as Ray tasks at once (the cluster runs what fits); returns the preset's Outcome.

    A variant that needs another's run (a KD teacher) waits for it in the queue, as locally;
    the WiSE-FT step runs here once its run's checkpoint has come back.
    """
    from hft_core.presets import outcome_of, submit_preset
    from hft_core.store import RunStore

    own = store is None
    store = store if store is not None else RunStore()
    log = log or (lambda message: None)
    launcher = RayLauncher(store, RunConfig.from_dict(preset.base).device, address=address)
    try:
        group, ids = submit_preset(None, preset, seeds, quick=quick, reserve=launcher.worker)
        log(f"{preset.name}: {len(ids)} runs sent to Ray as group {group!r} ({launcher.slots} at a time)")
        _wait_logging(store, ids, log)
        return outcome_of(preset, store, ids, group, quick=quick)
    finally:
        launcher.close(stop_running=True)
        if own:
            store.close()


def run_sweep_on_ray(cfg: RunConfig, grid: Mapping[str, Sequence[Any]], *, group: str = "",
                     address: str | None = None, store: Any = None,
                     log: Callable[[str], None] | None = None) -> list[str]:
    """One Ray task per point of the grid (as ``RunManager.submit_sweep``); returns the run ids once all ended.
    From the command line, a sweep is a grid search: ``hft search --sampler grid --backend ray``."""
    import itertools
    import uuid

    from hft_core.runs import _fmt, _short_labels
    from hft_core.store import RunStore

    if not grid:
        raise ConfigError("the sweep grid is empty; give at least one field, e.g. {'seed': [0, 1, 2]}")
    keys = list(grid)
    labels = _short_labels(keys)
    planned = [(cfg.with_overrides(dict(zip(keys, point))),
                " ".join(f"{lab}={_fmt(v)}" for lab, v in zip(labels, point)))
               for point in itertools.product(*(list(grid[k]) for k in keys))]
    own = store is None
    store = store if store is not None else RunStore()
    group = group or cfg.group or f"sweep-{uuid.uuid4().hex[:4]}"
    launcher = RayLauncher(store, cfg.device, address=address)
    try:
        ids = [launcher.submit(c, group=group, name=name) for c, name in planned]
        _wait_logging(store, ids, log or (lambda message: None))
        return ids
    finally:
        launcher.close(stop_running=True)
        if own:
            store.close()


def _wait_logging(store: Any, ids: Sequence[str], log: Callable[[str], None]) -> None:
    """Block until the runs have ended, saying each one's end as it comes."""
    pending = list(ids)
    while pending:
        for rid in list(pending):
            rec = store.get_run(rid)
            if rec.status not in ("queued", "running"):
                pending.remove(rid)
                log(f"{rec.name!r} ({rid}): {rec.status}" + (f": {rec.error}" if rec.error else ""))
        if pending:
            time.sleep(0.5)
