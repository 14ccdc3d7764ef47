"""hft (= python -m hft_core) train|stop|queue|worker|preset|search|list|compare|report|export|delete|merge

    hft train --config presets/finetune.yaml --set lr=3e-4 --set mix.blend.alpha=0.5
    hft train --set model=tiny:bert --set max_steps=20       # queue it, wait its turn, train it here
    hft train --set model=tiny:bert --detach                 # only queue it; a worker trains it
    hft train --resume r-3f9a2c                              # continue a stopped run
    hft stop r-3f9a2c                                        # any run, whichever process trains it
    hft queue                                                # what trains and waits, per device
    hft worker --device cuda:1                               # serve a device's queue from this terminal
    accelerate launch --num_processes 2 -m hft_core train --config cfg.yaml    # DDP; rank 0 writes
    hft preset finetune_vs_scratch --seeds 3                 # a teaching preset, all variants
    hft search --config presets/search/lr_alpha_beta.yaml --trials 12 --pruner median   # an Optuna study
    hft search --config search.yaml --backend ray --address auto    # each trial a task on a Ray cluster
    hft list
    hft compare finetune_vs_scratch-1126-101500              # means with 95% intervals, paired differences
    hft report finetune_vs_scratch-1126-101500 -o report.html   # the same, with curves, in one HTML file
    hft export r-3f9a2c --format csv --out ./export
    hft merge wise-ft --a bundled:minilm-l6 --b run:r-3f9a2c

Every run lands in the same store as the app's ($HFT_HOME) and goes through its queue:
one run at a time per device across the app, terminals and notebooks. Bad input exits
with status 2 and one line saying what to fix.
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
    from hft_core.placement import distributed
    from hft_core.runs import run_here
    from hft_core.store import RunStore

    if _rank() != 0:
        return _train_other_rank(args)
    store = RunStore()
    if args.resume:
        cfg = store.get_run(args.resume).cfg
    else:
        cfg = _load_config(args, say=lambda m: print(m, file=sys.stderr))
        if args.print_config:
            print(cfg.to_yaml())
            return 0
        from hft_core.models import model_kind

        model_kind(cfg.model)  # an unknown or unreachable model is refused now, not after waiting in the queue
    if args.detach:
        return _detach(store, cfg, args.resume)
    progress = None if args.quiet else ProgressSink(cfg.max_steps)
    device = f"ddp:{os.environ.get('WORLD_SIZE')}" if distributed() else None  # all ranks start together
    if device is None:
        _share_the_cpu(cfg.device)

    def started(run_id: str) -> None:
        print(f"run {run_id}: {cfg.model} on {cfg.data}, {cfg.max_steps} steps; store {store.path}; "
              f"stop it with Ctrl-C, `hft stop {run_id}` or Stop in the app", file=sys.stderr)

    try:
        outcome = run_here(cfg if not args.resume else None, resume_id=args.resume or None, store=store,
                           sink=progress, device=device, on_start=started,
                           on_wait=lambda message: _say(progress, f"waiting: {message}"))
    finally:
        if progress is not None:
            progress.close()
    run_id, status = outcome.run_id, outcome.status
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
    if status in ("stopped", "interrupted"):
        print(f"resume with: hft train --resume {run_id}", file=sys.stderr)
        return 130 if rec.stop_reason and "Ctrl-C" in rec.stop_reason else 0
    return 0


def _share_the_cpu(device: str) -> None:
    """A CPU run here takes the share of the cores an app worker would (``threads_per_run`` of
    HFT_RUNS_PER_DEVICE): side by side they do not oversubscribe the CPU, and the same config
    gives the same numbers from the CLI as from the app."""
    import torch

    from hft_core.placement import resolve_device
    from hft_core.worker import lone_run_threads

    if resolve_device(device) == "cpu":
        torch.set_num_threads(lone_run_threads(device))


def _say(progress: "ProgressSink | None", message: str) -> None:
    if progress is not None:
        progress.bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _detach(store, cfg: RunConfig, resume_id: str | None) -> int:
    """Queue the run (or the resumed run) for a general worker and print its id."""
    from hft_core import jobs
    from hft_core.placement import check_device, resolve_device
    from hft_core.runs import RunStateError, prepare_resume

    if resume_id:
        rec = store.get_run(resume_id)
        if rec.status in ("queued", "running"):
            raise RunStateError(f"run {resume_id} is {rec.status} already; nothing to resume")
        store.requeue(resume_id, resume=prepare_resume(store, resume_id))
        run_id, device = resume_id, rec.device
    else:
        check_device(cfg.device)
        device = resolve_device(cfg.device)
        run_id = store.create_run(cfg, status="queued", device=device, group=cfg.group, name=cfg.name)
    print(run_id)
    jobs.say_who_serves(store, run_id)  # which worker trains it, or how to start one
    return 0


def _load_config(args: argparse.Namespace, say=None) -> RunConfig:
    """--config (a plain config or a preset file + --variant) then --set overrides.

    ``--set model=...`` without ``--set lr=...`` (and no --config, which decides everything
    itself) takes that model's recommended learning rate from its model card, and says so:
    the defaults' 1e-4 suits a pretrained MiniLM, not a random tiny model or SmolLM2.
    """
    from hft_core.model_cards import apply_model_card
    from hft_core.presets import load_run_config

    overrides = parse_set(args.set or [])
    cfg = load_run_config(args.config, args.variant) if args.config else RunConfig()
    cfg = cfg.with_overrides(overrides)
    if "model" in overrides and "lr" not in overrides and not args.config:
        from dataclasses import fields

        from hft_core.models import model_kind

        model_kind(cfg.model)  # an unknown model is refused before any advice about it

        cfg, notes = apply_model_card(cfg, explicit={f.name for f in fields(RunConfig)} - {"lr"})
        for note in notes:
            if note.startswith("lr "):
                (say or print)(f"{note} (give --set lr=... to choose another)")
    return cfg


def _train_other_rank(args: argparse.Namespace) -> int:
    """Ranks > 0 of `accelerate launch`: train in lockstep; rank 0 owns the store and checkpoints."""
    from hft_core.home import run_dir
    from hft_core.trainer import train

    if args.resume:
        import yaml
        cfg = RunConfig.from_dict(yaml.safe_load((run_dir(args.resume) / "run_config.yaml").read_text()))
        train(cfg, None, threading.Event(), out_dir=run_dir(args.resume), resume=True)
    else:
        train(_load_config(args, say=lambda m: None), None, threading.Event())
    return 0


def cmd_preset(args: argparse.Namespace) -> int:
    from hft_core.presets import list_presets, load_preset, run_preset_here

    if not args.name:
        for p in list_presets():
            print(f"{p.name:24} {p.title}\n{'':24} {p.question}")
        return 0
    preset = load_preset(args.name)
    if args.label_budgets:   # the same preset at each number of labelled examples, as one group
        from hft_core.label_budget import label_budget_preset

        preset = label_budget_preset(preset, _int_list(args.label_budgets, "--label-budgets"))
    seeds = _seed_list(args.seeds) if args.seeds else None
    if args.backend == "ray":  # each run a Ray task; results come back to this machine's store
        from hft_core.ray_backend import run_preset_on_ray

        outcome = run_preset_on_ray(preset, seeds, quick=args.quick, address=args.address,
                                    log=lambda m: print(m, file=sys.stderr))
    else:
        outcome = run_preset_here(preset, seeds, quick=args.quick, log=lambda m: print(m, file=sys.stderr))
    _print_preset_outcome(outcome)
    print(f"open the group {outcome.extra.get('group')!r} on the Compare page to see the curves")
    failed = outcome.extra.get("failed") or {}
    for run_id, what in failed.items():
        print(f"error: run {run_id} did not finish: {what}", file=sys.stderr)
    return 1 if failed else 0


def _print_preset_outcome(outcome) -> None:
    """A preset's result in the terminal: each variant with its 95% interval, then each check's verdict."""
    from hft_core import comparison
    from hft_core.comparison import check_line

    preset = outcome.preset
    ids = [rid for ids in outcome.extra.get("run_ids", {}).values() for rid in ids]
    print(f"\n{preset.title}")
    if ids:
        from hft_core.store import RunStore

        cmp = comparison.compare_runs(RunStore(), ids, preset=preset)
        for line in cmp.lines():
            print(f"  {line}")
    if outcome.quick:
        print("  quick check (tiny model, a few steps): the plumbing is checked, the lesson is not judged")
    for v in outcome.verdicts:
        print(f"  {check_line(v)}")


def cmd_compare(args: argparse.Namespace) -> int:
    """`hft compare GROUP` or `hft compare RUN_ID ...`: means with intervals and paired differences."""
    from hft_core import comparison, presets
    from hft_core.store import RunStore

    if not 0 < args.confidence < 1:
        raise ConfigError(f"--confidence {args.confidence!r}: give a level between 0 and 1, e.g. 0.95")
    store = RunStore()
    group, run_ids, preset = _runs_of(store, args.runs)
    cmp = comparison.compare_runs(store, run_ids, args.metric, preset=preset, method=args.method,
                                  confidence=args.confidence)
    print((f"group {group!r}: " if group else "") + f"{len(run_ids)} run(s)"
          + (f"; preset {preset.name}: {preset.question}" if preset else ""))
    for line in cmp.lines():
        print(line)
    if preset is not None:
        verdicts = presets.judge_group(store, group, preset)
        if verdicts:
            print("checks (on each check's own metric):")
        for v in verdicts:
            print(f"  {comparison.check_line(v)}")
    return 0 if cmp.variants else 1


def _runs_of(store, names: Sequence[str]) -> tuple[str, list[str], object]:
    """A group name or run ids -> (the group or "", run ids oldest first, the group's preset or None)."""
    from hft_core import presets
    from hft_core.comparison import runs_of

    group, runs = runs_of(store, names)
    return group, runs, presets.preset_named(presets.preset_of_group(group))


def cmd_report(args: argparse.Namespace) -> int:
    """`hft report GROUP -o report.html`: one self-contained HTML file (charts, table, verdicts, environment)."""
    from hft_core.report import write_report
    from hft_core.store import RunStore

    path = write_report(RunStore(), args.runs, args.out, metric=args.metric)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; opens offline in any browser)")
    return 0


