"""Model cards: the training settings each model source is known to work with.

A pretrained model and a random one want learning rates ten times apart: MiniLM-L6
fine-tuned at the quick demo's 1e-3 (right for a tiny random BERT) sees its training
loss go *up*. So every model source gets a card with recommended settings, and a
config that names a model without an explicit ``lr`` (the CLI's ``--set model=...``,
the Train form when the model changes) takes the card's values.

    model_card(source)                 the card of a source (bundled, tiny, hub, folder, run)
    recommended(cfg)                   {field: value} the card gives this config (LoRA-aware)
    apply_model_card(cfg, explicit)    those values, except fields the user set; + notes to show
    lr_warning(cfg)                    a line when lr is far outside the range for that kind of model

Where the numbers come from (each card's ``evidence`` says it again):

    MiniLM-L6       lr 1e-4: presets/finetune_vs_scratch.yaml (alpha 1: 92.5 % in 40 steps) and the
                    README (0.95 after 60 steps on 200 articles); LoRA 1e-3: presets/lora_vs_full.yaml;
                    max_length 64, batch 16, 40 steps: the presets' base on BBC News.
    SmolLM2-135M    lr 5e-5, max_length 64, batch 8, 30 steps: presets/instruct_smollm2.yaml (eval loss
                    3.31 -> 2.43); LoRA 5e-4: the 10x rule measured on MiniLM (not measured on SmolLM2).
    tiny:* random   lr 1e-3, max_length 128, batch 16, 40 steps: the quick demo (ui/form_state.py) and the
                    students of presets/distill_student.yaml; LoRA 1e-2: the 10x rule (LoRA on a random
                    model is a demo only: there is nothing pretrained to keep).
    other sources   read from their config: a small pretrained encoder (<= 512 wide) as MiniLM; a larger
                    one 3e-5 (Devlin et al. 2019 fine-tune BERT at 2e-5..5e-5); a pretrained decoder
                    <= 1024 wide as SmolLM2; a larger one 2e-5, LoRA 2e-4 (Dettmers et al. 2023, QLoRA);
                    a model 128 wide or less is treated as a random tiny model. A run:<id> checkpoint
                    gets the card of the model that run started from (a run from scratch, alpha 0: random).

With LoRA every card's lr is multiplied by the strategy table's factor (10x, hft_core/recommendations.py,
which cites the LoRA paper and this lab's LoRA preset): the LoRA rates above follow from it.

No weights are read: only configs (``models.describe``) and run_config.yaml files.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hft_core import baselines, home, recommendations
from hft_core.config import RunConfig

PRETRAINED_ENCODER, PRETRAINED_DECODER, RANDOM = "pretrained encoder", "pretrained decoder", "random"
CARD_FIELDS = ("lr", "max_length", "batch_size", "max_steps")  # what a card sets (in this order)
DEMO_DATA = ("bundled:bbc-news", "bundled:qa")  # the card's step count is for these; other data keeps its own
TINY_WIDTH = 128          # a model this wide or narrower is treated as random/tiny, whatever its source says
# How far from the recommendation lr may go before a warning: a pretrained model is hurt
# by a rate ~10x too high (MiniLM at 1e-3: loss 1.61 -> 1.66 in 4 steps, issue 13), a
# random one tolerates a wider band.
PRETRAINED_BAND = (1 / 10, 5.0)
RANDOM_BAND = (1 / 10, 10.0)


@dataclass(frozen=True)
class ModelCard:
    """Recommended settings for one model source, and where they come from."""

    source: str
    title: str                # "MiniLM-L6", shown in notes: "recommended for MiniLM-L6"
    kind: str                 # PRETRAINED_ENCODER | PRETRAINED_DECODER | RANDOM
    lr: float                 # full fine-tuning (with LoRA: ``lora_lr``, from hft_core/recommendations.py)
    max_length: int
    batch_size: int
    max_steps: int            # on the demo data (bundled BBC News / Q/A)
    evidence: str             # where the numbers come from

    @property
    def lora_lr(self) -> float:
        """With mix.lora on: the strategy table's factor (10x) on the full fine-tuning rate."""
        return recommendations.strategy_lr(self.lr, {"lora"})

    def lr_for(self, lora: bool) -> float:
        return self.lora_lr if lora else self.lr

    def lr_range(self, lora: bool) -> tuple[float, float]:
        """(low, high): outside it ``lr_warning`` speaks up."""
        lo, hi = RANDOM_BAND if self.kind == RANDOM else PRETRAINED_BAND
        lr = self.lr_for(lora)
        return lr * lo, lr * hi


