"""LoRA (Hu et al. 2021) through the ``peft`` library.

    h = W0 x + (alpha / r) * B A x,   A: (r, in), B: (out, r), B = 0 at init

Every pretrained weight is frozen; only A and B in the target layers train, plus
the new task head (``modules_to_save``: classifier / score) and any module another
strategy attached (``hft_*``, e.g. the auxiliary LM head). At init the model's output
equals the base model's. Checkpoints hold the merged weights (W0 + alpha/r * B A), so
they load as plain models: ``export_model`` merges a copy and leaves the live
adapters alone.

Targets (``target_modules``):
- "all-linear" (the default): every linear layer inside the transformer blocks
  (BERT: query, key, value, attention output, intermediate, output; GPT-2: c_attn,
  c_proj, c_fc, mlp c_proj; Llama: q/k/v/o_proj, gate/up/down_proj). QLoRA (Dettmers
  et al. 2023) found adapting all of them necessary to match full fine-tuning; here
  query/value only trailed full fine-tuning by 11 points after 40 steps. The pooler and
  the head are outside the blocks: the head trains in full (modules_to_save), the
  pooler stays frozen.
- "query-value" (alias "auto", the lab's default before): the attention query/value
  projections of the model family, the LoRA paper's choice (c_attn for GPT-2).
- a comma-separated list of module names, e.g. "query,value".
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

from torch import nn

from hft_core.fields import ConfigError, check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register

AUTO_TARGETS = {  # model_type -> attention projections LoRA adapts (the paper adapted W_q and W_v)
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"], "distilbert": ["q_lin", "v_lin"],
    "gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"], "phi3": ["qkv_proj"],
}
FALLBACK_TARGETS = ("query", "value", "q_proj", "v_proj", "c_attn", "q_lin", "v_lin", "qkv_proj", "Wqkv")
ALL_LINEAR = "all-linear"
QUERY_VALUE = ("query-value", "auto")  # "auto": what the default meant before all-linear; old configs keep it


@dataclass
class LoRAConfig:
    r: int = param(8, "Rank of the low-rank update B A (the paper found 4-8 enough).")
    alpha: float = param(16.0, "Scaling: the update is multiplied by alpha / r.")
    dropout: float = param(0.05, "Dropout on the LoRA branch's input.")
    target_modules: str = param(ALL_LINEAR, "Layers to adapt: 'all-linear' = every linear layer of the "
                                "transformer blocks (QLoRA's advice; MiniLM: 1.5% of the parameters train), "
                                "'query-value' = only the attention query/value projections (the LoRA paper's "
                                "choice; 0.33%, and 11 points behind full fine-tuning after 40 steps on 200 BBC "
                                "articles), or comma-separated module names such as 'query,value'.")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(isinstance(self.r, int) and self.r >= 1, "mix.lora.r", self.r, "use a whole number of at least 1, e.g. 8")
        check(self.alpha > 0, "mix.lora.alpha", self.alpha, "use a positive scale, e.g. 16")
        check(0 <= self.dropout < 1, "mix.lora.dropout", self.dropout, "use a probability from 0 to below 1, e.g. 0.05")
        check(isinstance(self.target_modules, str) and self.target_modules.strip() != "", "mix.lora.target_modules",
              self.target_modules, "give 'all-linear', 'query-value' or module names such as 'query,value'")


def block_linear_names(model: nn.Module) -> list[str]:
    """Full dotted names of every linear layer (nn.Linear, GPT-2's Conv1D) inside the transformer blocks."""
    base = anatomy.unwrap(model)
    block_name, blocks = anatomy.find_blocks(base)
    return [f"{block_name}.{n}" for n, m in blocks.named_modules()
            if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]


def resolve_targets(model: nn.Module, target_modules: str) -> list[str]:
    """The module names LoRA adapts.

    'all-linear' -> the full names of every linear layer in the blocks; 'query-value' (or
    'auto') -> the model family's attention query/value projections; otherwise the listed
    names, checked to exist. (peft matches a name to a module whose dotted name ends with it.)
    """
    base = anatomy.unwrap(model)
    leaf_names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
    choice = target_modules.strip()
    if choice == ALL_LINEAR:
        names = block_linear_names(base)
        if not names:
            raise ConfigError(f"mix.lora.target_modules='all-linear' is not valid for {type(base).__name__}: its "
                              f"blocks have no linear layers; list module names, e.g. from {sorted(leaf_names)[:12]}")
        return names
    if choice in QUERY_VALUE:
        mtype = getattr(getattr(base, "config", None), "model_type", "")
        names = AUTO_TARGETS.get(mtype) or [n for n in FALLBACK_TARGETS if n in leaf_names]
        if not names or not any(n in leaf_names for n in names):
            raise ConfigError(f"mix.lora.target_modules={choice!r} is not valid for model type {mtype!r}: no known "
                              f"attention layers found; use 'all-linear' or list module names, e.g. from "
                              f"{sorted(leaf_names)[:12]}")
        return [n for n in names if n in leaf_names]
    names = [t.strip() for t in target_modules.split(",") if t.strip()]
    missing = [n for n in names if n not in leaf_names]
    if missing:
        raise ConfigError(f"mix.lora.target_modules={target_modules!r} is not valid: {missing} not in the model; "
                          f"use 'all-linear', 'query-value' or module names such as {sorted(leaf_names)[:20]}")
    return names


def wrap_lora(model: nn.Module, *, r: int, alpha: float, dropout: float, target_modules: str) -> nn.Module:
    """A peft model with LoRA adapters; base weights frozen, heads and ``hft_*`` modules trainable."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_targets(model, target_modules)
    heads = sorted({n.rsplit(".", 1)[-1] for n, _ in anatomy.head_modules(model)})
    is_gpt2 = getattr(getattr(model, "config", None), "model_type", "") == "gpt2"
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        modules_to_save=heads or None, fan_in_fan_out=is_gpt2, bias="none")
    with warnings.catch_warnings():
        # peft 0.21 reads model.is_gradient_checkpointing, which transformers 5 deprecated (FutureWarning on
        # every LoRA run, in the user's terminal); the lab never turns checkpointing on. Only that warning is hidden.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
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
    summary="Freeze the pretrained weights and train small low-rank updates of every linear layer of the blocks "
            "(or only attention query/value), plus the head.",
    reference="Hu et al. 2021; all linear layers: Dettmers et al. 2023 (QLoRA)",
    conflicts={"freeze": _WHY.format(other="freezing layers"),
               "half_ft": _WHY.format(other="Half Fine-Tuning's random freezing"),
               "mixout": "Mixout mixes trainable weights with their pretrained values, but LoRA freezes those "
                         "weights, so every mixout draw would be a no-op; use one or the other"},
    order=50,
))
