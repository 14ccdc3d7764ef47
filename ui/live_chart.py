"""Plotly charts that grow in place: the browser is sent new points only, and draws only what it shows.

Why not ``st.plotly_chart``: Streamlit derives a plotly element's id from its figure,
so every refresh with new points is a new element: the chart is re-created and any
zoom, pan or hidden legend entry is lost (Streamlit issue #5107, PEERS.md). Here one
iframe per ``key`` holds every chart of a page for the life of the page (plotly.js,
1.2 MB, parsed once per page, not once per chart).

What travels, and what the browser does with it (the browser shares a laptop's CPU
with the training it shows, so its work must follow what changed, not what is drawn):

- Each call compares every figure with the one sent last time (kept in the session).
  A figure that only grew (same layout and trace styles, longer x/y lists) is sent as
  its new points: a numbered chunk ``{seq, trace indices, x tails, y tails}``. Anything
  else (a settings change, a new run, markers dropped past 30 points) sends the whole
  figure under a new ``rev``, drawn with ``Plotly.react`` (the constant ``uirevision``
  keeps the user's zoom).
- The args keep the last few chunks, so a render the frontend skipped (React batches
  quick updates) loses nothing. An iframe that finds a gap, or a ``rev`` it never got
  the figure of (it was re-mounted, or the page was left and opened again), asks for
  the whole figures with ``setComponentValue({resync})``; the rerun that this causes
  sends them. (Sending whole figures on every full page run instead would redraw every
  chart whenever any widget changes.)
- The iframe queues points per chart and draws them with ``Plotly.extendTraces``: only
  charts on screen (IntersectionObserver), at most once a second each (``every``), one
  chart at a time within a CPU budget (a plotly redraw is a whole redraw, 15-80 ms), and
  nothing while the tab is hidden (Page Visibility API); what queued meanwhile is drawn
  when the chart or the tab shows again. A whole figure (a settings change) is drawn at once.

plotly.js is its basic bundle (scatter, bar, pie; 1.2 MB), fetched from npm by ``bash run.sh
setup`` at the version the installed ``plotly`` package bundles, or else the package's own full
bundle (4.8 MB; a run's first point waits ~1.5 s longer for it to parse). It is copied once into
``$HFT_HOME/cache`` next to a small index.html and served by Streamlit's component file server:
no network at run time, no build step.
"""
from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import plotly
import streamlit as st
import streamlit.components.v1 as components

from hft_core.home import cache_dir

KEEP_CHUNKS = 4  # chunks of new points kept in the args: a skipped render loses nothing
MIN_EVERY_S = 1.0   # a chart is redrawn with new points at most once a second ...
DRAW_BUDGET = 0.02  # ... and drawing new points takes at most 2 % of one core: a plotly redraw costs
#                   # 15-80 ms on a busy laptop core, so with several charts on screen they take turns

INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8">
<style>
html, body { margin: 0; padding: 0; overflow: hidden; background: transparent;
             font-family: "Source Sans Pro", "Source Sans 3", system-ui, sans-serif; color: rgb(49, 51, 63); }
#grid { display: grid; column-gap: 16px; row-gap: 8px; }
.title { font-weight: 600; font-size: 15px; line-height: 22px; height: 22px; margin: 0 0 2px 0;
         white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
</style>
</head><body><div id="grid"></div>
<script>
// The Streamlit component protocol, without the npm helper: ready -> render(args) -> setFrameHeight.
const DRAW_BUDGET = __DRAW_BUDGET__;  // share of one core that drawing new points may take (args.budget: less)
let drawBudget = DRAW_BUDGET;
const grid = document.getElementById("grid");
const cells = new Map();   // panel id -> cell (see cell())
const byBox = new Map();   // cell box element -> cell
let config = {};
let shape = "";            // panel ids, titles, heights, columns: the frame height changes only with these
let shownHeight = 0;
let timer = null, timerAt = Infinity;
let lastResync = -Infinity;
let appendAt = 0;  // when the budget allows the next append draw
let paused = false;  // the user froze the charts: new points wait
// What happened when (Date.now() ms), for benches and tests: this frame created, plotly.js loaded, the args first came,
// and each draw: {t, id, kind: "react" | "extend", ms}. The last 200 draws are kept.
window.hftTimeline = {created: Math.round(performance.timeOrigin), plotly: null, firstArgs: null, draws: []};
function logDraw(id, kind, ms) {
  const d = window.hftTimeline.draws;
  d.push({t: Date.now(), id: id, kind: kind, ms: ms});
  if (d.length > 200) d.shift();
}

function send(type, extra) {
  window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, extra || {}), "*");
}
// Only charts on screen are drawn; one that scrolls into view draws what it missed.
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) { const c = byBox.get(e.target); if (c) c.visible = e.isIntersecting; }
  schedule(0);
});
document.addEventListener("visibilitychange", () => schedule(0));  // draw what queued while hidden

