"""Compare's table of final values over seeds: each variant's mean with its 95% interval, paired differences.

``comparison_of`` is the logic (which runs, which preset, which metric; tested without a
browser); ``render_comparison`` lays it out. The numbers are ``hft_core.comparison``'s, the
same as ``hft compare`` prints and the report holds.
"""
from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from hft_core import charts
from hft_core import comparison as C
from hft_core import label_budget as LB
from hft_core import presets as P


def preset_of(group: str) -> P.Preset | None:
    """The preset that made ``group`` (its name is "<preset>-MMDD-HHMMSS"), else None."""
    return P.preset_named(P.preset_of_group(group or ""))


def comparison_of(store: Any, run_ids: Sequence[str], metric: str, group: str = "") -> C.Comparison:
    """The selected runs compared on ``metric``: a preset's group by its variant labels, other runs by config."""
    return C.compare_runs(store, list(run_ids), metric, preset=preset_of(group))


def render_comparison(store: Any, run_ids: Sequence[str], metric: str, group: str = "") -> C.Comparison:
    """Means with intervals and paired differences of the selected runs' final ``metric``."""
    cmp = comparison_of(store, run_ids, metric, group)
    if curves := LB.budget_curves(cmp.variants):   # a label-budget sweep: the metric against the labels
        st.plotly_chart(charts.curve_figure(curves, f"Final {charts.axis_title(metric)} against labelled examples",
                                            "labelled examples (log scale)", metric, log_x=True),
                        key="compare.budget_curve")
    if not cmp.variants:
        st.caption(f"No finished run here has a final {metric}: the table fills in as runs finish.")
        return cmp
    interval = f"mean [{cmp.confidence:.0%} interval]"
    st.dataframe(cmp.mean_rows(), hide_index=True, width="stretch",
                 column_config={interval: st.column_config.TextColumn(interval, width="medium"),
                                "per seed": st.column_config.TextColumn("final value on each seed", width="large")})
    if cmp.differences:
        st.dataframe(cmp.difference_rows(), hide_index=True, width="stretch",
                     column_config={"difference": st.column_config.TextColumn("paired difference", width="large"),
                                    interval: st.column_config.TextColumn(interval, width="medium")})
    st.caption(f"Final value of each run; runs whose configs differ only by seed are one variant. Method: "
               f"{cmp.method_note} (on the seeds both variants have).")
    if cmp.warning:
        st.warning(cmp.warning.capitalize() + ".", icon=":material/warning:")
    for note in cmp.notes:
        st.caption(note.capitalize() + ".")
    return cmp
