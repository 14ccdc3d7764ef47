"""Peak memory of a blended run vs a plain run: does alpha blending keep a second model around?

Blending needs a fresh random model next to the pretrained one during setup. The
strategy frees each fresh tensor as soon as it is blended and drops the fresh model
before training, so the run's peak (reached in training: weights + gradients + two
AdamW moments + activations) should be no more than ~10% above a plain run's.

Each measurement is a separate Python process (peak RSS = ``ru_maxrss`` of that
process: setup + training + final eval), plain and blended interleaved so drift in
the machine's load hits both alike. Prints every run, the medians and

    RESULT blend_vs_plain_peak=<median blended peak / median plain peak>

    python bench/blend_memory.py                 # MiniLM-L6, 3 pairs, 5 steps
    python bench/blend_memory.py --reps 1 --model tiny:bert   # seconds, for checking
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(kind: str, model: str, steps: int) -> None:
    """One run in this process; prints a JSON line with the peak RSS."""
    os.environ.setdefault("HFT_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from hft_core.config import RunConfig
    from hft_core.trainer import train

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mix = {"blend": {"alpha": 0.5}} if kind == "blend" else {}
    cfg = RunConfig(model=model, data="bundled:bbc-news", n_train=64, n_eval=16, batch_size=16, max_length=128,
                    max_steps=steps, eval_every=0, seed=0, device="cpu", precision="fp32", mix=mix)
    t0 = time.perf_counter()
    train(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
    print(json.dumps({"kind": kind, "peak_rss_mb": peak, "after_imports_mb": base_rss,
                      "seconds": time.perf_counter() - t0}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled:minilm-l6")
    p.add_argument("--reps", type=int, default=3, help="pairs of (plain, blended) runs")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--child", choices=["plain", "blend"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.model, args.steps)
        return 0
    peaks: dict[str, list[float]] = {"plain": [], "blend": []}
    for rep in range(args.reps):
        order = ("plain", "blend") if rep % 2 == 0 else ("blend", "plain")
        for kind in order:
            out = subprocess.run([sys.executable, __file__, "--child", kind, "--model", args.model,
                                  "--steps", str(args.steps)], capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if out.returncode != 0 or not lines:
                print(out.stderr[-2000:], file=sys.stderr)
                print(f"child {kind} failed with status {out.returncode}", file=sys.stderr)
                return 1
            r = json.loads(lines[-1])
            peaks[kind].append(r["peak_rss_mb"])
            print(f"rep {rep} {kind:5}: peak RSS {r['peak_rss_mb']:8.1f} MiB (after imports "
                  f"{r['after_imports_mb']:.0f} MiB), {r['seconds']:.1f} s", flush=True)
    plain, blend = statistics.median(peaks["plain"]), statistics.median(peaks["blend"])
    ratio = blend / plain
    print(f"median peak: plain {plain:.1f} MiB, blend {blend:.1f} MiB; blend/plain = {ratio:.3f} "
          f"({'within' if ratio <= 1.10 else 'ABOVE'} the 10% target)")
    print(f"RESULT blend_vs_plain_peak={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
