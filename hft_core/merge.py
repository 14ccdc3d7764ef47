"""After training: interpolate, average and prune checkpoints, and evaluate each result.

    interpolate(state_0, state_ft, a)   WiSE-FT (Wortsman et al. 2022): (1-a)*theta_0 + a*theta_ft
    uniform_soup(states)                the mean of several fine-tuned models (Wortsman et al. 2022)
    greedy_soup(states, score)          add models best-first, keep each only if the score does not drop
    magnitude_prune(state, sparsity)    zero the smallest-magnitude Linear weights (global or per tensor)

The sweeps (``wise_ft_sweep``, ``soup_sweep``, ``prune_sweep``) load models from any
model source (a folder written by ``save_pretrained``, ``run:<id>``, bundled, hub) and
return rows of plain numbers, e.g. ``{"alpha": 0.3, "eval/accuracy": 0.91, ...}``,
ready for a table, a chart or the store. Architectures must match exactly; otherwise a
``MergeError`` names both sources and the first differing tensors.

Only floating-point tensors are averaged; integer buffers (position ids) are copied.
The endpoints of an interpolation are exact copies, not ``1.0*x + 0.0*y``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from hft_core.config import ConfigError

State = dict[str, torch.Tensor]
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
LOWER_IS_BETTER = ("loss", "perplexity")


class MergeError(ConfigError):
    """Checkpoints cannot be merged (different architectures, nothing to merge, bad numbers)."""


# ---- pure state-dict operations ---------------------------------------------------------

def check_same_architecture(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                            name_a: str = "model a", name_b: str = "model b") -> None:
    """Raise MergeError unless both have the same tensor names, shapes and dtypes."""
    only_a, only_b = sorted(set(state_a) - set(state_b)), sorted(set(state_b) - set(state_a))
    if only_a or only_b:
        raise MergeError(f"{name_a} and {name_b} have different architectures: tensors only in {name_a}: "
                         f"{only_a[:3]}{' ...' if len(only_a) > 3 else ''}, only in {name_b}: "
                         f"{only_b[:3]}{' ...' if len(only_b) > 3 else ''}; merge checkpoints of the same model")
    for k in state_a:
        if state_a[k].shape != state_b[k].shape:
            raise MergeError(f"{name_a} and {name_b} have different architectures: {k} is "
                             f"{tuple(state_a[k].shape)} vs {tuple(state_b[k].shape)} (e.g. another number of "
                             f"labels); merge checkpoints of the same model and task")


@torch.no_grad()
def interpolate(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], a: float) -> State:
    """(1 - a) * state_a + a * state_b for float tensors; a = 0 and a = 1 are exact copies.

    Integer tensors are copied from ``state_a``. Returns new tensors; inputs are unchanged.
    """
    if not 0.0 <= a <= 1.0:
        raise MergeError(f"alpha={a!r} is not valid: use a number from 0 (model a) to 1 (model b)")
    check_same_architecture(state_a, state_b)
    out: State = {}
    for k, ta in state_a.items():
        tb = state_b[k]
        if not ta.is_floating_point() or a == 0.0:
            out[k] = ta.clone()
        elif a == 1.0:
            out[k] = tb.clone()
        else:
            out[k] = torch.lerp(ta.float(), tb.float(), a).to(ta.dtype)
    return out


@torch.no_grad()
def uniform_soup(states: Sequence[Mapping[str, torch.Tensor]]) -> State:
    """The mean of float tensors over ``states`` (integer tensors from the first). One state: a copy."""
    if not states:
        raise MergeError("a soup needs at least one model")
    first = states[0]
    for i, s in enumerate(states[1:], 2):
        check_same_architecture(first, s, "model 1", f"model {i}")
    out: State = {}
    for k, t in first.items():
        if not t.is_floating_point() or len(states) == 1:
            out[k] = t.clone()
        else:
            acc = torch.zeros_like(t, dtype=torch.float32)
            for s in states:
                acc += s[k].float()
            out[k] = (acc / len(states)).to(t.dtype)
    return out


def greedy_soup(states: Sequence[Mapping[str, torch.Tensor]], score: Callable[[Mapping[str, torch.Tensor]], float],
                names: Sequence[str] | None = None) -> tuple[State, list[int], list[dict[str, Any]]]:
    """Wortsman et al. 2022, greedy soup: sort by individual score (higher = better), start from the
    best, and add each next model if the soup's score does not drop.

    ``score`` evaluates a state on held-out data. Returns (soup state, indices kept, rows) where
    rows log every candidate: {"model", "individual", "soup_size", "soup_score", "kept"}.
    """
    names = list(names or [f"model {i + 1}" for i in range(len(states))])
    individual = [float(score(s)) for s in states]
    order = sorted(range(len(states)), key=lambda i: -individual[i])
    kept = [order[0]]
    best = individual[order[0]]
    rows = [{"model": names[order[0]], "individual": best, "soup_size": 1, "soup_score": best, "kept": 1.0}]
    for i in order[1:]:
        candidate = uniform_soup([states[j] for j in kept + [i]])
        s = float(score(candidate))
        keep = s >= best
        if keep:
            kept.append(i)
            best = s
        rows.append({"model": names[i], "individual": individual[i], "soup_size": len(kept), "soup_score": s,
                     "kept": 1.0 if keep else 0.0})
    return uniform_soup([states[j] for j in kept]), kept, rows


def prunable(name: str, t: torch.Tensor) -> bool:
    """Linear weight matrices of the body: 2-D float ``*.weight`` tensors, not embeddings or the head."""
    from hft_core.strategies.anatomy import is_head_name

    low = name.lower()
    return (t.is_floating_point() and t.dim() == 2 and name.endswith("weight") and not is_head_name(name)
            and not any(s in low for s in ("embed", "wte", "wpe", "lm_head", "shared")))


@torch.no_grad()
def magnitude_prune(state: Mapping[str, torch.Tensor], sparsity: float, scope: str = "global",
                    select: Callable[[str, torch.Tensor], bool] = prunable) -> tuple[State, float]:
    """Zero the ``sparsity`` share of smallest-magnitude entries among the selected tensors.

    scope "global": one threshold over all selected tensors together (exactly
    round(sparsity * N) entries are zeroed); "per_tensor": that share in each tensor.
    Returns (new state, sparsity achieved over the selected tensors).
    """
    if not 0.0 <= sparsity < 1.0:
        raise MergeError(f"sparsity={sparsity!r} is not valid: use a share from 0 to below 1, e.g. 0.5")
    if scope not in ("global", "per_tensor"):
        raise MergeError(f"scope={scope!r} is not valid: use 'global' or 'per_tensor'")
    out: State = {k: v.clone() for k, v in state.items()}
    names = [k for k, v in state.items() if select(k, v)]
    if not names:
        raise MergeError("nothing to prune: the model has no Linear weight matrices outside embeddings and head")
    if sparsity > 0:
        if scope == "global":
            flat = torch.cat([out[k].abs().flatten().float() for k in names])
            k_zero = int(round(sparsity * flat.numel()))
            if k_zero:
                idx = torch.topk(flat, k_zero, largest=False).indices
                mask = torch.ones_like(flat, dtype=torch.bool)
                mask[idx] = False
                offset = 0
                for k in names:
                    n = out[k].numel()
                    out[k].mul_(mask[offset:offset + n].view_as(out[k]).to(out[k].dtype))
                    offset += n
        else:
            for k in names:
                t = out[k]
                k_zero = int(round(sparsity * t.numel()))
                if k_zero:
                    idx = torch.topk(t.abs().flatten().float(), k_zero, largest=False).indices
                    t.view(-1)[idx] = 0
    zeros = sum(int((out[k] == 0).sum()) for k in names)
    total = sum(out[k].numel() for k in names)
    return out, zeros / total


# ---- loading and evaluating ---------------------------------------------------------------

def load_state(source: str, task: str, num_labels: int = 0, *, seed: int = 0) -> State:
    """The state dict of any model source, as loaded for ``task`` (float32, on the CPU)."""
    return {k: v.detach().clone() for k, v in load_for(source, task, num_labels, seed=seed).state_dict().items()}


def load_for(source: str, task: str, num_labels: int = 0, *, seed: int = 0) -> torch.nn.Module:
    from hft_core import models

    return models.load_model(source, task, num_labels, pretrained=True, seed=seed)


def infer_num_labels(sources: Sequence[str], task: str, examples: Sequence[dict]) -> int:
    """Classification: the label count saved with the first source that has a head, else from the examples."""
    if task != "classification":
        return 0
    from hft_core.strategies.anatomy import saved_label_count

    for s in sources:
        n = saved_label_count(s)
        if n:
            return n
    labels = [int(e["label"]) for e in examples if "label" in e]
    if not labels:
        raise MergeError("cannot tell the number of labels: give num_labels or labelled examples")
    return max(labels) + 1


class Evaluator:
    """Loads ``state`` into one model and evaluates it on fixed examples (metrics as eval/<name>)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, task: str, examples: Sequence[dict], *,
                 batch_size: int = 32, max_length: int = 128, device: str = "cpu") -> None:
        if not examples:
            raise MergeError("no examples to evaluate on; give held-out data")
        self.model, self.tokenizer, self.task, self.examples = model.to(device), tokenizer, task, list(examples)
        self.batch_size, self.max_length, self.device = batch_size, max_length, device

    def __call__(self, state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        from hft_core.tasks import evaluate

        self.model.load_state_dict(dict(state), strict=True)
        metrics = evaluate(self.model, self.tokenizer, self.task, self.examples, batch_size=self.batch_size,
                           max_length=self.max_length, device=self.device)
        return {f"eval/{k}": float(v) for k, v in metrics.items()}


def score_of(metrics: Mapping[str, float], metric: str) -> float:
    """A higher-is-better number from ``metrics`` (loss and perplexity are negated)."""
    key = metric if metric.startswith("eval/") else f"eval/{metric}"
    if key not in metrics:
        raise MergeError(f"metric {metric!r} was not measured; measured: {sorted(metrics)}")
    v = metrics[key]
    return -v if key.split("/", 1)[1] in LOWER_IS_BETTER else v


def _evaluator(sources: Sequence[str], task: str, examples: Sequence[dict], num_labels: int, seed: int,
               **kw: Any) -> Evaluator:
    from hft_core import models

    tokenizer = models.load_tokenizer(sources[-1])
    model = load_for(sources[-1], task, num_labels, seed=seed)
    return Evaluator(model, tokenizer, task, examples, **kw)


Row = dict[str, float]
OnRow = Callable[[Row], bool | None]   # called with each row as it is measured; False stops the sweep


def wise_ft_sweep(model_a_source: str, model_b_source: str, task: str, examples: Sequence[dict], *,
                  alphas: Sequence[float] = ALPHAS, num_labels: int = 0, seed: int = 0, batch_size: int = 32,
                  max_length: int = 128, device: str = "cpu", on_row: OnRow | None = None) -> list[dict[str, float]]:
    """WiSE-FT: evaluate (1-a)*theta_a + a*theta_b at each a. Rows {"alpha": a, "eval/...": ...}.

    theta_a is usually the pretrained model (its new head drawn from ``seed``, as the run
    that fine-tuned it drew it) and theta_b the fine-tuned checkpoint.
    """
    num_labels = num_labels or infer_num_labels([model_b_source, model_a_source], task, examples)
    state_a = load_state(model_a_source, task, num_labels, seed=seed)
    state_b = load_state(model_b_source, task, num_labels, seed=seed)
    check_same_architecture(state_a, state_b, model_a_source, model_b_source)
    evaluate = _evaluator([model_a_source, model_b_source], task, examples, num_labels, seed,
                          batch_size=batch_size, max_length=max_length, device=device)
    rows = []
    for a in alphas:
        rows.append({"alpha": float(a), **evaluate(interpolate(state_a, state_b, float(a)))})
        if on_row is not None and on_row(rows[-1]) is False:
            break
    return rows


def soup_sweep(sources: Sequence[str], task: str, examples: Sequence[dict], *, metric: str = "",
               num_labels: int = 0, seed: int = 0, batch_size: int = 32, max_length: int = 128,
               device: str = "cpu") -> tuple[list[dict[str, Any]], State]:
    """Each model alone, the uniform soup and the greedy soup, evaluated. Returns (rows, greedy soup state).

    Rows: {"model": name or "uniform soup" / "greedy soup", "eval/...": ...}; the greedy
    soup's row also has "soup_size". ``metric`` orders the greedy soup (default accuracy
    for classification, loss for causal-lm). Wortsman et al. pick on held-out data and
    report on a test set; pass held-out examples here and test the saved soup separately.
    """
    if len(sources) < 2:
        raise MergeError(f"a soup needs at least two models, got {list(sources)}")
    metric = metric or ("accuracy" if task == "classification" else "loss")
    num_labels = num_labels or infer_num_labels(sources, task, examples)
    states = [load_state(s, task, num_labels, seed=seed) for s in sources]
    for s, st in zip(sources[1:], states[1:]):
        check_same_architecture(states[0], st, sources[0], s)
    evaluate = _evaluator(sources, task, examples, num_labels, seed, batch_size=batch_size,
                          max_length=max_length, device=device)
    individual = {id(st): evaluate(st) for st in states}  # the states stay alive, so their ids stay unique

    def metrics_of(state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return individual[id(state)] if id(state) in individual else evaluate(state)

    rows: list[dict[str, Any]] = [{"model": s, **individual[id(st)]} for s, st in zip(sources, states)]
    rows.append({"model": "uniform soup", **evaluate(uniform_soup(states))})
    soup, kept, _ = greedy_soup(states, lambda st: score_of(metrics_of(st), metric), names=list(sources))
    rows.append({"model": "greedy soup", "soup_size": float(len(kept)), **evaluate(soup)})
    return rows, soup


def prune_sweep(source: str, task: str, examples: Sequence[dict], *,
                sparsities: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 0.9), scope: str = "global",
                num_labels: int = 0, seed: int = 0, batch_size: int = 32, max_length: int = 128,
                device: str = "cpu", on_row: OnRow | None = None) -> list[dict[str, float]]:
    """Magnitude pruning at each sparsity, evaluated. Rows {"sparsity", "sparsity_achieved", "eval/...": ...}."""
    num_labels = num_labels or infer_num_labels([source], task, examples)
    state = load_state(source, task, num_labels, seed=seed)
    evaluate = _evaluator([source], task, examples, num_labels, seed, batch_size=batch_size,
                          max_length=max_length, device=device)
    rows = []
    for s in sparsities:
        pruned, achieved = magnitude_prune(state, float(s), scope)
        rows.append({"sparsity": float(s), "sparsity_achieved": achieved, **evaluate(pruned)})
        if on_row is not None and on_row(rows[-1]) is False:
            break
    return rows


def run_wise_ft(run_id: str, *, points: int = 11, examples: Sequence[dict] | None = None,
                device: str = "cpu", on_row: OnRow | None = None) -> list[dict[str, float]]:
    """WiSE-FT between a finished run's starting model and its checkpoint, on the run's own eval split.

    The start point is the run's ``model`` source with the head drawn from the run's seed,
    i.e. the model before any strategy changed it (blend, re-init ...).
    """
    from hft_core import data, home
    from hft_core.config import RunConfig

    cfg_path = home.checkpoint_dir(run_id) / "run_config.yaml"
    if not cfg_path.is_file():
        raise MergeError(f"run {run_id} has no checkpoint with a run_config.yaml ({cfg_path}); WiSE-FT needs a "
                         f"finished run")
    cfg = RunConfig.from_yaml(cfg_path.read_text())
    if examples is None:
        examples = data.load_data(cfg.data, cfg.task, text_column=cfg.text_column, label_column=cfg.label_column,
                                  n_train=cfg.n_train, n_eval=cfg.n_eval, eval_fraction=cfg.eval_fraction,
                                  seed=cfg.seed).eval
    if points < 2:
        raise MergeError(f"points={points} is not valid: use at least 2 (the two endpoints)")
    alphas = [i / (points - 1) for i in range(points)]
    return wise_ft_sweep(cfg.model, f"run:{run_id}", cfg.task, examples, alphas=alphas, seed=cfg.seed,
                         max_length=cfg.max_length, device=device, on_row=on_row)


# ---- command line: python -m hft_core merge wise-ft|soup|prune ------------------------------
#
# `hft merge` is a job like any other (hft_core/jobs.py): it is queued on its device, run by a
# worker process (the app's or `hft worker`'s when one serves the device, else one started for
# it, `python -m hft_core.jobs`), and this process only prints its points and its rows. Ctrl-C
# or `hft stop <id>` stops it between points.

def add_parser(sub: Any) -> None:
    m = sub.add_parser("merge", help="after training: WiSE-FT interpolation, model soups, magnitude pruning "
                       "(a job on its device's queue, run by a worker process)")
    m.set_defaults(fn=cli)
    msub = m.add_subparsers(dest="merge_command", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default="", help="held-out data source (default: the run's, for run:<id> models)")
        p.add_argument("--task", default="", help="classification or causal-lm (default: the run's)")
        p.add_argument("--n-eval", type=int, default=0, help="evaluate on this many examples (default: the run's)")
        p.add_argument("--seed", type=int, default=-1, help="data split and head seed (default: the run's, else 0)")
        p.add_argument("--max-length", type=int, default=0, help="truncate texts (default: the run's, else 128)")
        p.add_argument("--out", default="", help="also write the rows to this CSV file")
        p.add_argument("--device", default="", help="where it evaluates: cpu, cuda:N, auto (default: the run's "
                       "device for run:<id> models, else cpu)")
        p.add_argument("--detach", action="store_true", help="only queue the job and print its id; a worker (the "
                       "app, or `hft worker`) runs it; its rows go to rows.json in its run folder")

    w = msub.add_parser("wise-ft", help="evaluate (1-a)*A + a*B for a in 0..1")
    w.add_argument("--a", default="", help="start model (default: the run's model when --b is run:<id>)")
    w.add_argument("--b", required=True, help="fine-tuned model, e.g. run:<id>")
    w.add_argument("--points", type=int, default=11, help="number of alphas from 0 to 1 (11 = steps of 0.1)")
    data_args(w)
    s = msub.add_parser("soup", help="uniform and greedy soups of several fine-tuned models")
    s.add_argument("models", nargs="+", help="two or more model sources, e.g. run:<id1> run:<id2>")
    s.add_argument("--metric", default="", help="what the greedy soup maximises (default accuracy / loss)")
    s.add_argument("--save", default="", help="save the greedy soup to this folder (loadable as a model source)")
    data_args(s)
    p = msub.add_parser("prune", help="magnitude pruning of Linear weights at several sparsities")
    p.add_argument("model", help="model source, e.g. run:<id>")
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9])
    p.add_argument("--scope", choices=["global", "per_tensor"], default="global")
    data_args(p)


