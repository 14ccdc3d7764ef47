"""Re-initialise the top k transformer blocks (Zhang et al. 2021, "Revisiting few-sample
BERT fine-tuning", their ``--reinit_layers``).

The top blocks of a pretrained encoder are specialised to its pretraining task and
transfer worst; re-initialising them (Linear/Embedding weights ~ N(0, initializer_range),
biases 0, LayerNorm 1/0), together with the pooler and the head, helps few-sample
fine-tuning. Lower blocks stay bit-identical. Draws come from a generator seeded with
the run seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hft_core.fields import ConfigError, check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register


@dataclass
class ReinitConfig:
    layers: int = param(1, "How many of the top transformer blocks to re-initialise (Zhang et al. found 1-6 "
                        "helps BERT-large on small data).")
    pooler: bool = param(True, "Also re-initialise the pooler (BERT's dense layer over [CLS]), if the model has one.")
    head: bool = param(True, "Also re-initialise the task head (classifier / score).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(isinstance(self.layers, int) and self.layers >= 1, "mix.reinit.layers", self.layers,
              "use a whole number of blocks, at least 1")


@torch.no_grad()
def reinit_top_layers(model: nn.Module, k: int, *, seed: int, pooler: bool = True, head: bool = True) -> list[str]:
    """Re-initialise the last ``k`` blocks (and pooler/head) in place. Returns the module names touched."""
    block_name, blocks = anatomy.find_blocks(model)
    if k > len(blocks):
        raise ConfigError(f"mix.reinit.layers={k} is not valid: the model has only {len(blocks)} blocks; "
                          f"use at most {len(blocks)}")
    std = anatomy.initializer_range(model)
    g = torch.Generator().manual_seed(seed)
    touched = []
    for i in range(len(blocks) - k, len(blocks)):
        anatomy.reset_parameters(blocks[i], std, g)
        touched.append(f"{block_name}.{i}")
    if pooler:
        for name, mod in anatomy.pooler_modules(model):
            anatomy.reset_parameters(mod, std, g)
            touched.append(name)
    if head:
        for name, mod in anatomy.head_modules(model):
            anatomy.reset_parameters(mod, std, g)
            touched.append(name)
    return touched


class Reinit(Hooks):
    name = "reinit"

    def __init__(self, cfg: ReinitConfig) -> None:
        self.cfg = cfg

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        reinit_top_layers(model, self.cfg.layers, seed=ctx.seed + 17, pooler=self.cfg.pooler, head=self.cfg.head)
        return model


register(StrategySpec(
    name="reinit", config_cls=ReinitConfig, factory=Reinit,
    title="Re-initialise the top layers",
    summary="Reset the top k transformer blocks (and pooler and head) to a fresh random init before fine-tuning.",
    reference="Zhang et al. 2021",
    order=20,
))
