"""The model card in the Train form: a new model brings its recommended settings, said out loud.

When the model changes, lr, max_length, batch_size and (on the demo data) max_steps take the
new model's card values (hft_core.model_cards), and a note says what changed, with an undo.
A field the user typed is never overwritten silently: it is kept, and the note says so and
offers the recommended value. Functions on a plain mutable mapping (session_state on the
page), unit-tested without a browser.

Turning on a strategy with a row in hft_core/recommendations.py (LoRA) does the same for lr:
LoRA on MiniLM-L6 brings 1e-3 (its table's 10x on the card's 1e-4), turning it off the card's
full fine-tuning rate again; the note shows under that strategy's card, with the same Undo.

    state["f.edited"]      field names set by hand (cleared when a preset, YAML or run fills the form)
    state["f.card_note"]   {"title", "evidence", "set": {field: [old, new]}, "kept": {field: [value, rec]},
                            "origin": "model" | a strategy name}
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, MutableMapping

from hft_core import model_cards, recommendations
from hft_core.config import RunConfig
from ui import form_state as fs

State = MutableMapping[str, Any]
EDITED, NOTE = "f.edited", "f.card_note"


def mark_edited(state: State, name: str) -> None:
    """A widget's on_change: field ``name`` now holds the user's own value."""
    state[EDITED] = sorted(set(state.get(EDITED) or ()) | {name})
    note = state.get(NOTE)
    if note and name in note.get("set", {}):  # hand-edited after the change: undo must not revert it
        note = {**note, "set": {k: v for k, v in note["set"].items() if k != name}}
        state[NOTE] = note if note["set"] or note.get("kept") else None


def clear(state: State) -> None:
    """A preset, a YAML file or a run filled the form: nothing in it is the user's own edit now."""
    state[EDITED] = []
    state[NOTE] = None


def edited_from_link(cfg: RunConfig, applied: Iterable[str]) -> set[str]:
    """Card fields a link sets to something other than the card's value: the user's own choices."""
    rec = model_cards.recommended(cfg)
    return {name for name in applied if name in rec and not _same(getattr(cfg, name), rec[name])}


def on_model_change(state: State, specs: Iterable[Any]) -> None:
    """Apply the new model's card to the form's card fields, except those set by hand; leave a note."""
    d = fs.state_to_dict(state, specs)
    if not d.get("model"):
        return
    card = model_cards.model_card(d["model"])
    rec = model_cards.recommended_values(card, lora="lora" in d["mix"], data=d["data"])
    edited = set(state.get(EDITED) or ())
    changed: dict[str, list] = {}
    kept: dict[str, list] = {}
    for name, value in rec.items():
        key = f"cfg.{name}"
        current = state.get(key)
        if current is not None and _same(current, value):
            continue
        if name in edited:
            kept[name] = [current, value]
        else:
            changed[name] = [current, value]
            state[key] = value
    if "max_steps" in changed and int(state.get("cfg.warmup_steps") or 0) >= rec["max_steps"]:
        changed["warmup_steps"] = [state["cfg.warmup_steps"], 0]
        state["cfg.warmup_steps"] = 0
    state[NOTE] = ({"title": card.title, "evidence": card.evidence, "set": changed, "kept": kept, "origin": "model"}
                   if changed or kept else None)


def on_strategy_change(state: State, specs: Iterable[Any], name: str) -> None:
    """Strategy ``name`` was turned on or off: its recommended lr for the form's model (a hand-set lr is kept).

    Only strategies with a row in hft_core/recommendations.py change anything (LoRA: the model
    card's lr x 10 when on, the card's own lr when off); the note says which way, with an Undo.
    """
    row = recommendations.recommendation(name)
    if row is None:
        return
    d = fs.state_to_dict(state, specs)
    if not d.get("model"):
        return
    card = model_cards.model_card(d["model"])
    on = bool(state.get(f"mix.{name}.on"))
    value = recommendations.strategy_lr(card.lr, {s for s in d["mix"] if s != name} | ({name} if on else set()))
    current = state.get("cfg.lr")
    title = f"{row.title} on {card.title}" if on else f"{card.title} without {row.title}"
    note = {"title": title, "evidence": f"{row.evidence} Model card: {card.evidence}.", "set": {}, "kept": {},
            "origin": name}
    if current is not None and _same(current, value):
        return  # nothing to change: an earlier note (and its Undo) stays
    if "lr" in set(state.get(EDITED) or ()):
        note["kept"] = {"lr": [current, value]}
    else:
        note["set"] = {"lr": [current, value]}
        state["cfg.lr"] = value
    state[NOTE] = note


def undo(state: State) -> None:
    """Put back the values the last model change replaced."""
    note = state.get(NOTE) or {}
    for name, (old, _new) in note.get("set", {}).items():
        state[f"cfg.{name}"] = old
    state[NOTE] = None


def use_recommended(state: State, name: str) -> None:
    """Take the card's value for a kept field; it no longer counts as set by hand."""
    note = state.get(NOTE) or {}
    value, rec = note.get("kept", {}).get(name, (None, None))
    if rec is None:
        return
    state[f"cfg.{name}"] = rec
    state[EDITED] = [n for n in state.get(EDITED) or () if n != name]
    kept = {k: v for k, v in note["kept"].items() if k != name}
    changed = {**note.get("set", {}), name: [value, rec]}
    state[NOTE] = {**note, "kept": kept, "set": changed}


def note_text(note: Mapping[str, Any] | None) -> tuple[str, str]:
    """(what was set, what was kept) as one line each; empty strings when nothing."""
    if not note:
        return "", ""
    fmt = model_cards.fmt
    changed = ", ".join(f"{fs_label(k)} {fmt(new)}" + (f" (was {fmt(old)})" if old is not None else "")
                        for k, (old, new) in note.get("set", {}).items())
    kept = ", ".join(f"{fs_label(k)} {fmt(value)} (recommended: {fmt(rec)})"
                     for k, (value, rec) in note.get("kept", {}).items())
    title = note.get("title", "this model")
    return ((f"Set for {title}, as recommended: {changed}." if changed else ""),
            (f"Kept your own {kept}." if kept else ""))


def fs_label(name: str) -> str:
    return name.replace("_", " ")


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return a == b


def render_note(state: State, origin: str = "model") -> None:
    """The note of the last recommendation from ``origin`` ("model": under the model picker; a strategy's
    name: under its card): what it set or kept, with Undo / Use buttons. Other origins' notes are not drawn."""
    import streamlit as st

    note = state.get(NOTE)
    if not note or note.get("origin", "model") != origin:
        return
    set_text, kept_text = note_text(note)
    if not (set_text or kept_text):
        return
    with st.container(border=True):
        st.markdown(f":material/tune: {set_text} {kept_text}".strip(), help=f"Where these come from: {note['evidence']}")
        b1, b2 = st.columns(2)
        if set_text:
            b1.button("Undo", key="f.card_undo", icon=":material/undo:", on_click=undo, args=(state,))
        for name in note.get("kept", {}):
            b2.button(f"Use the recommended {fs_label(name)}", key=f"f.card_use.{name}", on_click=use_recommended,
                      args=(state, name))
