"""Half Fine-Tuning (Hui et al. 2024): in every block, freeze a random half of its parameters.

Within each transformer block, a seeded random half of the parameter tensors (e.g.
the query weight, one LayerNorm, the output projection ...) is frozen and the other
half trains; the paper reports less forgetting of pretrained abilities at the cost
of half the updates. Embeddings and the head train.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from torch import nn

from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register


@dataclass
class HalfFTConfig:
    fraction: float = param(0.5, "Share of the parameter tensors frozen in each block (the paper: one half).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(0 < self.fraction < 1, "mix.half_ft.fraction", self.fraction, "use a share between 0 and 1, e.g. 0.5")


def freeze_random_half(model: nn.Module, fraction: float, seed: int) -> list[str]:
    """Freeze round(fraction * n) of the n parameter tensors of each block, chosen with ``seed``."""
    base = anatomy.unwrap(model)
    block_name, blocks = anatomy.find_blocks(base)
    rng = random.Random(f"half_ft-{seed}")
    frozen = []
    for i, block in enumerate(blocks):
        named = [(n, p) for n, p in block.named_parameters() if p.requires_grad]
        for n, p in rng.sample(named, round(fraction * len(named))):
            p.requires_grad_(False)
            frozen.append(f"{block_name}.{i}.{n}")
    return frozen


class HalfFT(Hooks):
    name = "half_ft"

    def __init__(self, cfg: HalfFTConfig) -> None:
        self.cfg = cfg

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        freeze_random_half(model, self.cfg.fraction, ctx.seed)
        return model


register(StrategySpec(
    name="half_ft", config_cls=HalfFTConfig, factory=HalfFT,
    title="Half Fine-Tuning",
    summary="In every block, freeze a random half of the weight tensors and train the other half.",
    reference="Hui et al. 2024",
    order=62,
))
