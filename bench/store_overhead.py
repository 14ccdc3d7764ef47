"""What does writing metrics to the RunStore cost the training loop?

Trains the same config twice per repeat, once with a StoreSink and once without one
(only a probe that keeps the trainer's own samples_per_s), alternating which goes first,
and compares the median training throughput (steps after the first; the first step
warms up). Prints a table and, last, ``RESULT store_vs_nosink=<ratio>`` (1.0 = no cost).

    python bench/store_overhead.py                        # MiniLM-L6 on BBC News, batch 16, 128 tokens
    python bench/store_overhead.py --model tiny:bert --steps 40 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hft_core.config import RunConfig  # noqa: E402
from hft_core.sinks import MultiSink  # noqa: E402
from hft_core.store import RunStore  # noqa: E402
from hft_core.trainer import train  # noqa: E402


class ThroughputProbe:
    """Keeps the trainer's samples_per_s of each step; costs a list append (a NullSink otherwise)."""

    def __init__(self) -> None:
        self.samples_per_s: list[float] = []

    def log(self, step, values) -> None:
        if "samples_per_s" in values:
            self.samples_per_s.append(float(values["samples_per_s"]))

    def event(self, message: str, level: str = "info") -> None:
        pass


def one_run(cfg: RunConfig, store: RunStore | None) -> tuple[float, float]:
    """Median samples/s over steps 2..N and the wall time of train()."""
    probe = ThroughputProbe()
    sink = probe
    if store is not None:
        run_id = store.create_run(cfg, status="running", device="cpu")
        sink = MultiSink(store.sink(run_id), probe)
    t0 = time.perf_counter()
    result = train(cfg, sink, threading.Event())
    wall = time.perf_counter() - t0
    if store is not None:
        store.set_status(run_id, result.status)
    return statistics.median(probe.samples_per_s[1:] or probe.samples_per_s), wall


def direct_cost(store: RunStore, names: list[str], n: int = 2000) -> tuple[float, float]:
    """Microseconds per step of (log_metrics on the training thread, the flusher's write of those rows):
    a load-independent view of the cost, next to the end-to-end comparison."""
    run_id = store.create_run(RunConfig(model="tiny:bert"), status="finished", name="direct-cost")
    values = {k: 1.0 for k in names}
    store.flush()
    t0 = time.perf_counter()
    for step in range(n):
        store.log_metrics(run_id, step, values)
    t1 = time.perf_counter()
    store.flush()
    t2 = time.perf_counter()
    store.delete_run(run_id)
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled:minilm-l6")
    p.add_argument("--data", default="bundled:bbc-news")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--repeats", type=int, default=3, help="pairs of runs (store, no sink), order alternating")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--flush-interval", type=float, default=0.5)
    args = p.parse_args()

    cfg = RunConfig(model=args.model, data=args.data, batch_size=args.batch_size, max_length=args.max_length,
                    max_steps=args.steps, eval_every=0, n_eval=16, device="cpu", precision="fp32", seed=0)
    results: dict[str, list[float]] = {"store": [], "nosink": []}
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(home, flush_interval=args.flush_interval)
        one_run(cfg, None)  # warm-up: first-time model/data loading and allocator growth
        for i in range(args.repeats):
            order = ("store", "nosink") if i % 2 == 0 else ("nosink", "store")
            for kind in order:
                sps, wall = one_run(cfg, store if kind == "store" else None)
                results[kind].append(sps)
                print(f"repeat {i + 1} {kind:7s} {sps:8.2f} samples/s   train() {wall:6.1f} s", flush=True)
        rows = len(store.metrics([r.id for r in store.list_runs()]))
        names = sorted(set(store.metrics(store.list_runs()[0].id).name))
        log_us, flush_us = direct_cost(store, names)
        store.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["store"] / med["nosink"]
    print()
    print(f"{args.model} on {args.data}, batch {args.batch_size} x {args.max_length} tokens, {args.steps} steps, "
          f"{args.repeats} pairs; {rows} metric rows written")
    print(f"{'sink':8s} {'median samples/s':>17s}   all")
    for k in ("nosink", "store"):
        print(f"{k:8s} {med[k]:17.2f}   {', '.join(f'{x:.2f}' for x in results[k])}")
    step_us = 1e6 * args.batch_size / med["nosink"]
    print(f"direct cost per step ({len(names)} metrics): log_metrics {log_us:.1f} us on the training thread, "
          f"{flush_us:.1f} us in the flusher = {100 * (log_us + flush_us) / step_us:.3f}% of a "
          f"{step_us / 1000:.0f} ms step")
    print(f"RESULT store_vs_nosink={ratio:.3f}")


if __name__ == "__main__":
    main()
