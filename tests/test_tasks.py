"""Tokenization through the per-text cache must equal the tokenizer's own padded batch."""
import pytest
import torch

from hft_core import models, tasks
from hft_core.strategies.base import Batch
from hft_core.trainer import _batch_indices, _visited

TEXTS = ["a short one", "a much longer text with many more words than the first, " * 5, "mid length text here"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_classification_collate_equals_the_tokenizers_padded_batch(side):
    tok = models.load_tokenizer("tiny:bert")
    tok.padding_side = side
    try:
        got = tasks.get_task("classification").collate(tok, Batch(texts=TEXTS), 16, torch.device("cpu"))
        ref = tok(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
    finally:
        tok.padding_side = "right"
    assert torch.equal(got["input_ids"], ref["input_ids"])
    assert torch.equal(got["attention_mask"], ref["attention_mask"])


def test_causal_collate_masks_the_prompt_on_either_padding_side():
    tok = models.load_tokenizer("tiny:gpt2")
    task = tasks.get_task("causal-lm")
    batch = task.make_batch([{"prompt": "What is two plus two?", "response": "Four."},
                             {"prompt": "Hi", "response": "Hello there, how are you today my friend?"}], tok)
    outs = {}
    for side in ("right", "left"):
        tok.padding_side = side
        outs[side] = task.collate(tok, batch, 64, torch.device("cpu"))
    tok.padding_side = "right"
    for i, (text, prompt) in enumerate(zip(batch.texts, batch.prompts)):
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        full = tok(text, add_special_tokens=False)["input_ids"]
        for side, out in outs.items():
            m = out["attention_mask"][i].bool()
            assert out["input_ids"][i][m].tolist() == full
            trained = out["labels"][i][m]
            assert (trained[:n_prompt] == -100).all() and (trained[n_prompt:] != -100).all(), side


def test_cache_tokenizes_each_text_once():
    tok = models.load_tokenizer("tiny:bert")
    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner, self.pad_token_id, self.padding_side = inner, inner.pad_token_id, "right"

        def __call__(self, texts, **kw):
            calls.append(list(texts))
            return self.inner(texts, **kw)

    counting = Counting(tok)
    tasks.token_ids(counting, TEXTS, 32)
    tasks.token_ids(counting, TEXTS + ["new text"], 32)
    assert calls == [TEXTS, ["new text"]]


@pytest.mark.parametrize("n,b,w,k0,k1", [(10, 4, 1, 0, 2), (10, 4, 1, 0, 7), (37, 5, 2, 3, 9), (100, 8, 1, 5, 6)])
def test_visited_is_exactly_the_examples_the_steps_read(n, b, w, k0, k1):
    read = {i for k in range(k0, k1) for r in range(w) for i in _batch_indices(n, b, w, r, k, seed=3)}
    assert set(_visited(n, b, w, k0, k1, seed=3)) == read
