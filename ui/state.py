"""The one RunManager per app process, and small helpers every page uses.

Pages get the manager with ``manager()``: a ``st.cache_resource`` singleton keyed by
the HFT home folder, shared by every browser session. Tests put their own manager
(e.g. one with a fake ``train_fn``) in ``st.session_state[MANAGER_KEY]``.
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple

import streamlit as st

from hft_core.home import hft_home
from ui import live_chart

MANAGER_KEY = "hft_manager"

# material icons render in markdown/labels without an emoji font (":material/name:")
# "pruned": a search trial its pruner stopped early; ended like "stopped", told apart by its own label and colour
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:",
                "finished": ":material/check_circle:", "stopped": ":material/stop_circle:",
                "pruned": ":material/content_cut:", "failed": ":material/error:", "interrupted": ":material/warning:"}
STATUS_COLORS = {"queued": "gray", "running": "blue", "finished": "green", "stopped": "orange", "pruned": "violet",
                 "failed": "red", "interrupted": "orange"}


@st.cache_resource(show_spinner=False)
def _shared_manager(home: str):
    from hft_core.runs import RunManager
    from hft_core.store import RunStore

    # worker processes for every device (HFT_RUNS_PER_DEVICE per device), started warm now: runs
    # queued by `hft train --detach`, a notebook or an earlier app session train without a click,
    # and the first Start finds a worker with torch, the trainer and the quick demo's model loaded
    mgr = RunManager(RunStore(home)).serve_all()
    mgr.warm_up()  # this process reads the default data once (the Train page's data check)
    return mgr


def manager():
    """The RunManager of this app process (or the one a test injected)."""
    injected = st.session_state.get(MANAGER_KEY)
    if injected is not None:
        return injected
    return _shared_manager(str(hft_home()))


def store():
    return manager().store


def browser_here() -> bool:
    """Whether the browser runs on this machine: Streamlit gives no client address for localhost
    (and AppTest none at all); a remote browser's address is a string."""
    ip = st.context.ip_address
    return not (isinstance(ip, str) and ip)


def shares_cpu(runs: Any) -> bool:
    """Whether a run trains on the CPU of the machine this page's browser runs on: then every CPU-second
    the page takes is the run's (bench/ui_overhead.py), so pages refresh and draw less often."""
    return any(r.status == "running" and str(r.device).startswith("cpu") for r in runs) and browser_here()


class Pace(NamedTuple):
    refresh: float    # seconds between two asks for new points (the loss chart's pace)
    secondary: float  # the other charts (eval, throughput, lr, loss terms): extended at most this often
    budget: float     # the share of one core that drawing new points may take in the browser


# Each refresh costs the browser ~40 ms of CPU and each plotly redraw 15-80 ms. Where a run trains on
# the browser's own CPU, those are the run's: 3 s and 1 % there took Live's cost to a MiniLM run from
# 0.951 to 0.970 of the CLI's speed (bench/ui_overhead.py, README).
PACE, SHARED_PACE = Pace(2.0, 3.0, live_chart.DRAW_BUDGET), Pace(3.0, 6.0, 0.01)


def pace(runs: Any) -> Pace:
    """How often a page showing ``runs`` refreshes and draws while they train."""
    return SHARED_PACE if shares_cpu(runs) else PACE


def run_label(rec: Any, with_status: bool = True) -> str:
    """'bert blend · r-3f9a2c · running' for pickers (plain text: no icons)."""
    parts = [rec.name or rec.id, rec.id] if rec.name and rec.name != rec.id else [rec.id]
    if with_status:
        parts.append(rec.status)
    return " · ".join(parts)


def status_badge(status: str) -> str:
    """Markdown: a coloured status with its icon, e.g. ':green[:material/check_circle: finished]'."""
    return f":{STATUS_COLORS.get(status, 'gray')}[{STATUS_ICONS.get(status, '')} {status}]"


COMPACT_CSS = """<style>
/* the default top padding of the main column is ~6rem: too much at 1280x800 */
[data-testid="stMainBlockContainer"] { padding-top: 3.2rem; padding-bottom: 2rem; }
h1 { padding-top: 0.2rem !important; padding-bottom: 0.4rem !important; }
</style>"""


def through_app() -> None:
    """Call first in every page: make sure the page runs inside app.py's navigation.

    A fresh server whose first visitor opens a page URL directly (a bookmark, or a tab
    reconnecting after a restart) runs that page alone, Streamlit's old pages/-folder
    mode, until app.py has called st.navigation once: no layout, no top menu. Here the
    flag behind that mode is switched off and the run repeated, now through app.py.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without it has no such mode
        return
    first_view = not st.session_state.get("_through_app")
    st.session_state["_through_app"] = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if first_view:  # (later runs carry widget events a rerun would drop; by then app.py runs anyway)
            st.rerun()


def compact_layout() -> None:
    """Less empty space above the page title (style only: takes no room in the page)."""
    st.html(COMPACT_CSS)


def ago(t: float | None) -> str:
    if not t:
        return "-"
    s = max(0, time.time() - t)
    if s < 60:
        return f"{s:.0f} s ago"
    if s < 3600:
        return f"{s / 60:.0f} min ago"
    if s < 86400:
        return f"{s / 3600:.1f} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def duration(rec: Any) -> str:
    if not rec.started:
        return "-"
    end = rec.ended or time.time()
    s = max(0, end - rec.started)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


ACTIVE_STATUSES = ("queued", "running")
