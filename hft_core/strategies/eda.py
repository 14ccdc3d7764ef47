"""EDA (Wei & Zou 2019): synonym replacement, random insertion, swap and deletion of words.

Each augmented copy of a text gets one operation, chosen at random among the enabled
ones, applied to n = max(1, int(rate * words)) words:
    synonym  replace n distinct non-stop-words by a random WordNet synonym (every
             occurrence of the word, as in EDA's code); WordNet 3.0 through nltk,
             from installed files (hft_core.wordnet), nothing downloaded
    insert   a copy of one of the text's own words at a random position, n times
             (EDA inserts a synonym of a word; own words keep this operation, and the
             eda_small_data preset measured with it, free of WordNet)
    swap     two random words, n times
    delete   n random words (at least one word is kept)
``copies`` augmented copies per example are added to the batch with the same labels.
rate = 0 returns the batch unchanged. Draws are seeded from (seed, step, call), so a
run and its resumption see the same augmentations. Classification only: on a
chat-formatted causal-lm text the word operations would break the template.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from hft_core import wordnet
from hft_core.fields import check, coerce_numbers, param
from hft_core.strategies.base import Batch, Hooks, StrategyContext, StrategySpec, register

OPS = ("insert", "swap", "delete", "synonym")
# EDA's stop words (its code's list, abridged): never replaced by a synonym
STOP_WORDS = frozenset("""i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
her hers herself it its itself they them their theirs themselves what which who whom this that these those am is are
was were be been being have has had having do does did doing a an the and but if or because as until while of at by
for with about against between into through during before after above below to from up down in out on off over under
again further then once here there when where why how all any both each few more most other some such no nor not only
own same so than too very s t can will just don should now""".split())


@dataclass
class EDAConfig:
    rate: float = param(0.1, "Share of a text's words each operation touches (alpha in EDA; 0.1 is their default).")
    copies: int = param(1, "Augmented copies added per example (EDA used 4-16 for small data).")
    ops: str = param("insert,swap,delete", "Which operations to use, comma-separated: insert, swap, delete, "
                     "synonym (WordNet synonym replacement, EDA's fourth operation; needs nltk and the WordNet "
                     "files from requirements.txt).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(0 <= self.rate <= 1, "mix.eda.rate", self.rate, "use a share from 0 to 1, e.g. 0.1")
        check(isinstance(self.copies, int) and 1 <= self.copies <= 16, "mix.eda.copies", self.copies,
              "use a whole number from 1 to 16")
        chosen = self.op_list()
        check(bool(chosen) and all(o in OPS for o in chosen), "mix.eda.ops", self.ops,
              f"list one or more of {list(OPS)}, comma-separated")
        check("synonym" not in chosen or wordnet.available(), "mix.eda.ops", self.ops,
              f"'synonym' needs WordNet, which is not installed: {wordnet.INSTALL}, or leave 'synonym' out")

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
    elif op == "synonym":
        words = replace_synonyms(words, n, rng)
    else:
        raise ValueError(f"unknown EDA operation {op!r}; use one of {list(OPS)}")
    return " ".join(words)


def replace_synonyms(words: list[str], n: int, rng: random.Random) -> list[str]:
    """EDA's synonym replacement: up to ``n`` distinct non-stop-words (in random order) that have WordNet
    synonyms are each replaced, at every occurrence, by one of them chosen at random.

    Punctuation around a word and a capital first letter are kept ("Bank," -> "Depository financial
    institution,"). Words without synonyms are skipped, so fewer than n may change.
    """
    cores = [_core(w) for w in words]
    candidates = list(dict.fromkeys(c.lower() for c in cores if c and c.lower() not in STOP_WORDS))
    rng.shuffle(candidates)  # dict order, not set order: the shuffle is reproducible across processes
    replaced = 0
    out = list(words)
    for word in candidates:
        choices = wordnet.synonyms(word)
        if not choices:
            continue
        pick = rng.choice(choices)
        for i, (w, c) in enumerate(zip(words, cores)):
            if c.lower() == word:
                new = pick[:1].upper() + pick[1:] if c[:1].isupper() else pick
                start = w.index(c)
                out[i] = w[:start] + new + w[start + len(c):]
        replaced += 1
        if replaced >= n:
            break
    return out


def _core(word: str) -> str:
    """The word without the punctuation around it: '"Bank,' -> 'Bank'."""
    return word.strip(".,;:!?\"'()[]{}<>")


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
    summary="Add copies of each training text with a few of its words inserted, swapped, deleted or replaced "
            "by WordNet synonyms.",
    reference="Wei & Zou 2019",
    tasks=("classification",),
    order=90,
))
