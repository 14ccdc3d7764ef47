"""Live: every queued and running run, with progress, ETA and curves that grow by themselves.

The page polls the store, never the training threads: a fragment re-runs every
second while something is queued or running, reads only the rows newer than what it
already has, and redraws. With nothing active it does not poll at all. Charts are
ui.live_chart components updated in place with a constant ``uirevision``, so a zoom
survives the refreshes. Pause freezes what is shown (the timer keeps its rhythm:
changing it would re-create the fragment and its charts, and lose the zoom).
"""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from hft_core import charts
from ui import state as ui_state
from ui.live_chart import live_charts

ui_state.through_app()  # first: a page opened by its URL on a fresh server runs inside app.py

ss = st.session_state
ACTIVE = ["queued", "running"]
DONE = ["finished", "stopped", "failed", "interrupted"]
REFRESH_S = 1.0            # the loss curve: every new point within a second
SECONDARY_REFRESH_S = 3.0  # terms, eval, throughput, lr: enough to follow, a third of the redraw cost
CHART_HEIGHT = 280

store = ui_state.store()
mgr = ui_state.manager()

for k, v in {"live.paused": False, "live.recent": 3, "live.x": "step", "live.smoothing": 0.0}.items():
    ss.setdefault(k, v)
t, c1, c2, c3, c4 = st.columns([1.4, 2.4, 1.5, 3, 2.5], vertical_alignment="bottom")
t.title("Live")
paused = c1.toggle("Pause live updates", key="live.paused",
                   help="Freeze the charts, e.g. to study a zoomed region. Training goes on; un-pause to catch up.")
c2.number_input("Ended runs shown", min_value=0, max_value=20, step=1, key="live.recent",
                help="How many of the most recently ended runs stay on this page.")
c3.segmented_control("x axis", list(charts.X_AXES), key="live.x", format_func=lambda k: charts.X_AXES[k],
                     required=True)
c4.slider("smoothing", 0.0, 0.99, step=0.01, key="live.smoothing",
          help="Debiased exponential moving average (as in TensorBoard); the raw curve stays, faint.")

has_active = bool(store.list_runs(status=ACTIVE, limit=1))
run_every = REFRESH_S if has_active else None
note = st.empty()  # always there: an element appearing above the fragment would change its identity
if paused and has_active:  # (and a new fragment identity means new charts: the zoom would be lost)
    note.caption(":material/pause: Paused: the charts are frozen; training continues in the background.")


def _progress_text(rec, df: pd.DataFrame, queue_pos: int | None) -> tuple[float, str]:
    prog = df[(df["run_id"] == rec.id) & (df["name"] == "progress")] if not df.empty else df
    frac, eta = charts.progress_eta(prog["wall_time"].tolist(), prog["value"].tolist()) if not prog.empty \
        else (0.0, None)
    step = int(prog["step"].max()) if not prog.empty else 0
    total = rec.config.get("max_steps", "?")
    if rec.status == "queued":
        where = f"number {queue_pos} in the queue" if queue_pos else "in the queue"
        return 0.0, f"waiting for {rec.device or 'the device'} ({where})"
    if rec.status == "running":
        if not step:
            return 0.0, "loading model and data…"
        return frac, f"step {step} / {total} · {frac:.0%} · ETA {charts.format_seconds(eta)}"
    last = store.last_metrics(rec.id)
    shown = [f"step {int(last.get('step', step))} / {total}"]
    for k in ("eval/accuracy", "eval/loss", "loss"):
        if k in last:
            label, unit, scale = charts.metric_info(k)
            shown.append(f"{label} {last[k] * scale:.3g}{' %' if unit == '%' else ''}")
            break
    shown.append(f"took {ui_state.duration(rec)}, ended {ui_state.ago(rec.ended)}")
    return frac, " · ".join(shown)


def _run_row(rec, df: pd.DataFrame, queue_pos: int | None, color: str) -> None:
    with st.container(border=True, key=f"run-{rec.id}"):
        a, b, c = st.columns([3.8, 5, 1.4], vertical_alignment="center")
        a.markdown(f"<span style='color:{color}'>━━</span> **{rec.name or rec.id}** · `{rec.id}` · "
                   f"{ui_state.status_badge(rec.status)}", unsafe_allow_html=True)
        frac, text = _progress_text(rec, df, queue_pos)
        b.progress(min(max(frac, 0.0), 1.0), text=text)
        with c:
            if rec.status in ACTIVE:
                if st.button("Stop" if rec.status == "running" else "Cancel", key=f"live.stop.{rec.id}",
                             icon=":material/stop:", use_container_width=True,
                             help="Stops after the current step; keeps its metrics and a checkpoint to resume from."):
                    mgr.stop(rec.id)
                    st.rerun(scope="fragment")
            elif rec.status in ("stopped", "interrupted", "failed"):
                if st.button("Resume", key=f"live.resume.{rec.id}", icon=":material/play_arrow:",
                             use_container_width=True, help="Continue from its last checkpoint, same run id."):
                    try:
                        mgr.resume(rec.id)
                    except Exception as e:  # e.g. failed before any checkpoint: say so, keep the page
                        st.error(f"Cannot resume {rec.id}: {e}")
                    else:
                        st.rerun()
        if rec.status == "failed":
            st.error(f"**Failed:** {rec.error or 'no message was recorded'}", icon=":material/error:")
            if rec.traceback:
                with st.expander("Traceback"):
                    st.code(rec.traceback, language="text")
        elif rec.status == "interrupted" and rec.error:
            st.warning(rec.error, icon=":material/warning:")


