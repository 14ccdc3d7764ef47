"""Mixout (Lee, Cho & Kang 2020): dropout toward the pretrained weights.

In training, each Linear weight of the transformer blocks is used as

    w_eff = ((1 - M) * w_pre + M * w - p * w_pre) / (1 - p),   M ~ Bernoulli(1 - p) elementwise

so a share p of the entries is swapped for its pretrained value at each forward and
the result is rescaled to keep E[w_eff] = w. In eval mode w_eff = w. w_pre is the
weight at setup (after blending / re-initialisation). It regularises toward the
start point, like L2-SP, and stabilises few-sample fine-tuning of large models.

Implemented as a ``torch.nn.utils.parametrize`` parametrization of ``weight``, so the
trained tensor is still the module's parameter; ``export_model`` removes the
parametrizations (on a copy) so checkpoints are plain models.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from hft_core import losses
from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register


@dataclass
class MixoutConfig:
    p: float = param(0.1, "Probability of swapping a weight entry for its pretrained value at each step "
                     "(Lee et al.: 0.1 to 0.9).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(0 <= self.p < 1, "mix.mixout.p", self.p, "use a probability from 0 to below 1, e.g. 0.1")


class MixoutWeight(nn.Module):
    """Parametrization: weight -> mixout(weight, w_pre, p) in training, weight itself in eval."""

    def __init__(self, weight_pre: torch.Tensor, p: float) -> None:
        super().__init__()
        self.register_buffer("weight_pre", weight_pre.detach().clone(), persistent=False)
        self.p = p

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return weight
        return losses.mixout_weight(weight, self.weight_pre.to(weight.dtype), self.p)


def add_mixout(model: nn.Module, p: float) -> int:
    """Parametrize every Linear (and GPT-2 Conv1D) weight inside the transformer blocks. Returns how many."""
    _, blocks = anatomy.find_blocks(anatomy.unwrap(model))
    count = 0
    for m in list(blocks.modules()):
        if (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D") and not parametrize.is_parametrized(m, "weight"):
            parametrize.register_parametrization(m, "weight", MixoutWeight(m.weight, p), unsafe=True)
            count += 1
    return count


def remove_mixout(model: nn.Module) -> nn.Module:
    """In place: back to plain ``weight`` parameters holding the trained values."""
    for m in list(model.modules()):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    return model


class Mixout(Hooks):
    name = "mixout"

    def __init__(self, cfg: MixoutConfig) -> None:
        self.cfg = cfg

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        add_mixout(model, self.cfg.p)
        return model

    def export_model(self, model: nn.Module) -> nn.Module:
        return remove_mixout(copy.deepcopy(model))


register(StrategySpec(
    name="mixout", config_cls=MixoutConfig, factory=Mixout,
    title="Mixout (dropout toward pretrained weights)",
    summary="At each step, swap a random share of the weights for their pretrained values, rescaled to keep the mean.",
    reference="Lee et al. 2020",
    order=55,
))
