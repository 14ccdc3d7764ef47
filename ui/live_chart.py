"""Plotly charts that update in place, so the user's zoom survives live refreshes.

Why not ``st.plotly_chart``: Streamlit derives a plotly element's id from its figure
(``key_as_main_identity=False``), so every refresh with new points is a new element:
the chart is re-created and any zoom, pan or hidden legend entry is lost (the
complaint of Streamlit issue #5107, listed in PEERS.md). This component keeps one
iframe per ``key`` for the life of the page and hands it each new set of figures;
the iframe calls ``Plotly.react`` on the charts whose figure changed, and plotly.js
keeps the user's view because each figure's ``layout.uirevision`` stays the same.

All charts of a page share one iframe: plotly.js (4.8 MB) is parsed once per page,
not once per chart, which on a 2-core machine is the difference between a first
point drawn at once and seconds later.

plotly.js is the copy shipped inside the installed ``plotly`` Python package, copied
once into ``$HFT_HOME/cache`` next to a small index.html, and served by Streamlit's
own component file server: no network, no build step.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import plotly
import streamlit as st
import streamlit.components.v1 as components

from hft_core.home import cache_dir

INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8">
<style>
html, body { margin: 0; padding: 0; overflow: hidden; background: transparent;
             font-family: "Source Sans Pro", "Source Sans 3", system-ui, sans-serif; color: rgb(49, 51, 63); }
#grid { display: grid; column-gap: 16px; row-gap: 8px; }
.title { font-weight: 600; font-size: 15px; line-height: 22px; height: 22px; margin: 0 0 2px 0;
         white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
</style>
<script src="plotly.min.js"></script>
</head><body><div id="grid"></div>
<script>
// The Streamlit component protocol, without the npm helper: ready -> render(args) -> setFrameHeight.
const grid = document.getElementById("grid");
const cells = new Map();   // panel id -> {box, title, chart, text}
let shownHeight = 0;
function send(type, extra) {
  window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, extra || {}), "*");
}
function cell(id) {
  if (!cells.has(id)) {
    const box = document.createElement("div");
    const title = document.createElement("div");
    title.className = "title";
    const chart = document.createElement("div");
    box.appendChild(title);
    box.appendChild(chart);
    cells.set(id, {box: box, title: title, chart: chart, text: ""});
  }
  return cells.get(id);
}
window.addEventListener("message", (event) => {
  const msg = event.data;
  if (!msg || msg.type !== "streamlit:render") return;
  const panels = msg.args.panels;
  grid.style.gridTemplateColumns = "repeat(" + msg.args.columns + ", minmax(0, 1fr))";
  const keep = new Set(panels.map((p) => p.id));
  for (const [id, c] of cells) {
    if (!keep.has(id)) { Plotly.purge(c.chart); c.box.remove(); cells.delete(id); }
  }
  const config = Object.assign({responsive: true, displaylogo: false}, msg.args.config || {});
  panels.forEach((p) => {
    const c = cell(p.id);
    grid.appendChild(c.box);            // (re)placed in panel order; the plot survives the move
    c.title.textContent = p.title || "";
    c.title.style.display = p.title ? "" : "none";
    const text = JSON.stringify(p.figure);
    if (text === c.text) return;        // no new points: nothing to redraw
    c.text = text;
    c.chart.style.height = ((p.figure.layout && p.figure.layout.height) || 320) + "px";
    // react, not newPlot: the same uirevision keeps zoom, pan and legend clicks
    Plotly.react(c.chart, p.figure.data, p.figure.layout, config);
  });
  const height = Math.ceil(grid.getBoundingClientRect().height);
  if (height !== shownHeight) { shownHeight = height; send("streamlit:setFrameHeight", {height: height}); }
});
send("streamlit:componentReady", {apiVersion: 1});
</script></body></html>
"""


def _component_dir() -> Path:
    """index.html + plotly.min.js (from the plotly package), written once per plotly version."""
    folder = cache_dir() / f"ui-live-chart-{plotly.__version__}"
    js = folder / "plotly.min.js"
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
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


def live_charts(panels: Sequence[tuple[str, str, Any]], key: str, columns: int = 2,
                config: dict | None = None, polling: bool = True) -> None:
    """Draw charts ``(panel id, title, figure spec or go.Figure)`` in a grid, updated in place on later calls.

    A panel keeps its chart (and the user's zoom) across calls as long as its id stays;
    only panels whose figure changed are redrawn. ``polling=False`` for the last draw after
    a fragment's timer stops: that full rerun re-creates the fragment, and a component
    re-mounted under its old key is never sent its figures again (blank charts), so the
    last draw gets a key of its own.
    """
    key = key if polling else f"{key}.final"
    component = components.declare_component("hft_live_chart", path=_folder())
    component(panels=[{"id": pid, "title": title, "figure": _spec(fig)} for pid, title, fig in panels],
              columns=columns, config=config or {}, key=key, default=None)


def live_chart(fig: Any, key: str, config: dict | None = None) -> None:
    """One chart, updated in place (see ``live_charts``)."""
    live_charts([("chart", "", fig)], key, columns=1, config=config)
