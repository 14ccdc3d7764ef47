"""Chart helpers: smoothing against a reference, seed groups, deltas, colours, config diff."""
import math

import numpy as np
import pandas as pd
import pytest

from hft_core import charts


def _frame(runs: dict[str, dict[str, list[float]]], t0: float = 1000.0) -> pd.DataFrame:
    """Metric rows like RunStore.metrics: one value per step starting at step 1, 0.5 s apart."""
    rows = []
    for rid, metrics in runs.items():
        for name, values in metrics.items():
            for i, v in enumerate(values):
                rows.append({"run_id": rid, "step": i + 1, "name": name, "value": v, "wall_time": t0 + 0.5 * i})
    return pd.DataFrame(rows, columns=["run_id", "step", "name", "value", "wall_time"])


def _tensorboard_smooth(values, weight):
    """TensorBoard's JS smoothing (tf_line_chart_data_loader), transcribed line by line."""
    last, num_accum, out = 0.0, 0, []
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        num_accum += 1
        debias = 1.0 if weight == 1 else 1 - weight ** num_accum
        out.append(last / debias)
    return out


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.6, 0.9, 0.99])
def test_ema_matches_tensorboard_and_pandas(weight):
    rng = np.random.default_rng(0)
    x = list(2.0 * np.exp(-np.arange(50) / 10) + rng.normal(0, 0.1, 50))
    got = charts.ema_debiased(x, weight)
    np.testing.assert_allclose(got, _tensorboard_smooth(x, weight), rtol=1e-12)
    np.testing.assert_allclose(got, pd.Series(x).ewm(alpha=1 - weight, adjust=True).mean(), rtol=1e-10)


def test_ema_is_debiased_first_point_unchanged_and_constants_stay():
    # a plain EMA started at 0 would give 0.1 * 5 = 0.5 for the first point
    assert charts.ema_debiased([5.0, 5.0, 5.0], 0.9).tolist() == pytest.approx([5.0, 5.0, 5.0])


def test_ema_passes_nan_through_without_poisoning():
    got = charts.ema_debiased([1.0, float("nan"), 3.0], 0.5)
    assert math.isnan(got[1])
    assert got[2] == pytest.approx((0.5 * 0.5 * 1 + 0.5 * 3) / (1 - 0.25))


def test_ema_rejects_weight_one():
    with pytest.raises(ValueError, match="smoothing weight"):
        charts.ema_debiased([1.0], 1.0)


def test_series_frame_x_axes_and_percent_scaling():
    df = _frame({"a": {"eval/accuracy": [0.5, 0.75], "tokens_seen": [100, 200]}})
    s = charts.series_frame(df, "eval/accuracy", "step")
    assert s["value"].tolist() == [50.0, 75.0] and s["x"].tolist() == [1.0, 2.0]
    assert charts.series_frame(df, "eval/accuracy", "time")["x"].tolist() == [0.0, 0.5]
    assert charts.series_frame(df, "eval/accuracy", "tokens")["x"].tolist() == [100, 200]
    assert charts.series_frame(df, "missing").empty
    with pytest.raises(ValueError, match="x axis"):
        charts.series_frame(df, "loss", "epochs")


def test_seed_groups_only_differ_by_seed():
    base = {"model": "tiny:bert", "lr": 1e-3, "seed": 0, "name": "a", "mix": {"blend": {"alpha": 0.5}}}
    configs = {
        "r1": base,
        "r2": {**base, "seed": 1, "name": "b"},
        "r3": {**base, "seed": 2, "name": "c", "group": "g"},
        "r4": {**base, "lr": 3e-3},                                   # differs by lr: not a seed
        "r5": {**base, "mix": {"blend": {"alpha": 0.0}}},             # differs by alpha
        "r6": {**base, "seed": 3, "mix": {"blend": {"alpha": 0.0}}},  # a seed of r5
    }
    assert charts.seed_groups(configs) == [["r1", "r2", "r3"], ["r5", "r6"]]


def test_group_band_mean_minmax_and_sd_on_common_steps():
    df = _frame({"a": {"loss": [1.0, 2.0, 3.0]}, "b": {"loss": [3.0, 4.0]}})
    s = charts.series_frame(df, "loss")
    mm = charts.group_band(s, ["a", "b"], "minmax")
    assert mm["step"].tolist() == [1, 2]  # step 3: only a has it
    assert mm["mean"].tolist() == [2.0, 3.0] and mm["lo"].tolist() == [1.0, 2.0] and mm["hi"].tolist() == [3.0, 4.0]
    sd = charts.group_band(s, ["a", "b"], "sd")
    assert sd["lo"].tolist() == [1.0, 2.0] and sd["hi"].tolist() == [3.0, 4.0]  # population sd = 1
    with pytest.raises(ValueError):
        charts.group_band(s, ["a"], "iqr")


