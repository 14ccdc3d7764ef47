"""The strategy recommendation table (hft_core/recommendations.py) and the Train form applying it:
turning LoRA on brings its recommended lr, with a note and an Undo that puts the previous lr back."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hft_core import model_cards, recommendations  # noqa: E402
from hft_core.runs import RunManager  # noqa: E402
from hft_core.store import RunStore  # noqa: E402
from hft_core.strategies.lora import LoRAConfig  # noqa: E402
from ui import recommend  # noqa: E402
from ui import train_form as tf  # noqa: E402
from ui.state import MANAGER_KEY  # noqa: E402


# ---- the table ----------------------------------------------------------------------------------

def test_the_lora_row_is_what_lora_runs_with_by_default():
    """The table cites r 8, alpha 16, all linear layers; LoRAConfig's defaults must say the same."""
    row = recommendations.recommendation("lora")
    defaults = dataclasses.asdict(LoRAConfig())
    assert row.fields == {k: defaults[k] for k in row.fields} == {"r": 8, "alpha": 16.0, "target_modules": "all-linear"}
    assert row.lr_factor == 10.0 and "Hu et al. 2021" in row.evidence and "rsLoRA" in row.evidence
    assert recommendations.recommendation("blend") is None


def test_strategy_lr_multiplies_the_card_rate_and_rounds():
    assert recommendations.strategy_lr(1e-4, {"lora"}) == 1e-3
    assert recommendations.strategy_lr(3e-5, {"lora"}) == 3e-4   # not 3.0000000000000003e-4
    assert recommendations.strategy_lr(1e-4, {"blend", "l2sp"}) == 1e-4
    assert recommendations.strategy_lr(1e-4) == 1e-4


def test_model_cards_take_their_lora_rate_from_the_table():
    for source, full, lora in (("bundled:minilm-l6", 1e-4, 1e-3), ("bundled:smollm2-135m", 5e-5, 5e-4),
                               ("tiny:bert", 1e-3, 1e-2)):
        card = model_cards.model_card(source)
        assert (card.lr_for(False), card.lr_for(True)) == (full, lora), source


# ---- the form's logic, without a browser --------------------------------------------------------------

def minilm_state() -> dict:
    state: dict = {}
    tf.init_state(state, {}, {})
    state["f.model_choice"] = "bundled:minilm-l6"
    recommend.on_model_change(state, tf.SPECS)
    assert state["cfg.lr"] == 1e-4
    return state


def test_turning_lora_on_then_off_follows_the_table_and_undo_restores():
    state = minilm_state()
    state["mix.lora.on"] = True
    recommend.on_strategy_change(state, tf.SPECS, "lora")
    assert state["cfg.lr"] == 1e-3
    note = state[recommend.NOTE]
    assert note["origin"] == "lora"
    assert recommend.note_text(note)[0] == "Set for LoRA on MiniLM-L6, as recommended: lr 1e-3 (was 1e-4)."
    recommend.undo(state)
    assert state["cfg.lr"] == 1e-4 and state[recommend.NOTE] is None and state["mix.lora.on"] is True
    recommend.on_strategy_change(state, tf.SPECS, "lora")   # on again, then off: the full fine-tuning rate back
    state["mix.lora.on"] = False
    recommend.on_strategy_change(state, tf.SPECS, "lora")
    assert state["cfg.lr"] == 1e-4
    assert recommend.note_text(state[recommend.NOTE])[0] == ("Set for MiniLM-L6 without LoRA, as recommended: "
                                                              "lr 1e-4 (was 1e-3).")


def test_a_hand_set_lr_is_kept_when_lora_turns_on_and_a_strategy_without_a_row_changes_nothing():
    state = minilm_state()
    state["cfg.lr"] = 2e-4
    recommend.mark_edited(state, "lr")
    state["mix.lora.on"] = True
    recommend.on_strategy_change(state, tf.SPECS, "lora")
    assert state["cfg.lr"] == 2e-4
    assert recommend.note_text(state[recommend.NOTE])[1] == "Kept your own lr 2e-4 (recommended: 1e-3)."
    recommend.use_recommended(state, "lr")
    assert state["cfg.lr"] == 1e-3
    before = dict(state)
    state["mix.l2sp.on"] = True
    recommend.on_strategy_change(state, tf.SPECS, "l2sp")
    assert state == {**before, "mix.l2sp.on": True}


# ---- the page, in AppTest ------------------------------------------------------------------------------

@pytest.fixture
def manager(tmp_path, monkeypatch):
    """A RunManager in a temp home whose train_fn is never called (nothing is started here)."""
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_ESTIMATE_PROBES", "0")
    store = RunStore(tmp_path)
    mgr = RunManager(store, train_fn=lambda *a, **k: SimpleNamespace(status="finished", step=0, checkpoint=None,
                                                                     metrics={}))
    yield mgr
    mgr.shutdown()
    store.close()


def test_choosing_lora_in_the_train_form_sets_its_lr_and_undo_restores(manager):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state[MANAGER_KEY] = manager
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="f.model_choice").set_value("bundled:minilm-l6").run()
    assert at.session_state["cfg.lr"] == 1e-4
    at.toggle(key="mix.lora.on").set_value(True).run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.lr"] == 1e-3
    notes = [m.value for m in at.markdown if "as recommended" in m.value]
    assert notes == [":material/tune: Set for LoRA on MiniLM-L6, as recommended: lr 1e-3 (was 1e-4)."]
    assert any("lr: 0.001" in c and "lora:" in c for c in (e.value for e in at.code))  # the config that would run
    assert not any("recommended for MiniLM-L6 with LoRA" in w.value for w in at.warning)
    at.button(key="f.card_undo").click().run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.lr"] == 1e-4 and at.session_state["mix.lora.on"] is True
    assert not [m.value for m in at.markdown if "as recommended" in m.value]
    assert any("lr: 0.0001" in c and "lora:" in c for c in (e.value for e in at.code))
