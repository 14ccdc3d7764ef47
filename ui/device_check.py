"""Device and precision, checked on the Train form before Start with the trainer's own function.

    device_options()                    auto, cpu, cuda:0 ... (what this machine has)
    resolved_device(device)             "auto" -> cuda:0 or cpu
    precision_check(precision, device)  (PrecisionPlan, None) or (None, why it is refused)
"""
from __future__ import annotations

import streamlit as st
import torch

from hft_core.precision import DeviceInfo, PrecisionError, PrecisionPlan, describe_device, plan_precision


@st.cache_resource(show_spinner=False)
def _device_info(device: str) -> DeviceInfo:
    return describe_device(device)


def resolved_device(device: str) -> str:
    """The device a run with ``device`` trains on here."""
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def device_options() -> list[str]:
    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def precision_check(precision: str, device: str) -> tuple[PrecisionPlan | None, str | None]:
    """(plan, None): what will run on the chosen device; (None, message): why it is refused."""
    dev = resolved_device(device)
    if dev.startswith("cuda") and not torch.cuda.is_available():
        return None, f"device={device!r}, but no CUDA GPU is visible on this machine; choose 'auto' or 'cpu'."
    try:
        return plan_precision(precision, _device_info(dev)), None
    except PrecisionError as e:
        return None, str(e)
