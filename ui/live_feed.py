"""Live curves grown point by point: what ``charts.metric_spec`` draws, without rebuilding it every second.

The Live page refreshes every second next to a training run that shares the CPU (and,
in the app, the GIL). Rebuilding every figure from every metric row each time costs
~150 ms a refresh at 2,000 steps x 3 runs, and grows with the run. Here:

    RunLog      one run's metrics as plain lists per metric name, grown by reading only
                the rows at or after the last step already read (``RunStore.metrics(since_step=)``)
    LiveFigure  one chart: built once by ``charts.metric_spec`` (the one owner of how a
                chart looks), then extended by the new points of each trace, with the
                smoothing's running state (a debiased EMA of the tail depends only on
                earlier points) and the same x (step, seconds since the run's first row,
                or tokens seen). Anything the new points would change beyond appending
                (a new trace, markers dropped past 30 points, a constant curve's fixed
                y range, a rewritten point) rebuilds the whole figure with metric_spec.

So ``LiveFigure.update(...)`` always equals ``charts.metric_spec`` over all rows read
(tests/test_live_feed.py checks it over random growth), at a cost proportional to the
new points. The chart component (ui.live_chart) then sends the browser only those
points.
"""
from __future__ import annotations

import bisect
import itertools
import math
from typing import Any, Iterable, Mapping, Sequence

import time

import pandas as pd

from hft_core import charts

COLUMNS = ["run_id", "step", "name", "value", "wall_time"]
_versions = itertools.count(1)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class RunLog:
    """One run's metrics: name -> (steps, values, wall times), in step order, one value per step.

    ``version`` changes when rows already read changed (a resumed run rewrote its steps
    after the checkpoint): whoever drew them must redraw from scratch. ``status`` is the
    run's status when it was last read (see ``read_logs``).
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.status: str | None = None
        self.series: dict[str, tuple[list[int], list[float], list[float]]] = {}
        self.first_wall: float | None = None  # the run's earliest row: 0 s on the time axis
        self.tokens: dict[int, float] = {}     # step -> tokens_seen (the tokens axis)
        self.last_step: int | None = None
        self.version = next(_versions)
        self.rows = 0
        self._frame: pd.DataFrame | None = None

    def reset(self) -> None:
        """Forget every row (the next read starts from the first step)."""
        self.__init__(self.run_id)  # type: ignore[misc]

    def read(self, store: Any) -> bool:
        """Read the rows at or after the last step read. Returns whether anything changed."""
        return self.add(store.metrics(self.run_id, since_step=self.last_step))

    def add(self, frame: pd.DataFrame) -> bool:
        """Merge rows (a ``RunStore.metrics`` frame of this run, ordered by step)."""
        if frame is None or frame.empty:
            return False
        changed = False
        rewritten = False
        for step, name, value, wall in zip(frame["step"].tolist(), frame["name"].tolist(),
                                           frame["value"].tolist(), frame["wall_time"].tolist()):
            steps, values, walls = self.series.setdefault(name, ([], [], []))
            if not steps or step > steps[-1]:
                steps.append(step)
                values.append(value)
                walls.append(wall)
                self.rows += 1
            else:
                i = bisect.bisect_left(steps, step)
                if i < len(steps) and steps[i] == step:
                    if _same(values[i], value) and _same(walls[i], wall):
                        continue  # read again (since_step is inclusive): nothing new
                    values[i], walls[i] = value, wall
                else:
                    steps.insert(i, step)
                    values.insert(i, value)
                    walls.insert(i, wall)
                    self.rows += 1
                rewritten = True
            changed = True
            if name == "tokens_seen":
                self.tokens[step] = value
            if self.first_wall is None or wall < self.first_wall:
                if self.first_wall is not None:
                    rewritten = True  # every point's time moves
                self.first_wall = wall
            if self.last_step is None or step > self.last_step:
                self.last_step = step
        if rewritten:
            self.version = next(_versions)
        if changed:
            self._frame = None
        return changed

    def frame(self) -> pd.DataFrame:
        """All rows as a ``RunStore.metrics``-shaped frame (cached until new rows arrive)."""
        if self._frame is None:
            parts = {"run_id": [], "step": [], "name": [], "value": [], "wall_time": []}
            for name, (steps, values, walls) in self.series.items():
                parts["run_id"] += [self.run_id] * len(steps)
                parts["step"] += steps
                parts["name"] += [name] * len(steps)
                parts["value"] += values
                parts["wall_time"] += walls
            df = pd.DataFrame(parts, columns=COLUMNS)
            df["step"] = df["step"].astype("int64")
            df["value"] = df["value"].astype("float64")
            df["wall_time"] = df["wall_time"].astype("float64")
            self._frame = df.sort_values(["step", "name"], kind="stable").reset_index(drop=True)
        return self._frame

    def last(self, name: str) -> float | None:
        s = self.series.get(name)
        return s[1][-1] if s and s[0] else None

    def progress(self) -> tuple[float, float | None, int]:
        """(progress 0..1, seconds left or None, last step with progress) from the 'progress' metric."""
        steps, values, walls = self.series.get("progress", ([], [], []))
        if not steps:
            return 0.0, None, 0
        frac, eta = charts.progress_eta(walls, values)
        return frac, eta, int(steps[-1])


def frame_of(logs: Sequence[RunLog]) -> pd.DataFrame:
    """The rows of several runs, run after run (the order metric_spec draws them in)."""
    frames = [log.frame() for log in logs if log.rows]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


class _Trace:
    """Where one drawn trace stands: how many of its series' points it has read, its smoothing state."""

    __slots__ = ("index", "run_id", "name", "smooth", "read", "points", "ema", "ema_n")

    def __init__(self, index: int, run_id: str, name: str, smooth: bool) -> None:
        self.index, self.run_id, self.name, self.smooth = index, run_id, name, smooth
        self.read = 0       # points of the series consumed (drawn or dropped)
        self.points = 0     # points in the trace
        self.ema = 0.0
        self.ema_n = 0


