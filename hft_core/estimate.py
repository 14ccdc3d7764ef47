"""What a run will cost in wall time, before Start: "≈ 0.9 s/step here -> 40 steps ≈ 36 s".

Two sources, both measured on this machine:

* a **probe**: a real run of the same config cut to 4 steps (``trainer.train`` itself, so
  every strategy, the precision and the data's true lengths count), with an eval of one
  eval batch after each step and a final checkpoint, timed at each log call by a clock sink
  (a slow shape stops after step 2). It gives seconds per step, the load time (data, model,
  strategy setup; the model is loaded once untimed first, as a warm app would have it), eval
  seconds per example (from the warm evals), the final eval's extra (sample generations) and
  the checkpoint's write time. Cached per shape (model, task, data, device, precision,
  batch, length, accumulation, strategies) in ``$HFT_HOME/cache/estimates.json`` and in memory.
* the store's **earlier runs** of the same shape: seconds per step from their
  ``samples_per_s`` metric, everything else from their start and end times.

``ProbeQueue`` queues a probe as a job on the device's queue ("probe" runs, hidden from the
run lists): a worker process measures it like any run, so the app's process never trains and
a probe never runs beside a run. A page never waits: it shows "measuring…" and polls. ``bf16_slowdown`` times bf16 autocast against fp32 on one small transformer
layer (about a second), for the bf16 note next to the precision choice until this very
model's fp32 and bf16 probes give the ratio (``model_bf16_slowdown``).

No streamlit here; bench/estimate_accuracy.py checks the figures against real runs.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from hft_core import baselines, home
from hft_core.config import RunConfig
from hft_core.json_cache import JsonCache

CACHE_FILE = "estimates.json"
CACHE_VERSION = 1
PROBE_STEPS = 4             # steps 2..4 are timed (step 1 carries first-call overheads)
SLOW_STEP_S = 8.0           # when a step takes longer than this, the probe stops after step 2
MIN_EVAL_EXAMPLES = 32      # the trainer evaluates in batches of max(batch_size, 32): one full batch

_MEMO: dict[str, "Probe"] = {}
_RATIOS: dict[str, float] = {}


class EstimateError(RuntimeError):
    """A probe could not run (the config cannot train). The message says why."""


class ProbeCancelled(EstimateError):
    """A probe was stopped before it finished (exit, or the device became busy): no figure, no error."""


@dataclass(frozen=True)
class Probe:
    """What a short real run of one shape measured (seconds)."""

    key: str
    step_s: float               # per optimizer step, median of the timed steps
    first_step_extra_s: float   # the first step's extra (tokenising, lazy init)
    load_s: float               # train() start -> first step can begin: data, model, strategies, optimizer
    eval_s_per_example: float
    eval_fixed_s: float         # the final eval's extra (sample generations for causal-lm)
    save_s: float               # one checkpoint
    eval_pool: int              # examples in the eval split with n_eval = 0 (all)
    steps_timed: int
    measured_at: float
    what: str                   # "tiny:bert fp32 on cpu, batch 16 x 128 tokens"
    load_per_core: float = 0.0  # the 1-minute load average / cores while it ran: > 1 means a shared CPU


@dataclass(frozen=True)
class Estimate:
    """The predicted wall time of a run, and its parts (seconds)."""

    total_s: float
    step_s: float
    steps: int
    load_s: float
    eval_s: float
    save_s: float
    source: str                 # "probe" | "history"
    detail: str                 # where the figure comes from, one clause

    def line(self) -> str:
        """'≈ 0.9 s/step here → 40 steps ≈ 36 s (+ 4 s loading, 3 s eval, 1 s checkpoint)'."""
        extra = [f"{format_seconds(v)} {what}" for v, what in ((self.load_s, "loading"), (self.eval_s, "eval"),
                                                               (self.save_s, "checkpoint")) if v >= 0.5]
        return (f"≈ {format_step(self.step_s)}/step here → {self.steps} steps ≈ {format_seconds(self.total_s)}"
                + (f" (with {', '.join(extra)})" if extra else ""))


# ---- the shape a figure belongs to --------------------------------------------------------

def resolved_device(device: str) -> str:
    import torch

    if device in ("auto", "cuda"):
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return device


@functools.lru_cache(maxsize=8)
def _device_info(device: str) -> Any:
    from hft_core.precision import describe_device

    return describe_device(device)


def precision_name(cfg: RunConfig) -> str:
    """The precision that will run ("auto" resolved the way the trainer resolves it)."""
    from hft_core.precision import PrecisionError, plan_precision

    try:
        return plan_precision(cfg.precision, _device_info(resolved_device(cfg.device))).name
    except (PrecisionError, RuntimeError, AssertionError):
        return cfg.precision


def shape_of(cfg: RunConfig) -> dict[str, Any]:
    """What decides a run's speed: the fields a cached figure must match."""
    mix = {name: {k: v for k, v in dataclasses.asdict(c).items() if isinstance(v, (str, int, bool))
                  and not isinstance(v, float)} for name, c in cfg.mix.items() if name != "blend"}
    return {"model": cfg.model, "task": cfg.task, "data": cfg.data, "device": resolved_device(cfg.device),
            "precision": precision_name(cfg), "batch_size": cfg.batch_size, "max_length": cfg.max_length,
            "grad_accum": cfg.grad_accum, "mix": mix, "blend": "blend" in cfg.mix,
            "text_column": cfg.text_column, "label_column": cfg.label_column, **vocab_of(cfg)}


