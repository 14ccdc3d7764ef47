"""Charts for the dashboard: pure functions from the store's metric frames to plotly figures.

No streamlit here (hft_core never imports it), so every piece is unit-tested and
notebooks can draw the same figures. A metric frame is what ``RunStore.metrics``
returns: one row per logged value, columns ``run_id, step, name, value, wall_time``.

    series_frame   one metric of several runs, with the chosen x (step | time | tokens)
    ema_debiased   TensorBoard's smoothing: an EMA divided by (1 - w^n), so early points
                   are not dragged toward 0
    seed_groups    runs whose configs differ only by seed (drawn as mean + band)
    group_band     mean and min-max / +-sd band of a seed group at each step
    paired_deltas  metric minus a baseline run's metric at the same step
    run_colors     a stable colour per run id (hash -> Okabe-Ito palette, colour-blind safe)
    themed         a figure's text in Streamlit's light or dark theme colour
    config_diff    only the config fields that differ between runs
    metric_spec, delta_spec   figures as plain dicts (fast; metric_figure/delta_figure: go.Figure)
    final_metrics_table, curves_csv, figure_html
"""
from __future__ import annotations

import copy
import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# Okabe & Ito's colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design"; also
# Wong 2011, Nature Methods 8:441): told apart with protanopia, deuteranopia and tritanopia.
# Its black is swapped for a dark grey and its yellow left out: black vanishes on Streamlit's
# dark theme and yellow (contrast 1.3:1) on the light one; every colour here keeps >= 2.2:1 on
# both, and any two stay >= 12 CIELAB units apart under simulated protan/deutan/tritan vision
# (tests/test_charts.py). Beyond 7 runs colours repeat (several metrics also differ by dash).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#666666")

# Chart chrome that reads on Streamlit's light (#FFFFFF) and dark (#0E1117) backgrounds alike:
# transparent backgrounds, a mid-grey for text, translucent grey lines; a dark tooltip reads
# on both. ``theme="light" | "dark"`` swaps in that theme's own text colour (st.context.theme.type).
NEUTRAL_TEXT = "#808495"
THEME_TEXT = {"light": "#31333F", "dark": "#FAFAFA"}      # Streamlit's textColor of each base theme
GRID, AXIS_LINE = "rgba(128,128,128,0.22)", "rgba(128,128,128,0.5)"

X_AXES = {"step": "step", "time": "wall time (s)", "tokens": "tokens seen"}

# metric -> (axis label, unit, scale applied before drawing)
_METRICS: dict[str, tuple[str, str, float]] = {
    "loss": ("loss", "nats", 1.0),
    "lr": ("learning rate", "", 1.0),
    "grad_norm": ("gradient norm (before clipping)", "", 1.0),
    "samples_per_s": ("throughput", "samples/s", 1.0),
    "tokens_per_s": ("throughput", "tokens/s", 1.0),
    "tokens_seen": ("tokens seen", "tokens", 1.0),
    "peak_mem_mb": ("peak memory", "MB", 1.0),
    "progress": ("progress", "%", 100.0),
    "params_total": ("parameters", "count", 1.0),
    "params_trainable": ("trainable parameters", "count", 1.0),
    "eval/accuracy": ("eval accuracy", "%", 100.0),
    "eval/macro_f1": ("eval macro-F1", "%", 100.0),
    "eval/roc_auc": ("eval ROC AUC", "0-1", 1.0),
    "eval/loss": ("eval loss", "nats", 1.0),
    "eval/perplexity": ("eval perplexity", "", 1.0),
}

# Fields that do not change what a run computes: runs differing only here are seeds of one config.
SEED_IGNORED = ("seed", "name", "group")


# ---- labels and units ---------------------------------------------------------------

