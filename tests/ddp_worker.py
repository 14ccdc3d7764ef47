"""One rank of the 2-process DDP test (launched by tests/test_distributed.py via accelerate).

Rank 0 writes to the store; every rank writes a fingerprint of its final weights
so the test can check that DDP kept them identical.
"""
import hashlib
import os
import sys
import threading

import torch

import hft_core.trainer as trainer_module
from hft_core.config import RunConfig
from hft_core.trainer import train

used: list[list[int]] = []  # the examples this rank trained on, per micro-step (recorded from the trainer's own call)
_batch_indices = trainer_module._batch_indices


def recording(*args, **kw):
    idx = _batch_indices(*args, **kw)
    used.append(list(idx))
    return idx


trainer_module._batch_indices = recording

out, data = sys.argv[1], sys.argv[2]
rank = int(os.environ["RANK"])
cfg = RunConfig(model="tiny:bert", data=data, batch_size=4, max_length=32, max_steps=4, eval_every=0, n_eval=8,
                lr=1e-3, seed=0, device="cpu", precision="fp32", name="ddp")
sink = None
if rank == 0:
    from hft_core.store import RunStore

    store = RunStore()
    run_id = store.create_run(cfg, status="running", device="cpu", name="ddp")
    sink = store.sink(run_id)
result = train(cfg, sink, threading.Event(), out_dir=os.path.join(out, "run") if rank == 0 else None)
h = hashlib.sha256()
for name, p in sorted(result.model.state_dict().items()):
    h.update(name.encode())
    h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
with open(os.path.join(out, f"rank{rank}.txt"), "w") as fh:
    fh.write(f"{h.hexdigest()} {torch.distributed.get_world_size()}\n")
with open(os.path.join(out, f"rank{rank}.batches.json"), "w") as fh:
    import json

    json.dump(used, fh)
if rank == 0:
    store.set_status(run_id, result.status)
    store.close()
