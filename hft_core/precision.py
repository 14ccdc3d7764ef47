"""Precision: turn "auto" | "fp32" | "bf16" | "fp16" into a plan the device can run.

``plan_precision`` is a pure function of a ``DeviceInfo``, so every refusal and
every "auto" choice is tested without a GPU. The trainer calls it before loading
anything, and the Train page shows its ``reason`` before Start.

    fp32  always possible.
    bf16  autocast to bfloat16. CUDA needs compute capability >= 8.0 (Ampere);
          a CPU runs it, but without avx512_bf16/AMX it is emulated and slower
          than fp32 (we warn, we don't refuse).
    fp16  autocast to float16 plus a loss scaler (GradScaler, init 2^16, backoff
          0.5). CUDA only: on a CPU it is 4-7x slower than fp32, so it is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


class PrecisionError(ValueError):
    """The device cannot run the requested precision. The message says why and what to pick."""


@dataclass(frozen=True)
class DeviceInfo:
    type: str                         # "cpu" | "cuda" | "mps"
    name: str = ""                    # "NVIDIA A100-SXM4-40GB", "AMD EPYC"
    capability: tuple[int, int] = (0, 0)   # CUDA compute capability
    cpu_flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def cpu_has_fast_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.cpu_flags)


@dataclass(frozen=True)
class PrecisionPlan:
    name: str                          # what will run: "fp32" | "bf16" | "fp16"
    autocast_dtype: torch.dtype | None  # None = no autocast
    use_scaler: bool                   # fp16 loss scaling
    reason: str                        # one sentence for the UI and the run log
    warning: str = ""                  # non-fatal caveat (e.g. emulated bf16 on this CPU)


def describe_device(device: torch.device | str) -> DeviceInfo:
    """Read the facts plan_precision needs from the real device."""
    device = torch.device(device)
    if device.type == "cuda":
        idx = device.index or 0
        return DeviceInfo("cuda", torch.cuda.get_device_name(idx), torch.cuda.get_device_capability(idx))
    if device.type == "cpu":
        flags: set[str] = set()
        name = ""
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("flags") and not flags:
                        flags = set(line.split(":", 1)[1].split())
                    elif line.startswith("model name") and not name:
                        name = line.split(":", 1)[1].strip()
        except OSError:  # not Linux: no flags, bf16 treated as slow
            pass
        return DeviceInfo("cpu", name, cpu_flags=frozenset(flags))
    return DeviceInfo(device.type)


def plan_precision(requested: str, dev: DeviceInfo) -> PrecisionPlan:
    """What to run for ``requested`` on ``dev``; raises PrecisionError when it cannot."""
    cuda_bf16 = dev.type == "cuda" and dev.capability >= (8, 0)
    where = dev.name or dev.type
    if requested == "auto":
        if cuda_bf16:
            return PrecisionPlan("bf16", torch.bfloat16, False, f"auto: bf16 autocast, the fastest safe choice on {where}")
        if dev.type == "cuda":
            return PrecisionPlan("fp16", torch.float16, True,
                                 f"auto: fp16 autocast with loss scaling ({where} has no bf16 support)")
        return PrecisionPlan("fp32", None, False, f"auto: fp32, the fastest choice on {dev.type} ({where})")
    if requested == "fp32":
        return PrecisionPlan("fp32", None, False, f"fp32 on {where}")
    if requested == "bf16":
        if dev.type == "cuda" and not cuda_bf16:
            cap = ".".join(map(str, dev.capability))
            raise PrecisionError(f"precision='bf16' is not supported on {where} (compute capability {cap}; "
                                 "bf16 needs 8.0 or newer, e.g. A100, RTX 30xx). Use 'fp16' or 'auto'.")
        if dev.type == "cpu":
            if dev.cpu_has_fast_bf16:
                return PrecisionPlan("bf16", torch.bfloat16, False, f"bf16 autocast on the CPU ({where} has native bf16)")
            return PrecisionPlan("bf16", torch.bfloat16, False, f"bf16 autocast on the CPU ({where})",
                                 warning="this CPU has no native bf16 (no avx512_bf16/AMX): bf16 is emulated "
                                         "and usually slower than fp32 here; use it to see the effect on the curves")
        if dev.type == "mps":
            return PrecisionPlan("bf16", torch.bfloat16, False, "bf16 autocast on Apple MPS")
        return PrecisionPlan("bf16", torch.bfloat16, False, f"bf16 autocast on {where}")
    if requested == "fp16":
        if dev.type == "cpu":
            raise PrecisionError("precision='fp16' is refused on the CPU: it is 4-7x slower than fp32 here and "
                                 "needs loss scaling for no gain. Use 'fp32' (or 'bf16' to see reduced-precision curves), "
                                 "or run on a CUDA GPU.")
        return PrecisionPlan("fp16", torch.float16, dev.type == "cuda",
                             f"fp16 autocast{' with loss scaling' if dev.type == 'cuda' else ''} on {where}")
    raise PrecisionError(f"precision={requested!r} is unknown; choose 'auto', 'fp32', 'bf16' or 'fp16'")


def make_scaler(plan: PrecisionPlan, device_type: str) -> torch.amp.GradScaler:
    """A GradScaler (init 2^16, backoff 0.5) when the plan needs one, else a disabled one."""
    return torch.amp.GradScaler(device_type, init_scale=2.0 ** 16, backoff_factor=0.5,
                                growth_factor=2.0, enabled=plan.use_scaler)


def autocast(plan: PrecisionPlan, device_type: str):
    """The autocast context for a forward pass under ``plan`` (a no-op for fp32)."""
    return torch.autocast(device_type, dtype=plan.autocast_dtype or torch.float32,
                          enabled=plan.autocast_dtype is not None)
