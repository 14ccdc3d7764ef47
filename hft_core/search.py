"""Hyper-parameter search: Optuna studies whose trials are runs in the store.

A thin layer over Optuna: Optuna samples (grid, random, TPE), prunes (median, Hyperband)
and stores the study (RDB storage in ``$HFT_HOME/studies.sqlite``, beside, not inside,
the run store). This module adds what the lab needs around it:

* a search space in YAML over any config field, strategy fields included, checked
  before anything runs (each problem one line naming the field and the fix);
* every trial is a run in the store: queued in the device's queue like any other run
  (group = the study's name, the sampled values in its config), shown on Live, stopped
  by Stop there or ``hft stop``, resumable like any stopped run;
* the driver loop: ask -> queue the run -> watch its eval metric in the store -> report
  each eval to Optuna -> on pruning, a stop request that ends the run "pruned" (metrics
  and checkpoint kept) -> tell Optuna how the trial ended.

A search file::

    name: lr-and-alpha                  # the study (default: the file's name); also the runs' group
    base: {model: tiny:bert, max_steps: 40, eval_every: 10}   # a RunConfig mapping, or
    # config: run.yaml                  # a config file (plain, or a preset with `variant:`), relative to this file
    space:
      lr: {log_uniform: [1.0e-5, 1.0e-3]}
      mix.blend.alpha: {uniform: [0, 1]}
      mix.l2sp.beta: {choice: [0, 0.01, 0.1]}
      mix.lora.r: {int: [4, 32], step: 4}
    objective: {metric: eval/accuracy, direction: maximize}   # default: by the task, see DEFAULT_OBJECTIVE
    sampler: tpe                        # grid | random | tpe, or {name: tpe, n_startup_trials: 4}
    pruner: median                      # none | median | hyperband, or {name: median, n_startup_trials: 2}
    seed: 0                             # the sampler's seed
    trials: 20                          # how many trials a run of the file adds (--trials overrides)
    parallel: 1                         # trials queued at a time (--parallel overrides)

Continuing: a study is found by name, so running the same file again adds ``trials`` more
trials to it (``optuna.create_study(load_if_exists=True)``); a different space, objective
or base config under the same name is refused. A driver (``hft search``, or the app's
thread) marks the study as its own while it runs; trials that a driver which ended
(killed, app restarted) left RUNNING are settled at the next start: a run that finished
meanwhile counts (COMPLETE), a pruned one is PRUNED, any other is FAIL with its run id,
and its run, if still queued or running, is stopped (resumable).

How a trial ends in Optuna: run finished -> COMPLETE with the metric's last value; run
pruned -> PRUNED; stopped by a user, or with the whole study, failed or interrupted ->
FAIL, with the reason in the trial's user attribute ``reason`` (samplers ignore FAIL trials).

    spec = load_search("search.yaml")
    result = run_search(spec, trials=6)       # trains here, one trial after another
    print(result.best.describe(spec.metric))
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import yaml

from hft_core.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

STUDIES_DB = "studies.sqlite"
KINDS = ("log_uniform", "uniform", "int", "choice")
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
KEYS = {"name", "base", "config", "variant", "space", "objective", "sampler", "pruner", "seed", "trials", "parallel"}
NOT_SEARCHABLE = ("mix", "name", "group", "device")   # the run's identity and placement, not hyper-parameters
DEFAULT_OBJECTIVE = {"classification": ("eval/accuracy", "maximize"), "causal-lm": ("eval/loss", "minimize"),
                     "masked-lm": ("eval/loss", "minimize")}
EVAL_METRICS = {"classification": ("eval/accuracy", "eval/macro_f1", "eval/loss", "eval/roc_auc"),
                "causal-lm": ("eval/loss", "eval/perplexity"),
                "masked-lm": ("eval/loss", "eval/perplexity", "eval/accuracy")}
TYPE_WORDS = {"float": ("a number", "numbers"), "int": ("a whole number", "whole numbers"),
              "str": ("a string", "strings"), "bool": ("true or false", "true/false values")}
MINIMIZE = ("loss", "perplexity")   # metrics where lower is better (the default direction for them)
POLL_S = 0.5          # how often the driver reads the trials' new metrics and states from the store
BEAT_S = 10.0         # how often a driver renews its mark on the study
DRIVER_STALE_S = 60.0  # a driver on another host whose mark is older than this is taken as gone
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
DONE = ("finished", "stopped", "pruned", "failed", "interrupted")


class SearchError(ConfigError):
    """A search file, space, sampler or pruner is wrong; the one-line message names the field and the fix."""


class StudyBusy(SearchError):
    """Another live driver runs this study."""


# ---- the search space ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    """One searched field: ``kind`` log_uniform/uniform (floats), int (with ``step``) or choice."""

    field: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: int = 1
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value Optuna's sampler picks for this trial."""
        if self.kind == "log_uniform":
            return trial.suggest_float(self.field, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.field, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(self.field, self.low, self.high, step=self.step)
        return trial.suggest_categorical(self.field, list(self.choices))

    def grid_values(self) -> list[Any] | None:
        """The values a grid visits, or None for a continuous range (a grid cannot enumerate it)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, self.step))
        return None

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"field": self.field, "choice": list(self.choices)}
        d: dict[str, Any] = {"field": self.field, self.kind: [self.low, self.high]}
        if self.kind == "int" and self.step != 1:
            d["step"] = self.step
        return d

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.field} in {list(self.choices)}"
        step = f" step {self.step}" if self.kind == "int" and self.step != 1 else ""
        return f"{self.field} {self.kind} [{self.low:g}, {self.high:g}]{step}"


@dataclass(frozen=True)
class SearchSpec:
    """A validated search: base config, space, objective, sampler, pruner. Build it with ``parse_search``."""

    name: str
    base: RunConfig
    space: tuple[Dimension, ...]
    metric: str
    direction: str
    sampler: str = "tpe"
    sampler_args: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    trials: int = 10
    parallel: int = 1
    path: str = ""

    def config_for(self, params: Mapping[str, Any], *, name: str = "") -> RunConfig:
        """The base config with a trial's values set; the run's group is the study's name."""
        return self.base.with_overrides({**params, "group": self.name, "name": name or self.base.name})

    def fingerprint(self) -> dict[str, Any]:
        """What must stay the same for a study to be continued: space, objective, base config."""
        base = self.base.to_dict()
        for k in ("name", "group"):
            base.pop(k, None)
        return {"space": [d.to_dict() for d in self.space], "metric": self.metric, "direction": self.direction,
                "base": base}

    def grid(self) -> dict[str, list[Any]]:
        return {d.field: d.grid_values() or [] for d in self.space}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


def field_types() -> dict[str, str]:
    """Every searchable field (dotted) -> its type name ("float", "int", "str", "bool" or "any")."""
    from hft_core.strategies import base as registry

    out = {f.name: _type_name(f) for f in fields(RunConfig) if f.name not in NOT_SEARCHABLE}
    for spec in registry.all_specs():
        for f in fields(spec.config_cls):
            out[f"mix.{spec.name}.{f.name}"] = _type_name(f)
    return out


def _type_name(f: Any) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return t if t in ("float", "int", "str", "bool") else "any"


def parse_space(space: Any, base: RunConfig, where: str = "search space") -> tuple[Dimension, ...]:
    """Check every entry of ``space`` against the config's fields and types (a SearchError on the first problem)."""
    if not isinstance(space, Mapping) or not space:
        raise SearchError(f"{where}: 'space' must be a mapping of field: range with at least one field, e.g. "
                          f"space: {{lr: {{log_uniform: [1.0e-5, 1.0e-3]}}}}")
    types = field_types()
    dims = []
    for key, entry in space.items():
        dims.append(_parse_dimension(str(key), entry, types, base, where))
    return tuple(dims)


def _parse_dimension(key: str, entry: Any, types: Mapping[str, str], base: RunConfig, where: str) -> Dimension:
    at = f"{where}: {key}"
    if key not in types:
        raise SearchError(f"{at}: unknown field{_suggest(key, types)}; searchable fields are the config's "
                          f"({', '.join(k for k in types if '.' not in k)}) and mix.<strategy>.<field>")
    kind_of_field = types[key]
    example = {"float": "{log_uniform: [1.0e-5, 1.0e-3]} or {uniform: [0, 1]}", "int": "{int: [4, 32]}",
               "str": "{choice: ['a', 'b']}", "bool": "{choice: [true, false]}"}.get(kind_of_field, "{choice: [...]}")
    if not isinstance(entry, Mapping):
        raise SearchError(f"{at}: give a range as a mapping, e.g. {key}: {example}; got {entry!r}")
    kinds = [k for k in entry if k in KINDS]
    extra = [k for k in entry if k not in KINDS and k != "step"]
    if len(kinds) != 1 or extra:
        raise SearchError(f"{at}: use exactly one of {list(KINDS)} (plus 'step' for int), e.g. {key}: {example}; "
                          f"got {dict(entry)!r}")
    kind = kinds[0]
    if "step" in entry and kind != "int":
        raise SearchError(f"{at}: 'step' goes with an int range only; remove it or use {{int: [lo, hi], step: k}}")
    value = entry[kind]
    if kind == "choice":
        dim = Dimension(key, kind, choices=_parse_choices(at, value, kind_of_field))
        checks = [(v, "a choice") for v in dim.choices]
    else:
        if kind_of_field in ("str", "bool", "any"):
            raise SearchError(f"{at}: a {kind_of_field} field takes a choice list, not a {kind} range; e.g. "
                              f"{key}: {example}")
        if kind in ("log_uniform", "uniform") and kind_of_field != "float":
            raise SearchError(f"{at}: {key} is a whole-number field; use {{int: [lo, hi]}} instead of {kind}")
        if kind == "int" and kind_of_field != "int":
            raise SearchError(f"{at}: {key} is a float field; use {{uniform: [lo, hi]}} or {{log_uniform: [lo, hi]}} "
                              f"instead of int")
        low, high = _parse_range(at, value, kind)
        step = entry.get("step", 1)
        if kind == "int":
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:
                raise SearchError(f"{at}: step={step!r}: use a whole number of at least 1")
            if (high - low) % step:
                raise SearchError(f"{at}: the range [{low}, {high}] is not a whole number of steps of {step}; "
                                  f"make high - low a multiple of step")
        dim = Dimension(key, kind, low, high, step=step)
        checks = [(low, "the range's low end"), (high, "the range's high end")]
    for v, which in checks:  # the config's own validation: alpha in [0, 1], lr in (0, 1), combinations ...
        try:
            base.with_overrides({key: v})
        except ConfigError as e:
            raise SearchError(f"{at}: {v!r} ({which}) is not a valid value: {e}") from None
    return dim


def _parse_range(at: str, value: Any, kind: str) -> tuple[Any, Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise SearchError(f"{at}: a {kind} range is [low, high], e.g. [1.0e-5, 1.0e-3]; got {value!r}")
    lo, hi = (_number(at, v, whole=kind == "int") for v in value)
    if not lo < hi:
        raise SearchError(f"{at}: the range [{lo:g}, {hi:g}] is empty or inverted; give [low, high] with low < high")
    if kind == "log_uniform" and lo <= 0:
        raise SearchError(f"{at}: a log_uniform range needs low > 0, got [{lo:g}, {hi:g}]; start at a small positive "
                          f"number (e.g. 1.0e-5), or use uniform")
    return lo, hi


def _number(at: str, v: Any, whole: bool) -> float | int:
    if isinstance(v, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SearchError(f"{at}: {v!r} is not a number; give numbers, e.g. [1.0e-5, 1.0e-3]")
    if whole:
        if isinstance(v, float) and not v.is_integer():
            raise SearchError(f"{at}: an int range takes whole numbers, got {v!r}")
        return int(v)
    return float(v)


def _parse_choices(at: str, value: Any, kind_of_field: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not value:
        raise SearchError(f"{at}: a choice is a non-empty list of values, e.g. [0, 0.01, 0.1]; got {value!r}")
    out = []
    for v in value:
        if kind_of_field == "float" and isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        ok = {"float": isinstance(v, (int, float)) and not isinstance(v, bool),
              "int": isinstance(v, int) and not isinstance(v, bool),
              "str": isinstance(v, str), "bool": isinstance(v, bool)}.get(kind_of_field,
                                                                         isinstance(v, (int, float, str, bool)))
        if not ok:
            one, many = TYPE_WORDS.get(kind_of_field, ("a plain value", "plain values"))
            raise SearchError(f"{at}: the choice {v!r} is not {one}; give a list of {many} for this field")
        out.append(v)
    if len(set(map(repr, out))) != len(out):
        raise SearchError(f"{at}: the choice list {list(value)!r} repeats a value; give each value once")
    return tuple(out)


def _suggest(key: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---- the whole search file ---------------------------------------------------------------------------

def load_search(path: str | Path, *, name: str | None = None, **overrides: Any) -> SearchSpec:
    """Read and check a search file. ``name`` (the study's) and ``overrides`` (sampler, pruner,
    trials, parallel, seed: the CLI's options) replace the file's values when not None."""
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise SearchError(f"cannot read the search file {str(path)!r}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise SearchError(f"the search file {p.name} is not valid YAML: {str(e).splitlines()[0]}") from None
    return parse_search(d, name=p.stem, study_name=name, base_dir=p.parent, where=p.name, path=str(p), **overrides)


def parse_search(d: Any, *, name: str = "", study_name: str | None = None, base_dir: str | Path = ".",
                 where: str = "search", path: str = "", **overrides: Any) -> SearchSpec:
    """A SearchSpec from a mapping (a loaded search file); every problem is one SearchError line.

    ``name``: the study's name when the mapping has none; ``study_name`` replaces the mapping's.
    ``overrides`` (None values ignored) replace the file's keys: sampler, pruner, trials,
    parallel, seed; ``base`` (a RunConfig) replaces the file's base (the app's form).
    """
    if not isinstance(d, Mapping):
        raise SearchError(f"{where}: a search file is a mapping with keys {sorted(KEYS)}, got {type(d).__name__}")
    unknown = set(d) - KEYS
    if unknown:
        raise SearchError(f"{where}: unknown key(s) {sorted(unknown)}{_suggest(sorted(unknown)[0], sorted(KEYS))}; "
                          f"a search file has {sorted(KEYS)}")
    d = {**d, **{k: v for k, v in overrides.items() if v is not None}}
    base = _base_config(d, Path(base_dir), where)
    study = str(study_name or d.get("name") or name or "")
    if not NAME_RE.fullmatch(study):
        raise SearchError(f"{where}: study name {study!r}: use letters, digits, '.', '_' or '-' (it is also the "
                          f"runs' group), e.g. name: lr-search")
    space = parse_space(d.get("space"), base, where)
    metric, direction = _objective(d.get("objective"), base, where)
    sampler, sampler_args = _named(d.get("sampler", "tpe"), SAMPLERS, "sampler", where)
    pruner, pruner_args = _named(d.get("pruner", "none"), PRUNERS, "pruner", where)
    seed, trials, parallel = (_whole(d, k, default, low, where) for k, default, low in
                              (("seed", 0, 0), ("trials", 10, 1), ("parallel", 1, 1)))
    spec = SearchSpec(study, base, space, metric, direction, sampler, sampler_args, pruner, pruner_args, seed, trials,
                      parallel, path)
    if sampler == "grid":
        continuous = [dim for dim in space if dim.grid_values() is None]
        if continuous:
            dim = continuous[0]
            raise SearchError(f"{where}: sampler grid cannot enumerate the continuous range of {dim.field} "
                              f"({dim.kind}); give {dim.field}: {{choice: [...]}} (or an int range), or use "
                              f"--sampler tpe / random")
    if pruner != "none" and (base.eval_every == 0 or base.eval_every >= base.max_steps):
        raise SearchError(f"{where}: pruner {pruner} compares trials at their evaluations during training, but the "
                          f"base config evaluates only at the end (eval_every={base.eval_every}, max_steps="
                          f"{base.max_steps}); set eval_every below max_steps (e.g. {max(1, base.max_steps // 4)}), "
                          f"or use --pruner none")
    make_sampler(spec)  # unknown options fail here, before anything runs
    make_pruner(spec)
    return spec


def _base_config(d: Mapping[str, Any], base_dir: Path, where: str) -> RunConfig:
    given = d.get("base")
    if isinstance(given, RunConfig):
        return given
    if given is not None and d.get("config"):
        raise SearchError(f"{where}: give either 'base' (a config mapping) or 'config' (a config file), not both")
    if d.get("config"):
        from hft_core.presets import load_run_config

        path = Path(str(d["config"]))
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise SearchError(f"{where}: config: {str(d['config'])!r} not found (looked for {path}); give a path "
                              f"relative to the search file")
        try:
            return load_run_config(path, str(d.get("variant") or ""))
        except ConfigError as e:
            raise SearchError(f"{where}: config {path.name}: {e}") from None
    if given is None:
        raise SearchError(f"{where}: no base config; add base: {{model: tiny:bert, ...}} or config: run.yaml")
    if not isinstance(given, Mapping):
        raise SearchError(f"{where}: base must be a mapping of config fields, got {type(given).__name__}")
    try:
        return RunConfig.from_dict(given)
    except ConfigError as e:
        raise SearchError(f"{where}: base: {e}") from None


def _objective(obj: Any, base: RunConfig, where: str) -> tuple[str, str]:
    default_metric, default_direction = DEFAULT_OBJECTIVE.get(base.task, ("eval/loss", "minimize"))
    if obj is None:
        return default_metric, default_direction
    if isinstance(obj, str):
        obj = {"metric": obj}
    if not isinstance(obj, Mapping) or set(obj) - {"metric", "direction"}:
        raise SearchError(f"{where}: objective is {{metric: eval/accuracy, direction: maximize}}, got {obj!r}")
    metric = str(obj.get("metric") or default_metric)
    known = EVAL_METRICS.get(base.task, ())
    if known and metric not in known:
        raise SearchError(f"{where}: objective.metric {metric!r} is not logged by {base.task} runs"
                          f"{_suggest(metric, known)}; use one of {list(known)}")
    direction = obj.get("direction")
    if direction is None:
        direction = "minimize" if any(w in metric for w in MINIMIZE) else "maximize"
    direction = {"max": "maximize", "min": "minimize", "maximise": "maximize", "minimise": "minimize"}.get(
        str(direction), str(direction))
    if direction not in ("maximize", "minimize"):
        raise SearchError(f"{where}: objective.direction {obj.get('direction')!r}: use maximize or minimize")
    return metric, direction


def _named(value: Any, names: Sequence[str], what: str, where: str) -> tuple[str, dict[str, Any]]:
    """'tpe' or {name: tpe, n_startup_trials: 4} -> ("tpe", {"n_startup_trials": 4})."""
    if isinstance(value, Mapping):
        args = dict(value)
        name = str(args.pop("name", ""))
    else:
        name, args = str(value if value is not None else "none"), {}
    name = name.lower()
    if name not in names:
        raise SearchError(f"{where}: unknown {what} {name!r}{_suggest(name, names)}; use one of {list(names)}")
    return name, args


def _whole(d: Mapping[str, Any], key: str, default: int, low: int, where: str) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SearchError(f"{where}: {key}={v!r}: use a whole number of at least {low}")
    return v


# ---- Optuna: samplers, pruners, the study's storage -----------------------------------------------

def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created" etc.: the lab prints its own lines
    return optuna


def make_sampler(spec: SearchSpec) -> Any:
    """Optuna's sampler for the spec, seeded; the spec's options go to its constructor."""
    optuna = _optuna()
    if spec.sampler == "grid":
        return _construct(_grid_sampler_class(), "sampler grid", spec.sampler_args, search_space=spec.grid(),
                          seed=spec.seed)
    cls = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}[spec.sampler]
    return _construct(cls, f"sampler {spec.sampler}", spec.sampler_args, seed=spec.seed)


def _grid_sampler_class() -> type:
    """Optuna's GridSampler, minus its ``after_trial``: that calls ``study.stop()``, which works only
    inside ``study.optimize``, not with ask and tell; the driver caps the trials at the grid's size."""
    optuna = _optuna()

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return GridSampler


def make_pruner(spec: SearchSpec) -> Any:
    """Optuna's pruner. Hyperband's resource is the training step: by default from the first eval to max_steps."""
    optuna = _optuna()
    if spec.pruner == "none":
        return _construct(optuna.pruners.NopPruner, "pruner none", spec.pruner_args)
    if spec.pruner == "median":
        return _construct(optuna.pruners.MedianPruner, "pruner median", spec.pruner_args)
    defaults = {"min_resource": max(1, spec.base.eval_every), "max_resource": spec.base.max_steps}
    return _construct(optuna.pruners.HyperbandPruner, "pruner hyperband", {**defaults, **spec.pruner_args})


def _construct(cls: type, what: str, args: Mapping[str, Any], **fixed: Any) -> Any:
    import inspect

    accepted = [p for p in inspect.signature(cls).parameters if p not in fixed and p != "self"]
    wrong = [k for k in args if k not in accepted]
    if wrong:
        raise SearchError(f"{what}: unknown option(s) {wrong}; Optuna's {cls.__name__} takes {accepted}")
    try:
        return cls(**fixed, **args)
    except (TypeError, ValueError) as e:
        raise SearchError(f"{what}: {dict(args)!r}: {e}") from None


def storage_url(home: str | Path | None = None) -> str:
    """The Optuna RDB storage of the studies: ``$HFT_HOME/studies.sqlite`` (the run store is runs.sqlite)."""
    from hft_core.home import hft_home

    path = (Path(home).expanduser() if home is not None else hft_home()) / STUDIES_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(home: str | Path | None = None) -> Any:
    """Optuna's RDBStorage over ``studies.sqlite``; waits for a busy file instead of failing."""
    optuna = _optuna()
    return optuna.storages.RDBStorage(storage_url(home), engine_kwargs={"connect_args": {"timeout": 30}})


def study_names(home: str | Path | None = None, storage: Any = None) -> list[str]:
    """The studies in ``studies.sqlite`` ([] when there is none yet), newest first."""
    from hft_core.home import hft_home

    if storage is None:
        if not ((Path(home) if home is not None else hft_home()) / STUDIES_DB).exists():
            return []
        storage = open_storage(home)
    return list(reversed(_optuna().get_all_study_names(storage)))  # in creation order: newest first


def load_study(name: str, home: str | Path | None = None, storage: Any = None) -> Any:
    """An existing study by name (SearchError naming the studies there when it does not exist)."""
    optuna = _optuna()
    storage = storage if storage is not None else open_storage(home)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise SearchError(f"no study {name!r} in {storage_url(home)}; studies: "
                          f"{study_names(storage=storage) or 'none yet'}") from None


def _open_study(spec: SearchSpec, storage: Any) -> Any:
    """Create the study, or load it to continue; refuses a different space/objective/base under the same name."""
    optuna = _optuna()
    study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                sampler=make_sampler(spec), pruner=make_pruner(spec), load_if_exists=True)
    mine = spec.fingerprint()
    theirs = study.user_attrs.get("hft_search")
    if theirs is None:
        study.set_user_attr("hft_search", json.loads(json.dumps(mine)))
        return study
    theirs = dict(theirs)
    mine = json.loads(json.dumps(mine))  # the same JSON round trip as what is stored
    for key, what in (("space", "search space"), ("metric", "objective metric"), ("direction", "direction")):
        if theirs.get(key) != mine[key]:
            raise SearchError(f"study {spec.name!r} already exists with another {what} ({_short(theirs.get(key))} vs "
                              f"{_short(mine[key])} now); continue it with the same {what}, or give a new --name")
    if theirs.get("base") != mine["base"]:
        differ = sorted(k for k in set(theirs.get("base", {})) | set(mine["base"])
                        if theirs.get("base", {}).get(k) != mine["base"].get(k))
        raise SearchError(f"study {spec.name!r} already exists with another base config (fields {differ} differ); "
                          f"continue it with the same base, or give a new --name")
    return study


def _short(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 80 else s[:77] + "..."


# ---- who trains the trials' runs -------------------------------------------------------------------

class Launcher(Protocol):
    """Queues one trial's run; something (a worker of this process, the app's, Ray) trains it."""

    def submit(self, cfg: RunConfig, *, group: str, name: str) -> str: ...
    def close(self, *, stop_running: bool = False) -> None: ...


class LocalLauncher:
    """`hft search` and notebooks: the trials are reserved for a foreground worker of this process,
    which trains them in ``slots`` background threads, each in its turn on the device's queue.

    How many train at once is the device's limit (``HFT_RUNS_PER_DEVICE``, 1 by default), as for
    every run: ``--parallel 2`` on a 1-run device keeps two trials queued, one trains.
    """

    def __init__(self, store: Any, device: str, *, slots: int = 1, train_fn: Callable[..., Any] | None = None) -> None:
        from hft_core.runs import Worker

        self.worker = Worker(store, device, train_fn=train_fn, role="foreground", slots=slots).start()

    def submit(self, cfg: RunConfig, *, group: str, name: str) -> str:
        run_id = self.worker.reserve(cfg, group=group, name=name)
        self.worker.wake()
        return run_id

    def close(self, *, stop_running: bool = False) -> None:
        self.worker.close(stop_running=stop_running, wait=True)


class ManagerLauncher:
    """The app: trials are plain queued runs of its RunManager, trained by its worker threads."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def submit(self, cfg: RunConfig, *, group: str, name: str) -> str:
        return self.manager.submit(cfg, group=group, name=name)

    def close(self, *, stop_running: bool = False) -> None:
        pass  # the app's workers live on


def make_launcher(backend: str, store: Any, spec: SearchSpec, parallel: int, address: str | None = None,
                  train_fn: Callable[..., Any] | None = None) -> Any:
    """"local": this process's foreground worker; "ray": each trial a Ray task (hft_core.ray_backend)."""
    if backend == "local":
        if address:
            raise SearchError(f"--address {address} goes with --backend ray; add --backend ray, or drop --address")
        from hft_core.placement import resolve_device

        return LocalLauncher(store, resolve_device(spec.base.device), slots=parallel, train_fn=train_fn)
    if backend == "ray":
        from hft_core.ray_backend import RayLauncher

        return RayLauncher(store, spec.base.device, address=address, slots=parallel)
    raise SearchError(f"unknown backend {backend!r}; use 'local' (this machine) or 'ray' (a Ray cluster)")


# ---- results ----------------------------------------------------------------------------------------

@dataclass
class TrialInfo:
    """One trial as the lab shows it: Optuna's state and value, its run's id, status and trained steps."""

    number: int
    state: str                 # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    value: float | None
    params: dict[str, Any]
    run_id: str = ""
    status: str = ""           # the run's status in the store
    steps: int = 0             # optimizer steps the run trained (its last "loss" step)
    reason: str = ""           # why it was pruned or failed

    def describe(self, metric: str) -> str:
        value = f"{metric}={self.value:.4g}" if self.value is not None else f"{metric}=-"
        state = self.state.lower()
        if self.state == "COMPLETE":
            state = "finished"
        where = f" at step {self.steps}" if self.steps else ""
        params = ", ".join(f"{k.split('.')[-1] if k.startswith('mix.') else k}={_fmt(v)}"
                           for k, v in self.params.items())
        why = f" ({self.reason})" if self.reason and self.state == "FAIL" else ""
        return f"trial {self.number} {state}{where} (run {self.run_id or '-'}): {value} | {params}{why}"


@dataclass
class SearchResult:
    name: str
    metric: str
    direction: str
    trials: list[TrialInfo]            # every trial of the study, in order
    new: list[int] = field(default_factory=list)       # numbers of the trials this call ran
    notes: list[str] = field(default_factory=list)     # what was settled at start (trials of an ended driver)
    stopped: bool = False              # the study was stopped before all trials ran

    @property
    def best(self) -> TrialInfo | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: (t.value, -t.number) if self.direction == "maximize" else (t.value, t.number))

    def counts(self, numbers: Sequence[int] | None = None) -> dict[str, int]:
        chosen = [t for t in self.trials if numbers is None or t.number in numbers]
        out = {s: 0 for s in ("COMPLETE", "PRUNED", "FAIL")}
        for t in chosen:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def steps_trained(self, numbers: Sequence[int] | None = None) -> int:
        return sum(t.steps for t in self.trials if numbers is None or t.number in numbers)


def summarize(study: Any, store: Any) -> SearchResult:
    """The study's trials joined with their runs in the store."""
    infos = []
    for t in study.get_trials(deepcopy=False):
        run_id = str(t.user_attrs.get("run_id", ""))
        status, steps = "", 0
        if run_id:
            try:
                status = store.get_run(run_id).status
                steps = _steps_trained(store, run_id)
            except KeyError:
                status = "deleted"
        value = t.value if t.state.name in ("COMPLETE", "PRUNED") else None
        infos.append(TrialInfo(t.number, t.state.name, value, dict(t.params), run_id, status, steps,
                               str(t.user_attrs.get("reason", ""))))
    direction = "maximize" if study.direction.name == "MAXIMIZE" else "minimize"
    metric = str(dict(study.user_attrs.get("hft_search") or {}).get("metric", ""))
    return SearchResult(study.study_name, metric, direction, infos)


def _steps_trained(store: Any, run_id: str) -> int:
    df = store.metrics(run_id, names=["loss"])
    return int(df["step"].max()) if not df.empty else 0


def study_result(name: str, *, store: Any = None, home: str | Path | None = None) -> SearchResult:
    """A study's trials as they stand (for the app's study view and `hft search --show`)."""
    from hft_core.store import RunStore

    own = store is None
    store = store if store is not None else RunStore(home)
    try:
        return summarize(load_study(name, home=store.home), store)
    finally:
        if own:
            store.close()


# ---- the driver: ask -> queue -> watch -> report/prune -> tell ----------------------------------------

@dataclass
class _Live:
    trial: Any
    run_id: str
    params: dict[str, Any]
    last_step: int = -1
    last_value: float | None = None
    prune_asked: str = ""


def _pid_start(pid: int) -> str | None:
    from hft_core.control import process_start as _process_start

    return _process_start(pid)


def _driver_alive(mark: Mapping[str, Any] | None) -> bool:
    """Is the driver that left this mark still running? Another host: only its beat can tell."""
    from hft_core.control import pid_alive as _pid_alive

    if not mark:
        return False
    if mark.get("host") != socket.gethostname():
        return time.time() - float(mark.get("beat", 0)) < DRIVER_STALE_S
    if mark.get("pid") == os.getpid():  # this process (the app): is that driver thread still there?
        return any(t.ident == mark.get("thread") for t in threading.enumerate())
    return _pid_alive(int(mark["pid"]), mark.get("start"))


class _Driver:
    def __init__(self, spec: SearchSpec, study: Any, store: Any, launcher: Any, *, parallel: int,
                 stop: threading.Event, on_trial: Callable[[TrialInfo], None] | None) -> None:
        self.spec, self.study, self.store, self.launcher = spec, study, store, launcher
        self.parallel = parallel
        self.stop = stop
        self.on_trial = on_trial or (lambda info: None)
        self.live: dict[str, _Live] = {}
        self.stopping = False
        self.new: list[int] = []
        self._optuna = _optuna()
        self._beat = 0.0
        self._checked_flags = 0.0
        self._swept = 0.0
        self.claimed = False

    # the mark that says "this process drives the study"
    def claim(self) -> None:
        mark = self.study.user_attrs.get("hft_driver")
        if _driver_alive(mark) and not (mark.get("pid") == os.getpid() and mark.get("thread") == threading.get_ident()):
            where = f"pid {mark.get('pid')} on {mark.get('host')}"
            raise StudyBusy(f"study {self.spec.name!r} is being run by {where}; stop it first (`hft search --stop "
                            f"{self.spec.name}` or Ctrl-C there), or give another --name")
        self.study.set_user_attr("hft_stop", None)
        self._mark()
        self.claimed = True

    def _mark(self) -> None:
        pid = os.getpid()
        self.study.set_user_attr("hft_driver", {"pid": pid, "host": socket.gethostname(), "start": _pid_start(pid),
                                                "thread": threading.get_ident(), "beat": time.time()})
        self._beat = time.monotonic()

    def release(self) -> None:
        if not self.claimed:  # refused (another driver runs it): its mark is not ours to clear
            return
        try:
            self.study.set_user_attr("hft_driver", None)
        except Exception:  # noqa: BLE001 - the storage may be gone at exit; the mark's pid check covers it
            log.debug("could not release the study's driver mark", exc_info=True)

    # trials an ended driver left RUNNING
    def settle_orphans(self) -> list[str]:
        notes = []
        TrialState = self._optuna.trial.TrialState
        self.store.mark_interrupted()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run_id = str(t.user_attrs.get("run_id", ""))
            rec = None
            if run_id:
                try:
                    rec = self.store.get_run(run_id)
                except KeyError:
                    rec = None
            if rec is not None and rec.status == "finished":
                value = self._final_value(run_id)
                if value is not None:
                    self.study.tell(t.number, value)
                    notes.append(f"trial {t.number} (run {run_id}) finished after its driver ended: counted")
                    continue
            if rec is not None and rec.status == "pruned":
                self.study.tell(t.number, state=TrialState.PRUNED)
                notes.append(f"trial {t.number} (run {run_id}) was pruned: marked PRUNED")
                continue
            status = rec.status if rec is not None else ("deleted" if run_id else "not queued yet")
            if rec is not None and rec.status in ("queued", "running"):
                try:
                    self.store.request_stop(run_id, f"its study {self.spec.name!r} was restarted without it")
                    status += ", now stopped (resumable)"
                except Exception:  # noqa: BLE001 - it ended or its process is gone meanwhile
                    pass
            reason = f"its driver ended while its run {run_id or '-'} was {status}"
            self._optuna.trial.Trial(self.study, t._trial_id).set_user_attr("reason", reason)
            self.study.tell(t.number, state=TrialState.FAIL)
            notes.append(f"trial {t.number} left running by an ended driver: marked FAIL ({reason})")
        return notes

    def run(self, n_new: int) -> None:
        asked = 0
        while True:
            self._check_stop()
            while not self.stopping and asked < n_new and len(self.live) < self.parallel:
                self._ask()
                asked += 1
            if not self.live:
                return
            for run_id in list(self.live):
                self._watch(self.live[run_id])
            if time.monotonic() - self._beat >= BEAT_S:
                self._mark()
            if self.stopping:
                time.sleep(POLL_S)  # the stop event stays set: waiting on it would not wait at all
            else:
                self.stop.wait(POLL_S)  # a stop wakes the loop at once

    def _check_stop(self) -> None:
        if not self.stopping and time.monotonic() - self._checked_flags >= 1.0:
            self._checked_flags = time.monotonic()
            if self.study.user_attrs.get("hft_stop"):
                self.stop.set()
        if self.stop.is_set() and not self.stopping:
            self.stopping = True
            for live in self.live.values():
                try:
                    self.store.request_stop(live.run_id, f"the study {self.spec.name!r} was stopped")
                except Exception:  # noqa: BLE001 - ended meanwhile: its state is read below
                    pass

    def _ask(self) -> None:
        trial = self.study.ask()
        self.new.append(trial.number)
        try:
            params = {d.field: d.suggest(trial) for d in self.spec.space}
            name = f"trial {trial.number} " + " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in params.items())
            cfg = self.spec.config_for(params, name=name[:80])
        except ConfigError as e:  # a combination the config refuses: a failed trial, not a failed study
            trial.set_user_attr("reason", f"invalid config: {e}")
            frozen = self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            self.on_trial(TrialInfo(frozen.number, "FAIL", None, dict(frozen.params), reason=f"invalid config: {e}"))
            return
        run_id = self.launcher.submit(cfg, group=self.spec.name, name=cfg.name)
        trial.set_user_attr("run_id", run_id)
        self.store.log_event(run_id, f"trial {trial.number} of study {self.spec.name!r}: "
                             + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
        self.live[run_id] = _Live(trial, run_id, params)

    def _report(self, live: _Live) -> None:
        df = self.store.metrics(live.run_id, names=[self.spec.metric], since_step=live.last_step + 1)
        for step, value in zip(df["step"], df["value"]):
            step, value = int(step), float(value)
            if math.isnan(value):
                continue
            live.trial.report(value, step)
            live.last_step, live.last_value = step, value

    def _watch(self, live: _Live) -> None:
        rec = self.store.get_run(live.run_id)
        if rec.status == "running" and time.monotonic() - self._swept > 5.0:
            self._swept = time.monotonic()
            self.store.mark_interrupted()  # a worker that died must not leave the study waiting forever
            rec = self.store.get_run(live.run_id)
        before = live.last_step
        self._report(live)
        if (rec.status == "running" and live.last_step > before and not live.prune_asked and not self.stopping
                and self.spec.pruner != "none" and live.trial.should_prune()):
            why = (f"pruned by the {self.spec.pruner} pruner at step {live.last_step} "
                   f"({self.spec.metric}={live.last_value:.4g})")
            try:
                self.store.request_stop(live.run_id, why, status="pruned")
                live.prune_asked = why
            except Exception:  # noqa: BLE001 - it finished meanwhile: it counts as complete
                pass
        if rec.status in DONE:
            self._tell(live, rec)

    def _tell(self, live: _Live, rec: Any) -> None:
        TrialState = self._optuna.trial.TrialState
        self.store.flush()
        self._report(live)  # the last eval may have landed with the final status
        reason = ""
        value = None
        if rec.status == "finished":
            value = self._final_value(live.run_id)
            state = TrialState.COMPLETE if value is not None else TrialState.FAIL
            if value is None:
                reason = f"the run finished without logging {self.spec.metric}"
        elif rec.status == "pruned":
            state, reason = TrialState.PRUNED, live.prune_asked or (rec.stop_reason or "pruned")
        elif rec.status == "stopped":
            state = TrialState.FAIL
            who = "with the study" if self.stopping else "by a user"
            when = "before it trained" if live.last_step < 0 and _steps_trained(self.store, live.run_id) == 0 else \
                "while training"
            if rec.stop_reason and not self.stopping:
                when += f" ({rec.stop_reason})"
            reason = f"stopped {who} {when}"
        else:
            state = TrialState.FAIL
            reason = f"the run {rec.status}" + (f": {rec.error}" if rec.error else "")
        if reason:
            live.trial.set_user_attr("reason", reason[:500])
        live.trial.set_user_attr("status", rec.status)
        frozen = self.study.tell(live.trial, value if state == TrialState.COMPLETE else None, state=state)
        del self.live[live.run_id]
        shown = frozen.value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None
        self.on_trial(TrialInfo(frozen.number, state.name, shown, dict(live.params), live.run_id, rec.status,
                                _steps_trained(self.store, live.run_id), reason))

    def _final_value(self, run_id: str) -> float | None:
        df = self.store.metrics(run_id, names=[self.spec.metric])
        df = df[df["value"].notna()]
        return float(df.sort_values("step")["value"].iloc[-1]) if not df.empty else None

    def abandon(self) -> None:
        """The driver ends with trials still running (a second Ctrl-C, an error): FAIL them now."""
        TrialState = self._optuna.trial.TrialState
        for live in list(self.live.values()):
            try:
                live.trial.set_user_attr("reason", f"its driver ended while the run {live.run_id} was training")
                self.study.tell(live.trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001
                log.debug("could not fail trial %s", live.trial.number, exc_info=True)
        self.live.clear()


def run_search(spec: SearchSpec, *, trials: int | None = None, parallel: int | None = None, store: Any = None,
               launcher: Any = None, backend: str = "local", address: str | None = None,
               train_fn: Callable[..., Any] | None = None, stop: threading.Event | None = None,
               on_trial: Callable[[TrialInfo], None] | None = None,
               on_start: Callable[[SearchResult], None] | None = None) -> SearchResult:
    """Run ``trials`` more trials of the study (create it, or continue it), ``parallel`` queued at a time.

    Blocks until they have all ended (or ``stop`` is set: the running trials stop with a
    checkpoint and count as FAIL). ``launcher``: who trains the runs (default: ``backend``,
    "local" = a foreground worker of this process, "ray" = Ray tasks). ``on_trial`` is called
    as each trial ends; ``on_start`` once the study is open (with the settled orphans' notes).
    """
    from hft_core.store import RunStore

    trials = trials if trials is not None else spec.trials
    parallel = parallel if parallel is not None else spec.parallel
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SearchError(f"trials={trials!r}: use a whole number of at least 1")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise SearchError(f"parallel={parallel!r}: use a whole number of at least 1")
    own_store = store is None
    store = store if store is not None else RunStore()
    stop = stop or threading.Event()
    driver = None
    own_launcher = launcher is None
    try:
        study = _open_study(spec, open_storage(store.home))
        driver = _Driver(spec, study, store, None, parallel=parallel, stop=stop, on_trial=on_trial)
        driver.claim()
        notes = driver.settle_orphans()
        if spec.sampler == "grid":
            tried = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED",
                                                                                       "RUNNING"))
            left = max(0, spec.grid_size() - tried)
            if trials > left:
                notes.append(f"the grid has {spec.grid_size()} points and {tried} were tried: running {left} "
                             f"trial(s), not {trials}")
                trials = left
        if on_start is not None:
            on_start(SearchResult(spec.name, spec.metric, spec.direction, [], notes=notes))
        if trials and not stop.is_set():
            driver.launcher = launcher if launcher is not None else make_launcher(backend, store, spec, parallel,
                                                                                  address, train_fn)
            driver.run(trials)
        result = summarize(study, store)
        result.metric, result.new, result.notes, result.stopped = spec.metric, driver.new, notes, driver.stopping
        return result
    finally:
        if driver is not None:
            if driver.launcher is not None and own_launcher:
                driver.launcher.close(stop_running=bool(driver.live))
            if driver.live:
                driver.abandon()
            driver.release()
        if own_store:
            store.close()


def request_study_stop(name: str, *, home: str | Path | None = None, reason: str = "") -> bool:
    """Ask the driver of a study (any process on this host, or another host) to stop it: no new
    trials; running trials stop with a checkpoint. Returns False when no driver runs it."""
    study = load_study(name, home=home)
    if not _driver_alive(study.user_attrs.get("hft_driver")):
        return False
    study.set_user_attr("hft_stop", {"time": time.time(), "pid": os.getpid(), "reason": reason})
    return True


def study_driver(name: str, *, home: str | Path | None = None) -> dict[str, Any] | None:
    """The live driver's mark of a study ({pid, host, ...}), or None when nobody runs it now."""
    mark = load_study(name, home=home).user_attrs.get("hft_driver")
    return dict(mark) if _driver_alive(mark) else None


class SearchThread:
    """A study driven from a background thread of a long-lived process (the app).

    The app's RunManager trains the trials (``ManagerLauncher``); this thread only asks,
    queues and watches, so it never runs in a Streamlit script thread. ``stop()`` stops the
    whole study; Stop on one trial's run (Live, `hft stop`) ends that trial only.
    """

    def __init__(self, spec: SearchSpec, *, manager: Any, trials: int | None = None,
                 parallel: int | None = None) -> None:
        self.spec = spec
        self.manager = manager
        self.trials = trials
        self.parallel = parallel
        self.ended: list[TrialInfo] = []
        self.notes: list[str] = []
        self.result: SearchResult | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"hft-search:{spec.name}", daemon=True)

    def start(self) -> "SearchThread":
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _work(self) -> None:
        try:
            self.result = run_search(self.spec, trials=self.trials, parallel=self.parallel, store=self.manager.store,
                                     launcher=ManagerLauncher(self.manager), stop=self._stop,
                                     on_trial=self.ended.append, on_start=lambda r: self.notes.extend(r.notes))
        except Exception as e:  # noqa: BLE001 - shown on the page; the thread must not die silently
            self.error = f"{type(e).__name__}: {e}"
            log.exception("study %s", self.spec.name)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# ---- hft search -------------------------------------------------------------------------------------

def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The `search` verb of hft_core.cli."""
    s = sub.add_parser("search", help="an Optuna study: each trial a queued run; running it again continues it",
                       description="Search hyper-parameters with Optuna. Every trial is a run in the store (group = "
                       "the study), so Live shows it and Stop stops it. The study lives in $HFT_HOME/studies.sqlite: "
                       "the same command again adds --trials more trials.")
    s.add_argument("--config", help="the search file (YAML: base/config, space, objective, sampler, pruner)")
    s.add_argument("--trials", type=int, default=None, help="trials to run now (default: the file's, else 10)")
    s.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the file's, else tpe")
    s.add_argument("--pruner", choices=PRUNERS, default=None, help="default: the file's, else none")
    s.add_argument("--parallel", type=int, default=None,
                   help="trials queued at a time (default 1). Locally, how many TRAIN at once is the device's "
                        "limit, HFT_RUNS_PER_DEVICE (1 by default): raise it to train several side by side. With "
                        "--backend ray: trials sent to the cluster at once (Ray runs what its resources hold)")
    s.add_argument("--name", default=None, help="the study's name (default: the file's 'name', else its file name)")
    s.add_argument("--seed", type=int, default=None, help="the sampler's seed (default: the file's, else 0)")
    s.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: train here; ray: each trial a Ray task on a cluster")
    s.add_argument("--address", default=None, help="with --backend ray: 'auto' (a cluster started with `ray start` "
                   "on this machine) or ray://host:10001; default: a local Ray instance for this command")
    s.add_argument("--stop", metavar="STUDY", default=None, help="ask the driver of a running study to stop it")
    s.add_argument("--show", metavar="STUDY", default=None, help="print a study's trials and best result")
    return s


def cli(args: argparse.Namespace) -> int:
    """`hft search`: prints each trial as it ends and, at the end, the best value and its parameters."""
    if args.stop:
        if request_study_stop(args.stop, reason=f"`hft search --stop` from pid {os.getpid()}"):
            print(f"asked the driver of study {args.stop!r} to stop: no new trials; running ones stop with a "
                  f"checkpoint")
        else:
            print(f"study {args.stop!r} has no running driver: nothing to stop")
        return 0
    if args.show:
        result = study_result(args.show)
        for t in result.trials:
            print(t.describe(result.metric))
        _print_best(result)
        return 0
    if not args.config:
        raise SearchError("give --config search.yaml (or --show STUDY / --stop STUDY); see presets/search/ for "
                          "examples")
    spec = load_search(args.config, name=args.name, sampler=args.sampler, pruner=args.pruner, trials=args.trials,
                       parallel=args.parallel, seed=args.seed)
    _say_parallel(spec, args.backend)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_ctrl_c(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print("\nstopping the study: running trials stop after their step, with a checkpoint "
                  "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)
            stop.set()
        previous = signal.signal(signal.SIGINT, on_ctrl_c)

    def started(r: SearchResult) -> None:
        for note in r.notes:
            print(note, file=sys.stderr, flush=True)
        print(f"study {spec.name!r} ({storage_url()}): {spec.trials} trial(s), sampler {spec.sampler}, pruner "
              f"{spec.pruner}, {spec.direction} {spec.metric}; runs in group {spec.name!r} (Live shows them; "
              f"`hft search --stop {spec.name}` or Ctrl-C stops the study)", file=sys.stderr, flush=True)

    try:
        result = run_search(spec, backend=args.backend, address=args.address, stop=stop, on_start=started,
                            on_trial=lambda t: print(t.describe(spec.metric), flush=True))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    c = result.counts(result.new)
    total = len(result.trials)
    print(f"study {spec.name}: {len(result.new)} trial(s) now ({c['COMPLETE']} finished, {c['PRUNED']} pruned, "
          f"{c['FAIL']} failed), {total} in the study; {result.steps_trained(result.new)} steps trained now"
          + ("; stopped before all trials ran" if result.stopped else ""))
    _print_best(result)
    print(f"continue it with the same command (more trials), or see it on Compare (group {spec.name!r})",
          file=sys.stderr)
    return 130 if result.stopped else 0


def _print_best(result: SearchResult) -> None:
    best = result.best
    if best is None:
        print("best: none yet (no trial finished)")
        return
    print(f"best: trial {best.number} (run {best.run_id}) {result.metric} = {best.value:.4f}")
    for k, v in best.params.items():
        print(f"  {k} = {_fmt(v)}")


def _say_parallel(spec: SearchSpec, backend: str) -> None:
    """--parallel N on a device that trains fewer at once: say that the trials will queue."""
    if spec.parallel <= 1 or backend != "local":
        return
    from hft_core.placement import resolve_device
    from hft_core.runs import runs_per_device

    limit = runs_per_device()
    if spec.parallel > limit:
        print(f"note: --parallel {spec.parallel}, but {resolve_device(spec.base.device)} trains {limit} run(s) at a "
              f"time (HFT_RUNS_PER_DEVICE={limit}): {spec.parallel} trials stay queued and train in turn. Set "
              f"HFT_RUNS_PER_DEVICE={spec.parallel} to train them side by side.", file=sys.stderr)
