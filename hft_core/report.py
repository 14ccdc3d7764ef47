"""A comparison as one self-contained HTML file, to hand out: ``hft report GROUP -o report.html``.

One file, no network needed to open it: plotly.js is inlined once (``include_plotlyjs=True``,
about 4.8 MB of the file), every chart after the first reuses it. The file holds

    the preset's question, expected outcome, stated result and each check's verdict (a preset's group)
    the table of ``hft_core.comparison``: each variant's final metric, mean with its 95% interval over
        seeds, and the paired differences, with the method and the number of seeds
    the curves Compare draws: the key metric, the eval metrics, the loss and each loss term, seeds of
        one variant as a mean line with a min-max band
    the final metrics of every run, the config fields that differ, the environment
    the same numbers as JSON (``<script type="application/json" id="hft-report-data">``) for tests
        and for anyone who wants them back

Long curves are thinned to at most ``MAX_POINTS`` steps (every k-th step, the same steps for
every run so seed bands still line up, and each run's last step); the file says so when it does.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from hft_core import charts, comparison, stats

MAX_POINTS = 400          # steps kept per curve (training logs every step: 2,000 steps -> every 5th)
CHART_METRICS = ("eval/accuracy", "eval/macro_f1", "eval/roc_auc", "eval/loss", "eval/perplexity", "loss")
DATA_ID = "hft-report-data"


# ---- what goes in ------------------------------------------------------------------------------

def thin(metrics: pd.DataFrame, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, int]:
    """Keep every k-th step (k so that at most ``max_points`` remain) and each run's last step of each metric.

    The same steps for every run, so seed bands (which need every member at a step) still
    line up. Returns (frame, k); k = 1 when nothing was dropped.
    """
    if metrics.empty:
        return metrics, 1
    steps = metrics["step"].nunique()
    k = max(1, math.ceil(steps / max_points))
    if k == 1:
        return metrics, 1
    last = metrics.groupby(["run_id", "name"])["step"].transform("max")
    keep = (metrics["step"] % k == 0) | (metrics["step"] == last)
    return metrics[keep].reset_index(drop=True), k


def environment(records: Iterable[Any]) -> dict[str, str]:
    """Lab and library versions, the runs' devices, this machine's CPU and GPU, the date."""
    from importlib import metadata

    from hft_core import __version__

    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    import torch  # already loaded in the app; about 2 s in `hft report`

    gpu = "none seen by this process"
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {"HFT Lab": __version__, "torch": version("torch"), "transformers": version("transformers"),
            "peft": version("peft"), "Python": platform.python_version(),
            "devices of the runs": ", ".join(sorted({r.device for r in records if r.device})) or "-",
            "CPU (this machine)": cpu_name(), "CPUs": str(os.cpu_count()), "GPU (this machine)": gpu,
            "OS": platform.platform(terse=True),
            "written": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}


def cpu_name() -> str:
    """'Intel(R) Xeon(R) Processor' from /proc/cpuinfo, else the platform's machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- the report ----------------------------------------------------------------------------------

