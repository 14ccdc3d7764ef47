"""Where HFT Lab keeps its files: ``$HFT_HOME`` or ``~/.hft_lab``.

    $HFT_HOME/runs.sqlite          the run store
    $HFT_HOME/runs/<run_id>/       one folder per run: checkpoint/, exports
    $HFT_HOME/cache/               converted bundled models (e.g. SmolLM2 from GGUF)
"""
from __future__ import annotations

import os
from pathlib import Path


def hft_home() -> Path:
    return Path(os.environ.get("HFT_HOME") or Path.home() / ".hft_lab").expanduser()


def cache_dir() -> Path:
    return hft_home() / "cache"


def run_dir(run_id: str) -> Path:
    return hft_home() / "runs" / run_id


def checkpoint_dir(run_id: str) -> Path:
    """The run's latest checkpoint: model safetensors + tokenizer + config.yaml + trainer_state."""
    return run_dir(run_id) / "checkpoint"
