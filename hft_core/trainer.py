"""train(cfg, sink, stop): the one training loop. Read it top to bottom.

    1. device and precision plan (refused early, before anything loads)
    2. data, tokenizer, model
    3. strategies: setup hooks (blend, re-init, LoRA, freezing ...), then the optimizer
    4. the loop: batch -> transform -> forward -> task + extra losses -> step -> log
    5. eval every ``eval_every`` steps and at the end; checkpoint at the end, when
       stopped, every ``checkpoint_every`` steps, and before raising on a NaN loss

Each run gets the device and precision its config asks for (``placement``): in one
process, runs on different devices or precisions can train one after another or side
by side in threads. Under ``accelerate launch`` on several processes (DDP) each rank
takes its slice of every global batch, gradients are averaged by DDP, and only
rank 0 evaluates, writes metrics and saves checkpoints.

Data order is a pure function of (seed, micro-step): resuming at step s replays
exactly the batches a run that never stopped would have seen.
"""
from __future__ import annotations

import functools
import json
import math
import random
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hft_core import baselines
from hft_core import data as data_sources
from hft_core import models as model_sources
from hft_core.config import RunConfig
from hft_core.placement import Runtime, make_runtime
from hft_core.precision import autocast, describe_device, make_scaler, plan_precision
from hft_core.sinks import MetricSink, NullSink
from hft_core.sinks import flush as flush_sink
from hft_core.strategies import base as strategies
from hft_core.strategies.base import StrategyContext
from hft_core.tasks import get_task

STATE_FILE = "trainer_state.pt"      # optimizer, scheduler, step, RNG: for resume
LIVE_WEIGHTS = "resume_model.safetensors"  # the model as trained (LoRA adapters unmerged): for resume
WARM_LIMIT = 20_000                  # examples tokenized up front, at most (the rest as they come)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf. The checkpoint before the bad step and all metrics are kept."""


@dataclass
class TrainResult:
    status: str                      # "finished" | "stopped"
    step: int                        # last completed optimizer step
    metrics: dict[str, float] = field(default_factory=dict)  # final eval metrics ("eval/accuracy", ...)
    checkpoint: str | None = None    # folder with model.safetensors, tokenizer, run_config.yaml
    model: Any = field(default=None, repr=False)      # the trained model (unwrapped), for notebooks
    tokenizer: Any = field(default=None, repr=False)


def train(cfg: RunConfig, sink: MetricSink | None = None, stop: threading.Event | None = None, *,
          out_dir: str | Path | None = None, resume: bool = False) -> TrainResult:
    if baselines.is_baseline(cfg.model):   # a classic model (bag-of-words): fitted once, no steps, no checkpoint
        return baselines.train(cfg, sink)
    stop = stop or threading.Event()
    ckpt_dir = Path(out_dir) / "checkpoint" if out_dir else None
    if resume and out_dir:
        recover_checkpoint(out_dir)
    if resume and not (ckpt_dir and (ckpt_dir / STATE_FILE).exists()):
        raise FileNotFoundError(f"cannot resume: no checkpoint with {STATE_FILE} in {ckpt_dir}; start the run afresh")

    # ---- 1. device and precision: this run's own, refused before anything loads ----
    # (find_unused: LP-FT/freezing/aux heads leave some parameters without gradients under DDP)
    runtime = make_runtime(cfg.device, cfg.grad_accum, find_unused=len(cfg.mix) > 0)
    plan = plan_precision(cfg.precision, describe_device(runtime.device))   # raises PrecisionError with the reason
    with runtime.on_device():
        return _train(cfg, runtime, plan, sink, stop, ckpt_dir, resume)


