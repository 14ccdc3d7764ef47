"""Freeze the bottom k transformer blocks (and, optionally, the embeddings).

Lower layers hold the most general features and change least in fine-tuning;
freezing them saves memory and compute (no gradients, no optimizer updates) and
guards against forgetting. Frozen parameters have ``requires_grad = False``; the
optimizer skips them, so they stay bit-identical.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hft_core.fields import ConfigError, check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register


@dataclass
class FreezeConfig:
    layers: int = param(1, "How many of the bottom transformer blocks to freeze (0 = none, only the embeddings "
                        "if that option is on).")
    embeddings: bool = param(True, "Also freeze the embeddings (word, position and their norm).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(isinstance(self.layers, int) and self.layers >= 0, "mix.freeze.layers", self.layers,
              "use a whole number of blocks, 0 or more")
        check(self.layers > 0 or self.embeddings, "mix.freeze.layers", self.layers,
              "freeze at least one block or turn on embeddings; otherwise nothing is frozen")


def freeze_bottom(model: nn.Module, k: int, embeddings: bool) -> list[str]:
    """Set requires_grad=False on blocks [0, k) and optionally the embeddings. Returns the frozen names."""
    base = anatomy.unwrap(model)
    block_name, blocks = anatomy.find_blocks(base)
    if k > len(blocks):
        raise ConfigError(f"mix.freeze.layers={k} is not valid: the model has only {len(blocks)} blocks; "
                          f"use at most {len(blocks)}")
    frozen = []
    for i in range(k):
        for n, p in blocks[i].named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{block_name}.{i}.{n}")
    if embeddings:
        for n, p in anatomy.embedding_parameters(base):
            p.requires_grad_(False)
            frozen.append(n)
    return frozen


class Freeze(Hooks):
    name = "freeze"

    def __init__(self, cfg: FreezeConfig) -> None:
        self.cfg = cfg

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        freeze_bottom(model, self.cfg.layers, self.cfg.embeddings)
        return model


register(StrategySpec(
    name="freeze", config_cls=FreezeConfig, factory=Freeze,
    title="Freeze the bottom layers",
    summary="Keep the embeddings and the lowest k blocks fixed; train the rest.",
    reference="Howard & Ruder 2018",
    order=60,
))
