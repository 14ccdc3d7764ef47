"""Where a run trains: one device per run, not one per process.

    runtime = make_runtime(cfg.device, cfg.grad_accum, find_unused=...)
    runtime.device              torch.device("cuda:1"), torch.device("cpu") ...
    model, optimizer = runtime.prepare(model, optimizer)
    with runtime.accumulate(model):  ... runtime.backward(loss)   # loss of one micro-batch

Two kinds:

* ``LocalRuntime`` (the usual case: the app's worker threads, the CLI, notebooks).
  Plain PyTorch: the model is put on the run's own device and autocast is entered by
  the trainer per forward pass. Nothing here is process-wide, so one process can train
  a ``cuda:1`` run, a ``cpu`` run and a bf16 run side by side or one after another, each
  in its own thread.
* ``DistributedRuntime``, only under ``accelerate launch`` / ``torchrun`` (WORLD_SIZE > 1).
  Accelerate's ``PartialState`` is one per process and fixes its device at the first
  init, which is right there: one process per device, by construction.

Both divide a micro-batch's loss by ``grad_accum`` in ``backward`` (as Accelerate does),
so the accumulated gradient is the mean over the optimizer step's examples.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from typing import Any, Iterable, Iterator

import torch


class DeviceError(ValueError):
    """The run asks for a device this process cannot use. Raised before anything is loaded."""


def distributed() -> bool:
    """True under ``accelerate launch`` / ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def resolve_device(device: str) -> str:
    """The concrete device of a config's ``device``: "auto" -> the first GPU this process sees if any,
    else "cpu"; "cuda" -> that first GPU. GPUs are named by their index on the host (``host_index``):
    with CUDA_VISIBLE_DEVICES=2,3 "auto" is "cuda:2". Other values are returned as given (see
    ``check_device``)."""
    if device == "auto":
        return f"cuda:{host_index(0)}" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return f"cuda:{host_index(0)}"
    return device


def visible_devices() -> list[str]:
    """The devices this process can train on, by their host names: "cpu", then "cuda:N" for each GPU
    it sees (with CUDA_VISIBLE_DEVICES=2,3: "cuda:2", "cuda:3")."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu"] + [f"cuda:{host_index(i)}" for i in range(n)]


# ---- worker processes: one device each, and their share of the CPU ------------------------------
WORKER_DEVICE_ENV = "HFT_WORKER_DEVICE"   # set by the supervisor: the queue a worker process serves


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask: `taskset -c 0` gives 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def threads_per_run(side_by_side: int) -> int:
    """Torch threads for one training process when ``side_by_side`` train at once on this CPU.

    The policy: the cores are split, never shared. Two processes with 2 threads each on 2
    cores run several times slower than one (OpenMP threads spin-wait for each other), and
    a run's numbers are bit-equal only between runs with the same thread count, so every
    entry point (app worker, `hft train`, `hft worker`) uses this one rule."""
    return max(1, cpu_cores() // max(1, int(side_by_side)))


# ---- GPUs by a name every process agrees on ----------------------------------------------------------
#
# A queue "cuda:N" is the host's GPU N, the same card for the app, a worker pinned to one card and a
# terminal with CUDA_VISIBLE_DEVICES of its own. The host's index is CUDA's own order with
# CUDA_VISIBLE_DEVICES unset (what its integer entries mean); a UUID entry is found in nvidia-smi's
# table, whose order is the PCI bus order: the two agree on a host of identical cards or with
# CUDA_DEVICE_ORDER=PCI_BUS_ID. A process translates with ``local_name`` (queue -> its own torch name)
# and ``host_index`` (its own index -> the queue's); a worker is pinned with ``pin_env``.

def _visible_entries() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list of entries (integers, UUIDs or their prefixes); None when unset."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    return [v.strip() for v in raw.split(",") if v.strip()]


@functools.lru_cache(maxsize=1)
def host_gpus() -> tuple[tuple[int, str], ...]:
    """(host index, UUID) of each GPU on this host, from nvidia-smi; () where it is not installed or fails.
    Read once per process (a subprocess, ~50 ms)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=index,uuid", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    table = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        index, _, uuid = line.partition(",")
        if index.strip().isdigit() and uuid.strip():
            table.append((int(index), uuid.strip()))
    return tuple(table)


