"""LoRA (Hu et al. 2021) through the ``peft`` library.

    h = W0 x + (alpha / r) * B A x,   A: (r, in), B: (out, r), B = 0 at init

Every pretrained weight is frozen; only A and B in the target layers train, plus
the new task head (``modules_to_save``: classifier / score) and any module another
strategy attached (``hft_*``, e.g. the auxiliary LM head). At init the model's output
equals the base model's. Checkpoints hold the merged weights (W0 + alpha/r * B A), so
they load as plain models: ``export_model`` merges a copy and leaves the live
adapters alone.

Target "auto": query/value for BERT, c_attn for GPT-2, q_proj/v_proj for Llama.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from hft_core.config import ConfigError, check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register

AUTO_TARGETS = {  # model_type -> attention projections LoRA adapts (the paper adapted W_q and W_v)
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"], "distilbert": ["q_lin", "v_lin"],
    "gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"], "phi3": ["qkv_proj"],
}
FALLBACK_TARGETS = ("query", "value", "q_proj", "v_proj", "c_attn", "q_lin", "v_lin", "qkv_proj", "Wqkv")


@dataclass
class LoRAConfig:
    r: int = param(8, "Rank of the low-rank update B A (the paper found 4-8 enough).")
    alpha: float = param(16.0, "Scaling: the update is multiplied by alpha / r.")
    dropout: float = param(0.05, "Dropout on the LoRA branch's input.")
    target_modules: str = param("auto", "Layers to adapt, comma-separated module names (e.g. 'query,value'); "
                                "'auto' = the attention query/value projections of the model family (the "
                                "LoRA paper's choice). For BERT, 'query,key,value,dense' adapts every linear "
                                "layer (QLoRA's advice): about 4x the parameters, closer to full fine-tuning "
                                "(91.7% vs 84.7%, full 92.8%, in bench/strategies.py's setting).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(isinstance(self.r, int) and self.r >= 1, "mix.lora.r", self.r, "use a whole number of at least 1, e.g. 8")
        check(self.alpha > 0, "mix.lora.alpha", self.alpha, "use a positive scale, e.g. 16")
        check(0 <= self.dropout < 1, "mix.lora.dropout", self.dropout, "use a probability from 0 to below 1, e.g. 0.05")
        check(isinstance(self.target_modules, str) and self.target_modules.strip() != "", "mix.lora.target_modules",
              self.target_modules, "give 'auto' or module names such as 'query,value'")


def resolve_targets(model: nn.Module, target_modules: str) -> list[str]:
    """'auto' -> the model family's attention projections; otherwise the listed names, checked to exist."""
    base = anatomy.unwrap(model)
    leaf_names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
    if target_modules.strip() == "auto":
        mtype = getattr(getattr(base, "config", None), "model_type", "")
        names = AUTO_TARGETS.get(mtype) or [n for n in FALLBACK_TARGETS if n in leaf_names]
        if not names or not any(n in leaf_names for n in names):
            raise ConfigError(f"mix.lora.target_modules='auto' is not valid for model type {mtype!r}: no known "
                              f"attention layers found; list module names, e.g. from {sorted(leaf_names)[:12]}")
        return [n for n in names if n in leaf_names]
    names = [t.strip() for t in target_modules.split(",") if t.strip()]
    missing = [n for n in names if n not in leaf_names]
    if missing:
        raise ConfigError(f"mix.lora.target_modules={target_modules!r} is not valid: {missing} not in the model; "
                          f"module names include {sorted(leaf_names)[:20]}")
    return names


def wrap_lora(model: nn.Module, *, r: int, alpha: float, dropout: float, target_modules: str) -> nn.Module:
    """A peft model with LoRA adapters; base weights frozen, heads and ``hft_*`` modules trainable."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_targets(model, target_modules)
    heads = sorted({n.rsplit(".", 1)[-1] for n, _ in anatomy.head_modules(model)})
    is_gpt2 = getattr(getattr(model, "config", None), "model_type", "") == "gpt2"
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        modules_to_save=heads or None, fan_in_fan_out=is_gpt2, bias="none")
    peft_model = get_peft_model(model, config)
    for n, p in peft_model.named_parameters():
        if anatomy.ATTACHED_PREFIX in n:
            p.requires_grad_(True)  # e.g. the auxiliary LM head another strategy attached
    return peft_model


def merged_copy(peft_model: nn.Module) -> nn.Module:
    """A plain model with the adapters merged into the weights; ``peft_model`` is unchanged."""
    return copy.deepcopy(peft_model).merge_and_unload()


class LoRA(Hooks):
    name = "lora"

    def __init__(self, cfg: LoRAConfig) -> None:
        self.cfg = cfg

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        return wrap_lora(model, r=self.cfg.r, alpha=self.cfg.alpha, dropout=self.cfg.dropout,
                         target_modules=self.cfg.target_modules)

    def export_model(self, model: nn.Module) -> nn.Module:
        return merged_copy(model) if hasattr(model, "merge_and_unload") else model


_WHY = ("LoRA already freezes every pretrained weight and trains only its adapters, so {other} has nothing "
        "coherent to act on; to choose where adapters go use mix.lora.target_modules")

register(StrategySpec(
    name="lora", config_cls=LoRAConfig, factory=LoRA,
    title="LoRA (low-rank adapters)",
    summary="Freeze the pretrained weights and train small low-rank updates of the attention layers, plus the head.",
    reference="Hu et al. 2021",
    conflicts={"freeze": _WHY.format(other="freezing layers"),
               "half_ft": _WHY.format(other="Half Fine-Tuning's random freezing"),
               "mixout": "Mixout mixes trainable weights with their pretrained values, but LoRA freezes those "
                         "weights, so every mixout draw would be a no-op; use one or the other"},
    order=50,
))