def _train(cfg: RunConfig, runtime: Runtime, plan, sink: MetricSink | None, stop: threading.Event,
           ckpt_dir: Path | None, resume: bool) -> TrainResult:
    device = runtime.device
    main = runtime.is_main_process
    sink = sink if (sink is not None and main) else NullSink()
    sink.event(f"device {device} ({runtime.num_processes} process(es)); precision: {plan.reason}")
    if plan.warning:
        sink.event(plan.warning, "warning")
    _seed_everything(cfg.seed)  # this process's generators: a worker process trains one run at a time
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # peak_mem_mb is this run's, not the process's so far

    # ---- 2. data, tokenizer, model ----------------------------------------------
    task = get_task(cfg.task)
    dataset = data_sources.load_data(cfg.data, cfg.task, text_column=cfg.text_column, label_column=cfg.label_column,
                                     n_train=cfg.n_train, n_eval=cfg.n_eval, eval_fraction=cfg.eval_fraction,
                                     seed=cfg.seed)
    num_labels = dataset.num_labels if cfg.task == "classification" else 0
    # a vocabulary learnt from the corpus comes from the training split only (never the eval texts)
    tokenizer = model_sources.run_tokenizer(cfg.model, cfg.corpus_vocab,
                                            (_text_of(e) for e in (dataset.pool or dataset.train)))
    own_vocab = tokenizer if cfg.corpus_vocab else None
    model = model_sources.load_model(cfg.model, cfg.task, num_labels, pretrained=True, seed=cfg.seed,
                                     tokenizer=own_vocab, init_std=cfg.init_std)
    dupes = f" ({dataset.duplicates_dropped} exact duplicates dropped)" if dataset.duplicates_dropped else ""
    sink.event(f"data {cfg.data}: {len(dataset.train)} train / {len(dataset.eval)} eval examples{dupes}; "
               f"model {cfg.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")

    # ---- 3. strategies, then the optimizer --------------------------------------
    mix = strategies.build(cfg.mix)
    ctx = StrategyContext(
        task=cfg.task, num_labels=num_labels, tokenizer=tokenizer, device=device, seed=cfg.seed,
        max_steps=cfg.max_steps, model_source=cfg.model,
        fresh_model=lambda seed: model_sources.load_model(cfg.model, cfg.task, num_labels, pretrained=False, seed=seed,
                                                          tokenizer=own_vocab, init_std=cfg.init_std),
        load_model=lambda source: model_sources.load_model(source, cfg.task, num_labels),
        # the whole training split as text, labels unused: KD's transfer set (in a few-shot run, the
        # n_train labelled examples plus the rest of the corpus without its labels; never eval data)
        train_texts=[task.make_batch([e], tokenizer).texts[0] for e in (dataset.pool or dataset.train)]
        if any(s.needs_train_texts for s in mix) else [],
        collate=lambda texts: task.collate(tokenizer, strategies.Batch(texts=list(texts)), cfg.max_length, device),
    )
    for s in mix:
        model = s.setup(model, ctx)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = _make_optimizer(cfg, model)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = make_scaler(plan, device.type)
    model, optimizer = runtime.prepare(model, optimizer)
    unwrapped = runtime.unwrap_model(model)
    task_weight = math.prod(s.task_weight for s in mix)
    hidden_states = any(s.needs_hidden_states for s in mix)

    start_step, tokens_seen = 0, 0
    if resume:
        start_step, tokens_seen = _load_state(ckpt_dir, unwrapped, optimizer, scheduler, scaler, mix)
        sink.event(f"resumed from step {start_step}")
    elif main and ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir.parent / "run_config.yaml").write_text(cfg.to_yaml())
    sink.log(start_step, {"params_total": n_params, "params_trainable": n_trainable})

    # ---- 4. the loop -------------------------------------------------------------
    rank, world = runtime.process_index, runtime.num_processes
    final_metrics: dict[str, float] = {}
    if cfg.eval_at_start and start_step == 0:
        final_metrics = _evaluate(task, unwrapped, tokenizer, dataset, cfg, device, plan, sink, 0, mix, main,
                                  runtime, samples=True)
    # tokenize the examples this run will visit once, in one batched call (as dataset.map before
    # HF Trainer); capped so a huge dataset does not stall the start
    visit = _visited(len(dataset.train), cfg.batch_size, world, start_step * cfg.grad_accum,
                     cfg.max_steps * cfg.grad_accum, cfg.seed)
    task.warm(tokenizer, [dataset.train[i] for i in visit[:WARM_LIMIT]], cfg.max_length)
    model.train()
    step = start_step
    status = "finished"
    t_last = time.perf_counter()
    step_metrics: dict[str, float] = {}  # what the strategies' on_step_end returned since the last log line
    while step < cfg.max_steps:
        if runtime.any_process(stop.is_set()):  # every rank stops at the same step
            status = "stopped"
            break
        if getattr(stop, "threads", 0) and stop.threads != torch.get_num_threads():
            torch.set_num_threads(stop.threads)  # its worker was given the CPU's free cores (control.widen)
        ctx.step, ctx.training = step, True
        terms_sum: dict[str, float] = {}
        n_examples = n_tokens = 0
        for micro in range(cfg.grad_accum):
            k = step * cfg.grad_accum + micro  # global micro-step: fixes which examples come next
            idx = _batch_indices(len(dataset.train), cfg.batch_size, world, rank, k, cfg.seed)
            batch = task.make_batch([dataset.train[i] for i in idx], tokenizer)
            for s in mix:
                batch = s.transform_batch(batch, ctx)
            batch.seed = (cfg.seed * 1_000_003 + k) * world + rank  # masked-LM masks: pure in (seed, micro-step, rank)
            batch.inputs = task.collate(tokenizer, batch, cfg.max_length, device)
            with runtime.accumulate(model), autocast(plan, device.type):
                out = model(**batch.model_inputs, output_hidden_states=hidden_states) if hidden_states \
                    else model(**batch.model_inputs)
                terms = {"task": task.loss(out, batch)}
                for s in mix:
                    terms.update(s.extra_losses(out, batch, ctx))
                weighted = {"task": task_weight * terms["task"], **{k_: v for k_, v in terms.items() if k_ != "task"}}
                loss = sum(weighted.values())  # of this micro-batch; backward divides by grad_accum
            # float(): a CPU-GPU sync point, once per micro-step; needed for the NaN check anyway
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                bad = {k_: float(v.detach()) for k_, v in weighted.items()}
                msg = (f"loss became {loss_value} at step {step} (terms: {bad}). Training stopped; the checkpoint "
                       f"from before this step and all metrics are kept. Try a lower lr (now {cfg.lr:g}), "
                       f"precision fp32, or max_grad_norm > 0.")
                sink.event(msg, "error")
                if main and ckpt_dir is not None:
                    flush_sink(sink)  # every step up to the checkpoint is in the store first
                    _save(ckpt_dir, cfg, unwrapped, tokenizer, mix, optimizer, scheduler, scaler, step, tokens_seen)
                raise TrainingDiverged(msg)
            runtime.backward(scaler.scale(loss))
            for k_, v in weighted.items():
                terms_sum[k_] = terms_sum.get(k_, 0.0) + float(v.detach()) / cfg.grad_accum
            n_examples += len(batch.texts)
            n_tokens += int(batch.inputs["attention_mask"].sum())
        grad_norm = optimizer_step(model, optimizer, scaler, cfg.max_grad_norm, runtime)
        scheduler.step()
        step += 1
        ctx.step = step
        for s in mix:
            step_metrics.update(s.on_step_end(step, ctx))
        tokens_seen += n_tokens * world

        now = time.perf_counter()
        dt, t_last = now - t_last, now
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            values = {"loss": sum(terms_sum.values()), **{f"loss/{k_}": v for k_, v in terms_sum.items()},
                      "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                      "samples_per_s": n_examples * world / dt, "tokens_per_s": n_tokens * world / dt,
                      "tokens_seen": tokens_seen, "peak_mem_mb": _peak_memory_mb(device),
                      "progress": step / cfg.max_steps, **step_metrics}
            step_metrics.clear()
            sink.log(step, values)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
            final_metrics = _evaluate(task, unwrapped, tokenizer, dataset, cfg, device, plan, sink, step, mix, main,
                                      runtime)
            t_last = time.perf_counter()  # eval time is not training throughput
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps and main and ckpt_dir \
                and not getattr(stop, "abandoned", False):
            flush_sink(sink)  # every step up to the checkpoint is in the store first
            _save(ckpt_dir, cfg, unwrapped, tokenizer, mix, optimizer, scheduler, scaler, step, tokens_seen)
            t_last = time.perf_counter()

    # ---- 5. final eval and checkpoint -------------------------------------------
    if status == "finished":  # in-loop evals skip the last step, so this is never a repeat
        final_metrics = _evaluate(task, unwrapped, tokenizer, dataset, cfg, device, plan, sink, step, mix, main,
                                  runtime, final=True)
    checkpoint = None
    if getattr(stop, "abandoned", False):  # our worker lost its claim: the folder may be another worker's now
        ckpt_dir = None
    if main and ckpt_dir is not None:
        flush_sink(sink)  # every step up to the checkpoint is in the store first
        _save(ckpt_dir, cfg, unwrapped, tokenizer, mix, optimizer, scheduler, scaler, step, tokens_seen)
        checkpoint = str(ckpt_dir)
    sink.event(f"{status} at step {step}" + (f": {_fmt(final_metrics)}" if final_metrics else ""))
    runtime.wait_for_everyone()
    return TrainResult(status, step, final_metrics, checkpoint, model=unwrapped, tokenizer=tokenizer)