def metric_info(metric: str) -> tuple[str, str, float]:
    """(label, unit, scale) of a metric name; loss terms are in nats, unknown names plain. A value
    at a step ("eval/accuracy@10", a preset check) is the metric's, labelled with the step."""
    if "@" in metric:
        name, step = metric.rsplit("@", 1)
        label, unit, scale = metric_info(name)
        return (f"{label} at step {step}", unit, scale)
    if metric in _METRICS:
        return _METRICS[metric]
    if metric.startswith("loss/"):
        return (f"loss term {metric[5:]}", "nats", 1.0)
    if metric.startswith("eval/"):
        return (f"eval {metric[5:].replace('_', ' ')}", "", 1.0)
    return (metric.replace("_", " "), "", 1.0)


def axis_title(metric: str) -> str:
    """'loss (nats)', 'eval accuracy (%)', 'throughput (samples/s)'."""
    label, unit, _ = metric_info(metric)
    return f"{label} ({unit})" if unit else label


def x_title(x: str) -> str:
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not an x axis; choose one of {list(X_AXES)}")
    return X_AXES[x]


# ---- colours --------------------------------------------------------------------------

def run_color(run_id: str) -> str:
    """The run's own colour: a hash of its id into the palette (same in every session)."""
    digest = hashlib.md5(str(run_id).encode("utf-8")).digest()
    return PALETTE[int.from_bytes(digest[:4], "big") % len(PALETTE)]


def run_colors(run_ids: Sequence[str]) -> dict[str, str]:
    """A distinct colour per run, stable across calls.

    Each run gets its own hash colour unless a run earlier in ``run_ids`` (pass them
    oldest first) already took it; then it takes the next free palette slot. So adding
    a newer run to a chart never recolours the older ones. Beyond 7 runs colours repeat.
    """
    out: dict[str, str] = {}
    taken: set[int] = set()
    for rid in dict.fromkeys(run_ids):
        slot = PALETTE.index(run_color(rid))
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        out[rid] = PALETTE[slot]
    return out


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# ---- smoothing --------------------------------------------------------------------------

def ema_debiased(values: Iterable[float], weight: float) -> np.ndarray:
    """TensorBoard's smoothing: exponential moving average with zero-debiasing.

        last_n = w * last_{n-1} + (1 - w) * x_n,  last_0 = 0
        smoothed_n = last_n / (1 - w^n)

    which equals ``pandas.Series.ewm(alpha=1-w, adjust=True).mean()``. Non-finite
    values are passed through and do not enter the average. ``weight`` in [0, 1);
    0 returns the input.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight={weight!r} must be in [0, 1), e.g. 0.6")
    x = np.asarray(list(values), dtype=float)
    out = x.copy()
    if weight == 0.0:
        return out
    last, n = 0.0, 0
    for i, v in enumerate(x):
        if not math.isfinite(v):
            continue
        last = weight * last + (1.0 - weight) * v
        n += 1
        out[i] = last / (1.0 - weight ** n)
    return out


# ---- series ---------------------------------------------------------------------------------

def series_frame(metrics: pd.DataFrame, metric: str, x: str = "step") -> pd.DataFrame:
    """One metric of every run in ``metrics``: columns run_id, step, x, value (scaled), sorted.

    x = "step"; "time" = seconds since the run's first logged value; "tokens" = the
    run's tokens_seen at that step (points without it are dropped).
    """
    x_title(x)
    cols = ["run_id", "step", "x", "value"]
    if metrics is None or metrics.empty:
        return pd.DataFrame(columns=cols)
    _, _, scale = metric_info(metric)
    rows = metrics[metrics["name"] == metric]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = rows.drop_duplicates(["run_id", "step"], keep="last").copy()
    rows["value"] = rows["value"].astype(float) * scale
    if x == "step":
        rows["x"] = rows["step"].astype(float)
    elif x == "time":
        start = metrics.groupby("run_id")["wall_time"].min()
        rows["x"] = rows["wall_time"].astype(float) - rows["run_id"].map(start).astype(float)
    else:
        tokens = (metrics[metrics["name"] == "tokens_seen"].drop_duplicates(["run_id", "step"], keep="last")
                  [["run_id", "step", "value"]].rename(columns={"value": "x"}))
        rows = rows.merge(tokens, on=["run_id", "step"], how="inner")
    return rows[cols].sort_values(["run_id", "step"]).reset_index(drop=True)


def smooth_frame(frame: pd.DataFrame, weight: float) -> pd.DataFrame:
    """``series_frame`` output with each run's values smoothed by ``ema_debiased``."""
    if weight <= 0 or frame.empty:
        return frame
    out = frame.copy()
    out["value"] = out.groupby("run_id", sort=False)["value"].transform(lambda v: ema_debiased(v, weight))
    return out


