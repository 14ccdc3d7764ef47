"""Tasks: how examples become a batch, what the task loss is, how a model is evaluated.

Three tasks:
    classification  examples {"text", "label"}; loss = cross-entropy on the logits;
                    eval = accuracy, macro-F1, ROC-AUC (binary or one-vs-rest), loss,
                    plus a confusion matrix in the report.
    causal-lm       examples {"prompt", "response"} (formatted with the tokenizer's chat
                    template when it has one; only the response is trained on) or
                    {"text"} (plain unlabelled text: pretraining, every token trained on);
                    loss = next-token cross-entropy; eval = loss, perplexity,
                    plus a few greedy generations in the report.
    masked-lm       examples {"text"} (unlabelled), encoders only; BERT's masking (``mask_tokens``:
                    15% of the non-special tokens, of those 80% [MASK], 10% a random token,
                    10% unchanged); loss = cross-entropy on the masked positions only;
                    eval = loss, perplexity and token accuracy on a fixed masking of the eval
                    texts (the same masks at every eval, so the curve compares steps), plus a
                    few fill-in-the-blank samples in the report.
    contrastive     examples {"text"} (unlabelled articles), encoders only; SimCSE/InfoNCE-style
                    (Gao et al. 2021; van den Oord et al. 2018): two random token windows of one
                    article are a positive pair, the other articles of the batch its negatives;
                    each window is mean-pooled over its tokens (attention-masked), and the loss is
                    the symmetric cross-entropy of cosine similarity / tau (tau = 0.1) against the
                    matching pair (``info_nce_loss``); eval = loss and retrieval accuracy (how often
                    a window's nearest other window is from its own article) on fixed windows of
                    the eval articles. It asks for what a topic classifier needs (which article a
                    passage comes from) and learns from every token, where masked-LM first sits on
                    its word-frequency plateau; masked-LM stays the BERT recipe.
Metrics come from scikit-learn (``evaluate`` would download its metric code).
"""
from __future__ import annotations

import math
import threading
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from hft_core.losses import causal_lm_loss, masked_lm_mask
from hft_core.models import MLM_POSITIONS, PREDICTS_ONLY_MASKED
from hft_core.strategies.base import Batch

# ---- tokenization, once per distinct text -------------------------------------------------------
# Each text is tokenized once per tokenizer and kept as int32 ids (what HF users do with
# ``dataset.map`` before Trainer): epochs after the first and every eval reuse them. Texts that
# augmentation changed are new texts and get tokenized when they come. ``warm`` fills the cache
# in one batched call before the loop. Bounded: past CACHE_LIMIT texts the cache starts over.
CACHE_LIMIT = 200_000
_CACHES: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _cache(tokenizer: Any, max_length: int, special: bool) -> dict[str, torch.Tensor]:
    with _CACHE_LOCK:
        per_tok = _CACHES.setdefault(tokenizer, {})
        cache = per_tok.setdefault((max_length, special), {})
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        return cache


def token_ids(tokenizer: Any, texts: Sequence[str], max_length: int, special: bool = True) -> list[torch.Tensor]:
    """Token ids of each text (truncated to ``max_length``), tokenizing only texts not seen before."""
    cache = _cache(tokenizer, max_length, special)
    new = [t for t in dict.fromkeys(texts) if t not in cache]
    if new:
        enc = tokenizer(new, truncation=True, max_length=max_length, add_special_tokens=special)
        for t, ids in zip(new, enc["input_ids"]):
            cache[t] = torch.tensor(ids, dtype=torch.int32)
    return [cache[t] for t in texts]


def pad(tokenizer: Any, ids: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), (B, longest), padded on the tokenizer's padding side."""
    longest = max((len(x) for x in ids), default=0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.long)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for i, x in enumerate(ids):
        span = slice(longest - len(x), longest) if left else slice(0, len(x))
        input_ids[i, span] = x
        mask[i, span] = 1
    return input_ids, mask


@dataclass
class EvalReport:
    metrics: dict[str, float]                       # flat floats: "accuracy", "loss", ...
    confusion: list[list[int]] | None = None        # classification: rows = true, cols = predicted
    label_names: list[str] = field(default_factory=list)
    samples: list[dict[str, str]] = field(default_factory=list)  # causal-lm: prompt, generated, reference


