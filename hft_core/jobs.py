"""Post-training jobs as runs: WiSE-FT sweeps, model soups and pruning sweeps.

A job is a run in the store like a training run (``kind`` != "train"): it is queued on
the device of the runs it reads, waits for them to finish, is claimed by a worker,
stops between points when asked, and logs each point as metrics (so Live and Compare
draw it); a failure is stored with its traceback. Its rows are also written to
``rows.json`` in its run folder (``rows_of``), for a table or a CSV.

Two forms of parameters. The app's names finished runs ("of"): their own start model,
held-out split, seed and length. `hft merge` names any model sources (a folder, run:<id>,
bundled, hub) and says how to build the held-out examples ("eval", ``EVAL_KEYS``).

    kind     parameters                                              one step per point
    wise_ft  {"of": run_id, "points": 11}                             step = round(100 a): wise_ft/a, eval/...
             {"a": source, "b": source, "points": 11, "eval": {...}}
    prune    {"of": run_id, "sparsities": [0, .5, .9], "scope": "global"}   step = round(100 s): prune/sparsity, eval/...
             {"model": source, "sparsities": [...], "scope": "global", "eval": {...}}
    soup     {"of": [run_id, ...], "metric": ""}                      step 1..n each model alone, n+1 uniform,
             {"models": [source, ...], "metric": "", "save": "/abs/folder", "eval": {...}}          n+2 greedy

    run_id = submit_job(store, "wise_ft", {"of": "r-3f9a2c", "points": 11})
    run_id = submit_job(store, "prune", {"model": "/abs/model", "eval": {"task": "classification",
                        "data": "/abs/toy.csv"}}, device="cpu")

``python -m hft_core.jobs --home H --run-id J`` is a worker process for one queued job: what
`hft merge` starts when no worker serves the job's device.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

from hft_core.config import ConfigError, RunConfig

WISE_FT_NAME = "WiSE-FT sweep (step = 100 a)"
PRUNE_NAME = "pruning sweep (step = 100 x sparsity)"
SOUP_NAME = "soups (steps 1..n: each model, n+1 uniform, n+2 greedy)"
ROWS_FILE = "rows.json"
SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9)
# how the held-out examples of a job over model sources are built (data.load_data's arguments)
EVAL_KEYS = {"task": str, "data": str, "n_eval": int, "seed": int, "max_length": int, "n_train": int,
             "eval_fraction": float, "text_column": str, "label_column": str}


class JobError(ConfigError):
    """A job's parameters are wrong (unknown kind, a run that is not there or not a model)."""


def _one_run(params: Mapping[str, Any], kind: str) -> list[str]:
    of = params.get("of")
    if not isinstance(of, str) or not of:
        raise JobError(f"{kind}: give 'of': the id of a finished training run, got {of!r}")
    return [of]


def _many_runs(params: Mapping[str, Any], kind: str) -> list[str]:
    of = params.get("of")
    if isinstance(of, str) or not isinstance(of, (list, tuple)) or len(of) < 2:
        raise JobError(f"{kind}: give 'of': a list of at least two finished runs of the same model and task, "
                       f"got {of!r}")
    return [str(x) for x in of]


def _check_points(params: Mapping[str, Any]) -> None:
    points = params.get("points", 11)
    if not isinstance(points, int) or isinstance(points, bool) or points < 2:
        raise JobError(f"wise_ft: points={points!r}: use a whole number of at least 2 (the two endpoints)")


def _check_sparsities(params: Mapping[str, Any]) -> None:
    sp = params.get("sparsities", list(SPARSITIES))
    if not isinstance(sp, (list, tuple)) or not sp or not all(isinstance(x, (int, float)) and 0 <= x < 1 for x in sp):
        raise JobError(f"prune: sparsities={sp!r}: give a list of fractions in [0, 1), e.g. [0, 0.5, 0.9]")
    if params.get("scope", "global") not in ("global", "per_tensor"):
        raise JobError(f"prune: scope={params.get('scope')!r}: use 'global' or 'per_tensor'")


