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
    python bench/blend_memory.py --setup-only    # only the after-setup comparison
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


def child_setup(kind: str, model: str) -> None:
    """Setup alone: RSS once the model is ready to train (blended or not), after a GC.

    A finer check than the whole-run peak, which training dominates: if blending kept
    the fresh model, this would be one model's size (~90 MiB for MiniLM) higher. The
    plain side also builds (and drops) a fresh model, so one-off costs of the first
    from-config build (imports, caches) appear on both sides. Both then read every
    tensor once: loaded weights are memory-mapped from the safetensors file and only
    become resident when touched (blending touches them all; training's first
    forward would), so without this the plain side looks one model smaller.
    """
    import gc

    os.environ.setdefault("HFT_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import psutil
    import torch

    from hft_core.models import load_model
    from hft_core.strategies.base import StrategyContext
    from hft_core.strategies.blend import Blend, BlendConfig

    m = load_model(model, "classification", 5, seed=0)
    if kind == "plain":
        del_me = load_model(model, "classification", 5, pretrained=False, seed=1)
        del del_me
    else:
        ctx = StrategyContext(task="classification", num_labels=5, tokenizer=None,
                              device=torch.device("cpu"), seed=0, max_steps=1, model_source=model,
                              fresh_model=lambda seed: load_model(model, "classification", 5, pretrained=False,
                                                                  seed=seed),
                              load_model=lambda src: load_model(src, "classification", 5))
        m = Blend(BlendConfig(alpha=0.5)).setup(m, ctx)
    gc.collect()
    with torch.no_grad():
        for t in m.state_dict().values():
            t.float().sum()  # page the weights in, as the first forward pass would
    n_bytes = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    print(json.dumps({"kind": kind, "rss_mb": psutil.Process().memory_info().rss / 2**20,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "model_mb": n_bytes / 2**20}), flush=True)


def _child(kind: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--model", args.model, "--steps", str(args.steps)],
                         capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        print(out.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"child {kind} failed with status {out.returncode}")
    return json.loads(lines[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled:minilm-l6")
    p.add_argument("--reps", type=int, default=3, help="pairs of (plain, blended) runs")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--setup-only", action="store_true", help="only the RSS-after-setup comparison (a minute)")
    p.add_argument("--child", choices=["plain", "blend", "setup-plain", "setup-blend"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child.startswith("setup-"):
            child_setup(args.child[6:], args.model)
        else:
            child(args.child, args.model, args.steps)
        return 0
    after: dict[str, list[float]] = {"plain": [], "blend": []}
    for rep in range(args.reps):
        for kind in (("plain", "blend") if rep % 2 == 0 else ("blend", "plain")):
            r = _child(f"setup-{kind}", args)
            after[kind].append(r["rss_mb"])
            print(f"setup only, rep {rep} {kind:5}: RSS when ready to train {r['rss_mb']:8.1f} MiB "
                  f"(peak {r['peak_rss_mb']:.0f} MiB; the model is {r['model_mb']:.0f} MiB)", flush=True)
    extra = statistics.median(after["blend"]) - statistics.median(after["plain"])
    print(f"after setup, blend - plain = {extra:+.1f} MiB (a kept fresh copy would add ~{r['model_mb']:.0f} MiB)")
    if args.setup_only:
        print(f"RESULT blend_minus_plain_after_setup_mb={extra:.1f}")
        return 0
    peaks: dict[str, list[float]] = {"plain": [], "blend": []}
    for rep in range(args.reps):
        order = ("plain", "blend") if rep % 2 == 0 else ("blend", "plain")
        for kind in order:
            r = _child(kind, args)
            peaks[kind].append(r["peak_rss_mb"])
            print(f"rep {rep} {kind:5}: peak RSS {r['peak_rss_mb']:8.1f} MiB (after imports "
                  f"{r['after_imports_mb']:.0f} MiB), {r['seconds']:.1f} s", flush=True)
    plain, blend = statistics.median(peaks["plain"]), statistics.median(peaks["blend"])
    ratio = blend / plain
    print(f"median peak: plain {plain:.1f} MiB, blend {blend:.1f} MiB; blend/plain = {ratio:.3f} "
          f"({'within' if ratio <= 1.10 else 'ABOVE'} the 10% target)")
    print(f"RESULT blend_vs_plain_peak={ratio:.3f}")
    print(f"RESULT blend_minus_plain_after_setup_mb={extra:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
