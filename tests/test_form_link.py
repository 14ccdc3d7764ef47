"""The Train form in the URL (ui.url_state, ui.train_form): only changes, round trips, bad links as notes."""
from __future__ import annotations

import pytest

from hft_core import presets as preset_lib
from hft_core.config import RunConfig
from ui import form_state as fs
from ui import recommend
from ui import train_form as tf
from ui import url_state as us

QUICK = fs.quick_demo_config()
PRESETS = {p.name: p for p in preset_lib.list_presets()}
BY_TITLE = {p.title: p for p in PRESETS.values()}


def read(params):
    return us.read_link(params, PRESETS, QUICK, tf.variant_config)


def test_only_changes_are_written_and_read_back_the_same():
    cfg = QUICK.with_overrides({"model": "bundled:minilm-l6", "lr": 3e-4, "mix.blend.alpha": 0.25,
                                "mix.l2sp": True, "name": "123", "mix.lora.r": 4})
    params = us.form_params(cfg, QUICK)
    assert params == {"model": "bundled:minilm-l6", "lr": "0.0003", "name": "'123'", "mix.blend.alpha": "0.25",
                      "mix.l2sp": "true", "mix.lora.r": "4"}
    form = read(params)
    assert form.config == cfg and form.notes == () and form.preset is None
    assert us.form_params(QUICK, QUICK) == {}


def test_a_strategy_on_at_its_defaults_is_named_by_its_headline_field():
    cfg = QUICK.with_overrides({"mix.blend": True})  # default alpha 0.5
    assert us.form_params(cfg, QUICK) == {"mix.blend.alpha": "0.5"}
    assert read({"mix.blend.alpha": "0.5"}).config == cfg


def test_turning_off_what_the_base_has():
    base = QUICK.with_overrides({"mix.l2sp": True})
    params = us.config_params(QUICK, base)
    assert params == {"mix.l2sp": "false"}
    assert us.apply_params(base, params)[0] == QUICK


def test_each_bad_key_costs_only_itself_with_a_note():
    form = read({"lr": "abc", "max_steps": "12", "colour": "red", "mix.nosuch": "true", "batch_size": "-3",
                 "embed": "true"})
    assert form.config == QUICK.with_overrides({"max_steps": 12})
    text = " | ".join(form.notes)
    assert "lr='abc' ignored" in text and "colour='red' ignored: not a setting of the form" in text
    assert "mix.nosuch='true' ignored" in text and "batch_size='-3' ignored" in text
    assert "embed" not in text  # Streamlit's own parameter


def test_keys_that_depend_on_each_other_are_retried():
    # warmup_steps=50 needs max_steps=60 (the quick demo has 40); the order in the link must not matter
    form = read({"warmup_steps": "50", "max_steps": "60"})
    assert (form.config.max_steps, form.config.warmup_steps) == (60, 50) and form.notes == ()


def test_a_preset_and_its_variant_by_slug_or_label():
    form = read({"preset": "finetune_vs_scratch", "variant": "alpha-0-5-half-and-half", "max_steps": "20"})
    assert form.preset is PRESETS["finetune_vs_scratch"] and form.variant == "alpha 0.5 (half and half)"
    assert form.config.mix["blend"].alpha == 0.5 and form.config.max_steps == 20 and form.notes == ()
    assert read({"preset": "finetune_vs_scratch", "variant": "alpha 0.5 (half and half)"}).variant == form.variant
    unknown = read({"preset": "finetune_vs_scratch", "variant": "alpha-2"})
    assert unknown.variant == PRESETS["finetune_vs_scratch"].variants[0].label
    assert "variant='alpha-2' ignored" in unknown.notes[0] and "alpha-0-5-half-and-half" in unknown.notes[0]


def test_a_preset_that_no_longer_exists_voids_the_link():
    form = read({"preset": "renamed_long_ago", "lr": "0.1"})
    assert form.config == QUICK and form.preset is None
    assert "preset='renamed_long_ago' from the link does not exist" in form.notes[0]
    assert "finetune_vs_scratch" in form.notes[0]


def test_a_variant_without_a_preset_is_noted_and_the_rest_applies():
    form = read({"variant": "x", "lr": "0.0005"})
    assert form.config.lr == 5e-4 and "names no preset" in form.notes[0]


def test_slugs():
    assert us.slug("alpha 0.5 (half and half)") == "alpha-0-5-half-and-half"
    assert us.slug("student + KD from the teacher") == "student-kd-from-the-teacher"


# ---- the form state <-> link, as the page does it ----------------------------------------------

def fresh_state(params=None):
    state: dict = {}
    tf.init_state(state, params or {}, BY_TITLE)
    return state


def test_init_state_reads_the_link_once_per_session():
    state = fresh_state({"model": "bundled:minilm-l6", "lr": "0.003", "bogus": "1"})
    assert state["f.model_choice"] == "bundled:minilm-l6" and state["cfg.lr"] == 3e-3
    assert state[recommend.EDITED] == ["lr"]  # 3e-3 is not MiniLM's card value: the user's own choice
    assert any("bogus" in n for n in state["f.link_notes"])
    state["cfg.lr"] = 1e-4
    tf.init_state(state, {"lr": "0.003"}, BY_TITLE)  # a later run (back from Live): the URL is ours now
    assert state["cfg.lr"] == 1e-4


def test_link_params_of_a_form_read_back_give_the_same_form():
    state = fresh_state()
    state["f.preset"] = next(t for t, p in BY_TITLE.items() if p.name == "lora_vs_full")
    tf.on_preset(state, BY_TITLE)
    state["f.variant"] = BY_TITLE[state["f.preset"]].variants[1].label
    tf.on_variant(state, BY_TITLE)
    state["cfg.seed"] = 7
    params = tf.link_params(state, BY_TITLE, None)
    assert params["preset"] == "lora_vs_full" and params["variant"] == us.slug(state["f.variant"])
    assert params["seed"] == "7" and len(params) == 3
    again = fresh_state(params)
    assert fs.state_to_config(again, tf.SPECS) == fs.state_to_config(state, tf.SPECS)
    assert again["f.preset"] == state["f.preset"] and again["f.variant"] == state["f.variant"]


def test_an_invalid_form_still_keeps_its_values_in_the_link():
    state = fresh_state()
    state["cfg.lr"] = 5.0  # refused by RunConfig; the link keeps it, and reading it back notes it
    params = tf.link_params(state, BY_TITLE, None)
    assert params == {"lr": "5.0"}
    again = fresh_state(params)
    assert again["cfg.lr"] == QUICK.lr and "lr='5.0' ignored" in again["f.link_notes"][0]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_presets_first_variant_is_the_bare_preset_link(name):
    state = fresh_state({"preset": name})
    assert state["f.link_notes"] == []
    assert tf.link_params(state, BY_TITLE, None) == {"preset": name}
    assert isinstance(fs.state_to_config(state, tf.SPECS), RunConfig)
