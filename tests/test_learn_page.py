"""The Learn page: every lesson renders, and moving a picture's control changes the numbers shown."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "learn.py")


def open_lesson(key: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="lesson").set_value(key).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label_start: str) -> str:
    for m in at.metric:
        if m.label.startswith(label_start):
            return m.value
    raise AssertionError(f"no metric starting {label_start!r}; have {[m.label for m in at.metric]}")


def test_every_lesson_renders_with_formula():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    for key in at.selectbox(key="lesson").options:
        at.selectbox(key="lesson").set_value(key).run()
        assert not at.exception, (key, at.exception)
        assert at.latex, key
        assert at.header[0].value


def test_alpha_slider_changes_the_blend():
    at = open_lesson("blend")
    before = metric(at, "std of the blend")
    at.slider(key="blend_alpha").set_value(1.0).run()
    assert metric(at, "cosine to pretrained") == "1.000"
    assert metric(at, "std of the blend") != before


def test_temperature_softens():
    at = open_lesson("kd")
    at.slider(key="kd_T").set_value(1.0).run()
    sharp = float(metric(at, "top class probability"))
    at.slider(key="kd_T").set_value(8.0).run()
    soft = float(metric(at, "top class probability"))
    assert soft < sharp


def test_lora_rank_scales_count():
    at = open_lesson("lora")
    at.slider(key="lora_r").set_value(8).run()
    assert metric(at, "LoRA trainable") == "331,776"  # the default: 6 linear layers x 6 blocks, 8 * 6,912 each block
    at.radio(key="lora_target").set_value("query-value").run()
    assert metric(at, "LoRA trainable") == "73,728"
    at.slider(key="lora_r").set_value(16).run()
    assert metric(at, "LoRA trainable") == "147,456"


def test_precision_of_a_typed_number():
    at = open_lesson("precision")
    at.number_input(key="prec_x").set_value(70000.0).run()
    assert metric(at, "fp16 stores") == "inf"
    assert metric(at, "bf16 stores") == "70144"
    assert metric(at, "fp32 stores") == "70000"


def test_eda_on_a_typed_sentence():
    at = open_lesson("eda")
    at.text_input(key="eda_sentence").set_value("one two three four five six seven eight nine ten").run()
    at.slider(key="eda_rate").set_value(0.0).run()
    assert metric(at, "words changed") == "0"
    at.slider(key="eda_rate").set_value(0.3).run()
    assert metric(at, "words changed") == "3"
    texts = [row for row in at.table[0].value["augmented sentence"]]
    assert any(t != "one two three four five six seven eight nine ten" for t in texts)


@pytest.mark.parametrize("lesson,slider,value,label", [
    ("l2sp", "l2sp_beta", 0.05, "penalty at distance 5"),
    ("neftune", "neftune_L", 256, "bound per coordinate"),
    ("wise_ft", "wise_a", 1.0, "θ(a)"),
])
def test_slider_moves_number(lesson, slider, value, label):
    at = open_lesson(lesson)
    before = metric(at, label)
    at.slider(key=slider).set_value(value).run()
    assert not at.exception
    assert metric(at, label) != before


def test_lesson_names_its_preset_with_expected_outcome():
    at = open_lesson("blend")
    text = " ".join(m.value for m in at.markdown)
    assert "finetune_vs_scratch" in text and "Expected" in text


@pytest.mark.parametrize("lesson,control,value,label", [
    ("reinit", "reinit_k", 4, "layers re-initialised"),
    ("mixout", "mixout_p", 0.5, "largest |mean"),
    ("aux", "aux_lambda", 1.0, "loss/aux_lm"),
    ("freeze", "freeze_k", 5, "trainable parameters"),
    ("pretraining", "pre_prob", 0.5, "tokens the model must predict"),
])
def test_new_pictures_respond_to_their_control(lesson, control, value, label):
    at = open_lesson(lesson)
    before = metric(at, label)
    at.slider(key=control).set_value(value).run()
    assert not at.exception, at.exception
    assert metric(at, label) != before


def test_half_ft_lpft_and_instruct_pictures():
    at = open_lesson("half_ft")
    assert metric(at, "share of the model").endswith("%")
    at = open_lesson("lpft")
    assert metric(at, "trainable while probing") == "1,925" and metric(at, "trainable after") == "22,715,141"
    at = open_lesson("instruct")
    n = metric(at, "tokens in the loss")
    at.text_input(key="instruct_answer").set_value("A machine that follows a program, step by step, to process "
                                                   "data and to compute.").run()
    assert not at.exception, at.exception
    assert metric(at, "tokens in the loss") != n and "in the loss" in " ".join(m.value for m in at.markdown)


def test_the_pretraining_lesson_draws_the_measured_curves(tmp_path, monkeypatch):
    import json

    from hft_core import explain

    missing = tmp_path / "none.json"
    monkeypatch.setattr(explain, "PRETRAINING_CURVES", missing)
    at = open_lesson("pretraining")
    assert any("bench/pretraining_curves.py" in i.value for i in at.info)   # not measured here: says how
    measured = tmp_path / "curves.json"
    measured.write_text(json.dumps({
        "seeds": [0, 1], "command": "python bench/pretraining_curves.py --seeds 0,1", "machine": "test",
        "pretraining_steps": {"x": [0, 50], "series": {"tiny BERT after contrastive pretraining": [[0.6, 0.7], [0.8, 0.9]]}},
        "label_budget": {"x": [25, 50], "series": {"tiny BERT from scratch": [[0.3, 0.5], [0.4, 0.6]],
                                                   "bag-of-words logistic regression": [[0.9, 0.9], [0.95, 0.95]]}}}))
    monkeypatch.setattr(explain, "PRETRAINING_CURVES", measured)
    at = open_lesson("pretraining")
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    steps, labels = charts[0], charts[1]
    assert [t["name"] for t in steps["data"]] == ["tiny BERT after contrastive pretraining"]
    assert steps["data"][0]["x"] == [0, 50] and steps["data"][0]["y"] == pytest.approx([0.65, 0.85])
    assert [t["name"] for t in labels["data"]] == ["tiny BERT from scratch", "bag-of-words logistic regression"]
    assert labels["data"][0]["error_y"]["array"] == pytest.approx([0.1414, 0.1414], abs=1e-3)   # sd over seeds
    assert any("seeds 0, 1" in c.value for c in at.caption)
