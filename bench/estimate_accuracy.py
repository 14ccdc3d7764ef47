"""How close is the Train page's time estimate to the real wall time of a run?

For each configuration: forget every cached figure, run the probe the page would run
(hft_core.estimate.measure: a 4-step real run of that shape), estimate a 20-step run from
it, then train that 20-step run for real (trainer.train, with its checkpoint, as the app's
worker does) and time it from call to return. Same process, probe first: as in the app,
where the figure is measured before the user presses Start.

    python bench/estimate_accuracy.py                 # the five configurations below
    python bench/estimate_accuracy.py --only tiny     # those whose name contains "tiny"

Prints a table, then one RESULT line per configuration and a summary:
    RESULT <name> estimated_s=<e> measured_s=<m> error_pct=<(e-m)/m*100>
    RESULT max_abs_error_pct=<x> within_30pct=<k>/<n>
The CPU may be shared with other work: its load at the start and end is printed too.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch import scratch_dir  # noqa: E402  (bench/ is on sys.path: run as python bench/X.py)

from hft_core.config import RunConfig  # noqa: E402

STEPS = 20
BBC = dict(data="bundled:bbc-news", task="classification", n_train=200, n_eval=100, eval_every=10, device="cpu",
           seed=0)
QA = dict(data="bundled:qa", task="causal-lm", n_eval=16, eval_every=10, device="cpu", seed=0)
CONFIGS = {
    "tiny:bert fp32 (quick demo)": RunConfig(model="tiny:bert", precision="fp32", batch_size=16, max_length=128,
                                             lr=1e-3, **BBC),
    "tiny:gpt2 fp32 causal-lm": RunConfig(model="tiny:gpt2", precision="fp32", batch_size=16, max_length=64,
                                          lr=1e-3, **QA),
    "MiniLM-L6 fp32": RunConfig(model="bundled:minilm-l6", precision="fp32", batch_size=16, max_length=64, lr=1e-4,
                                **BBC),
    "MiniLM-L6 bf16": RunConfig(model="bundled:minilm-l6", precision="bf16", batch_size=16, max_length=64, lr=1e-4,
                                **BBC),
    "SmolLM2-135M fp32 batch 4": RunConfig(model="bundled:smollm2-135m", precision="fp32", batch_size=4,
                                           max_length=64, lr=5e-5, **QA),
}


def measured_run(cfg: RunConfig, out: Path) -> float:
    """Wall time of a real run, as the app's worker trains it (metrics to a sink, a final checkpoint)."""
    from hft_core.sinks import MemorySink
    from hft_core.trainer import train

    t = time.perf_counter()
    result = train(cfg, MemorySink(), out_dir=out)
    elapsed = time.perf_counter() - t
    assert result.status == "finished", result.status
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="run only configurations whose name contains this")
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args(argv)
    home = Path(os.environ.get("HFT_HOME") or scratch_dir("hft-estimate-bench-"))
    os.environ["HFT_HOME"] = str(home)

    from hft_core import estimate
    from hft_core.precision import describe_device

    dev = describe_device("cpu")
    print(f"CPU {dev.name} ({os.cpu_count()} cores, native bf16: {dev.cpu_has_fast_bf16}); HFT_HOME {home}; "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for name, base in CONFIGS.items():
        if args.only and args.only not in name:
            continue
        cfg = dataclasses.replace(base, max_steps=args.steps)
        estimate.forget()
        t = time.perf_counter()
        probe = estimate.measure(cfg)
        probe_s = time.perf_counter() - t
        est = estimate.estimate_from_probe(cfg, probe)
        with tempfile.TemporaryDirectory(dir=home) as out:
            real = measured_run(cfg, Path(out))
        err = (est.total_s - real) / real * 100
        rows.append((name, probe_s, probe.step_s, est.total_s, real, err, est))
        print(f"  {name}: probe {probe_s:.1f} s, {est.line()}; measured {real:.1f} s ({err:+.0f}%)", flush=True)

    print()
    print(f"{'configuration':30s} {'probe s':>8s} {'s/step':>7s} {'load s':>7s} {'eval s':>7s} {'save s':>7s} "
          f"{'estimated s':>12s} {'measured s':>11s} {'error':>7s}")
    for name, probe_s, step_s, est_s, real, err, est in rows:
        print(f"{name:30s} {probe_s:8.1f} {step_s:7.3f} {est.load_s:7.1f} {est.eval_s:7.1f} {est.save_s:7.1f} "
              f"{est_s:12.1f} {real:11.1f} {err:+6.0f}%")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    for name, _, _, est_s, real, err, _ in rows:
        print(f"RESULT {name.replace(' ', '_')} estimated_s={est_s:.1f} measured_s={real:.1f} error_pct={err:+.1f}")
    if rows:
        worst = max(abs(r[5]) for r in rows)
        inside = sum(abs(r[5]) <= 30 for r in rows)
        print(f"RESULT max_abs_error_pct={worst:.1f} within_30pct={inside}/{len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
