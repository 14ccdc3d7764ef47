"""Post-training jobs as runs: WiSE-FT sweeps, model soups and pruning sweeps.

A job is a run in the store like a training run (``kind`` != "train"): it is queued on
the device of the runs it reads, waits for them to finish, is claimed by a worker,
stops between points when asked, and logs each point as metrics (so Live and Compare
draw it); a failure is stored with its traceback.

    kind     parameters                                  one step per point
    wise_ft  {"of": run_id, "points": 11}                 step = round(100 a): wise_ft/a, eval/...
    prune    {"of": run_id, "sparsities": [0, .5, .9]}   step = round(100 s): prune/sparsity, eval/...
    soup     {"of": [run_id, ...], "metric": ""}         step 1..n each model alone, n+1 uniform, n+2 greedy

    run_id = submit_job(store, "wise_ft", {"of": "r-3f9a2c", "points": 11})
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from hft_core.config import ConfigError, RunConfig

WISE_FT_NAME = "WiSE-FT sweep (step = 100 a)"
PRUNE_NAME = "pruning sweep (step = 100 x sparsity)"
SOUP_NAME = "soups (steps 1..n: each model, n+1 uniform, n+2 greedy)"


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
    if not isinstance(points, int) or points < 2:
        raise JobError(f"wise_ft: points={points!r}: use a whole number of at least 2 (the two endpoints)")


def _check_sparsities(params: Mapping[str, Any]) -> None:
    sp = params.get("sparsities", [0.0, 0.25, 0.5, 0.75, 0.9])
    if not isinstance(sp, (list, tuple)) or not sp or not all(isinstance(x, (int, float)) and 0 <= x < 1 for x in sp):
        raise JobError(f"prune: sparsities={sp!r}: give a list of fractions in [0, 1), e.g. [0, 0.5, 0.9]")


# kind -> (sources of the parameters, extra check, default name)
KINDS: dict[str, tuple[Callable[[Mapping[str, Any], str], list[str]], Callable[[Mapping[str, Any]], None], str]] = {
    "wise_ft": (_one_run, _check_points, WISE_FT_NAME),
    "prune": (_one_run, _check_sparsities, PRUNE_NAME),
    "soup": (_many_runs, lambda p: None, SOUP_NAME),
    # a time-estimate probe (hft_core/estimate.py): {"key": ..., "what": "shape", "cfg": {...}} or
    # {"key": ..., "what": "bf16", "device": "cpu"}; it reads no run, it measures its device alone
    "probe": (lambda p, kind: [], lambda p: None, "estimate probe"),
}


def sources_of(kind: str, params: Mapping[str, Any]) -> list[str]:
    """The training runs a job reads (it waits for them to finish)."""
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}; kinds: {sorted(KINDS)}")
    return KINDS[kind][0](params, kind)


def submit_job(store: Any, kind: str, params: Mapping[str, Any], *, group: str = "", name: str = "",
               reserved_for: str | None = None) -> str:
    """Queue a job on the device of the run(s) it reads; it starts once they have finished."""
    if kind == "probe":
        return _submit_probe(store, params, name or KINDS[kind][2])
    sources = sources_of(kind, params)
    KINDS[kind][1](params)
    recs = [store.get_run(r) for r in sources]  # UnknownRun for a bad id
    for r in recs:
        if r.kind != "train":
            raise JobError(f"{kind}: run {r.id} is a {r.kind} job, not a training run with a model")
        if r.status in ("failed", "interrupted", "stopped", "pruned"):
            raise JobError(f"{kind}: run {r.id} ended {r.status}, so it has no final model; resume it first")
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


def _submit_probe(store: Any, params: Mapping[str, Any], name: str) -> str:
    from hft_core.placement import resolve_device

    if params.get("what") == "bf16":
        cfg = RunConfig(model="tiny:bert", device=str(params.get("device", "cpu")), name=name)
    elif params.get("what") == "shape" and isinstance(params.get("cfg"), Mapping):
        cfg = RunConfig.from_dict({**params["cfg"], "name": name, "group": ""})
    else:
        raise JobError(f"probe: give what='shape' with cfg, or what='bf16' with device; got {dict(params)!r}")
    return store.create_run(cfg, status="queued", device=resolve_device(cfg.device), name=name, kind="probe",
                            job=dict(params))


def run_job(store: Any, rec: Any, sink: Any, stop: threading.Event) -> str:
    """Run a claimed job; returns "finished" or "stopped" (between points). Raises on failure."""
    from hft_core import merge

    params, device = rec.job, rec.device if rec.device.startswith(("cpu", "cuda")) else "cpu"

    def log_row(step: int, extra: Mapping[str, float], row: Mapping[str, Any]) -> bool:
        sink.log(step, {**extra, **{k: float(v) for k, v in row.items() if isinstance(v, (int, float))}})
        return not stop.is_set()

    if rec.kind == "probe":
        from hft_core import estimate

        def runs_waiting() -> bool:  # a probe gives way to a run queued meanwhile (it is asked again later)
            return any(store.get_run(r).kind != "probe" for r in store.queued(rec.device))

        return estimate.run_probe_job(params, stop, give_way=runs_waiting)
    if rec.kind == "wise_ft":
        of = params["of"]
        rows = merge.run_wise_ft(of, points=int(params.get("points", 11)), device=device,
                                 on_row=lambda r: log_row(round(100 * r["alpha"]), {"wise_ft/a": r["alpha"]},
                                                          {k: v for k, v in r.items() if k != "alpha"}))
        sink.event(f"WiSE-FT between the start and the end of run {of}: "
                   + ", ".join(f"a={r['alpha']:.1f} -> " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()
                                                                        if k != "alpha") for r in rows))
    elif rec.kind == "prune":
        of = params["of"]
        cfg, examples = _run_eval_data(of)
        rows = merge.prune_sweep(f"run:{of}", cfg.task, examples, sparsities=params.get("sparsities",
                                                                                         (0.0, 0.25, 0.5, 0.75, 0.9)),
                                 seed=cfg.seed, max_length=cfg.max_length, device=device,
                                 on_row=lambda r: log_row(round(100 * r["sparsity"]), {"prune/sparsity": r["sparsity"]},
                                                          {k: v for k, v in r.items() if k != "sparsity"}))
        sink.event(f"magnitude pruning of run {of}: " + ", ".join(
            f"{r['sparsity']:.0%} -> " + ", ".join(f"{k}={v:.4g}" for k, v in r.items() if k.startswith("eval/"))
            for r in rows))
    elif rec.kind == "soup":
        of = list(params["of"])
        cfg, examples = _run_eval_data(of[0])
        if stop.is_set():
            return "stopped"
        rows, _ = merge.soup_sweep([f"run:{r}" for r in of], cfg.task, examples, metric=str(params.get("metric", "")),
                                   seed=cfg.seed, max_length=cfg.max_length, device=device)
        for i, row in enumerate(rows, start=1):
            log_row(i, {}, {k: v for k, v in row.items() if k != "model"})
        sink.event("soups: " + "; ".join(f"step {i}: {row['model']} -> " + ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k.startswith("eval/")) for i, row in enumerate(rows, start=1)))
    else:
        raise JobError(f"unknown job kind {rec.kind!r}; kinds: {sorted(KINDS)}")
    return "stopped" if stop.is_set() else "finished"


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