# kind -> (runs of the "of" form, extra check, default name)
KINDS: dict[str, tuple[Callable[[Mapping[str, Any], str], list[str]], Callable[[Mapping[str, Any]], None], str]] = {
    "wise_ft": (_one_run, _check_points, WISE_FT_NAME),
    "prune": (_one_run, _check_sparsities, PRUNE_NAME),
    "soup": (_many_runs, lambda p: None, SOUP_NAME),
    # a time-estimate probe (hft_core/estimate.py): {"key": ..., "what": "shape", "cfg": {...}} or
    # {"key": ..., "what": "bf16", "device": "cpu"}; it reads no run, it measures its device alone
    "probe": (lambda p, kind: [], lambda p: None, "estimate probe"),
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}; kinds: {sorted(KINDS)}")


def by_source(params: Mapping[str, Any]) -> bool:
    """True for the form that names model sources and an "eval" spec (`hft merge`), False for "of" runs."""
    return "of" not in params and "eval" in params


def model_sources(kind: str, params: Mapping[str, Any]) -> list[str]:
    """The model sources a job reads, in order ("run:<id>" for a finished run of the "of" form;
    for wise_ft of a run: its start model is not listed, it is found in the run's config)."""
    _check_kind(kind)
    if not by_source(params):
        return [f"run:{r}" for r in KINDS[kind][0](params, kind)]
    if kind == "wise_ft":
        a, b = params.get("a"), params.get("b")
        if not (isinstance(a, str) and a and isinstance(b, str) and b):
            raise JobError(f"wise_ft: give 'a' (the start model) and 'b' (the fine-tuned model), got a={a!r}, b={b!r}")
        return [a, b]
    if kind == "prune":
        m = params.get("model")
        if not isinstance(m, str) or not m:
            raise JobError(f"prune: give 'model': a model source, got {m!r}")
        return [m]
    ms = params.get("models")
    if isinstance(ms, str) or not isinstance(ms, (list, tuple)) or len(ms) < 2 or not all(
            isinstance(m, str) and m for m in ms):
        raise JobError(f"soup: give 'models': a list of at least two model sources of one architecture, got {ms!r}")
    return list(ms)


def sources_of(kind: str, params: Mapping[str, Any]) -> list[str]:
    """The training runs a job reads (it waits for them to finish)."""
    return [s[4:] for s in model_sources(kind, params) if s.startswith("run:")]


def eval_spec(params: Mapping[str, Any]) -> dict[str, Any]:
    """The "eval" spec of a job over model sources, checked, with defaults filled in."""
    spec = params.get("eval")
    if not isinstance(spec, Mapping):
        raise JobError(f"give 'eval': how to build the held-out examples, e.g. {{'task': 'classification', "
                       f"'data': 'bundled:bbc-news'}}; got {spec!r}")
    unknown = sorted(set(spec) - set(EVAL_KEYS))
    if unknown:
        raise JobError(f"eval: unknown keys {unknown}; known: {sorted(EVAL_KEYS)}")
    try:
        values = {k: EVAL_KEYS[k](v) for k, v in spec.items()}
    except (TypeError, ValueError):
        raise JobError(f"eval: {dict(spec)!r} has a value of the wrong type; types: "
                       f"{ {k: t.__name__ for k, t in EVAL_KEYS.items()} }") from None
    cfg = RunConfig(**values)  # the same checks as a run's fields (task, n_eval, max_length ...)
    return {k: getattr(cfg, k) for k in EVAL_KEYS}


def submit_job(store: Any, kind: str, params: Mapping[str, Any], *, group: str = "", name: str = "",
               reserved_for: str | None = None, device: str = "cpu") -> str:
    """Queue a job; it starts once the runs it reads have finished. A job of the "of" form is
    queued on the device of its runs; one over model sources on ``device``."""
    _check_kind(kind)
    if kind == "probe":
        return _submit_probe(store, params, name or KINDS[kind][2])
    if by_source(params):
        return _submit_by_source(store, kind, params, group=group, name=name, reserved_for=reserved_for,
                                 device=device)
    sources = sources_of(kind, params)
    KINDS[kind][1](params)
    recs = [store.get_run(r) for r in sources]  # UnknownRun for a bad id
    _check_readable(kind, recs)
    first = recs[0].cfg
    for r in recs[1:]:
        c = r.cfg
        if (c.model, c.task) != (first.model, first.task):
            raise JobError(f"{kind}: runs {recs[0].id} and {r.id} differ in model or task ({first.model}/"
                           f"{first.task} vs {c.model}/{c.task}); soups need fine-tunings of one model")
    name = name or KINDS[kind][2]
    cfg = RunConfig.from_dict({**first.to_dict(), "name": name, "group": group or first.group})
    return store.create_run(cfg, status="queued", device=recs[0].device, group=group or first.group, name=name,
                            kind=kind, job=dict(params), after=sources, reserved_for=reserved_for)