def vocab_of(cfg: RunConfig) -> dict[str, int]:
    """A learnt vocabulary's size, where the run has one: its embeddings and output layer follow it
    (empty otherwise, so the keys of figures measured before it existed still match)."""
    return {"corpus_vocab": cfg.corpus_vocab} if cfg.corpus_vocab else {}


def run_threads() -> int:
    """The torch threads a run of this machine trains with (placement's rule for its workers): the
    same figure in the app, which asks, and in the worker, which measures."""
    from hft_core.worker import lone_run_threads

    return lone_run_threads("cpu")


def shape_key(cfg: RunConfig) -> str:
    """A short stable key of ``shape_of(cfg)`` plus this machine (a shared HFT_HOME may span hosts)."""
    import torch

    payload = json.dumps({**shape_of(cfg), "host": socket.gethostname(), "torch": torch.__version__,
                          "threads": run_threads(), "v": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def describe_shape(cfg: RunConfig) -> str:
    return (f"{cfg.model} {precision_name(cfg)} on {resolved_device(cfg.device)}, batch {cfg.batch_size} × "
            f"{cfg.max_length} tokens")


# ---- from a probe -------------------------------------------------------------------------

def eval_examples(cfg: RunConfig, pool: int) -> int:
    return min(cfg.n_eval, pool) if cfg.n_eval else pool


def count_evals(cfg: RunConfig) -> int:
    """In-loop evals (every eval_every steps, never at the last step) plus eval_at_start."""
    in_loop = (cfg.max_steps - 1) // cfg.eval_every if cfg.eval_every else 0
    return in_loop + (1 if cfg.eval_at_start else 0)


def count_saves(cfg: RunConfig) -> int:
    """Checkpoints: every checkpoint_every steps (not at the last), plus the final one."""
    return ((cfg.max_steps - 1) // cfg.checkpoint_every if cfg.checkpoint_every else 0) + 1


BUSY_LOAD = 1.5   # load per core above which a figure was measured on a CPU shared with other work


def load_per_core() -> float:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:  # not available on this platform
        return 0.0


def estimate_from_probe(cfg: RunConfig, probe: Probe) -> Estimate:
    """Load + steps + evals + checkpoints of ``cfg``, from a probe of its shape."""
    n_eval = eval_examples(cfg, probe.eval_pool)
    one_eval = n_eval * probe.eval_s_per_example
    eval_s = count_evals(cfg) * one_eval + one_eval + probe.eval_fixed_s
    save_s = count_saves(cfg) * probe.save_s
    load_s = probe.load_s + probe.first_step_extra_s
    total = load_s + cfg.max_steps * probe.step_s + eval_s + save_s
    busy = (f" while the CPU was busy (load {probe.load_per_core:.1f} per core): measure again when it is quieter"
            if probe.load_per_core > BUSY_LOAD else "")
    return Estimate(total, probe.step_s, cfg.max_steps, load_s, eval_s, save_s, "probe",
                    f"measured by a {probe.steps_timed + 1}-step probe {ago(probe.measured_at)}{busy}")


class _ClockSink:
    """Notes the time of every log call; stops the probe after step 2 when steps are slow."""

    def __init__(self, stop: threading.Event, cancel: Callable[[], bool] | None = None) -> None:
        self.marks: list[tuple[float, int, str]] = []   # (perf_counter, step, "setup" | "train" | "eval")
        self.stop = stop
        self.cancel = cancel
        self.cancelled = False

    def log(self, step: int, values: Mapping[str, float]) -> None:
        if self.cancel is not None and self.cancel():
            self.cancelled = True
            self.stop.set()
        kind = "eval" if any(k.startswith("eval/") for k in values) else \
            "setup" if "params_total" in values and "loss" not in values else "train"
        self.marks.append((time.perf_counter(), step, kind))
        if kind == "eval" and step == 2:
            train = {s: t for t, s, k in self.marks if k == "train"}
            evals = {s: t for t, s, k in self.marks if k == "eval"}
            if 1 in evals and 2 in train and train[2] - evals[1] > SLOW_STEP_S:
                self.stop.set()   # slow (a big model, emulated bf16): one timed step and a warm eval suffice

    def event(self, message: str, level: str = "info") -> None:
        pass


def probe_config(cfg: RunConfig, eval_examples_: int) -> RunConfig:
    """``cfg`` cut to a probe: 4 steps, an eval after each (the first eval pays one-time costs, the
    last adds the final one's sample generations), no intermediate checkpoint."""
    return dataclasses.replace(cfg, max_steps=PROBE_STEPS, eval_every=1, eval_at_start=False,
                               n_eval=eval_examples_, log_every=1, checkpoint_every=0, warmup_steps=0,
                               name="estimate probe", group="")


def run_probe(cfg: RunConfig, cancel: Callable[[], bool] | None = None) -> Probe:
    """Measure ``cfg``'s shape with a 4-step real run (a few seconds; longer for big or emulated models).

    ``cancel()`` is asked at every step; True stops the probe there (ProbeCancelled): the app is
    exiting, or a real run started on the device (the probe would slow it, and measure wrong).
    """
    from hft_core import data as data_sources
    from hft_core import models
    from hft_core.trainer import train

    try:
        models.resolve_path(cfg.model)  # a one-time conversion (SmolLM2) is not load time of later runs
        pool = len(data_sources.load_data(cfg.data, cfg.task, text_column=cfg.text_column,
                                          label_column=cfg.label_column, n_train=cfg.n_train, n_eval=0,
                                          eval_fraction=cfg.eval_fraction, seed=cfg.seed).eval)
    except Exception as e:  # noqa: BLE001 - a config that cannot load cannot be estimated; say why
        raise EstimateError(f"cannot measure {cfg.model} on {cfg.data}: {e}") from e
    if cancel is not None and cancel():
        raise ProbeCancelled(f"the probe of {cfg.model} was cancelled")
    _warm_up(cfg)
    n_probe_eval = max(1, min(pool, max(cfg.batch_size, MIN_EVAL_EXAMPLES)))
    pcfg = probe_config(cfg, n_probe_eval)
    stop = threading.Event()
    clock = _ClockSink(stop, cancel)
    if cancel is not None:  # asked every 0.2 s, not only at a step: the trainer stops before its first step
        def watch() -> None:
            while not stop.wait(0.2):
                if cancel():
                    clock.cancelled = True
                    stop.set()
        threading.Thread(target=watch, name="hft-probe-cancel", daemon=True).start()
    out = home.cache_dir() / f"probe-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        result = train(pcfg, clock, stop, out_dir=out)
    except Exception as e:  # noqa: BLE001
        raise EstimateError(f"cannot measure {cfg.model}: {type(e).__name__}: {e}") from e
    finally:
        t_end = time.perf_counter()
        stop.set()  # ends the watcher
        shutil.rmtree(out, ignore_errors=True)
    if clock.cancelled:
        raise ProbeCancelled(f"the probe of {cfg.model} was cancelled")
    probe = _probe_from_marks(shape_key(cfg), clock.marks, t0, t_end, n_probe_eval, pool, result.status,
                              describe_shape(cfg))
    return dataclasses.replace(probe, load_per_core=load_per_core())


def _probe_from_marks(key: str, marks: list[tuple[float, int, str]], t0: float, t_end: float, n_eval: int,
                      pool: int, status: str, what: str) -> Probe:
    """Turn the clock's marks into a Probe.

    marks: setup, train 1, eval 1, train 2, eval 2, train 3, eval 3, train 4, eval 4 (final), then
    the checkpoint until ``t_end``. Step k's time runs from the mark before it (the eval after
    step k-1) to its own train mark; eval k's from train k to eval k. Eval 1 pays one-time
    costs (imports, first no-grad pass) a warm process does not; the final eval adds samples.
    """
    setup = next(t for t, _, k in marks if k == "setup")
    train_at = {s: t for t, s, k in marks if k == "train"}
    eval_at = {s: t for t, s, k in marks if k == "eval"}
    steps = sorted(train_at)
    durations = [train_at[s] - eval_at.get(p, train_at[p]) for p, s in zip(steps, steps[1:])]
    step_s = statistics.median(durations) if durations else train_at[steps[0]] - setup
    first_extra = max(0.0, train_at[steps[0]] - setup - step_s)
    evals = {s: eval_at[s] - train_at[s] for s in eval_at if s in train_at}
    finished = status == "finished" and steps[-1] == PROBE_STEPS and PROBE_STEPS in evals
    warm = [v for s, v in evals.items() if s != 1 and not (finished and s == PROBE_STEPS)]
    one_eval = statistics.median(warm) if warm else min(evals.values(), default=0.0)
    fixed = max(0.0, evals[PROBE_STEPS] - one_eval) if finished else 0.0
    save_s = t_end - max(t for t, _, _ in marks)
    return Probe(key=key, step_s=step_s, first_step_extra_s=first_extra, load_s=setup - t0,
                 eval_s_per_example=one_eval / max(1, n_eval), eval_fixed_s=fixed, save_s=max(0.0, save_s),
                 eval_pool=pool, steps_timed=len(durations), measured_at=time.time(), what=what)


_WARMED: set[tuple[str, str]] = set()


def _warm_up(cfg: RunConfig) -> None:
    """Load the model once, untimed, the first time this process probes it: the first load pays
    one-time imports (model classes, tokenizer files) that the app, warm, never pays again."""
    from hft_core import models

    if (cfg.model, cfg.task) in _WARMED:
        return
    models.load_tokenizer(cfg.model)
    models.load_model(cfg.model, cfg.task, num_labels=2 if cfg.task == "classification" else 0)
    _WARMED.add((cfg.model, cfg.task))


# ---- the cache -----------------------------------------------------------------------------

_CACHE = JsonCache(CACHE_FILE)
_read_cache = _CACHE.read
_write_cache = _CACHE.put     # merge one entry (see json_cache.py)


def cached_probe(cfg: RunConfig) -> Probe | None:
    """The probe of ``cfg``'s shape from memory or $HFT_HOME, or None."""
    return _CACHE.load(shape_key(cfg), Probe, _MEMO)


def measure(cfg: RunConfig, cancel: Callable[[], bool] | None = None) -> Probe:
    """The cached probe of ``cfg``'s shape, or a new one (blocking) stored in the cache."""
    if baselines.is_baseline(cfg.model):   # nothing to time: no steps (estimate() gives its figure)
        return Probe(shape_key(cfg), 0.0, 0.0, BASELINE_S, 0.0, 0.0, 0.0, 0, 0, time.time(), describe_shape(cfg))
    probe = cached_probe(cfg)
    if probe is None:
        probe = run_probe(cfg, cancel)
        _MEMO[probe.key] = probe
        _write_cache(probe.key, dataclasses.asdict(probe))
    return probe


def forget(cfg: RunConfig | None = None) -> None:
    """Drop one shape's figure (or all) from memory and the cache file: the next request measures again."""
    if cfg is None:
        _MEMO.clear()
        _RATIOS.clear()
        _CACHE.drop()
        return
    key = shape_key(cfg)
    _MEMO.pop(key, None)
    _CACHE.drop(key)


# ---- from the store's earlier runs -----------------------------------------------------------

def estimate_from_history(cfg: RunConfig, store: Any, limit: int = 20) -> Estimate | None:
    """From finished runs of the same shape in ``store``: their median s/step (samples_per_s) and overhead.

    Overhead (load, evals, checkpoints) is the earlier run's wall time minus its steps; it is
    taken as is, so a run with many more evals than those is under-estimated a little.
    """
    shape = shape_of(cfg)
    step_times, overheads = [], []
    try:
        runs = store.list_runs(status="finished")
    except Exception:  # noqa: BLE001 - a store being migrated or closed: no history
        return None
    for rec in runs:
        if len(step_times) >= limit:
            break
        try:
            other = RunConfig.from_dict(rec.config)
        except Exception:  # noqa: BLE001 - an old config that no longer validates
            continue
        if getattr(rec, "kind", "train") != "train" or shape_of(other) != shape or not rec.started or not rec.ended:
            continue
        m = store.metrics(rec.id, names=["samples_per_s"])
        sps = [v for v in m["value"].tolist() if v and math.isfinite(v) and v > 0]
        if not sps:
            continue
        s_step = other.batch_size * other.grad_accum / statistics.median(sps)
        step_times.append(s_step)
        overheads.append(max(0.0, (rec.ended - rec.started) - other.max_steps * s_step))
    if not step_times:
        return None
    step_s, overhead = statistics.median(step_times), statistics.median(overheads)
    n = len(step_times)
    return Estimate(overhead + cfg.max_steps * step_s, step_s, cfg.max_steps, overhead, 0.0, 0.0, "history",
                    f"from {n} earlier run{'s' if n > 1 else ''} of this shape")


BASELINE_S = 3.0   # a baseline (bag-of-words) reads its data and fits once: a few seconds, no steps


def estimate(cfg: RunConfig, store: Any = None) -> Estimate | None:
    """The best figure without measuring: a cached probe, else earlier runs, else None."""
    if baselines.is_baseline(cfg.model):
        return Estimate(BASELINE_S, 0.0, 0, BASELINE_S, 0.0, 0.0, "baseline", "a baseline is fitted once, no steps")
    probe = cached_probe(cfg)
    if probe is not None:
        return estimate_from_probe(cfg, probe)
    return estimate_from_history(cfg, store) if store is not None else None


# ---- bf16 without native support ---------------------------------------------------------

def bf16_key(device: str = "cpu") -> str:
    import torch

    return "bf16-slowdown:" + hashlib.sha1(json.dumps([resolved_device(device), socket.gethostname(),
                                                      torch.__version__, run_threads()]).encode()
                                           ).hexdigest()[:12]


def cached_bf16_slowdown(device: str = "cpu") -> float | None:
    key = bf16_key(device)
    if key in _RATIOS:
        return _RATIOS[key]
    hit = _read_cache().get(key)
    if isinstance(hit, dict) and isinstance(hit.get("ratio"), (int, float)):
        _RATIOS[key] = float(hit["ratio"])
        return _RATIOS[key]
    return None


def bf16_slowdown(device: str = "cpu") -> float:
    """Seconds of bf16 autocast / seconds of fp32 for one small transformer layer's forward+backward.

    Emulated bf16 (a CPU without avx512_bf16/AMX) is many times slower than fp32; this says by
    how much on this machine before any model is probed. Both precisions are timed in turns,
    best of 5 each (the CPU may be shared). Cached like the probes; about a second to measure.
    """
    import torch

    cached = cached_bf16_slowdown(device)
    if cached is not None:
        return cached
    dev = torch.device(resolved_device(device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True).to(dev)
        x = torch.randn(8, 64, 256, device=dev)

    def once(dtype: torch.dtype | None) -> float:
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = layer(x)
        y.float().sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t

    once(None), once(torch.bfloat16)   # first calls pick kernels
    fp32, bf16 = math.inf, math.inf
    for _ in range(5):
        fp32, bf16 = min(fp32, once(None)), min(bf16, once(torch.bfloat16))
    ratio = bf16 / max(fp32, 1e-9)
    _RATIOS[bf16_key(device)] = ratio
    _write_cache(bf16_key(device), {"ratio": ratio, "measured_at": time.time()})
    return ratio


def model_bf16_slowdown(cfg: RunConfig) -> float | None:
    """bf16 s/step / fp32 s/step of ``cfg``'s shape when both have been probed, else None."""
    pair = [cached_probe(dataclasses.replace(cfg, precision=p)) for p in ("fp32", "bf16")]
    if any(p is None for p in pair):
        return None
    return pair[1].step_s / max(pair[0].step_s, 1e-9)


# ---- probing in the background: jobs on the device's queue ------------------------------------

PROBE_NAME = "estimate probe"


class ProbeQueue:
    """Measurements as jobs ("probe" runs) on their device's queue, trained by a worker process
    like any run: never in the app's process, and never beside a run (the store's claim keeps a
    probe off a device where anything trains, and every run off a device a probe measures).

    ``request(cfg)`` and ``request_bf16(device)`` return at once (a job is queued unless a figure
    is cached, or a probe of that shape is queued, running or failed). ``state(cfg)`` is
    ("ready", Estimate), ("measuring", None), ("queued", None), ("failed", message) or
    ("idle", None); ``result(key)`` the same for any key. ``manager``: a RunManager (it starts
    the device's workers); the figures land in ``$HFT_HOME/cache/estimates.json``, shared by
    every process of that home.
    """

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.store = manager.store

    def _latest(self, key: str) -> Any:
        for rec in self.store.list_runs(kind="probe"):
            if rec.job.get("key") == key:
                return rec
        return None

    def _queue(self, key: str, params: dict[str, Any]) -> None:
        rec = self._latest(key)
        if rec is not None and rec.status in ("queued", "running", "failed"):
            return  # measuring now, or failed (shown, until "Measure again" forgets it)
        self.manager.submit_job("probe", {"key": key, **params}, name=PROBE_NAME)

    def request(self, cfg: RunConfig) -> None:
        """Probe ``cfg``'s shape unless a figure for it is cached."""
        if cached_probe(cfg) is None:
            self._queue(shape_key(cfg), {"what": "shape", "cfg": cfg.to_dict()})

    def request_bf16(self, device: str = "cpu") -> None:
        """Time bf16 against fp32 on ``device`` unless the ratio is cached."""
        if cached_bf16_slowdown(device) is None:
            self._queue(bf16_key(device), {"what": "bf16", "device": resolved_device(device)})

    def result(self, key: str) -> tuple[str, Any]:
        rec = self._latest(key)
        if rec is None or rec.status in ("finished", "stopped", "interrupted", "pruned"):
            return "idle", None
        if rec.status == "failed":
            return "failed", (rec.error or "the probe failed").removeprefix("EstimateError: ")
        return ("measuring" if rec.status == "running" else "queued"), None

    def state(self, cfg: RunConfig) -> tuple[str, Any]:
        probe = cached_probe(cfg)
        if probe is not None:
            return "ready", estimate_from_probe(cfg, probe)
        return self.result(shape_key(cfg))

    def forget(self, key: str) -> None:
        """Forget a failed probe of ``key``, so the next request measures again."""
        rec = self._latest(key)
        if rec is not None and rec.status == "failed":
            self.store.delete_run(rec.id)


def run_probe_job(params: Mapping[str, Any], stop: threading.Event,
                  give_way: Callable[[], bool] = lambda: False) -> str:
    """A worker's side of a probe job: measure, store the figure in the cache. It ends "stopped"
    when asked, or when ``give_way()`` says a run waits for the device (a user who pressed Start
    does not wait for a measurement; the page asks for the probe again once the device is free)."""
    if params.get("what") == "bf16":
        bf16_slowdown(str(params.get("device", "cpu")))
        return "finished"
    try:
        measure(RunConfig.from_dict(params["cfg"]), cancel=lambda: stop.is_set() or _safe(give_way))
    except ProbeCancelled:
        return "stopped"
    return "finished"


def _safe(check: Callable[[], bool]) -> bool:
    """A check that fails (a store being migrated) counts as False."""
    try:
        return bool(check())
    except Exception:  # noqa: BLE001
        return False


# ---- words -----------------------------------------------------------------------------------

def format_seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s" if s < 1 else f"{s:.0f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min" if s >= 600 else f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_step(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 0.1 else f"{s:.2g} s"


def ago(t: float) -> str:
    s = max(0.0, time.time() - t)
    if s < 90:
        return "just now"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 86400 * 2:
        return f"{s / 3600:.0f} h ago"
    return time.strftime("on %Y-%m-%d", time.localtime(t))
