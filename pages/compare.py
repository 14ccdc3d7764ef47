"""Compare: overlay runs, finished or still training.

Stable colours per run, debiased-EMA smoothing with the raw curve kept faint, log
scale, x as step / wall time / tokens seen, seeds of one config drawn as mean and
band, paired deltas against a baseline at the same step, each variant's final value
with a 95% interval over seeds and paired differences (ui.comparison_view), final
metrics, the config fields that differ, and the curves as CSV and the chart as HTML.
"""
from __future__ import annotations

import streamlit as st

from hft_core import charts, report
from hft_core.store import DONE_STATUSES
from ui import comparison_view, live_feed, url_state
from ui import state as ui_state
from ui.live_chart import live_charts

ui_state.through_app()  # first: a page opened by its URL on a fresh server runs inside app.py

ss = st.session_state
ACTIVE = ("queued", "running")
PREFERRED = ["loss", "eval/accuracy", "eval/macro_f1", "eval/loss", "eval/perplexity", "eval/roc_auc", "lr",
             "samples_per_s", "tokens_per_s", "grad_norm", "peak_mem_mb"]
HIDDEN = {"progress", "params_total", "params_trainable", "tokens_seen"}

st.title("Compare")
flash = ss.pop("compare.flash", None)
if flash:
    st.toast(flash, icon=":material/rocket_launch:")
store = ui_state.store()
all_runs = store.list_runs(limit=500)
by_id = {r.id: r for r in all_runs}
if not all_runs:
    st.info("No runs yet. Start one on the Train page; runs can be compared while they train.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/play_arrow:")
    st.stop()

# ---- which runs --------------------------------------------------------------------------------
groups = store.groups()


def _pick_group() -> None:
    g = ss.get("compare.group")
    if g:
        ss["compare.runs"] = [r.id for r in store.list_runs(group=g)]
        preset = comparison_view.preset_of(g)
        if preset is not None:  # a preset's group: its key metric, the one its checks and table are about
            ss["compare.metric"] = preset.metric


if "compare.runs" not in ss or not isinstance(ss["compare.runs"], list):  # first view: the link's selection
    ss["compare.group"], link_runs, link_metric, notes = url_state.read_compare(st.query_params.to_dict(), by_id,
                                                                                 groups)
    ss["compare.runs"] = link_runs if link_runs is not None else [r.id for r in all_runs[:2]]
    _pick_group()
    if link_metric:
        ss["compare.metric"] = link_metric
    for note in notes:
        st.warning(note, icon=":material/link_off:")
ss["compare.runs"] = [r for r in ss["compare.runs"] if r in by_id]

left, right = st.columns([1, 3], vertical_alignment="bottom")
left.selectbox("Group", ["", *groups], key="compare.group", on_change=_pick_group,
               format_func=lambda g: g or "(pick runs by hand)",
               help="A sweep or preset shares a group: pick it to select all of its runs.")
right.multiselect("Runs", [r.id for r in all_runs], key="compare.runs",
                  format_func=lambda rid: ui_state.run_label(by_id[rid]),
                  placeholder="choose runs to overlay")
selected = [by_id[r] for r in ss["compare.runs"]]
if not selected:
    st.info("Choose one or more runs (or a group) above.")
    st.stop()

# ---- how to draw -------------------------------------------------------------------------------
names: set[str] = set()
for rec in selected:
    names.update(store.metric_names(rec.id))
metrics = [m for m in PREFERRED if m in names] + sorted(n for n in names if n not in PREFERRED and n not in HIDDEN)
if not metrics:
    metrics = ["loss"]
want = ss.get("compare.metric")
if want and want not in metrics and any(r.status in ACTIVE for r in selected):
    metrics.append(want)  # e.g. a preset's eval metric before its first eval: keep it, points will come
if ss.get("compare.metric") not in metrics:
    ss["compare.metric"] = metrics[0]
ss.setdefault("compare.x", "step")
ss.setdefault("compare.smoothing", 0.6)
ss.setdefault("compare.band", "minmax")

