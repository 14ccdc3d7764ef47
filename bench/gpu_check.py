"""Does each run get its own device and precision, in one process? (issue 10, point 4)

In ONE process, through the same queue the app uses (a RunManager with a worker per device):

    1. a CUDA fp32 run            4. fp16 with the grad scaler on CUDA
    2. a CUDA bf16 run            5. with 2+ GPUs: two runs at once, on cuda:0 and cuda:1
    3. a CPU run (after the CUDA runs: Accelerate's process-wide state used to make this raise)

For each run it prints the device the trainer reported, the precision plan, the peak
memory per CUDA device while it ran, and RESULT lines a script can grep. Without a GPU
only the CPU part runs (and says so).

    python bench/gpu_check.py                 # tiny:bert, a few steps each
    python bench/gpu_check.py --model bundled:minilm-l6 --steps 20
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hft_core.config import RunConfig  # noqa: E402
from hft_core.runs import RunManager  # noqa: E402
from hft_core.store import RunStore  # noqa: E402


def toy_data(folder: Path) -> str:
    rows = [(f"the match ended with a late goal number {i}", "sport") if i % 2 else
            (f"shares fell as the bank cut rates again {i}", "business") for i in range(256)]
    path = folder / "toy.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def device_events(store: RunStore, run_id: str) -> str:
    return next((m for _, _, m in store.events(run_id) if m.startswith("device ")), "(no device line)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny:bert")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hft-gpu-check-"))
    data = toy_data(home)
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, GPUs: {n_gpu}")
    for i in range(n_gpu):
        print(f"  cuda:{i}: {torch.cuda.get_device_name(i)}, capability {torch.cuda.get_device_capability(i)}")

    base = dict(model=args.model, data=data, batch_size=args.batch, max_length=64, max_steps=args.steps,
                eval_every=0, n_eval=32, lr=1e-3, seed=0)
    plan: list[tuple[str, dict]] = []
    if n_gpu:
        plan += [("cuda fp32", dict(device="cuda:0", precision="fp32")),
                 ("cuda bf16", dict(device="cuda:0", precision="bf16")),
                 ("cpu fp32 after cuda", dict(device="cpu", precision="fp32")),
                 ("cuda fp16 + scaler", dict(device="cuda:0", precision="fp16"))]
    else:
        print("no CUDA GPU visible: only the CPU part runs (the GPU checks were NOT run)")
        plan += [("cpu fp32", dict(device="cpu", precision="fp32")),
                 ("cpu bf16", dict(device="cpu", precision="bf16")),
                 ("cpu fp32 again", dict(device="cpu", precision="fp32"))]

    store = RunStore(home)
    mgr = RunManager(store)
    ok = True
    rows = []
    for label, over in plan:  # one after another, in this one process
        if over["device"].startswith("cuda"):
            for i in range(n_gpu):
                torch.cuda.reset_peak_memory_stats(i)
        t0 = time.perf_counter()
        run_id = mgr.submit(RunConfig(**base, **over, name=label))
        mgr.wait(run_id)
        rec = store.get_run(run_id)
        peaks = {f"cuda:{i}": torch.cuda.max_memory_allocated(i) / 2**20 for i in range(n_gpu)}
        line = device_events(store, run_id)
        want_dev = over["device"]
        got_dev = line.split()[1] if line.startswith("device ") else "?"
        good = rec.status == "finished" and got_dev == want_dev and over["precision"] in line
        if over["precision"] == "fp16":
            good = good and "loss scaling" in line
        ok &= good
        rows.append((label, want_dev, got_dev, rec.status, time.perf_counter() - t0, peaks, line, rec.error))
        print(f"{label:22} asked {want_dev:7} trained on {got_dev:7} {rec.status:9} "
              f"{time.perf_counter() - t0:6.1f} s  peak MiB {', '.join(f'{k}={v:.0f}' for k, v in peaks.items()) or '-'}")
        print(f"{'':22} {line}" + (f"\n{'':22} error: {rec.error}" if rec.error else ""))
        print(f"RESULT run={label.replace(' ', '_')} device_ok={int(got_dev == want_dev)} "
              f"status={rec.status}")

    if n_gpu >= 2:  # two runs at once, each on its own GPU, from this one process
        for i in range(n_gpu):
            torch.cuda.reset_peak_memory_stats(i)
        ids = [mgr.submit(RunConfig(**{**base, "max_steps": args.steps * 4}, device=f"cuda:{i}", precision="bf16",
                                    name=f"concurrent cuda:{i}")) for i in (0, 1)]
        mgr.wait(ids)
        recs = [store.get_run(r) for r in ids]
        overlap = min(r.ended for r in recs) > max(r.started for r in recs)
        got = [device_events(store, r).split()[1] for r in ids]
        peaks = {f"cuda:{i}": torch.cuda.max_memory_allocated(i) / 2**20 for i in range(2)}
        good = got == ["cuda:0", "cuda:1"] and all(r.status == "finished" for r in recs) and overlap
        ok &= good
        print(f"concurrent: devices {got}, overlapped in time: {overlap}, peak MiB {peaks}")
        print(f"RESULT concurrent_two_gpus_ok={int(good)}")
    elif n_gpu == 1:
        print("one GPU: the two-GPU concurrent check was NOT run")
    mgr.shutdown()
    store.close()
    print(f"RESULT gpu_check_ok={int(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
