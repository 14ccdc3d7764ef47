"""HFT Lab: the app's entry point. `streamlit run app.py` (or `bash run.sh`).

Only navigation lives here. hft_core is imported first, in the main thread, so torch
and transformers are loaded before any training thread starts; the one RunManager of
this process is created on the first page view (ui.state.manager, st.cache_resource).
"""
from pathlib import Path

import hft_core  # noqa: F401  (eager torch/transformers import in the main thread)
import streamlit as st

from ui.state import compact_layout, manager

st.set_page_config(page_title="HFT Lab", layout="wide")  # no page_icon: a material icon is fetched online
compact_layout()  # page spacing for 1280x800 screens (CSS only)

HERE = Path(__file__).resolve().parent
pages = [
    st.Page("pages/train.py", title="Train", icon=":material/play_arrow:", default=True),
    st.Page("pages/live.py", title="Live", icon=":material/monitoring:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/stacked_line_chart:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
]
if (HERE / "pages" / "learn.py").exists():
    pages.append(st.Page("pages/learn.py", title="Learn", icon=":material/school:"))

manager()  # one per process: marks runs a dead process left behind as interrupted
st.navigation(pages, position="top").run()