def _add_compare_parser(sub) -> None:
    from hft_core import stats

    c = sub.add_parser("compare", help="a group's (or some runs') final metric per variant with 95% intervals, "
                       "and paired differences between variants")
    c.add_argument("runs", nargs="+", metavar="GROUP_OR_RUN_ID",
                   help="a group name (e.g. a preset's: finetune_vs_scratch-1126-101500) or run ids")
    c.add_argument("--metric", default="", help="which final metric (default: the preset's, else eval/accuracy)")
    c.add_argument("--method", choices=sorted(stats.METHODS), default="t",
                   help="t: Student's t interval over seeds (default); bootstrap: percentile bootstrap (10+ seeds)")
    c.add_argument("--confidence", type=float, default=stats.CONFIDENCE, help="interval level (default 0.95)")
    c.set_defaults(fn=cmd_compare)
    r = sub.add_parser("report", help="one self-contained HTML file of a group or runs: curves, the table of "
                       "`hft compare`, a preset's verdicts, config diff, environment")
    r.add_argument("runs", nargs="+", metavar="GROUP_OR_RUN_ID", help="a group name or run ids")
    r.add_argument("-o", "--out", default="report.html", help="the file to write (default report.html)")
    r.add_argument("--metric", default="", help="the table's metric (default: the preset's, else eval/accuracy)")
    r.set_defaults(fn=cmd_report)


