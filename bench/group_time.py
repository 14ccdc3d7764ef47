"""A comparison's wall time: a group of runs through the lab vs the same configs as a loop of HF Trainer runs.

What a user waits for is the group (a sweep, a preset), not one step. Both sides start from
nothing, as a user's would: each is a fresh process (imports, model load, tokenisation
included) and the clock runs from the first run queued to the last one ended.

- lab: the configs queued as one group in a fresh store, then drained by worker processes, the
  path of the app's workers and of `hft worker`. ``auto`` (the default, HFT_RUNS_PER_DEVICE=auto):
  one worker per core sharing the cores as the shape's measured schedule says (schedule.py);
  "auto cold" starts with no schedule cached, so the measurement (a probe queued ahead of the
  group) is inside its wall time; "auto" has it cached, as every later group of that shape on
  this machine does. A number P (``--workers 1,2``): P workers x cores/P threads, fixed.
- hf_loop: one Python process that, for each config, loads the model, tokenises the data and
  runs ``Trainer.train()`` with the same batch, steps, lr, schedule, eval cadence and eval set,
  then saves the model (the lab writes a checkpoint at the end of every run): the script a
  user would write.

Where the lab's time goes, per run, read from the store's timestamps: start (claim -> first
training step logged: model load, data, tokenisation, warm-up), training steps, evaluation,
end (last step -> ended: final eval, checkpoint), and the gaps between one run ending and the
next starting on a worker.

    python bench/group_time.py                       # 8 tiny:bert runs x 200 steps (4 lr x 2 seeds)
    python bench/group_time.py --runs 4 --steps 50   # quicker
    python bench/group_time.py --preset finetune_vs_scratch --seeds 0,1,2   # a preset's 9 MiniLM runs
    python bench/group_time.py --preset l2sp_few_shot --no-hf                # the estimate's accuracy only

Before the lab runs, the group's estimate (schedule.group_estimate: time-estimate probes of its
shapes, measured here first, and the schedule) is printed beside the measured wall time.

Last line: RESULT group_vs_hf_loop=<hf_loop wall / lab wall, schedule cached>  (> 1: the lab answers
sooner); with --preset: RESULT preset_vs_hf_loop=<...>.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402  (bench/ is on sys.path: run as python bench/X.py)

LRS = (1e-4, 3e-4, 1e-3, 3e-3)


def configs(args) -> list[dict]:
    out = []
    for i in range(args.runs):
        lr, seed = LRS[i % len(LRS)], i // len(LRS)
        out.append({"model": args.model, "data": args.data, "batch_size": args.batch, "max_length": args.max_length,
                    "max_steps": args.steps, "eval_every": args.eval_every, "n_eval": args.n_eval, "lr": lr,
                    "seed": seed, "device": "cpu", "precision": "fp32", "name": f"lr{lr:g}-s{seed}",
                    "group": "group-time"})
    return out


# ---- the lab ---------------------------------------------------------------------------------------

def run_lab(cfgs: list[dict], mode: str, cores: int, cache_from: Path | None = None) -> dict:
    """``mode``: "auto" (workers share the cores by the measured schedule) or a number of workers P.
    ``cache_from``: a home whose cache (time estimates, schedules) this fresh home starts with."""
    from hft_core import schedule
    from hft_core.config import RunConfig
    from hft_core.store import RunStore
    from hft_core.worker import runs_per_device

    home = scratch_dir("hft-group-time-")
    if cache_from is not None:
        shutil.copytree(cache_from / "cache", home / "cache")
    auto = mode == "auto"
    os.environ["HFT_RUNS_PER_DEVICE"] = "auto" if auto else mode
    workers = runs_per_device("cpu") if auto else int(mode)
    threads = 1 if auto else max(1, cores // workers)
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    t0 = time.time()
    with RunStore(home) as store:
        if auto:
            os.environ["HFT_HOME"] = str(home)
            schedule._MEMO.clear()
            schedule.queue_measurements(store, [RunConfig.from_dict(c) for c in cfgs])
        ids = [store.create_run(RunConfig.from_dict(c), status="queued", device="cpu", group=c["group"],
                                name=c["name"]) for c in cfgs]
    argv = ["--threads", str(threads), "--max-running", str(workers), "--exit-when-idle", "1"]
    if auto:
        argv += ["--budget", str(cores)]
    procs = [subprocess.Popen([sys.executable, "-m", "hft_core.worker_process", "--home", str(home), "--device", "cpu",
                               *argv], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=open(home / f"worker{i}.log", "w"))
             for i in range(workers)]
    t_ready = None  # every worker registered: from here on the app's warm workers would be
    with RunStore(home) as store:
        while True:
            if t_ready is None and len(store.workers("cpu")) >= workers:
                t_ready = time.time()
            recs = [store.get_run(i) for i in ids]
            if all(r.status not in ("queued", "running") for r in recs):
                break
            if all(p.poll() is not None for p in procs):
                raise RuntimeError(f"the workers exited with runs left; see {home}/worker*.log")
            time.sleep(0.2)
        wall = max(r.ended for r in recs) - t0
        for p in procs:
            p.wait(timeout=60)
        bad = [(r.name, r.status, r.error) for r in recs if r.status != "finished"]
        if bad:
            raise RuntimeError(f"runs did not finish: {bad}")
        parts = breakdown(store, recs, t0)
        finals = {r.name: float(store.metrics(r.id, names=["eval/accuracy"]).sort_values("step")["value"].iloc[-1])
                  for r in recs}
        used = sorted({m.split(" with ")[1].split(" torch")[0] for r in recs for _, _, m in store.events(r.id)
                       if m.startswith("trained in pid")})
        probes = [r for r in store.list_runs(kind="probe")]
        measure_s = sum((r.ended or 0) - (r.started or 0) for r in probes)
    return {"wall": wall, "parts": parts, "finals": finals, "workers": workers, "threads": "/".join(used),
            "home": home, "measure_s": measure_s, "warm_wall": wall - ((t_ready or t0) - t0)}


def breakdown(store, recs, t0: float) -> dict[str, float]:
    """Seconds summed over runs: start, train, eval, end; and queue gaps (first claim after t0, and
    each run's claim after the previous run on the same worker ended)."""
    parts = {"start": 0.0, "train": 0.0, "eval": 0.0, "end": 0.0, "gaps": 0.0}
    by_worker: dict[str, list] = {}
    for r in recs:
        by_worker.setdefault(r.pid or r.worker or "?", []).append(r)
        df = store.metrics(r.id)
        loss = df[df["name"] == "loss"].sort_values("step")
        evals = df[df["name"].str.startswith("eval/")].groupby("step")["wall_time"].max()
        first, last = float(loss["wall_time"].iloc[0]), float(loss["wall_time"].iloc[-1])
        parts["start"] += first - r.started
        # an in-loop eval runs after its step's training row is written: its time is that eval's
        # latest row minus that training row
        loss_t = dict(zip(loss["step"], loss["wall_time"]))
        in_loop = sum(float(t) - float(loss_t[s]) for s, t in evals.items() if s in loss_t and s < loss["step"].max())
        parts["eval"] += in_loop
        parts["train"] += last - first - in_loop
        parts["end"] += r.ended - last
    for runs in by_worker.values():
        runs.sort(key=lambda r: r.started)
        parts["gaps"] += runs[0].started - t0
        parts["gaps"] += sum(b.started - a.ended for a, b in zip(runs, runs[1:]))
    return parts


# ---- the loop of HF Trainer runs ------------------------------------------------------------------

HF_LOOP = r'''
import json, sys, time
t0 = time.time()
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from hft_core import data as data_sources, models as model_sources
import numpy as np
t_ready = time.time()
cfgs = json.loads(sys.argv[1]); out_dir = sys.argv[2]
finals = {}
parts = {"start": 0.0, "train": 0.0, "end": 0.0}
for c in cfgs:
    t_start = time.time()
    torch.manual_seed(c["seed"])
    ds = data_sources.load_data(c["data"], "classification", n_train=c.get("n_train", 0), seed=c["seed"])
    labels = sorted({e["label"] for e in ds.train})
    tok = model_sources.load_tokenizer(c["model"])
    model = model_sources.load_model(c["model"], "classification", len(labels), seed=c["seed"])
    alpha = ((c.get("mix") or {}).get("blend") or {}).get("alpha", 1.0)
    if alpha < 1:  # the user's few lines for "blend pretrained and random weights"
        fresh = model_sources.load_model(c["model"], "classification", len(labels), pretrained=False,
                                         seed=c["seed"]).state_dict()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.is_floating_point():
                    v.mul_(alpha).add_(fresh[k], alpha=1 - alpha)
    def rows(examples):
        enc = tok([e["text"] for e in examples], truncation=True, max_length=c["max_length"])
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": e["label"]}
                for i, e in enumerate(examples)]
    train_rows, eval_rows = rows(ds.train), rows(ds.eval[:c["n_eval"]])
    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}
    args = TrainingArguments(output_dir=f"{out_dir}/{c['name']}", per_device_train_batch_size=c["batch_size"],
                             per_device_eval_batch_size=2 * c["batch_size"], max_steps=c["max_steps"],
                             learning_rate=c["lr"], weight_decay=0.01, lr_scheduler_type="linear", warmup_steps=0,
                             eval_strategy="steps" if c["eval_every"] else "no", eval_steps=c["eval_every"] or None,
                             logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                             dataloader_num_workers=0, seed=c["seed"], disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=accuracy)
    t_train = time.time()
    trainer.train()
    t_end = time.time()
    finals[c["name"]] = trainer.evaluate()["eval_accuracy"]
    trainer.save_model(f"{out_dir}/{c['name']}/final")
    t_done = time.time()
    parts["start"] += t_train - t_start; parts["train"] += t_end - t_train; parts["end"] += t_done - t_end
print(json.dumps({"finals": finals, "parts": parts, "t_ready": t_ready}))
'''


def run_hf_loop(cfgs: list[dict], cores: int) -> dict:
    out = scratch_dir("hft-group-time-hf-")
    env = {**os.environ, "HFT_OFFLINE": "1", "OMP_NUM_THREADS": str(cores)}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", HF_LOOP, json.dumps(cfgs), str(out)], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        raise RuntimeError(f"the HF Trainer loop failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["parts"]["gaps"] = res["t_ready"] - t0  # the process's start and imports
    return {"wall": wall, "parts": res["parts"], "finals": res["finals"]}


def preset_configs(name: str, seeds: list[int]) -> list[dict]:
    from hft_core.presets import group_configs, load_preset

    preset = load_preset(name)
    cfgs = group_configs(preset, seeds)
    if cfgs is None:
        raise SystemExit(f"preset {name}: a variant trains from another's result; pick a preset without one")
    labels = [v.label for v in preset.variants]
    return [{**c.to_dict(), "name": f"{labels[i % len(labels)]} s{c.seed}", "group": f"group-time-{name}"}
            for i, c in enumerate(cfgs)]


def group_estimate(cfgs: list[dict], home: Path | None) -> tuple[float | None, str]:
    """The estimate the app would show before Start, in ``home`` (None: a fresh one): the time-estimate
    probes of the group's shapes are measured first here (not counted in any wall time)."""
    from hft_core import estimate, schedule
    from hft_core.config import RunConfig

    home = home or scratch_dir("hft-group-time-est-")
    os.environ["HFT_HOME"] = str(home)
    os.environ["HFT_RUNS_PER_DEVICE"] = "auto"
    schedule._MEMO.clear()
    estimate._MEMO.clear()
    rcs = [RunConfig.from_dict(c) for c in cfgs]
    for cfg in {estimate.shape_key(c): c for c in rcs}.values():
        estimate.measure(cfg)
    found = schedule.group_estimate(rcs)
    return (found.total_s, found.line()) if found is not None else (None, "no estimate")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny:bert")
    p.add_argument("--data", default="bundled:bbc-news")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--n-eval", type=int, default=200)
    p.add_argument("--preset", default="", help="a preset's group instead (its variants x --seeds)")
    p.add_argument("--seeds", default="0,1,2", help="with --preset")
    p.add_argument("--workers", default="auto", help="lab schedules, comma-separated: auto (cold, then cached) "
                   "and/or numbers of worker processes")
    p.add_argument("--no-hf", action="store_true", help="skip the HF Trainer loop (the estimate check only)")
    args = p.parse_args(argv)
    from hft_core.placement import cpu_cores

    cores = cpu_cores()
    cfgs = preset_configs(args.preset, [int(s) for s in args.seeds.split(",")]) if args.preset else configs(args)
    c0 = cfgs[0]
    print(f"{len(cfgs)} runs{f' of preset {args.preset}' if args.preset else ''}: {c0['model']}, "
          f"{c0['max_steps']} steps, batch {c0['batch_size']}, {c0['max_length']} tokens, eval every "
          f"{c0['eval_every']} on {c0['n_eval']}; {cores} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, dict] = {}
    estimates: dict[str, tuple[float | None, str]] = {}
    order = ([] if args.no_hf else ["hf_loop"])
    for w in args.workers.split(","):
        order += ["lab auto cold", "lab auto"] if w == "auto" else [f"lab P={w}"]
    for name in order:
        if name == "hf_loop":
            results[name] = run_hf_loop(cfgs, cores)
        elif name == "lab auto cold":
            estimates[name] = group_estimate(cfgs, None)
            results[name] = run_lab(cfgs, "auto", cores)
        elif name == "lab auto":
            cold = results["lab auto cold"]["home"]
            estimates[name] = group_estimate(cfgs, cold)
            results[name] = run_lab(cfgs, "auto", cores, cache_from=cold)
        else:
            results[name] = run_lab(cfgs, name.split("=")[1], cores)
        r = results[name]
        print(f"  {name:14s} {r['wall']:7.1f} s" + (f"  ({r['workers']} workers, {r['threads']} torch thread(s) "
                                                     f"a run; measuring {r['measure_s']:.1f} s)" if "workers" in r
                                                     else ""), flush=True)
    cols = ["start", "train", "eval", "end", "gaps"]
    print("\nwall time and where it went (seconds summed over runs; with P workers the sums exceed the wall)")
    print(f"{'':14s} {'wall':>7s} " + " ".join(f"{c:>7s}" for c in cols) + "   mean final eval acc")
    for name, r in results.items():
        acc = statistics.fmean(r["finals"].values())
        print(f"{name:14s} {r['wall']:7.1f} " + " ".join(f"{r['parts'].get(c, float('nan')):7.1f}" for c in cols)
              + f"   {100 * acc:.1f} %")
    print("  (hf_loop: eval is inside train; end = final evaluate + save_model; gaps = process start and imports;\n"
          "   lab: gaps = the first claim after the group was queued (a schedule measurement included) and the\n"
          "   time between one run's end and the next run's start on a worker)")
    for name, (est, line) in estimates.items():
        wall = results[name]["warm_wall"]  # as the app's workers, started and waiting, would take it
        err = f"{100 * (est - wall) / wall:+.0f}%" if est else "n/a"
        print(f"estimate before Start, {name}: {line}; measured {wall:.1f} s from the workers' start: error {err}")
    if "hf_loop" in results:
        labs = [n for n in results if n.startswith("lab")]
        best = "lab auto" if "lab auto" in results else min(labs, key=lambda n: results[n]["wall"])
        for n in labs:
            print(f"{n}: {results['hf_loop']['wall'] / results[n]['wall']:.3f}x the HF Trainer loop")
        key = "preset_vs_hf_loop" if args.preset else "group_vs_hf_loop"
        print(f"RESULT {key}={results['hf_loop']['wall'] / results[best]['wall']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
