"""What the browser tests read and wait on: the charts inside the chart iframe, run rows, page idleness.

Every wait reads the state its assertion is about in ONE evaluation and returns it, so the
assertion checks the very value that ended the wait: between two evaluations a refresh may
re-mount the chart iframe (an empty plot for a moment) or the machine may stall for seconds.
No fixed sleeps: on a loaded 2-core machine a rerun may take seconds, and each wait simply
waits for it, up to a generous deadline.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the tests read the app's store with hft_core
    sys.path.insert(0, str(ROOT))

# Live and Compare draw their charts in a ui.live_chart iframe (same origin): look inside it.
FIRST_PLOT = """const firstPlot = () => {
  for (const f of document.querySelectorAll('iframe')) {
    try { const p = f.contentDocument && f.contentDocument.querySelector('.js-plotly-plot'); if (p) return p; }
    catch (e) {}
  }
  return document.querySelector('.js-plotly-plot');
};"""
LOSS_POINTS_JS = """(name) => {
  // points of the trace called `name` in the first chart on the page (Live: training loss)
  """ + FIRST_PLOT + """
  const plot = firstPlot();
  if (!plot || !plot._fullData) return 0;
  const tr = plot._fullData.filter(t => t.name === name || (t.name || '').startsWith(name + ' ('));
  return tr.length ? Math.max(...tr.map(t => (t.x || []).length)) : 0;
}"""
POINTS_JS = """() => {
  // all points in the first chart on the page
  """ + FIRST_PLOT + """
  const plot = firstPlot();
  if (!plot || !plot._fullData) return 0;
  return plot._fullData.reduce((n, t) => n + (t.showlegend !== false ? (t.x || []).length : 0), 0);
}"""
X_RANGE_JS = """() => { """ + FIRST_PLOT + """ const p = firstPlot(); return p && p._fullLayout ? p._fullLayout.xaxis.range : null; }"""
NAMES_WITH_POINTS_JS = """() => {
  // names of the curves (legend entries) with points in the first chart on the page
  """ + FIRST_PLOT + """
  const plot = firstPlot();
  if (!plot || !plot._fullData) return [];
  return plot._fullData.filter(t => t.showlegend !== false && (t.x || []).length > 0).map(t => t.name);
}"""
# points and zoom of the first chart, read together: one state, not two reads a refresh could fall between
LOSS_AND_RANGE_JS = """(name) => {
  """ + FIRST_PLOT + """
  const plot = firstPlot();
  if (!plot || !plot._fullData) return null;
  const tr = plot._fullData.filter(t => t.name === name || (t.name || '').startsWith(name + ' ('));
  return {points: tr.length ? Math.max(...tr.map(t => (t.x || []).length)) : 0,
          range: plot._fullLayout.xaxis.range, autorange: plot._fullLayout.xaxis.autorange};
}"""
ROW_STATUS_JS = """(name) => {
  // the status word in the Live row of the run called `name` (or whose id is `name`)
  const rows = [...document.querySelectorAll('[class*="st-key-run-"]')].filter(r => r.innerText.includes(name));
  if (!rows.length) return '';
  const text = rows[0].innerText;
  for (const s of ['running', 'queued', 'stopped', 'pruned', 'finished', 'failed', 'interrupted'])
    if (text.includes(s)) return s;
  return '?';
}"""


def wait_for(cond, timeout: float, what: str, page=None, interval: float = 0.5):
    """The first truthy value of ``cond()`` within ``timeout`` seconds (an AssertionError naming ``what`` after)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value {last!r})")


def wait_idle(page, timeout: float = 60) -> None:
    """Wait until the script is not running (Streamlit shows a status widget while it runs)."""
    page.wait_for_timeout(300)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            return
        page.wait_for_timeout(200)


def run_row(page, name: str):
    """The Live page's row (status, progress, buttons) of the run called ``name``."""
    return page.locator('[class*="st-key-run-"]').filter(has_text=name).first


def row_status(page, name: str) -> str:
    return page.evaluate(ROW_STATUS_JS, name)
