"""Runs on a GPU and a CPU side by side in the app's worker processes, and a run that runs out of GPU memory.

Through the queue the app uses (a RunManager: one worker process per device, each its own
CUDA context), it starts at once:

    1. a cuda:0 run (bf16)      2. a CPU run (fp32)      -> side by side, in two processes
    3. then a run forced out of GPU memory (a batch far too big for the card)
    4. then another cuda:0 run: the card's memory came back, the device's queue goes on

and prints, per run, the device its worker trained on, its status, its peak memory (the
trainer resets the peak at each run's start, so it is that run's own), whether runs 1
and 2 overlapped in time, the OOM run's error (it must say what to try), and that the
supervising process survived. Without a GPU only the CPU part runs, and it says so.

    python bench/gpu_check.py                           # tiny:bert, a few steps each
    python bench/gpu_check.py --model bundled:minilm-l6 --steps 40
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402  (bench/ is on sys.path: run as python bench/X.py)

from hft_core.config import RunConfig  # noqa: E402
from hft_core.runs import RunManager  # noqa: E402
from hft_core.store import RunStore  # noqa: E402


def toy_data(folder: Path) -> str:
    rows = [(f"the match ended with a late goal number {i}", "sport") if i % 2 else
            (f"shares fell as the bank cut rates again {i}", "business") for i in range(256)]
    path = folder / "toy.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def report(store: RunStore, run_id: str, label: str, t0: float) -> dict:
    rec = store.get_run(run_id)
    line = next((m for _, _, m in store.events(run_id) if m.startswith("device ")), "(no device line)")
    peak = store.metrics(run_id, names=["peak_mem_mb"]).value.max()
    print(f"{label:24} queue {rec.device:7} worker pid {rec.pid}  {rec.status:9} {time.perf_counter() - t0:6.1f} s  "
          f"peak {peak:8.0f} MiB  | {line}" + (f"\n{'':24} error: {rec.error}" if rec.error else ""))
    return {"rec": rec, "line": line, "peak": peak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny:bert")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    home = scratch_dir("hft-gpu-check-")
    data = toy_data(home)
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, GPUs: {n_gpu}, "
          f"supervising process pid {os.getpid()}")
    for i in range(n_gpu):
        print(f"  cuda:{i}: {torch.cuda.get_device_name(i)}, capability {torch.cuda.get_device_capability(i)}")
    base = dict(model=args.model, data=data, batch_size=args.batch, max_length=64, max_steps=args.steps,
                eval_every=0, n_eval=32, lr=1e-3, seed=0)
    store = RunStore(home)
    mgr = RunManager(store).serve_all()
    ok = True
    try:
        t0 = time.perf_counter()
        if not n_gpu:
            print("no CUDA GPU visible: only the CPU part runs (the GPU checks were NOT run)")
            cpu = mgr.submit(RunConfig(**base, device="cpu", precision="fp32", name="cpu fp32"))
            mgr.wait(cpu, timeout=600)
            r = report(store, cpu, "cpu fp32", t0)
            ok = r["rec"].status == "finished" and r["rec"].pid != os.getpid()
        else:
            gpu = mgr.submit(RunConfig(**{**base, "max_steps": args.steps * 4}, device="cuda:0", precision="bf16",
                                       name="cuda:0 bf16"))
            cpu = mgr.submit(RunConfig(**base, device="cpu", precision="fp32", name="cpu fp32"))
            mgr.wait([gpu, cpu], timeout=600)
            g, c = report(store, gpu, "cuda:0 bf16", t0), report(store, cpu, "cpu fp32", t0)
            overlap = min(g["rec"].ended, c["rec"].ended) > max(g["rec"].started, c["rec"].started)
            two = g["rec"].pid != c["rec"].pid and os.getpid() not in (g["rec"].pid, c["rec"].pid)
            good = (g["rec"].status == c["rec"].status == "finished" and "cuda" in g["line"] and "cpu" in c["line"]
                    and overlap and two)
            print(f"side by side: overlapped in time {overlap}, two worker processes {two}")
            print(f"RESULT side_by_side_ok={int(good)}")
            ok &= good

            t1 = time.perf_counter()  # a batch no card holds: attention alone needs hundreds of GB
            oom = mgr.submit(RunConfig(**{**base, "batch_size": 16384, "max_length": 512, "max_steps": 2},
                                       device="cuda:0", precision="fp32", name="forced OOM"))
            mgr.wait(oom, timeout=600)
            o = report(store, oom, "forced OOM", t1)
            said = o["rec"].error or ""
            good_oom = o["rec"].status == "failed" and "OutOfMemory" in said and "batch_size" in said
            print(f"RESULT oom_failed_with_advice={int(good_oom)}")
            ok &= good_oom

            t2 = time.perf_counter()
            after = mgr.submit(RunConfig(**base, device="cuda:0", precision="bf16", name="cuda:0 after the OOM"))
            mgr.wait(after, timeout=600)
            a = report(store, after, "cuda:0 after the OOM", t2)
            good_after = a["rec"].status == "finished"
            print(f"RESULT next_run_after_oom_ok={int(good_after)}")
            ok &= good_after
        print(f"supervising process alive: pid {os.getpid()}; worker processes now: {mgr.pool.processes()}")
        print("RESULT app_survived=1")
    finally:
        mgr.shutdown(wait=True)
        store.close()
    print(f"RESULT gpu_check_ok={int(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