class ClassificationTask:
    name = "classification"

    def make_batch(self, examples: Sequence[dict], tokenizer: Any) -> Batch:
        texts = [e["text"] for e in examples]
        return Batch(texts=texts, labels=torch.tensor([int(e["label"]) for e in examples], dtype=torch.long))

    def collate(self, tokenizer: Any, batch: Batch, max_length: int, device: torch.device) -> dict[str, torch.Tensor]:
        input_ids, mask = pad(tokenizer, token_ids(tokenizer, batch.texts, max_length))
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}

    def warm(self, tokenizer: Any, examples: Sequence[dict], max_length: int) -> None:
        """Tokenize ``examples`` now, in one batched call, so the steps that use them need not."""
        token_ids(tokenizer, self.make_batch(examples, tokenizer).texts, max_length)

    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        """Cross-entropy of logits (B, C) against labels (B,)."""
        return F.cross_entropy(out.logits.float(), batch.labels.to(out.logits.device))

    @torch.no_grad()
    def evaluate(self, model, tokenizer, examples: Sequence[dict], *, batch_size: int, max_length: int,
                 device: torch.device, label_names: Sequence[str] = (), autocast=None,
                 num_samples: int = 0) -> EvalReport:
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

        was_training = model.training
        model.eval()
        all_logits, all_labels = [], []
        for i in range(0, len(examples), batch_size):
            batch = self.make_batch(examples[i:i + batch_size], tokenizer)
            inputs = self.collate(tokenizer, batch, max_length, device)
            with autocast if autocast is not None else nullcontext():
                logits = model(**inputs).logits.float()
            all_logits.append(logits.cpu())
            all_labels.append(batch.labels)
        model.train(was_training)
        logits = torch.cat(all_logits)
        labels = torch.cat(all_labels)
        probs = logits.softmax(-1).numpy()
        pred = probs.argmax(-1)
        y = labels.numpy()
        n_classes = logits.shape[-1]
        metrics = {
            "loss": F.cross_entropy(logits, labels).item(),
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)), zero_division=0)),
        }
        present = sorted(set(y.tolist()))
        if len(present) == n_classes and n_classes >= 2:  # ROC-AUC needs every class among the true labels
            if n_classes == 2:
                metrics["roc_auc"] = float(roc_auc_score(y, probs[:, 1]))
            else:
                metrics["roc_auc"] = float(roc_auc_score(y, probs, multi_class="ovr", labels=list(range(n_classes))))
        cm = confusion_matrix(y, pred, labels=list(range(n_classes))).tolist()
        return EvalReport(metrics, confusion=cm, label_names=list(label_names))


class CausalLMTask:
    name = "causal-lm"

    def format(self, example: dict, tokenizer: Any) -> tuple[str, str]:
        """(full text, prompt part). Only tokens after the prompt part are trained on."""
        if "text" in example and "prompt" not in example:
            return example["text"] + (tokenizer.eos_token or ""), ""
        prompt, response = example["prompt"], example["response"]
        if getattr(tokenizer, "chat_template", None):
            user = [{"role": "user", "content": prompt}]
            head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
            if full.startswith(head):
                return full, head
            return head + response + (tokenizer.eos_token or ""), head
        head = f"Question: {prompt}\nAnswer:"
        return f"{head} {response}{tokenizer.eos_token or ''}", head

    def make_batch(self, examples: Sequence[dict], tokenizer: Any) -> Batch:
        pairs = [self.format(e, tokenizer) for e in examples]
        return Batch(texts=[p[0] for p in pairs], prompts=[p[1] for p in pairs])

    def collate(self, tokenizer: Any, batch: Batch, max_length: int, device: torch.device) -> dict[str, torch.Tensor]:
        """input_ids/attention_mask (B, L) and labels (B, L): -100 on padding and on the prompt."""
        input_ids, mask = pad(tokenizer, token_ids(tokenizer, batch.texts, max_length, special=False))
        labels = input_ids.clone()
        labels[mask == 0] = -100
        if batch.prompts:
            for i, prompt in enumerate(batch.prompts):
                if prompt and batch.texts[i].startswith(prompt):
                    n = len(token_ids(tokenizer, [prompt], max_length, special=False)[0])
                    first = int(mask[i].argmax())  # 0 unless padded on the left
                    labels[i, first:first + n] = -100
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}

    def warm(self, tokenizer: Any, examples: Sequence[dict], max_length: int) -> None:
        """Tokenize ``examples`` now, in one batched call, so the steps that use them need not."""
        token_ids(tokenizer, self.make_batch(examples, tokenizer).texts, max_length, special=False)

    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        """Mean next-token cross-entropy over positions whose label is not -100."""
        return causal_lm_loss(out.logits, batch.inputs["labels"])

    @torch.no_grad()
    def evaluate(self, model, tokenizer, examples: Sequence[dict], *, batch_size: int, max_length: int,
                 device: torch.device, label_names: Sequence[str] = (), autocast=None,
                 num_samples: int = 3) -> EvalReport:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for i in range(0, len(examples), batch_size):
            batch = self.make_batch(examples[i:i + batch_size], tokenizer)
            inputs = self.collate(tokenizer, batch, max_length, device)
            labels = inputs.pop("labels")
            with autocast if autocast is not None else nullcontext():
                logits = model(**inputs).logits.float()
            n = int((labels[:, 1:] != -100).sum())
            if n:
                total += causal_lm_loss(logits, labels).item() * n
                count += n
        loss = total / max(count, 1)
        samples = generate_samples(model, tokenizer, self, examples[:num_samples], device) if num_samples else []
        model.train(was_training)
        return EvalReport({"loss": loss, "perplexity": math.exp(min(loss, 50.0))}, samples=samples)


