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


# ---- masked-LM -----------------------------------------------------------------------------------
def _ids_batch(tok, rows: int = 200, length: int = 120, seed: int = 0) -> torch.Tensor:
    """(rows, length) ids shaped like a padded BERT batch: [CLS] words [SEP] [PAD]..., random lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((rows, length), tok.pad_token_id, dtype=torch.long)
    for i in range(rows):
        n = int(torch.randint(10, length - 1, (1,), generator=g))
        ids[i, 0] = tok.cls_token_id
        ids[i, 1:n + 1] = torch.randint(1000, 30000, (n,), generator=g)
        ids[i, n + 1] = tok.sep_token_id
    return ids


def test_mask_tokens_statistics_15_percent_then_80_10_10():
    tok = models.load_tokenizer("tiny:bert")
    ids = _ids_batch(tok)
    masked, labels = tasks.mask_tokens(ids, tok, generator=torch.Generator().manual_seed(1))
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    chosen = labels != -100
    n_eligible, n_chosen = int((~special).sum()), int(chosen.sum())
    assert n_eligible > 10_000
    assert abs(n_chosen / n_eligible - 0.15) < 0.01, n_chosen / n_eligible
    assert torch.equal(labels[chosen], ids[chosen])                       # labels are the original tokens
    to_mask = chosen & (masked == tok.mask_token_id)
    same = chosen & (masked == ids)
    to_random = chosen & ~to_mask & ~same
    assert abs(int(to_mask.sum()) / n_chosen - 0.8) < 0.02
    assert abs(int(to_random.sum()) / n_chosen - 0.1) < 0.015
    assert abs(int(same.sum()) / n_chosen - 0.1) < 0.015
    assert torch.equal(masked[~chosen], ids[~chosen])                    # nothing else changes
    assert not chosen[special].any()                                     # [CLS], [SEP], [PAD] never chosen
    assert bool((masked[to_random] < len(tok)).all())


def test_mask_tokens_is_seeded_and_respects_a_given_special_mask():
    tok = models.load_tokenizer("tiny:bert")
    ids = _ids_batch(tok, rows=8, length=40)
    a = tasks.mask_tokens(ids, tok, generator=torch.Generator().manual_seed(3))
    b = tasks.mask_tokens(ids, tok, generator=torch.Generator().manual_seed(3))
    c = tasks.mask_tokens(ids, tok, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[:, :10] = True                                                  # e.g. a prompt that must stay
    _, labels = tasks.mask_tokens(ids, tok, prob=0.5, special_mask=keep, generator=torch.Generator().manual_seed(0))
    assert not (labels[:, :10] != -100).any() and (labels[:, 10:] != -100).any()
    assert not (labels[ids == tok.pad_token_id] != -100).any()           # padding never, even with a given mask
    assert torch.equal(ids, _ids_batch(tok, rows=8, length=40))          # the input is not modified


def test_mask_tokens_refuses_bad_input():
    tok = models.load_tokenizer("tiny:bert")

    class NoMask:
        mask_token_id = None

    with pytest.raises(ValueError, match=r"has no \[MASK\] token.*tiny:bert"):
        tasks.mask_tokens(torch.ones(2, 3, dtype=torch.long), NoMask())
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        tasks.mask_tokens(torch.ones(3, dtype=torch.long), tok)
    with pytest.raises(ValueError, match="prob=1.5"):
        tasks.mask_tokens(torch.ones(2, 3, dtype=torch.long), tok, prob=1.5)
    with pytest.raises(ValueError, match="special_mask has shape"):
        tasks.mask_tokens(torch.ones(2, 3, dtype=torch.long), tok, special_mask=torch.zeros(2, 4, dtype=torch.bool))


def test_masked_lm_collate_is_a_pure_function_of_the_batch_seed():
    tok = models.load_tokenizer("tiny:bert")
    task = tasks.get_task("masked-lm")
    examples = [{"text": t} for t in TEXTS]

    def collate(seed):
        batch = task.make_batch(examples, tok)
        batch.seed = seed
        return task.collate(tok, batch, 32, torch.device("cpu"))

    a, b, c = collate(7), collate(7), collate(8)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["labels"], c["labels"])
    assert torch.equal(a["mlm_positions"], a["labels"] != -100) and a["mlm_positions"].any()
    plain = tok(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    assert torch.equal(a["attention_mask"], plain["attention_mask"])
    assert torch.equal(a["labels"][a["mlm_positions"]], plain["input_ids"][a["mlm_positions"]])


def test_masked_lm_eval_uses_the_same_masks_whatever_the_batch_size():
    tok = models.load_tokenizer("tiny:bert")
    model = models.load_model("tiny:bert", "masked-lm", seed=0)
    task = tasks.get_task("masked-lm")
    examples = [{"text": f"{t} number {i}"} for i in range(7) for t in TEXTS]
    runs = [task.evaluate(model, tok, examples, batch_size=bs, max_length=32, device=torch.device("cpu"),
                          num_samples=2) for bs in (4, 21, 4)]
    assert runs[0].metrics == runs[2].metrics                            # the same masks at every eval
    assert runs[0].metrics["loss"] == pytest.approx(runs[1].metrics["loss"], rel=1e-5)
    assert runs[0].metrics["perplexity"] == pytest.approx(torch.tensor(runs[0].metrics["loss"]).exp().item(), rel=1e-6)
    assert runs[0].metrics["loss"] > 9                                   # a random model: ~ln(30522) = 10.3
    assert len(runs[0].samples) == 2 and "[MASK]" in runs[0].samples[0]["prompt"]
    assert model.training                                                # mode restored
    setattr(model, models.PREDICTS_ONLY_MASKED, False)                   # full (B, L, V) logits: the same numbers
    full = task.evaluate(model, tok, examples, batch_size=4, max_length=32, device=torch.device("cpu"), num_samples=2)
    assert full.metrics["loss"] == pytest.approx(runs[0].metrics["loss"], rel=1e-5)
    assert full.metrics["token_accuracy"] == runs[0].metrics["token_accuracy"] and full.samples == runs[0].samples


def test_masked_lm_model_computes_logits_only_at_the_masked_positions():
    tok = models.load_tokenizer("tiny:bert")
    model = models.load_model("tiny:bert", "masked-lm", seed=0).eval()
    task = tasks.get_task("masked-lm")
    batch = task.make_batch([{"text": t} for t in TEXTS], tok)
    batch.seed = 1
    batch.inputs = task.collate(tok, batch, 32, torch.device("cpu"))
    sparse = model(**batch.model_inputs).logits
    full = model(**{k: v for k, v in batch.model_inputs.items() if k != "mlm_positions"}).logits
    chosen = batch.inputs["mlm_positions"]
    assert sparse.shape == (int(chosen.sum()), len(tok)) and full.shape[:2] == chosen.shape
    assert torch.allclose(sparse, full[chosen], atol=1e-5)
    assert tasks.masked_lm_loss(sparse, batch.inputs["labels"]).item() == pytest.approx(
        tasks.masked_lm_loss(full, batch.inputs["labels"]).item(), rel=1e-6)
