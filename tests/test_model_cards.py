"""Model cards: each model source's recommended settings, grounded in the project's own measurements."""
from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from hft_core import model_cards as mc
from hft_core.config import RunConfig
from hft_core.presets import PRESET_DIR

QUICK_DEMO = RunConfig(model="tiny:bert", data="bundled:bbc-news", n_train=200, n_eval=100, max_steps=40,
                       batch_size=16, lr=1e-3, eval_every=10, max_length=128)


def _preset_base(name: str) -> dict:
    return yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())["base"]


def test_cards_match_what_the_presets_measured():
    """The numbers come from the preset files they cite: change a preset's lr and this fails."""
    minilm, smol, tiny = (mc.model_card(s) for s in ("bundled:minilm-l6", "bundled:smollm2-135m", "tiny:bert"))
    fvs = _preset_base("finetune_vs_scratch")
    assert (minilm.lr, minilm.max_length, minilm.batch_size, minilm.max_steps) == \
        (float(fvs["lr"]), fvs["max_length"], fvs["batch_size"], fvs["max_steps"])
    assert "finetune_vs_scratch" in minilm.evidence
    lora = yaml.safe_load((PRESET_DIR / "lora_vs_full.yaml").read_text())
    lora_lrs = {float(v["set"]["lr"]) for v in lora["variants"] if "lr" in v.get("set", {})}
    assert minilm.lora_lr in lora_lrs
    instruct = _preset_base("instruct_smollm2")
    assert (smol.lr, smol.max_length, smol.batch_size, smol.max_steps) == \
        (float(instruct["lr"]), instruct["max_length"], instruct["batch_size"], instruct["max_steps"])
    assert (tiny.lr, tiny.max_length, tiny.batch_size, tiny.max_steps) == \
        (QUICK_DEMO.lr, QUICK_DEMO.max_length, QUICK_DEMO.batch_size, QUICK_DEMO.max_steps)
    for card in (minilm, smol, tiny):
        assert card.lora_lr == pytest.approx(10 * card.lr)  # the 10x rule
    assert minilm.kind == mc.PRETRAINED_ENCODER and smol.kind == mc.PRETRAINED_DECODER and tiny.kind == mc.RANDOM


def test_quick_demo_to_minilm_takes_the_recommendation_and_says_so():
    cfg = dataclasses.replace(QUICK_DEMO, model="bundled:minilm-l6")
    new, notes = mc.apply_model_card(cfg, set())
    assert new.lr == 1e-4 and new.max_length == 64 and new.batch_size == 16 and new.max_steps == 40
    assert "lr set to 1e-4, recommended for MiniLM-L6" in notes
    assert any(n.startswith("max_length set to 64") for n in notes)
    assert new.n_train == cfg.n_train and new.eval_every == cfg.eval_every  # not card fields: untouched


def test_explicit_fields_are_kept_and_the_note_says_so():
    cfg = dataclasses.replace(QUICK_DEMO, model="bundled:minilm-l6", lr=3e-3)
    new, notes = mc.apply_model_card(cfg, {"lr"})
    assert new.lr == 3e-3 and new.max_length == 64
    assert "lr 3e-3 kept (set explicitly); recommended for MiniLM-L6: 1e-4" in notes


def test_lora_gets_the_lora_rate_and_other_data_keeps_its_step_count():
    cfg = RunConfig(model="bundled:minilm-l6", data="/some/file.csv", lr=1e-4, max_steps=500, mix={"lora": {}})
    new, notes = mc.apply_model_card(cfg, set())
    assert new.lr == 1e-3 and new.max_steps == 500
    assert "lr set to 1e-3, recommended for MiniLM-L6 with LoRA" in notes


def test_fewer_steps_drop_a_warmup_that_would_no_longer_fit():
    cfg = RunConfig(model="bundled:smollm2-135m", task="causal-lm", data="bundled:qa", max_steps=100, warmup_steps=40)
    new, _ = mc.apply_model_card(cfg, set())
    assert new.max_steps == 30 and new.warmup_steps == 0


def test_nothing_to_change_gives_the_same_config_and_no_notes():
    cfg = RunConfig(model="bundled:minilm-l6", max_length=64, batch_size=16, max_steps=40, lr=1e-4)
    assert mc.apply_model_card(cfg, set()) == (cfg, [])


