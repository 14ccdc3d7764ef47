"""LP-FT (Kumar et al. 2022): linear probing, then fine-tuning.

For the first ``head_steps`` steps only the task head trains (the backbone is frozen);
then everything that was trainable before this strategy froze it trains. A good head
first means the backbone's features are not distorted by gradients from a random
head; the paper reports better out-of-distribution accuracy than plain fine-tuning.
Combines with freezing and LoRA: after the switch the trainable set is the one those
strategies chose. Logged: lpft/backbone_trainable (0 during probing, 1 after).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register


@dataclass
class LPFTConfig:
    head_steps: int = param(20, "Steps of training the head alone (linear probing) before everything trains.")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(isinstance(self.head_steps, int) and self.head_steps >= 1, "mix.lpft.head_steps", self.head_steps,
              "use a whole number of steps, at least 1")


class LPFT(Hooks):
    name = "lpft"

    def __init__(self, cfg: LPFTConfig) -> None:
        self.cfg = cfg
        self.backbone: list[nn.Parameter] = []
        self.probing = False

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        heads = {id(p) for _, p in anatomy.head_parameters(model)}
        if not heads:
            raise ValueError("lpft: the model has no task head (classifier / score) to probe")
        # remember what was trainable so the switch restores it (LoRA adapters, unfrozen blocks)
        self.backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in heads]
        for p in self.backbone:
            p.requires_grad_(False)
        self.probing = True
        return model

    def on_step_end(self, step: int, ctx: StrategyContext) -> dict[str, float]:
        if self.probing and step >= self.cfg.head_steps:
            for p in self.backbone:
                p.requires_grad_(True)
            self.probing = False
        return {"lpft/backbone_trainable": 0.0 if self.probing else 1.0}


register(StrategySpec(
    name="lpft", config_cls=LPFTConfig, factory=LPFT,
    title="LP-FT (head first, then everything)",
    summary="Train only the task head for the first steps, then fine-tune the whole model.",
    reference="Kumar et al. 2022",
    tasks=("classification",),
    order=70,
))
