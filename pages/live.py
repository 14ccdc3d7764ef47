"""Live: every queued and running run, with progress, ETA and curves that grow by themselves.

The page polls the store, never the training threads, and does work in proportion to
what changed (it shares the CPU, and in the app the GIL, with the training it shows):

- While something is queued or running, the chart iframe asks every 2 s (every second
  while a run's first point is awaited; every 3 s while a run trains on the CPU of the
  machine the browser runs on; never while the tab is hidden) for what is new:
  a fragment reads only the rows newer than those it has (ui.live_feed), extends the
  figures by them, and the iframe is sent only the new points (ui.live_chart), drawing
  only charts on screen. The same fragment refreshes the running runs' progress and ETA
  in their rows; the rows themselves (names, buttons, ended runs) are drawn once.
- With nothing active, a tiny fragment looks every 1.5 s at the active runs and the
  newest run: a run started anywhere (the CLI, a notebook, another tab) shows up within
  seconds, without a click.
- When the set of runs shown or a status changes, the page is drawn once in full.

Charts keep the user's zoom (constant ``uirevision``). Pause freezes what is shown
(training goes on).
"""
from __future__ import annotations

import streamlit as st

from hft_core import charts
from hft_core.store import DONE_STATUSES, StoreError
from ui import live_chart, live_feed
from ui import state as ui_state

ui_state.through_app()  # first: a page opened by its URL on a fresh server runs inside app.py

ss = st.session_state
ACTIVE = list(ui_state.ACTIVE_STATUSES)
DONE = list(DONE_STATUSES)
RESUMABLE = ("stopped", "pruned", "interrupted", "failed")
FIRST_POINT_S = 1.0        # new points every second while a run's first point is awaited (a start should feel
#                            quick), then at ui_state.pace: every 2 s, or 3 s where a run shares the browser's CPU
WATCH_S = 1.5              # with nothing active: how often to look for a run started elsewhere
CHART_HEIGHT = 280
CHARTS = "live.charts"

store = ui_state.store()
mgr = ui_state.manager()

for k, v in {"live.paused": False, "live.recent": 3, "live.x": "step", "live.smoothing": 0.0}.items():
    ss.setdefault(k, v)
# no animations on what refreshes every second: a progress bar jumps instead of sliding, and elements
# do not fade while their fragment reruns (each of those animations redraws the page for a while)
st.html("<style>[data-testid='stProgress'] *, [data-testid='stElementContainer'] "
        "{ transition: none !important; }</style>")
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


def _runs() -> tuple[list, list]:
    """(active runs, running first then queue order; the most recently ended runs, newest first)."""
    active = sorted(store.list_runs(status=ACTIVE), key=lambda r: (r.status != "running", r.position))
    ended = sorted(store.list_runs(status=DONE, limit=50), key=lambda r: r.ended or r.created, reverse=True)
    return active, ended[: int(ss["live.recent"])]


def _store_mark() -> tuple:
    """Cheap to read every 1.5 s: the active runs and their statuses, and the newest run."""
    newest = store.list_runs(limit=1)
    return (tuple((r.id, r.status) for r in store.list_runs(status=ACTIVE)),
            (newest[0].id, newest[0].status) if newest else None)


if not paused or "live.snapshot" not in ss:
    ss["live.snapshot"] = _runs()
    ss["live.mark"] = _store_mark()
active, ended = ss["live.snapshot"]
note = st.empty()  # always there: an element appearing above the fragment would change its identity
if paused and active:
    note.caption(":material/pause: Paused: the charts are frozen; training continues in the background.")


def _progress(rec, log: live_feed.RunLog, queue_pos: int | None) -> tuple[float, str]:
    frac, eta, step = log.progress()
    total = rec.config.get("max_steps", "?")
    if rec.status == "queued":
        where = f"number {queue_pos} in the queue" if queue_pos else "in the queue"
        return 0.0, f"waiting for {rec.device or 'the device'} ({where})"
    if rec.status == "running":
        if not step:
            return 0.0, "loading model and data…"
        return frac, f"step {step} / {total} · {frac:.0%} · ETA {charts.format_seconds(eta)}"
    shown = [f"step {log.last_step or step} / {total}"]
    for k in ("eval/accuracy", "eval/loss", "loss"):
        if log.last(k) is not None:
            label, unit, scale = charts.metric_info(k)
            shown.append(f"{label} {log.last(k) * scale:.3g}{' %' if unit == '%' else ''}")
            break
    shown.append(f"took {ui_state.duration(rec)}, ended {ui_state.ago(rec.ended)}")
    return frac, " · ".join(shown)


