"""Loss terms and noise used by the strategies: pure tensor functions.

Nothing here knows about RunConfig, models or the trainer (STYLE.md #4): each
function takes tensors and plain numbers and returns a tensor. Shapes are given
in the docstrings; B = batch, L = sequence length, C = classes, V = vocabulary,
d = hidden width, N = number of positions a loss is averaged over.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Hinton et al. 2015 distillation term: T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean.

    student_logits, teacher_logits: (N, C) for classification, or (B, L, V) for a
    language model (then every position is one "example").
    mask: optional bool (B, L) (or (N,)) selecting the positions to average over,
    e.g. the tokens the task loss is computed on.
    Returns a scalar. The T^2 factor keeps the gradient scale independent of T: at
    large T with zero-mean logits the gradient w.r.t. s tends to (s - t) / (C * N),
    Hinton's (z - v)/N per example with N = C classes, divided by N positions here.
    The teacher logits are detached: no gradient flows into the teacher.
    """
    s, t = _positions(student_logits, mask), _positions(teacher_logits.detach(), mask)
    if s.shape[0] == 0:
        return student_logits.sum() * 0.0  # no positions: a zero that still has a graph
    T = float(temperature)
    log_p_s = F.log_softmax(s.float() / T, dim=-1)
    log_p_t = F.log_softmax(t.float() / T, dim=-1)
    # batchmean: sum over classes, mean over positions (the true KL per example)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (T * T)


def mutual_kl(logits: torch.Tensor, other_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Deep Mutual Learning term for one model: KL(p_other || p_self), other detached, batch mean.

    logits, other_logits: (N, C) or (B, L, V); mask as in ``kd_kl``. Returns a scalar.
    Same as ``kd_kl`` at T = 1; the peer's prediction is a target, not a path for gradients.
    """
    return kd_kl(logits, other_logits.detach(), 1.0, mask)


def l2sp_penalty(params: Sequence[torch.Tensor], ref_params: Sequence[torch.Tensor], beta: float) -> torch.Tensor:
    """L2-SP (Li et al. 2018): beta/2 * sum_i ||w_i - w0_i||^2.

    params: the current tensors (any shapes); ref_params: the starting point w0, same
    shapes, detached. Gradient w.r.t. w_i is beta * (w_i - w0_i). Returns a scalar
    (0 when ``params`` is empty).
    """
    params, ref_params = list(params), list(ref_params)
    if len(params) != len(ref_params):
        raise ValueError(f"l2sp_penalty: {len(params)} params but {len(ref_params)} reference tensors")
    if not params:
        return torch.zeros(())
    total = sum(((w.float() - w0.float().detach()) ** 2).sum() for w, w0 in zip(params, ref_params))
    return 0.5 * beta * total


def l2_penalty(params: Iterable[torch.Tensor], gamma: float) -> torch.Tensor:
    """Plain L2 toward zero, gamma/2 * sum_i ||w_i||^2 (L2-SP's term for the new head). Scalar."""
    params = list(params)
    if not params:
        return torch.zeros(())
    return 0.5 * gamma * sum((w.float() ** 2).sum() for w in params)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy. logits (B, L, V), labels (B, L) with -100 = ignore.

    Position t predicts token t+1; the mean is over positions whose target is not -100.
    """
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


def next_token_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, L) labels with -100 -> (B, L-1) bool: positions whose next token is trained on."""
    return labels[:, 1:] != -100


def masked_lm_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, prob: float, mask_token_id: int,
                   vocab_size: int, special_ids: Sequence[int] = (),
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption (Devlin et al. 2019).

    input_ids, attention_mask: (B, L). Each real, non-special token is chosen with
    probability ``prob``; of the chosen, 80% become [MASK], 10% a random token, 10%
    stay. Returns (corrupted input_ids (B, L), labels (B, L)) where labels hold the
    original token at chosen positions and -100 elsewhere. At least one token per
    batch is chosen when any is eligible, so the loss is never an empty mean.
    Random draws come from ``generator`` (on the CPU) for reproducibility.
    """
    ids_cpu = input_ids.detach().cpu()
    eligible = attention_mask.detach().cpu().bool()
    for sid in special_ids:
        eligible &= ids_cpu != sid
    u = torch.rand(ids_cpu.shape, generator=generator)
    chosen = (u < prob) & eligible
    if not chosen.any() and eligible.any():
        first = eligible.flatten().nonzero()[0, 0]
        chosen.view(-1)[first] = True
    labels = torch.where(chosen, ids_cpu, torch.full_like(ids_cpu, -100))
    v = torch.rand(ids_cpu.shape, generator=generator)
    to_mask = chosen & (v < 0.8)
    to_random = chosen & (v >= 0.8) & (v < 0.9)
    random_ids = torch.randint(0, vocab_size, ids_cpu.shape, generator=generator)
    corrupted = torch.where(to_mask, torch.full_like(ids_cpu, mask_token_id), ids_cpu)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted.to(input_ids.device), labels.to(input_ids.device)


def neftune_noise(embeddings: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """NEFTune (Jain et al. 2023) noise for input embeddings (B, L, d): uniform in [-b, b],
    b = alpha / sqrt(L*d), same shape, dtype and device. L is the padded length, as in the
    paper's code. alpha = 0 gives exact zeros.
    """
    B, L, d = embeddings.shape
    bound = alpha / math.sqrt(L * d)
    if alpha == 0:
        return torch.zeros_like(embeddings)
    u = torch.rand(embeddings.shape, generator=generator, device=generator.device if generator else embeddings.device)
    return ((u * 2 - 1) * bound).to(device=embeddings.device, dtype=embeddings.dtype)


def mixout_weight(weight: torch.Tensor, weight_pre: torch.Tensor, p: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Mixout (Lee et al. 2020): ((1-M)*w_pre + M*w - p*w_pre) / (1-p), M ~ Bernoulli(1-p) elementwise.

    weight, weight_pre: same shape (any). Returns a tensor of that shape whose
    expectation over M is ``weight``; gradient flows to ``weight`` where M = 1.
    """
    if p == 0:
        return weight
    keep = torch.rand(weight.shape, generator=generator, device=weight.device) >= p  # M = 1 with prob 1-p
    mixed = torch.where(keep, weight, weight_pre)
    return (mixed - p * weight_pre) / (1 - p)


def _positions(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, L, V) -> (N, V) over masked positions; (N, C) passes through (masked if a mask is given)."""
    if logits.dim() == 2:
        return logits if mask is None else logits[mask.reshape(-1).bool()]
    flat = logits.reshape(-1, logits.shape[-1])
    return flat if mask is None else flat[mask.reshape(-1).bool()]
