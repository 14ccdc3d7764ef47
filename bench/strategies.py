"""Do the strategies do what the papers say, on real data? MiniLM-L6 on BBC News, few-shot.

Four comparisons, each over seeds (mean ± sd), same steps and data for every arm:

  1. alpha blend      eval accuracy at alpha = 1, 0.5, 0         expected 1 > 0.5 > 0
  2. distillation     a 2-layer student (tiny:bert: width 64, random start, 2.1M params)
                      trained alone vs with KD from the fine-tuned 6-layer MiniLM (the
                      alpha=1 run), T 2, r 0.5, with the transfer set (the teacher's soft
                      labels on the rest of the training split, labels unused); both
                      students: same seed, lr 1e-3, 150 steps (the distill_student
                      preset's settings)                     expected KD > alone
  3. LoRA vs full     accuracy and trainable share of parameters expected LoRA on every
                      (r 8 on every linear layer of the blocks,  linear layer near full with
                      the lab's default, and on query/value)     a few % trainable; query/value
                                                                  behind it
  4. WiSE-FT          accuracy along (1-a)*pretrained + a*fine-tuned, a = 0..1
                                                                  expected a=1 >> a=0; the
                                                                  curve rises with a
Prints a table per comparison and whether each expected direction held. Nothing is
tuned to the outcome: settings are the defaults of the lab (lr 1e-4 for full
fine-tuning; LoRA at lr 1e-3, its usual higher rate; the students as in the
distill_student preset), fixed before running.

    python bench/strategies.py            # 3 seeds, 60 steps, 200 eval examples (~30 min on 2 cores)
    python bench/strategies.py --quick    # 1 seed, 15 steps, 64 eval examples (a few minutes)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402  (bench/ is on sys.path: run as python bench/X.py)

os.environ.setdefault("HFT_OFFLINE", "1")

MODEL, DATA = "bundled:minilm-l6", "bundled:bbc-news"
STUDENT = "tiny:bert"


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(xs: list[float]) -> str:
    m, s = mean_sd(xs)
    return f"{m:.3f} ± {s:.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 seed, 15 steps, 64 eval examples")
    p.add_argument("--seeds", type=int, default=0, help="number of seeds (default 3, quick 1)")
    p.add_argument("--steps", type=int, default=0, help="training steps per run (default 60, quick 15)")
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-eval", type=int, default=0, help="default 200, quick 64")
    p.add_argument("--json", default="", help="also write all numbers to this JSON file")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch's default); 1 is much faster on a machine busy with other work")
    p.add_argument("--model", default=MODEL, help="for a smoke test, e.g. tiny:bert (the figures mean nothing then)")
    args = p.parse_args()
    model = args.model
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    steps = args.steps or (15 if args.quick else 60)
    n_eval = args.n_eval or (64 if args.quick else 200)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from hft_core import data, merge
    from hft_core.config import RunConfig
    from hft_core.sinks import MemorySink
    from hft_core.trainer import train

    work = scratch_dir("hft-bench-")
    base = dict(data=DATA, task="classification", n_train=args.n_train, n_eval=n_eval, batch_size=16,
                max_length=128, max_steps=steps, eval_every=0, device="cpu", precision="fp32")
    t_start = time.time()

    def run(label: str, seed: int, model: str = model, mix: dict | None = None, **over) -> dict:
        cfg = RunConfig(**{**base, **over}, model=model, seed=seed, mix=mix or {})
        sink = MemorySink()
        t0 = time.time()
        out_dir = work / f"{label}-s{seed}"
        result = train(cfg, sink, out_dir=out_dir)
        r = {"accuracy": result.metrics["eval/accuracy"], "macro_f1": result.metrics["eval/macro_f1"],
             "params_total": sink.last("params_total"), "params_trainable": sink.last("params_trainable"),
             "checkpoint": result.checkpoint, "seconds": time.time() - t0}
        print(f"  [{time.time() - t_start:6.0f}s] {label:18} seed {seed}: accuracy {r['accuracy']:.3f} "
              f"({r['seconds']:.0f} s)", flush=True)
        return r

    # the 2-layer student: a small random BERT with MiniLM's vocabulary (KD needs the same tokenizer)
    student, student_steps = STUDENT, max(steps, round(steps * 2.5))

    results: dict[str, dict[str, list[dict]]] = {}

    def add(group: str, arm: str, r: dict) -> None:
        results.setdefault(group, {}).setdefault(arm, []).append(r)

    wise_rows: dict[float, list[float]] = {}
    for seed in seeds:
        print(f"seed {seed}", flush=True)
        for alpha in (1.0, 0.5, 0.0):
            add("blend", f"alpha={alpha:g}", run(f"alpha{alpha:g}", seed, mix={"blend": {"alpha": alpha}}))
        teacher = results["blend"]["alpha=1"][-1]["checkpoint"]
        add("kd", "student alone", run("student", seed, model=student, lr=1e-3, max_steps=student_steps))
        add("kd", "student + KD", run("student-kd", seed, model=student, lr=1e-3, max_steps=student_steps,
                                      mix={"kd": {"teacher": teacher, "temperature": 2.0, "ratio": 0.5}}))
        add("kd", "teacher (full depth)", results["blend"]["alpha=1"][-1])
        add("lora", "full fine-tuning", results["blend"]["alpha=1"][-1])
        add("lora", "LoRA r=8 all linear", run("lora", seed, mix={"lora": {}}, lr=1e-3))
        add("lora", "LoRA r=8 query/value", run("lora-qv", seed, mix={"lora": {"target_modules": "query-value"}},
                                                 lr=1e-3))
        examples = data.load_data(DATA, "classification", n_train=args.n_train, n_eval=n_eval, seed=seed).eval
        rows = merge.wise_ft_sweep(model, teacher, "classification", examples, seed=seed, max_length=128)
        for r in rows:
            wise_rows.setdefault(r["alpha"], []).append(r["eval/accuracy"])
        print(f"  [{time.time() - t_start:6.0f}s] WiSE-FT sweep seed {seed}: "
              + " ".join(f"{r['alpha']:.1f}:{r['eval/accuracy']:.2f}" for r in rows), flush=True)

    acc = lambda g, a: [r["accuracy"] for r in results[g][a]]
    print(f"\n{model} on BBC News, {args.n_train} training examples, {steps} steps of 16, eval on {n_eval}; "
          f"seeds {seeds}; total {time.time() - t_start:.0f} s\n")
    print("1. alpha blend            eval accuracy")
    for arm in results["blend"]:
        print(f"   {arm:24} {fmt(acc('blend', arm))}")
    print("2. distillation           eval accuracy")
    for arm in results["kd"]:
        print(f"   {arm:24} {fmt(acc('kd', arm))}   ({results['kd'][arm][0]['params_total'] / 1e6:.1f}M params)")
    print("3. LoRA vs full           eval accuracy     trainable share")
    for arm in results["lora"]:
        share = [r["params_trainable"] / r["params_total"] for r in results["lora"][arm]]
        print(f"   {arm:24} {fmt(acc('lora', arm))}     {100 * statistics.mean(share):.2f}%")
    print("4. WiSE-FT                eval accuracy")
    for a in sorted(wise_rows):
        print(f"   a = {a:.1f}                  {fmt(wise_rows[a])}")

    m = lambda xs: statistics.mean(xs)
    wise = [m(wise_rows[a]) for a in sorted(wise_rows)]
    checks = [
        ("alpha 1 > alpha 0.5 > alpha 0",
         m(acc("blend", "alpha=1")) > m(acc("blend", "alpha=0.5")) > m(acc("blend", "alpha=0"))),
        ("KD student > student alone", m(acc("kd", "student + KD")) > m(acc("kd", "student alone"))),
        ("LoRA (all linear layers) within 0.05 of full fine-tuning",
         abs(m(acc("lora", "LoRA r=8 all linear")) - m(acc("lora", "full fine-tuning"))) <= 0.05),
        ("LoRA all linear > LoRA query/value", m(acc("lora", "LoRA r=8 all linear")) > m(acc("lora", "LoRA r=8 query/value"))),
        ("WiSE-FT: a=1 > a=0", wise[-1] > wise[0]),
        ("WiSE-FT: accuracy never falls by more than 0.02 as a rises",
         all(b >= a - 0.02 for a, b in zip(wise, wise[1:]))),
    ]
    print("\nexpected directions")
    for what, held in checks:
        print(f"   {'held       ' if held else 'did NOT hold'}  {what}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": {"seeds": seeds, "steps": steps, "n_eval": n_eval,
                                                            "n_train": args.n_train},
                                               "results": {g: {a: [{k: v for k, v in r.items() if k != "checkpoint"}
                                                                   for r in rs] for a, rs in arms.items()}
                                                           for g, arms in results.items()},
                                               "wise_ft": {str(a): v for a, v in wise_rows.items()},
                                               "checks": {w: bool(h) for w, h in checks}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