class LiveFigure:
    """One chart of ``charts.metric_spec(frame_of(logs), metric, **kw)``, kept up to date by appending.

    ``update(logs)`` returns the figure for the logs as they are now. It is a new dict
    whenever something changed (lists of changed traces are new lists: the old figure
    stays valid, so the chart component can diff the two), and the same dict otherwise.
    """

    def __init__(self, metric: str | Sequence[str], *, x: str = "step", smoothing: float = 0.0,
                 log_y: bool = False, groups: Sequence[Sequence[str]] = (), **kw: Any) -> None:
        self.names = [metric] if isinstance(metric, str) else list(metric)
        self.metric = metric
        self.x = x
        self.smoothing = float(smoothing)
        self.log_y = log_y
        self.groups = [list(g) for g in groups]
        self.kw = kw
        self.spec: dict[str, Any] | None = None
        self.settings = ""        # what ``figure`` built it for
        self.updated_at = 0.0     # time.monotonic() of the last update through ``figure``
        self.rebuilds = 0
        self._traces: list[_Trace] = []
        self._shape: Any = None          # what a rebuild drew from: runs, their versions, traces with points
        self._stamp: Any = None          # the logs' sizes at the last update: unchanged -> same figure
        self._y_const: float | None = None  # the one y value of a constant chart (its range is fixed)
        self._first_walls: dict[str, float | None] = {}

    # ---- public --------------------------------------------------------------------------------------
    def update(self, logs: Sequence[RunLog]) -> dict[str, Any]:
        stamp = tuple((log.run_id, log.version, log.rows) for log in logs)
        if self.spec is not None and stamp == self._stamp:
            return self.spec
        self._stamp = stamp
        if self.spec is None or self.groups or self._shape != self._shape_of(logs):
            return self._rebuild(logs)
        by_run = {log.run_id: log for log in logs}
        if any(by_run[rid].first_wall != w for rid, w in self._first_walls.items()):
            return self._rebuild(logs)
        new: dict[int, tuple[list, list]] = {}
        scale = {n: charts.metric_info(n)[2] for n in self.names}
        for tr in self._traces:
            log = by_run[tr.run_id]
            steps, values, walls = log.series.get(tr.name, ([], [], []))
            if tr.read >= len(steps):
                continue
            xs, ys = [], []
            read = tr.read
            ema, ema_n = tr.ema, tr.ema_n
            max_token_step = max(log.tokens) if self.x == "tokens" and log.tokens else None
            while read < len(steps):
                step = steps[read]
                if self.x == "step":
                    xv = float(step)
                elif self.x == "time":
                    xv = float(walls[read]) - float(log.first_wall)
                else:
                    tok = log.tokens.get(step)
                    if tok is None:
                        if max_token_step is not None and step < max_token_step:
                            read += 1  # never gets a tokens count: metric_spec leaves it out too
                            continue
                        break  # its tokens count may still come
                    xv = float(tok)
                v = float(values[read]) * scale[tr.name]
                if tr.smooth:
                    if math.isfinite(v):
                        w = self.smoothing
                        ema = w * ema + (1.0 - w) * v
                        ema_n += 1
                        v = ema / (1.0 - w ** ema_n)
                xs.append(xv)
                ys.append(v if math.isfinite(v) else None)
                read += 1
            if not xs:
                tr.read = read
                continue
            if (tr.points <= charts.FEW_POINTS) != (tr.points + len(xs) <= charts.FEW_POINTS):
                return self._rebuild(logs)  # markers go: the trace's style changes
            if self._y_const is not None and any(y is not None and y != self._y_const for y in ys):
                return self._rebuild(logs)  # no longer constant: the fixed y range goes
            new[tr.index] = (xs, ys)
            tr.read, tr.points, tr.ema, tr.ema_n = read, tr.points + len(xs), ema, ema_n
        if not new:
            return self.spec
        data = list(self.spec["data"])
        for i, (xs, ys) in new.items():
            data[i] = {**data[i], "x": data[i]["x"] + xs, "y": data[i]["y"] + ys}
        self.spec = {"data": data, "layout": self.spec["layout"]}
        return self.spec

    # ---- inside --------------------------------------------------------------------------------------
    def _has_points(self, log: RunLog, name: str) -> bool:
        steps = log.series.get(name, ((),))[0]
        if not steps:
            return False
        if self.x != "tokens":
            return True
        return any(s in log.tokens for s in steps)

    def _shape_of(self, logs: Sequence[RunLog]) -> Any:
        runs = tuple((log.run_id, log.version) for log in logs if log.rows)
        drawn = tuple((n, log.run_id) for n in self.names for log in logs if log.rows and self._has_points(log, n))
        return runs, drawn

    def _rebuild(self, logs: Sequence[RunLog]) -> dict[str, Any]:
        self.rebuilds += 1
        spec = charts.metric_spec(frame_of(logs), self.metric, x=self.x, smoothing=self.smoothing,
                                  log_y=self.log_y, groups=self.groups, **self.kw)
        self.spec = spec
        self._shape = self._shape_of(logs)
        self._first_walls = {log.run_id: log.first_wall for log in logs if log.rows}
        rng = spec["layout"].get("yaxis", {}).get("range")
        self._y_const = None
        if rng is not None:
            ys = [y for t in spec["data"] for y in t.get("y", []) if y is not None]
            self._y_const = ys[0] if ys else None
        self._traces = self._map_traces(spec, logs)
        return spec

    def _map_traces(self, spec: dict[str, Any], logs: Sequence[RunLog]) -> list[_Trace]:
        """Each drawn trace's (run, metric, raw|smoothed), and how much of its series it holds.

        Read from the figure (legendgroup = run id + metric name, raw before smoothed), and
        checked: a figure this does not understand (seed groups, a changed metric_spec) is
        simply rebuilt on every change, never extended wrongly.
        """
        if self.groups:
            return []
        by_run = {log.run_id: log for log in logs if log.rows}
        traces: list[_Trace] = []
        seen: dict[tuple[str, str], int] = {}
        for i, t in enumerate(spec["data"]):
            key = next(((rid, n) for rid in by_run for n in self.names if t.get("legendgroup") == f"{rid}{n}"), None)
            if key is None:
                self._shape = None  # never extend this figure
                return []
            k = seen.get(key, 0)
            seen[key] = k + 1
            smooth = self.smoothing > 0 and k == 1
            tr = _Trace(i, key[0], key[1], smooth)
            log = by_run[key[0]]
            steps, values, _ = log.series.get(key[1], ([], [], []))
            tr.read = len(steps)
            if self.x == "tokens":  # points still waiting for their tokens count are read later
                top = max(log.tokens) if log.tokens else None
                while tr.read > 0 and steps[tr.read - 1] not in log.tokens and (top is None or steps[tr.read - 1] > top):
                    tr.read -= 1
            tr.points = len(t.get("x", []))
            if smooth:  # the running state of the smoothing, as ema_debiased left it
                tr.ema, tr.ema_n = self._ema_upto(log, tr.name, tr.read)
            traces.append(tr)
        expected = sum(2 if self.smoothing > 0 else 1 for n in self.names for log in by_run.values()
                       if self._has_points(log, n))
        if len(traces) != expected:
            self._shape = None
            return []
        return traces

    def _ema_upto(self, log: RunLog, name: str, n: int) -> tuple[float, int]:
        """The smoothing's state after the first ``n`` points of the series (those drawn: on the
        tokens axis, a point without a tokens count is not drawn and not averaged)."""
        w = self.smoothing
        scale = charts.metric_info(name)[2]
        ema, k = 0.0, 0
        steps, values, _ = log.series[name]
        for step, v in zip(steps[:n], values[:n]):
            if self.x == "tokens" and step not in log.tokens:
                continue
            v = float(v) * scale
            if math.isfinite(v):
                ema = w * ema + (1.0 - w) * v
                k += 1
        return ema, k