MINILM = dict(title="MiniLM-L6", kind=PRETRAINED_ENCODER, lr=1e-4, max_length=64, batch_size=16,
              max_steps=40, evidence="presets/finetune_vs_scratch.yaml (lr 1e-4: 92.5% in 40 steps), "
              "presets/lora_vs_full.yaml (LoRA at 1e-3), README (0.95 after 60 steps)")
SMOLLM2 = dict(title="SmolLM2-135M", kind=PRETRAINED_DECODER, lr=5e-5, max_length=64, batch_size=8,
               max_steps=30, evidence="presets/instruct_smollm2.yaml (lr 5e-5: eval loss 3.31 -> 2.43 in 30 "
               "steps); LoRA lr by the 10x rule measured on MiniLM")
TINY = dict(kind=RANDOM, lr=1e-3, max_length=128, batch_size=16, max_steps=40,
            evidence="the quick demo and presets/distill_student.yaml (random 2-layer models at lr 1e-3)")
BASELINE = dict(kind=baselines.KIND, lr=1e-3, max_length=128, batch_size=16, max_steps=60,
                evidence="not a neural network (hft_core/baselines.py): no steps, learning rate or batch")
BIG_ENCODER = dict(kind=PRETRAINED_ENCODER, lr=3e-5, max_length=128, batch_size=16, max_steps=60,
                   evidence="BERT's fine-tuning range 2e-5..5e-5 (Devlin et al. 2019); LoRA by the 10x rule")
BIG_DECODER = dict(kind=PRETRAINED_DECODER, lr=2e-5, max_length=128, batch_size=8, max_steps=60,
                   evidence="usual full fine-tuning rate for decoders over 135M; LoRA 2e-4 as in QLoRA "
                   "(Dettmers et al. 2023)")
ENCODER_NAMES = re.compile(r"bert|minilm|electra|deberta|mpnet|e5-|bge-|roberta|albert", re.I)
DECODER_NAMES = re.compile(r"gpt|llama|smol|qwen|mistral|phi|gemma|opt-|pythia|falcon|bloom", re.I)


def model_card(source: str, _depth: int = 0) -> ModelCard:
    """The card of ``source``; never raises for a well-formed source string (unknown: a generic card)."""
    s = (source or "").strip()
    if baselines.is_baseline(s):
        return ModelCard(source=s, title=s.split(":", 1)[1], **BASELINE)
    if s == "bundled:minilm-l6":
        return ModelCard(source=s, **MINILM)
    if s == "bundled:smollm2-135m":
        return ModelCard(source=s, **SMOLLM2)
    if s.startswith("tiny:"):
        what = "GPT-2" if "gpt" in s else "BERT"
        return ModelCard(source=s, title=f"the tiny random {what}", **TINY)
    if s.startswith("run:"):
        return _run_card(s, _depth)
    return _described_card(s)


def _run_card(source: str, depth: int) -> ModelCard:
    """A run's checkpoint: the card of the model that run started from (found in its run_config.yaml)."""
    run_id = source[4:].strip()
    cfg = _run_config(run_id)
    if cfg is None or depth > 4:
        return dataclasses.replace(_described_card(source), source=source)
    origin = str(cfg.get("model", ""))
    blend = (cfg.get("mix") or {}).get("blend") or {}
    if isinstance(blend, dict) and blend.get("mode", "blend") == "blend" and float(blend.get("alpha", 1.0)) == 0.0:
        return ModelCard(source=source, title=f"run {run_id} (trained from scratch)", **TINY)
    card = model_card(origin, depth + 1)
    return dataclasses.replace(card, source=source, title=f"run {run_id} ({card.title})",
                               evidence=f"the card of {origin}, which run {run_id} started from: {card.evidence}")


def _run_config(run_id: str) -> dict[str, Any] | None:
    for path in (home.run_dir(run_id) / "run_config.yaml", home.checkpoint_dir(run_id) / "run_config.yaml"):
        try:
            d = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(d, dict):
            return d
    return None