c1, c2, c3, c4 = st.columns([3, 3, 3, 2], vertical_alignment="bottom")
c1.selectbox("Metric", metrics, key="compare.metric", format_func=charts.axis_title)
c2.segmented_control("x axis", list(charts.X_AXES), key="compare.x", format_func=lambda k: charts.X_AXES[k],
                     required=True)
c3.slider("smoothing", 0.0, 0.99, step=0.01, key="compare.smoothing",
          help="Debiased exponential moving average, as in TensorBoard (0 = off). The raw curve stays, faint.")
c4.toggle("log scale", key="compare.log")
group = ss.get("compare.group") or ""
if group and set(ss["compare.runs"]) != {r.id for r in store.list_runs(group=group)}:
    group = ""  # runs added or removed by hand: the link names them
if (link := url_state.compare_params(group, ss["compare.runs"], ss["compare.metric"])) != st.query_params.to_dict():
    st.query_params.from_dict(link)  # a reload or a shared link reopens this comparison

configs = {r.id: r.config for r in selected}
seed_groups = charts.seed_groups(configs)
baseline_options = ["", *[r.id for r in selected]]
if ss.get("compare.baseline") not in baseline_options:
    ss["compare.baseline"] = ""
d1, d2, d3 = st.columns([3, 3, 5], vertical_alignment="bottom")
d1.toggle(f"Seeds as mean + band ({len(seed_groups)} group{'s' if len(seed_groups) != 1 else ''})",
          key="compare.seeds", disabled=not seed_groups,
          help="Runs whose configs differ only by seed are drawn as one mean line with a band.")
d2.segmented_control("band", ["minmax", "sd"], key="compare.band", required=True,
                     format_func=lambda b: "min–max" if b == "minmax" else "±1 sd",
                     disabled=not (seed_groups and ss.get("compare.seeds")))
d3.selectbox("Paired deltas against", baseline_options, key="compare.baseline",
             format_func=lambda rid: ui_state.run_label(by_id[rid], with_status=False) if rid else "(no baseline)",
             help="Each run's value minus the baseline's at the same step: above 0 = higher than the baseline.")

labels = {r.id: r.name or r.id for r in selected}
if len(set(labels.values())) < len(labels):  # same names (e.g. seeds of a preset): add the id
    labels = {r.id: f"{r.name or r.id} ({r.id})" for r in selected}
colors = charts.run_colors([r.id for r in sorted(selected, key=lambda r: r.created)])
any_active = any(r.status in ACTIVE for r in selected)


def chart_panel() -> None:
    fresh = {r.id: r for r in store.list_runs(limit=500) if r.id in ss["compare.runs"]}
    statuses = {rid: rec.status for rid, rec in fresh.items()}
    # only the rows newer than those already read; a figure that only grew reaches the browser as its new points
    logs = live_feed.read_logs(store, ss.setdefault("compare.logs", {}), fresh.values(), DONE_STATUSES)
    metric, x = ss["compare.metric"], ss["compare.x"]
    smoothing = float(ss["compare.smoothing"])
    groups = seed_groups if ss.get("compare.seeds") else []
    fig = live_feed.figure(ss.setdefault("compare.figures", {}), "main", logs, metric, x=x, labels=labels,
                           colors=colors, smoothing=smoothing, log_y=bool(ss.get("compare.log")), groups=groups,
                           band=ss["compare.band"], uirevision=f"compare-{metric}-{x}", height=430)
    df = live_feed.frame_of(logs)
    shown = [("main", "", fig)]
    baseline = ss.get("compare.baseline")
    deltas = None
    if baseline:
        frame = charts.smooth_frame(charts.series_frame(df, metric, x), smoothing)
        deltas = charts.paired_deltas(frame, baseline)
        shown.append(("delta", "", charts.delta_spec(deltas, metric, labels.get(baseline, baseline), x=x,
                                                     labels=labels, colors=colors, uirevision=f"delta-{metric}-{x}")))
    pace = ui_state.pace(fresh.values())  # slower where a run trains on the browser's own CPU
    live_charts(shown, key="compare.charts", columns=1,  # one iframe: plotly.js parsed once
                poll=pace.refresh if any(s in ACTIVE for s in statuses.values()) else 0.0, budget=pace.budget)
    if deltas is not None and not deltas.empty:
        last = deltas.sort_values("step").groupby("run_id").tail(1)
        unit = charts.metric_info(metric)[1]
        st.caption("Latest paired delta: " + "; ".join(
            f"{labels.get(r.run_id, r.run_id)} {r.delta:+.4g}{' ' + unit if unit else ''} at step {r.step}"
            for r in last.itertuples()))
    empty = [rid for rid in fresh if df.empty or not (df["run_id"] == rid).any()]
    if empty:
        st.caption("No points yet: " + ", ".join(f"{labels.get(r, r)} ({statuses[r]})" for r in empty))
    if any(s in ACTIVE for s in statuses.values()):
        st.caption(f"Some of these runs are still training: the charts refresh every {pace.refresh:.0f} s.")
    elif any_active:
        st.rerun()  # the last one ended: draw the page once more, now without the timer
    ss["compare.last_df"] = df
    ss["compare.last_fig"] = fig


