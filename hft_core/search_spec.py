"""A search file, checked before anything runs: its space over any config field (strategy fields
included), its base config, objective, sampler and pruner. Each problem is one line naming the
field and the fix (``SearchError``). ``hft_core.search`` runs what this module parses.

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
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from hft_core.config import ConfigError, RunConfig

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
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class SearchError(ConfigError):
    """A search file, space, sampler or pruner is wrong; the one-line message names the field and the fix."""


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


# ---- Optuna's sampler and pruner for a spec (built once at parse time: bad options fail there) ----

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