def host_index(local: int) -> int:
    """The host index of this process's ``cuda:local`` (its name in every queue).

    CUDA_VISIBLE_DEVICES unset: the same. An integer entry: that integer. A UUID (or a prefix of
    one): its index in ``host_gpus``. A worker pinned to one card it cannot look up (no nvidia-smi):
    the card it serves (HFT_WORKER_DEVICE). Otherwise the local index, the best there is."""
    entries = _visible_entries()
    if entries is None or local >= len(entries):
        return local
    entry = entries[local]
    if entry.isdigit():
        return int(entry)
    for index, uuid in host_gpus():
        if uuid.startswith(entry) or entry.startswith(uuid):
            return index
    served = os.environ.get(WORKER_DEVICE_ENV, "")
    if len(entries) == 1 and served.startswith("cuda:") and served[5:].isdigit():
        return int(served[5:])
    return local


def local_index(host: int) -> int | None:
    """This process's torch index of the host's GPU ``host``; None when it cannot see that card."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return next((i for i in range(n) if host_index(i) == host), None)


def gpu_uuid(host: int) -> str:
    """The UUID ("GPU-...") of the host's GPU ``host``: torch's, for a card this process sees, else
    nvidia-smi's; "" where neither knows it. Asking torch initialises CUDA in this process."""
    local = local_index(host)
    if local is not None:
        try:
            uuid = str(torch.cuda.get_device_properties(local).uuid)
        except (AttributeError, RuntimeError, AssertionError):
            uuid = ""
        if uuid:
            return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    return next((u for i, u in host_gpus() if i == host), "")


def gpu_identity(host: int) -> str:
    """What to put in a worker's CUDA_VISIBLE_DEVICES for the host's GPU ``host``: its UUID where known
    (stable whatever the order), else its host index (CUDA's own meaning of an integer entry)."""
    return gpu_uuid(host) or str(host)


def pin_env(device: str) -> dict[str, str]:
    """Environment for a worker process that serves ``device``'s queue: a GPU alone in its
    CUDA_VISIBLE_DEVICES (set before torch initialises CUDA there), and the queue it serves
    (HFT_WORKER_DEVICE), so that its ``local_name(device)`` is "cuda:0". A CPU queue: only the latter."""
    env = {WORKER_DEVICE_ENV: device}
    if device.startswith("cuda:") and device[5:].isdigit():
        env["CUDA_VISIBLE_DEVICES"] = gpu_identity(int(device[5:]))
    return env


def local_name(device: str) -> str:
    """This process's torch name of a queue's device: "cuda:N" (the host's GPU N) -> "cuda:<its index
    here>", e.g. "cuda:0" in a worker pinned to that card. Unchanged for "cpu", "mps", and a GPU this
    process cannot see (``check_device`` refuses it)."""
    if device.startswith("cuda:") and device[5:].isdigit():
        local = local_index(int(device[5:]))
        if local is not None:
            return f"cuda:{local}"
    return device


def device_label(device: str) -> str:
    """A queue's device as recorded with a run: "cuda:1 (GPU-8932f937-...)" where the UUID is known."""
    if device.startswith("cuda:") and device[5:].isdigit():
        uuid = gpu_uuid(int(device[5:]))
        return f"{device} ({uuid})" if uuid else device
    return device