st.fragment(chart_panel)()  # rerun every 2-3 s by the chart iframe while runs train and the tab is shown

# ---- a preset's group: the user's own runs against the preset's expected outcome ---------------
from hft_core import presets  # noqa: E402
from ui.preset_outcome import render_preset_outcome  # noqa: E402

if (group_preset := presets.preset_named(presets.preset_of_group(ss.get("compare.group") or ""))) is not None:
    with st.expander("Did the preset's expected outcome hold on these runs?", expanded=True):
        render_preset_outcome(group_preset, store, [ss["compare.group"]])

from ui import study_view  # noqa: E402  (a search study: best so far, parameters, importance, the trials' curves)

if study_view.has_studies(store.home):
    with st.expander("Search studies: best so far, parameters, importance, the trials' curves", expanded=True):
        study_view.render_study_view(store, ss.get("compare.group") or "")

tab_seeds, tab_final, tab_diff, tab_export = st.tabs(["Over seeds: means, intervals, differences", "Final metrics",
                                                      "Config diff", "Export"])
df = ss.get("compare.last_df")
with tab_seeds:
    comparison_view.render_comparison(store, ss["compare.runs"], ss["compare.metric"], ss.get("compare.group") or "")
with tab_final:
    table = charts.final_metrics_table(df, labels)
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.4g")
                                                        for c in table.columns if c != "run"})
with tab_diff:
    diff = charts.config_diff(configs, labels, ignore=("name",))
    if diff.empty:
        st.caption("The selected runs have identical configs (apart from their names).")
    else:
        st.caption("Only the fields that differ. A strategy that is off in a run shows as *off*, its fields as *-*.")
        st.dataframe(diff, column_config={"field": st.column_config.TextColumn(width="medium")})
with tab_export:
    fig = ss.get("compare.last_fig")
    e1, e2, e3 = st.columns(3)
    e1.download_button("Curves as CSV (all metrics of these runs)", lambda: charts.curves_csv(df, labels),
                       file_name="curves.csv", mime="text/csv", icon=":material/download:", on_click="ignore")
    if fig is not None:
        e2.download_button("Chart as HTML (interactive, opens offline)", lambda: charts.figure_html(fig),
                           file_name=f"{ss['compare.metric'].replace('/', '_')}.html", mime="text/html",
                           icon=":material/download:", on_click="ignore")
    e3.download_button("Report (one HTML file: curves, intervals, config diff, environment)",
                       lambda: report.build_report(store, ss["compare.runs"], group=ss.get("compare.group") or "",
                                                   metric=ss["compare.metric"]),
                       file_name=f"{ss.get('compare.group') or 'runs'}-report.html", mime="text/html",
                       icon=":material/download:", on_click="ignore", key="compare.report")
    st.caption("PNG: use the camera icon in the chart's toolbar (server-side PNG export needs kaleido, which is "
               "not installed).")