def build_report(store: Any, run_ids: Sequence[str], *, group: str = "", metric: str = "",
                 max_points: int = MAX_POINTS) -> str:
    """The HTML text of a report on ``run_ids`` (a preset's ``group``: with its question and verdicts)."""
    from hft_core import presets

    run_ids = list(run_ids)
    records = [store.get_run(rid) for rid in run_ids]
    preset_name = presets.preset_of_group(group)
    preset = presets.preset_named(preset_name)
    metric = metric or (preset.metric if preset is not None else "eval/accuracy")
    cmp = comparison.compare_runs(store, run_ids, metric, preset=preset)
    verdicts = presets.judge_group(store, group, preset) if preset is not None else []

    train = [r for r in records if r.kind == "train"]
    labels = {r.id: r.name or r.id for r in train}
    if len(set(labels.values())) < len(labels):
        labels = {r.id: f"{r.name or r.id} (seed {r.seed})" if r.name else r.id for r in train}
    if preset is not None:  # a preset's variants by label: a KD student's config differs per seed (its teacher)
        by_label: dict[str, list[str]] = {}
        for r in train:
            by_label.setdefault(r.name, []).append(r.id)
        bands = [ids for ids in by_label.values() if len(ids) > 1]
    else:
        bands = charts.seed_groups({r.id: r.config for r in train})
    # a band is named after its first member: there the variant's name, not one seed's
    chart_labels = {**labels, **{ids[0]: next(r.name for r in train if r.id == ids[0]) or labels[ids[0]]
                                 for ids in bands}}
    metrics, k = thin(store.metrics([r.id for r in train]), max_points)
    colors = charts.run_colors([r.id for r in sorted(train, key=lambda r: r.created)])
    names = set(metrics["name"]) if not metrics.empty else set()
    shown = [m for m in dict.fromkeys([metric, *CHART_METRICS]) if m in names]
    shown += sorted(n for n in names if n.startswith("loss/"))
    figures = [(m, _rounded(charts.metric_spec(metrics, m, labels=chart_labels, colors=colors, groups=bands,
                                               band="minmax", title=charts.axis_title(m), height=380)))
               for m in shown]

    finals = {r.id: presets.summarise_run(store, r.id) for r in train if r.status == "finished"}
    data = {
        "group": group, "metric": metric, "method": cmp.method, "confidence": cmp.confidence,
        "runs": [{"id": r.id, "name": r.name, "seed": r.seed, "status": r.status, "kind": r.kind,
                  "final": finals.get(r.id, {})} for r in records],
        "variants": [{"label": v.label, "values": {str(s): x for s, x in sorted(v.values.items())},
                      **_est(cmp.estimates[v.label])} for v in cmp.variants],
        "differences": [{"a": d.a, "b": d.b, "seeds": list(d.seeds), "diffs": list(d.diffs), **_est(d.estimate)}
                        for d in cmp.differences],
        "checks": [{"expected": v.check.describe(), "verdict": v.verdict} for v in verdicts],
        "charts": [{"metric": m, "traces": len(spec["data"])} for m, spec in figures],
        "thinned_every": k,
    }
    title = (f"{preset.title}: {group}" if preset is not None else f"Group {group}" if group else
             f"{len(run_ids)} runs") + " · HFT Lab report"
    parts = [_head(title), f"<h1>{html.escape(title)}</h1>"]
    if preset is not None:
        parts.append(_preset_section(preset, verdicts))
    parts.append(_comparison_section(cmp))
    parts.append(_charts_section(figures, k, max_points))
    parts.append(_table_section("Final metrics of each run", charts.final_metrics_table(metrics, labels)))
    diff = charts.config_diff({r.id: r.config for r in train}, labels, ignore=("name",))
    parts.append(_table_section("Config fields that differ", diff.rename_axis("field").reset_index()) if not diff.empty else
                 "<h2>Config fields that differ</h2><p>None: the runs share one config (apart from names).</p>")
    parts.append(_table_section("Runs", pd.DataFrame([{"run": r.id, "name": r.name, "seed": r.seed, "status": r.status,
                                                       "device": r.device, "model": r.config.get("model", "")}
                                                      for r in records])))
    env = environment(records)
    parts.append("<h2>Environment</h2>" + _dl(env))
    parts.append(f'<script type="application/json" id="{DATA_ID}">{_json(data)}</script>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(store: Any, names: Sequence[str], out: str | Path, metric: str = "") -> Path:
    """``build_report`` for a group name or run ids, written to ``out`` (its folder is created)."""
    group, run_ids = comparison.runs_of(store, names)
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(store, run_ids, group=group, metric=metric), encoding="utf-8")
    return path


def read_data(text: str) -> dict[str, Any]:
    """The JSON numbers inside a report's HTML (what the tables and charts were drawn from)."""
    start = text.index(f'<script type="application/json" id="{DATA_ID}">') + len(
        f'<script type="application/json" id="{DATA_ID}">')
    return json.loads(text[start:text.index("</script>", start)])


# ---- pieces ----------------------------------------------------------------------------------------

def _rounded(spec: dict[str, Any], digits: int = 6) -> dict[str, Any]:
    """The figure with its points at ``digits`` significant digits: a third of the size, the same picture."""
    def r(v: Any) -> Any:
        return float(f"{v:.{digits}g}") if isinstance(v, float) else v

    return {**spec, "data": [{**t, "x": [r(v) for v in t.get("x", [])], "y": [r(v) for v in t.get("y", [])]}
                             for t in spec["data"]]}


