"""The Train form's logic: its options, presets, the state it starts from, and what fills it.

The page (pages/train.py) lays out widgets; everything that decides what they hold is
here, written against a plain mutable mapping (``st.session_state`` on the page, a dict in
unit tests):

    model_options(), data_options()     what the pickers offer
    load_presets()                      presets/*.yaml by title, and the files that failed
    init_state(state, params, ...)      first visit: the quick demo, then the link's form (url_state),
                                        then a config sent from the Runs page ("Load into Train")
    apply_config(state, cfg)            fill every widget from a RunConfig (presets, YAML, runs)
    on_preset / on_variant / on_yaml_upload     the widgets' callbacks
    base_config(state), link_params(state, ...) the form's starting point and its URL parameters
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping, MutableMapping

import streamlit as st

from hft_core import data as data_sources
from hft_core import models as model_sources
from hft_core import presets as preset_lib
from hft_core.config import ConfigError, RunConfig
from hft_core.strategies.base import all_specs
from ui import form_state as fs
from ui import recommend
from ui import url_state

State = MutableMapping[str, Any]

SPECS = all_specs()
MAIN_FIELDS = ("max_steps", "batch_size", "lr", "seed", "eval_every", "n_train")
OWN_WIDGETS = ("name", "group", "precision", "device", "text_column", "label_column")  # drawn elsewhere
FORM_DEFAULTS = {"f.preset": fs.QUICK_DEMO, "f.go_live": True, "f.sweep_alphas": [0.0, 0.5, 1.0],
                 "f.sweep_seeds": 1, "f.sweep_group": "", "f.preset_quick": False}


def _with_prefix(name: str, prefix: str) -> str:
    return name if ":" in name else prefix + name


def model_options() -> dict[str, str]:
    """Model source -> one-line description; the last entry lets the user type any source."""
    out = {_with_prefix(k, "bundled:"): v for k, v in model_sources.bundled_models().items()}
    for k, v in fs.TINY_MODELS.items():
        out.setdefault(k, v)
    out[fs.CUSTOM] = "Another source: hub:<id>, a local folder, or run:<id> (an earlier run's checkpoint)"
    return out


def data_options() -> dict[str, str]:
    out = {_with_prefix(k, "bundled:"): v for k, v in data_sources.bundled_datasets().items()}
    out[fs.UPLOAD] = "Upload a file (CSV, JSONL or Parquet)"
    out[fs.CUSTOM] = "A local file path, or hub:<name>"
    return out


MODEL_OPTIONS = model_options()
DATA_OPTIONS = data_options()


# ---- presets -------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _load_presets(stamp: tuple) -> tuple[dict, dict]:
    good, bad = {}, {}
    for p in sorted(preset_lib.PRESET_DIR.glob("*.yaml")):
        try:
            pr = preset_lib.load_preset(p)
            good[pr.title] = pr
        except ConfigError as e:
            bad[p.stem] = str(e)
    return good, bad


def load_presets() -> tuple[dict[str, Any], dict[str, str]]:
    """(title -> Preset, file stem -> error); read again when a preset file changes."""
    d = preset_lib.PRESET_DIR
    files = sorted(d.glob("*.yaml")) if d.is_dir() else []
    return _load_presets(tuple((p.name, p.stat().st_mtime) for p in files))


def variant_config(preset: Any, label: str | None) -> RunConfig:
    """The config of a preset's variant (its first seed); the first variant for an unknown label."""
    v = next((v for v in preset.variants if v.label == label), preset.variants[0])
    return preset_lib.variant_config(preset, v, preset.seeds[0])


# ---- filling the form ----------------------------------------------------------------------------

def apply_config(state: State, cfg: RunConfig) -> None:
    """Every widget from ``cfg``: nothing in the form is then set by hand, and no model note stays."""
    for k, v in fs.config_to_state(cfg, SPECS, MODEL_OPTIONS, DATA_OPTIONS).items():
        state[k] = v
    if cfg.data not in DATA_OPTIONS:
        state["f.upload_path"] = None
    recommend.clear(state)