function cell(id) {
  if (!cells.has(id)) {
    const box = document.createElement("div");
    const title = document.createElement("div");
    title.className = "title";
    const chart = document.createElement("div");
    box.appendChild(title);
    box.appendChild(chart);
    // rev/seq: the figure and the last chunk received; full/ext: what is waiting to be drawn
    const c = {id: id, box: box, title: title, chart: chart, rev: null, seq: 0, full: null, ext: new Map(),
               drawn: false, visible: false, lastDraw: -Infinity, every: 1000};
    cells.set(id, c);
    byBox.set(box, c);
    observer.observe(box);
  }
  return cells.get(id);
}
function queuePoints(c, chunk) {
  chunk.i.forEach((trace, k) => {
    let e = c.ext.get(trace);
    if (!e) { e = {x: [], y: []}; c.ext.set(trace, e); }
    const xs = chunk.x[k], ys = chunk.y[k];
    for (let j = 0; j < xs.length; j++) { e.x.push(xs[j]); e.y.push(ys[j]); }
  });
}
// Our value is the page's clock: each new value reruns the page's fragment, which answers with
// what is new. {tick}: asked every `poll` seconds while runs train and this tab is shown, the next
// ask only after the answer came (never a pile of reruns on a slow machine), and less often while
// answers bring nothing new. {resync}: send whole figures (we missed something).
let value = {tick: Date.now(), resync: 0};  // ticks unique across iframes: a new one never repeats an old value
let poll = 0, gap = 0, pollTimer = null, waiting = false, answered = null, news = false, eager = false;
function ask() {
  send("streamlit:setComponentValue", {value: Object.assign({}, value), dataType: "json"});
}
function askResync() {
  // at most every 2 s: the answer is a rerun, which brings the whole figures
  const now = performance.now();
  if (now - lastResync < 2000) return;
  lastResync = now;
  value.resync = Date.now() + Math.random();
  ask();
}
function tick() {
  pollTimer = null;
  if (!poll || document.visibilityState === "hidden") return;  // visibilitychange starts us again
  value.tick += 1; waiting = true;
  ask();
  pollTimer = setTimeout(tick, Math.max(5000, 5 * poll * 1000));  // an answer lost: ask again
}
function planTick() {
  // after an answer: data flowing -> every `poll` s; nothing new -> back off, up to 5x as long
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
  if (!poll) return;
  gap = news || eager ? poll : Math.min(gap * 1.5, 5 * poll);
  news = false;
  pollTimer = setTimeout(tick, gap * 1000);
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "hidden" && poll && !waiting && pollTimer === null) tick();
});
function schedule(ms) {
  const at = performance.now() + ms;
  if (timer !== null && timerAt <= at) return;
  if (timer !== null) clearTimeout(timer);
  timerAt = at;
  timer = setTimeout(flush, Math.max(0, ms));
}
function flush() {
  timer = null; timerAt = Infinity;
  if (!window.Plotly) return;                         // its onload brings us back
  if (document.visibilityState === "hidden") return;  // visibilitychange brings us back
  let now = performance.now();
  let wait = Infinity;
  let next = null;  // the chart whose new points are most overdue (relative to its own pace)
  for (const c of cells.values()) {
    if (!c.visible || (!c.full && (c.ext.size === 0 || paused))) continue;  // the observer brings us back
    if (c.full) {
      // a whole figure (first draw, settings change): at once. react, not newPlot: the same
      // uirevision keeps zoom, pan and legend clicks
      const t0 = performance.now();
      Plotly.react(c.chart, c.full.data, c.full.layout, config);
      logDraw(c.id, "react", performance.now() - t0);
      c.full = null; c.drawn = true; c.lastDraw = now;
      if (c.ext.size) wait = Math.min(wait, c.every);
      continue;
    }
    const due = c.lastDraw + c.every - now;
    if (due > 0) { wait = Math.min(wait, due); continue; }
    if (!next || (now - c.lastDraw) / c.every > (now - next.lastDraw) / next.every) next = c;
  }
  if (next) {
    now = performance.now();
    if (now < appendAt) {
      wait = Math.min(wait, appendAt - now);
    } else {
      const traces = Array.from(next.ext.keys());
      Plotly.extendTraces(next.chart, {x: traces.map((t) => next.ext.get(t).x),
                                       y: traces.map((t) => next.ext.get(t).y)}, traces);
      next.ext = new Map();
      const spent = performance.now() - now;
      logDraw(next.id, "extend", spent);
      next.lastDraw = now;
      appendAt = now + spent / drawBudget;  // the next chart's new points wait their turn
      wait = 0;
    }
  }
  if (wait < Infinity) schedule(wait);
}
window.addEventListener("message", (event) => {
  const msg = event.data;
  if (!msg || msg.type !== "streamlit:render") return;
  const args = msg.args;
  const panels = args.panels;
  if (window.hftTimeline.firstArgs === null) window.hftTimeline.firstArgs = Date.now();
  // the titles in the app's text colour (Streamlit sends its theme: light or dark, or a custom one)
  if (msg.theme && msg.theme.textColor) document.body.style.color = msg.theme.textColor;
  config = Object.assign({responsive: true, displaylogo: false}, args.config || {});
  paused = !!args.paused;
  drawBudget = args.budget || DRAW_BUDGET;
  document.body.dataset.paused = paused ? "1" : "";  // for tests: the state a pause assertion reads
  const keep = new Set(panels.map((p) => p.id));
  for (const [id, c] of cells) {
    if (!keep.has(id)) {
      observer.unobserve(c.box); byBox.delete(c.box); if (c.drawn) Plotly.purge(c.chart);
      c.box.remove(); cells.delete(id);
    }
  }
  const newShape = JSON.stringify([args.columns, panels.map((p) => [p.id, p.title, p.height])]);
  let resync = false;
  panels.forEach((p) => {
    const c = cell(p.id);
    if (newShape !== shape) {
      grid.appendChild(c.box);            // (re)placed in panel order; the plot survives the move
      c.title.textContent = p.title || "";
      c.title.style.display = p.title ? "" : "none";
      c.chart.style.height = p.height + "px";
    }
    c.every = 1000 * p.every;
    if (p.figure && p.rev !== c.rev) {  // a whole figure: it holds every point up to chunk p.seq
      c.rev = p.rev; c.seq = p.seq; c.full = p.figure; c.ext = new Map(); news = true;
    }
    if (c.rev !== p.rev) { resync = true; return; }  // never got this figure (re-mounted, skipped render)
    for (const chunk of p.chunks) {
      if (chunk.seq <= c.seq) continue;                 // had it already
      if (chunk.seq !== c.seq + 1) { resync = true; break; }  // missed one
      queuePoints(c, chunk);
      c.seq = chunk.seq; news = true;
    }
  });
  if (newShape !== shape) {
    shape = newShape;
    grid.style.gridTemplateColumns = "repeat(" + args.columns + ", minmax(0, 1fr))";
    const height = Math.ceil(grid.getBoundingClientRect().height);
    if (height !== shownHeight) { shownHeight = height; send("streamlit:setFrameHeight", {height: height}); }
  }
  if (resync) askResync();
  schedule(0);
  const wasPolling = poll;
  poll = args.poll || 0;
  eager = !!args.eager;
  if (!poll) {
    if (pollTimer !== null) clearTimeout(pollTimer);
    pollTimer = null; waiting = false;
  } else if (answered === null) {  // our first args: written before this iframe existed, so ask at once
    answered = args.tick; gap = poll;
    tick();
  } else if (args.tick !== answered || !wasPolling) {  // the answer to our last ask (or polling starts)
    answered = args.tick; waiting = false;
    if (!wasPolling) gap = poll;
    planTick();
  }
});
send("streamlit:componentReady", {apiVersion: 1});
// plotly.js (1.2 MB basic bundle, or the 4.8 MB full one) loads while the first args and the first tick's answer travel: parsing it
// takes 1-3 s on a busy laptop, and a first point should not wait for that plus a round trip
const lib = document.createElement("script");
lib.src = "plotly.min.js";
lib.onload = () => { window.hftTimeline.plotly = Date.now(); schedule(0); };
document.head.appendChild(lib);
</script></body></html>
""".replace("__DRAW_BUDGET__", str(DRAW_BUDGET))

_revs = itertools.count(1)  # figure revisions, unique in this process: a rev never means two figures


ASSETS = Path(__file__).parent / "assets"  # plotly.js's basic bundle, fetched by `bash run.sh setup`


def plotly_js_version(path: Path) -> str | None:
    """The plotly.js version a bundle names in its header ("plotly.js v4.1.1" -> "4.1.1")."""
    with open(path, encoding="utf-8", errors="replace") as f:
        found = re.search(r"plotly\.js(?: \([^)]*\))? v(\d[\w.]*)", f.read(400))
    return found.group(1) if found else None


def plotly_bundle(assets: Path = ASSETS) -> Path:
    """The plotly.js the charts load: the basic bundle (scatter, bar, pie: all these charts draw;
    1.2 MB, parsed ~3x faster, and a run's first point waits for it) when setup fetched it at the
    version the plotly package bundles, else the package's full bundle (4.8 MB)."""
    full = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    version = plotly_js_version(full)
    basic = assets / f"plotly-basic-{version}.min.js"
    if version and basic.is_file() and plotly_js_version(basic) == version:
        return basic
    return full


def _component_dir() -> Path:
    """index.html + plotly.min.js (``plotly_bundle``), written once per bundle."""
    source = plotly_bundle()
    folder = cache_dir() / f"ui-live-chart-{plotly.__version__}-{source.stem.replace('.', '-')}"
    js = folder / "plotly.min.js"
    if not js.exists() or js.stat().st_size != source.stat().st_size:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"plotly.min.js.tmp{id(folder)}"
        shutil.copyfile(source, tmp)
        tmp.replace(js)  # atomic: two sessions may race here
    index = folder / "index.html"
    if not index.exists() or index.read_text(encoding="utf-8") != INDEX_HTML:
        tmp = folder / f"index.html.tmp{id(folder)}"
        tmp.write_text(INDEX_HTML, encoding="utf-8")
        tmp.replace(index)
    return folder


@st.cache_resource(show_spinner=False)
def _folder() -> str:
    return str(_component_dir())


def _spec(fig: Any) -> dict:
    return fig if isinstance(fig, dict) else json.loads(fig.to_json())


def grown_points(old: dict, new: dict) -> dict[int, tuple[list, list]] | None:
    """The new points of each trace if ``new`` is ``old`` with points appended, else None.

    ``{}`` when nothing changed. Same layout, same number of traces, every trace the same
    apart from x and y, and each trace's old x and y a prefix of its new ones.
    """
    if old is new:
        return {}
    if old["layout"] is not new["layout"] and old["layout"] != new["layout"]:
        return None
    if len(old["data"]) != len(new["data"]):
        return None
    tails: dict[int, tuple[list, list]] = {}
    for i, (a, b) in enumerate(zip(old["data"], new["data"])):
        if a is b:
            continue
        ax, ay, bx, by = a.get("x", []), a.get("y", []), b.get("x", []), b.get("y", [])
        if any(a.get(k) != b.get(k) for k in a.keys() | b.keys() if k not in ("x", "y")):
            return None
        n = len(ax)
        if len(ay) != n or len(bx) != len(by) or len(bx) < n or bx[:n] != ax or by[:n] != ay:
            return None
        if len(bx) > n:
            tails[i] = (bx[n:], by[n:])
    return tails


class _Sent:
    """What the browser has been sent for one panel: the figure (rev), then numbered chunks of points."""

    def __init__(self) -> None:
        self.rev = 0
        self.seq = 0
        self.figure: dict | None = None
        self.chunks: list[dict] = []
        self.resend = True

    def args(self, fig: dict) -> dict:
        """This panel's args for ``fig``: its new points, or the whole figure when it did not just grow."""
        tails = None if self.figure is None or self.resend else grown_points(self.figure, fig)
        if tails is None:  # a whole figure, under a new rev
            self.rev, self.chunks, self.resend = next(_revs), [], False
            self.figure = fig
            return {"rev": self.rev, "seq": self.seq, "figure": fig, "chunks": []}
        if tails:
            self.seq += 1
            idx = sorted(tails)
            self.chunks = (self.chunks + [{"seq": self.seq, "i": idx, "x": [tails[i][0] for i in idx],
                                           "y": [tails[i][1] for i in idx]}])[-KEEP_CHUNKS:]
        self.figure = fig
        return {"rev": self.rev, "chunks": self.chunks}


def live_charts(panels: Sequence[tuple[str, str, Any]], key: str, columns: int = 2,
                config: dict | None = None, every: dict[str, float] | None = None, paused: bool = False,
                poll: float = 0.0, eager: bool = False, budget: float = DRAW_BUDGET) -> int:
    """Draw charts ``(panel id, title, figure spec or go.Figure)`` in a grid, grown in place on later calls.

    A panel keeps its chart (and the user's zoom) across calls as long as its id stays.
    Pass a new figure object when a chart changed and the same one when it did not (see
    ui.live_feed): a figure that only gained points reaches the browser as those points.
    ``every``: panel id -> at least this many seconds between two draws of its new points
    (default MIN_EVERY_S); a secondary chart can wait longer than the one people watch.
    ``paused``: what is shown stays as it is (points already sent wait in the browser).
    ``poll``: while runs train, the iframe reruns the caller's fragment every ``poll`` seconds
    for new points (call this inside an ``st.fragment`` without ``run_every``): only while
    its tab is shown, only after the previous answer came, and less often (up to 5x) while
    the answers bring nothing new (unless ``eager``: e.g. while a run's first point is awaited,
    when a late tick would show as a slow start). 0: no polling (nothing active).
    ``budget``: the share of one core that drawing new points may take (default DRAW_BUDGET).

    Returns the iframe's tick count (which rerun this is), 0 before the first tick.
    """
    ss = st.session_state
    sent: dict[str, _Sent] = ss.setdefault(f"{key}.sent", {})
    asked = ss.get(key)
    asked = asked if isinstance(asked, dict) else {}
    if asked.get("resync") and asked["resync"] != ss.get(f"{key}.resync"):
        ss[f"{key}.resync"] = asked["resync"]  # the iframe misses a figure or a chunk: send it everything
        for s in sent.values():
            s.resend = True
    args = []
    for pid, title, fig in panels:
        spec = _spec(fig)
        s = sent.setdefault(pid, _Sent())
        height = (spec.get("layout") or {}).get("height") or 320
        args.append({"id": pid, "title": title, "height": height,
                     "every": max(MIN_EVERY_S, (every or {}).get(pid, MIN_EVERY_S)), **s.args(spec)})
    for pid in list(sent):
        if pid not in {p[0] for p in panels}:
            del sent[pid]
    component = components.declare_component("hft_live_chart", path=_folder())
    component(panels=args, columns=columns, config=config or {}, paused=paused, poll=poll, eager=eager, budget=budget,
              tick=asked.get("tick", 0), key=key, default=None)
    return int(asked.get("tick", 0) or 0)


def live_chart(fig: Any, key: str, config: dict | None = None) -> None:
    """One chart, grown in place (see ``live_charts``)."""
    live_charts([("chart", "", fig)], key, columns=1, config=config)