def _est(e: stats.Estimate) -> dict[str, Any]:
    return {"mean": e.mean, "lo": e.lo if e.has_interval else None, "hi": e.hi if e.has_interval else None,
            "n": e.n, "interval": e.method}


def _json(data: Any) -> str:
    # "</" inside a <script> would end it early; NaN is not JSON
    return json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")


def _head(title: str) -> str:
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #31333F; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f6; }}
.note {{ color: #666; font-size: 0.9em; }} .warn {{ color: #9a5b00; }}
.verdict {{ font-weight: 600; }}
</style></head><body>"""


def _dl(items: Mapping[str, str]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in items.items()) + "</table>"


def _rows_table(rows: list[dict[str, Any]], cls: str) -> str:
    if not rows:
        return ""
    return pd.DataFrame(rows).to_html(index=False, escape=True, classes=cls, border=0)


def _preset_section(preset: Any, verdicts: list[Any]) -> str:
    parts = ["<h2>The question</h2>", _dl({"question": preset.question, "expected": preset.expected,
                                          "stated result (the preset's own runs)": preset.result or "-"})]
    if verdicts:
        rows = [{"expected": v.check.describe(), "verdict": v.verdict,
                 "paired difference [95% interval]": "; ".join(
                     comparison.difference_line(d, v.check.metric, v.expect, v.check.tol) for d in v.differences)
                 or "-"} for v in verdicts]
        parts += ["<h2>Verdict on these runs</h2>", _rows_table(rows, "checks"),
                  "<p class='note'><b>held with confidence</b>: the 95% interval of the paired difference lies "
                  "on the expected side and every seed agrees; <b>held on the mean</b>: the mean went the "
                  "expected way, but not on every seed or the interval reaches past 0; a quick check (tiny model, "
                  "a few steps) is not judged.</p>"]
    return "\n".join(parts)


def _comparison_section(cmp: comparison.Comparison) -> str:
    parts = [f"<h2>Final {html.escape(charts.axis_title(cmp.metric))}: mean over seeds with "
             f"{cmp.confidence:.0%} interval</h2>", _rows_table(cmp.mean_rows(), "means")]
    if cmp.differences:
        parts += ["<h3>Paired differences (same seeds)</h3>", _rows_table(cmp.difference_rows(), "differences")]
    parts.append(f"<p class='note'>Method: {html.escape(cmp.method_note)}.</p>")
    if cmp.warning:
        parts.append(f"<p class='warn'>Warning: {html.escape(cmp.warning)}.</p>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in cmp.notes]
    if not cmp.variants:
        parts.append(f"<p>No finished run has a final {html.escape(cmp.metric)}.</p>")
    return "\n".join(parts)


def _charts_section(figures: list[tuple[str, dict]], k: int, max_points: int) -> str:
    import plotly.graph_objects as go

    parts = ["<h2>Curves</h2>", "<p class='note'>Seeds of one variant: mean line with a min-max band. Hover for "
             "values; drag to zoom, double-click to reset.</p>"]
    if k > 1:
        parts.append(f"<p class='note'>Long curves thinned for a small file: every {_ordinal(k)} step (and each run's "
                     f"last), at most about {max_points} steps a curve; the tables use every step.</p>")
    parts.append("<p class='note'>Chart points are rounded to 6 significant digits; the tables and the JSON at "
                 "the end of this file hold the store's values.</p>")
    for i, (_, spec) in enumerate(figures):
        parts.append(go.Figure(spec).to_html(full_html=False, include_plotlyjs=(i == 0),
                                             config={"displaylogo": False, "responsive": True}))
    if not figures:
        parts.append("<p>No metrics logged yet.</p>")
    return "\n".join(parts)


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _table_section(title: str, df: pd.DataFrame, index: bool = False) -> str:
    if df is None or df.empty:
        return f"<h2>{html.escape(title)}</h2><p>-</p>"
    return f"<h2>{html.escape(title)}</h2>" + df.to_html(index=index, escape=True, border=0,
                                                         float_format=lambda v: f"{v:.4g}", na_rep="-")