def on_preset(state: State, presets: Mapping[str, Any]) -> None:
    state["f.loaded_from"] = None
    title = state["f.preset"]
    if title == fs.QUICK_DEMO:
        apply_config(state, fs.quick_demo_config())
    elif title in presets:
        state["f.variant"] = presets[title].variants[0].label
        apply_config(state, variant_config(presets[title], state["f.variant"]))


def on_variant(state: State, presets: Mapping[str, Any]) -> None:
    if state.get("f.preset") in presets:
        apply_config(state, variant_config(presets[state["f.preset"]], state["f.variant"]))


def on_yaml_upload(state: State) -> None:
    up = state.get("f.yaml_upload")
    if up is None:
        return
    try:
        cfg = RunConfig.from_yaml(up.getvalue().decode("utf-8", errors="replace"))
    except ConfigError as e:
        state["f.yaml_error"] = f"{up.name}: {e}"
        return
    state["f.yaml_error"] = None
    apply_config(state, cfg)


def init_state(state: State, params: Mapping[str, Any], presets: Mapping[str, Any]) -> None:
    """Run first on every page run: defaults once, the link's form once per session, a pending load.

    A link is read only on the session's first run: later the URL is what this session wrote,
    and coming back from Live must show the form as left, not re-read it.
    """
    if "f.token" not in state:
        state["f.token"] = uuid.uuid4().hex
    defaults = fs.config_to_state(fs.quick_demo_config(), SPECS, MODEL_OPTIONS, DATA_OPTIONS)
    defaults.update(FORM_DEFAULTS)
    for k, v in defaults.items():
        if k not in state:
            state[k] = v
    if not state.get("f.link_read"):
        state["f.link_read"] = True
        if any(k not in url_state.RESERVED for k in params):
            read_link(state, params, presets)
    pending = state.pop("f.load_config", None)  # "Load into Train" on the Runs page
    if pending:
        try:
            apply_config(state, RunConfig.from_dict({**pending[1], "name": ""}))
            state["f.preset"], state["f.loaded_from"] = fs.QUICK_DEMO, pending[0]
        except ConfigError as e:
            state["f.loaded_from"] = None
            state["f.load_error"] = f"Run {pending[0]}'s config cannot be loaded into the form: {e}"


def read_link(state: State, params: Mapping[str, Any], presets: Mapping[str, Any]) -> None:
    """The form a link describes (url_state.read_link), with what it skipped in ``f.link_notes``."""
    by_name = {p.name: p for p in presets.values()}
    form = url_state.read_link(params, by_name, fs.quick_demo_config(), variant_config)
    state["f.preset"] = form.preset.title if form.preset is not None else fs.QUICK_DEMO
    if form.preset is not None:
        state["f.variant"] = form.variant
    apply_config(state, form.config)
    state[recommend.EDITED] = sorted(recommend.edited_from_link(form.config, form.applied))
    state["f.link_notes"] = list(form.notes)


def base_config(state: Mapping[str, Any], presets: Mapping[str, Any]) -> RunConfig:
    """The form's starting point, against which the URL records changes."""
    pr = presets.get(state.get("f.preset"))
    if pr is None or state.get("f.loaded_from"):
        return fs.quick_demo_config()
    return variant_config(pr, state.get("f.variant"))


def link_params(state: Mapping[str, Any], presets: Mapping[str, Any], data_source: str | None) -> dict[str, str]:
    """The query parameters that reopen this form: preset, variant, and the config's changes."""
    pr = presets.get(state.get("f.preset"))
    if state.get("f.loaded_from"):
        pr = None
    d = fs.state_to_dict(state, SPECS, data_source=data_source)
    try:
        current: Any = RunConfig.from_dict(d)
    except (ConfigError, ValueError, TypeError):
        current = d  # an invalid form still keeps its values in the link (reading it back notes the bad one)
    return url_state.form_params(current, base_config(state, presets), pr.name if pr else None,
                                 state.get("f.variant") if pr else None, pr.variants[0].label if pr else None)
