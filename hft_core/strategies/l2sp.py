"""L2-SP (Li, Grandvalet, Davoine 2018): pull the backbone toward its starting point.

    loss += beta/2 * ||w - w0||^2   over the pretrained backbone   (logged as loss/l2sp)
          + gamma/2 * ||w||^2       over the new head              (logged as loss/l2_head)

w0 is a detached copy of the weights as they are when this strategy sets up, i.e.
after blending or re-initialisation: the start point, on the training device.
Usually run with weight_decay 0 (the penalty replaces it). Frozen parameters are
skipped at each step (their penalty is constant), so it combines with freezing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hft_core import losses
from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Batch, Hooks, StrategyContext, StrategySpec, register


@dataclass
class L2SPConfig:
    beta: float = param(0.01, "Strength of the pull toward the starting weights (beta in beta/2*||w-w0||^2).")
    gamma: float = param(0.01, "Plain L2 strength on the new task head, which has no pretrained weights.")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(self.beta >= 0, "mix.l2sp.beta", self.beta, "use 0 or a positive strength, e.g. 0.01")
        check(self.gamma >= 0, "mix.l2sp.gamma", self.gamma, "use 0 or a positive strength, e.g. 0.01")


class L2SP(Hooks):
    name = "l2sp"

    def __init__(self, cfg: L2SPConfig) -> None:
        self.cfg = cfg
        self.backbone: list[tuple[nn.Parameter, torch.Tensor]] = []
        self.model: nn.Module | None = None

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        # parameter objects, not names: LoRA (set up later) renames but keeps them
        self.backbone = [(p, p.detach().to(ctx.device, copy=True)) for _, p in anatomy.backbone_parameters(model)]
        self.model = model
        return model

    def extra_losses(self, out: Any, batch: Batch, ctx: StrategyContext) -> dict[str, torch.Tensor]:
        pairs = [(p, _on(w0, p)) for p, w0 in self.backbone if p.requires_grad]
        # looked up each step: LoRA (set up later) trains a copy of the head (modules_to_save).
        # Modules other strategies attach (hft_*, e.g. the aux LM head) are not the task head.
        head = [p for n, p in anatomy.head_parameters(self.model)
                if p.requires_grad and anatomy.ATTACHED_PREFIX not in n]
        terms = {"l2sp": losses.l2sp_penalty([p for p, _ in pairs], [w0 for _, w0 in pairs], self.cfg.beta)}
        if head:
            terms["l2_head"] = losses.l2_penalty(head, self.cfg.gamma)
        return {k: v.to(out.logits.device) for k, v in terms.items()}


def _on(w0: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return w0 if w0.device == p.device else w0.to(p.device)


register(StrategySpec(
    name="l2sp", config_cls=L2SPConfig, factory=L2SP,
    title="L2-SP (pull toward the start point)",
    summary="Penalise the distance of the backbone weights from where they started, and plain L2 on the new head.",
    reference="Li et al. 2018",
    order=30,
))
