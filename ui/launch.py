"""Starting runs from the Train form: what blocks Start, what Start says, and the submits.

Every start goes through the RunManager (``submit``, ``submit_sweep``) or
``presets.submit_preset``; after one, ``after_start`` renews the form's token (the buttons
just pressed are gone from the next run on: a double click starts nothing twice) and
leaves a message for the page that opens next.
"""
from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, MutableMapping

from hft_core import baselines
from hft_core import presets as preset_lib
from hft_core.config import RunConfig
from hft_core.model_cards import fmt
from ui import form_state as fs

State = MutableMapping[str, Any]


def unresolved_reference(cfg: RunConfig) -> str | None:
    """A preset variant that learns from another variant's run (a KD teacher): only the preset knows which."""
    refs = sorted(set(re.findall(r"run:\{(\w+)\}", cfg.to_yaml())))
    if not refs:
        return None
    return (f"this variant uses the run of the preset's '{refs[0]}' variant (run:{{{refs[0]}}}), which does not "
            f"exist yet: press 'Run all variants of this preset', or replace run:{{{refs[0]}}} with the id of a "
            "finished run (Runs page), e.g. run:r-1a2b3c")


def blocking_problem(cfg: RunConfig | None, config_error: str | None, data_error: str | None,
                     precision_error: str | None) -> str | None:
    """The one reason Start cannot go ahead, most specific first (a bad upload, not the empty data field)."""
    if data_error:
        return data_error
    if precision_error:
        return precision_error
    if cfg is None:
        return config_error
    return unresolved_reference(cfg)


def summary_line(cfg: RunConfig, precision: str, device: str) -> str:
    """'**Will train** tiny:bert · classification · bundled:bbc-news · 40 steps × batch 16 · lr 0.001 · ...'."""
    strategies = ", ".join(cfg.mix) if len(cfg.mix) else "plain fine-tuning"
    alpha = f" (alpha {cfg.mix['blend'].alpha:g})" if "blend" in cfg.mix else ""
    data = Path(cfg.data).name if "/" in cfg.data else cfg.data
    if baselines.is_baseline(cfg.model):   # fitted once: no steps, lr or precision
        return f"**Will fit** {cfg.model} · {cfg.task} · {data} · once, in seconds, on the CPU"
    vocab = f" (vocabulary of {cfg.corpus_vocab:,} learnt from the training texts)" if cfg.corpus_vocab else ""
    return (f"**Will train** {cfg.model}{vocab} · {cfg.task} · {data} · {cfg.max_steps} steps × batch "
            f"{cfg.batch_size} · lr {fmt(cfg.lr)} · {strategies}{alpha} · {precision} on {device}")


def sweep_group(given: str, cfg_group: str, now: float | None = None) -> str:
    """The sweep's group: the name typed, else the form's group, else sweep-<month><day>-<time>."""
    return given.strip() or cfg_group or f"sweep-{time.strftime('%m%d-%H%M%S', time.localtime(now))}"


def start_run(mgr: Any, cfg: RunConfig) -> list[str]:
    return [mgr.submit(cfg, group=cfg.group, name=cfg.name)]


def start_sweep(mgr: Any, cfg: RunConfig, alphas: Iterable[float], seeds: int, group: str,
                has_blend: bool) -> list[str]:
    """Queue the alphas × seeds grid as one group; ValueError when the grid is empty."""
    grid = fs.sweep_grid(alphas, seeds, cfg.seed, has_blend)
    if not grid:
        raise ValueError("a sweep needs at least one alpha value or 2 or more seeds.")
    return mgr.submit_sweep(cfg, grid, group=group)


def start_preset(mgr: Any, preset: Any, quick: bool, by_labels: bool = False) -> tuple[str, list[str]]:
    """Every variant of ``preset`` as one group (quick: its tiny settings, in a group of their own);
    ``by_labels``: its label-budget sweep (hft_core.label_budget) instead, also one group."""
    if by_labels:
        from hft_core.label_budget import label_budget_preset

        preset = label_budget_preset(preset)
    group = f"{preset_lib.group_name(preset)}-quick" if quick else ""
    return preset_lib.submit_preset(mgr, preset, quick=quick, group=group)


def budgets_button(preset: Any, key: str) -> bool:
    """The label-budget button, for a preset with a pretraining variant (one others start from) and no
    post-training step: pretraining matters most when labels are few. True when clicked."""
    import streamlit as st

    from hft_core.label_budget import LABEL_BUDGETS

    if not any(v.id for v in preset.variants) or preset.after:
        return False
    return st.button(f"Run it at {' / '.join(map(str, LABEL_BUDGETS))} labelled examples (one group)", key=key,
                     icon=":material/stacked_line_chart:",
                     help="The preset's fine-tuning variants at each number of labelled examples; each pretraining "
                          "run once, shared by every budget. Compare draws accuracy against the number of labels.")


def after_start(state: State, ids: list[str], what: str, page: str = "") -> str | None:
    """Renew the token, remember the ids, leave a flash for the next page; returns the page to open."""
    state["f.token"] = uuid.uuid4().hex
    state["f.last_started"] = ids
    state["compare.flash" if page.endswith("compare.py") else "live.flash"] = f"Started {what}: {', '.join(ids)}"
    if page:
        return page
    return "pages/live.py" if state.get("f.go_live") else None


def open_preset_on_compare(state: State, preset: Any, group: str, ids: list[str]) -> None:
    """A preset is a comparison: Compare opens on its group and the metric it is about."""
    state["compare.group"], state["compare.runs"], state["compare.metric"] = group, ids, preset.metric


def queue_line(store: Any) -> str | None:
    """'Queue: 1 running, 2 waiting. ...' or None when nothing is queued (or the store cannot say)."""
    try:
        queued = store.list_runs(status=["queued", "running"])
    except Exception:  # noqa: BLE001 - the store is optional for drawing the form
        return None
    if not queued:
        return None
    running = sum(r.status == "running" for r in queued)
    return f"Queue: {running} running, {len(queued) - running} waiting. A new run waits its turn."