def _seed_list(text: str) -> list[int]:
    """'3' -> [0, 1, 2] (that many seeds); '3,4,5' -> [3, 4, 5]."""
    try:
        if "," in text:
            return [int(x) for x in text.split(",") if x.strip()]
        return list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (3 = seeds 0,1,2) or a list such as 3,4,5") from None


def _int_list(text: str, flag: str) -> list[int]:
    """'25,50,100' -> [25, 50, 100]."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out:
        raise ConfigError(f"{flag} {text!r}: give whole numbers separated by commas, e.g. 25,50,100,200")
    return out


def cmd_stop(args: argparse.Namespace) -> int:
    import time

    from hft_core.store import RunStore

    store = RunStore()
    what = store.request_stop(args.run_id, f"`hft stop` from pid {os.getpid()}")
    if what == "cancelled":
        print(f"cancelled {args.run_id}: it was queued and will not train (resume it to queue it again)")
        return 0
    rec = store.get_run(args.run_id)
    print(f"stop requested for {args.run_id} (running in pid {rec.pid} on {rec.host}); it saves a checkpoint and "
          f"ends within a step", file=sys.stderr)
    if args.no_wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        store.mark_interrupted()
        rec = store.get_run(args.run_id)
        if rec.status not in ("running", "queued"):
            step = int(store.last_metrics(args.run_id).get("step", 0))
            print(f"run {args.run_id} {rec.status} at step {step}; checkpoint: {rec.checkpoint_dir}; "
                  f"resume with: hft train --resume {args.run_id}")
            return 0
        time.sleep(0.1)
    print(f"error: run {args.run_id} is still running {args.timeout:g} s after the request (a long step or eval?); "
          f"it stops at the end of its current step; `hft queue` shows it", file=sys.stderr)
    return 1


def cmd_queue(args: argparse.Namespace) -> int:
    import time

    from hft_core.store import RunStore

    store = RunStore()
    store.mark_interrupted()
    running = store.list_runs(status="running")
    queued = {rid: store.get_run(rid) for rid in store.queued()}
    workers = store.workers()
    devices = sorted({r.device for r in running} | {r.device for r in queued.values()} | {w["device"] for w in workers})
    if not devices:
        print(f"nothing is running or queued in {store.path}, and no worker is running")
        return 0
    for dev in devices:
        ws = [w for w in workers if w["device"] == dev]
        served = [w for w in ws if w["role"] == "general"]
        print(f"{dev}: {len(served)} worker(s)" + (f" (pid {', '.join(str(w['pid']) for w in served)})" if served
                                                     else " (none: queued runs wait for the app or `hft worker`)"))
        for r in (r for r in running if r.device == dev):
            last = store.last_metrics(r.id)
            step = int(last.get("step", 0))
            stopping = " (stop requested)" if r.stop_requested else ""
            print(f"  running  {r.id}  {r.name[:30]:30}  step {step}/{r.config.get('max_steps', '?')}  "
                  f"pid {r.pid}  for {time.time() - (r.started or time.time()):.0f} s{stopping}")
        for k, r in enumerate((r for r in queued.values() if r.device == dev), start=1):
            notes = []
            if r.after:
                notes.append(f"after {', '.join(r.after)}")
            if r.reserved_for:
                notes.append(f"trained by pid {r.pid}")
            print(f"  queued {k:>2} {r.id}  {r.name[:30]:30}" + (f"  ({'; '.join(notes)})" if notes else ""))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Serve a device's queue from this terminal: one worker process (this one) training on its main
    thread, or with --per-device N > 1 N worker processes supervised from here, as the app does."""
    from hft_core import worker_process
    from hft_core.home import hft_home
    from hft_core.placement import DeviceError, resolve_device, threads_per_run, visible_devices
    from hft_core.runs import runs_per_device

    device = resolve_device(args.device)
    if device not in visible_devices():  # refused before anything starts
        raise DeviceError(f"device {args.device!r} does not exist in this process; devices here: "
                          f"{', '.join(visible_devices())}")
    per_device = args.per_device or runs_per_device(device)
    if per_device == 1:
        argv = ["--home", str(hft_home()), "--device", device, "--threads", str(threads_per_run(1)),
                "--max-running", "1", "--report"]
        if args.exit_when_idle:
            argv += ["--exit-when-idle", str(args.exit_when_idle)]
        return worker_process.main(argv)
    from hft_core.schedule import auto
    return _supervise(device, per_device, auto=not args.per_device and auto())