@torch.no_grad()
def generate_samples(model, tokenizer, task: CausalLMTask, examples: Sequence[dict], device: torch.device,
                     max_new_tokens: int = 40) -> list[dict[str, str]]:
    """Greedy answers to the first few prompts: what the model says, next to the reference."""
    out = []
    for e in examples:
        if "prompt" not in e:
            continue
        _, head = task.format(e, tokenizer)
        ids = tokenizer(head, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        text = tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip()
        out.append({"prompt": e["prompt"], "generated": text, "reference": e.get("response", "")})
    return out


# ---- masked-LM pretraining (encoders) --------------------------------------------------------------
MASK_PROB = 0.15             # BERT's share of tokens chosen for prediction (Devlin et al. 2019)
EVAL_MASK_SEED = 20_240_601  # eval texts are masked from this seed + their position: the same masks every eval


def mask_tokens(input_ids: torch.Tensor, tokenizer: Any, *, prob: float = MASK_PROB,
                generator: torch.Generator | None = None,
                special_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption of a batch of token ids (Devlin et al. 2019, section 3.1).

    input_ids: (B, L) int64. Every token that is neither special nor padding is chosen
    with probability ``prob``; of the chosen, 80% become [MASK], 10% a random token of the
    vocabulary, 10% stay as they are (so the model cannot learn that only [MASK] positions
    matter). At least one token per batch is chosen when any is eligible (never an empty loss).
    Returns (masked input_ids (B, L), labels (B, L)): labels hold the original id at chosen
    positions and -100 everywhere else, the ignore index of ``F.cross_entropy``.
    special_mask: (B, L) bool, True where a token must never be chosen; default: the
    tokenizer's special ids ([CLS], [SEP], [PAD], [MASK], [UNK]). Padding (the pad id) is
    never chosen either way.
    generator: a CPU ``torch.Generator``; the same seed gives the same masks (the trainer
    seeds one per micro-batch from (seed, micro-step, rank), so a resumed run replays them).
    None draws from torch's global generator.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ValueError(f"mask_tokens: input_ids must be an integer tensor of shape (batch, length), got "
                         f"{getattr(input_ids, 'dtype', type(input_ids).__name__)} {tuple(getattr(input_ids, 'shape', ()))}")
    if not 0 < prob <= 1:
        raise ValueError(f"mask_tokens: prob={prob!r} is not valid: use a share between 0 and 1, e.g. 0.15")
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ValueError(f"mask_tokens: the tokenizer {type(tokenizer).__name__} has no [MASK] token; masked-LM "
                         "needs an encoder's tokenizer (BERT-style), e.g. tiny:bert or bundled:minilm-l6")
    ids = input_ids.detach().cpu().long()
    if special_mask is None:
        special = torch.isin(ids, torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long))
    else:
        if special_mask.shape != input_ids.shape:
            raise ValueError(f"mask_tokens: special_mask has shape {tuple(special_mask.shape)} but input_ids "
                             f"{tuple(input_ids.shape)}; give one bool per token")
        special = special_mask.detach().cpu().bool()
    if tokenizer.pad_token_id is not None:
        special = special | (ids == tokenizer.pad_token_id)
    masked, labels = masked_lm_mask(ids, ~special, prob=prob, mask_token_id=mask_id, vocab_size=len(tokenizer),
                                    generator=generator)
    return masked.to(input_ids.device), labels.to(input_ids.device)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions. labels (B, L) with -100 = not masked;
    logits (B, L, V), or (N, V) already taken at the N masked positions in row-major order
    (what a model loaded for masked-lm returns when given ``mlm_positions``).
    """
    chosen = labels != -100
    if not bool(chosen.any()):
        return logits.sum() * 0.0  # nothing masked: a zero that still has a graph
    picked = logits if logits.dim() == 2 else logits[chosen]
    return F.cross_entropy(picked.float(), labels[chosen])


class MaskedLMTask:
    name = "masked-lm"

    def make_batch(self, examples: Sequence[dict], tokenizer: Any) -> Batch:
        return Batch(texts=[e["text"] for e in examples])

    def collate(self, tokenizer: Any, batch: Batch, max_length: int, device: torch.device) -> dict[str, torch.Tensor]:
        """input_ids (B, L) with BERT's masking applied, attention_mask (B, L), labels (B, L): -100 = not
        masked, and mlm_positions (B, L) bool = labels != -100, so the model computes its vocabulary
        logits only there (see models.MLM_POSITIONS).

        The masks are drawn from ``batch.seed`` (set by the trainer from (seed, micro-step,
        rank)): a pure function of them, so resume replays the same masks.
        """
        input_ids, mask = pad(tokenizer, token_ids(tokenizer, batch.texts, max_length))
        g = torch.Generator().manual_seed(batch.seed) if batch.seed is not None else None
        masked, labels = mask_tokens(input_ids, tokenizer, generator=g)
        return {"input_ids": masked.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
                MLM_POSITIONS: (labels != -100).to(device)}

    def warm(self, tokenizer: Any, examples: Sequence[dict], max_length: int) -> None:
        """Tokenize ``examples`` now, in one batched call, so the steps that use them need not."""
        token_ids(tokenizer, self.make_batch(examples, tokenizer).texts, max_length)

    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        """Cross-entropy of the logits (B, L, V) at the masked positions only."""
        return masked_lm_loss(out.logits, batch.inputs["labels"])

    def eval_inputs(self, tokenizer: Any, examples: Sequence[dict], start: int, max_length: int
                    ) -> dict[str, torch.Tensor]:
        """The fixed masking of eval examples ``start, start+1, ...``: each text is masked on its own
        from EVAL_MASK_SEED + its position, so the masks depend neither on the step nor the batch size."""
        rows = token_ids(tokenizer, [e["text"] for e in examples], max_length)
        masked, labels = [], []
        for j, ids in enumerate(rows):
            g = torch.Generator().manual_seed(EVAL_MASK_SEED + start + j)
            m, lab = mask_tokens(ids.long()[None], tokenizer, generator=g)
            masked.append(m[0])
            labels.append(lab[0])
        input_ids, attn = pad(tokenizer, masked)
        padded_labels = torch.full(input_ids.shape, -100, dtype=torch.long)
        padded_labels[attn.bool()] = torch.cat(labels)  # row-major: each row's tokens in order, either padding side
        return {"input_ids": input_ids, "attention_mask": attn, "labels": padded_labels}

    @torch.no_grad()
    def evaluate(self, model, tokenizer, examples: Sequence[dict], *, batch_size: int, max_length: int,
                 device: torch.device, label_names: Sequence[str] = (), autocast=None,
                 num_samples: int = 3) -> EvalReport:
        was_training = model.training
        model.eval()
        total, count, correct = 0.0, 0, 0
        samples: list[dict[str, str]] = []
        for i in range(0, len(examples), batch_size):
            inputs = {k: v.to(device) for k, v in self.eval_inputs(tokenizer, examples[i:i + batch_size], i,
                                                                    max_length).items()}
            labels = inputs.pop("labels")
            chosen = labels != -100
            if getattr(model, PREDICTS_ONLY_MASKED, False):  # logits (N, V) at the masked positions only
                inputs[MLM_POSITIONS] = chosen
            with autocast if autocast is not None else nullcontext():
                logits = model(**inputs).logits.float()
            n = int(chosen.sum())
            pred = torch.full_like(labels, -1)
            if n:
                total += masked_lm_loss(logits, labels).item() * n
                count += n
                pred[chosen] = (logits if logits.dim() == 2 else logits[chosen]).argmax(-1)
                correct += int((pred[chosen] == labels[chosen]).sum())
            for r in range(min(num_samples - len(samples), len(labels))):
                samples.append(_fill_in_sample(tokenizer, inputs["input_ids"][r], labels[r], pred[r]))
        model.train(was_training)
        loss = total / max(count, 1)
        return EvalReport({"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                           "token_accuracy": correct / max(count, 1)}, samples=samples)


def _fill_in_sample(tokenizer: Any, input_ids: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor,
                    max_tokens: int = 48) -> dict[str, str]:
    """One eval text (its first ``max_tokens`` tokens) with every chosen position shown as [MASK]
    (the model saw 80% of them so, 10% as a random word, 10% unchanged), what it guessed there,
    and what was there."""
    chosen = (labels != -100).nonzero().flatten()
    chosen = chosen[chosen < max_tokens]
    shown_ids = input_ids.clone()
    shown_ids[chosen] = tokenizer.mask_token_id
    hidden = {tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id}
    tokens = tokenizer.convert_ids_to_tokens([i for i in shown_ids[:max_tokens].tolist() if i not in hidden])
    shown = tokenizer.convert_tokens_to_string(tokens).strip()
    return {"prompt": shown + (" …" if len(input_ids) > max_tokens else ""),
            "generated": ", ".join(tokenizer.convert_ids_to_tokens(pred[chosen].tolist())),
            "reference": ", ".join(tokenizer.convert_ids_to_tokens(labels[chosen].tolist()))}


# ---- contrastive pretraining (encoders) -------------------------------------------------------------
CONTRASTIVE_TAU = 0.1        # SimCSE's temperature (Gao et al. 2021 found 0.05..0.1 best)
ARTICLE_TOKENS = 4096        # an article is tokenized up to this long; its windows are drawn from all of it
EVAL_VIEW_SEED = 20_240_602  # eval windows are drawn from this seed + the article's position: the same every eval


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where the mask is 1. hidden (B, L, d), attention_mask (B, L) -> (B, d) float32.

    The mean, not [CLS]: a random encoder's [CLS] vector carries almost nothing about the text, and
    InfoNCE from [CLS] collapsed here (loss stuck at ln B, issue 19); the mean of the tokens differs
    between articles from the first step.
    """
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).float()