def cli(args: argparse.Namespace) -> int:
    from hft_core import jobs
    from hft_core.store import RunStore

    store = RunStore()
    try:
        kind, params, device = job_of(args, store)
        if args.detach and args.out:
            raise MergeError("--out needs this command to wait for the rows; with --detach they are written to "
                             "rows.json in the job's run folder (drop --out, or drop --detach)")
        run_id = jobs.submit_job(store, kind, params, device=device)
        if args.detach:
            print(run_id)
            jobs.say_who_serves(store, run_id)
            return 0
        try:
            outcome = jobs.run_by_worker(store, run_id, say=lambda m: print(m, file=sys.stderr, flush=True),
                                         on_point=lambda step, values: print(_point_line(kind, step, values),
                                                                             file=sys.stderr, flush=True))
        except jobs.WorkerGone as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"not waiting for job {run_id} any longer; it stops after its current point (`hft queue` shows "
                  f"it)", file=sys.stderr)
            return 130
        rec = store.get_run(run_id)
        if outcome == "failed":
            print(f"error: job {run_id} failed: {rec.error}", file=sys.stderr)
            return 2 if jobs.user_error(rec.error or "") else 1
        rows = jobs.rows_of(store, run_id)
        _print_rows(rows)
        if kind == "soup" and params.get("save") and outcome == "finished":
            print(f"greedy soup saved to {args.save}")
        if args.out and rows:
            import pandas as pd

            pd.DataFrame(rows).to_csv(args.out, index=False)
            print(f"wrote {args.out}")
        if outcome != "finished":
            print(f"job {run_id} {outcome}" + (f" ({rec.stop_reason})" if rec.stop_reason else "")
                  + f"; run it again with: hft train --resume {run_id}", file=sys.stderr)
            return 130 if rec.stop_reason and "Ctrl-C" in rec.stop_reason else 1
        return 0
    finally:
        store.close()


