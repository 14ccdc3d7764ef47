"""How a CPU trains a group of runs: P side by side with T torch threads each (P x T = the cores).

Small models scale poorly across threads: on a 2-core CPU, MiniLM-L6 at batch 16 x 64 tokens
takes 0.48 s a step with 2 threads, and 0.82 s with 1 thread while a second run trains beside
it, so two runs side by side train 1.18x as many steps per second as one run with both cores.
A big model (SmolLM2) is the other way round. So the choice is measured per model shape, not
guessed, and cached like the time estimate:

    sched = schedule.measure(cfg)        # ~10 s per option; cached in $HFT_HOME/cache/schedules.json
    sched.runs, sched.threads            # (2, 1): two runs side by side, one thread each
    schedule.threads_for(cfg)            # what a worker gives a run of this shape (cached, else all cores)

The measurement: for each option (P runs x T threads), P fresh processes load the model and
time the same training step (forward, backward, AdamW) on a batch of the run's shape, all at
once; the option's rate is their steps per second together. P > 1 is chosen only when it beats
one run with every core by MIN_GAIN. A run under the schedule takes P x rate(1 x cores) /
rate(P x T) times as long as alone with every core (``run_factor``): the group estimate uses it.

Where it acts (HFT_RUNS_PER_DEVICE=auto, the default on a CPU): the device's workers share its
cores as a budget; a run takes ``threads_for(cfg)`` of them when it is claimed (``control.claim``)
and trains with that many threads, wherever it trains (an app worker, `hft worker`, `hft train`).
Its thread count depends on its shape only, never on what else trains: the same config and
seed give the same curve, alone or in a group. A group of one unmeasured shape queues the
measurement first (a probe job: it measures the CPU alone).

GPUs: one run per card at a time unless HFT_RUNS_PER_DEVICE says more (not measured here).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import heapq
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from hft_core import baselines
from hft_core.config import RunConfig
from hft_core.json_cache import JsonCache

MODE_ENV = "HFT_RUNS_PER_DEVICE"
CACHE_FILE = "schedules.json"
CACHE_VERSION = 1
MIN_GAIN = 1.05           # side by side must beat one run with every core by this much
MAX_SIDE_BY_SIDE = 4      # at most this many runs at once on one CPU
ROUNDS = 2                # every option timed this many times, in turn; its best counts
TIMED_STEPS = 5
TIMED_MAX_S = 10.0        # a slow model times fewer steps (at least 2)

_MEMO: dict[str, "Schedule"] = {}


class ScheduleError(RuntimeError):
    """The measurement could not run (the model does not load, a process died): says which and why."""


@dataclass(frozen=True)
class Schedule:
    """The measured choice for one model shape on this CPU."""

    key: str
    runs: int                    # P: runs side by side
    threads: int                 # T: torch threads each
    cores: int
    rates: dict[str, float]      # "PxT" -> training steps per second of all P runs together
    measured_at: float = 0.0
    what: str = ""

    @property
    def speedup(self) -> float:
        """The chosen option's rate over one run with every core (1.0 when that is the choice)."""
        base = self.rates.get(f"1x{self.cores}")
        return self.rates[f"{self.runs}x{self.threads}"] / base if base else 1.0

    @property
    def run_factor(self) -> float:
        """A run's wall time under this schedule over its time alone with every core (P / speedup)."""
        return self.runs / self.speedup

    def line(self) -> str:
        """'2 runs side by side × 1 thread: 1.18× the steps/s of 1 run × 2 threads (measured 3 min ago)'."""
        from hft_core.estimate import ago

        if self.runs == 1:
            best_other = max((v for k, v in self.rates.items() if k != f"1x{self.cores}"), default=0.0)
            base = self.rates.get(f"1x{self.cores}", 0.0)
            why = f" (side by side reached {best_other / base:.2f}× of it)" if base and best_other else ""
            return f"1 run at a time × {self.threads} threads{why}; measured {ago(self.measured_at)}"
        return (f"{self.runs} runs side by side × {self.threads} thread{'s' if self.threads > 1 else ''}: "
                f"{self.speedup:.2f}× the steps/s of 1 run × {self.cores} threads; measured {ago(self.measured_at)}")


# ---- the mode --------------------------------------------------------------------------------

def auto() -> bool:
    """True when runs on a CPU are scheduled by measured shape (HFT_RUNS_PER_DEVICE unset or "auto")."""
    return os.environ.get(MODE_ENV, "auto").strip().lower() in ("", "auto")