# ---- seed groups --------------------------------------------------------------------------

def flatten_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"mix": {"kd": {"T": 2}}} -> {"mix.kd": "on", "mix.kd.T": 2}; lists kept as values."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if prefix.startswith("mix"):  # a strategy section: being present means "on"
                out[key] = "on"
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = v
    return out


def seed_groups(configs: Mapping[str, Mapping[str, Any]],
                ignore: Sequence[str] = SEED_IGNORED) -> list[list[str]]:
    """Groups (of 2 or more runs, in the given order) whose configs differ only in ``ignore``."""
    buckets: dict[str, list[str]] = {}
    for rid, cfg in configs.items():
        flat = flatten_config(cfg)
        key = repr(sorted((k, repr(v)) for k, v in flat.items() if k not in ignore))
        buckets.setdefault(key, []).append(rid)
    return [ids for ids in buckets.values() if len(ids) > 1]


def group_band(frame: pd.DataFrame, run_ids: Sequence[str], band: str = "minmax") -> pd.DataFrame:
    """Mean and band of one seed group at each step every member has logged.

    ``frame`` is a ``series_frame``; returns step, x (mean of the members' x), mean, lo,
    hi, n. band = "minmax" (lo/hi = min/max) or "sd" (mean -+ population sd). Steps
    only some members reached (a seed still training) are left out, so the mean never
    jumps when a member drops out.
    """
    if band not in ("minmax", "sd"):
        raise ValueError(f"band={band!r}: choose 'minmax' or 'sd'")
    members = frame[frame["run_id"].isin(run_ids)]
    cols = ["step", "x", "mean", "lo", "hi", "n"]
    if members.empty:
        return pd.DataFrame(columns=cols)
    want = len(set(run_ids))
    g = members.groupby("step")
    out = pd.DataFrame({
        "x": g["x"].mean(), "mean": g["value"].mean(), "min": g["value"].min(), "max": g["value"].max(),
        "sd": g["value"].std(ddof=0), "n": g["run_id"].nunique(),
    }).reset_index()
    out = out[out["n"] == want]
    if band == "minmax":
        out["lo"], out["hi"] = out["min"], out["max"]
    else:
        out["lo"], out["hi"] = out["mean"] - out["sd"], out["mean"] + out["sd"]
    return out[cols].reset_index(drop=True)


# ---- paired deltas --------------------------------------------------------------------

