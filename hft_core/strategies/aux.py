"""Auxiliary language-model loss while training the task (Radford et al. 2018, GPT-1).

    loss = task + lambda * L_lm          (GPT-1: lambda = 0.5)

L_lm is the model's own pretraining objective on the same texts:
- decoders (GPT-2, Llama): next-token loss from the last hidden state through an LM
  head tied to the input embeddings (for causal-lm the model's own logits are used,
  on the whole text, prompt included);
- encoders (BERT): masked-LM loss. 15% of the tokens (seeded) are corrupted BERT-style
  and the backbone runs a second time on that input; an MLM head (dense, GELU,
  LayerNorm, decoder tied to the word embeddings) is attached as ``hft_aux_lm_head``.

The attached head is trained with the model and left out of exported checkpoints.
With lambda = 0 the gradient is exactly the task gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hft_core import losses
from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Batch, Hooks, StrategyContext, StrategySpec, register

HEAD_ATTR = "hft_aux_lm_head"


@dataclass
class AuxConfig:
    weight: float = param(0.5, "Weight lambda of the language-model loss (GPT-1 used 0.5); 0 = task loss only.")
    mask_prob: float = param(0.15, "Encoders: share of tokens masked for the masked-LM loss (BERT used 0.15).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(self.weight >= 0, "mix.aux.weight", self.weight, "use 0 or a positive weight, e.g. 0.5")
        check(0 < self.mask_prob < 1, "mix.aux.mask_prob", self.mask_prob, "use a share between 0 and 1, e.g. 0.15")


class TiedLMHead(nn.Module):
    """hidden (B, L, d) -> vocabulary logits (B, L, V) through the (shared) input embedding matrix.

    With ``transform`` it is BERT's MLM head (dense, GELU, LayerNorm, then decoder + bias).
    The embedding module is held outside ``_modules`` so its weight is not registered twice.
    """

    def __init__(self, embedding: nn.Embedding, hidden: int, transform: bool, eps: float = 1e-12) -> None:
        super().__init__()
        self.__dict__["embedding"] = embedding
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=eps)) \
            if transform else None
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings)) if transform else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.transform(hidden) if self.transform is not None else hidden
        return F.linear(h, self.embedding.weight, self.bias)


class AuxiliaryLM(Hooks):
    name = "aux"

    def __init__(self, cfg: AuxConfig) -> None:
        self.cfg = cfg
        self.model: nn.Module | None = None
        self.encoder = False
        self.needs_hidden_states = False

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        self.model = model
        base = anatomy.unwrap(model)
        self.encoder = anatomy.is_encoder(base)
        if ctx.task == "causal-lm" and not self.encoder:
            return model  # the model's own logits are the LM
        emb = base.get_input_embeddings()
        hidden = emb.embedding_dim
        head = TiedLMHead(emb, hidden, transform=self.encoder, eps=getattr(base.config, "layer_norm_eps", 1e-12))
        if self.encoder:
            g = torch.Generator().manual_seed(ctx.seed + 29)
            anatomy.reset_parameters(head.transform, anatomy.initializer_range(base), g)
        setattr(base, HEAD_ATTR, head)
        self.needs_hidden_states = not self.encoder  # decoders reuse the task forward's last hidden state
        return model

    def extra_losses(self, out: Any, batch: Batch, ctx: StrategyContext) -> dict[str, torch.Tensor]:
        inputs = batch.model_inputs
        ids, attn = inputs["input_ids"], inputs["attention_mask"]
        base = anatomy.unwrap(self.model)
        if self.encoder:
            tok = ctx.tokenizer
            g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + 104_729 * (ctx.step + 1))
            special = [i for i in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id) if i is not None]
            masked, mlm_labels = losses.masked_lm_mask(ids, attn, prob=self.cfg.mask_prob,
                                                       mask_token_id=tok.mask_token_id,
                                                       vocab_size=base.get_input_embeddings().num_embeddings,
                                                       special_ids=special, generator=g)
            extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
            hidden = base.base_model(input_ids=masked, attention_mask=attn, **extra).last_hidden_state
            logits = getattr(base, HEAD_ATTR)(hidden)
            lm = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), mlm_labels.reshape(-1),
                                 ignore_index=-100)
        else:
            lm_labels = ids.masked_fill(attn == 0, -100)
            if ctx.task == "causal-lm":
                logits = out.logits
            else:
                logits = getattr(base, HEAD_ATTR)(out.hidden_states[-1])
            lm = losses.causal_lm_loss(logits, lm_labels)
        return {"aux_lm": self.cfg.weight * lm}

    def export_model(self, model: nn.Module) -> nn.Module:
        return anatomy.strip_attached(model)


register(StrategySpec(
    name="aux", config_cls=AuxConfig, factory=AuxiliaryLM,
    title="Auxiliary language-model loss",
    summary="Keep training the pretraining objective (masked or next-token LM) on the same texts while learning the task.",
    reference="Radford et al. 2018",
    order=40,
))
