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
from typing import Any, Callable, Sequence

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


def headline_label(spec: Any, f: dataclasses.Field) -> str:
    """The big slider's label: the metadata's text when ``headline`` is one, else 'alpha — Alpha blend (...)'."""
    text = f.metadata.get("headline")
    return text if isinstance(text, str) else f"{pretty(f.name)} — {spec.title}"


def field_widget(f: dataclasses.Field, key: str, *, label: str | None = None,
                 choices: Sequence[Any] | None = None, disabled: bool = False,
                 on_change: Callable[..., None] | None = None, args: tuple = ()) -> Any:
    """Draw the widget for field ``f`` bound to ``st.session_state[key]``; returns its value.

    ``on_change(*args)`` runs when the user changes the value (the Train form marks the field
    as set by hand, so a new model's recommended settings do not overwrite it).
    """
    meta = dict(f.metadata)
    label = label or pretty(f.name)
    help_ = meta.get("help") or None
    choices = list(choices) if choices is not None else meta.get("choices")
    kind = field_kind(f)
    common = dict(key=key, help=help_, disabled=disabled, persist_state=PERSIST, on_change=on_change, args=args)
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


def strategy_card(spec: Any, state: Any, task: str, on_toggle: Callable[..., None] | None = None,
                  args: tuple = ()) -> None:
    """One strategy in the Strategy mix tab: its toggle, what it does, and its fields when on.

    A strategy whose headline field (drawn at the top of Train) left its neutral value is on
    without its toggle, and says so; the headline field is not drawn twice. ``on_toggle(*args)``
    runs when the user turns it on or off (the Train form applies the strategy's recommended lr).
    """
    from ui.form_state import headline_field, strategy_on

    fits, on_key, headline = task in spec.tasks, f"mix.{spec.name}.on", headline_field(spec)
    auto_on = strategy_on(state, spec) and not state.get(on_key)
    st.toggle(spec.title + (f"  ·  {spec.reference}" if spec.reference else ""), key=on_key, persist_state=PERSIST,
              disabled=(not fits and not state.get(on_key)), help=spec.summary, on_change=on_toggle, args=args)
    note = spec.summary + (f" (only for {', '.join(spec.tasks)})" if not fits else "")
    if auto_on:
        note += f" **On:** {headline.name} = {state[f'mix.{spec.name}.{headline.name}']:g} at the top."
    if spec.conflicts:
        note += " Does not mix with " + ", ".join(spec.conflicts) + "."
    st.caption(note)
    if state.get(on_key) or auto_on:
        fields = [f for f in dataclasses.fields(spec.config_cls) if f is not headline]
        cols = st.columns(min(3, max(1, len(fields))))
        for j, f in enumerate(fields):
            with cols[j % len(cols)]:
                field_widget(f, f"mix.{spec.name}.{f.name}")