def paired_deltas(frame: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each other run's value minus the baseline's at the same step: run_id, step, x, delta.

    Only steps both runs logged appear (a paired comparison: same step, same data order
    when seeds match). ``frame`` is a ``series_frame`` (possibly smoothed).
    """
    cols = ["run_id", "step", "x", "delta"]
    base = frame[frame["run_id"] == baseline][["step", "value"]].rename(columns={"value": "base"})
    others = frame[frame["run_id"] != baseline]
    if base.empty or others.empty:
        return pd.DataFrame(columns=cols)
    merged = others.merge(base, on="step", how="inner")
    merged["delta"] = merged["value"] - merged["base"]
    return merged[cols].sort_values(["run_id", "step"]).reset_index(drop=True)


# ---- config diff --------------------------------------------------------------------------

def config_diff(configs: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str] | None = None,
                ignore: Sequence[str] = ()) -> pd.DataFrame:
    """Only the fields that differ: one row per dotted field, one column per run.

    A strategy enabled in one run and not in another shows as "on" / "off", and its
    fields as "-" where it is off.
    """
    labels = labels or {}
    flat = {rid: flatten_config(c) for rid, c in configs.items()}
    keys: list[str] = []
    for f in flat.values():
        keys.extend(k for k in f if k not in keys and k not in ignore)
    rows = {}
    for k in keys:
        vals = [f.get(k, _MISSING) for f in flat.values()]
        if len({repr(v) for v in vals}) > 1:
            rows[k] = [_shown(k, v) for v in vals]
    columns = [labels.get(rid, rid) for rid in flat]
    df = pd.DataFrame.from_dict(rows, orient="index", columns=columns) if rows else pd.DataFrame(columns=columns)
    df.index.name = "field"
    return df


_MISSING = object()


def _shown(key: str, v: Any) -> str:
    if v is _MISSING:
        return "off" if key.startswith("mix.") and key.count(".") == 1 else "-"
    return str(v)


# ---- progress and tables -------------------------------------------------------------------

def progress_eta(wall_times: Sequence[float], progress: Sequence[float]) -> tuple[float, float | None]:
    """(latest progress 0..1, seconds left or None) from the run's (wall_time, progress) points.

    The rate is measured from the first to the last point, which leaves out model
    loading before the first step (evaluation pauses are included, as they will recur).
    """
    pts = [(t, p) for t, p in zip(wall_times, progress) if math.isfinite(t) and math.isfinite(p)]
    if not pts:
        return 0.0, None
    pts.sort()
    (t0, p0), (t1, p1) = pts[0], pts[-1]
    p1 = min(max(p1, 0.0), 1.0)
    if p1 >= 1.0:
        return 1.0, 0.0
    if p1 <= p0 or t1 <= t0:
        return p1, None
    return p1, (1.0 - p1) * (t1 - t0) / (p1 - p0)


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


FINAL_COLUMNS = ("step", "loss", "eval/accuracy", "eval/macro_f1", "eval/roc_auc", "eval/loss", "eval/perplexity",
                 "samples_per_s", "tokens_seen", "params_trainable")


def final_metrics_table(metrics: pd.DataFrame, labels: Mapping[str, str] | None = None,
                        names: Sequence[str] = FINAL_COLUMNS) -> pd.DataFrame:
    """The last logged value of each metric per run (rows = runs); accuracy/F1 in %."""
    labels = labels or {}
    if metrics is None or metrics.empty:
        return pd.DataFrame(columns=["run", *names])
    rows = []
    for rid, df in metrics.groupby("run_id", sort=False):
        df = df.sort_values("step")
        row: dict[str, Any] = {"run": labels.get(rid, rid), "step": int(df["step"].max())}
        for n in names:
            if n == "step":
                continue
            vals = df[df["name"] == n]["value"]
            if not vals.empty:
                row[n] = float(vals.iloc[-1]) * metric_info(n)[2]
        rows.append(row)
    out = pd.DataFrame(rows)
    keep = ["run"] + [n for n in names if n in out.columns]
    return out[keep].rename(columns={n: axis_title(n) for n in names if n != "step"})


def curves_csv(metrics: pd.DataFrame, labels: Mapping[str, str] | None = None) -> str:
    """All rows as CSV (long format: run_id, run, step, name, value, wall_time)."""
    labels = labels or {}
    df = metrics.copy()
    df.insert(1, "run", df["run_id"].map(lambda r: labels.get(r, r)))
    return df[["run_id", "run", "step", "name", "value", "wall_time"]].to_csv(index=False)


def figure_html(fig: go.Figure | Mapping[str, Any]) -> str:
    """A standalone HTML page with the figure (or spec); plotly.js is embedded, so it opens offline."""
    fig = fig if isinstance(fig, go.Figure) else go.Figure(fig)
    return fig.to_html(include_plotlyjs=True, full_html=True)


# ---- figures ----------------------------------------------------------------------------------
# Figures are built as plain dicts ({"data": [...], "layout": {...}}): building plotly
# graph objects validates every property and costs ~40 ms a chart, too much for a page
# that redraws five charts every second next to a training run. ``metric_figure`` wraps
# the same spec in a go.Figure for notebooks, tests and the HTML export.

FEW_POINTS = 30  # at or below this many points a line also gets markers: a 2-step run is not an empty chart
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


@functools.lru_cache(maxsize=1)
def _base_layout() -> dict[str, Any]:
    """Layout defaults for both Streamlit themes, as plain values (a template *name* means nothing to
    plotly.js in the chart iframe): see NEUTRAL_TEXT above."""
    axis = {"gridcolor": GRID, "linecolor": AXIS_LINE, "zerolinecolor": AXIS_LINE, "zerolinewidth": 1, "ticks": "",
            "automargin": True, "title": {"standoff": 15}}
    return {"colorway": list(PALETTE), "font": {"color": NEUTRAL_TEXT},
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
            "hoverlabel": {"align": "left", "bgcolor": "rgba(38,39,48,0.94)", "bordercolor": AXIS_LINE,
                           "font": {"color": "#FAFAFA"}},
            "modebar": {"bgcolor": "rgba(0,0,0,0)", "color": AXIS_LINE, "activecolor": NEUTRAL_TEXT},
            "xaxis": dict(axis), "yaxis": {**axis, "hoverformat": ".4~g"}, "title": {"x": 0.05}}


def base_layout() -> dict[str, Any]:
    """The layout every chart of the lab starts from (readable on light and dark themes)."""
    return _base_layout()


def themed(spec: Mapping[str, Any], theme: str | None) -> dict[str, Any]:
    """``spec`` with the text colour of Streamlit's ``theme`` ("light" | "dark"); None or unknown: as is.

    The neutral grey reads on both themes; a page that knows its theme (``st.context.theme.type``)
    can give text full contrast.
    """
    color = THEME_TEXT.get(theme or "")
    if color is None:
        return dict(spec)
    layout = copy.deepcopy(dict(spec.get("layout", {})))
    layout["font"] = {**layout.get("font", {}), "color": color}
    legend = layout.get("legend")
    if isinstance(legend, dict) and isinstance(legend.get("font"), dict):
        legend["font"] = {**legend["font"], "color": color}
    return {**spec, "layout": layout}


def _mode(n: int) -> str:
    return "lines+markers" if n <= FEW_POINTS else "lines"


def _values(a: Iterable[Any]) -> list[Any]:
    """JSON-safe floats: NaN/inf become None (a gap), which JSON and plotly.js both accept."""
    arr = np.asarray(list(a) if not isinstance(a, (np.ndarray, pd.Series)) else a, dtype=float)
    return [float(v) if math.isfinite(v) else None for v in arr.tolist()]


def _line(x, y, *, name: str, color: str, dash: str = "solid", width: float = 2, group: str = "",
          show: bool = True, hover: bool = True) -> dict[str, Any]:
    xs, ys = _values(x), _values(y)
    trace = {"type": "scatter", "x": xs, "y": ys, "mode": _mode(len(xs)), "name": name,
             "line": {"color": color, "width": width, "dash": dash}, "marker": {"size": 6 if width >= 2 else 4},
             "legendgroup": group or name, "showlegend": show}
    if not hover:
        trace["hoverinfo"] = "skip"
    return trace


def _layout(data: list[dict], *, x: str, y: str, title: str | None, log_y: bool, uirevision: Any,
            height: int, empty_text: str) -> dict[str, Any]:
    base = copy.deepcopy(_base_layout())
    # legend on top (under the title, if any): at the bottom it collides with the x-axis title
    layout = {**base, "height": height, "margin": {"l": 64, "r": 16, "t": 62 if title else 34, "b": 48},
              "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0, "xanchor": "left",
                         "font": {"size": 11}},
              "hovermode": "x unified", "uirevision": uirevision}
    if title:
        layout["title"] = {**base.get("title", {}), "text": title, "x": 0.0, "xanchor": "left", "y": 0.98,
                           "yanchor": "top", "font": {"size": 15}}
    layout["xaxis"] = {**base.get("xaxis", {}), "title": {"text": x_title(x), "standoff": 6},
                       "rangemode": "tozero" if x != "step" else "normal"}
    layout["yaxis"] = {**base.get("yaxis", {}), "title": {"text": y}, "type": "log" if log_y else "linear",
                       "exponentformat": "e"}
    ys = [v for t in data for v in t.get("y", []) if v is not None]
    if ys and not log_y and min(ys) == max(ys):  # a constant (e.g. lr): plotly would centre it on -0.5..1
        pad = abs(ys[0]) * 0.1 or 1.0
        layout["yaxis"]["range"] = [ys[0] - pad, ys[0] + pad]
    if not data:
        layout["annotations"] = [{"text": empty_text, "showarrow": False, "xref": "paper", "yref": "paper",
                                  "x": 0.5, "y": 0.5, "font": {"size": 14, "color": NEUTRAL_TEXT}}]
        for axis in ("xaxis", "yaxis"):
            layout[axis].update(showticklabels=False, showgrid=False, zeroline=False)
    return layout


def metric_spec(metrics: pd.DataFrame, metric: str | Sequence[str], *, x: str = "step",
                labels: Mapping[str, str] | None = None, colors: Mapping[str, str] | None = None,
                smoothing: float = 0.0, log_y: bool = False, groups: Sequence[Sequence[str]] = (),
                band: str = "minmax", title: str | None = None, y_title: str | None = None,
                uirevision: Any = "keep", height: int = 320) -> dict[str, Any]:
    """Overlaid curves of one metric (or several, told apart by dash) for every run in ``metrics``.

    With ``smoothing`` > 0 the raw line stays, faint, under the smoothed one. Runs in
    ``groups`` (seed groups) are drawn as their mean with a shaded band instead.
    ``uirevision`` constant across refreshes keeps the user's zoom. Returns a plotly
    figure as a plain dict (see ``metric_figure`` for a go.Figure).
    """
    names = [metric] if isinstance(metric, str) else list(metric)
    labels = dict(labels or {})
    run_ids = pd.unique(metrics["run_id"]).tolist() if metrics is not None and not metrics.empty else []
    colors = dict(colors or run_colors(run_ids))
    grouped = {rid for g in groups for rid in g}
    data: list[dict] = []
    for mi, name in enumerate(names):
        frame = series_frame(metrics, name, x)
        smooth = smooth_frame(frame, smoothing)
        dash = DASHES[mi % len(DASHES)]
        suffix = f" {metric_info(name)[0]}" if len(names) > 1 else ""
        by_run = dict(tuple(frame.groupby("run_id", sort=False))) if not frame.empty else {}
        smooth_by_run = dict(tuple(smooth.groupby("run_id", sort=False))) if smoothing > 0 and not smooth.empty else {}
        for rid in run_ids:
            if rid in grouped or rid not in by_run:
                continue
            raw = by_run[rid]
            color = colors.get(rid) or run_color(rid)
            label = labels.get(rid, rid) + suffix
            group = f"{rid}{name}"
            if smoothing > 0:
                data.append(_line(raw["x"], raw["value"], name=label + " (raw)", color=_rgba(color, 0.25), dash=dash,
                                  width=1, group=group, show=False, hover=False))
                sm = smooth_by_run[rid]
                data.append(_line(sm["x"], sm["value"], name=label, color=color, dash=dash, group=group))
            else:
                data.append(_line(raw["x"], raw["value"], name=label, color=color, dash=dash, group=group))
        for members in groups:
            gb = group_band(smooth, members, band)
            if gb.empty:
                continue
            color = colors.get(members[0]) or run_color(members[0])
            base = labels.get(members[0], members[0])
            label = f"{base} +{len(members) - 1} seeds: mean" + suffix
            band_name = "min-max" if band == "minmax" else "±1 sd"
            group = f"g{members[0]}{name}"
            data.append({"type": "scatter", "x": _values(list(gb["x"]) + list(gb["x"])[::-1]),
                         "y": _values(list(gb["hi"]) + list(gb["lo"])[::-1]), "fill": "toself",
                         "fillcolor": _rgba(color, 0.18), "line": {"width": 0}, "mode": "lines",
                         "name": f"{label} ({band_name})", "legendgroup": group, "showlegend": False,
                         "hoverinfo": "skip"})
            data.append(_line(gb["x"], gb["mean"], name=f"{label}, {band_name} band", color=color, dash=dash,
                              width=2.5, group=group))
    layout = _layout(data, x=x, y=y_title or axis_title(names[0]), title=title, log_y=log_y, uirevision=uirevision,
                     height=height, empty_text="no points yet")
    return {"data": data, "layout": layout}


def delta_spec(deltas: pd.DataFrame, metric: str, baseline_label: str, *, x: str = "step",
               labels: Mapping[str, str] | None = None, colors: Mapping[str, str] | None = None,
               title: str | None = None, uirevision: Any = "keep", height: int = 300) -> dict[str, Any]:
    """``paired_deltas`` as lines around a dotted zero line (the baseline), as a plain dict."""
    labels = labels or {}
    colors = dict(colors or {})
    data = [_line(d["x"], d["delta"], name=labels.get(rid, rid), color=colors.get(rid) or run_color(rid))
            for rid, d in deltas.groupby("run_id", sort=False)]
    label, unit, _ = metric_info(metric)
    y = f"Δ {label} vs {baseline_label}" + (f" ({unit})" if unit else "")
    layout = _layout(data, x=x, y=y, title=title, log_y=False, uirevision=uirevision, height=height,
                     empty_text="no steps in common with the baseline yet")
    layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": 0, "y1": 0,
                         "line": {"color": AXIS_LINE, "width": 1, "dash": "dot"}}]
    return {"data": data, "layout": layout}


def metric_figure(*args: Any, **kwargs: Any) -> go.Figure:
    """``metric_spec`` as a go.Figure (for notebooks, tests and ``figure_html``)."""
    return go.Figure(metric_spec(*args, **kwargs))


def delta_figure(*args: Any, **kwargs: Any) -> go.Figure:
    """``delta_spec`` as a go.Figure."""
    return go.Figure(delta_spec(*args, **kwargs))


# ---- a final metric against a swept quantity (labels, pretraining steps) -----------------------------

CURVE_COLOURS = {"tiny BERT after contrastive pretraining": "#2ca02c", "tiny BERT from scratch": "#7f7f7f",
                 "tiny BERT after masked-LM pretraining": "#ff7f0e", "bag-of-words logistic regression": "#1f77b4"}


@dataclass(frozen=True)
class Curve:
    """One line of a measured curve: at each x, the metric's mean and sd over seeds, from n values."""

    name: str
    x: list
    mean: list[float]
    sd: list[float]
    n: list[int]


def curves_of(series: Mapping[str, Mapping[Any, Sequence[float]]]) -> list[Curve]:
    """{name: {x: values over seeds}} -> one Curve per name, x in the order given."""
    import statistics

    out = []
    for name, points in series.items():
        xs = list(points)
        vals = [list(points[x]) for x in xs]
        out.append(Curve(name, xs, [statistics.fmean(v) if v else float("nan") for v in vals],
                         [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals], [len(v) for v in vals]))
    return out


def curve_figure(curves: Sequence[Curve], title: str, x_title: str, metric: str = "eval/accuracy", *,
                 log_x: bool = False, height: int = 360) -> go.Figure:
    """One line per curve (name, x, mean, sd), the sd over seeds as error bars; a
    baseline (a name starting "bag-of-words") dotted."""
    fig = go.Figure()
    for i, c in enumerate(curves):
        fig.add_scatter(x=list(c.x), y=list(c.mean), name=c.name, mode="lines+markers",
                        line=dict(color=CURVE_COLOURS.get(c.name, PALETTE[i % len(PALETTE)]),
                                  dash="dot" if c.name.startswith("bag-of-words") else "solid"),
                        error_y=dict(type="data", array=list(c.sd), visible=True, thickness=1))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=axis_title(metric), height=height,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    if metric_info(metric)[1] == "%" or metric.startswith("eval/accuracy"):
        fig.update_yaxes(range=[0, 1], tickformat=".0%")
    if log_x and curves:
        fig.update_xaxes(type="log", tickvals=list(curves[0].x))
    return fig
