"""The Train form's state: a flat dict of widget keys <-> a RunConfig.

Pure functions (no streamlit), so presets, "load this run into the form" and the
form -> config step are unit-tested without a browser. Keys:

    f.model_choice / f.model_text   a listed model source, or "custom" + the typed source
    f.data_choice  / f.data_text    a listed data source, "upload", or "custom" + a path / hub:<name>
    f.task                          classification | causal-lm
    cfg.<field>                     every other scalar RunConfig field (lr, max_steps, precision ...)
    mix.<name>.on                   strategy enabled
    mix.<name>.<field>              its settings; a strategy's headline field (blend's alpha) is a big
                                    slider at the top, and moving it off its neutral value turns it on
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import yaml

from hft_core.config import RunConfig

TINY_MODELS = {"tiny:bert": "tiny random BERT (2 layers, width 64): instant, for trying things out",
               "tiny:gpt2": "tiny random GPT-2 (2 layers, width 64): instant causal-LM demo"}
CUSTOM = "custom"
UPLOAD = "upload"
FORM_FIELDS = ("model", "task", "data", "mix")  # handled by their own widgets, not as cfg.<field>

QUICK_DEMO = "Quick demo (tiny model, 30 s)"


def quick_demo_config() -> RunConfig:
    """The default of the Train page: a tiny random BERT on 200 BBC News articles, 40 steps."""
    return RunConfig(model="tiny:bert", task="classification", data="bundled:bbc-news", n_train=200, n_eval=100,
                     max_steps=40, batch_size=16, lr=1e-3, eval_every=10, max_length=128, precision="auto",
                     warmup_steps=0, schedule="linear")


def field_kind(f: dataclasses.Field) -> str:
    """'float' | 'int' | 'bool' | 'str' | 'other' (lists, tuples, dicts: edited as YAML text)."""
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t if t in ("float", "int", "bool", "str") else "other"


def to_widget_value(f: dataclasses.Field, v: Any) -> Any:
    kind = field_kind(f)
    if kind == "float":
        return float(v)
    if kind == "int":
        return int(v)
    if kind == "bool":
        return bool(v)
    if kind == "str":
        return "" if v is None else str(v)
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def from_widget_value(f: dataclasses.Field, v: Any) -> Any:
    if field_kind(f) == "other" and isinstance(v, str):
        return yaml.safe_load(v) if v.strip() else None
    return v


def scalar_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(RunConfig) if f.name not in FORM_FIELDS]


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def config_to_state(cfg: RunConfig, specs: Iterable[Any], model_options: Iterable[str],
                    data_options: Iterable[str]) -> dict[str, Any]:
    """Every form key for ``cfg`` (strategies not in its mix: off, with their defaults)."""
    state: dict[str, Any] = {}
    model_options, data_options = list(model_options), list(data_options)
    if cfg.model in model_options:
        state["f.model_choice"], state["f.model_text"] = cfg.model, ""
    else:
        state["f.model_choice"], state["f.model_text"] = CUSTOM, cfg.model
    if cfg.data in data_options:
        state["f.data_choice"], state["f.data_text"] = cfg.data, ""
    else:
        state["f.data_choice"], state["f.data_text"] = CUSTOM, cfg.data
    state["f.task"] = cfg.task
    for f in scalar_fields():
        state[f"cfg.{f.name}"] = to_widget_value(f, getattr(cfg, f.name))
    for spec in specs:
        on = spec.name in cfg.mix
        values = cfg.mix[spec.name] if on else spec.config_cls()
        state[f"mix.{spec.name}.on"] = on
        for f in dataclasses.fields(spec.config_cls):
            value = getattr(values, f.name)
            if not on and f.metadata.get("headline") and "neutral" in f.metadata:
                value = f.metadata["neutral"]  # no blend = plain fine-tuning = alpha 1 on the big slider
            state[f"mix.{spec.name}.{f.name}"] = to_widget_value(f, value)
    return state


def headline_field(spec: Any) -> dataclasses.Field | None:
    """The field a strategy marks ``headline`` in its metadata (drawn big at the top of Train), or None."""
    return next((f for f in dataclasses.fields(spec.config_cls) if f.metadata.get("headline")), None)


def strategy_on(state: Mapping[str, Any], spec: Any) -> bool:
    """On when its toggle is, or when its headline field has left its neutral value (alpha below 1)."""
    if state.get(f"mix.{spec.name}.on"):
        return True
    f = headline_field(spec)
    if f is None or "neutral" not in f.metadata:
        return False
    key = f"mix.{spec.name}.{f.name}"
    return key in state and from_widget_value(f, state[key]) != f.metadata["neutral"]


def state_to_dict(state: Mapping[str, Any], specs: Iterable[Any], data_source: str | None = None) -> dict[str, Any]:
    """The config dict the form describes (not validated: RunConfig.from_dict does that).

    ``data_source`` overrides the data pickers (the saved path of an uploaded file).
    """
    d: dict[str, Any] = {}
    for f in scalar_fields():
        key = f"cfg.{f.name}"
        d[f.name] = from_widget_value(f, state[key]) if key in state else default_of(f)
    choice = state.get("f.model_choice", CUSTOM)
    d["model"] = (state.get("f.model_text") or "").strip() if choice == CUSTOM else choice
    d["task"] = state.get("f.task", "classification")
    if data_source is not None:
        d["data"] = data_source
    else:
        choice = state.get("f.data_choice", CUSTOM)
        d["data"] = (state.get("f.data_text") or "").strip() if choice in (CUSTOM, UPLOAD) else choice
    mix: dict[str, Any] = {}
    for spec in specs:
        if not strategy_on(state, spec):
            continue
        values = {}
        for f in dataclasses.fields(spec.config_cls):
            key = f"mix.{spec.name}.{f.name}"
            if key in state:
                values[f.name] = from_widget_value(f, state[key])
        mix[spec.name] = values
    d["mix"] = mix
    return d


def state_to_config(state: Mapping[str, Any], specs: Iterable[Any], data_source: str | None = None) -> RunConfig:
    """RunConfig from the form; raises ConfigError with the field, value and fix."""
    return RunConfig.from_dict(state_to_dict(state, specs, data_source))


def sweep_grid(alphas: Iterable[float], n_seeds: int, base_seed: int, has_blend: bool) -> dict[str, list[Any]]:
    """The grid for RunManager.submit_sweep: alphas (if blend exists) x seeds base_seed.. ."""
    grid: dict[str, list[Any]] = {}
    alphas = sorted({float(a) for a in alphas})
    if has_blend and alphas:
        grid["mix.blend.alpha"] = alphas
    if n_seeds > 1:
        grid["seed"] = [base_seed + i for i in range(n_seeds)]
    return grid
