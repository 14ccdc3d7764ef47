"""python -m hft_core train|list|export|show|delete|merge

    python -m hft_core train --config presets/finetune.yaml --set lr=3e-4 --set mix.blend.alpha=0.5
    python -m hft_core train --set model=tiny:bert --set max_steps=20          # defaults + overrides
    python -m hft_core train --resume r-3f9a2c                                 # continue a stopped run
    accelerate launch --num_processes 2 -m hft_core train --config cfg.yaml    # DDP; rank 0 writes
    python -m hft_core preset finetune_vs_scratch --seeds 3        # a teaching preset, all variants
    python -m hft_core list
    python -m hft_core export r-3f9a2c --format csv --out ./export
    python -m hft_core merge wise-ft --a bundled:minilm-l6 --b run:r-3f9a2c

Every run lands in the same store as the dashboard's ($HFT_HOME), visible while it
trains. Bad input exits with status 2 and one line saying what to fix.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Sequence

from hft_core.config import ConfigError, RunConfig, parse_set


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


class ProgressSink:
    """A tqdm bar over the steps, with the loss and the latest eval metric."""

    def __init__(self, total: int, start: int = 0) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)
        self.last = start
        self.post: dict[str, str] = {}

    def log(self, step, values) -> None:
        if "loss" in values:
            self.post["loss"] = f"{values['loss']:.4f}"
        for k in ("eval/accuracy", "eval/loss"):
            if k in values:
                self.post[k.split("/")[1]] = f"{values[k]:.4f}"
                break
        if step > self.last:
            self.bar.update(step - self.last)
            self.last = step
        self.bar.set_postfix(self.post, refresh=False)

    def event(self, message: str, level: str = "info") -> None:
        self.bar.write(f"[{level}] {message}")

    def close(self) -> None:
        self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from hft_core.sinks import MultiSink
    from hft_core.trainer import train

    if _rank() != 0:
        return _train_other_rank(args)
    from hft_core.runs import execute_run, prepare_resume
    from hft_core.store import RunStore

    store = RunStore()
    if args.resume:
        run_id = args.resume
        cfg = store.get_run(run_id).cfg
        resume = prepare_resume(store, run_id)
    else:
        cfg = _load_config(args)
        if args.print_config:
            print(cfg.to_yaml())
            return 0
        run_id = store.create_run(cfg, status="queued", device=cfg.device, group=cfg.group, name=cfg.name)
        resume = False
    print(f"run {run_id}: {cfg.model} on {cfg.data}, {cfg.max_steps} steps; store {store.path}", file=sys.stderr)
    progress = None if args.quiet else ProgressSink(cfg.max_steps)

    def train_with_progress(cfg, sink, **kw):
        return train(cfg, MultiSink(sink, progress), **kw)

    stop = threading.Event()
    try:
        status = execute_run(store, run_id, train_with_progress, stop, resume=resume)
    except KeyboardInterrupt:  # Ctrl-C between steps: keep what was logged, say how to go on
        store.flush()
        store.set_status(run_id, "stopped", error="interrupted from the keyboard")
        print(f"\nstopped; resume with: python -m hft_core train --resume {run_id}", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()
    rec = store.get_run(run_id)
    last = store.last_metrics(run_id)
    store.close()
    if status == "failed":
        print(f"error: run {run_id} failed: {rec.error}", file=sys.stderr)
        return 1
    print(f"run {run_id} {status} at step {int(last.get('step', 0))}")
    for k in sorted(k for k in last if k.startswith("eval/")):
        print(f"  {k} = {last[k]:.4f}")
    print(f"checkpoint: {rec.checkpoint_dir}")
    return 0


def _load_config(args: argparse.Namespace) -> RunConfig:
    """--config (a plain config or a preset file + --variant) then --set overrides."""
    from hft_core.presets import load_run_config

    cfg = load_run_config(args.config, args.variant) if args.config else RunConfig()
    return cfg.with_overrides(parse_set(args.set or []))


def _train_other_rank(args: argparse.Namespace) -> int:
    """Ranks > 0 of `accelerate launch`: train in lockstep; rank 0 owns the store and checkpoints."""
    from hft_core.home import run_dir
    from hft_core.trainer import train

    if args.resume:
        import yaml
        cfg = RunConfig.from_dict(yaml.safe_load((run_dir(args.resume) / "run_config.yaml").read_text()))
        train(cfg, None, threading.Event(), out_dir=run_dir(args.resume), resume=True)
    else:
        train(_load_config(args), None, threading.Event())
    return 0


def cmd_preset(args: argparse.Namespace) -> int:
    from hft_core.presets import list_presets, load_preset, run_preset_here

    if not args.name:
        for p in list_presets():
            print(f"{p.name:24} {p.title}\n{'':24} {p.question}")
        return 0
    preset = load_preset(args.name)
    seeds = list(range(args.seeds)) if args.seeds else None
    outcome = run_preset_here(preset, seeds, quick=args.quick, log=print)
    print(f"\n{preset.title} ({preset.metric}, mean ± sd over {len(seeds or [0])} seed(s))")
    for label in outcome.values:
        mean, sd = outcome.mean_sd(label)
        print(f"  {label:32} {mean:.4f} ± {sd:.4f}")
    for check, held in outcome.check_results:
        print(f"  expected: {check.describe()}: {'held' if held else 'did NOT hold' if held is False else 'not measurable'}")
    print(f"open the group {outcome.extra.get('group')!r} on the Compare page to see the curves")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from hft_core.store import RunStore

    store = RunStore()
    store.mark_interrupted()  # runs whose owner process died show as interrupted, not running
    runs = store.list_runs(status=args.status or None, group=args.group or None)
    if not runs:
        print(f"no runs in {store.path}")
        return 0
    print(f"{'id':10} {'status':11} {'group':14} {'name':24} {'model':22} last metrics")
    for r in runs:
        last = store.last_metrics(r.id)
        shown = "  ".join(f"{k}={last[k]:.4g}" for k in ("step", "loss", "eval/accuracy", "eval/loss") if k in last)
        print(f"{r.id:10} {r.status:11} {r.group[:14]:14} {r.name[:24]:24} {r.config.get('model', '')[:22]:22} {shown}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hft_core.store import RunStore, export_run

    store = RunStore()
    for p in export_run(store, args.run_id, args.out or f"export-{args.run_id}", fmt=args.format):
        print(p)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from hft_core.store import RunStore

    RunStore().delete_run(args.run_id)
    print(f"deleted {args.run_id}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from hft_core import merge

    return merge.cli(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hft_core", description="HFT Lab: hybrid fine-tuning from the command line")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one run (defaults: MiniLM-L6 on BBC News)")
    t.add_argument("--config", help="YAML or JSON config file (e.g. presets/*.yaml)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field, e.g. --set lr=3e-4 --set mix.blend.alpha=0.5 (repeatable)")
    t.add_argument("--variant", default="", help="with a preset file as --config: which variant to train")
    t.add_argument("--resume", metavar="RUN_ID", help="continue a stopped/interrupted run from its checkpoint")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)
    pr = sub.add_parser("preset", help="list the teaching presets, or run one (all its variants) here")
    pr.add_argument("name", nargs="?", default="", help="preset name or YAML path; empty = list them")
    pr.add_argument("--seeds", type=int, default=0, help="run seeds 0..N-1 (default: the preset's first seed)")
    pr.add_argument("--quick", action="store_true", help="tiny models, a few steps: seconds, for checking")
    pr.set_defaults(fn=cmd_preset)
    ls = sub.add_parser("list", help="runs in the store with status and last metrics")
    ls.add_argument("--status", default="")
    ls.add_argument("--group", default="")
    ls.set_defaults(fn=cmd_list)
    e = sub.add_parser("export", help="write a run's metrics and config to files")
    e.add_argument("run_id")
    e.add_argument("--format", choices=["csv", "parquet"], default="csv")
    e.add_argument("--out", default="")
    e.set_defaults(fn=cmd_export)
    d = sub.add_parser("delete", help="delete a run: rows and checkpoint folder")
    d.add_argument("run_id")
    d.set_defaults(fn=cmd_delete)
    try:
        from hft_core import merge
        merge.add_parser(sub)
    except (ImportError, AttributeError):
        pass
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    user_errors = _user_error_types()
    try:
        return args.fn(args)
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from hft_core.trainer import TrainingDiverged

        if isinstance(e, TrainingDiverged):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors caused by input: printed as one line, exit 2 (no traceback)."""
    from hft_core.precision import PrecisionError

    types: list[type[BaseException]] = [ConfigError, PrecisionError, FileNotFoundError]
    for mod, name in (("hft_core.models", "ModelError"), ("hft_core.data", "DataError"), ("hft_core.store", "StoreError")):
        try:
            types.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)