def check_device(device: str) -> torch.device:
    """The torch.device for a config's ``device`` in this process (a queue's "cuda:N" is the host's
    GPU N, see ``local_name``), or a DeviceError that says what exists here."""
    name = resolve_device(device)
    here = ", ".join(visible_devices())
    if name == "mps":
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        raise DeviceError(f"device='mps' is not available in this process (no Apple GPU); devices here: {here}")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device={device!r} but no CUDA GPU is visible to this process; devices here: {here}. "
                              f"Use device 'auto' or 'cpu', or run on a machine with a GPU.")
        try:
            host = torch.device(name).index or 0
        except RuntimeError:
            raise DeviceError(f"device={device!r} is not a device name; use 'cuda:N' (devices here: {here})") from None
        local = local_index(host)
        if local is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise DeviceError(f"device={device!r} does not exist here: 'cuda:N' is the host's GPU N, and this "
                              f"process sees {torch.cuda.device_count()} GPU(s) ({here})"
                              + (f" through CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "")
                              + "; pick one of those")
        return torch.device("cuda", local)
    raise DeviceError(f"device={device!r} is unknown; use 'auto', 'cpu', 'cuda' or 'cuda:N' (devices here: {here})")


class LocalRuntime:
    """One run on one device in this process; no process-wide state is touched."""

    num_processes = 1
    process_index = 0
    is_main_process = True

    def __init__(self, device: str, grad_accum: int = 1) -> None:
        self.device = check_device(device)
        self.grad_accum = int(grad_accum)

    @contextlib.contextmanager
    def on_device(self) -> Iterator[None]:
        """Make the run's GPU the current CUDA device of this thread (kernels, caches, streams)."""
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                yield
        else:
            yield

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        return model.to(self.device), optimizer

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def accumulate(self, model: torch.nn.Module):
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum).backward()

    def clip_grad_norm_(self, params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def wait_for_everyone(self) -> None:
        pass

    def any_process(self, flag: bool) -> bool:
        """True if ``flag`` is true on any process (here: just this one)."""
        return bool(flag)


class DistributedRuntime:
    """Accelerate's DDP under ``accelerate launch`` / ``torchrun``: one process per device."""

    def __init__(self, device: str, grad_accum: int = 1, find_unused: bool = False) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        want_cpu = resolve_device(device) == "cpu"
        if not want_cpu:
            check_device(device)
        # find_unused_parameters: LP-FT/freezing/aux heads leave some parameters without gradients under DDP.
        # Mixed precision is done by the trainer (autocast + its GradScaler), not by Accelerate.
        self._acc = Accelerator(cpu=want_cpu, mixed_precision="no", gradient_accumulation_steps=grad_accum,
                                kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)])
        self.device = self._acc.device
        self.num_processes = self._acc.num_processes
        self.process_index = self._acc.process_index
        self.is_main_process = self._acc.is_main_process

    def on_device(self):
        return contextlib.nullcontext()  # Accelerate set this process's device at init

    def prepare(self, model, optimizer):
        return self._acc.prepare(model, optimizer)

    def unwrap_model(self, model):
        return self._acc.unwrap_model(model)

    def accumulate(self, model):
        return self._acc.accumulate(model)

    def backward(self, loss: torch.Tensor) -> None:
        self._acc.backward(loss)  # divides by gradient_accumulation_steps itself

    def clip_grad_norm_(self, params, max_norm: float):
        return self._acc.clip_grad_norm_(params, max_norm)

    def wait_for_everyone(self) -> None:
        self._acc.wait_for_everyone()

    def any_process(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (a stop request seen by rank 0 stops all
        ranks at the same step; otherwise the others would wait forever in the next all-reduce)."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)


Runtime = Any  # LocalRuntime | DistributedRuntime


def make_runtime(device: str, grad_accum: int = 1, *, find_unused: bool = False) -> Runtime:
    """The runtime for one run: DistributedRuntime under a multi-process launch, else LocalRuntime."""
    if distributed():
        return DistributedRuntime(device, grad_accum, find_unused=find_unused)
    return LocalRuntime(device, grad_accum)
