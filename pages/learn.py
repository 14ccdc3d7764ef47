"""Learn: one strategy at a time, in plain words, with its formula, source and a small picture.

Thin page: the pictures are drawn by ui/learn_pictures.py from hft_core.explain, which
calls the functions a run uses (no training), so moving a slider redraws in milliseconds.
The matching preset, when there is one, is named at the bottom so the lecturer can run
the real experiment next.
"""
from __future__ import annotations

import streamlit as st

from hft_core import explain
from ui import state as ui_state
from ui.learn_pictures import PICTURES

ui_state.through_app()  # first: a page opened by its URL on a fresh server runs inside app.py

st.title("Learn")
st.caption("Each strategy in plain words, its formula, where it comes from, what to look for in the curves, "
           "and a small picture that needs no training.")

LESSONS = {les.key: les for les in explain.lessons()}
wanted = st.query_params.get("lesson", "blend")
keys = list(LESSONS)
key = st.selectbox("Strategy", keys, index=keys.index(wanted) if wanted in keys else 0,
                   format_func=lambda k: LESSONS[k].title, key="lesson")
les = LESSONS[key]

st.header(les.title)
st.write(les.plain)
st.latex(les.formula)
st.markdown(f"**Source:** {les.reference}")
st.markdown(f"**What to look for in the curves:** {les.look_for}")

st.subheader("Try it")
if les.picture in PICTURES:
    PICTURES[les.picture]()
else:
    st.info("No picture for this one: its effect shows only in training. Run it from the Train page.")

from hft_core.presets import presets_for  # noqa: E402

for p in presets_for(key):
    with st.container(border=True):
        st.markdown(f"**Run the experiment: {p.title}** (preset `{p.name}`, an estimated {p.minutes:g} min on an idle 2-core laptop)")
        st.markdown(f"*Question:* {p.question}")
        st.markdown(f"*Expected:* {p.expected}")
        if p.result:
            st.markdown(f"*Measured here:* {p.result}")
        st.caption(f"Start it from the Train page's preset picker, or `python bench/presets.py --only {p.name} --seeds 1`.")
