"""The contrastive pretraining task (hft_core/tasks.py, task "contrastive"): its loss on a fixed batch
against a hand computation, the InfoNCE property (identical views beat shuffled pairs), its windows,
and a tiny run whose checkpoint fine-tunes for classification from exactly its encoder."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hft_core import home, models
from hft_core.config import RunConfig
from hft_core.sinks import MemorySink
from hft_core.strategies.base import Batch
from hft_core.tasks import (CONTRASTIVE_TAU, ContrastiveTask, get_task, info_nce_loss, mean_pool, two_views)
from hft_core.trainer import train

RUN_ID = "contrastive-tiny-pretrain"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def hand_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean, one row and one token at a time."""
    rows = []
    for i in range(hidden.shape[0]):
        total, n = np.zeros(hidden.shape[2]), 0
        for t in range(hidden.shape[1]):
            if mask[i, t]:
                total += hidden[i, t]
                n += 1
        rows.append(total / n)
    return np.array(rows)


def hand_info_nce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """(CE over rows + CE over columns) / 2 of cos(a_i, b_j) / tau, with explicit loops."""
    n = len(a)
    sim = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            sim[i, j] = a[i] @ b[j] / (np.linalg.norm(a[i]) * np.linalg.norm(b[j])) / tau
    row = sum(math.log(sum(math.exp(sim[i, j]) for j in range(n))) - sim[i, i] for i in range(n)) / n
    col = sum(math.log(sum(math.exp(sim[j, i]) for j in range(n))) - sim[i, i] for i in range(n)) / n
    return (row + col) / 2


def test_the_task_loss_on_a_fixed_batch_equals_the_hand_computation():
    g = torch.Generator().manual_seed(7)
    B, L, d = 3, 5, 4
    hidden = torch.randn(2 * B, L, d, generator=g, dtype=torch.float64)
    mask = torch.ones(2 * B, L, dtype=torch.long)
    mask[1, 3:] = 0     # padded rows: their padding must not count in the mean
    mask[4, 2:] = 0
    hidden[mask == 0] = 100.0  # a padded position that leaked into the pool would change the loss a lot
    batch = Batch(texts=["x"] * B, inputs={"input_ids": torch.zeros(2 * B, L, dtype=torch.long),
                                            "attention_mask": mask})
    loss = ContrastiveTask().loss(SimpleNamespace(last_hidden_state=hidden), batch)

    pooled = hand_pool(hidden.numpy(), mask.numpy())
    expected = hand_info_nce(pooled[:B], pooled[B:], tau=0.1)
    assert CONTRASTIVE_TAU == 0.1
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert mean_pool(hidden, mask).numpy() == pytest.approx(pooled, rel=1e-6)
    assert float(info_nce_loss(torch.tensor(pooled[:B]), torch.tensor(pooled[B:]), tau=0.5)) == pytest.approx(
        hand_info_nce(pooled[:B], pooled[B:], tau=0.5), rel=1e-6)


def test_identical_views_of_distinct_articles_beat_shuffled_pairs():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = torch.randn(8, 16, generator=g)
        shuffled = a[torch.roll(torch.arange(8), 1)]  # every row paired with another article's view
        assert float(info_nce_loss(a, a)) < float(info_nce_loss(a, shuffled))
    same = torch.ones(8, 16)   # every view alike: nothing tells the articles apart
    assert float(info_nce_loss(same, same)) == pytest.approx(math.log(8), rel=1e-6)


def test_through_a_tiny_bert_identical_windows_beat_windows_of_other_articles():
    tok = models.load_tokenizer("tiny:bert")
    model = models.load_model("tiny:bert", "contrastive", seed=0).eval()
    texts = [f"article {i}: " + " ".join(w * (i + 1) for w in ("market", "goal", "vote", "film", "chip")) + f" {i}"
             for i in range(6)]
    (views, _) = two_views(tok, texts, 32, torch.Generator().manual_seed(1))
    task = get_task("contrastive")

    def loss_of(first, second):
        from hft_core.tasks import pad
        ids, mask = pad(tok, first + second)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask)
        return float(task.loss(out, Batch(texts=texts, inputs={"input_ids": ids, "attention_mask": mask})))

    same = loss_of(views, views)
    shuffled = loss_of(views, views[1:] + views[:1])
    assert same < shuffled, (same, shuffled)


def test_two_views_are_seeded_windows_of_the_article():
    tok = models.load_tokenizer("tiny:bert")
    text = " ".join(f"word{i}" for i in range(300))
    first, second = two_views(tok, [text, "short text"], 16, torch.Generator().manual_seed(3))
    again = two_views(tok, [text, "short text"], 16, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(first + second, again[0] + again[1]))
    whole = tok(text, add_special_tokens=False)["input_ids"]
    for view in (first[0], second[0]):
        ids = view.tolist()
        assert len(ids) == 16 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        inner = ids[1:-1]
        assert any(whole[s:s + 14] == inner for s in range(len(whole) - 13))  # a contiguous window
    assert first[0].tolist() != second[0].tolist()                # drawn independently
    assert first[1].tolist() == second[1].tolist()                # shorter than a window: the whole text, twice


def test_a_tiny_contrastive_run_logs_its_metrics_and_its_encoder_fine_tunes(hft_home):
    cfg = RunConfig(model="tiny:bert", task="contrastive", data="bundled:bbc-news", n_train=48, n_eval=16,
                    batch_size=8, max_steps=3, lr=1e-3, eval_every=0, eval_at_start=True, device="cpu",
                    precision="fp32", max_length=32, seed=0)
    sink = MemorySink()
    result = train(cfg, sink, out_dir=home.run_dir(RUN_ID))
    assert result.status == "finished"
    assert [s for s, _ in sink.series("loss")] == [1, 2, 3]
    assert all(0 < v < 2 * math.log(8) for _, v in sink.series("loss"))   # about ln 8 for a random encoder
    assert [s for s, _ in sink.series("eval/loss")] == [0, 3]
    assert all(0 <= v <= 1 for _, v in sink.series("eval/retrieval_accuracy"))

    stored = load_file(str(home.checkpoint_dir(RUN_ID) / "model.safetensors"))
    clf = models.load_model(f"run:{RUN_ID}", "classification", num_labels=5, seed=0)
    body = dict(clf.bert.named_parameters())
    encoder = [k for k in stored if k.startswith(("embeddings.", "encoder."))]
    assert len(encoder) > 20
    assert all(torch.equal(body[k], stored[k]) for k in encoder)


def test_decoders_cannot_do_the_contrastive_task():
    with pytest.raises(models.ModelError, match="cannot do task 'contrastive'"):
        models.load_model("tiny:gpt2", "contrastive")
