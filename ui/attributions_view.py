"""Runs page: "Why this prediction?" for a finished classification run.

Pick one of the run's eval examples or type a text, and see its tokens coloured by their
Integrated-Gradients attribution (``hft_core.attributions``, captum) toward the predicted
and the true class, next to the predicted probabilities; optionally the same text under a
second run, side by side (e.g. alpha 1 vs alpha 0).

Colours (``hft_core.attributions.tokens_html``, shared with the notebook): orange = the token
pushed the class's probability up, blue = down (a diverging pair that colour-blind readers
tell apart, unlike red/green); strength = the share of the largest attribution in that row.
The pure functions below are tested without a browser; ``section`` is the layout.
"""
from __future__ import annotations

from typing import Any, Sequence

from hft_core.attributions import MIN_SCALE, Explanation, legend_html, tokens_html

N_CHOICES = 100         # eval examples offered in the picker


def target_title(ex: Explanation, c: int) -> str:
    """'toward **sport** (predicted, p = 0.87)' for one attributed class."""
    roles = [r for r, yes in (("predicted", c == ex.predicted), ("true", c == ex.true_label)) if yes]
    return f"toward **{ex.name(c)}** ({' and '.join(roles) or 'chosen'}, p = {ex.probs[c]:.2f})"


def completeness_note(ex: Explanation, c: int) -> str:
    """The check a reader can do: the attributions add up to the change in probability."""
    moved = ex.probs[c] - ex.base_probs[c]
    note = (f"sum of attributions {sum(ex.scores[c]):+.4f} = p(text) − p(no words) = {ex.probs[c]:.4f} − "
            f"{ex.base_probs[c]:.4f} = {moved:+.4f}, up to captum's convergence delta {ex.delta[c]:+.1e} "
            f"({ex.n_steps} steps)")
    largest = max((abs(v) for v in ex.scores[c]), default=0.0)
    if largest < MIN_SCALE:
        note += (f". No token moved it by {MIN_SCALE:g} or more (largest {largest:.1e}), hence the faint colours: "
                 "this prediction barely depends on the words")
    return note


def probs_rows(ex: Explanation) -> list[dict[str, Any]]:
    """One row per class, most probable first: class, probability, and its role."""
    rows = []
    for c in sorted(range(len(ex.probs)), key=lambda i: -ex.probs[i]):
        role = " and ".join(r for r, yes in (("predicted", c == ex.predicted), ("true", c == ex.true_label)) if yes)
        rows.append({"class": ex.name(c), "probability": ex.probs[c], "": role})
    return rows


def example_label(i: int, example: dict, names: Sequence[str]) -> str:
    """'#3 · business · Shares in the bank fell sharply…' for the eval-example picker."""
    text = " ".join(example["text"].split())
    name = names[example["label"]] if 0 <= example["label"] < len(names) else str(example["label"])
    return f"#{i} · {name} · {text[:90]}{'…' if len(text) > 90 else ''}"


def explainable(rec: Any) -> bool:
    """A finished (or stopped) classification run with a checkpoint."""
    return (rec.status in ("finished", "stopped") and rec.config.get("task") == "classification"
            and bool(rec.checkpoint_dir))


def other_runs(store: Any, rec: Any, limit: int = 200) -> list[Any]:
    """Runs to compare ``rec`` with: explainable ones, same group first, newest first within each."""
    runs = [r for r in store.list_runs(status=["finished", "stopped"], limit=limit) if r.id != rec.id and explainable(r)]
    return sorted(runs, key=lambda r: (not (rec.group and r.group == rec.group),))


# ---- layout ------------------------------------------------------------------------------------
def section(store: Any, rec: Any) -> None:
    """The expander on the Runs page (Streamlit calls only here)."""
    import streamlit as st

    from hft_core import attributions
    from ui import state as ui_state

    ss = st.session_state
    with st.expander("Why this prediction? Token attributions (Integrated Gradients)", icon=":material/lightbulb:"):
        try:
            examples, names = attributions.eval_examples(f"run:{rec.id}")
        except (ValueError, OSError) as e:
            st.warning(f"The run's eval examples cannot be read: {e}")
            examples, names = [], []
        mode = st.radio("Text", ["An eval example", "My own text"], horizontal=True, key="runs.attr.mode",
                        label_visibility="collapsed")
        if mode == "An eval example" and examples:
            shown = examples[:N_CHOICES]
            i = st.selectbox("Eval example", range(len(shown)), key="runs.attr.example",
                             format_func=lambda j: example_label(j, shown[j], names))
            text, true_label = shown[i]["text"], shown[i]["label"]
        else:
            text = st.text_area("Text", key="runs.attr.text", height=90,
                                placeholder="Type a news sentence, e.g. The striker scored twice in the final.")
            pick = st.selectbox("True class (optional)", [None, *range(len(names))], key="runs.attr.true",
                                format_func=lambda c: "(not given)" if c is None else names[c])
            true_label = pick
        others = other_runs(store, rec)
        c1, c2, c3 = st.columns([5, 2, 2], vertical_alignment="bottom")
        other = c1.selectbox("Compare with run", [None, *[r.id for r in others]], key="runs.attr.other",
                             format_func=lambda rid: "(none)" if rid is None else
                             ui_state.run_label(next(r for r in others if r.id == rid), with_status=False))
        steps = c2.number_input("IG steps", 8, 500, 50, step=10, key="runs.attr.steps",
                                help="Interpolation steps of Integrated Gradients: more = a smaller convergence "
                                     "delta, slower.")
        go = c3.button("Explain", icon=":material/lightbulb:", key="runs.attr.go", type="primary",
                       use_container_width=True, disabled=not (text or "").strip())
        key = (rec.id, other, text, true_label, int(steps))
        if go:
            with st.spinner("Integrated Gradients (captum) …"):
                try:
                    sources = [f"run:{rec.id}"] + ([f"run:{other}"] if other else [])
                    ss["runs.attr.result"] = (key, attributions.compare_runs(sources, text, true_label=true_label,
                                                                             n_steps=int(steps)))
                except (ValueError, OSError) as e:
                    ss["runs.attr.result"] = (key, str(e))
        result = ss.get("runs.attr.result")
        if not result or result[0][0] != rec.id:
            st.caption("Press **Explain**: each class takes one captum pass of the model over the chosen steps.")
            return
        if result[0] != key:
            st.caption("The choices changed: press **Explain** again to update.")
        if isinstance(result[1], str):
            st.error(result[1])
            return
        st.html(legend_html())
        records = {rec.id: rec, **{r.id: r for r in others}}
        for col, ex in zip(st.columns(len(result[1])), result[1]):
            with col:
                rid = ex.source.removeprefix("run:")
                st.markdown(f"**{ui_state.run_label(records[rid], with_status=False) if rid in records else rid}**")
                st.dataframe(probs_rows(ex), hide_index=True, use_container_width=True,
                             column_config={"probability": st.column_config.ProgressColumn(
                                 min_value=0.0, max_value=1.0, format="%.2f")})
                for c in ex.targets:
                    st.markdown(target_title(ex, c))
                    st.html(tokens_html(ex.tokens, ex.scores[c]))
                    st.caption(completeness_note(ex, c))
