"""ui.live_feed: Live's figures grown point by point equal charts.metric_spec over all rows, at every step."""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hft_core import charts  # noqa: E402
from hft_core.config import RunConfig  # noqa: E402
from hft_core.store import RunStore  # noqa: E402
from ui import live_feed  # noqa: E402


def training_rows(run_id: str, steps: int, seed: int, t0: float = 1000.0, nan_at: int | None = None,
                  eval_every: int = 5) -> list[list[tuple]]:
    """One list of rows per logged step, as the trainer writes them (loss, terms, lr, tokens, evals)."""
    rng = random.Random(seed)
    out = [[(run_id, 0, "params_total", 1000.0, t0)]]
    for s in range(1, steps + 1):
        t = t0 + 0.5 + s * rng.uniform(0.2, 0.4)
        loss = 2.0 / s + rng.random() * 0.1
        if s == nan_at:
            loss = float("nan")
        rows = [(run_id, s, "loss", loss, t), (run_id, s, "loss/task", loss * 0.8, t),
                (run_id, s, "loss/kd", loss * 0.2, t), (run_id, s, "lr", 1e-3, t),
                (run_id, s, "samples_per_s", 100 + rng.random(), t), (run_id, s, "progress", s / steps, t)]
        if s % 3:  # not every step has a tokens count (a point on the tokens axis is then left out)
            rows.append((run_id, s, "tokens_seen", 64.0 * s, t))
        out.append(rows)
        if s % eval_every == 0:
            out.append([(run_id, s, "eval/accuracy", rng.random(), t + 0.1)])
    return out


def frame(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=live_feed.COLUMNS)
    return df.sort_values(["step", "name"], kind="stable").reset_index(drop=True)


SETTINGS = [
    dict(metric="loss", x="step", smoothing=0.0),
    dict(metric="loss", x="step", smoothing=0.6),
    dict(metric="loss", x="time", smoothing=0.9, log_y=True),
    dict(metric="loss", x="tokens", smoothing=0.5),
    dict(metric=["loss/task", "loss/kd"], x="step", smoothing=0.3, y_title="loss term (nats)"),
    dict(metric="eval/accuracy", x="tokens", smoothing=0.0),
    dict(metric="lr", x="step", smoothing=0.0),
    dict(metric="samples_per_s", x="time", smoothing=0.0),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s['metric']}-{s['x']}-{s['smoothing']}")
def test_grown_figure_equals_metric_spec_at_every_step(settings):
    runs = {"r-a": training_rows("r-a", 45, seed=1, nan_at=7), "r-b": training_rows("r-b", 40, seed=2, t0=1005.0)}
    logs = {rid: live_feed.RunLog(rid) for rid in runs}
    kw = dict(settings)
    metric = kw.pop("metric")
    fig = live_feed.LiveFigure(metric, labels={"r-a": "A", "r-b": "B"}, colors={"r-a": "#111111", "r-b": "#222222"},
                               uirevision="live-x", height=280, **kw)
    rng = random.Random(0)
    pending = {rid: list(batches) for rid, batches in runs.items()}
    updates = 0
    while any(pending.values()):
        for rid in runs:  # a refresh reads a few new log calls of each run, as the store flushes them
            take = rng.randint(0, 3)
            batch = [r for b in pending[rid][:take] for r in b]
            del pending[rid][:take]
            if batch:
                logs[rid].add(frame(batch))
        ordered = [logs["r-a"], logs["r-b"]]
        got = fig.update(ordered)
        want = charts.metric_spec(live_feed.frame_of(ordered), metric, labels={"r-a": "A", "r-b": "B"},
                                  colors={"r-a": "#111111", "r-b": "#222222"}, uirevision="live-x", height=280, **kw)
        assert got == want
        updates += 1
    assert updates > 20
    # mostly extended, not rebuilt: a rebuild for new traces, markers dropping past 30 points, a broken constant
    assert fig.rebuilds <= 8, fig.rebuilds


