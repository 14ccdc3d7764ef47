"""The Train page's logic, without a browser: model cards in the form, uploads and dry loads, device
checks, what blocks Start, starting runs, the estimate's wording, headline fields."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hft_core import estimate
from hft_core.config import RunConfig
from ui import cost, data_check, device_check, launch, recommend
from ui import form_state as fs
from ui import train_form as tf


def demo_state() -> dict:
    state: dict = {}
    tf.init_state(state, {}, {})
    return state


# ---- model cards in the form ------------------------------------------------------------------

def test_a_new_model_brings_its_card_and_undo_puts_the_old_values_back():
    state = demo_state()
    state["f.model_choice"] = "bundled:minilm-l6"
    recommend.on_model_change(state, tf.SPECS)
    assert (state["cfg.lr"], state["cfg.max_length"], state["cfg.max_steps"]) == (1e-4, 64, 40)
    set_text, kept_text = recommend.note_text(state[recommend.NOTE])
    assert set_text == "Set for MiniLM-L6, as recommended: lr 1e-4 (was 1e-3), max length 64 (was 128)."
    assert kept_text == ""
    recommend.undo(state)
    assert (state["cfg.lr"], state["cfg.max_length"]) == (1e-3, 128) and state[recommend.NOTE] is None


def test_hand_edits_are_kept_and_can_take_the_recommendation_after_all():
    state = demo_state()
    state["cfg.lr"] = 2e-4
    recommend.mark_edited(state, "lr")
    state["f.model_choice"] = "bundled:smollm2-135m"
    state["f.data_choice"] = "bundled:qa"
    recommend.on_model_change(state, tf.SPECS)
    assert state["cfg.lr"] == 2e-4 and state["cfg.batch_size"] == 8 and state["cfg.max_steps"] == 30
    assert recommend.note_text(state[recommend.NOTE])[1] == "Kept your own lr 2e-4 (recommended: 5e-5)."
    recommend.use_recommended(state, "lr")
    assert state["cfg.lr"] == 5e-5 and "lr" not in state[recommend.EDITED]
    assert "lr 5e-5 (was 2e-4)" in recommend.note_text(state[recommend.NOTE])[0]


def test_editing_a_field_after_the_change_takes_it_out_of_undo():
    state = demo_state()
    state["f.model_choice"] = "bundled:minilm-l6"
    recommend.on_model_change(state, tf.SPECS)
    state["cfg.lr"] = 7e-5
    recommend.mark_edited(state, "lr")
    recommend.undo(state)
    assert state["cfg.lr"] == 7e-5 and state["cfg.max_length"] == 128


def test_lora_in_the_form_brings_the_lora_rate():
    state = demo_state()
    state["mix.lora.on"] = True
    state["f.model_choice"] = "bundled:minilm-l6"
    recommend.on_model_change(state, tf.SPECS)
    assert state["cfg.lr"] == 1e-3  # MiniLM with LoRA: 10x its full fine-tuning rate


def test_a_preset_or_yaml_clears_what_counted_as_hand_edited():
    state = demo_state()
    recommend.mark_edited(state, "lr")
    tf.apply_config(state, RunConfig(model="tiny:gpt2"))
    assert state[recommend.EDITED] == [] and state[recommend.NOTE] is None


# ---- headline fields ---------------------------------------------------------------------------

def test_the_headline_field_turns_its_strategy_on_off_its_neutral_value():
    blend = next(s for s in tf.SPECS if s.name == "blend")
    assert fs.headline_field(blend).name == "alpha"
    state = demo_state()
    assert state["mix.blend.alpha"] == 1.0 and not fs.strategy_on(state, blend)
    state["mix.blend.alpha"] = 0.75
    assert fs.strategy_on(state, blend)
    assert fs.state_to_config(state, tf.SPECS).mix["blend"].alpha == 0.75
    others = [s for s in tf.SPECS if s.name != "blend"]
    assert all(not fs.strategy_on(state, s) for s in others)


# ---- data -----------------------------------------------------------------------------------------

def csv_bytes(n: int = 40) -> bytes:
    rows = "\n".join(f"{'good great' if i % 2 else 'bad awful'} text {i},{'pos' if i % 2 else 'neg'}" for i in range(n))
    return f"review,sentiment\n{rows}\n".encode()


def test_an_upload_is_kept_once_its_columns_guessed_and_n_train_fitted(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    state = demo_state()
    data_check.check_upload(state, "reviews.csv", csv_bytes())
    path = Path(state["f.upload_path"])
    assert path.parent == tmp_path / "uploads" and data_check.upload_display_name(str(path)) == "reviews.csv"
    assert (state["cfg.text_column"], state["cfg.label_column"]) == ("review", "sentiment")
    assert state["cfg.n_train"] == 0 and "n_train was 200" in state["f.upload_note"]
    assert data_check.save_upload("again.csv", csv_bytes()).name.startswith(path.name[:10])  # same content
    assert data_check.dry_load(str(path), state) == (32, 8, 2)
    data_check.check_upload(state, "broken.csv", b"\x00\x01binary\x00")
    assert state["f.upload_path"] is None and "broken.csv cannot be used" in state["f.upload_error"]


def test_column_and_path_problems_name_the_fix(tmp_path):
    assert "pick the column that holds the text" in data_check.column_problem(["a", "b"], "", "", "classification")
    assert "causal-lm" in data_check.column_problem(["a", "b"], "a", "", "classification")
    assert data_check.column_problem(["a", "b"], "a", "", "causal-lm") is None
    assert "does not exist" in data_check.custom_path_problem(str(tmp_path / "nope.csv"))
    assert data_check.custom_path_problem("hub:ag_news") is None and data_check.custom_path_problem("") is None


# ---- device, what blocks Start, starting ------------------------------------------------------------

def test_precision_check_refuses_fp16_on_the_cpu_and_plans_fp32():
    plan, err = device_check.precision_check("fp32", "cpu")
    assert plan.name == "fp32" and err is None
    plan, err = device_check.precision_check("fp16", "cpu")
    assert plan is None and "fp16" in err
    assert device_check.device_options()[:2] == ["auto", "cpu"]


def test_the_most_specific_problem_blocks_start():
    cfg = RunConfig(model="tiny:bert")
    assert launch.blocking_problem(cfg, None, "bad upload", "no fp16") == "bad upload"
    assert launch.blocking_problem(cfg, None, None, "no fp16") == "no fp16"
    assert launch.blocking_problem(None, "lr=5 is not valid", None, None) == "lr=5 is not valid"
    assert launch.blocking_problem(cfg, None, None, None) is None
    kd = RunConfig(model="tiny:bert", mix={"kd": {"teacher": "run:{teacher}"}})
    assert "run:{teacher}" in launch.blocking_problem(kd, None, None, None)


def test_summary_and_sweep_names():
    cfg = RunConfig(model="tiny:bert", lr=1e-4, mix={"blend": {"alpha": 0.5}})
    line = launch.summary_line(cfg, "fp32", "cpu")
    assert "lr 1e-4 · blend (alpha 0.5) · fp32 on cpu" in line
    vocab = launch.summary_line(RunConfig(model="tiny:bert-small", corpus_vocab=4000), "fp32", "cpu")
    assert "tiny:bert-small (vocabulary of 4,000 learnt from the training texts)" in vocab
    baseline = launch.summary_line(RunConfig(model="baseline:bag-of-words"), "fp32", "cpu")
    assert baseline.startswith("**Will fit** baseline:bag-of-words") and "steps" not in baseline
    assert launch.sweep_group(" mine ", "g") == "mine" and launch.sweep_group("", "g") == "g"
    assert launch.sweep_group("", "", now=time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))) == "sweep-0304-050607"


def test_starting_goes_through_the_manager_and_renews_the_token():
    calls = []
    mgr = SimpleNamespace(submit=lambda cfg, group, name: calls.append(("one", group, name)) or "r-1",
                          submit_sweep=lambda cfg, grid, group: calls.append(("sweep", grid, group)) or ["r-2", "r-3"])
    cfg = RunConfig(model="tiny:bert", seed=4, group="g", name="n")
    assert launch.start_run(mgr, cfg) == ["r-1"]
    assert launch.start_sweep(mgr, cfg, [1.0, 0.0], 2, "sw", True) == ["r-2", "r-3"]
    assert calls == [("one", "g", "n"), ("sweep", {"mix.blend.alpha": [0.0, 1.0], "seed": [4, 5]}, "sw")]
    with pytest.raises(ValueError, match="at least one alpha"):
        launch.start_sweep(mgr, cfg, [], 1, "sw", True)
    state = {"f.token": "old", "f.go_live": True}
    assert launch.after_start(state, ["r-1"], "run r-1") == "pages/live.py"
    assert state["f.token"] != "old" and state["live.flash"] == "Started run r-1: r-1"
    assert launch.after_start(state, ["r-2"], "preset group g", page="pages/compare.py") == "pages/compare.py"
    assert "compare.flash" in state


# ---- the estimate's wording ---------------------------------------------------------------------

class FakeProber:
    def __init__(self, status="measuring", value=None):
        self.status, self.value, self.requested = status, value, []

    def request(self, cfg):
        self.requested.append(cfg)

    def state(self, cfg):
        return self.status, self.value

    def request_bf16(self, device):
        self.requested.append(device)


class FakeStore:
    def __init__(self, running=()):
        self.running = list(running)

    def list_runs(self, status=None, **kw):
        return self.running if status == "running" else []


def test_estimate_message_measuring_ready_waiting_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_ESTIMATE_PROBES", "1")
    estimate.forget()
    cfg = RunConfig(model="tiny:bert", max_steps=40, device="cpu", max_length=48)
    prober = FakeProber()
    status, text = cost.estimate_message(cfg, FakeStore(), prober, busy=False)
    assert status == "measuring" and "measuring a few steps of tiny:bert at batch 16 × 48 tokens" in text
    assert prober.requested == [cfg]
    status, text = cost.estimate_message(cfg, FakeStore(), FakeProber(), busy=True)
    assert status == "waiting" and "once the device is free" in text
    found = estimate.Estimate(36.0, 0.9, 40, 0.0, 0.0, 0.0, "probe", "measured by a 4-step probe just now")
    status, text = cost.estimate_message(cfg, FakeStore(), FakeProber("ready", found), busy=False)
    assert status == "ready" and text == "≈ 0.9 s/step here → 40 steps ≈ 36 s — measured by a 4-step probe just now."
    status, text = cost.estimate_message(cfg, FakeStore(), FakeProber("failed", "cannot measure x"), busy=False)
    assert (status, text) == ("failed", "No time estimate: cannot measure x")
    monkeypatch.setenv("HFT_ESTIMATE_PROBES", "0")
    assert cost.estimate_message(cfg, FakeStore(), FakeProber(), busy=False)[0] == "off"


def test_device_busy_reads_running_runs_from_the_store():
    assert cost.device_busy(FakeStore([SimpleNamespace(device="cpu")]), "auto") is (device_check.resolved_device(
        "auto") == "cpu")
    assert not cost.device_busy(FakeStore(), "cpu")
    assert not cost.device_busy(None, "cpu")  # no store: idle


def test_bf16_message_uses_this_models_probes_when_both_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    estimate.forget()
    cfg = RunConfig(model="tiny:bert", precision="bf16", device="cpu")
    plan, _ = device_check.precision_check("bf16", "cpu")
    for precision, step in (("fp32", 0.5), ("bf16", 2.0)):
        c = dataclasses.replace(cfg, precision=precision)
        estimate._MEMO[estimate.shape_key(c)] = estimate.Probe(
            key=estimate.shape_key(c), step_s=step, first_step_extra_s=0, load_s=0, eval_s_per_example=0,
            eval_fixed_s=0, save_s=0, eval_pool=1, steps_timed=3, measured_at=time.time(), what="")
    text = cost.bf16_message(cfg, plan, FakeProber())
    assert text.startswith("bf16 here is 4.0× slower than fp32, measured for tiny:bert at this batch and length")
    assert cost.bf16_message(dataclasses.replace(cfg, precision="fp32"), device_check.precision_check(
        "fp32", "cpu")[0], FakeProber()) is None
    emulated = dataclasses.replace(plan, warning="this CPU has no native bf16 ...")
    assert "(emulated: this CPU has no native bf16)" in cost.bf16_message(cfg, emulated, FakeProber())
    estimate.forget()


def test_measure_again_forgets_the_figure_so_the_next_request_probes(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    estimate.forget()
    cfg = RunConfig(model="tiny:bert", device="cpu")
    key = estimate.shape_key(cfg)
    estimate._MEMO[key] = estimate.Probe(key=key, step_s=0.1, first_step_extra_s=0, load_s=0, eval_s_per_example=0,
                                         eval_fixed_s=0, save_s=0, eval_pool=1, steps_timed=3,
                                         measured_at=time.time(), what="")
    from hft_core.runs import RunManager
    from hft_core.store import RunStore

    store = RunStore(tmp_path)
    manager = RunManager(store, serve=False)  # queue only: nothing needs to measure here
    try:
        prober = estimate.ProbeQueue(manager)
        assert prober.state(cfg)[0] == "ready"
        cost.measure_again(cfg, prober)
        assert estimate.cached_probe(cfg) is None and prober.state(cfg) == ("idle", None)
        prober.request(cfg)  # the next request queues a probe job on the device
        assert prober.state(cfg) == ("queued", None)
        assert [r.job["key"] for r in store.list_runs(kind="probe")] == [key]
    finally:
        store.close()


def test_a_presets_group_estimate_covers_its_runs_under_the_measured_schedule(tmp_path, monkeypatch):
    from hft_core import schedule
    from hft_core.presets import group_configs, load_preset

    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_ESTIMATE_PROBES", "1")
    monkeypatch.delenv("HFT_RUNS_PER_DEVICE", raising=False)
    monkeypatch.setattr("hft_core.placement.cpu_cores", lambda: 2)
    estimate.forget()
    schedule._MEMO.clear()
    preset = load_preset("finetune_vs_scratch")
    prober = FakeProber()
    monkeypatch.setattr(cost, "prober", lambda: prober)
    assert cost.group_line(preset, FakeStore()) is None                  # no figure yet: its shape is probed
    cfgs = group_configs(preset)
    assert len(cfgs) == 3 and [estimate.shape_key(c) for c in prober.requested] == [estimate.shape_key(cfgs[0])]
    for c in cfgs:
        estimate._MEMO[estimate.shape_key(c)] = estimate.Probe(
            key=estimate.shape_key(c), step_s=0.5, first_step_extra_s=0, load_s=1.0, eval_s_per_example=0.0,
            eval_fixed_s=0, save_s=0, eval_pool=200, steps_timed=3, measured_at=time.time(), what="")
    assert "including ≈" in cost.group_line(preset, FakeStore())         # the schedule is measured first
    s = schedule.Schedule(schedule.schedule_key(cfgs[0]), 2, 1, 2, {"1x2": 2.0, "2x1": 2.5}, time.time(), "t")
    schedule._MEMO[s.key] = s
    line = cost.group_line(preset, FakeStore())
    # a run alone: 1 s loading + 40 x 0.5 s = 21 s; side by side 2 / 1.25 = 1.6x that; lane A takes 2 runs
    assert line.startswith("≈ 67 s for all 3 runs here (2 side by side × 1 thread") and "63 s one after" in line
    schedule._MEMO.clear()
    estimate.forget()