def _supervise(device: str, per_device: int, auto: bool = False) -> int:
    import signal as signals
    import time

    from hft_core.store import RunStore
    from hft_core.supervisor import WorkerPool

    store = RunStore()
    pool = WorkerPool(store, per_device=None if auto else per_device)
    pool.serve(device)
    share = " (sharing the cores as each group's measured shape says)" if auto else ""
    print(f"{per_device} worker processes serve {device}{share} from {store.path}; their logs are in {store.home / 'logs'}; "
          f"Ctrl-C stops them (a running run stops after its step, with a checkpoint)", file=sys.stderr, flush=True)
    signals.signal(signals.SIGTERM, signals.default_int_handler)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping the workers", file=sys.stderr, flush=True)
    pool.close()
    store.close()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from hft_core.store import RunStore

    store = RunStore()
    store.mark_interrupted()  # runs whose worker or process died show as interrupted, not running
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


def cmd_search(args: argparse.Namespace) -> int:
    from hft_core import search  # Optuna (and Ray, with --backend ray) are imported only when a study runs

    return search.cli(args)


def build_parser() -> argparse.ArgumentParser:
    from hft_core import __version__

    p = argparse.ArgumentParser(prog="hft", description="HFT Lab: hybrid fine-tuning from the command line "
                                "(also `python -m hft_core`)")
    p.add_argument("--version", action="version", version=f"hft {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="queue one run and train it here in its turn (defaults: MiniLM-L6 on BBC News)")
    t.add_argument("--config", help="YAML or JSON config file (e.g. presets/*.yaml)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field, e.g. --set lr=3e-4 --set mix.blend.alpha=0.5 (repeatable)")
    t.add_argument("--variant", default="", help="with a preset file as --config: which variant to train")
    t.add_argument("--resume", metavar="RUN_ID", help="continue a stopped/interrupted run from its checkpoint")
    t.add_argument("--detach", action="store_true",
                   help="only queue it and print its id; a worker (the app, or `hft worker`) trains it")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)
    st = sub.add_parser("stop", help="stop a run, whichever process trains it (queued: cancel it)")
    st.add_argument("run_id")
    st.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for it to stop")
    st.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to stop (default 60)")
    st.set_defaults(fn=cmd_stop)
    q = sub.add_parser("queue", help="what trains and what waits, per device, with the workers serving each")
    q.set_defaults(fn=cmd_queue)
    w = sub.add_parser("worker", help="serve a device's queue from this terminal")
    w.add_argument("--device", default="auto", help="cpu, cuda:0, cuda:1 ... (default: auto)")
    w.add_argument("--per-device", type=int, default=0,
                   help="runs at a time on this device, across processes (default: $HFT_RUNS_PER_DEVICE or 1)")
    w.add_argument("--exit-when-idle", type=float, default=0.0, metavar="SECONDS",
                   help="exit once the device's queue has been empty this long (default: serve forever)")
    w.set_defaults(fn=cmd_worker)
    pr = sub.add_parser("preset", help="list the teaching presets, or run one (all its variants) here")
    pr.add_argument("name", nargs="?", default="", help="preset name or YAML path; empty = list them")
    pr.add_argument("--seeds", default="", help="3 = seeds 0,1,2; or a list, e.g. 3,4,5 (default: the preset's first)")
    pr.add_argument("--quick", action="store_true", help="tiny models, a few steps: seconds, for checking")
    pr.add_argument("--label-budgets", default="", metavar="N,N,...",
                    help="repeat the preset's fine-tuning variants at each number of labelled examples, e.g. "
                    "25,50,100,200 (one group; a pretraining variant runs once per seed)")
    pr.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="local: train here, one run after another; ray: each run a Ray task on a cluster")
    pr.add_argument("--address", default=None, help="with --backend ray: 'auto' or ray://host:10001 "
                    "(default: a local Ray instance for this command)")
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
    _add_compare_parser(sub)
    from hft_core import merge

    merge.add_parser(sub)
    from hft_core import search

    search.add_parser(sub).set_defaults(fn=cmd_search)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    user_errors = _user_error_types()
    try:
        return args.fn(args)
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hft list | head`: the reader left; end quietly, like other shell tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors caused by input: printed as one line, exit 2 (no traceback)."""
    from hft_core.data import DataError
    from hft_core.models import ModelError
    from hft_core.placement import DeviceError
    from hft_core.precision import PrecisionError
    from hft_core.runs import RunStateError
    from hft_core.store import StoreError

    return (ConfigError, PrecisionError, FileNotFoundError, ModelError, DataError, StoreError, DeviceError,
            RunStateError)
