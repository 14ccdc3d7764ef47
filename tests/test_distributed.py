"""Two CPU processes under torchrun + Accelerate (gloo): DDP keeps the weights identical, rank 0 alone writes."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_ddp_keeps_ranks_identical_and_writes_metrics_once(tmp_path):
    data = tmp_path / "toy.csv"
    rows = [(f"the match ended with a late goal number {i}", "sport") if i % 2 else
            (f"shares fell as the bank cut rates again {i}", "business") for i in range(40)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    home = tmp_path / "home"
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    # torchrun sets RANK/WORLD_SIZE; Accelerate sees them and runs DDP over gloo on the CPU.
    # (`accelerate launch --cpu` with several processes needs MPI, which these machines lack.)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), str(data)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    fp0 = (tmp_path / "rank0.txt").read_text().split()
    fp1 = (tmp_path / "rank1.txt").read_text().split()
    assert fp0[1] == fp1[1] == "2", "both ranks must see a world of 2 processes"
    assert fp0[0] == fp1[0], "weights differ between ranks: gradients were not synchronised"

    from hft_core.store import RunStore
    store = RunStore(home)
    runs = store.list_runs()
    assert len(runs) == 1 and runs[0].status == "finished"
    m = store.metrics(runs[0].id)
    assert len(m) > 0
    dupes = m.groupby(["step", "name"]).size()
    assert (dupes == 1).all(), f"metrics written more than once:\n{dupes[dupes > 1]}"
    loss = m[m.name == "loss"].sort_values("step")
    assert list(loss.step) == [1, 2, 3, 4]
    assert "eval/accuracy" in set(m.name)
    # each optimizer step took 2 x batch 4 examples: each rank its own 4, none seen by both
    import json

    b0 = json.loads((tmp_path / "rank0.batches.json").read_text())
    b1 = json.loads((tmp_path / "rank1.batches.json").read_text())
    assert len(b0) == len(b1) == 4
    for s0, s1 in zip(b0, b1):
        assert len(s0) == len(s1) == 4 and not set(s0) & set(s1), (s0, s1)