# ---- the pieces the loop calls -----------------------------------------------------

def optimizer_step(model, optimizer, scaler: torch.amp.GradScaler, max_grad_norm: float,
                   runtime: Runtime | None = None) -> float:
    """Unscale, clip, step, update the loss scale, zero grads. Returns the grad norm before clipping.

    With fp16 loss scaling an inf/NaN gradient makes ``scaler.step`` skip the update
    (weights unchanged) and ``scaler.update`` halve the scale.
    """
    scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if max_grad_norm > 0 and params:
        if runtime is not None:
            norm = runtime.clip_grad_norm_(params, max_grad_norm)
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    elif params:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().float().norm() for p in params]))
    else:
        norm = torch.tensor(0.0)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def _batch_indices(n: int, batch_size: int, world: int, rank: int, k: int, seed: int) -> list[int]:
    """The examples of rank ``rank`` at global micro-step ``k``.

    The training set is read as an endless stream of seeded permutations (one per
    epoch); micro-step k covers stream positions [k*B*W, (k+1)*B*W) and each rank
    takes its own B of them. Pure function of its arguments, so resume is exact.
    """
    start = k * batch_size * world + rank * batch_size
    return [_epoch_order(n, seed, pos // n)[pos % n] for pos in range(start, start + batch_size)]


def _visited(n: int, batch_size: int, world: int, first_k: int, end_k: int, seed: int) -> list[int]:
    """Every example read (by any rank) at micro-steps first_k .. end_k - 1, in order of first use."""
    start, end = first_k * batch_size * world, end_k * batch_size * world
    if end - start >= n:
        return list(range(n))
    out: list[int] = []
    for epoch in range(start // n, (end - 1) // n + 1):
        lo, hi = max(start, epoch * n) - epoch * n, min(end, (epoch + 1) * n) - epoch * n
        out += _epoch_order(n, seed, epoch)[lo:hi]
    return list(dict.fromkeys(out))


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(n, generator=g).tolist())


def _make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    # Every parameter goes in, frozen or not: LP-FT unfreezes mid-run, and AdamW skips grad=None params.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    # The fused kernel (one pass over all tensors; what HF Trainer uses by default) when every
    # parameter is a float tensor on a device that has it; else the portable for-each version.
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


def _make_scheduler(cfg: RunConfig, optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        done = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - done)
        return 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))  # cosine
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _evaluate(task, model, tokenizer, dataset, cfg, device, plan, sink, step, mix, main, runtime,
              final: bool = False, samples: bool = False) -> dict[str, float]:
    """Eval on rank 0; writes eval/* metrics and, at the end, eval_report.json beside the checkpoint."""
    metrics: dict[str, float] = {}
    if main:
        eval_model = model
        report = task.evaluate(eval_model, tokenizer, dataset.eval, batch_size=max(cfg.batch_size, 32),
                               max_length=cfg.max_length, device=device, label_names=dataset.label_names,
                               autocast=autocast(plan, device.type), num_samples=3 if final or samples else 0)
        metrics = {f"eval/{k}": v for k, v in report.metrics.items()}
        sink.log(step, metrics)
        for s in report.samples:
            sink.event(f"sample at step {step}: Q: {s['prompt']!r} -> {s['generated']!r} (reference {s['reference']!r})")
        if final and report.confusion is not None:
            sink.event("confusion matrix (rows = true, columns = predicted; labels "
                       f"{json.dumps(report.label_names)}): {json.dumps(report.confusion)}")
    runtime.wait_for_everyone()
    return metrics


