"""The cost of a run, shown before Start: its estimated wall time and, for bf16 on a CPU, the slowdown.

The figures come from hft_core.estimate: a cached probe of the config's shape, else the
store's earlier runs of that shape, else a probe queued now as a job on the device's queue
(``estimate.ProbeQueue``: a worker process measures it) while the page says "measuring…"
and polls in a fragment. No probe runs while a run trains on the same device: it would slow
that run, and its own figure would be wrong.

    estimate_message(cfg, store, prober, busy)  (status, text) without drawing: unit-tested
    bf16_message(cfg, plan, prober)             the measured bf16/fp32 ratio line, or None
    render_estimate(cfg, store)                 the page's estimate line (a polling fragment)
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import streamlit as st

from hft_core import estimate
from hft_core.config import RunConfig

MEASURING = ("measuring", "queued")


def probes_enabled() -> bool:
    """HFT_ESTIMATE_PROBES=0 turns background probes off (tests that are not about them; slow machines)."""
    return os.environ.get("HFT_ESTIMATE_PROBES", "1").strip().lower() not in ("0", "off", "false", "no")


def prober() -> estimate.ProbeQueue:
    """Probes as jobs on the queue of this app's manager (its worker processes measure them)."""
    from ui import state as ui_state

    return estimate.ProbeQueue(ui_state.manager())


def device_busy(store: Any, device: str) -> bool:
    """A run is training on ``device`` now (any process: the store knows)."""
    try:
        running = store.list_runs(status="running")
    except Exception:  # noqa: BLE001 - a store being migrated: assume idle
        return False
    dev = estimate.resolved_device(device)
    return any(estimate.resolved_device(r.device or "cpu") in (dev, dev.split(":")[0]) for r in running)


def estimate_message(cfg: RunConfig, store: Any, probes: estimate.ProbeQueue, busy: bool) -> tuple[str, str]:
    """("ready" | "measuring" | "queued" | "waiting" | "failed", the line to show)."""
    found = estimate.estimate(cfg, store)
    if found is not None:
        return "ready", f"{found.line()} — {found.detail}."
    if busy:
        return "waiting", ("Time estimate: measured once the device is free (a run is training now; measuring "
                           "beside it would slow it and give a wrong figure).")
    if not probes_enabled():
        return "off", "Time estimate: no figure for this shape yet (probes are off: HFT_ESTIMATE_PROBES=0)."
    probes.request(cfg)
    status, value = probes.state(cfg)
    if status == "ready":
        return status, f"{value.line()} — {value.detail}."
    if status == "failed":
        return status, f"No time estimate: {value}"
    return "measuring", (f"Time estimate: measuring a few steps of {cfg.model} at batch {cfg.batch_size} × "
                         f"{cfg.max_length} tokens here…")


def bf16_message(cfg: RunConfig, plan: Any, probes: estimate.ProbeQueue) -> str | None:
    """For bf16 on a CPU: how much slower (or faster) than fp32 it measured here; None otherwise."""
    device = estimate.resolved_device(cfg.device)
    if plan is None or plan.name != "bf16" or not device.startswith("cpu"):
        return None
    how = "emulated: this CPU has no native bf16" if plan.warning else "this CPU has native bf16"
    ratio = estimate.model_bf16_slowdown(cfg)
    if ratio is not None:
        what = f"for {cfg.model} at this batch and length"
    else:
        if probes_enabled():  # then the ratio for this very model
            probes.request(dataclasses.replace(cfg, precision="fp32"))
        ratio = estimate.cached_bf16_slowdown(device)
        what = "on a small transformer layer"
        if ratio is None:
            probes.request_bf16(device)
            return f"bf16 on this CPU ({how}): measuring its speed against fp32…"
    speed = f"{ratio:.1f}× slower than fp32" if ratio >= 1.05 else (
        f"{1 / ratio:.1f}× faster than fp32" if ratio <= 0.95 else "as fast as fp32")
    return f"bf16 here is {speed}, measured {what} ({how})."


def render_estimate(cfg: RunConfig, store: Any, device: str) -> None:
    """The estimate line under Start. While measuring, a fragment polls each second; once the
    figure is in it reruns the page, which draws it without polling."""
    probes = prober()
    status, _ = estimate_message(cfg, store, probes, device_busy(store, device))

    def draw() -> None:
        now, text = estimate_message(cfg, store, probes, device_busy(store, device))
        if status in MEASURING and now not in MEASURING:
            st.rerun()
        left, right = st.columns([12, 2], vertical_alignment="center")
        left.caption(f":material/timer: {text}")
        if probes_enabled() and (now == "failed" or (now == "ready" and estimate.cached_probe(cfg) is not None)):
            right.button("Measure again", key="f.measure_again", type="tertiary", on_click=measure_again,
                         args=(cfg, probes), help="Forget this figure and probe the run's shape afresh "
                         "(e.g. after the CPU was busy with other work).")

    st.fragment(draw, run_every=1.0 if status in MEASURING else None)()


def group_line(preset: Any, store: Any, quick: bool = False) -> str | None:
    """The estimated wall time of a preset's whole group on this machine (schedule.group_estimate),
    or None while a shape has no figure yet (its probe is queued here; the next page run shows it)."""
    from hft_core import schedule
    from hft_core.presets import group_configs

    cfgs = group_configs(preset, quick=quick)
    if not cfgs:
        return None
    try:
        found = schedule.group_estimate(cfgs, store)
    except Exception:  # noqa: BLE001 - an estimate never breaks the page
        return None
    if found is None and probes_enabled() and not device_busy(store, cfgs[0].device):
        probes = prober()
        for cfg in {estimate.shape_key(c): c for c in cfgs}.values():
            probes.request(cfg)
    return found.line() if found is not None else None


def measure_again(cfg: RunConfig, probes: estimate.ProbeQueue) -> None:
    """Drop the cached figure (and a failure) of ``cfg``'s shape: the next page run probes it again."""
    estimate.forget(cfg)
    probes.forget(estimate.shape_key(cfg))
