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
    run_colors     a stable colour per run id (hash -> palette)
    config_diff    only the config fields that differ between runs
    metric_figure, delta_figure, final_metrics_table, curves_csv, figure_html
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# 11 colours any two of which are told apart on a white background (D3's category10 + black).
# More would bring near-duplicates (two blues, two purples); beyond 11 runs colours repeat.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#222222",
)

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
    """(label, unit, scale) of a metric name; loss terms are in nats, unknown names plain."""
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
    a newer run to a chart never recolours the older ones. Beyond 11 runs colours repeat.
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


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page with the figure; plotly.js is embedded, so it opens offline."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


# ---- figures ----------------------------------------------------------------------------------

FEW_POINTS = 30  # at or below this many points a line also gets markers: a 2-step run is not an empty chart
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _say_empty(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(size=14, color="#888"))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)


def _mode(n: int) -> str:
    return "lines+markers" if n <= FEW_POINTS else "lines"


def _layout(fig: go.Figure, *, x: str, y: str, title: str | None, log_y: bool, uirevision: Any,
            height: int) -> go.Figure:
    # legend on top (under the title, if any): at the bottom it collides with the x-axis title
    fig.update_layout(
        template="plotly_white", height=height, margin=dict(l=64, r=16, t=62 if title else 34, b=48),
        title=dict(text=title, x=0.0, xanchor="left", y=0.98, yanchor="top", font=dict(size=15)) if title else None,
        legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, xanchor="left", font=dict(size=11)),
        hovermode="x unified", uirevision=uirevision,
    )
    fig.update_xaxes(title_text=x_title(x), title_standoff=6, rangemode="tozero" if x != "step" else "normal")
    fig.update_yaxes(title_text=y, type="log" if log_y else "linear", exponentformat="e")
    ys = [v for t in fig.data if getattr(t, "y", None) is not None for v in t.y
          if v is not None and math.isfinite(v)]
    if ys and not log_y and min(ys) == max(ys):  # a constant (e.g. lr): plotly would centre it on -0.5..1
        v = ys[0]
        pad = abs(v) * 0.1 or 1.0
        fig.update_yaxes(range=[v - pad, v + pad])
    return fig


def metric_figure(metrics: pd.DataFrame, metric: str | Sequence[str], *, x: str = "step",
                  labels: Mapping[str, str] | None = None, colors: Mapping[str, str] | None = None,
                  smoothing: float = 0.0, log_y: bool = False, groups: Sequence[Sequence[str]] = (),
                  band: str = "minmax", title: str | None = None, y_title: str | None = None,
                  uirevision: Any = "keep", height: int = 320) -> go.Figure:
    """Overlaid curves of one metric (or several, told apart by dash) for every run in ``metrics``.

    With ``smoothing`` > 0 the raw line stays, faint, under the smoothed one. Runs in
    ``groups`` (seed groups) are drawn as their mean with a shaded band instead.
    ``uirevision`` constant across refreshes keeps the user's zoom.
    """
    names = [metric] if isinstance(metric, str) else list(metric)
    labels = dict(labels or {})
    run_ids = list(dict.fromkeys(metrics["run_id"])) if metrics is not None and not metrics.empty else []
    colors = dict(colors or run_colors(run_ids))
    grouped = {rid for g in groups for rid in g}
    fig = go.Figure()
    for mi, name in enumerate(names):
        frame = series_frame(metrics, name, x)
        smooth = smooth_frame(frame, smoothing)
        dash = DASHES[mi % len(DASHES)]
        suffix = f" {metric_info(name)[0]}" if len(names) > 1 else ""
        for rid in run_ids:
            if rid in grouped:
                continue
            raw = frame[frame["run_id"] == rid]
            if raw.empty:
                continue
            color = colors.get(rid) or run_color(rid)
            label = labels.get(rid, rid) + suffix
            if smoothing > 0:
                fig.add_trace(go.Scatter(x=raw["x"], y=raw["value"], mode=_mode(len(raw)), name=label + " (raw)",
                                         line=dict(color=_rgba(color, 0.25), width=1, dash=dash),
                                         marker=dict(size=4), legendgroup=f"{rid}{name}", showlegend=False,
                                         hoverinfo="skip"))
                sm = smooth[smooth["run_id"] == rid]
                fig.add_trace(go.Scatter(x=sm["x"], y=sm["value"], mode=_mode(len(sm)), name=label,
                                         line=dict(color=color, width=2, dash=dash), marker=dict(size=6),
                                         legendgroup=f"{rid}{name}"))
            else:
                fig.add_trace(go.Scatter(x=raw["x"], y=raw["value"], mode=_mode(len(raw)), name=label,
                                         line=dict(color=color, width=2, dash=dash), marker=dict(size=6),
                                         legendgroup=f"{rid}{name}"))
        for members in groups:
            gb = group_band(smooth, members, band)
            if gb.empty:
                continue
            color = colors.get(members[0]) or run_color(members[0])
            base = labels.get(members[0], members[0])
            label = f"{base} +{len(members) - 1} seeds: mean" + suffix
            band_name = "min-max" if band == "minmax" else "±1 sd"
            fig.add_trace(go.Scatter(x=list(gb["x"]) + list(gb["x"])[::-1], y=list(gb["hi"]) + list(gb["lo"])[::-1],
                                     fill="toself", fillcolor=_rgba(color, 0.18), line=dict(width=0),
                                     name=f"{label} ({band_name})", legendgroup=f"g{members[0]}{name}",
                                     showlegend=False, hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=gb["x"], y=gb["mean"], mode=_mode(len(gb)),
                                     name=f"{label}, {band_name} band", line=dict(color=color, width=2.5, dash=dash),
                                     marker=dict(size=6), legendgroup=f"g{members[0]}{name}"))
    if not fig.data:
        _say_empty(fig, "no points yet")
    return _layout(fig, x=x, y=y_title or axis_title(names[0]), title=title, log_y=log_y, uirevision=uirevision,
                   height=height)


def delta_figure(deltas: pd.DataFrame, metric: str, baseline_label: str, *, x: str = "step",
                 labels: Mapping[str, str] | None = None, colors: Mapping[str, str] | None = None,
                 title: str | None = None, uirevision: Any = "keep", height: int = 300) -> go.Figure:
    """``paired_deltas`` as lines around a zero line (the baseline)."""
    labels = labels or {}
    colors = dict(colors or {})
    fig = go.Figure()
    for rid, d in deltas.groupby("run_id", sort=False):
        fig.add_trace(go.Scatter(x=d["x"], y=d["delta"], mode=_mode(len(d)), name=labels.get(rid, rid),
                                 line=dict(color=colors.get(rid) or run_color(rid), width=2), marker=dict(size=6)))
    fig.add_hline(y=0, line=dict(color="#444", width=1, dash="dot"))
    if deltas.empty:
        _say_empty(fig, "no steps in common with the baseline yet")
    label, unit, _ = metric_info(metric)
    y = f"Δ {label} vs {baseline_label}" + (f" ({unit})" if unit else "")
    return _layout(fig, x=x, y=y, title=title, log_y=False, uirevision=uirevision, height=height)