def _save(ckpt_dir: Path, cfg: RunConfig, model, tokenizer, mix, optimizer, scheduler, scaler, step: int,
          tokens_seen: int) -> None:
    """A checkpoint is a loadable model folder plus what resume needs. Written to a temp folder, then swapped in."""
    from safetensors.torch import save_model

    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir(parents=True)
    export = model
    for s in mix:  # e.g. LoRA merges its adapters so the checkpoint is a plain model
        export = s.export_model(export)
    export.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "run_config.yaml").write_text(cfg.to_yaml())
    save_model(model, str(tmp / LIVE_WEIGHTS))
    # strategies with state of their own (mutual learning's peer model and its optimizer) add it here
    extra = {s.name: state for s in mix if (state := s.state_dict())}
    torch.save({"step": step, "tokens_seen": tokens_seen, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "strategies": extra,
                "rng_torch": torch.get_rng_state(), "rng_python": random.getstate(),
                **({"rng_cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})}, tmp / STATE_FILE)
    old = ckpt_dir.with_name(ckpt_dir.name + ".old")
    if ckpt_dir.exists():
        if old.exists():  # the last swap's clean-up was cut short (a kill in the rmtree below): garbage
            _rmtree(old)
        ckpt_dir.rename(old)
    tmp.rename(ckpt_dir)
    if old.exists():
        _rmtree(old)


def recover_checkpoint(out_dir: str | Path) -> None:
    """Mend a checkpoint swap cut short by a kill: ``_save`` renames checkpoint -> checkpoint.old,
    then checkpoint.tmp -> checkpoint, then removes checkpoint.old. Killed between the renames, the
    newest complete one is used; killed in the removal, the rest of checkpoint.old goes."""
    ckpt = Path(out_dir) / "checkpoint"
    tmp, old = ckpt.with_name("checkpoint.tmp"), ckpt.with_name("checkpoint.old")
    if ckpt.exists():
        # killed while removing checkpoint.old after a complete swap: what is left of it is garbage
        # (and would stop the next swap's rename: "Directory not empty")
        if old.exists():
            _rmtree(old)
        return
    if not old.exists():
        return  # no swap under way: a lone checkpoint.tmp may be half written, never use it
    # checkpoint.old exists only once checkpoint.tmp is complete: the newer tmp wins
    (tmp if (tmp / STATE_FILE).exists() else old).rename(ckpt)


def _load_state(ckpt_dir: Path, model, optimizer, scheduler, scaler, mix=()) -> tuple[int, int]:
    from safetensors.torch import load_model

    load_model(model, str(ckpt_dir / LIVE_WEIGHTS))
    state = torch.load(ckpt_dir / STATE_FILE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    for s in mix:
        if s.name in state.get("strategies", {}):
            s.load_state_dict(state["strategies"][s.name])
    torch.set_rng_state(state["rng_torch"])
    random.setstate(_to_tuple(state["rng_python"]))
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng_cuda"])
    return int(state["step"]), int(state["tokens_seen"])


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB, whole process


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def _text_of(example: dict) -> str:
    """An example's text for learning a vocabulary: its text, or its prompt and response."""
    if "text" in example:
        return example["text"]
    return f"{example.get('prompt', '')}\n{example.get('response', '')}"
