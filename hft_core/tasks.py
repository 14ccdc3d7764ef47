"""Tasks: how examples become a batch, what the task loss is, how a model is evaluated.

Two tasks:
    classification  examples {"text", "label"}; loss = cross-entropy on the logits;
                    eval = accuracy, macro-F1, ROC-AUC (binary or one-vs-rest), loss,
                    plus a confusion matrix in the report.
    causal-lm       examples {"prompt", "response"} (formatted with the tokenizer's chat
                    template when it has one; only the response is trained on) or
                    {"text"}; loss = next-token cross-entropy; eval = loss, perplexity,
                    plus a few greedy generations in the report.
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

from hft_core.losses import causal_lm_loss
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


TASKS = {"classification": ClassificationTask(), "causal-lm": CausalLMTask()}


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
