"""NEFTune (Jain et al. 2023): uniform noise on the input embeddings while training.

    embeddings += U(-b, b),  b = alpha / sqrt(L * d)

L = (padded) sequence length, d = hidden width, alpha = 5 by default. A forward hook on
the input embedding module adds the noise only when that module is in training mode,
so evaluation and generation see the clean model; alpha = 0 changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hft_core import losses
from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register


@dataclass
class NEFTuneConfig:
    alpha: float = param(5.0, "Noise scale alpha; the bound per element is alpha/sqrt(length*width). "
                         "The paper tried 5, 10 and 15.")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(self.alpha >= 0, "mix.neftune.alpha", self.alpha, "use 0 (off) or a positive scale, e.g. 5")


def add_neftune_hook(embedding: nn.Module, alpha: float) -> torch.utils.hooks.RemovableHandle:
    """Register the noise hook on an embedding module; returns the handle (``.remove()`` to undo)."""
    def hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        if not module.training or alpha == 0 or output.dim() != 3:
            return output
        return output + losses.neftune_noise(output, alpha)
    return embedding.register_forward_hook(hook)


class NEFTune(Hooks):
    name = "neftune"

    def __init__(self, cfg: NEFTuneConfig) -> None:
        self.cfg = cfg
        self.handle = None

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        self.handle = add_neftune_hook(anatomy.unwrap(model).get_input_embeddings(), self.cfg.alpha)
        return model


register(StrategySpec(
    name="neftune", config_cls=NEFTuneConfig, factory=NEFTune,
    title="NEFTune (noisy embeddings)",
    summary="Add small uniform noise to the input embeddings during training only.",
    reference="Jain et al. 2023",
    order=80,
))