def test_paired_deltas_at_same_step_only():
    df = _frame({"base": {"loss": [2.0, 1.5, 1.0]}, "x": {"loss": [2.5, 1.0]}, "y": {"loss": [1.0, 1.0, 1.0, 0.5]}})
    d = charts.paired_deltas(charts.series_frame(df, "loss"), "base")
    assert d[d.run_id == "x"]["delta"].tolist() == [0.5, -0.5]
    assert d[d.run_id == "y"]["step"].tolist() == [1, 2, 3]  # step 4 has no baseline
    assert d[d.run_id == "y"]["delta"].tolist() == [-1.0, -0.5, 0.0]
    assert "base" not in set(d.run_id)


def test_colors_stable_across_calls_and_distinct():
    ids = [f"r-{i:06x}" for i in range(len(charts.PALETTE))]
    a = charts.run_colors(ids)
    assert a == charts.run_colors(list(ids))
    assert len(set(a.values())) == len(charts.PALETTE)  # as many runs as colours: all distinct
    assert charts.run_color("r-abc") == charts.run_color("r-abc")
    # adding a newer run never recolours the older ones
    older = charts.run_colors(ids[:5])
    assert {k: v for k, v in charts.run_colors(ids[:5] + ["r-new"]).items() if k != "r-new"} == older


# Machado, Oliveira & Fernandes 2009 (severity 1.0), on linear RGB: how each colour looks with
# protanopia, deuteranopia and tritanopia.
CVD = {"protan": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
       "deutan": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
       "tritan": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]}
D3_CATEGORY10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")


def _linear(hex_color):
    c = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(rgb):
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ np.clip(rgb, 0, 1)
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _closest_pair(palette, matrix):
    lab = [_lab(np.array(matrix) @ _linear(c)) for c in palette]
    return min(np.linalg.norm(a - b) for i, a in enumerate(lab) for b in lab[i + 1:])


