"""Widgets generated from config dataclass fields: the field's help becomes the tooltip.

float -> number_input (a slider when the field's metadata has "min" and "max"),
int -> number_input, bool -> checkbox, str -> text_input, metadata "choices" ->
selectbox, anything else (lists, tuples) -> a text input holding YAML.
Values live in ``st.session_state[key]`` (set before the widget is drawn), so
presets can fill the form and the form survives a trip to another page.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import streamlit as st

from ui.form_state import field_kind

PERSIST = "session"  # widget values survive page switches (st's persist_state)


def pretty(name: str) -> str:
    return name.replace("_", " ")


def _float_step(meta: dict, value: float) -> float:
    if "step" in meta:
        return float(meta["step"])
    if value == 0:
        return 0.01
    return 10 ** math.floor(math.log10(abs(value)))


def field_widget(f: dataclasses.Field, key: str, *, label: str | None = None,
                 choices: Sequence[Any] | None = None, disabled: bool = False) -> Any:
    """Draw the widget for field ``f`` bound to ``st.session_state[key]``; returns its value."""
    meta = dict(f.metadata)
    label = label or pretty(f.name)
    help_ = meta.get("help") or None
    choices = list(choices) if choices is not None else meta.get("choices")
    kind = field_kind(f)
    common = dict(key=key, help=help_, disabled=disabled, persist_state=PERSIST)
    if choices:
        options = list(choices)
        if key in st.session_state and st.session_state[key] not in options:
            options.append(st.session_state[key])  # a preset's value outside the list stays visible
        return st.selectbox(label, options, **common)
    if kind == "bool":
        return st.checkbox(label, **common)
    if kind == "float":
        value = float(st.session_state.get(key, 0.0))
        if "min" in meta and "max" in meta:
            lo, hi = float(meta["min"]), float(meta["max"])
            return st.slider(label, lo, hi, step=float(meta.get("step", (hi - lo) / 100)), **common)
        return st.number_input(label, min_value=meta.get("min"), max_value=meta.get("max"),
                               step=_float_step(meta, value), format="%g", **common)
    if kind == "int":
        return st.number_input(label, min_value=meta.get("min"), max_value=meta.get("max"),
                               step=int(meta.get("step", 1)), **common)
    if kind == "str":
        return st.text_input(label, **common)
    return st.text_input(label + " (YAML)", **common)
