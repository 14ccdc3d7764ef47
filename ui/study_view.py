"""Compare: one search study at a glance.

Best value so far, parallel coordinates and parameter importance are Optuna's own plotly
figures (``optuna.visualization``); the trials' curves are the objective metric of every
trial's run from the store, coloured by how the trial ended (finished, pruned, failed), the
best one drawn thick. The logic below is tested without a browser; ``render_study_view``
lays it out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from hft_core import search

# Okabe-Ito, as the run colours of hft_core/charts.py: told apart with colour-blind vision too
STATE_COLORS = {"COMPLETE": "#0072B2", "PRUNED": "#E69F00", "FAIL": "#D55E00", "RUNNING": "#999999",
                "WAITING": "#999999"}
BEST_COLOR = "#009E73"
STATE_WORDS = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}


def has_studies(home: str | Path) -> bool:
    """Is there a studies file at all (cheap: no database is opened)?"""
    return (Path(home) / search.STUDIES_DB).is_file()


def trials_table(result: search.SearchResult):
    """One row per trial: number, how it ended, the objective's value, its run, steps trained, parameters."""
    import pandas as pd

    rows = []
    for t in result.trials:
        row = {"trial": t.number, "state": STATE_WORDS.get(t.state, t.state.lower()), result.metric or "value": t.value,
               "run": t.run_id, "steps": t.steps, "why": t.reason}
        row.update({k: v for k, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def history_figure(study: Any) -> Any:
    """Each trial's value and the best so far (Optuna's optimization history)."""
    import optuna.visualization as vis

    fig = vis.plot_optimization_history(study)
    fig.update_layout(title="Best so far", height=360, margin={"t": 40, "b": 30})
    return fig


def parallel_figure(study: Any) -> Any:
    import optuna.visualization as vis

    fig = vis.plot_parallel_coordinate(study)
    fig.update_layout(title="Parameters of the finished trials (colour = value)", height=360, margin={"t": 60})
    return fig


def importance_figure(study: Any) -> tuple[Any | None, str]:
    """Optuna's parameter importance (fANOVA, seeded), or None and why it cannot be drawn yet."""
    import optuna
    import optuna.visualization as vis

    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(finished) < 2:
        return None, f"parameter importance needs at least 2 finished trials ({len(finished)} so far)"
    try:
        fig = vis.plot_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=32,
                                                                                                       seed=0))
    except (ValueError, RuntimeError) as e:  # e.g. every finished trial has the same parameters
        return None, f"parameter importance cannot be computed yet: {e}"
    fig.update_layout(title="Parameter importance (fANOVA over the finished trials)", height=320, margin={"t": 40})
    return fig, ""


def curves_figure(store: Any, result: search.SearchResult, metric: str | None = None) -> Any:
    """The objective metric of every trial's run over its steps; colour = how the trial ended."""
    import plotly.graph_objects as go

    metric = metric or result.metric
    best = result.best
    ids = [t.run_id for t in result.trials if t.run_id]
    df = store.metrics(ids, names=[metric]) if ids else None
    fig = go.Figure()
    for t in result.trials:
        if not t.run_id or df is None:
            continue
        d = df[df["run_id"] == t.run_id].sort_values("step")
        if d.empty:
            continue
        is_best = best is not None and t.number == best.number
        params = ", ".join(f"{k}={search._fmt(v)}" for k, v in t.params.items())
        color = BEST_COLOR if is_best else STATE_COLORS.get(t.state, "#999999")
        fig.add_trace(go.Scatter(
            x=d["step"], y=d["value"], mode="lines+markers",
            name=f"trial {t.number} ({'best' if is_best else STATE_WORDS.get(t.state, t.state)})",
            line={"color": color, "width": 4 if is_best else 1.5, "dash": "dot" if t.state == "PRUNED" else "solid"},
            marker={"size": 5}, hovertemplate=f"trial {t.number}: {params}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(title=f"The trials' {metric} (pruned: dotted; best: thick green)", xaxis_title="step",
                      yaxis_title=metric, height=400, margin={"t": 40}, legend={"font": {"size": 10}})
    return fig


@st.cache_data(ttl=5, show_spinner=False)
def cached_study_names(home: str) -> list[str]:
    """The studies (newest first), read at most every 5 s: Compare reruns often."""
    return search.study_names(home)


def render_study_view(store: Any, group: str = "") -> None:
    """Pick a study (the Compare group's, when it is one) and draw it; nothing is read until one is picked."""
    names = cached_study_names(str(store.home))
    if not names:
        st.caption("No study yet: start one from Train (Search) or `hft search --config search.yaml`.")
        return
    key = "compare.study"
    if group in names and st.session_state.get("compare.study_group") != group:
        st.session_state[key] = group  # a study's group was picked above: show that study
    st.session_state["compare.study_group"] = group
    if st.session_state.get(key) not in ["", *names]:
        st.session_state[key] = ""
    name = st.selectbox("Study", ["", *names], key=key, format_func=lambda n: n or "(pick a study)",
                        help="A study's trials are the runs of the group of the same name.")
    if not name:
        return
    study = search.load_study(name, home=store.home)
    result = search.summarize(study, store)
    driver = search.study_driver(name, home=store.home)
    left, right = st.columns([5, 1], vertical_alignment="center")
    c = result.counts()
    best = result.best
    left.markdown(f"**{len(result.trials)} trials** ({c['COMPLETE']} finished, {c['PRUNED']} pruned, {c['FAIL']} "
                  f"failed; {result.steps_trained()} steps trained). "
                  + (f"Best: trial {best.number}, {result.metric} = {best.value:.4g} with "
                     + ", ".join(f"{k} = {search._fmt(v)}" for k, v in best.params.items()) if best else
                     "No finished trial yet.")
                  + (f"  \nRunning now (pid {driver['pid']} on {driver['host']})." if driver else ""))
    if driver and right.button("Stop study", key=f"compare.stop_study.{name}",
                               help="no new trials; running ones stop with a checkpoint"):
        search.request_study_stop(name, home=store.home, reason="Stop study on Compare")
        st.toast(f"asked study {name} to stop")
    tabs = st.tabs(["Trials' curves", "Best so far", "Parameters", "Importance", "Table"])
    with tabs[0]:
        st.plotly_chart(curves_figure(store, result), key=f"study.curves.{name}")
    with tabs[1]:
        st.plotly_chart(history_figure(study), key=f"study.history.{name}")
    with tabs[2]:
        st.plotly_chart(parallel_figure(study), key=f"study.parallel.{name}")
    with tabs[3]:
        fig, why = importance_figure(study)
        if fig is None:
            st.caption(why)
        else:
            st.plotly_chart(fig, key=f"study.importance.{name}")
    with tabs[4]:
        st.dataframe(trials_table(result), hide_index=True)
