"""Runs page: "After training" for a finished run, and the results of such a job.

For a finished training run: its confusion matrix (classification: the trainer logs it at
the final eval), and three jobs, each queued as a run of its own (hft_core/jobs.py: it
waits for its sources, can be stopped, and logs its results as metrics):

    WiSE-FT   the line from the run's starting weights to its fine-tuned ones, evaluated at
              ``points`` mixing coefficients a (Wortsman et al. 2022)
    pruning   magnitude pruning of the fine-tuned weights at chosen sparsities
    soup      uniform and greedy soups of this run with other fine-tunings of the same model
              and task (Wortsman et al. 2022, "Model soups")

For such a job: its results as a chart against its own axis (a, sparsity, or the soup's
members) instead of training curves. The pure functions are tested without a browser;
``section`` is the layout.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import pandas as pd

from hft_core import baselines, charts

CONFUSION_PREFIX = "confusion matrix"
JOB_AXES = {  # job kind -> (x-axis title, step -> x)
    "wise_ft": ("mixing coefficient a (0 = start, 1 = fine-tuned)", lambda s: s / 100),
    "prune": ("sparsity (share of weights set to zero)", lambda s: s / 100),
    "soup": ("soup (1 = the best single run, then uniform, then greedy)", lambda s: s),
}
SPARSITIES = [0.0, 0.25, 0.5, 0.75, 0.9]


def confusion(events: Sequence[tuple[float, str, str]]) -> tuple[list[str], list[list[int]]] | None:
    """(label names, matrix rows = true, columns = predicted) from the run's last confusion event."""
    for _, _, message in reversed(list(events)):
        if not message.startswith(CONFUSION_PREFIX):
            continue
        try:
            head, body = message.rsplit("): ", 1)
            names_text = head[head.index("labels ") + 7:]
            try:
                names = json.loads(names_text)
            except ValueError:  # runs from before the names were logged as JSON: a Python list
                names = json.loads(names_text.replace("'", '"'))
            matrix = json.loads(body)
        except ValueError:
            return None
        if len(matrix) == len(names) and all(len(row) == len(names) for row in matrix):
            return [str(n) for n in names], [[int(v) for v in row] for row in matrix]
    return None


def confusion_figure(names: list[str], matrix: list[list[int]]) -> dict[str, Any]:
    """A heatmap spec (plain dict for plotly): counts in the cells, rows = true labels."""
    return {"data": [{"type": "heatmap", "z": matrix, "x": names, "y": names, "colorscale": "Blues",
                      "text": matrix, "texttemplate": "%{text}", "hovertemplate":
                      "true %{y}, predicted %{x}: %{z}<extra></extra>", "showscale": False}],
            "layout": _layout("Confusion matrix (final eval)", "predicted", "true", reversed_y=True)}


def _layout(title: str, x: str, y: str, reversed_y: bool = False) -> dict[str, Any]:
    base = charts.base_layout()
    yaxis = {**base["yaxis"], "title": {"text": y}, **({"autorange": "reversed"} if reversed_y else {})}
    return {**base, "height": 320, "title": {**base["title"], "text": title},
            "xaxis": {**base["xaxis"], "title": {"text": x}}, "yaxis": yaxis}


def soup_partners(rec: Any, finished: Sequence[Any]) -> list[Any]:
    """Other finished training runs of the same model and task: what a soup can mix with ``rec``."""
    key = (rec.config.get("model"), rec.config.get("task"))
    return [r for r in finished if r.id != rec.id and r.kind == "train"
            and (r.config.get("model"), r.config.get("task")) == key]


def job_results(kind: str, metrics: pd.DataFrame) -> pd.DataFrame:
    """The job's eval metrics, one row per point, with its own x (a, sparsity, soup number)."""
    title, to_x = JOB_AXES[kind]
    ev = metrics[metrics["name"].str.startswith("eval/")]
    table = ev.pivot_table(index="step", columns="name", values="value").reset_index()
    table.insert(0, title, table.pop("step").map(to_x))
    return table


def job_figure(table: pd.DataFrame, metric: str) -> dict[str, Any]:
    x = table.columns[0]
    return {"data": [{"type": "scatter", "mode": "lines+markers", "x": table[x].tolist(),
                      "y": table[metric].tolist(), "name": metric}],
            "layout": _layout(f"{metric} along the job", x, metric)}


def section(store: Any, mgr: Any, rec: Any) -> None:
    import streamlit as st

    from hft_core.config import ConfigError
    from hft_core.store import StoreError

    if rec.kind in JOB_AXES:
        table = job_results(rec.kind, store.metrics(rec.id))
        if table.empty:
            st.caption("No results yet: they appear point by point while the job runs.")
            return
        st.markdown("#### Results")
        metric = "eval/accuracy" if "eval/accuracy" in table else table.columns[1]
        st.plotly_chart(job_figure(table, metric), key="after.job", theme=None)
        st.dataframe(table, hide_index=True)
        return
    if rec.kind != "train" or rec.status != "finished":
        return
    with st.expander("After training: confusion matrix, WiSE-FT, pruning, soups", icon=":material/science:"):
        found = confusion(store.events(rec.id, limit=1000))
        if found:
            st.plotly_chart(confusion_figure(*found), key="after.confusion", theme=None)
        elif rec.config.get("task") == "classification":
            st.caption("No confusion matrix was logged (the run had no final eval).")
        if baselines.is_baseline(rec.config.get("model", "")):
            st.caption("A baseline has no weights to interpolate, prune or average: WiSE-FT, pruning and soups "
                       "apply to neural runs.")
            return
        a, b, c = st.columns(3)
        points = a.number_input("WiSE-FT points", 2, 21, 11, key="after.points",
                                help="Evaluations along the line from the starting to the fine-tuned weights.")
        sparsities = b.multiselect("Sparsities", SPARSITIES, default=SPARSITIES, key="after.sparsities")
        partners = soup_partners(rec, store.list_runs(status="finished", limit=200))
        mates = c.multiselect("Soup with", [r.id for r in partners], key="after.mates",
                              format_func=lambda rid: next(f"{r.name or r.id} ({rid})" for r in partners if r.id == rid),
                              help="Other finished fine-tunings of the same model and task.")
        jobs = {"wise_ft": {"of": rec.id, "points": int(points)}, "prune": {"of": rec.id, "sparsities": sparsities},
                "soup": {"of": [rec.id, *mates]}}
        labels = {"wise_ft": "Queue WiSE-FT", "prune": "Queue pruning", "soup": "Queue soup"}
        for col, kind in zip((a, b, c), jobs):
            if col.button(labels[kind], key=f"after.{kind}", use_container_width=True,
                          disabled=kind == "soup" and not mates):
                try:
                    job_id = mgr.submit_job(kind, jobs[kind], group=rec.group)
                except (ConfigError, StoreError) as e:
                    st.error(str(e))
                else:
                    st.success(f"Queued as run {job_id}: it starts when the device is free, and its results "
                               "show here when you select it (and on Live while it runs).")