def test_an_unchanged_log_gives_the_same_figure_object():
    log = live_feed.RunLog("r-a")
    for b in training_rows("r-a", 5, seed=3):
        log.add(frame(b))
    fig = live_feed.LiveFigure("loss", smoothing=0.6)
    first = fig.update([log])
    assert fig.update([log]) is first
    log.add(frame([("r-a", 6, "loss", 0.5, 2000.0)]))
    grown = fig.update([log])
    assert grown is not first and grown["data"][1]["x"][-1] == 6.0
    assert first["data"][1]["x"][-1] == 5.0  # the old figure is left as it was (the chart component diffs the two)


def test_a_rewritten_point_rebuilds_the_figure():
    log = live_feed.RunLog("r-a")
    for b in training_rows("r-a", 10, seed=4):
        log.add(frame(b))
    fig = live_feed.LiveFigure("loss")
    fig.update([log])
    before = fig.rebuilds
    log.add(frame([("r-a", 4, "loss", 9.0, 1001.0)]))  # a resumed run rewrote step 4
    spec = fig.update([log])
    assert fig.rebuilds == before + 1
    assert spec == charts.metric_spec(log.frame(), "loss")
    assert 9.0 in spec["data"][0]["y"]


def test_seed_groups_are_rebuilt_only_when_data_changed():
    logs = []
    for i, rid in enumerate(("r-a", "r-b")):
        log = live_feed.RunLog(rid)
        for b in training_rows(rid, 8, seed=i):
            log.add(frame(b))
        logs.append(log)
    fig = live_feed.LiveFigure("loss", groups=[["r-a", "r-b"]])
    first = fig.update(logs)
    assert fig.update(logs) is first and fig.rebuilds == 1
    assert first == charts.metric_spec(live_feed.frame_of(logs), "loss", groups=[["r-a", "r-b"]])


def test_read_logs_reads_only_new_rows_and_rereads_a_resumed_run(tmp_path):
    with RunStore(tmp_path) as store:
        rid = store.create_run(RunConfig(model="tiny:bert"), status="running", device="cpu")
        for s in range(1, 6):
            store.log_metrics(rid, s, {"loss": 1.0 / s, "progress": s / 10})
        store.flush()

        class Rec:
            def __init__(self, status):
                self.id, self.status = rid, status

        logs: dict = {}
        (log,) = live_feed.read_logs(store, logs, [Rec("running")], done=["finished", "stopped"])
        assert log.series["loss"][0] == [1, 2, 3, 4, 5]
        frac, eta, step = log.progress()
        assert step == 5 and math.isclose(frac, 0.5) and eta is not None and eta > 0
        store.log_metrics(rid, 6, {"loss": 1.0 / 6})
        store.flush()
        live_feed.read_logs(store, logs, [Rec("stopped")], done=["finished", "stopped"])
        assert log.series["loss"][0][-1] == 6
        stamp = log.rows
        live_feed.read_logs(store, logs, [Rec("stopped")], done=["finished", "stopped"])  # ended: not read again
        assert log.rows == stamp
        store.truncate_metrics(rid, after_step=3)
        store.log_metrics(rid, 4, {"loss": 7.0})
        store.flush()
        live_feed.read_logs(store, logs, [Rec("running")], done=["finished", "stopped"])  # resumed: afresh
        assert logs[rid].series["loss"] == ([1, 2, 3, 4], [1.0, 0.5, 1.0 / 3, 7.0], logs[rid].series["loss"][2])
        pd.testing.assert_frame_equal(logs[rid].frame().sort_values(["step", "name"]).reset_index(drop=True),
                                      store.metrics(rid).sort_values(["step", "name"]).reset_index(drop=True))
        live_feed.read_logs(store, logs, [], done=["finished"])
        assert logs == {}


# ---- ui.live_chart: what the iframe is sent --------------------------------------------------------

def test_grown_points_are_the_tails_of_a_figure_that_only_grew():
    from ui.live_chart import grown_points

    old = {"data": [{"name": "a", "x": [1.0, 2.0], "y": [3.0, 4.0]}, {"name": "b", "x": [1.0], "y": [5.0]}],
           "layout": {"height": 280}}
    new = {"data": [{"name": "a", "x": [1.0, 2.0, 3.0], "y": [3.0, 4.0, None]}, old["data"][1]],
           "layout": old["layout"]}
    assert grown_points(old, new) == {0: ([3.0], [None])}
    assert grown_points(old, old) == {}
    restyled = {**new, "data": [{**new["data"][0], "mode": "lines"}, old["data"][1]]}
    assert grown_points(old, restyled) is None                         # a style changed: whole figure
    rewritten = {**new, "data": [{"name": "a", "x": [1.0, 2.0, 3.0], "y": [3.0, 9.0, 1.0]}, old["data"][1]]}
    assert grown_points(old, rewritten) is None                        # an old point changed
    assert grown_points(old, {**new, "layout": {"height": 300}}) is None
    assert grown_points(old, {**new, "data": new["data"][:1]}) is None  # a trace went