def info_nce_loss(a: torch.Tensor, b: torch.Tensor, tau: float = CONTRASTIVE_TAU) -> torch.Tensor:
    """Symmetric InfoNCE of two views. a, b: (B, d), row i of both from the same article.

    S = cos(a_i, b_j) / tau, (B, B); loss = (CE(S, diag) + CE(S^T, diag)) / 2: each view must pick
    its partner among the batch's B views of the other side (B - 1 negatives). Lower bound 0, ln B
    when the views say nothing about their article.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"info_nce_loss: a and b must both be (batch, dim), got {tuple(a.shape)} and {tuple(b.shape)}")
    if not tau > 0:
        raise ValueError(f"info_nce_loss: tau={tau!r} is not valid: use a positive temperature, e.g. 0.1")
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / tau
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2


def random_window(content: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``size`` consecutive ids of ``content`` (1-D) from a uniformly random start; all of it when shorter."""
    if len(content) <= size:
        return content
    start = int(torch.randint(0, len(content) - size + 1, (1,), generator=generator))
    return content[start:start + size]


def two_views(tokenizer: Any, texts: Sequence[str], max_length: int, generator: torch.Generator | None = None
              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two random windows of each text, each ``[CLS] window [SEP]`` of at most ``max_length`` ids.

    Both windows of a text are drawn independently from its whole token sequence (up to
    ARTICLE_TOKENS), so they overlap by chance only; a text shorter than a window gives two
    identical views (dropout alone tells them apart in training, as in SimCSE).
    """
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"contrastive: the tokenizer {type(tokenizer).__name__} has no [CLS]/[SEP] tokens; the "
                         "contrastive task needs an encoder's tokenizer (BERT-style), e.g. tiny:bert")
    size = max(1, max_length - 2)
    cls, sep = torch.tensor([tokenizer.cls_token_id], dtype=torch.int32), torch.tensor([tokenizer.sep_token_id],
                                                                                       dtype=torch.int32)
    first, second = [], []
    for content in token_ids(tokenizer, texts, ARTICLE_TOKENS, special=False):
        for views in (first, second):
            views.append(torch.cat([cls, random_window(content, size, generator), sep]))
    return first, second


def retrieval_accuracy(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of views whose most similar view on the other side is their own article's (both directions)."""
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T
    target = torch.arange(len(a), device=a.device)
    return float(((sim.argmax(1) == target).float().mean() + (sim.argmax(0) == target).float().mean()) / 2)


class ContrastiveTask:
    name = "contrastive"

    def __init__(self, tau: float = CONTRASTIVE_TAU) -> None:
        self.tau = tau

    def make_batch(self, examples: Sequence[dict], tokenizer: Any) -> Batch:
        return Batch(texts=[e["text"] for e in examples])

    def collate(self, tokenizer: Any, batch: Batch, max_length: int, device: torch.device) -> dict[str, torch.Tensor]:
        """input_ids / attention_mask (2B, L): rows 0..B-1 the first window of each text, B..2B-1 the second.

        The windows are drawn from ``batch.seed`` (set by the trainer from (seed, micro-step, rank)),
        so a resumed run replays them.
        """
        g = torch.Generator().manual_seed(batch.seed) if batch.seed is not None else None
        first, second = two_views(tokenizer, batch.texts, max_length, g)
        input_ids, mask = pad(tokenizer, first + second)
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}

    def warm(self, tokenizer: Any, examples: Sequence[dict], max_length: int) -> None:
        """Tokenize ``examples`` now (whole articles, windows are cut per step), in one batched call."""
        token_ids(tokenizer, self.make_batch(examples, tokenizer).texts, ARTICLE_TOKENS, special=False)

    def pooled_views(self, out: Any, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b), (B, d) each: the mean-pooled first and second windows of the batch's texts."""
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        half = len(pooled) // 2
        return pooled[:half], pooled[half:]

    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        """InfoNCE between the two windows of each text (``info_nce_loss``, tau = self.tau)."""
        a, b = self.pooled_views(out, batch.inputs["attention_mask"])
        return info_nce_loss(a, b, self.tau)

    def eval_inputs(self, tokenizer: Any, examples: Sequence[dict], start: int, max_length: int
                    ) -> dict[str, torch.Tensor]:
        """The fixed windows of eval examples ``start, start+1, ...``: each article's two windows drawn
        from EVAL_VIEW_SEED + its position, whatever the step or the batch size."""
        first, second = [], []
        for j, e in enumerate(examples):
            g = torch.Generator().manual_seed(EVAL_VIEW_SEED + start + j)
            (a,), (b,) = two_views(tokenizer, [e["text"]], max_length, g)
            first.append(a)
            second.append(b)
        input_ids, mask = pad(tokenizer, first + second)
        return {"input_ids": input_ids, "attention_mask": mask}

    @torch.no_grad()
    def evaluate(self, model, tokenizer, examples: Sequence[dict], *, batch_size: int, max_length: int,
                 device: torch.device, label_names: Sequence[str] = (), autocast=None,
                 num_samples: int = 0) -> EvalReport:
        """Loss and retrieval accuracy, each the mean over eval batches of ``batch_size`` articles weighted
        by their size (a batch is its own set of negatives, so both depend on ``batch_size``)."""
        was_training = model.training
        model.eval()
        loss_sum = acc_sum = 0.0
        count = 0
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            if len(chunk) < 2 and count:
                break  # a batch of one has no negatives: nothing to measure
            inputs = {k: v.to(device) for k, v in self.eval_inputs(tokenizer, chunk, i, max_length).items()}
            with autocast if autocast is not None else nullcontext():
                out = model(**inputs)
            a, b = self.pooled_views(out, inputs["attention_mask"])
            loss_sum += info_nce_loss(a, b, self.tau).item() * len(chunk)
            acc_sum += retrieval_accuracy(a, b) * len(chunk)
            count += len(chunk)
        model.train(was_training)
        return EvalReport({"loss": loss_sum / max(count, 1), "retrieval_accuracy": acc_sum / max(count, 1)})


TASKS = {"classification": ClassificationTask(), "causal-lm": CausalLMTask(), "masked-lm": MaskedLMTask(),
         "contrastive": ContrastiveTask()}


def get_task(name: str):
    if name not in TASKS:
        raise ValueError(f"task={name!r} is unknown; choose one of {list(TASKS)}")
    return TASKS[name]


def evaluate(model, tokenizer, task, examples: Sequence[dict], *, batch_size: int = 32, max_length: int = 128,
             device: torch.device | str = "cpu", label_names: Sequence[str] = ()) -> dict[str, float]:
    """Flat metrics of ``model`` on ``examples`` (for merge sweeps, notebooks and tests)."""
    task = get_task(task) if isinstance(task, str) else task
    return task.evaluate(model, tokenizer, examples, batch_size=batch_size, max_length=max_length,
                         device=torch.device(device), label_names=label_names, num_samples=0).metrics
