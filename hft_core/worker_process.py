"""One worker process: it serves one device's queue and trains one run at a time, on its main thread.

    python -m hft_core.worker_process --home ~/.hft_lab --device cpu --threads 2

The app's supervisor (hft_core/supervisor.py) starts one per slot of each device it serves;
`hft worker --device D` runs the same loop in a terminal. Why a process per worker: a run's
numbers must depend on its config alone (this process's random generators, thread pool and
CUDA context are its own), a crash must stay here, and the app's server must never train.

* **Warm before the first claim**: torch, the trainer, the bundled tokenizer, the quick demo's
  model and the default data are loaded first, so a run started from the app shows its first
  point within a few seconds. The worker registers in the store only once it is warm.
* **Its share of the CPU**: ``--threads`` torch threads (the supervisor splits the cores
  between the workers of a CPU, see ``placement.threads_per_run``).
* **Its device**: for a GPU the supervisor sets CUDA_VISIBLE_DEVICES to that one card before
  torch starts; the queue's "cuda:N" is this process's "cuda:0" (``placement.local_name``).
* **Plugins**: the modules named in HFT_PLUGINS (comma-separated) are imported first, so
  strategies of your own register here as in the app.
* **Exit**: SIGTERM or SIGINT, or its parent gone (``--parent``): the running run stops after
  its step with a checkpoint ("stopped"), then exit 0. Its claim lost (it hung longer than its
  lease, and the run was interrupted or taken over): exit EXIT_CLAIM_LOST at once, writing
  nothing more. A crash in native code kills only this process; the supervisor records the
  signal on the run ("failed") and starts another worker.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Sequence

EXIT_CLAIM_LOST = 75
# The app's workers compete for the CPU like `hft train` does (niceness 0): at nice 5 a MiniLM run
# with the Live page open trained at 0.78x the CLI's speed, at nice 0 at 0.91x (bench/ui_overhead.py,
# 3 interleaved pairs on 2 cores); the pages stay responsive, as the scheduler favours a process that
# mostly sleeps. HFT_WORKER_NICE=N lowers the workers' priority on a machine that is also used for other work.
def worker_nice() -> int:
    """HFT_WORKER_NICE: 0 (default) .. 19; a value that is not such a number stops with what to set."""
    raw = os.environ.get("HFT_WORKER_NICE", "0").strip() or "0"
    if not (raw.isdigit() and 0 <= int(raw) <= 19):
        raise SystemExit(f"HFT_WORKER_NICE={raw!r}: use a whole number from 0 (the default: workers compete "
                         f"like `hft train`) to 19 (they yield the CPU to everything else), or unset it")
    return int(raw)
log = logging.getLogger("hft_core.worker")


def load_plugins() -> list[str]:
    """Import the modules named in HFT_PLUGINS (comma-separated); returns their names."""
    names = [n.strip() for n in os.environ.get("HFT_PLUGINS", "").split(",") if n.strip()]
    for name in names:
        importlib.import_module(name)
    return names


def warm(device: str) -> None:
    """Import and load what most runs need, before the first claim (a few seconds on 2 cores).
    A failure here is logged, not raised: the run that needs the thing reports it properly."""
    from hft_core import data, models
    import hft_core.trainer  # noqa: F401 (the import is the warm-up)

    for what, fn in (("the default data", lambda: data.load_data("bundled:bbc-news", "classification")),
                     ("the bundled tokenizer", lambda: models.load_tokenizer("bundled:minilm-l6")),
                     ("the quick demo's model", lambda: models.load_model("tiny:bert", "classification", 2))):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - only a warm-up
            log.info("warm-up: could not load %s (%s: %s)", what, type(e).__name__, e)


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
        except OSError:
            pass


def run_forked(argv: list[str], env: dict[str, str], log_path: str) -> None:
    """The entry of a worker forked by the supervisor's fork server (which has torch and the trainer
    imported already, so a worker starts in a fraction of a second): this process's own session,
    environment and log file, then ``main``."""
    os.setsid()  # a Ctrl-C in the app's terminal is the app's, not the workers'
    nice = worker_nice()
    if nice:
        os.nice(nice)
    os.environ.clear()
    os.environ.update(env)
    for entry in reversed([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the fork server's atexit hooks are not ours to run


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hft_core.worker_process", description=__doc__.split("\n")[0])
    p.add_argument("--home", required=True, help="the store's folder ($HFT_HOME)")
    p.add_argument("--device", required=True, help="the queue it serves: cpu, cuda:0, ...")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: placement.threads_per_run(1))")
    p.add_argument("--max-running", type=int, default=0, help="runs at once on the device, all processes together")
    p.add_argument("--budget", type=int, default=0, help="the CPU's cores, shared by the runs as their shapes "
                   "say (schedule.py); each run trains with the threads it claimed (0: runs are counted)")
    p.add_argument("--parent", type=int, default=0, help="exit (stopping the run) when this process has ended")
    p.add_argument("--no-warm", action="store_true", help="skip the warm-up (tests)")
    p.add_argument("--report", action="store_true", help="print a line when a run starts and when it ends")
    p.add_argument("--exit-when-idle", type=float, default=0.0, metavar="SECONDS",
                   help="exit once the device's queue has been empty this long (default: serve forever)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker pid {os.getpid()} %(levelname)s %(message)s")

    from hft_core.placement import WORKER_DEVICE_ENV, threads_per_run

    os.environ["HFT_HOME"] = args.home            # every path of a run resolves in this store's home
    os.environ[WORKER_DEVICE_ENV] = args.device
    if args.parent == os.getppid():
        _die_with_parent()
    import torch

    threads = args.threads or threads_per_run(1)
    torch.set_num_threads(threads)
    load_plugins()
    if not args.no_warm:
        warm(args.device)

    from hft_core.runs import Worker, load_trainer, runs_per_device
    from hft_core.store import RunStore

    store = RunStore(args.home)

    def lost(run_ids: list[str]) -> None:
        print(f"worker pid {os.getpid()}: lost its claim on {', '.join(run_ids) or 'its device'} (it did not answer "
              f"for longer than its lease); exiting without writing anything more", file=sys.stderr, flush=True)
        os._exit(EXIT_CLAIM_LOST)

    worker = Worker(store, args.device, train_fn=load_trainer(), role="general", check=False,
                    max_per_device=args.max_running or runs_per_device(args.device), on_lost=lost,
                    budget=args.budget)
    share = (f"the claimed share of {args.budget} cores per run" if args.budget else f"{threads} torch thread(s)")
    print(f"worker {worker.id} pid {os.getpid()} serves {args.device} with {share} from "
          f"{store.path}", file=sys.stderr, flush=True)
    ending = threading.Event()

    def on_signal(signum, frame):  # only flags here: the main thread may be inside a store write
        for run_id in worker.running():
            worker.stop_local(run_id)
        ending.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch() -> None:
        from hft_core.control import pid_alive

        seen: set[str] = set()
        idle_since = time.monotonic()
        while not ending.wait(0.2):
            if args.parent and not pid_alive(args.parent, None):
                log.warning("parent %s is gone: stopping", args.parent)
                ending.set()
            now_running = set(worker.running())
            if args.report:
                for rid in now_running - seen:
                    print(f"training {rid} ({store.get_run(rid).name})", flush=True)
                for rid in seen - now_running:
                    rec = store.get_run(rid)
                    print(f"{rid} {rec.status}" + (f": {rec.error}" if rec.error else ""), flush=True)
            seen = now_running
            if now_running or store.queued(args.device):
                idle_since = time.monotonic()
            elif args.exit_when_idle and time.monotonic() - idle_since >= args.exit_when_idle:
                ending.set()
        worker.close(stop_running=True, wait=False)  # the running run stops after its step, with a checkpoint

    threading.Thread(target=watch, name="hft-worker-exit", daemon=True).start()
    try:
        worker.serve_forever()
    finally:
        ending.set()
        deadline = time.monotonic() + 5
        while worker.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.close(wait=False)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
