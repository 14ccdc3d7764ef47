"""Training throughput: hft_core's trainer vs a bare PyTorch loop vs Hugging Face Trainer.

Same model, data, batch, sequence length and steps for all three, interleaved in
one process (A B C, B C A, C A B, ...) so machine noise hits them alike. Each
step is timed on its own; the first ``--warmup`` steps of every run are dropped
(allocator and thread-pool warm-up); a run's figure is samples / median step time.
The reported figure per system is the median over repeats.

What differs, on purpose: HF Trainer gets its data tokenized before it starts (as its users
do with ``dataset.map``) and uses fused AdamW (its default); hft_core does the same (it
tokenizes the examples a run will visit in one call before the loop, and uses fused AdamW);
the bare loop is what a person writes first: tokenize each batch, plain AdamW.

    python bench/throughput.py                       # MiniLM-L6, BBC News, batch 16, 128 tokens
    python bench/throughput.py --model tiny:bert --steps 30 --repeats 5

Last line: RESULT vs_bare=<hft/bare> vs_hf_trainer=<hft/hf>
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from hft_core import data as data_sources  # noqa: E402
from hft_core import models as model_sources  # noqa: E402
from hft_core.config import RunConfig  # noqa: E402
from hft_core.trainer import train  # noqa: E402


class StepTimes:
    """A sink that keeps the trainer's own per-step samples/s."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def log(self, step, values) -> None:
        if "samples_per_s" in values:
            self.rates.append(values["samples_per_s"])

    def event(self, message, level="info") -> None:
        pass


def run_hft(args, examples_unused) -> float:
    cfg = RunConfig(model=args.model, data=args.data, batch_size=args.batch, max_length=args.max_length,
                    max_steps=args.steps, eval_every=0, n_eval=16, lr=1e-4, seed=0, device="cpu",
                    precision="fp32", weight_decay=0.01, max_grad_norm=1.0)
    sink = StepTimes()
    # out_dir=None: no checkpoint written, as in the other two
    train(cfg, sink, threading.Event(), out_dir=None)
    return statistics.median(sink.rates[args.warmup:])


def run_bare(args, examples) -> float:
    """What a person writes by hand: tokenize per batch, forward, CE, backward, clip, AdamW, linear decay."""
    torch.manual_seed(0)
    tok = model_sources.load_tokenizer(args.model)
    model = model_sources.load_model(args.model, "classification", 5, seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / args.steps)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(examples), generator=g).tolist()
    times = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        idx = [order[(step * args.batch + i) % len(order)] for i in range(args.batch)]
        enc = tok([examples[i]["text"] for i in idx], padding=True, truncation=True, max_length=args.max_length,
                  return_tensors="pt")
        labels = torch.tensor([examples[i]["label"] for i in idx])
        loss = torch.nn.functional.cross_entropy(model(**enc).logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t0)
    return args.batch / statistics.median(times[args.warmup:])


def run_hf_trainer(args, examples) -> float:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(0)
    tok = model_sources.load_tokenizer(args.model)
    model = model_sources.load_model(args.model, "classification", 5, seed=0)
    enc = tok([e["text"] for e in examples], truncation=True, max_length=args.max_length)
    rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": e["label"]}
            for i, e in enumerate(examples)]

    class Times(TrainerCallback):
        """Time between consecutive step ends: data fetch + collate + forward/backward/step, as for the others."""

        def __init__(self):
            self.t, self.times = None, []

        def on_step_end(self, *a, **k):
            now = time.perf_counter()
            if self.t is not None:
                self.times.append(now - self.t)
            self.t = now

    timer = Times()
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch, max_steps=args.steps,
                                  learning_rate=1e-4, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear",
                                  logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
                                  use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True)
        Trainer(model=model, args=targs, train_dataset=rows, data_collator=DataCollatorWithPadding(tok),
                callbacks=[timer]).train()
    return args.batch / statistics.median(timer.times[args.warmup:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled:minilm-l6")
    p.add_argument("--data", default="bundled:bbc-news")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=14)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    examples = data_sources.load_data(args.data, "classification", seed=0).train
    systems = {"hft_core": run_hft, "bare": run_bare, "hf_trainer": run_hf_trainer}
    names = list(systems)
    results: dict[str, list[float]] = {n: [] for n in names}
    print(f"model={args.model} data={args.data} batch={args.batch} max_length={args.max_length} "
          f"steps={args.steps} (first {args.warmup} dropped) repeats={args.repeats} threads={torch.get_num_threads()}")
    for r in range(args.repeats):
        order = names[r % 3:] + names[:r % 3]
        for n in order:
            v = systems[n](args, examples)
            results[n].append(v)
            print(f"  repeat {r}: {n:10s} {v:7.2f} samples/s", flush=True)
    med = {n: statistics.median(v) for n, v in results.items()}
    print("\nmedian samples/s: " + ", ".join(f"{n}={v:.2f}" for n, v in med.items()))
    print(f"RESULT vs_bare={med['hft_core'] / med['bare']:.3f} vs_hf_trainer={med['hft_core'] / med['hf_trainer']:.3f}")


if __name__ == "__main__":
    main()
