"""Joint / deep mutual learning (Zhang et al. 2018): two models teach each other.

The run's model and a peer each minimise their own task loss plus
``weight * KL(p_other || p_self)`` with the other's prediction detached. The peer has
its own AdamW optimizer and steps with the model. Logged: loss/mutual (the model's
KL term) and peer/loss, peer/accuracy (the peer's own batch figures).

The peer is loaded from ``peer`` (default: the run's model source) and its task head
is re-drawn with a different seed, so the two start apart and have something to teach.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hft_core import losses
from hft_core.fields import ConfigError, check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Batch, Hooks, StrategyContext, StrategySpec, register
from hft_core.strategies.kd import vocab_size


@dataclass
class MutualConfig:
    peer: str = param("", "Peer model source; empty = the same as the run's model (its head re-drawn with another seed).")
    weight: float = param(1.0, "Weight lambda of the KL term toward the other model, for both models.")
    lr: float = param(1e-4, "Learning rate of the peer's own AdamW optimizer.")
    max_grad_norm: float = param(1.0, "Clip the peer's gradient norm to this; 0 = no clipping.")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(self.weight >= 0, "mix.mutual.weight", self.weight, "use 0 or a positive weight, e.g. 1")
        check(0 < self.lr < 1, "mix.mutual.lr", self.lr, "use a learning rate between 0 and 1, e.g. 1e-4")
        check(self.max_grad_norm >= 0, "mix.mutual.max_grad_norm", self.max_grad_norm, "use 0 (off) or a positive number")


class MutualLearning(Hooks):
    name = "mutual"

    def __init__(self, cfg: MutualConfig) -> None:
        self.cfg = cfg
        self.peer: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._stats: list[tuple[float, float]] = []

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        source = self.cfg.peer or ctx.model_source
        try:
            peer = ctx.load_model(source)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"mix.mutual.peer={source!r} could not be loaded: {e}") from e
        if vocab_size(peer) != vocab_size(model):
            raise ConfigError(f"mix.mutual.peer={source!r}: its vocabulary ({vocab_size(peer)} tokens) differs from "
                              f"the model's ({vocab_size(model)}); the two must share a tokenizer")
        g = torch.Generator().manual_seed(ctx.seed + 1)
        for _, head in anatomy.head_modules(peer):
            anatomy.reset_parameters(head, anatomy.initializer_range(peer), g)
        self.peer = peer.to(ctx.device).train()
        for p in self.peer.parameters():
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(self.peer.parameters(), lr=self.cfg.lr, weight_decay=0.0)
        return model

    def extra_losses(self, out: Any, batch: Batch, ctx: StrategyContext) -> dict[str, torch.Tensor]:
        peer_logits = self.peer(**batch.model_inputs).logits
        if ctx.task == "causal-lm":
            labels = batch.inputs["labels"]
            mask = losses.next_token_mask(labels)
            s, p = out.logits[:, :-1], peer_logits[:, :-1]
            peer_task = losses.causal_lm_loss(peer_logits, labels)
            with torch.no_grad():
                hit = (p.argmax(-1) == labels[:, 1:])[mask].float()
                acc = float(hit.mean()) if hit.numel() else 0.0
        else:
            mask = None
            s, p = out.logits, peer_logits
            y = batch.labels.to(p.device)
            peer_task = F.cross_entropy(p.float(), y)
            acc = float((p.detach().argmax(-1) == y).float().mean())
        w = self.cfg.weight
        # the peer learns now (its own graph, its own optimizer); the model's term goes to the trainer
        peer_loss = peer_task + w * losses.mutual_kl(p, s.detach(), mask)
        peer_loss.backward()
        self._stats.append((float(peer_loss.detach()), acc))
        return {"mutual": w * losses.mutual_kl(s, p.detach(), mask)}

    def state_dict(self) -> dict[str, Any]:
        """The peer and its optimizer: saved in the run's checkpoint, so a resumed run goes on with them."""
        return {"peer": self.peer.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peer.load_state_dict(state["peer"])
        self.optimizer.load_state_dict(state["optimizer"])

    def on_step_end(self, step: int, ctx: StrategyContext) -> dict[str, float]:
        """Step the peer; its loss and accuracy, averaged over this step's micro-batches, go to the log."""
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.peer.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self._stats:
            return {}
        metrics = {"peer/loss": sum(s[0] for s in self._stats) / len(self._stats),
                   "peer/accuracy": sum(s[1] for s in self._stats) / len(self._stats)}
        self._stats.clear()
        return metrics


register(StrategySpec(
    name="mutual", config_cls=MutualConfig, factory=MutualLearning,
    title="Mutual learning (a peer model)",
    summary="Train a second model alongside; each learns from the labels and from the other's predictions.",
    reference="Zhang et al. 2018",
    order=85,
))