@pytest.mark.parametrize("model, lr, warns", [
    ("bundled:minilm-l6", 1e-3, "10x the 1e-4 recommended for MiniLM-L6"),   # issue 13: the loss went up
    ("bundled:minilm-l6", 1e-4, None),
    ("bundled:minilm-l6", 2e-5, None),
    ("bundled:minilm-l6", 1e-7, "below"),
    ("tiny:bert", 1e-3, None),
    ("tiny:bert", 5e-3, None),            # a random model tolerates a wider band
    ("tiny:bert", 1e-6, "below"),
    ("bundled:smollm2-135m", 5e-4, "10x"),
])
def test_lr_warning_depends_on_the_kind_of_model(model, lr, warns):
    task = "causal-lm" if "smollm" in model else "classification"
    got = mc.lr_warning(RunConfig(model=model, task=task, lr=lr))
    if warns is None:
        assert got is None
    else:
        assert got is not None and warns in got and mc.fmt(lr) in got


def test_lora_rate_is_not_warned_about_with_lora_on():
    assert mc.lr_warning(RunConfig(model="bundled:minilm-l6", lr=1e-3, mix={"lora": {}})) is None
    assert "with LoRA" in mc.lr_warning(RunConfig(model="bundled:minilm-l6", lr=3e-2, mix={"lora": {}}))


def _folder(tmp_path, name: str, config: dict):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    return str(d)


def test_local_folders_are_judged_by_their_config(tmp_path):
    small_enc = _folder(tmp_path, "enc", {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
                                          "num_attention_heads": 12, "intermediate_size": 1536})
    big_enc = _folder(tmp_path, "big", {"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12,
                                        "num_attention_heads": 12, "intermediate_size": 3072})
    dec = _folder(tmp_path, "dec", {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12})
    tiny = _folder(tmp_path, "tiny", {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
                                      "num_attention_heads": 2, "intermediate_size": 128})
    assert (mc.model_card(small_enc).kind, mc.model_card(small_enc).lr) == (mc.PRETRAINED_ENCODER, 1e-4)
    assert (mc.model_card(big_enc).kind, mc.model_card(big_enc).lr) == (mc.PRETRAINED_ENCODER, 3e-5)
    assert (mc.model_card(dec).kind, mc.model_card(dec).lr) == (mc.PRETRAINED_DECODER, 5e-5)
    assert (mc.model_card(tiny).kind, mc.model_card(tiny).lr) == (mc.RANDOM, 1e-3)
    assert "768 wide" in mc.model_card(big_enc).title


def test_hub_ids_without_a_hub_fall_back_to_their_name(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert mc.model_card("hub:some-org/llama-7b-chat").kind == mc.PRETRAINED_DECODER
    card = mc.model_card("hub:some-org/unknown-thing")
    assert card.kind == mc.PRETRAINED_ENCODER and "could not be read" in card.evidence


def test_a_runs_checkpoint_gets_the_card_of_what_it_started_from(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    for rid, cfg in {"r-ft": RunConfig(model="bundled:minilm-l6"),
                     "r-scratch": RunConfig(model="bundled:minilm-l6", mix={"blend": {"alpha": 0.0}}),
                     "r-chain": RunConfig(model="run:r-ft")}.items():
        (tmp_path / "runs" / rid).mkdir(parents=True)
        (tmp_path / "runs" / rid / "run_config.yaml").write_text(cfg.to_yaml())
    ft, scratch, chain = (mc.model_card(f"run:{r}") for r in ("r-ft", "r-scratch", "r-chain"))
    assert (ft.lr, ft.kind) == (1e-4, mc.PRETRAINED_ENCODER) and "MiniLM-L6" in ft.title
    assert (scratch.lr, scratch.kind) == (1e-3, mc.RANDOM)
    assert chain.lr == 1e-4 and chain.source == "run:r-chain"
    assert mc.model_card("run:r-missing").kind == mc.PRETRAINED_ENCODER  # no config: a generic card, no crash


def test_fmt_writes_learning_rates_as_a_person_would():
    assert [mc.fmt(v) for v in (1e-4, 5e-5, 3e-3, 0.5, 1.0, 64)] == ["1e-4", "5e-5", "3e-3", "0.5", "1", "64"]