def _check_readable(kind: str, recs: Sequence[Any]) -> None:
    for r in recs:
        if r.kind != "train":
            raise JobError(f"{kind}: run {r.id} is a {r.kind} job, not a training run with a model")
        if r.status in ("failed", "interrupted", "stopped", "pruned"):
            raise JobError(f"{kind}: run {r.id} ended {r.status}, so it has no final model; resume it first")


def _submit_by_source(store: Any, kind: str, params: Mapping[str, Any], *, group: str, name: str,
                      reserved_for: str | None, device: str) -> str:
    from hft_core.placement import resolve_device

    sources = model_sources(kind, params)
    KINDS[kind][1](params)
    spec = eval_spec(params)
    save = params.get("save", "")
    if save and not (isinstance(save, str) and os.path.isabs(save)):
        raise JobError(f"{kind}: save={save!r}: give an absolute folder path (a worker's working folder is not yours)")
    runs = []  # runs in this store that it reads: it waits for those still queued or running
    for s in sources:
        if s.startswith("run:"):
            try:
                runs.append(store.get_run(s[4:]))
            except KeyError:  # a run of another store, with a checkpoint under this home: read as a folder
                continue
    _check_readable(kind, runs)
    name = name or KINDS[kind][2]
    cfg = RunConfig(model=sources[-1], device=device, name=name, group=group, **spec)
    after = [r.id for r in runs if r.status in ("queued", "running")]
    return store.create_run(cfg, status="queued", device=resolve_device(device), group=group, name=name, kind=kind,
                            job={**dict(params), "eval": spec}, after=after, reserved_for=reserved_for)


def _submit_probe(store: Any, params: Mapping[str, Any], name: str) -> str:
    from hft_core.placement import resolve_device

    if params.get("what") == "bf16":
        cfg = RunConfig(model="tiny:bert", device=str(params.get("device", "cpu")), name=name)
    elif params.get("what") in ("shape", "schedule") and isinstance(params.get("cfg"), Mapping):
        cfg = RunConfig.from_dict({**params["cfg"], "name": name, "group": ""})
    else:
        raise JobError(f"probe: give what='shape' or 'schedule' with cfg, or what='bf16' with device; "
                       f"got {dict(params)!r}")
    return store.create_run(cfg, status="queued", device=resolve_device(cfg.device), name=name, kind="probe",
                            job=dict(params))


