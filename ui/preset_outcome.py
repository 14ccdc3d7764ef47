"""The user's own runs of a preset against its expected outcome: held / did not hold, per check.

``outcome_rows`` is the logic (tested without a browser); ``render_preset_outcome`` lays it
out, for the Compare page (the selected preset group) and the Train page (under a preset).
The verdicts come from ``hft_core.presets.judge_group``: the bench's own judgement, on the
runs in this store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from hft_core import presets as P

MARK = {True: "✅ held", False: "❌ did not hold", None: "… not measurable yet"}
DONE = ("finished", "failed", "stopped", "interrupted")


@dataclass
class GroupOutcome:
    group: str
    finished: int                    # finished runs in the group
    total: int                       # all runs in the group
    active: int                      # queued or running
    rows: list[dict[str, str]]       # one per check: check, verdict, means


def outcome_rows(preset: P.Preset, store: Any, groups: list[str] | None = None) -> list[GroupOutcome]:
    """Each group of ``preset`` in ``store`` (newest first, or ``groups``) with at least one finished run,
    judged check by check."""
    out = []
    for group in groups if groups is not None else P.preset_groups(store, preset):
        runs = store.list_runs(group=group)
        finished = sum(r.status == "finished" for r in runs)
        if not finished:
            continue
        rows = []
        for v in P.judge_group(store, group, preset):
            means = "; ".join(f"{label}: {_fmt(v.means[label], v.check.metric)} ({v.runs[label]} run"
                              f"{'s' if v.runs[label] != 1 else ''})" for label in v.means)
            if v.missing:
                means += ("; " if means else "") + "no finished run yet: " + ", ".join(v.missing)
            rows.append({"expected": v.check.describe(), "verdict": MARK[v.held], "means": means})
        out.append(GroupOutcome(group, finished, len(runs), sum(r.status not in DONE for r in runs), rows))
    return out


def render_preset_outcome(preset: P.Preset, store: Any, groups: list[str] | None = None) -> None:
    """Your finished runs of ``preset`` (each group, or only ``groups``) against its expected outcome."""
    results = outcome_rows(preset, store, groups)
    if not results:
        st.caption(f"No finished runs of the preset {preset.name!r} yet: run it, and each check of its expected "
                   "outcome will show here as held or not, on your own runs.")
        return
    for res in results:
        state = f"{res.finished} of {res.total} runs finished" + (f", {res.active} still to come" if res.active else "")
        st.markdown(f"**Your runs, group `{res.group}`** ({state}): against *{preset.expected}*")
        st.dataframe(res.rows, hide_index=True, width="stretch",
                     column_config={"expected": st.column_config.TextColumn("expected", width="medium"),
                                    "verdict": st.column_config.TextColumn("on your runs", width="small"),
                                    "means": st.column_config.TextColumn("means of the final values", width="large")})
    st.caption("Means over the finished runs of each variant (all seeds you ran). One seed can go either way: the "
               "preset's stated result is over three.")


def _fmt(value: float, metric: str) -> str:
    if metric.startswith("eval/accuracy") or metric.endswith("f1"):
        return f"{100 * value:.1f}%"
    if metric.startswith("params"):
        return f"{value:,.0f}"
    return f"{value:.4g}"
