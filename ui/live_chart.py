"""A plotly chart that updates in place, so the user's zoom survives live refreshes.

Why not ``st.plotly_chart``: Streamlit derives a plotly element's id from its figure
(``key_as_main_identity=False``), so every refresh with new points is a new element:
the chart is re-created and any zoom, pan or hidden legend entry is lost (the
complaint of Streamlit issue #5107, listed in PEERS.md). This component keeps one
iframe per ``key`` for the life of the page and hands it each new figure; the iframe
calls ``Plotly.react``, and plotly.js keeps the user's view because the figure's
``layout.uirevision`` stays the same.

plotly.js is the copy shipped inside the installed ``plotly`` Python package, copied
once into ``$HFT_HOME/cache`` next to a small index.html, and served by Streamlit's
own component file server: no network, no build step.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import plotly
import streamlit as st
import streamlit.components.v1 as components

from hft_core.home import cache_dir

INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8">
<style>html, body { margin: 0; padding: 0; overflow: hidden; background: transparent; }
#chart { width: 100%; }</style>
<script src="plotly.min.js"></script>
</head><body><div id="chart"></div>
<script>
// The Streamlit component protocol, without the npm helper: ready -> render(args) -> setFrameHeight.
const chart = document.getElementById("chart");
let shownHeight = 0;
let lastText = "";
function send(type, extra) {
  window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, extra || {}), "*");
}
window.addEventListener("message", (event) => {
  const msg = event.data;
  if (!msg || msg.type !== "streamlit:render") return;
  const fig = msg.args.figure;
  const text = JSON.stringify(fig);
  if (text === lastText) return;  // a refresh without new points: nothing to redraw
  lastText = text;
  const height = (fig.layout && fig.layout.height) || 320;
  chart.style.height = height + "px";
  // react, not newPlot: same uirevision -> zoom, pan and legend clicks are kept
  Plotly.react(chart, fig.data, fig.layout, Object.assign({responsive: true, displaylogo: false},
                                                           msg.args.config || {}));
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
        index.write_text(INDEX_HTML, encoding="utf-8")
    return folder


@st.cache_resource(show_spinner=False)
def _folder() -> str:
    return str(_component_dir())


def live_chart(fig: Any, key: str, config: dict | None = None) -> None:
    """Draw ``fig`` (a figure spec dict, or a plotly Figure) in the chart slot ``key``, updated in place later."""
    spec = fig if isinstance(fig, dict) else json.loads(fig.to_json())
    component = components.declare_component("hft_live_chart", path=_folder())
    component(figure=spec, config=config or {}, key=key, default=None)
