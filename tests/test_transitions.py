"""Every state change of a run is a compare-and-set: claims, ends and requeues from several
processes at once never give two claims on one run, an end by a worker that does not hold
the run, nor a status that goes backwards.

The store writes each transition's event in the transaction that makes it, so the events
table, read in order, is the true history to check.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hft_core.config import RunConfig
from hft_core.control import RESUMABLE, ClaimLost
from hft_core.store import RunStore, StoreError

ROOT = Path(__file__).resolve().parents[1]

ACTOR = r'''
import json, os, random, sys, time
from hft_core.control import ClaimLost
from hft_core.store import RunStore, StoreError

home, k, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
store = RunStore(home)
me = store.register_worker("stress")
rng = random.Random(k)
ids = [r.id for r in store.list_runs()]
ever = []                                     # every run this worker claimed: ends of old ones are late writes
count = {"claim": 0, "end": 0, "requeue": 0, "refused": 0}
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(n):
    if k == 3 and i == n // 2:
        os._exit(0)                            # dies holding its runs: the others must see them interrupted
    op = rng.random()
    if op < 0.4:
        claim = store.claim(me, "stress", max_running=len(ids))
        if claim:
            ever.append(claim.run_id)
            count["claim"] += 1
    elif op < 0.75 and ever:
        status = rng.choice(["stopped", "failed", "interrupted", "pruned"] + ["finished"] * (rng.random() < 0.1))
        try:
            store.set_status(rng.choice(ever), status, worker=me)
            count["end"] += 1
        except ClaimLost:
            count["refused"] += 1
    else:
        try:
            store.requeue(rng.choice(ids), resume=False)
            count["requeue"] += 1
        except StoreError:
            count["refused"] += 1
    if i % 10 == 0:
        store.renew_lease(me)
print(json.dumps(count))
store.close()
'''


def history(store: RunStore) -> list[tuple[str, str]]:
    """(run id, transition message) in commit order."""
    rows = store._query("SELECT run_id, message FROM events ORDER BY rowid")
    return [(r, m) for r, m in rows if m.startswith(("claimed by worker", "ended ", "queued again", "interrupted:"))]


def test_claims_ends_and_requeues_from_four_processes_never_double_claim_nor_go_backwards(tmp_path):
    store = RunStore(tmp_path / "home")
    ids = [store.create_run(RunConfig(model="tiny:bert", name=f"r{k}"), device="stress") for k in range(6)]
    go = tmp_path / "go"
    actors = [subprocess.Popen([sys.executable, "-c", ACTOR, str(store.home), str(k), "600", str(go)],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT) for k in range(4)]
    try:
        time.sleep(0.5)
        go.touch()
        outputs = [a.communicate(timeout=240)[0] for a in actors]
    finally:
        for a in actors:
            if a.poll() is None:
                a.kill()
    assert [a.returncode for a in actors] == [0] * 4
    store.mark_interrupted()  # the actor that died holding runs: they end interrupted, by anyone's look
    counts = [json.loads(o) for o in outputs if o.strip()]
    assert sum(c["refused"] for c in counts) > 0, "no late or stale write was tried: the test checks too little"

    events = history(store)
    status = {r: "queued" for r in ids}
    holder: dict[str, str | None] = {r: None for r in ids}
    changes = 0
    for run_id, message in events:
        before = status[run_id]
        if message.startswith("claimed by worker"):
            assert before == "queued" and holder[run_id] is None, f"{run_id}: claimed while {before} ({message})"
            status[run_id], holder[run_id] = "running", message.split()[3]
        elif message.startswith("ended "):
            _, new, _, _, worker = message.split()
            assert before == "running" and holder[run_id] == worker, \
                f"{run_id}: ended by {worker} while {before}, held by {holder[run_id]}"
            status[run_id], holder[run_id] = new, None
        elif message.startswith("queued again"):
            assert before in RESUMABLE, f"{run_id}: queued again from {before} (finished runs never go back)"
            status[run_id] = "queued"
        else:  # interrupted: its worker died
            assert before == "running", f"{run_id}: interrupted while {before}"
            status[run_id], holder[run_id] = "interrupted", None
        changes += 1
    print(f"{changes} transitions checked; per actor: {counts}")
    assert changes >= 200
    assert {r: store.get_run(r).status for r in ids} == status, "the runs table disagrees with its history"
    store.close()


def test_a_late_end_and_a_requeue_of_a_running_run_are_refused_and_write_nothing(tmp_path):
    store = RunStore(tmp_path)
    run = store.create_run(RunConfig(model="tiny:bert"), device="cpu")
    a = store.register_worker("cpu")
    assert store.claim(a, "cpu").run_id == run
    with pytest.raises(StoreError, match="is running now"):
        store.requeue(run, resume=False)
    store.fence(run, a)
    store.log_metrics(run, 1, {"loss": 1.0})
    store.flush()
    # a's lease runs out (it hung): another process marks the run interrupted, then b trains it
    store._wcon.execute("UPDATE workers SET lease_until = 0 WHERE id = ?", (a,))
    assert store.mark_interrupted() == [run]
    store.requeue(run, resume=False)
    b = store.register_worker("cpu")
    assert store.claim(b, "cpu").run_id == run
    store.log_metrics(run, 2, {"loss": 2.0})  # a wakes up and logs: dropped, a no longer holds it
    store.flush()
    with pytest.raises(ClaimLost, match=f"no longer held by worker {a}"):
        store.set_status(run, "finished", worker=a)
    assert store.get_run(run).status == "running" and store.get_run(run).worker == b
    assert list(store.metrics(run).step) == [1]
    assert store.renew_lease(a) is None, "a's worker row is gone: its heartbeat must say so"
    assert store.renew_lease(b) == {run}
    store.unfence(run)
    store.set_status(run, "finished", worker=b)
    assert store.get_run(run).status == "finished"
    store.close()