def options(cores: int) -> list[tuple[int, int]]:
    """(P, T) with P x T = cores, P from 1 up to MAX_SIDE_BY_SIDE: (1, 2), (2, 1) on two cores."""
    return [(p, cores // p) for p in range(1, min(cores, MAX_SIDE_BY_SIDE) + 1) if cores % p == 0]


def schedule_key(cfg: RunConfig, cores: int | None = None) -> str:
    """What the measurement depends on: the model (and a learnt vocabulary's size), task, precision and
    batch shape, the cores, this machine and torch (strategies change a step's cost a little, its scaling hardly)."""
    import torch

    from hft_core.estimate import precision_name, vocab_of
    from hft_core.placement import cpu_cores

    payload = json.dumps({"model": cfg.model, "task": cfg.task, "precision": precision_name(cfg),
                          "batch_size": cfg.batch_size, "max_length": cfg.max_length,
                          "cores": cores or cpu_cores(), "host": socket.gethostname(), "torch": torch.__version__,
                          "v": CACHE_VERSION, **vocab_of(cfg)}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def describe(cfg: RunConfig) -> str:
    return f"{cfg.model} ({cfg.task}), batch {cfg.batch_size} × {cfg.max_length} tokens"


# ---- what a run gets ---------------------------------------------------------------------------

def cached(cfg: RunConfig, cores: int | None = None) -> Schedule | None:
    """The measured schedule of ``cfg``'s shape on this CPU, or None."""
    return _CACHE.load(schedule_key(cfg, cores), Schedule, _MEMO)


def threads_for(cfg: RunConfig, cores: int | None = None) -> int:
    """Torch threads for a run of ``cfg`` on this CPU: its shape's measured choice, else every core."""
    from hft_core.placement import cpu_cores

    cores = cores or cpu_cores()
    sched = cached(cfg, cores)
    return sched.threads if sched is not None else cores


def claim_width(kind: str, config_json: str, cores: int, in_group: bool) -> int:
    """The cores a queued run takes when claimed (control.claim). A training run of a group (2 or
    more runs under one group name: a preset, a sweep, seeds) its shape's measured thread count;
    a run on its own every core (nothing trains beside it by design); a probe the whole CPU (it
    measures alone); a job (WiSE-FT, soup, prune) one run's share. A run's count depends on its
    config and group only, never on what else happens to train: re-running a group gives the
    same numbers."""
    if kind == "probe" or not in_group:
        return cores
    try:
        cfg = RunConfig.from_dict(json.loads(config_json))
    except Exception:  # noqa: BLE001 - claimed anyway; it fails in the trainer with the reason
        return cores
    if baselines.is_baseline(cfg.model):
        return 1   # scikit-learn's fit: one core, seconds
    return max(1, min(cores, threads_for(cfg, cores)))


def needs_measure(cfgs: Sequence[RunConfig]) -> list[RunConfig]:
    """One config per shape of ``cfgs`` that trains on a CPU, has >= 2 runs and no measurement yet."""
    from hft_core.estimate import resolved_device
    from hft_core.placement import cpu_cores

    if not auto() or cpu_cores() < 2:
        return []
    by_key: dict[str, list[RunConfig]] = {}
    for cfg in cfgs:
        if resolved_device(cfg.device) == "cpu" and not baselines.is_baseline(cfg.model):
            by_key.setdefault(schedule_key(cfg), []).append(cfg)
    return [group[0] for key, group in by_key.items() if len(group) >= 2 and cached(group[0]) is None]


def queue_measurements(target: Any, cfgs: Sequence[RunConfig]) -> list[str]:
    """Queue a measurement (a probe job, measured with the CPU alone) ahead of a group's runs for each
    of its shapes that has none yet. ``target``: a RunStore or RunManager. Returns the probe ids."""
    from hft_core import jobs

    store = getattr(target, "store", target)
    ids = []
    for cfg in needs_measure(cfgs):
        key = schedule_key(cfg)
        if any(r.job.get("key") == key and r.status in ("queued", "running") for r in store.list_runs(kind="probe")):
            continue
        params = {"key": key, "what": "schedule", "cfg": cfg.to_dict()}
        submit = getattr(target, "submit_job", None)
        ids.append(submit("probe", params, name="schedule probe") if submit is not None
                   else jobs.submit_job(store, "probe", params, name="schedule probe"))
    return ids


# ---- the measurement ------------------------------------------------------------------------------

def measure(cfg: RunConfig, cores: int | None = None, *, force: bool = False,
            cancel: Any = None) -> Schedule:
    """The cached schedule of ``cfg``'s shape, or a new measurement (blocking; 10-40 s).

    MAX(P) measuring processes load the model once; then every option is timed twice, in turn
    (1x2, 2x1, 1x2, 2x1 on two cores), each option's best kept: a moment of other load (a process
    starting up) costs one round, not the choice."""
    from hft_core import models
    from hft_core.placement import cpu_cores

    cores = cores or cpu_cores()
    if not force:
        sched = cached(cfg, cores)
        if sched is not None:
            return sched
    models.resolve_path(cfg.model)  # a one-time conversion happens here, not in each child
    opts = options(cores)
    rates: dict[str, float] = {}
    with _Children(cfg, max(p for p, _ in opts)) as children:
        for _ in range(ROUNDS):
            for p, t in opts:
                if cancel is not None and cancel():
                    raise ScheduleCancelled("the schedule measurement was cancelled")
                rate = sum(1.0 / s for s in children.time(p, t))
                rates[f"{p}x{t}"] = max(rates.get(f"{p}x{t}", 0.0), rate)
    base = rates[f"1x{cores}"]
    best = max(rates, key=rates.get)
    if rates[best] < base * MIN_GAIN:
        best = f"1x{cores}"
    p, t = (int(x) for x in best.split("x"))
    sched = Schedule(schedule_key(cfg, cores), p, t, cores, rates, time.time(), describe(cfg))
    _MEMO[sched.key] = sched
    _write_cache(sched.key, dataclasses.asdict(sched))
    return sched


class ScheduleCancelled(RuntimeError):
    pass


class _Children:
    """``n`` measuring processes with the model loaded, driven by lines on their stdin:
    "warm T" (set T threads, one untimed step, answer "ready"), "go" (time the steps, answer
    their s/step as JSON), "quit"."""

    def __init__(self, cfg: RunConfig, n: int) -> None:
        self.cfg = cfg
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HFT_OFFLINE": os.environ.get("HFT_OFFLINE", "1")}
        self.procs = [subprocess.Popen([sys.executable, "-m", "hft_core.schedule", "--cfg", json.dumps(cfg.to_dict())],
                                       env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, bufsize=1)
                      for _ in range(n)]

    def __enter__(self) -> "_Children":
        for proc in self.procs:
            self._expect(proc, "loaded")
        return self

    def __exit__(self, *exc: Any) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - it is killed below
                pass
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def time(self, runs: int, threads: int) -> list[float]:
        """s/step of the first ``runs`` processes with ``threads`` threads each, all timed at once."""
        team = self.procs[:runs]
        for proc in team:
            self._send(proc, f"warm {threads}")
        for proc in team:
            self._expect(proc, "ready")
        for proc in team:
            self._send(proc, "go")
        return [float(json.loads(self._expect(proc, "{"))["step_s"]) for proc in team]

    def _send(self, proc: subprocess.Popen, line: str) -> None:
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        except OSError:
            raise ScheduleError(f"measuring {describe(self.cfg)} failed: {_tail(proc)}") from None

    def _expect(self, proc: subprocess.Popen, start: str) -> str:
        line = proc.stdout.readline()
        if not line.startswith(start):
            raise ScheduleError(f"measuring {describe(self.cfg)} failed: {_tail(proc)}")
        return line


def _tail(proc: subprocess.Popen) -> str:
    try:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    except Exception:  # noqa: BLE001
        err = ""
    lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"the measuring process exited with code {proc.returncode}"


def _child(cfg: RunConfig) -> None:
    """One measuring process: a training step of ``cfg``'s model on a random batch of its shape."""
    import torch

    from hft_core import models
    from hft_core.estimate import precision_name

    torch.manual_seed(0)
    model = models.load_model(cfg.model, cfg.task, num_labels=2 if cfg.task == "classification" else 0,
                              tokenizer=models.VocabOfSize(cfg.corpus_vocab) if cfg.corpus_vocab else None)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    vocab = int(getattr(model.config, "vocab_size", 1000) or 1000)
    ids = torch.randint(min(5, vocab - 1), vocab, (cfg.batch_size, cfg.max_length))
    inputs: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if cfg.task == "classification":
        inputs["labels"] = torch.randint(0, 2, (cfg.batch_size,))
    elif cfg.task in ("causal-lm", "masked-lm"):
        inputs["labels"] = ids
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision_name(cfg))

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            out = model(**inputs)
            loss = out.loss if getattr(out, "loss", None) is not None else out[0].float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    print("loaded", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            return
        if cmd[0] == "warm":
            torch.set_num_threads(int(cmd[1]))
            step()
            print("ready", flush=True)
        elif cmd[0] == "go":
            t0, n = time.perf_counter(), 0
            while n < TIMED_STEPS and (n < 2 or time.perf_counter() - t0 < TIMED_MAX_S):
                step()
                n += 1
            print(json.dumps({"step_s": (time.perf_counter() - t0) / n, "steps": n}), flush=True)


# ---- the group's wall time --------------------------------------------------------------------------

def group_wall(run_seconds: Iterable[float], lanes: int) -> float:
    """Wall time of runs taken in queue order by ``lanes`` workers (each starts the next as one ends)."""
    free = [0.0] * max(1, lanes)
    for s in run_seconds:
        t = heapq.heappop(free)
        heapq.heappush(free, t + s)
    return max(free)


MEASURE_START_S = 4.0    # a measuring process's start and imports, roughly (the group estimate)


def measure_seconds(step_s: float, load_s: float, cores: int) -> float:
    """About how long ``measure`` takes for a shape whose step takes ``step_s`` alone (all cores)."""
    steps = ROUNDS * sum(TIMED_STEPS + 1 for _ in options(cores))
    return MEASURE_START_S + load_s + steps * step_s * 1.3   # fewer threads: slower steps


@dataclass(frozen=True)
class GroupEstimate:
    """A group's predicted wall time under the schedule its shapes measured (seconds)."""

    total_s: float
    runs: int
    lanes: int                   # runs side by side
    threads: int                 # threads each
    one_by_one_s: float          # the same runs one after another, each with every core
    measure_s: float             # the schedule measurement still to make (0 once cached)

    def line(self) -> str:
        from hft_core.estimate import format_seconds

        how = (f"{self.lanes} side by side × {self.threads} thread{'s' if self.threads > 1 else ''}, as measured "
               f"for this shape; {format_seconds(self.one_by_one_s)} one after another" if self.lanes > 1
               else "one at a time with every core")
        first = f", including ≈ {format_seconds(self.measure_s)} to measure how to share the cores" \
            if self.measure_s else ""
        return f"≈ {format_seconds(self.total_s)} for all {self.runs} runs here ({how}{first})"


def group_estimate(cfgs: Sequence[RunConfig], store: Any = None) -> GroupEstimate | None:
    """The wall time of ``cfgs`` queued as one group on an idle device, from each run's time estimate
    (estimate.estimate: a probe or the store's history) and the schedule of its shape: each run
    takes ``run_factor`` times its lone time, P workers take them in queue order. None while a
    run's shape has no time estimate yet."""
    from hft_core import estimate as E
    from hft_core.placement import cpu_cores

    cfgs = list(cfgs)
    found = [E.estimate(c, store) for c in cfgs]
    if not cfgs or any(e is None for e in found):
        return None
    alone = [e.total_s for e in found]
    todo = needs_measure(cfgs)
    lanes, threads, factors = 1, cpu_cores(), [1.0] * len(cfgs)
    if auto() and len(cfgs) >= 2 and not todo:
        scheds = [cached(c) if E.resolved_device(c.device) == "cpu" else None for c in cfgs]
        if all(s is not None for s in scheds):
            lanes = min(s.runs for s in scheds)
            threads = max(s.threads for s in scheds)
            factors = [s.run_factor if lanes > 1 else 1.0 for s in scheds]
    by_key = {schedule_key(c): e for c, e in zip(cfgs, found)}
    measure_s = sum(measure_seconds(by_key[schedule_key(c)].step_s, by_key[schedule_key(c)].load_s, cpu_cores())
                    for c in todo)
    total = group_wall([a * f for a, f in zip(alone, factors)], lanes) + measure_s
    return GroupEstimate(total, len(cfgs), lanes, threads, sum(alone), measure_s)


# ---- the cache -----------------------------------------------------------------------------------------

_CACHE = JsonCache(CACHE_FILE)
_write_cache = _CACHE.put


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hft_core.schedule", description="one measuring process (internal)")
    p.add_argument("--cfg", required=True)
    args = p.parse_args(argv)
    _child(RunConfig.from_dict(json.loads(args.cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