def _contrast(a, b):
    la, lb = (float(np.array([0.2126, 0.7152, 0.0722]) @ _linear(c)) for c in (a, b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


@pytest.mark.parametrize("vision", sorted(CVD))
def test_run_colours_stay_apart_for_colour_blind_eyes(vision):
    assert _closest_pair(charts.PALETTE, CVD[vision]) >= 12  # CIELAB units: clearly different lines
    if vision == "protan":  # the old palette (D3 category10) had red/green pairs 5 units apart
        assert _closest_pair(D3_CATEGORY10, CVD[vision]) < 12


@pytest.mark.parametrize("background", ["#FFFFFF", "#0E1117"])  # Streamlit's light and dark backgrounds
def test_run_colours_and_chart_text_read_on_both_themes(background):
    assert min(_contrast(c, background) for c in charts.PALETTE) >= 2.2
    assert _contrast(charts.NEUTRAL_TEXT, background) >= 3.0


def test_charts_have_transparent_backgrounds_and_follow_a_known_theme():
    df = _frame({"a": {"loss": [2.0, 1.0]}})
    spec = charts.metric_spec(df, "loss")
    layout = spec["layout"]
    assert layout["paper_bgcolor"] == layout["plot_bgcolor"] == "rgba(0,0,0,0)"
    assert layout["font"]["color"] == charts.NEUTRAL_TEXT and spec["data"][0]["line"]["color"] in charts.PALETTE
    dark = charts.themed(spec, "dark")
    assert dark["layout"]["font"]["color"] == "#FAFAFA" and dark["data"] == spec["data"]
    assert spec["layout"]["font"]["color"] == charts.NEUTRAL_TEXT  # the original is not changed
    assert charts.themed(spec, None) == spec and charts.themed(spec, "sepia") == spec
    charts.metric_figure(df, "loss")  # plotly accepts the layout (it validates every property)


def test_config_diff_shows_only_differing_fields():
    c1 = {"model": "tiny:bert", "lr": 1e-3, "seed": 0, "mix": {"blend": {"alpha": 1.0, "mode": "lerp"}}}
    c2 = {"model": "tiny:bert", "lr": 3e-3, "seed": 0,
          "mix": {"blend": {"alpha": 0.5, "mode": "lerp"}, "kd": {"T": 2.0}}}
    diff = charts.config_diff({"r1": c1, "r2": c2}, labels={"r1": "base", "r2": "kd"})
    assert list(diff.columns) == ["base", "kd"]
    assert set(diff.index) == {"lr", "mix.blend.alpha", "mix.kd", "mix.kd.T"}
    assert diff.loc["mix.kd"].tolist() == ["off", "on"]
    assert diff.loc["mix.kd.T"].tolist() == ["-", "2.0"]
    assert charts.config_diff({"r1": c1, "r2": dict(c1)}).empty


def test_axis_titles_carry_units():
    assert charts.axis_title("loss") == "loss (nats)"
    assert charts.axis_title("loss/kd") == "loss term kd (nats)"
    assert charts.axis_title("eval/accuracy") == "eval accuracy (%)"
    assert charts.axis_title("samples_per_s") == "throughput (samples/s)"
    assert charts.x_title("time") == "wall time (s)"


def test_metric_figure_few_points_get_markers_and_smoothing_keeps_raw():
    df = _frame({"a": {"loss": [2.0, 1.0]}, "b": {"loss": list(np.linspace(2, 1, 100))}})
    fig = charts.metric_figure(df, "loss", labels={"a": "run a"}, uirevision="live-loss")
    modes = {t.name: t.mode for t in fig.data}
    assert modes["run a"] == "lines+markers" and modes["b"] == "lines"
    assert fig.layout.uirevision == "live-loss"
    assert fig.layout.yaxis.title.text == "loss (nats)" and fig.layout.xaxis.title.text == "step"
    sm = charts.metric_figure(df, "loss", smoothing=0.9, log_y=True)
    assert len(sm.data) == 4 and sm.layout.yaxis.type == "log"
    raw = [t for t in sm.data if t.name.endswith("(raw)")]
    assert len(raw) == 2 and all(t.showlegend is False for t in raw)


def test_metric_figure_draws_seed_group_as_band():
    df = _frame({"a": {"loss": [2.0, 1.0]}, "b": {"loss": [3.0, 2.0]}, "c": {"loss": [1.0, 1.0]}})
    fig = charts.metric_figure(df, "loss", groups=[["a", "b"]])
    names = [t.name for t in fig.data]
    assert "c" in names and "a" not in names and "b" not in names
    band = [t for t in fig.data if t.fill == "toself"]
    assert len(band) == 1 and list(band[0].y) == [3.0, 2.0, 1.0, 2.0]


def test_empty_figure_says_no_points_yet():
    fig = charts.metric_figure(_frame({}), "loss")
    assert fig.layout.annotations[0].text == "no points yet"


def test_delta_figure_and_progress_eta():
    df = _frame({"base": {"loss": [2.0, 1.5]}, "x": {"loss": [2.5, 1.0]}})
    d = charts.paired_deltas(charts.series_frame(df, "loss"), "base")
    fig = charts.delta_figure(d, "loss", "base")
    assert fig.layout.yaxis.title.text == "Δ loss vs base (nats)"
    assert charts.progress_eta([10.0, 20.0], [0.1, 0.2]) == (0.2, pytest.approx(80.0))
    assert charts.progress_eta([], []) == (0.0, None)
    assert charts.progress_eta([1.0, 2.0], [0.5, 1.0]) == (1.0, 0.0)
    assert charts.format_seconds(75) == "1 min 15 s"


def test_final_table_csv_and_html():
    df = _frame({"a": {"loss": [2.0, 1.0], "eval/accuracy": [0.5, 0.8]}})
    table = charts.final_metrics_table(df, labels={"a": "run a"})
    assert table.iloc[0]["run"] == "run a" and table.iloc[0]["eval accuracy (%)"] == pytest.approx(80.0)
    csv = charts.curves_csv(df, {"a": "run a"})
    assert csv.splitlines()[0] == "run_id,run,step,name,value,wall_time" and "run a" in csv
    html = charts.figure_html(charts.metric_figure(df, "loss"))
    assert "<html>" in html[:100] and "plotly" in html


def test_charts_module_does_not_import_streamlit():
    import subprocess
    import sys
    code = "import sys, hft_core.charts; sys.exit(1 if 'streamlit' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