def read_logs(store: Any, logs: dict[str, RunLog], runs: Iterable[Any], done: Iterable[str]) -> list[RunLog]:
    """The logs of ``runs`` (records with id and status), up to date; logs of other runs dropped.

    Active runs are read every call (only their new rows); an ended run once more after
    it ended, then never again. A run that went from ended to active again (resumed)
    is read afresh, since its steps after the checkpoint were rewritten.
    """
    done = set(done)
    out = []
    wanted = set()
    for rec in runs:
        wanted.add(rec.id)
        log = logs.get(rec.id)
        if log is None:
            log = logs[rec.id] = RunLog(rec.id)
        was = log.status
        if was in done and rec.status not in done:
            log.reset()
        if not (was in done and rec.status in done):
            log.read(store)
        log.status = rec.status
        out.append(log)
    for rid in list(logs):
        if rid not in wanted:
            del logs[rid]
    return out


def figure(cache: dict[str, LiveFigure], key: str, logs: Sequence[RunLog], metric: str | Sequence[str],
           every: float = 0.0, **kw: Any) -> dict[str, Any]:
    """The figure of chart ``key`` over ``logs``: extended by their new points at most every ``every``
    seconds (the points wait, nothing is lost), built anew at once when its settings changed."""
    settings = repr((metric, sorted((k, _hashable(v)) for k, v in kw.items())))
    fig = cache.get(key)
    now = time.monotonic()
    if fig is None or fig.settings != settings:
        fig = cache[key] = LiveFigure(metric, **kw)
        fig.settings = settings
    elif now - fig.updated_at < every:
        return fig.spec  # type: ignore[return-value]
    fig.updated_at = now
    return fig.update(logs)


def _hashable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return sorted((k, _hashable(x)) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return [_hashable(x) for x in v]
    return v
