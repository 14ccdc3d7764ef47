"""The Strategy hooks, the context they receive, and the registry.

A strategy is three things (STYLE.md #2): a config dataclass with help per field,
a small object implementing some of the hooks below, and one ``register(...)``
line. The trainer calls the hooks at fixed points of its one loop:

    model = s.setup(model, ctx)              once, before the optimizer is built
    batch = s.transform_batch(batch, ctx)    on raw texts, before tokenisation
    terms = s.extra_losses(out, batch, ctx)  after the forward pass
    metrics = s.on_step_end(step, ctx)       after the optimizer step; merged into the step's log line
    model = s.export_model(model)            before a checkpoint is saved (merge adapters, drop hft_* heads)
    state = s.state_dict() / s.load_state_dict(state)   the strategy's own state, saved for resume

and reads three attributes: ``task_weight`` (the weight on loss/task), and
``needs_train_texts`` / ``needs_hidden_states`` (whether the trainer must fill
``ctx.train_texts`` / ask the model for its hidden states; both cost time, so only
on request). Every hook and attribute is declared on ``Strategy`` below, and ``Hooks``
gives each a no-op default: the trainer calls them all, it never probes with getattr.

The total loss is ``task_weight * loss/task + sum(extra terms)`` where
``task_weight`` is the product of every strategy's ``task_weight`` (KD sets it to
1 - r). Each term is logged as ``loss/<name>``, as its contribution to the total.
A hook returns its metrics (``on_step_end``) rather than writing into the shared
context, so what a strategy logs is in its signature.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from hft_core.fields import ConfigError


@dataclass
class Batch:
    """One training batch.

    texts:   raw texts, len B (prompt+answer already formatted for causal-lm)
    labels:  (B,) int64 class ids for classification, else None
    inputs:  tokenised tensors after collate: input_ids (B, L), attention_mask (B, L),
             and for causal-lm labels (B, L) with -100 on padding/prompt
    """

    texts: list[str]
    labels: torch.Tensor | None = None
    inputs: dict[str, torch.Tensor] | None = None
    prompts: list[str] | None = None  # causal-lm: the prompt part of each text (masked from the loss)
    seed: int | None = None  # the task's own randomness (masked-LM masks), from (seed, micro-step, rank)

    @property
    def model_inputs(self) -> dict[str, torch.Tensor]:
        """``inputs`` without the causal-lm ``labels``: what ``model(**...)`` takes."""
        return {k: v for k, v in (self.inputs or {}).items() if k != "labels"}


@dataclass
class StrategyContext:
    """What a strategy may use. Built by the trainer; strategies never see RunConfig."""

    task: str                                   # "classification" | "causal-lm"
    num_labels: int                             # 0 for causal-lm
    tokenizer: Any
    device: torch.device
    seed: int
    max_steps: int
    model_source: str                           # e.g. "bundled:minilm-l6"
    fresh_model: Callable[[int], nn.Module]     # same architecture, random init, from a seed (on CPU)
    load_model: Callable[[str], nn.Module]      # any model source -> model for this task (on CPU)
    train_texts: list[str] = field(default_factory=list)  # the whole training pool, labels not needed
    step: int = 0                               # the optimizer step about to run / just run
    training: bool = True
    collate: Callable[[list[str]], dict[str, torch.Tensor]] | None = None  # texts -> model inputs


class Strategy(Protocol):
    """What the trainer calls on each enabled strategy. Subclass ``Hooks`` to get no-op defaults."""

    name: str                   # registry key, e.g. "kd"; also the key of its state in a checkpoint
    task_weight: float          # factor on loss/task (KD: 1 - r); the trainer multiplies all of them
    needs_train_texts: bool     # True: fill ctx.train_texts with the whole training pool (KD's transfer set)
    needs_hidden_states: bool   # True: forward with output_hidden_states=True (aux LM head on decoders)

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        """Once, before the optimizer exists: change or wrap the model and return it."""
        ...

    def transform_batch(self, batch: Batch, ctx: StrategyContext) -> Batch:
        """Each micro-batch, on raw texts before tokenisation (augmentation)."""
        ...

    def extra_losses(self, out: Any, batch: Batch, ctx: StrategyContext) -> dict[str, torch.Tensor]:
        """Each micro-batch, after the forward pass: name -> scalar term, already weighted; logged as loss/<name>."""
        ...

    def on_step_end(self, step: int, ctx: StrategyContext) -> dict[str, float]:
        """After each optimizer step (``step`` = steps done): metrics to log with this step, e.g. {"peer/loss": 0.3}."""
        ...

    def export_model(self, model: nn.Module) -> nn.Module:
        """Before a checkpoint is saved: the model as it should be saved (never modify ``model`` in place)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """State of the strategy's own (a peer model, an optimizer) saved for resume; {} = nothing to save."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, after ``setup`` on a resumed run."""
        ...


class Hooks:
    """No-op defaults for every hook and attribute of ``Strategy``, so a strategy writes only the ones it uses."""

    name = "?"
    task_weight = 1.0
    needs_train_texts = False
    needs_hidden_states = False

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        return model

    def transform_batch(self, batch: Batch, ctx: StrategyContext) -> Batch:
        return batch

    def extra_losses(self, out: Any, batch: Batch, ctx: StrategyContext) -> dict[str, torch.Tensor]:
        return {}

    def on_step_end(self, step: int, ctx: StrategyContext) -> dict[str, float]:
        return {}

    def export_model(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@dataclass
class StrategySpec:
    name: str                      # registry key and YAML key, e.g. "blend"
    config_cls: type               # dataclass with param(...) fields
    factory: Callable[[Any], Strategy]  # config -> strategy object
    title: str                     # "Alpha blend (pretrained x random)"
    summary: str                   # one plain sentence
    reference: str = ""            # "Ash & Adams 2020"
    tasks: tuple[str, ...] = ("classification", "causal-lm")
    conflicts: dict[str, str] = field(default_factory=dict)  # other name -> why they don't mix
    order: int = 50                # setup order: lower first (blend before reinit before lora ...)


REGISTRY: dict[str, StrategySpec] = {}


def register(spec: StrategySpec) -> StrategySpec:
    if spec.name in REGISTRY:
        raise ValueError(f"strategy {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> StrategySpec:
    _ensure_loaded()
    if name not in REGISTRY:
        raise ConfigError(f"mix.{name}: unknown strategy {name!r}; available: {sorted(REGISTRY)}")
    return REGISTRY[name]


def all_specs() -> list[StrategySpec]:
    _ensure_loaded()
    return sorted(REGISTRY.values(), key=lambda s: (s.order, s.name))


def check_combination(mix: Any) -> None:
    """Raise ConfigError naming both strategies when two enabled ones do not mix."""
    names = list(mix)
    for a in names:
        for b, why in get_spec(a).conflicts.items():
            if b in names:
                raise ConfigError(f"strategies {a!r} and {b!r} cannot be combined: {why}")


def check_task(mix: Any, task: str) -> None:
    for name in mix:
        spec = get_spec(name)
        if task not in spec.tasks:
            raise ConfigError(f"strategy {name!r} does not apply to task {task!r}; it works with {list(spec.tasks)}")


def build(mix: Any) -> list[Strategy]:
    """Strategy objects for the enabled mix, in setup order."""
    specs = sorted((get_spec(n) for n in mix), key=lambda s: (s.order, s.name))
    return [s.factory(mix[s.name]) for s in specs]


def _ensure_loaded() -> None:
    import hft_core.strategies  # noqa: F401  (its __init__ imports every strategy module)