def job_of(args: argparse.Namespace, store: Any) -> tuple[str, dict[str, Any], str]:
    """The flags of `hft merge` as a job: (kind, parameters, device). Defaults come from the first
    run:<id> source's config; paths are made absolute (a worker has its own working folder); model
    sources and data files are checked here, so a typo is refused before anything is queued."""
    cmd = args.merge_command
    sources = [args.b] if cmd == "wise-ft" else list(args.models) if cmd == "soup" else [args.model]
    cfg, run_device = _first_run_config(sources, store)
    spec = _eval_of(args, cfg)
    if cmd == "wise-ft":
        a = args.a or (cfg.model if cfg else "")
        if not a:
            raise MergeError("--a is needed: the start model (it defaults to the run's model only for --b run:<id>)")
        if args.points < 2:
            raise MergeError(f"--points {args.points}: use at least 2 (the two endpoints)")
        kind, params = "wise_ft", {"a": _model_source(a, store), "b": _model_source(args.b, store),
                                   "points": args.points}
    elif cmd == "soup":
        kind, params = "soup", {"models": [_model_source(m, store) for m in sources], "metric": args.metric}
        if args.save:
            params["save"] = str(Path(args.save).expanduser().absolute())
    else:
        kind, params = "prune", {"model": _model_source(args.model, store), "sparsities": list(args.sparsity),
                                 "scope": args.scope}
    from hft_core.placement import check_device

    device = args.device or run_device or "cpu"
    check_device(device)  # a device this process cannot see is refused now (DeviceError)
    return kind, {**params, "eval": spec}, device


