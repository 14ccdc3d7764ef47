"""The user's own runs of a preset against its expected outcome, check by check, with its uncertainty.

``outcome_rows`` is the logic (tested without a browser); ``render_preset_outcome`` lays it
out, for the Compare page (the selected preset group) and the Train page (under a preset).
The verdicts come from ``hft_core.presets.judge_group``: the bench's own judgement, on the
runs in this store, paired by seed: held with confidence / held on the mean / did not hold
(``hft_core.stats``; a quick run is not judged).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from hft_core import comparison as C
from hft_core import presets as P
from hft_core import stats

# plain symbols the default fonts have (a headless or Linux browser often has no emoji font: tofu boxes)
MARK = {stats.HELD_WITH_CONFIDENCE: "✓ held with confidence", stats.HELD_ON_THE_MEAN: "⚠ held on the mean",
        stats.DID_NOT_HOLD: "✗ did not hold", stats.NOT_MEASURABLE: "… not measurable yet",
        stats.NOT_JUDGED_QUICK: "» not judged (quick check)"}
DONE = ("finished", "failed", "stopped", "interrupted")


@dataclass
class GroupOutcome:
    group: str
    finished: int                    # finished runs in the group
    total: int                       # all runs in the group
    active: int                      # queued or running
    rows: list[dict[str, str]]       # one per check: expected, verdict, difference, means
    seeds: list[int] = field(default_factory=list)   # paired seeds of each check (for the method note)


def outcome_rows(preset: P.Preset, store: Any, groups: list[str] | None = None) -> list[GroupOutcome]:
    """Each group of ``preset`` in ``store`` (newest first, or ``groups``) with at least one finished run,
    judged check by check."""
    out = []
    for group in groups if groups is not None else P.preset_groups(store, preset):
        runs = store.list_runs(group=group)
        finished = sum(r.status == "finished" for r in runs)
        if not finished:
            continue
        rows, seeds = [], []
        for v in P.judge_group(store, group, preset):
            metric = v.check.metric
            means = "; ".join(f"{label}: {C.format_estimate(v.estimates[label], metric)} ({v.runs[label]} run"
                              f"{'s' if v.runs[label] != 1 else ''})" for label in v.means)
            if v.missing:
                means += ("; " if means else "") + "no finished run yet: " + ", ".join(v.missing)
            difference = "; ".join(C.difference_line(d, metric, v.expect, v.check.tol) for d in v.differences)
            rows.append({"expected": v.check.describe(), "verdict": MARK[v.verdict], "difference": difference or "-",
                         "means": means})
            seeds += [d.n for d in v.differences]
        out.append(GroupOutcome(group, finished, len(runs), sum(r.status not in DONE for r in runs), rows, seeds))
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
        st.dataframe(res.rows, hide_index=True, width="stretch", column_order=("expected", "verdict", "means"),
                     column_config={"expected": st.column_config.TextColumn("expected", width="medium"),
                                    "verdict": st.column_config.TextColumn("on your runs", width="medium"),
                                    "means": st.column_config.TextColumn("means [95% interval]", width="large")})
        lines = [r["difference"] for r in res.rows if r["difference"] != "-"]
        if lines:  # in full, not cut by a table cell: the numbers the verdicts rest on
            st.markdown("\n".join(f"- {line}" for line in lines))
        st.download_button("Report of this group (one HTML file)", _report_of(store, res.group),
                           file_name=f"{res.group}-report.html", mime="text/html", icon=":material/download:",
                           on_click="ignore", key=f"preset_outcome.report.{res.group}")
        if res.seeds:
            st.caption(f"Method: {stats.method_note('t', res.seeds)}. " + (
                f"⚠ {stats.few_seeds_warning(min(res.seeds))}." if min(res.seeds) < stats.MIN_SEEDS else ""))
    st.caption("**Held with confidence**: the 95% interval of the paired difference lies on the expected side (for "
               "*~*, inside the tolerance) and every seed agrees. **Held on the mean**: the mean went the expected "
               "way, but not on every seed or the interval reaches past 0. A quick check (tiny model, a few "
               "steps) tests the plumbing and is not judged.")


def _report_of(store: Any, group: str):
    """The group's report, built only when the button is pressed (a few hundred ms and ~5 MB)."""
    def build() -> str:
        from hft_core import report

        return report.build_report(store, [r.id for r in reversed(store.list_runs(group=group))], group=group)
    return build