def _described_card(source: str) -> ModelCard:
    """hub:<id>, a folder, or a run without a readable config: decided by the model's config, else its name."""
    from hft_core import models

    info: dict[str, Any] = {}
    try:
        info = models.describe(source)
    except Exception:  # no hub, a missing folder: the name is all there is (the run itself says what is wrong)
        info = {}
    name = source.split(":", 1)[-1].rstrip("/").split("/")[-1] or source
    hidden = info.get("hidden") or 0
    kind = info.get("kind") or ("decoder" if DECODER_NAMES.search(source) else
                                "encoder" if ENCODER_NAMES.search(source) else "")
    width = f", {hidden} wide" if hidden else ""
    if hidden and hidden <= TINY_WIDTH:
        return ModelCard(source=source, title=f"{name} (a tiny model{width})", **TINY)
    if kind == "decoder":
        base = SMOLLM2 if hidden and hidden <= 1024 else BIG_DECODER
        fields = {k: v for k, v in base.items() if k != "title"}
        return ModelCard(source=source, title=f"{name} (a pretrained decoder{width})", **fields)
    fields = {k: v for k, v in (MINILM if hidden and hidden <= 512 else BIG_ENCODER).items() if k != "title"}
    guess = "" if kind else "; its config could not be read, so treated as a pretrained encoder"
    return ModelCard(source=source, title=f"{name} (a pretrained encoder{width})",
                     **{**fields, "evidence": fields["evidence"] + guess})


def has_lora(cfg: RunConfig) -> bool:
    return "lora" in cfg.mix


def recommended(cfg: RunConfig, card: ModelCard | None = None) -> dict[str, Any]:
    """The card's value of each field in CARD_FIELDS for this config (lr: LoRA-aware; steps: demo data only)."""
    return recommended_values(card or model_card(cfg.model), lora=has_lora(cfg), data=cfg.data)


def recommended_values(card: ModelCard, *, lora: bool, data: str) -> dict[str, Any]:
    """{field: value} of ``card`` for a run with or without LoRA on ``data`` (max_steps only for demo data)."""
    if card.kind == baselines.KIND:
        return {}   # fitted once: nothing of a training recipe applies
    values: dict[str, Any] = {"lr": card.lr_for(lora), "max_length": card.max_length, "batch_size": card.batch_size}
    if data in DEMO_DATA:
        values["max_steps"] = card.max_steps
    return values


def apply_model_card(cfg: RunConfig, explicit: set[str] | frozenset[str] = frozenset()) -> tuple[RunConfig, list[str]]:
    """``cfg`` with its model card's settings for every card field not in ``explicit``, and the notes to show.

    A note per field changed, e.g. "lr set to 1e-4, recommended for MiniLM-L6"; a field the user set
    whose value differs from the card gets a note too ("lr 0.003 kept (set explicitly); recommended
    for MiniLM-L6: 1e-4"), so nothing is overwritten, or kept, silently.
    """
    card = model_card(cfg.model)
    rec = recommended(cfg, card)
    changes: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in rec.items():
        current = getattr(cfg, name)
        if _same(current, value):
            continue
        if name in explicit:
            notes.append(f"{name} {fmt(current)} kept (set explicitly); recommended for {card.title}: {fmt(value)}")
        else:
            changes[name] = value
            notes.append(f"{name} set to {fmt(value)}, recommended for {card.title}" +
                         (" with LoRA" if name == "lr" and has_lora(cfg) else ""))
    if not changes:
        return cfg, notes
    if "max_steps" in changes and cfg.warmup_steps >= changes["max_steps"] and "warmup_steps" not in explicit:
        changes["warmup_steps"] = 0
    return dataclasses.replace(cfg, **changes), notes


def lr_warning(cfg: RunConfig) -> str | None:
    """One line when ``cfg.lr`` is far outside the range for its kind of model, else None."""
    card = model_card(cfg.model)
    if card.kind == baselines.KIND:
        return None
    lora = has_lora(cfg)
    lo, hi = card.lr_range(lora)
    rec = card.lr_for(lora)
    what = f"{card.title}{' with LoRA' if lora else ''}"
    if cfg.lr > hi:
        why = ("a pretrained model forgets what it knew and the loss may go up" if card.kind != RANDOM
               else "training may diverge")
        return (f"lr {fmt(cfg.lr)} is {cfg.lr / rec:.0f}x the {fmt(rec)} recommended for {what} ({card.kind}): "
                f"{why}; use about {fmt(rec)}.")
    if cfg.lr < lo:
        return (f"lr {fmt(cfg.lr)} is {rec / cfg.lr:.0f}x below the {fmt(rec)} recommended for {what} "
                f"({card.kind}): the curves will barely move in {cfg.max_steps} steps; use about {fmt(rec)}.")
    return None


def fmt(v: Any) -> str:
    """1e-4 for learning rates (not 0.0001), plain numbers otherwise."""
    if isinstance(v, float) and v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
        mantissa, exp = f"{v:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b
