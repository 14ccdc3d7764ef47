"""Knowledge distillation (Hinton et al. 2015).

    loss = (1 - r) * task + r * T^2 * KL(softmax(teacher/T) || softmax(student/T))

The teacher (any model source, typically ``run:<id>`` of a fine-tuned run) runs in
eval mode without gradients. With ``transfer_set`` (classification) every step also
distils on a batch of unlabeled training texts sampled from the whole training pool,
the "transfer set" of Hinton and DistilBERT: in a few-shot run this is where the
teacher's knowledge reaches the student. ``student_from_teacher = every_other_layer``
builds the student from the teacher by keeping blocks 0, 2, 4, ... (DistilBERT's init).

Logged terms: loss/task (already weighted by 1 - r), loss/kd, loss/kd_transfer.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hft_core import losses
from hft_core.fields import ConfigError, check, coerce_numbers, param
from hft_core.strategies import anatomy
from hft_core.strategies.base import Batch, Hooks, StrategyContext, StrategySpec, register

STUDENT_INITS = ("", "every_other_layer")


@dataclass
class KDConfig:
    teacher: str = param("", "Teacher model source, e.g. 'run:<id>' of a fine-tuned run or a local folder. "
                         "Empty = a frozen copy of the starting model (useful for causal-lm; a classifier needs "
                         "a fine-tuned teacher).")
    temperature: float = param(2.0, "Softmax temperature T: higher shows more of the teacher's 'dark knowledge' "
                               "(2 in DistilBERT, up to 5 in the Hugging Face guide).")
    ratio: float = param(0.5, "Share r of the loss that comes from the teacher; the task loss gets 1 - r.")
    transfer_set: bool = param(True, "Classification: also distil each step on a batch of unlabeled training texts "
                               "(the transfer set), so the student learns from texts whose labels it never sees.")
    transfer_batch_size: int = param(0, "Texts per transfer-set batch; 0 = the same as the training batch.")
    student_from_teacher: str = param("", "'' = the student is the run's model; 'every_other_layer' = build the "
                                      "student from the teacher, keeping every other block (DistilBERT).")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(self.temperature > 0, "mix.kd.temperature", self.temperature, "use a positive temperature, e.g. 2")
        check(0 <= self.ratio <= 1, "mix.kd.ratio", self.ratio, "use a share from 0 to 1, e.g. 0.5")
        check(isinstance(self.transfer_batch_size, int) and self.transfer_batch_size >= 0,
              "mix.kd.transfer_batch_size", self.transfer_batch_size, "use 0 (same as the batch) or a positive number")
        check(self.student_from_teacher in STUDENT_INITS, "mix.kd.student_from_teacher", self.student_from_teacher,
              f"choose one of {list(STUDENT_INITS)}")


def every_other_layer(teacher: nn.Module) -> nn.Module:
    """A copy of ``teacher`` keeping blocks 0, 2, 4, ... (DistilBERT's student init); config updated."""
    student = copy.deepcopy(teacher)
    base = anatomy.unwrap(student)
    block_name, blocks = anatomy.find_blocks(base)
    keep = list(range(0, len(blocks), 2))
    new_blocks = nn.ModuleList([blocks[i] for i in keep])
    for new_idx, blk in enumerate(new_blocks):
        for m in blk.modules():  # Llama/GPT-2 attention layers know their index (for the KV cache)
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = new_idx
    owner_name, _, attr = block_name.rpartition(".")
    owner = base.get_submodule(owner_name) if owner_name else base
    setattr(owner, attr, new_blocks)
    cfg = base.config
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(cfg, key) and isinstance(getattr(cfg, key), int):
            setattr(cfg, key, len(keep))
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def vocab_size(model: nn.Module) -> int:
    return anatomy.unwrap(model).get_input_embeddings().num_embeddings


def label_count(model: nn.Module) -> int:
    for _, mod in anatomy.head_modules(anatomy.unwrap(model)):
        outs = [m.out_features for m in mod.modules() if isinstance(m, nn.Linear)]
        if outs:
            return outs[-1]
    return int(getattr(anatomy.unwrap(model).config, "num_labels", 0) or 0)


def check_compatible(teacher: nn.Module, student: nn.Module, ctx: StrategyContext, teacher_source: str) -> None:
    """Teacher and student must share the tokenizer's vocabulary and the label space."""
    tv, sv = vocab_size(teacher), vocab_size(student)
    if tv != sv:
        raise ConfigError(f"mix.kd.teacher={teacher_source!r}: the teacher's vocabulary has {tv} tokens but the "
                          f"student ({ctx.model_source!r}) has {sv}; distillation needs the same tokenizer, so pick "
                          f"a teacher of the same model family")
    if ctx.task == "classification":
        tl, sl = label_count(teacher), label_count(student)
        if tl != sl:
            raise ConfigError(f"mix.kd.teacher={teacher_source!r}: the teacher predicts {tl} labels but the student "
                              f"({ctx.model_source!r}) has {sl} (from the data); use a teacher trained on the same "
                              f"labels")


class KnowledgeDistillation(Hooks):
    name = "kd"

    def __init__(self, cfg: KDConfig) -> None:
        self.cfg = cfg
        self.task_weight = 1.0 - cfg.ratio
        self.needs_train_texts = cfg.transfer_set  # the trainer fills ctx.train_texts only when asked
        self.teacher: nn.Module | None = None
        self.student: nn.Module | None = None

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        if self.cfg.teacher and ctx.task == "classification":
            saved = anatomy.saved_label_count(self.cfg.teacher)
            if saved == 0:
                raise ConfigError(f"mix.kd.teacher={self.cfg.teacher!r} was saved without a classification "
                                  f"head (e.g. a pretrained base model), so it has nothing to teach; use a teacher "
                                  f"fine-tuned on this data, e.g. 'run:<id>' of a finished run")
            if saved is not None and saved != ctx.num_labels:
                raise ConfigError(f"mix.kd.teacher={self.cfg.teacher!r}: the teacher predicts {saved} labels but the "
                                  f"student ({ctx.model_source!r}) has {ctx.num_labels} (from the data); use a "
                                  f"teacher trained on the same labels")
        if self.cfg.teacher:
            try:
                teacher = ctx.load_model(self.cfg.teacher)
            except ConfigError:
                raise
            except Exception as e:  # a bad source: say which field it came from
                raise ConfigError(f"mix.kd.teacher={self.cfg.teacher!r} could not be loaded: {e}") from e
        elif ctx.task == "classification":
            raise ConfigError("mix.kd.teacher='' is not valid for classification: the starting model's head is "
                              "random, so it has nothing to teach; give a fine-tuned teacher such as 'run:<id>'")
        else:
            teacher = copy.deepcopy(model)
        if self.cfg.student_from_teacher == "every_other_layer":
            model = every_other_layer(teacher)
        check_compatible(teacher, model, ctx, self.cfg.teacher or ctx.model_source)
        self.teacher = teacher.to(ctx.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.student = model  # later strategies (LoRA) modify it in place, so this stays the live model
        return model

    @torch.no_grad()
    def _teacher_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        self.teacher.eval()
        return self.teacher(**inputs).logits

    def extra_losses(self, out: Any, batch: Batch, ctx: StrategyContext) -> dict[str, torch.Tensor]:
        T, r = self.cfg.temperature, self.cfg.ratio
        t_logits = self._teacher_logits(batch.model_inputs)
        if ctx.task == "causal-lm":
            labels = batch.inputs["labels"]
            mask = losses.next_token_mask(labels)
            terms = {"kd": r * losses.kd_kl(out.logits[:, :-1], t_logits[:, :-1], T, mask)}
        else:
            terms = {"kd": r * losses.kd_kl(out.logits, t_logits, T)}
        if self.cfg.transfer_set and ctx.task == "classification" and ctx.train_texts and ctx.collate is not None:
            texts = self._transfer_texts(len(batch.texts), ctx)
            inputs = ctx.collate(texts)
            s_logits = self.student(**inputs).logits
            terms["kd_transfer"] = r * losses.kd_kl(s_logits, self._teacher_logits(inputs), T)
        return terms

    def _transfer_texts(self, batch_size: int, ctx: StrategyContext) -> list[str]:
        """A seeded sample of the training pool for this step (same texts again after a resume)."""
        n = self.cfg.transfer_batch_size or batch_size
        g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + 7919 * (ctx.step + 1))
        idx = torch.randint(0, len(ctx.train_texts), (n,), generator=g).tolist()
        return [ctx.train_texts[i] for i in idx]


register(StrategySpec(
    name="kd", config_cls=KDConfig, factory=KnowledgeDistillation,
    title="Knowledge distillation",
    summary="Train the model to match a teacher's softened predictions as well as the labels; optionally build a "
            "half-depth student from the teacher.",
    reference="Hinton et al. 2015",
    order=5,
))
