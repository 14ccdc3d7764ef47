"""Eval metric values (issue 12): what the trainer's eval reports equals the textbook numbers.

Classification: a fake model returns fixed logits for each example, and the task's
``evaluate`` (the call the trainer's eval makes, batched, with the trainer's autocast) must
report accuracy, macro-F1, ROC-AUC (binary, and one-vs-rest for several classes) and the loss
that scikit-learn and a by-hand count give on those logits. Causal LM: perplexity = exp(loss),
and the loss is the token-weighted mean next-token cross-entropy over the whole eval set.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from hft_core.precision import autocast, describe_device, plan_precision
from hft_core.tasks import get_task

CPU = torch.device("cpu")


class OneTokenTokenizer:
    """Text "i" -> token ids [i + 1]: the fake model reads the example's index back from its ids."""

    pad_token_id = 0
    padding_side = "right"

    def __call__(self, texts, truncation=True, max_length=128, add_special_tokens=True):
        return {"input_ids": [[int(t) + 1] for t in texts]}


class FixedLogits(torch.nn.Module):
    """A classifier whose logits for example i are row i of a fixed table, whatever the batching."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float32)

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.table[input_ids[:, 0] - 1])


def evaluate_like_the_trainer(logits: np.ndarray, labels: list[int]) -> dict[str, float]:
    """ClassificationTask.evaluate as the trainer's ``_evaluate`` calls it (fp32 plan, batches of 4)."""
    examples = [{"text": str(i), "label": y} for i, y in enumerate(labels)]
    plan = plan_precision("fp32", describe_device(CPU))
    report = get_task("classification").evaluate(
        FixedLogits(logits), OneTokenTokenizer(), examples, batch_size=4, max_length=8, device=CPU,
        label_names=[f"c{k}" for k in range(logits.shape[1])], autocast=autocast(plan, "cpu"), num_samples=0)
    return report.metrics


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def auc_by_pairs(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC as P(score of a positive > score of a negative), ties counting 1/2 (Mann-Whitney)."""
    pos, neg = scores[positive], scores[~positive]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def macro_f1_by_hand(y: list[int], pred: np.ndarray, n_classes: int) -> float:
    f1s = []
    for c in range(n_classes):
        tp = sum(1 for t, p in zip(y, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y, pred) if t == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / n_classes


# 3 classes, 10 examples: 6 right; class 2 is predicted once wrongly and missed twice, so the
# per-class F1s differ (macro-F1 0.574 != accuracy 0.6) and no class is perfectly separable.
THREE_LOGITS = np.array([
    [2.0, 0.1, -1.0],   # y0 -> 0 right
    [1.5, 0.3, 0.2],    # y0 -> 0 right
    [0.2, 0.1, 1.1],    # y0 -> 2 wrong
    [-0.5, 2.2, 0.0],   # y1 -> 1 right
    [0.1, 1.0, 0.3],    # y1 -> 1 right
    [0.9, 0.4, 0.0],    # y1 -> 0 wrong
    [0.0, 0.2, 1.7],    # y2 -> 2 right
    [0.3, 0.8, 0.5],    # y2 -> 1 wrong
    [-1.0, 0.6, 0.4],   # y2 -> 1 wrong
    [1.2, -0.3, 0.1],   # y0 -> 0 right
])
THREE_LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]

# 2 classes, 10 examples, 3 negatives: 7 right, 2 of the 3 negatives called positive (macro-F1 0.6,
# accuracy 0.7); rows 2 and 5, a negative and a positive, tie in the positive-class score.
TWO_LOGITS = np.array([
    [1.0, -1.0], [0.0, 0.3], [0.1, 0.4], [-0.4, 0.9], [0.0, 1.5],
    [0.1, 0.4], [0.2, 0.6], [0.6, 0.1], [-1.0, 2.0], [0.4, 0.5],
])
TWO_LABELS = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("logits,labels", [(THREE_LOGITS, THREE_LABELS), (TWO_LOGITS, TWO_LABELS)],
                         ids=["three-classes", "binary"])
def test_classification_metrics_match_scikit_learn_and_hand_counts(logits, labels):
    got = evaluate_like_the_trainer(logits, labels)
    probs = softmax(logits)
    pred = probs.argmax(1)
    y = np.array(labels)
    n = logits.shape[1]

    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert got["accuracy"] == pytest.approx(float((pred == y).mean()))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["macro_f1"] == pytest.approx(macro_f1_by_hand(labels, pred, n))
    if n == 2:
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
        assert got["roc_auc"] == pytest.approx(auc_by_pairs(probs[:, 1], y == 1))
    else:  # one-vs-rest: the unweighted mean of each class's AUC against the others
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))
        assert got["roc_auc"] == pytest.approx(np.mean([auc_by_pairs(probs[:, c], y == c) for c in range(n)]))
    # the loss: mean cross-entropy, -log p(true class)
    assert got["loss"] == pytest.approx(float(np.mean(-np.log(probs[np.arange(len(y)), y]))), rel=1e-5)


def test_the_fixed_sets_are_not_degenerate():
    """Guards the fixtures above: errors in every set, macro-F1 apart from accuracy, AUC below 1."""
    for logits, labels in [(THREE_LOGITS, THREE_LABELS), (TWO_LOGITS, TWO_LABELS)]:
        got = evaluate_like_the_trainer(logits, labels)
        assert 0.5 < got["accuracy"] < 1
        assert abs(got["macro_f1"] - got["accuracy"]) > 0.01
        assert 0.5 < got["roc_auc"] < 1


def test_roc_auc_is_left_out_when_a_class_is_missing_from_the_true_labels():
    got = evaluate_like_the_trainer(THREE_LOGITS[:6], THREE_LABELS[:6])  # no true class 2
    assert "roc_auc" not in got
    assert got["accuracy"] == pytest.approx(4 / 6)


def test_causal_lm_perplexity_is_exp_of_the_token_weighted_loss():
    from hft_core.models import load_model, load_tokenizer

    tokenizer = load_tokenizer("tiny:gpt2")
    model = load_model("tiny:gpt2", "causal-lm", pretrained=True, seed=0)
    task = get_task("causal-lm")
    # texts of different lengths, so a per-batch mean would differ from the per-token mean
    examples = [{"text": "the cat sat on the mat"}, {"text": "a"},
                {"text": "one two three four five six seven eight nine ten eleven twelve"},
                {"prompt": "What is two plus two?", "response": "Four, of course."}]
    report = task.evaluate(model, tokenizer, examples, batch_size=2, max_length=32, device=CPU, num_samples=0)

    total, count = 0.0, 0  # independently: every trained token of every example, one example at a time
    model.eval()
    with torch.no_grad():
        for e in examples:
            batch = task.make_batch([e], tokenizer)
            inputs = task.collate(tokenizer, batch, 32, CPU)
            labels = inputs.pop("labels")
            logits = model(**inputs).logits.float()
            target = labels[:, 1:]
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                                 ignore_index=-100, reduction="sum")
            total += float(ce)
            count += int((target != -100).sum())
    loss = total / count

    assert report.metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert report.metrics["perplexity"] == pytest.approx(math.exp(report.metrics["loss"]), rel=1e-9)
    assert 1 < report.metrics["perplexity"] < 10 * tokenizer.vocab_size  # a random model: about the vocab size