def _stop(rec) -> None:
    try:
        mgr.stop(rec.id)
    except (StoreError, ValueError, KeyError) as e:  # e.g. it ended meanwhile: say so, never a silent button
        ss.setdefault("live.stop_errors", {})[rec.id] = (rec.status, str(e))
        st.toast(f"Cannot stop {rec.name or rec.id}: {e}", icon=":material/warning:")


def _run_row(rec, log: live_feed.RunLog, queue_pos: int | None, color: str) -> None:
    with st.container(border=True, key=f"run-{rec.id}"):
        a, b, c = st.columns([3.8, 5, 1.4], vertical_alignment="center")
        a.markdown(f"<span style='color:{color}'>━━</span> **{rec.name or rec.id}** · `{rec.id}` · "
                   f"{ui_state.status_badge(rec.status)}", unsafe_allow_html=True)
        slot = b.empty()
        if rec.status == "running":  # the chart fragment refills it every second; the row itself stays put
            ss.setdefault("live.progress_slots", {})[rec.id] = slot
        frac, text = _progress(rec, log, queue_pos)
        slot.progress(min(max(frac, 0.0), 1.0), text=text)
        with c:
            if rec.status in ACTIVE:
                st.button("Stop" if rec.status == "running" else "Cancel", key=f"live.stop.{rec.id}",
                          icon=":material/stop:", use_container_width=True, on_click=_stop, args=(rec,),
                          help="Stops after the current step; keeps its metrics and a checkpoint to resume from.")
            elif rec.status in RESUMABLE:
                if st.button("Resume", key=f"live.resume.{rec.id}", icon=":material/play_arrow:",
                             use_container_width=True, help="Continue from its last checkpoint, same run id."):
                    try:
                        mgr.resume(rec.id)
                    except Exception as e:  # e.g. failed before any checkpoint: say so, keep the page
                        st.error(f"Cannot resume {rec.id}: {e}")
                    else:
                        st.rerun()
        refused = ss.get("live.stop_errors", {}).get(rec.id)
        if refused and refused[0] == rec.status:
            st.warning(f"Not stopped: {refused[1]}", icon=":material/warning:")
        if rec.status == "failed":
            st.error(f"**Failed:** {rec.error or 'no message was recorded'}", icon=":material/error:")
            if rec.traceback:
                with st.expander("Traceback"):
                    st.code(rec.traceback, language="text")
        elif rec.status == "interrupted" and rec.error:
            st.warning(rec.error, icon=":material/warning:")


def _figures(logs: list, colors: dict, labels: dict, names: set, secondary: float) -> list[tuple[str, str, dict]]:
    """(panel id, title, figure) of the five charts: extended by new points, each at most every few seconds."""
    terms = sorted(n for n in names if n.startswith("loss/"))
    panels: list[tuple[str, object, str, dict]] = [("loss", "loss", "Training loss (total)", {})]
    if len(terms) > 1 or any(t != "loss/task" for t in terms):
        panels.append(("terms", terms, "Loss terms (each one's share of the total)", {"y_title": "loss term (nats)"}))
    panels.append(("eval", "eval/accuracy" if "eval/accuracy" in names or "eval/loss" not in names else "eval/loss",
                   "Evaluation on held-out data", {}))
    panels += [("throughput", "samples_per_s", "Throughput", {}), ("lr", "lr", "Learning rate", {})]
    cache = ss.setdefault("live.figures", {})
    out = []
    for key, metric, title, kw in panels:
        every = 0.0 if key == "loss" or not active else secondary
        fig = live_feed.figure(cache, key, logs, metric, every=every, x=ss["live.x"], labels=labels,
                                         colors=colors, smoothing=float(ss["live.smoothing"]), height=CHART_HEIGHT,
                                         uirevision=f"live-{key}", **kw)
        out.append((key, title, fig))
    return out