def _first_run_config(sources: Sequence[str], store: Any) -> tuple[Any, str]:
    """The config (and device) of the first run:<id> source: from the store, else from its checkpoint."""
    from hft_core import home
    from hft_core.config import RunConfig

    for s in sources:
        if s.startswith("run:"):
            try:
                rec = store.get_run(s[4:])
                return rec.cfg, rec.device
            except KeyError:
                pass
            path = home.checkpoint_dir(s[4:]) / "run_config.yaml"
            if path.is_file():
                return RunConfig.from_yaml(path.read_text()), ""
            raise MergeError(f"run {s[4:]} has no checkpoint and is not in the store {store.path}: `hft list` "
                             f"shows the runs there (HFT_HOME selects the store)")
    return None, ""


def _eval_of(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """How the job builds its held-out examples (jobs.EVAL_KEYS) from the flags and the run's config."""
    task = args.task or (cfg.task if cfg else "")
    source = args.data or (cfg.data if cfg else "")
    if not task or not source:
        raise MergeError("give --task and --data (they default to a run's own only for run:<id> models)")
    same = cfg is not None and source == cfg.data
    if not source.startswith(("bundled:", "hub:")):
        from hft_core.data import DataError

        path = Path(source).expanduser().absolute()
        if not path.is_file():
            raise DataError(f"data file {source!r} not found ({path}); give the path of a .csv, .jsonl, .json or "
                            f".parquet file, a bundled dataset such as bundled:bbc-news, or hub:<name>")
        source = str(path)
    return {"task": task, "data": source, "n_eval": args.n_eval or (cfg.n_eval if cfg else 200),
            "seed": args.seed if args.seed >= 0 else (cfg.seed if cfg else 0),
            "max_length": args.max_length or (cfg.max_length if cfg else 128),
            "n_train": cfg.n_train if same else 0, "eval_fraction": cfg.eval_fraction if same else 0.2,
            "text_column": cfg.text_column if same else "", "label_column": cfg.label_column if same else ""}


def _model_source(source: str, store: Any) -> str:
    """A model source checked now (ModelError names the problem), a folder as an absolute path.
    A run:<id> still queued or running is not checked: the job waits for it."""
    from hft_core import models

    kind = models._parse(source).kind  # noqa: SLF001 - the syntax check, without loading anything
    if kind == "run":
        try:
            if store.get_run(source[4:].strip()).status in ("queued", "running"):
                return source
        except KeyError:
            pass
    path = models.resolve_path(source)  # reads no weights: a folder's config.json, a run's checkpoint
    return path if kind == "local" else source


def _point_line(kind: str, step: int, values: Mapping[str, float]) -> str:
    """One measured point of a job, for the terminal."""
    head = {"wise_ft": lambda: f"a={values.get('wise_ft/a', step / 100):.2f}",
            "prune": lambda: f"sparsity={values.get('prune/sparsity', step / 100):.2f}"}.get(kind, lambda: f"step {step}")()
    return f"  {head}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()) if k.startswith("eval/"))


def save_state(state: State, like_source: str, task: str, examples: Sequence[dict], folder: str, *, seed: int) -> None:
    from hft_core import models

    num_labels = infer_num_labels([like_source], task, examples)
    model = load_for(like_source, task, num_labels, seed=seed)
    model.load_state_dict(state)
    Path(folder).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    models.load_tokenizer(like_source).save_pretrained(folder)


def _print_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("  ".join(f"{k:>16}" for k in keys))
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(f"{v:>16.4f}" if isinstance(v, float) and math.isfinite(v) else f"{str(v)[-16:]:>16}")
        print("  ".join(cells))
