"""EDA without synonyms (Wei & Zou 2019): random insertion, swap and deletion of words.

Each augmented copy of a text gets one operation, chosen at random among the enabled
ones, applied to n = max(1, int(rate * words)) words:
    insert  a copy of one of the text's own words at a random position, n times
            (EDA inserts synonyms; WordNet is not available here, so own words)
    swap    two random words, n times
    delete  n random words (at least one word is kept)
``copies`` augmented copies per example are added to the batch with the same labels.
rate = 0 returns the batch unchanged. Draws are seeded from (seed, step, call), so a
run and its resumption see the same augmentations. Classification only: on a
chat-formatted causal-lm text the word operations would break the template.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies.base import Batch, Hooks, StrategyContext, StrategySpec, register

OPS = ("insert", "swap", "delete")


@dataclass
class EDAConfig:
    rate: float = param(0.1, "Share of a text's words each operation touches (alpha in EDA; 0.1 is their default).")
    copies: int = param(1, "Augmented copies added per example (EDA used 4-16 for small data).")
    ops: str = param("insert,swap,delete", "Which operations to use, comma-separated: insert, swap, delete.")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(0 <= self.rate <= 1, "mix.eda.rate", self.rate, "use a share from 0 to 1, e.g. 0.1")
        check(isinstance(self.copies, int) and 1 <= self.copies <= 16, "mix.eda.copies", self.copies,
              "use a whole number from 1 to 16")
        chosen = self.op_list()
        check(bool(chosen) and all(o in OPS for o in chosen), "mix.eda.ops", self.ops,
              f"list one or more of {list(OPS)}, comma-separated")

    def op_list(self) -> list[str]:
        return [o.strip() for o in str(self.ops).split(",") if o.strip()]


def augment_text(text: str, op: str, rate: float, rng: random.Random) -> str:
    """One EDA operation on ``text``'s whitespace-separated words; rate 0 returns ``text`` itself."""
    words = text.split()
    if rate == 0 or not words:
        return text
    n = max(1, int(rate * len(words)))
    if op == "insert":
        for _ in range(n):
            words.insert(rng.randint(0, len(words)), rng.choice(words))
    elif op == "swap":
        if len(words) < 2:
            return text
        for _ in range(n):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
    elif op == "delete":
        if len(words) < 2:
            return text
        drop = set(rng.sample(range(len(words)), min(n, len(words) - 1)))
        words = [w for i, w in enumerate(words) if i not in drop]
    else:
        raise ValueError(f"unknown EDA operation {op!r}; use one of {list(OPS)}")
    return " ".join(words)


def eda_batch(texts: list[str], labels: torch.Tensor | None, *, rate: float, copies: int, ops: list[str],
              rng: random.Random) -> tuple[list[str], torch.Tensor | None]:
    """texts (B) and labels (B,) -> texts (B*(1+copies)) and labels repeated: originals first, then each copy."""
    if rate == 0:
        return texts, labels
    out = list(texts)
    for _ in range(copies):
        out += [augment_text(t, rng.choice(ops), rate, rng) for t in texts]
    return out, (labels.repeat(copies + 1) if labels is not None else None)


class EDA(Hooks):
    name = "eda"

    def __init__(self, cfg: EDAConfig) -> None:
        self.cfg = cfg
        self._calls: dict[int, int] = {}

    def transform_batch(self, batch: Batch, ctx: StrategyContext) -> Batch:
        if not ctx.training or self.cfg.rate == 0:
            return batch
        call = self._calls.get(ctx.step, 0)  # micro-batches of one step (grad_accum) get different draws
        self._calls = {ctx.step: call + 1}
        rng = random.Random(f"eda-{ctx.seed}-{ctx.step}-{call}")
        texts, labels = eda_batch(batch.texts, batch.labels, rate=self.cfg.rate, copies=self.cfg.copies,
                                  ops=self.cfg.op_list(), rng=rng)
        return Batch(texts=texts, labels=labels, prompts=None)


register(StrategySpec(
    name="eda", config_cls=EDAConfig, factory=EDA,
    title="Easy data augmentation (EDA)",
    summary="Add copies of each training text with a few of its words inserted, swapped or deleted.",
    reference="Wei & Zou 2019",
    tasks=("classification",),
    order=90,
))
