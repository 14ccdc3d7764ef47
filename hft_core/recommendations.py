"""Strategy recommendations: how a strategy changes the settings a model card gives.

A model card (``model_cards.py``) says which learning rate suits a model for full
fine-tuning. Some strategies want other settings whatever the model: LoRA trains a
small low-rank update, starts from B = 0, and needs a learning rate about ten times
the full fine-tuning one to move it. This is the one table of such facts; the model
cards read their LoRA rate from it, and the Train form applies it when a strategy is
turned on (a note and an Undo, as for a new model: ui/recommend.py).

    STRATEGY_RECOMMENDATIONS   {strategy name: StrategyRecommendation}
    recommendation(name)       its row, or None for a strategy with nothing to recommend
    strategy_lr(card_lr, on)   the lr for a model whose full fine-tuning lr is ``card_lr``

Sources of the LoRA row (keep it small and cited):

    rate      Hu et al. 2021 (LoRA), Table 9: RoBERTa-base at 4e-4..5e-4 with LoRA against
              1e-5..3e-5 fully fine-tuned (about 10x or more); presets/lora_vs_full.yaml here:
              MiniLM-L6 at 1e-3 with LoRA vs 1e-4 in full, all-linear r 8; QLoRA (Dettmers et
              al. 2023) 2e-4 for 7B/13B decoders fine-tuned at ~2e-5.
    rank      r = 8: the LoRA paper found r 4..8 enough on GLUE (Table 6: r 1..64 within a point).
    alpha     16 (= 2r, peft's usual pairing); the scale alpha / r stays 2 when r changes only if
              alpha follows it. For larger ranks (r > 16) use rsLoRA's alpha / sqrt(r)
              (Kalajdzievski 2023): with alpha / r the update shrinks as r grows and large ranks
              learn no faster than small ones.
    targets   all-linear: QLoRA found adapting every linear layer of the blocks needed to match
              full fine-tuning; here (presets/lora_vs_full.yaml, 120 steps, seeds 0-5) all-linear
              ended within 1.2 points of full fine-tuning and query/value 1.8-2.3 points behind
              all-linear. LoRA starts slower (48% vs 81% at step 10) and meets full fine-tuning
              from step 40-60: give it the steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StrategyRecommendation:
    """What turning on one strategy should change, and where the numbers come from."""

    strategy: str                 # registry name, e.g. "lora"
    title: str                    # shown in notes: "Set for LoRA on MiniLM-L6, as recommended: ..."
    lr_factor: float              # lr = lr_factor x the model card's full fine-tuning lr
    fields: dict[str, Any] = field(default_factory=dict)  # the strategy's own settings (its config defaults)
    evidence: str = ""


STRATEGY_RECOMMENDATIONS: dict[str, StrategyRecommendation] = {
    "lora": StrategyRecommendation(
        strategy="lora", title="LoRA", lr_factor=10.0,
        fields={"r": 8, "alpha": 16.0, "target_modules": "all-linear"},
        evidence="LoRA wants about 10x the full fine-tuning rate: Hu et al. 2021 fine-tune RoBERTa-base with "
                 "LoRA (r 8) at 4e-4..5e-4 against 1e-5..3e-5 in full; presets/lora_vs_full.yaml: MiniLM-L6 "
                 "at 1e-3 (LoRA, r 8, alpha 16, all linear layers as QLoRA advises) vs 1e-4. For r > 16 "
                 "scale by alpha/sqrt(r) (rsLoRA, Kalajdzievski 2023)."),
}


def recommendation(strategy: str) -> StrategyRecommendation | None:
    """The row of ``strategy``, or None when it has no recommended settings."""
    return STRATEGY_RECOMMENDATIONS.get(strategy)


def strategy_lr(card_lr: float, strategies: set[str] | frozenset[str] | tuple[str, ...] = ()) -> float:
    """The recommended lr for a model whose full fine-tuning lr is ``card_lr`` with ``strategies`` on.

    Each enabled strategy with a row multiplies it by its ``lr_factor``; rounded to 3 significant
    digits, so 10 x 3e-5 is 3e-4 and not 3.0000000000000003e-4.
    """
    lr = card_lr
    for name in sorted(strategies):
        row = recommendation(name)
        if row is not None:
            lr *= row.lr_factor
    return float(f"{lr:.3g}")