def run_job(store: Any, rec: Any, sink: Any, stop: threading.Event) -> str:
    """Run a claimed job; returns "finished" or "stopped" (between points). Raises on failure."""
    from hft_core import merge
    from hft_core.placement import local_name

    params = rec.job
    device = local_name(rec.device) if rec.device.startswith(("cpu", "cuda")) else "cpu"  # this process's name

    def log_row(step: int, extra: Mapping[str, float], row: Mapping[str, Any]) -> bool:
        sink.log(step, {**extra, **{k: float(v) for k, v in row.items() if isinstance(v, (int, float))}})
        return not stop.is_set()

    if rec.kind == "probe" and params.get("what") == "schedule":  # measured for the group queued behind it
        from hft_core import schedule

        try:
            sched = schedule.measure(RunConfig.from_dict(params["cfg"]), cancel=stop.is_set)
        except schedule.ScheduleCancelled:
            return "stopped"
        sink.event(f"schedule of {sched.what}: {sched.line()}")
        return "finished"
    if rec.kind == "probe":
        from hft_core import estimate

        def runs_waiting() -> bool:  # a probe gives way to a run queued meanwhile (it is asked again later)
            return any(store.get_run(r).kind != "probe" for r in store.queued(rec.device))

        return estimate.run_probe_job(params, stop, give_way=runs_waiting)
    _check_kind(rec.kind)
    sources, task, examples, kw = _inputs(rec.kind, params)
    kw["device"] = device
    if rec.kind == "wise_ft":
        points = int(params.get("points", 11))
        rows = merge.wise_ft_sweep(sources[0], sources[1], task, examples,
                                   alphas=[i / (points - 1) for i in range(points)], **kw,
                                   on_row=lambda r: log_row(round(100 * r["alpha"]), {"wise_ft/a": r["alpha"]},
                                                            {k: v for k, v in r.items() if k != "alpha"}))
        what = f"run {params['of']}" if "of" in params else f"{sources[0]} and {sources[1]}"
        sink.event(f"WiSE-FT between the start and the end of {what}: "
                   + ", ".join(f"a={r['alpha']:.1f} -> " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()
                                                                        if k != "alpha") for r in rows))
    elif rec.kind == "prune":
        rows = merge.prune_sweep(sources[0], task, examples, sparsities=params.get("sparsities", SPARSITIES),
                                 scope=str(params.get("scope", "global")), **kw,
                                 on_row=lambda r: log_row(round(100 * r["sparsity"]), {"prune/sparsity": r["sparsity"]},
                                                          {k: v for k, v in r.items() if k != "sparsity"}))
        what = f"run {params['of']}" if "of" in params else sources[0]
        sink.event(f"magnitude pruning of {what}: " + ", ".join(
            f"{r['sparsity']:.0%} -> " + ", ".join(f"{k}={v:.4g}" for k, v in r.items() if k.startswith("eval/"))
            for r in rows))
    else:  # soup
        if stop.is_set():
            return "stopped"
        rows, soup = merge.soup_sweep(sources, task, examples, metric=str(params.get("metric", "")), **kw)
        for i, row in enumerate(rows, start=1):
            log_row(i, {}, {k: v for k, v in row.items() if k != "model"})
        sink.event("soups: " + "; ".join(f"step {i}: {row['model']} -> " + ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k.startswith("eval/")) for i, row in enumerate(rows, start=1)))
        if params.get("save"):
            merge.save_state(soup, sources[0], task, examples, str(params["save"]), seed=kw["seed"])
            sink.event(f"greedy soup saved to {params['save']}")
    _write_rows(store.run_dir(rec.id), rows)
    return "stopped" if stop.is_set() else "finished"


def _inputs(kind: str, params: Mapping[str, Any]) -> tuple[list[str], str, list[dict], dict[str, Any]]:
    """(model sources, task, held-out examples, {"seed", "max_length"}) of a job, in either form."""
    if by_source(params):
        from hft_core import data

        spec = eval_spec(params)
        ds = data.load_data(spec["data"], spec["task"], text_column=spec["text_column"],
                            label_column=spec["label_column"], n_train=spec["n_train"], n_eval=spec["n_eval"],
                            eval_fraction=spec["eval_fraction"], seed=spec["seed"])
        return (model_sources(kind, params), spec["task"], list(ds.eval),
                {"seed": spec["seed"], "max_length": spec["max_length"]})
    runs = sources_of(kind, params)
    cfg, examples = _run_eval_data(runs[0])
    # WiSE-FT of a run: from its start (its model source, the head drawn from its seed) to its end
    sources = [cfg.model, f"run:{runs[0]}"] if kind == "wise_ft" else [f"run:{r}" for r in runs]
    return sources, cfg.task, examples, {"seed": cfg.seed, "max_length": cfg.max_length}


def _write_rows(folder: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / ROWS_FILE).write_text(json.dumps([dict(r) for r in rows]))


