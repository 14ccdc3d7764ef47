"""Learn: one strategy at a time, in plain words, with its formula, source and a small picture.

Thin page: every number comes from hft_core.explain (pure functions, no training),
so moving a slider redraws in milliseconds. The matching preset, when there is one,
is named at the bottom so the lecturer can run the real experiment next.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from hft_core import explain
from ui import state as ui_state

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


def _fig(title: str, x_title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=340,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


@st.cache_resource(show_spinner=False)
def _demo_weights():
    pretrained, source = explain.pretrained_weights()
    return pretrained, explain.random_weights(pretrained.numel(), seed=0), source


def picture_blend() -> None:
    pretrained, fresh, source = _demo_weights()
    alpha = st.slider("alpha (1 = pretrained, 0 = random)", 0.0, 1.0, 0.5, 0.05, key="blend_alpha")
    stats = explain.blend_stats(pretrained, fresh, alpha)
    c1, c2, c3 = st.columns(3)
    c1.metric("std of the blend", f"{stats.std_blend:.4f}")
    c2.metric("cosine to pretrained", f"{stats.cosine_to_pretrained:.3f}")
    c3.metric("std pretrained / random", f"{stats.std_pretrained:.3f} / {stats.std_fresh:.3f}")
    fig = _fig(f"One weight matrix at alpha = {alpha:.2f}", "weight value", "share of weights")
    for name, values, dash in (("pretrained", pretrained, "dot"), ("random init N(0, 0.02)", fresh, "dot"),
                               (f"blend (alpha={alpha:.2f})", explain.blend_weights(pretrained, fresh, alpha), "solid")):
        x, y = explain.histogram(values)
        fig.add_scatter(x=x, y=y, name=name, mode="lines", line=dict(dash=dash, width=3 if dash == "solid" else 1.5))
    st.plotly_chart(fig, key="blend_chart")
    st.caption(f"Weights: {source}. The two are independent, so a middle alpha gives *narrower* weights than "
               "either end (std² ≈ α²·σp² + (1−α)²·σr²) while the cosine shows how much pretrained direction is kept.")


def picture_temperature() -> None:
    classes = ["business", "entertainment", "politics", "sport", "tech"]
    logits = [1.0, -1.0, 4.0, -2.0, 0.5]
    T = st.slider("temperature T", 0.5, 10.0, 2.0, 0.5, key="kd_T")
    p1 = explain.softmax_at_temperature(logits, 1.0)
    pT = explain.softmax_at_temperature(logits, T)
    c1, c2, c3 = st.columns(3)
    c1.metric("top class probability at T", f"{max(pT):.3f}")
    c2.metric("entropy at T (bits)", f"{explain.entropy_bits(pT):.3f}")
    c3.metric("entropy at T=1 (bits)", f"{explain.entropy_bits(p1):.3f}")
    fig = _fig(f"A teacher's prediction for a politics article, softmax(logits / {T:g})", "class", "probability")
    fig.add_bar(x=classes, y=p1, name="T = 1", marker_color="#9e9e9e")
    fig.add_bar(x=classes, y=pT, name=f"T = {T:g}", marker_color="#d62728")
    fig.update_layout(barmode="group", yaxis_range=[0, 1])
    st.plotly_chart(fig, key="temperature_chart")
    st.caption(f"Teacher logits {logits}. At T = 1 the student learns almost only 'politics'; a higher T "
               "shows it that business and tech are the likelier mistakes. KD multiplies its term by T² so its "
               "gradients keep their size as T grows.")


def picture_lora() -> None:
    r = st.slider("rank r", 1, 64, 8, 1, key="lora_r")
    c = explain.lora_trainable(r)
    c1, c2, c3 = st.columns(3)
    c1.metric("LoRA trainable parameters", f"{c.lora:,}")
    c2.metric("same layers trained in full", f"{c.adapted_full:,}")
    c3.metric("share of MiniLM's 22.7M", f"{100 * c.share_of_model:.2f}%")
    rs = list(range(1, 65))
    fig = _fig("MiniLM-L6, LoRA on query and value (6 layers x 2, each 384 x 384)", "rank r", "trainable parameters")
    fig.add_scatter(x=rs, y=[explain.lora_trainable(k).lora for k in rs], name="LoRA r·(in+out) per layer")
    fig.add_scatter(x=rs, y=[c.adapted_full] * len(rs), name="those layers in full", line=dict(dash="dash"))
    fig.add_scatter(x=[r], y=[c.lora], mode="markers", marker=dict(size=12), name=f"r = {r}")
    st.plotly_chart(fig, key="lora_chart")
    st.caption("Each adapted 384x384 layer gets A (r x 384) and B (384 x r). The new classifier head is "
               "trained in full as well (modules_to_save) and is not counted here.")


def picture_precision() -> None:
    x = st.number_input("a number", value=0.1, format="%.10g", key="prec_x")
    rows = explain.precision_table(float(x))
    cols = st.columns(len(rows))
    for col, row in zip(cols, rows):
        col.metric(f"{row.name} stores", f"{row.stored:.10g}", help=row.note)
        col.caption(f"relative error {row.rel_error:.2e} · {row.note}")
    st.table([{"format": d.name, "bits (exponent / mantissa)": f"{d.bits} ({d.exponent_bits} / {d.mantissa_bits})",
               "largest": f"{d.max:.4g}", "smallest normal": f"{d.min_normal:.4g}",
               "rounding step at 1 (eps)": f"{d.eps:.3g}"} for d in explain.dtype_ranges()])
    st.caption("Try 70000 (fp16 overflows), 1e-8 (fp16 underflows: why fp16 needs loss scaling) and 0.1 "
               "(bf16 keeps only about 3 significant digits).")


def picture_l2sp() -> None:
    beta = st.slider("beta", 0.001, 0.1, 0.01, 0.001, format="%.3f", key="l2sp_beta")
    ds, sp, l2 = explain.l2sp_curve(beta)
    st.metric("penalty at distance 5 from the pretrained weights", f"{explain.l2sp_penalty(5, beta):.4f}")
    fig = _fig("Penalty against distance moved from the pretrained weights", "||w - w0||", "penalty")
    fig.add_scatter(x=ds, y=sp, name="L2-SP: β/2·||w − w0||²")
    fig.add_scatter(x=ds, y=l2, name="plain L2 (weight decay toward 0), ||w0|| = 10", line=dict(dash="dash"))
    st.plotly_chart(fig, key="l2sp_chart")
    st.caption("L2-SP costs nothing at the start point and grows with the distance; weight decay charges the "
               "pretrained weights for merely existing. The gradient of L2-SP is β·(w − w0).")


def picture_eda() -> None:
    sentence = st.text_input("a sentence", "The central bank raised interest rates again on Thursday", key="eda_sentence")
    rate = st.slider("rate a (share of words changed per operation)", 0.0, 0.5, 0.1, 0.05, key="eda_rate")
    seed = st.number_input("seed", 0, 10_000, 0, key="eda_seed")
    words = len(sentence.split())
    st.metric("words changed per operation", 0 if rate == 0 else max(1, int(rate * words)))
    st.table([{"operation": op, "augmented sentence": text}
              for op, text in explain.eda_examples(sentence, rate, copies=4, seed=int(seed))])


def picture_neftune() -> None:
    alpha = st.slider("alpha", 0.0, 15.0, 5.0, 0.5, key="neftune_alpha")
    L = st.slider("sequence length L", 1, 512, 64, key="neftune_L")
    dim = 576  # SmolLM2-135M's embedding width
    c1, c2 = st.columns(2)
    c1.metric("bound per coordinate α/√(L·d)", f"{explain.neftune_bound(alpha, L, dim):.5f}")
    c2.metric("expected noise norm per token", f"{explain.neftune_token_noise_norm(alpha, L):.4f}")
    lens, bound, norm = explain.neftune_curve(alpha, dim)
    fig = _fig(f"NEFTune noise on SmolLM2-135M's embeddings (d = {dim}), alpha = {alpha:g}", "sequence length L",
               "noise")
    fig.add_scatter(x=lens, y=bound, name="bound per coordinate")
    fig.add_scatter(x=lens, y=norm, name="expected norm per token", line=dict(dash="dash"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    st.plotly_chart(fig, key="neftune_chart")
    st.caption("The noise per token falls as 1/√L and does not depend on d. It is added only while training.")


def picture_wise_ft() -> None:
    a_pick = st.slider("a", 0.0, 1.0, 0.5, 0.1, key="wise_a")
    theta0, theta_ft = [0.80, -0.20, 0.05], [0.50, 0.30, -0.25]
    st.metric("θ(a) for three example weights", ", ".join(f"{w:+.3f}" for w in explain.wise_ft_weights(theta0, theta_ft, a_pick)))
    a, ind, ood = explain.wise_ft_schematic()
    fig = _fig("SCHEMATIC shape (not measured): accuracy against a", "a (0 = pretrained, 1 = fine-tuned)", "accuracy")
    fig.add_scatter(x=a, y=ind, name="in distribution")
    fig.add_scatter(x=a, y=ood, name="under distribution shift", line=dict(dash="dash"))
    fig.add_vline(x=a_pick, line_dash="dot")
    st.plotly_chart(fig, key="wise_chart")
    st.caption(f"θ0 = {theta0}, θft = {theta_ft}. The shape follows Wortsman et al. 2022, Fig. 1; the WiSE-FT "
               "preset measures the real curve on BBC News.")


PICTURES = {"blend": picture_blend, "temperature": picture_temperature, "lora": picture_lora,
            "precision": picture_precision, "l2sp": picture_l2sp, "eda": picture_eda,
            "neftune": picture_neftune, "wise_ft": picture_wise_ft}

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