def _panel(df: pd.DataFrame, metric, key: str, title: str, labels, colors, every: float = REFRESH_S,
           **kw) -> tuple[str, str, dict]:
    """One chart's (id, title, figure), rebuilt only when its inputs changed and at most every ``every`` s.

    Redrawing is what costs (mostly in the browser, which shares the CPU with training),
    so a paused or idle refresh reuses the figure, and the secondary charts redraw less
    often than the loss curve.
    """
    settings = (ss["live.x"], float(ss["live.smoothing"]), str(metric), tuple(sorted(labels.items())),
                tuple(sorted(colors.items())), tuple(sorted(kw.items())))
    data_version = (len(df), float(df["wall_time"].max()) if len(df) else 0.0)
    specs = ss.setdefault("live.specs", {})
    old = specs.get(key)
    now = time.monotonic()
    if old is None or old[0] != settings or (old[1] != data_version and now - old[2] >= every):
        specs[key] = (settings, data_version, now,
                      charts.metric_spec(df, metric, x=ss["live.x"], labels=labels, colors=colors,
                                         smoothing=float(ss["live.smoothing"]), uirevision=f"live-{key}",
                                         height=CHART_HEIGHT, **kw))
    return key, title, specs[key][3]


def _snapshot() -> tuple[list, list, pd.DataFrame]:
    """(active runs, recently ended runs, their metrics) as of now."""
    active = store.list_runs(status=ACTIVE)
    ended = sorted(store.list_runs(status=DONE, limit=50), key=lambda r: r.ended or r.created, reverse=True)
    ended = ended[: int(ss["live.recent"])]
    active = sorted(active, key=lambda r: (r.status != "running", r.position))
    runs = active + ended
    df = ui_state.cached_metrics("live", [r.id for r in runs], {r.id: r.status for r in runs})
    return active, ended, df


def live_panel() -> None:
    if ss["live.paused"] and ss.get("live.snapshot") is not None:
        active, ended, df = ss["live.snapshot"]  # frozen: no store reads, same figures
    else:
        active, ended, df = ss["live.snapshot"] = _snapshot()
        if not active and ss.get("live.polling"):
            ss["live.polling"] = False
            st.rerun()  # the last run ended: redraw the page once, now without the timer
        ss["live.polling"] = bool(active)
    runs = active + ended
    if not runs:
        st.info("Nothing is training right now. Start a run on the Train page; it shows up here at once.",
                icon=":material/info:")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/play_arrow:")
        return
    colors = charts.run_colors([r.id for r in sorted(runs, key=lambda r: r.created)])
    labels = {r.id: r.name or r.id for r in runs}
    if len(set(labels.values())) < len(labels):
        labels = {r.id: f"{r.name or r.id} ({r.id})" for r in runs}

    queued = [r.id for r in active if r.status == "queued"]
    for rec in active:
        _run_row(rec, df, queued.index(rec.id) + 1 if rec.id in queued else None, colors[rec.id])
    if not active:  # nothing training: the runs that just ended are the news, above the charts
        for rec in ended:
            _run_row(rec, df, None, colors[rec.id])

    names = set(df["name"].unique()) if not df.empty else set()
    terms = sorted(n for n in names if n.startswith("loss/"))
    panels: list[tuple[str, object, str, dict]] = [("loss", "loss", "Training loss (total)", {})]
    if len(terms) > 1 or any(t != "loss/task" for t in terms):
        panels.append(("terms", terms, "Loss terms (each one's share of the total)", {"y_title": "loss term (nats)"}))
    panels.append(("eval", "eval/accuracy" if "eval/accuracy" in names or "eval/loss" not in names else "eval/loss",
                   "Evaluation on held-out data", {}))
    panels += [("throughput", "samples_per_s", "Throughput", {}), ("lr", "lr", "Learning rate", {})]
    figures = []
    for key, metric, title, kw in panels:
        # with nothing active this is the last draw: show every point
        every = 0.0 if not active else REFRESH_S if key == "loss" else SECONDARY_REFRESH_S
        figures.append(_panel(df, metric, key, title, labels, colors, every=every, **kw))
    live_charts(figures, key="live.charts", columns=2, polling=bool(active))

    if ended and active:
        st.markdown("**Recently ended**")
        for rec in ended:
            _run_row(rec, df, None, colors[rec.id])
    if not active:
        st.button("Refresh", icon=":material/refresh:", key="live.refresh")


st.fragment(live_panel, run_every=run_every)()
# Outside the fragment: a button redrawn every second can lose a click that lands mid-redraw.
shown = ss.get("live.snapshot")
if shown and (shown[0] or shown[1]):
    if st.button("Compare these runs", icon=":material/stacked_line_chart:", key="live.compare",
                 help="Open the runs shown here on Compare, overlaid."):
        active_now, ended_now, _ = ss["live.snapshot"]
        ss["compare.runs"] = [r.id for r in active_now + ended_now]
        st.switch_page("pages/compare.py")
flash = ss.pop("live.flash", None)
if flash:
    st.toast(flash, icon=":material/rocket_launch:")