def test_the_iframe_gets_a_figure_then_numbered_chunks_and_the_figure_again_when_asked():
    from ui.live_chart import KEEP_CHUNKS, _Sent

    sent = _Sent()
    fig = {"data": [{"x": [1.0], "y": [1.0]}], "layout": {}}
    first = sent.args(fig)
    assert first["figure"] is fig and first["chunks"] == []
    for step in range(2, 4 + KEEP_CHUNKS):
        fig = {"data": [{"x": fig["data"][0]["x"] + [float(step)], "y": fig["data"][0]["y"] + [1.0 / step]}],
               "layout": fig["layout"]}
        args = sent.args(fig)
        assert "figure" not in args and args["rev"] == first["rev"]
    assert [c["seq"] for c in args["chunks"]] == list(range(first["seq"] + 3, first["seq"] + 3 + KEEP_CHUNKS))
    assert args["chunks"][-1]["x"] == [[float(3 + KEEP_CHUNKS)]]
    assert sent.args(fig)["chunks"] == args["chunks"]  # nothing new: the same args (the browser is not told again)
    sent.resend = True  # the iframe found a gap, or is new
    again = sent.args(fig)
    assert again["figure"] is fig and again["rev"] > first["rev"] and again["seq"] == args["chunks"][-1]["seq"]


# ---- ui.live_chart: which plotly.js the iframe loads ------------------------------------------------

def _bundle(path: Path, header: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("/**\n* " + header + "\n* Licensed under the MIT license\n*/\n(function () {})();\n",
                    encoding="utf-8")
    return path


def test_the_charts_load_the_basic_bundle_only_at_the_plotly_packages_own_version(tmp_path):
    from ui.live_chart import plotly_bundle, plotly_js_version
    import plotly
    full = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    version = plotly_js_version(full)
    assert version and version[0].isdigit(), "the plotly package's bundle names its plotly.js version"
    assert plotly_bundle(tmp_path / "none") == full  # setup fetched nothing: the full bundle
    basic = _bundle(tmp_path / "a" / f"plotly-basic-{version}.min.js", f"plotly.js (basic - minified) v{version}")
    assert plotly_js_version(basic) == version
    assert plotly_bundle(tmp_path / "a") == basic
    # a file of another version under this version's name (a stale or damaged fetch): the full bundle
    _bundle(tmp_path / "b" / f"plotly-basic-{version}.min.js", "plotly.js (basic - minified) v0.0.1")
    assert plotly_bundle(tmp_path / "b") == full
    _bundle(tmp_path / "c" / f"plotly-basic-{version}.min.js", "not plotly at all")
    assert plotly_bundle(tmp_path / "c") == full


def test_every_chart_the_pages_draw_uses_only_trace_types_of_the_basic_bundle():
    # plotly.js's basic bundle has scatter, bar and pie; a trace of another type would draw nothing
    basic_types = {"scatter", "bar", "pie"}
    rows = [r for rid, seed in (("r-a", 0), ("r-b", 1), ("r-c", 2)) for step in training_rows(rid, 12, seed) for r in step]
    df = frame(rows)
    specs = [charts.metric_spec(df, **s) for s in SETTINGS]
    specs.append(charts.metric_spec(df, "loss", groups=[["r-a", "r-b", "r-c"]], band="minmax"))
    specs.append(charts.metric_spec(df, "loss", groups=[["r-a", "r-b"]], band="sd", smoothing=0.5))
    specs.append(charts.delta_spec(charts.paired_deltas(charts.series_frame(df, "loss"), "r-a"), "loss", "r-a"))
    types = {t.get("type", "scatter") for spec in specs for t in spec["data"]}
    assert types and types <= basic_types, types