def rows_of(store: Any, run_id: str) -> list[dict[str, Any]]:
    """The rows a job measured (as the merge sweeps return them); [] if it wrote none."""
    path = store.run_dir(run_id) / ROWS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def _run_eval_data(run_id: str) -> tuple[RunConfig, list[dict]]:
    """A finished run's config and its own held-out examples."""
    from hft_core import data, home

    path = home.checkpoint_dir(run_id) / "run_config.yaml"
    if not path.is_file():
        raise JobError(f"run {run_id} has no checkpoint with a run_config.yaml ({path}); it needs a finished run")
    cfg = RunConfig.from_yaml(path.read_text())
    ds = data.load_data(cfg.data, cfg.task, text_column=cfg.text_column, label_column=cfg.label_column,
                        n_train=cfg.n_train, n_eval=cfg.n_eval, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    return cfg, list(ds.eval)


# ---- the caller's side: a job run by a worker process, followed from here ---------------------------

USER_ERRORS = ("JobError", "MergeError", "ConfigError", "ModelError", "DataError", "DeviceError", "PrecisionError",
               "FileNotFoundError")


class WorkerGone(RuntimeError):
    """The worker process started for a job ended before it ran the job (its log says why)."""


def user_error(error: str) -> bool:
    """True when a failed job's ``error`` ("Type: message") was caused by its input, not by a bug."""
    return error.split(":", 1)[0].strip() in USER_ERRORS


def general_workers(store: Any, device: str) -> list[dict[str, Any]]:
    """The workers that serve any run of ``device`` (the app's, `hft worker`)."""
    return [w for w in store.workers(device) if w["role"] == "general"]


def say_who_serves(store: Any, run_id: str) -> None:
    """For a job queued with --detach: which worker runs it, or how to start one."""
    device = store.get_run(run_id).device
    served = general_workers(store, device)
    if served:
        print(f"queued on {device}; a worker (pid {served[0]['pid']}) runs it in its turn. `hft queue` shows the "
              f"queue, `hft stop {run_id}` cancels it", file=sys.stderr)
    else:
        print(f"queued on {device}, but no worker serves {device} right now: start one with "
              f"`hft worker --device {device}`, or open the app", file=sys.stderr)


def start_worker(store: Any, run_id: str) -> tuple[Any, Any]:
    """Start ``python -m hft_core.jobs`` for one queued job: its own session (a Ctrl-C in the
    caller's terminal is the caller's to turn into a stop request), its device pinned, its share of
    the CPU, its output in $HFT_HOME/logs/job-<id>.log. Returns (the Popen, the log path)."""
    import subprocess
    from pathlib import Path

    from hft_core.placement import pin_env, threads_per_run
    from hft_core.worker import cpu_budget, runs_per_device

    rec = store.get_run(run_id)
    if cpu_budget(rec.device):  # auto: one run's share, as claimed (schedule.claim_width)
        from hft_core.schedule import threads_for

        threads = threads_for(rec.cfg)
    else:
        threads = threads_per_run(runs_per_device() if rec.device == "cpu" else 1)
    env = dict(os.environ)
    env.update(pin_env(rec.device))
    env["HFT_HOME"] = str(store.home)
    env["OMP_NUM_THREADS"] = str(threads)
    root = str(Path(__file__).resolve().parents[1])  # this checkout of hft_core, whatever the caller's sys.path
    env["PYTHONPATH"] = os.pathsep.join([root] + [q for q in env.get("PYTHONPATH", "").split(os.pathsep) if q])
    logs = Path(store.home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"job-{run_id}.log"
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hft_core.jobs", "--home", str(store.home), "--run-id", run_id,
                                 "--threads", str(threads)], env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log_path


def run_by_worker(store: Any, run_id: str, *, say: Callable[[str], None],
                  on_point: Callable[[int, dict[str, float]], None] | None = None, poll: float = 0.2) -> str:
    """Have a queued job run by a worker process and follow it until it ends; returns its final status.

    A general worker of its device (the app's, `hft worker`) runs it in its turn; when none serves
    the device, a worker process is started for it (``start_worker``). ``on_point(step, values)``
    gets each measured point as it lands in the store. In the main thread, a first Ctrl-C asks the
    job to stop (it ends "stopped" after its current point); a second one stops waiting
    (KeyboardInterrupt; the job still stops)."""
    import signal
    import time

    from hft_core.errors import StoreError

    rec = store.get_run(run_id)
    proc = log_path = None
    served = general_workers(store, rec.device)
    if served:
        say(f"job {run_id} ({rec.kind}) queued on {rec.device}; worker pid {served[0]['pid']} runs it in its turn; "
            f"stop it with Ctrl-C or `hft stop {run_id}`")
    else:
        proc, log_path = start_worker(store, run_id)
        say(f"job {run_id} ({rec.kind}) queued on {rec.device}; no worker serves {rec.device}, so worker pid "
            f"{proc.pid} was started for it (log {log_path}); stop it with Ctrl-C or `hft stop {run_id}`")
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_ctrl_c(signum, frame):
            signal.signal(signal.SIGINT, signal.default_int_handler)
            say(f"stopping job {run_id} after its current point (Ctrl-C again to stop waiting)")
            try:
                store.request_stop(run_id, "Ctrl-C in its terminal")
            except StoreError as e:  # it ended meanwhile; the loop sees how
                say(f"job {run_id}: {type(e).__name__}: {e}")

        previous = signal.signal(signal.SIGINT, on_ctrl_c)
    last_step, last_expire = -1, 0.0
    try:
        while True:
            rec = store.get_run(run_id)
            if on_point is not None:
                last_step = _new_points(store, run_id, last_step, on_point, final=rec.status not in ("queued", "running"))
            if rec.status not in ("queued", "running"):
                return rec.status
            if proc is not None and proc.poll() is not None:
                if rec.status == "queued" and not general_workers(store, rec.device):
                    try:
                        store.request_stop(run_id, "its worker process ended before running it")
                    except StoreError:  # claimed meanwhile: the loop follows it
                        continue
                    raise WorkerGone(f"the worker process for job {run_id} exited with status {proc.returncode} "
                                     f"before running it; its log: {log_path}")
                proc = None  # it ran the job, or another worker took it: the store says how it ends
            if rec.status == "running" and time.monotonic() - last_expire > 2.0:
                last_expire = time.monotonic()
                store.mark_interrupted()  # a worker that died must not keep us waiting
            time.sleep(poll)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _new_points(store: Any, run_id: str, last_step: int, on_point: Callable[[int, dict[str, float]], None],
                final: bool) -> int:
    """Call ``on_point`` for each step after ``last_step`` whose metrics are in the store. While the job
    runs, the newest step is held back (the rest of its row may be in the next flush)."""
    df = store.metrics(run_id, since_step=last_step + 1)
    if df.empty:
        return last_step
    steps = sorted(set(int(x) for x in df["step"]))
    if not final:
        steps = steps[:-1]
    for step in steps:
        rows = df[df["step"] == step]
        on_point(step, {str(n): float(v) for n, v in zip(rows["name"], rows["value"])})
        last_step = step
    return last_step


# ---- python -m hft_core.jobs: a worker process for one queued job ---------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Reserve one queued job for a worker of this process, run it, exit: `hft merge` starts this when
    no worker serves the job's device. Its own process, like every worker: the caller's random
    generators, thread pool and crash fate are not the job's. Exit 0 when the job ended (any status,
    or another worker took it first), 1 when it failed, 2 when it cannot be run here.

    The environment pins the device (``placement.pin_env``: CUDA_VISIBLE_DEVICES and the queue it
    serves). SIGTERM/SIGINT stop the job between points; a Ctrl-C in the caller's terminal does not
    reach it (it runs in a session of its own): the caller turns it into a stop request."""
    import signal

    p = argparse.ArgumentParser(prog="python -m hft_core.jobs", description=main.__doc__.split("\n")[0])
    p.add_argument("--home", required=True, help="the store's folder ($HFT_HOME)")
    p.add_argument("--run-id", required=True, help="the queued job")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: placement.threads_per_run(1))")
    args = p.parse_args(argv)
    os.environ["HFT_HOME"] = args.home
    import torch  # before any thread of ours starts (first imports from two threads at once can fail)

    from hft_core.placement import threads_per_run
    from hft_core.store import RunStore, StoreError
    from hft_core.worker import Worker
    from hft_core.worker_process import load_plugins

    torch.set_num_threads(args.threads or threads_per_run(1))
    load_plugins()
    store = RunStore(args.home)
    try:
        rec = store.get_run(args.run_id)
        if rec.kind in ("train", "probe"):
            print(f"error: run {args.run_id} is a {rec.kind} run, not a post-training job", file=sys.stderr)
            return 2
        worker = Worker(store, rec.device, role="foreground", check=False)
        try:
            try:
                store.reserve(args.run_id, worker.id)
            except StoreError as e:  # another worker claimed it meanwhile (or it was cancelled): not ours
                print(f"job {args.run_id}: {e}", file=sys.stderr)
                return 0

            def on_signal(signum, frame):  # only a flag: the main thread may be inside a store write
                worker.stop_local(args.run_id)

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            print(f"worker {worker.id} pid {os.getpid()} runs job {args.run_id} ({rec.kind}) on {rec.device} with "
                  f"{torch.get_num_threads()} torch thread(s)", file=sys.stderr, flush=True)
            outcome = worker.work_on([args.run_id])[args.run_id]
        finally:
            worker.close(wait=False)
        rec = store.get_run(args.run_id)
        print(f"job {args.run_id} {outcome.status}" + (f": {rec.error}" if rec.error else ""), file=sys.stderr)
        return 1 if outcome.status == "failed" else 0
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
