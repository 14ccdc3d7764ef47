"""Metric sinks: where the trainer's numbers go. The trainer knows only this protocol.

``log(step, values)`` takes a flat mapping of metric name -> float, e.g.
``{"loss": 1.2, "loss/task": 1.0, "loss/kd": 0.2, "lr": 1e-4}``; ``event`` takes a
line of text for the run's log (sample generations, warnings, the final message).
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol


class MetricSink(Protocol):
    def log(self, step: int, values: Mapping[str, float]) -> None: ...
    def event(self, message: str, level: str = "info") -> None: ...


class MemorySink:
    """Keeps everything in lists; for tests and notebooks."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.events: list[tuple[str, str]] = []

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.rows.append((step, dict(values)))

    def event(self, message: str, level: str = "info") -> None:
        self.events.append((level, message))

    def series(self, name: str) -> list[tuple[int, float]]:
        """[(step, value)] of one metric, in logging order."""
        return [(s, v[name]) for s, v in self.rows if name in v]

    def last(self, name: str) -> float:
        s = self.series(name)
        if not s:
            raise KeyError(f"metric {name!r} was never logged; logged: {sorted({k for _, v in self.rows for k in v})}")
        return s[-1][1]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{"step": s, **v} for s, v in self.rows])


class MultiSink:
    """Fan out to several sinks."""

    def __init__(self, *sinks: MetricSink) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def log(self, step: int, values: Mapping[str, float]) -> None:
        for s in self.sinks:
            s.log(step, values)

    def event(self, message: str, level: str = "info") -> None:
        for s in self.sinks:
            s.event(message, level)

    def flush(self) -> None:
        for s in self.sinks:
            flush(s)


class NullSink:
    def log(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def event(self, message: str, level: str = "info") -> None:
        pass


class StoreSink:
    """A MetricSink that writes one run's metrics and log lines to a RunStore (buffered)."""

    def __init__(self, store: Any, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.store.log_metrics(self.run_id, step, values)

    def event(self, message: str, level: str = "info") -> None:
        self.store.log_event(self.run_id, message, level)

    def flush(self) -> None:
        self.store.flush()


def flush(sink: Any) -> None:
    """Write what ``sink`` buffered, if it buffers (an optional ``flush()``; MetricSink needs only log
    and event). The trainer calls it before each checkpoint: a checkpoint is never ahead of the
    stored curve, so a run killed after writing one resumes with every step up to it logged."""
    f = getattr(sink, "flush", None)
    if callable(f):
        f()