def _labels(runs: list) -> tuple[dict, dict]:
    """(run id -> colour, run id -> label); a name shared by several runs gets the run id too."""
    colors = charts.run_colors([r.id for r in sorted(runs, key=lambda r: r.created)])
    labels = {r.id: r.name or r.id for r in runs}
    if len(set(labels.values())) < len(labels):
        labels = {r.id: f"{r.name or r.id} ({r.id})" for r in runs}
    return colors, labels


def live_panel() -> None:
    """Each tick of the chart iframe (every second while runs train and the tab is shown): the new
    rows -> the running runs' progress and the charts' new points."""
    if not ss["live.paused"]:
        if _store_mark() != ss["live.mark"]:
            st.rerun()  # a run started, ended or changed status: draw the page once in full
        ss["live.logs_shown"] = live_feed.read_logs(store, ss.setdefault("live.logs", {}), active + ended, DONE)
    logs = ss.get("live.logs_shown", [])
    by_id = {log.run_id: log for log in logs}
    for rec in active:
        slot = ss.get("live.progress_slots", {}).get(rec.id)
        if rec.status == "running" and slot is not None:
            frac, text = _progress(rec, by_id.get(rec.id) or live_feed.RunLog(rec.id), None)
            slot.progress(min(max(frac, 0.0), 1.0), text=text)
    names = {n for log in logs for n in log.series}
    colors, labels = _labels(active + ended)
    awaited = any(by_id.get(r.id) is None or "loss" not in by_id[r.id].series for r in active)
    pace = ui_state.pace(active)
    live_chart.live_charts(_figures(logs, colors, labels, names, pace.secondary), key=CHARTS, columns=2,
                           paused=ss["live.paused"], eager=awaited, budget=pace.budget,
                           poll=0.0 if not active or ss["live.paused"] else FIRST_POINT_S if awaited else pace.refresh,
                           every=dict.fromkeys(("terms", "eval", "throughput", "lr"), pace.secondary))


if not paused:
    ss["live.logs_shown"] = live_feed.read_logs(store, ss.setdefault("live.logs", {}), active + ended, DONE)
if not active and not ended:
    st.info("Nothing is training right now. Start a run on the Train page, or with `python -m hft_core train` "
            "in a terminal: it shows up here by itself.", icon=":material/info:")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/play_arrow:")
else:
    shown_logs = {log.run_id: log for log in ss.get("live.logs_shown", [])}
    colors, _ = _labels(active + ended)
    queued = [r.id for r in active if r.status == "queued"]
    ss["live.progress_slots"] = {}
    with st.container(key="live-rows"):  # nothing training: the runs that just ended are the news, above the charts
        for rec in active or ended:
            _run_row(rec, shown_logs.get(rec.id) or live_feed.RunLog(rec.id),
                     queued.index(rec.id) + 1 if rec.id in queued else None, colors[rec.id])
    # rows are drawn once per full run (a Stop click is never lost to a redraw); only this part refreshes
    st.fragment(live_panel)()  # rerun by the chart iframe's ticks (ui.live_chart: poll)
    if ended and active:
        st.markdown("**Recently ended**")
        for rec in ended:
            _run_row(rec, shown_logs.get(rec.id) or live_feed.RunLog(rec.id), None, colors[rec.id])


@st.fragment(run_every=WATCH_S if not active and not paused else None)
def watch_store() -> None:
    """With nothing active: a run started anywhere else appears within seconds."""
    if not active and not ss["live.paused"] and _store_mark() != ss["live.mark"]:
        st.rerun()


watch_store()
# Outside the fragment: a button redrawn every second can lose a click that lands mid-redraw.
if active or ended:
    if st.button("Compare these runs", icon=":material/stacked_line_chart:", key="live.compare",
                 help="Open the runs shown here on Compare, overlaid."):
        ss["compare.runs"] = [r.id for r in active + ended]
        st.switch_page("pages/compare.py")
flash = ss.pop("live.flash", None)
if flash:
    st.toast(flash, icon=":material/rocket_launch:")
