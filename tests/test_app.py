"""The pages, driven with Streamlit's AppTest: every page renders, and the main interactions work.

Each test gets its own HFT_HOME, a RunStore there and a RunManager whose train_fn is a
fake (a few logged steps in milliseconds), injected through session_state, so nothing
trains for real. The browser tests (tests/e2e) train tiny models for real.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hft_core.config import RunConfig  # noqa: E402
from hft_core.runs import RunManager  # noqa: E402
from hft_core.store import RunStore  # noqa: E402
from ui import form_state as fs  # noqa: E402
from ui.state import MANAGER_KEY  # noqa: E402

APP = str(ROOT / "app.py")


def fake_train(step_seconds: float = 0.0):
    """A train_fn with the trainer's signature: logs the trainer's metric names, honours stop."""
    def train(cfg, sink=None, stop=None, out_dir=None, resume=False):
        stop = stop or threading.Event()
        sink.log(0, {"params_total": 1000, "params_trainable": 1000})
        for step in range(1, cfg.max_steps + 1):
            if stop.is_set():
                return SimpleNamespace(status="stopped", step=step - 1, checkpoint=None, metrics={})
            sink.log(step, {"loss": 2.0 / step, "loss/task": 2.0 / step, "lr": cfg.lr, "samples_per_s": 100.0,
                            "tokens_per_s": 5000.0, "tokens_seen": 512.0 * step, "progress": step / cfg.max_steps})
            time.sleep(step_seconds)
        sink.log(cfg.max_steps, {"eval/accuracy": 0.6, "eval/macro_f1": 0.5, "eval/loss": 1.1})
        return SimpleNamespace(status="finished", step=cfg.max_steps, checkpoint=None, metrics={})
    return train


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(autouse=True)
def no_background_probes(monkeypatch):
    """The Train page measures a config's speed in a background thread (ui.cost); only the tests
    about the estimate turn that on (a probe left running would train beside later tests)."""
    monkeypatch.setenv("HFT_ESTIMATE_PROBES", "0")


@pytest.fixture
def lab(home):
    """(store, manager) in a temp home; the manager trains with the fake."""
    store = RunStore(home)
    mgr = RunManager(store, train_fn=fake_train())
    yield store, mgr
    mgr.shutdown()
    store.close()


def app(mgr, page: str | None = None, link: dict | None = None, **state) -> AppTest:
    """The app in AppTest; ``link``: query parameters of the URL it is opened with."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[MANAGER_KEY] = mgr
    for k, v in (link or {}).items():
        at.query_params[k] = v
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def seed_runs(store: RunStore, n: int = 2, steps: int = 12, **cfg_kw) -> list[str]:
    """Finished runs with metrics, written straight into the store."""
    ids = []
    for i in range(n):
        cfg = RunConfig(model="tiny:bert", max_steps=steps, seed=i, lr=1e-3, **cfg_kw)
        rid = store.create_run(cfg, status="running", device="cpu", group="seeded", name=f"seeded {i}")
        for step in range(1, steps + 1):
            store.log_metrics(rid, step, {"loss": 2.0 / step + 0.1 * i, "lr": 1e-3, "samples_per_s": 90.0 + i,
                                          "tokens_seen": 100.0 * step, "progress": step / steps})
        store.log_metrics(rid, steps, {"eval/accuracy": 0.5 + 0.1 * i})
        store.flush()
        store.set_status(rid, "finished")
        ids.append(rid)
    return ids


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def charts_on(at: AppTest) -> list[dict]:
    """The figures handed to ui.live_chart components on the page (Live, Compare)."""
    import json

    return [p["figure"] for e in at.get("component_instance") for p in json.loads(e.proto.json_args)["panels"]]


def start_button(at: AppTest):
    return next(b for b in at.button if b.label == "Start")


# ---- Train ----------------------------------------------------------------------------------------

def test_train_page_renders_the_quick_demo_with_yaml_and_command(lab):
    store, mgr = lab
    at = app(mgr)
    assert at.title[0].value == "Train"
    assert at.session_state["f.preset"] == fs.QUICK_DEMO
    code = texts(at, "code")
    assert any("model: tiny:bert" in c for c in code)
    assert any(c.startswith("python -m hft_core train") and "tiny:bert" in c for c in code)
    assert any("Will run" in s for s in texts(at, "success"))  # the precision check, before Start
    assert not at.error


def test_train_invalid_value_shows_error_and_starts_nothing(lab):
    store, mgr = lab
    at = app(mgr)
    at.number_input(key="cfg.lr").set_value(5.0).run()
    errors = " ".join(texts(at, "error"))
    assert "lr=5.0" in errors and "between 0 and 1" in errors
    start_button(at).click().run()
    assert any("Not started" in e for e in texts(at, "error"))
    assert store.list_runs() == []


def test_train_refused_precision_is_explained_before_start(lab):
    store, mgr = lab
    at = app(mgr)
    at.selectbox(key="cfg.precision").set_value("fp16").run()
    errors = " ".join(texts(at, "error"))
    assert "Refused" in errors and "fp16" in errors and "CPU" in errors
    start_button(at).click().run()
    assert store.list_runs() == []


def test_start_submits_exactly_one_run_even_when_clicked_twice(lab):
    store, mgr = lab
    at = app(mgr, **{"f.go_live": False})
    button = start_button(at)
    button.click().run()
    assert not at.exception, at.exception
    assert len(store.list_runs()) == 1
    assert any("Started" in s for s in texts(at, "success"))
    button.click().run()  # the same (now stale) button again: a double submit
    assert len(store.list_runs()) == 1
    mgr.wait(timeout=30)
    rec = store.list_runs()[0]
    assert rec.status == "finished" and rec.config["model"] == "tiny:bert" and rec.config["max_steps"] == 40


def test_start_switches_to_live_and_shows_the_run(lab):
    store, mgr = lab
    at = app(mgr)
    start_button(at).click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Live"
    assert len(store.list_runs()) == 1


def test_start_as_sweep_queues_the_grid_as_one_group(lab):
    store, mgr = lab
    at = app(mgr, **{"f.go_live": False})
    at.multiselect(key="f.sweep_alphas").set_value([0.0, 1.0])
    at.number_input(key="f.sweep_seeds").set_value(2)
    next(b for b in at.button if b.label == "Start as sweep").click().run()
    assert not at.exception, at.exception
    runs = store.list_runs()
    assert len(runs) == 4 and len({r.group for r in runs}) == 1
    assert sorted((r.config["mix"].get("blend", {}).get("alpha"), r.config["seed"]) for r in runs) == \
        [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]


def test_preset_fills_the_form(lab):
    store, mgr = lab
    at = app(mgr)
    presets = [o for o in at.selectbox(key="f.preset").options if o != fs.QUICK_DEMO]
    assert presets, "the Preset list offers no preset: presets/*.yaml are missing or none loads"
    at.selectbox(key="f.preset").set_value(presets[0]).run()
    assert not at.exception, at.exception
    assert at.session_state["f.preset"] == presets[0]
    assert at.info  # the preset's question and expected outcome
    assert not any("Cannot start" in e for e in texts(at, "error"))


def test_strategy_toggle_shows_its_fields_with_help_and_enters_the_config(lab):
    store, mgr = lab
    at = app(mgr)
    at.toggle(key="mix.l2sp.on").set_value(True).run()
    beta = at.number_input(key="mix.l2sp.beta")
    assert "pull toward" in beta.help
    assert any("l2sp:" in c for c in texts(at, "code"))
    at.slider(key="mix.blend.alpha").set_value(0.5).run()
    assert any("alpha: 0.5" in c for c in texts(at, "code"))


def test_upload_csv_previews_guesses_columns_and_trains_on_it(lab, home):
    store, mgr = lab
    at = app(mgr, **{"f.go_live": False})
    at.selectbox(key="f.data_choice").set_value(fs.UPLOAD).run()
    rows = "\n".join(f"{'good great fine' if i % 2 else 'bad awful poor'} text {i},{'pos' if i % 2 else 'neg'}"
                     for i in range(40))
    at.file_uploader(key="f.upload").set_value(("reviews.csv", f"review,sentiment\n{rows}\n".encode(), "text/csv"))
    at.run()
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    assert at.session_state["cfg.text_column"] == "review" and at.session_state["cfg.label_column"] == "sentiment"
    assert at.dataframe  # the preview
    # the quick demo's n_train=200 is more than the file has: reset to "all", and said so
    assert at.session_state["cfg.n_train"] == 0 and any("n_train was 200" in i for i in texts(at, "info"))
    assert any("training and" in c and "2 classes" in c for c in texts(at, "caption"))
    start_button(at).click().run()
    run = store.list_runs()[0]
    assert Path(run.config["data"]).parent == home / "uploads"
    assert Path(run.config["data"]).read_text().startswith("review,sentiment")


def test_local_file_is_checked_before_start(lab, home):
    store, mgr = lab
    path = home / "tiny.csv"
    path.write_text("text,label\n" + "\n".join(f"example {i},{i % 2}" for i in range(20)) + "\n")
    at = app(mgr)
    at.selectbox(key="f.data_choice").set_value(fs.CUSTOM).run()
    at.text_input(key="f.data_text").set_value(str(path)).run()
    errors = " ".join(texts(at, "error"))
    assert "n_train=200" in errors  # the quick demo asks for more than 20 rows hold
    start_button(at).click().run()
    assert store.list_runs() == []
    at.number_input(key="cfg.n_train").set_value(0).run()
    assert not at.error, texts(at, "error")


def test_bad_upload_shows_a_clear_error_and_starts_nothing(lab):
    store, mgr = lab
    at = app(mgr)
    at.selectbox(key="f.data_choice").set_value(fs.UPLOAD).run()
    at.file_uploader(key="f.upload").set_value(("numbers.csv", b"\x00\x01\x02binary\x00", "text/csv")).run()
    assert not at.exception, at.exception
    assert any("numbers.csv cannot be used" in e and "binary" in e for e in texts(at, "error"))
    start_button(at).click().run()
    assert store.list_runs() == []


def test_form_state_round_trip_with_strategies():
    from hft_core.strategies.base import all_specs

    specs = all_specs()
    cfg = RunConfig(model="hub:some/model", data="/tmp/x.csv", lr=3e-4, max_steps=7,
                    mix={"blend": {"alpha": 0.25}, "l2sp": {"beta": 0.1}})
    state = fs.config_to_state(cfg, specs, ["tiny:bert"], ["bundled:bbc-news"])
    assert state["f.model_choice"] == fs.CUSTOM and state["mix.blend.alpha"] == 0.25
    assert fs.state_to_config(state, specs) == cfg
    plain = fs.config_to_state(RunConfig(), specs, ["bundled:minilm-l6"], ["bundled:bbc-news"])
    assert plain["mix.blend.alpha"] == 1.0 and fs.state_to_config(plain, specs) == RunConfig()


def test_choosing_minilm_after_the_quick_demo_takes_its_recommended_settings_and_says_so(lab):
    store, mgr = lab
    at = app(mgr)
    at.selectbox(key="f.model_choice").set_value("bundled:minilm-l6").run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.lr"] == 1e-4 and at.session_state["cfg.max_length"] == 64
    notes = [m.value for m in at.markdown if "as recommended" in m.value]
    assert notes and "Set for MiniLM-L6, as recommended: lr 1e-4 (was 1e-3), max length 64 (was 128)." in notes[0]
    assert any("lr: 0.0001" in c for c in texts(at, "code"))
    assert not any("recommended for MiniLM-L6" in w for w in texts(at, "warning"))
    at.button(key="f.card_undo").click().run()  # undo: the quick demo's lr is back, and now it is warned about
    assert at.session_state["cfg.lr"] == 1e-3 and at.session_state["cfg.max_length"] == 128
    assert any("lr 1e-3 is 10x the 1e-4 recommended for MiniLM-L6" in w for w in texts(at, "warning"))


def test_a_hand_edited_lr_is_kept_when_the_model_changes(lab):
    store, mgr = lab
    at = app(mgr)
    at.number_input(key="cfg.lr").set_value(3e-4).run()
    at.selectbox(key="f.model_choice").set_value("bundled:minilm-l6").run()
    assert at.session_state["cfg.lr"] == 3e-4 and at.session_state["cfg.max_length"] == 64
    note = next(m.value for m in at.markdown if "as recommended" in m.value)
    assert "Kept your own lr 3e-4 (recommended: 1e-4)." in note and "max length 64" in note
    at.button(key="f.card_use.lr").click().run()
    assert at.session_state["cfg.lr"] == 1e-4


def test_the_time_estimate_shows_before_start(lab, monkeypatch):
    monkeypatch.setenv("HFT_ESTIMATE_PROBES", "1")
    store, mgr = lab
    at = app(mgr)
    deadline = time.time() + 300  # a real 4-step probe of tiny:bert in the background; slow on a busy CPU
    while not any("s/step here" in c for c in texts(at, "caption")) and time.time() < deadline:
        assert any("Time estimate" in c for c in texts(at, "caption")), texts(at, "caption")  # measuring...
        time.sleep(0.2)
        at.run()
    line = next((c for c in texts(at, "caption") if "s/step here" in c), None)
    assert line, f"no measured estimate after 300 s; the captions: {texts(at, 'caption')}"
    assert "→ 40 steps ≈" in line and "probe" in line
    assert store.list_runs() == []  # a probe is not a run


def test_the_estimate_comes_from_earlier_runs_of_the_same_shape_without_measuring(lab):
    from hft_core import estimate

    store, mgr = lab
    estimate.forget()  # no probe figure in memory from an earlier test
    seed_runs(store, 2, steps=12)  # tiny:bert, batch 16 x 128 tokens: the quick demo's shape
    at = app(mgr)
    line = next(c for c in texts(at, "caption") if "s/step here" in c)
    assert "from 2 earlier runs of this shape" in line


def test_the_form_lives_in_the_url_and_a_link_reopens_it(lab):
    store, mgr = lab
    at = app(mgr)
    at.number_input(key="cfg.lr").set_value(3e-4)
    at.slider(key="mix.blend.alpha").set_value(0.5)
    at.toggle(key="mix.l2sp.on").set_value(True).run()
    link = dict(at.query_params)
    assert link["lr"] in ("0.0003", ["0.0003"]) and "mix.blend.alpha" in link and "mix.l2sp" in link
    assert "max_steps" not in link  # only what differs from the quick demo
    again = app(mgr, link={k: v[0] if isinstance(v, list) else v for k, v in link.items()})
    for key in ("cfg.lr", "mix.blend.alpha", "mix.l2sp.on", "f.model_choice", "cfg.max_steps"):
        assert again.session_state[key] == at.session_state[key], key
    assert not any("From the link" in w for w in texts(again, "warning"))


def test_a_bad_link_gives_a_note_and_the_default_form(lab):
    store, mgr = lab
    at = app(mgr, link={"lr": "abc", "colour": "red"})
    note = next(w for w in texts(at, "warning") if w.startswith("From the link"))
    assert "lr='abc' ignored" in note and "colour='red' ignored" in note
    assert at.session_state["cfg.lr"] == 1e-3 and at.session_state["f.preset"] == fs.QUICK_DEMO
    gone = app(mgr, link={"preset": "no_such_preset", "lr": "0.1"})
    assert any("preset='no_such_preset' from the link does not exist" in w for w in texts(gone, "warning"))
    assert gone.session_state["cfg.lr"] == 1e-3  # a stale preset voids the link's other settings too


def test_a_preset_link_opens_its_variant(lab):
    store, mgr = lab
    at = app(mgr, link={"preset": "finetune_vs_scratch", "variant": "alpha-0-5-half-and-half", "max_steps": "20"})
    assert "scratch" in at.session_state["f.preset"].lower()
    assert at.session_state["f.variant"] == "alpha 0.5 (half and half)"
    assert at.session_state["mix.blend.alpha"] == 0.5 and at.session_state["cfg.max_steps"] == 20
    assert dict(at.query_params).get("variant") in ("alpha-0-5-half-and-half", ["alpha-0-5-half-and-half"])


# ---- Live -------------------------------------------------------------------------------------------

def test_live_with_nothing_says_so(lab):
    store, mgr = lab
    at = app(mgr, "pages/live.py")
    assert any("Nothing is training" in i for i in texts(at, "info"))


def test_live_shows_runs_curves_and_a_failed_runs_error(lab):
    store, mgr = lab
    seed_runs(store, 1)
    rid = store.create_run(RunConfig(model="tiny:bert"), status="running", device="cpu", name="broken")
    store.set_status(rid, "failed", error="DataError: column 'txt' not found; columns are ['text', 'label']",
                     traceback="Traceback (most recent call last):\n  ...\nDataError: column 'txt' not found")
    at = app(mgr, "pages/live.py")
    assert any("column 'txt' not found" in e for e in texts(at, "error"))
    assert at.expander and any(e.label == "Traceback" for e in at.expander)
    figures = charts_on(at)
    assert len(figures) >= 4
    assert {t["name"] for t in figures[0]["data"]} == {"seeded 0"} and figures[0]["layout"]["uirevision"] == "live-loss"


def test_live_compare_these_runs_opens_them_on_compare(lab):
    store, mgr = lab
    ids = seed_runs(store, 2)
    at = app(mgr, "pages/live.py")
    at.button(key="live.compare").click().run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Compare"]
    assert sorted(at.session_state["compare.runs"]) == sorted(ids)


def test_live_stop_button_stops_a_running_run(home):
    store = RunStore(home)
    mgr = RunManager(store, train_fn=fake_train(step_seconds=0.05))
    try:
        rid = mgr.submit(RunConfig(model="tiny:bert", max_steps=400))
        deadline = time.time() + 60
        while store.get_run(rid).status != "running" and time.time() < deadline:
            time.sleep(0.05)
        assert store.get_run(rid).status == "running", store.get_run(rid)
        at = app(mgr, "pages/live.py")
        at.button(key=f"live.stop.{rid}").click().run()
        assert mgr.wait(rid, timeout=10)
        assert store.get_run(rid).status == "stopped"
    finally:
        mgr.shutdown()
        store.close()


# ---- Compare -------------------------------------------------------------------------------------------

def test_compare_two_runs_renders_chart_deltas_and_diff(lab):
    store, mgr = lab
    a, b = seed_runs(store, 2)
    at = app(mgr, "pages/compare.py", **{"compare.runs": [a, b]})
    assert at.title[0].value == "Compare"
    figures = charts_on(at)
    assert len(figures) == 1
    assert {t["name"] for t in figures[0]["data"] if t.get("showlegend", True)} == {"seeded 0", "seeded 1"}
    at.toggle(key="compare.log").set_value(True)
    at.slider(key="compare.smoothing").set_value(0.9)
    at.selectbox(key="compare.baseline").set_value(a).run()
    assert not at.exception, at.exception
    figures = charts_on(at)
    assert len(figures) == 2  # + paired deltas
    assert figures[0]["layout"]["yaxis"]["type"] == "log"
    assert any(t["name"].endswith("(raw)") for t in figures[0]["data"])  # smoothed, raw kept faint
    assert any("Latest paired delta" in c for c in texts(at, "caption"))
    # the two configs differ only by seed: a seed group, drawn as mean + band
    at.toggle(key="compare.seeds").set_value(True).run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 3  # means over seeds + final metrics + config diff
    means = at.dataframe[0].value  # one variant (the configs differ only by seed), two seeds: warned
    assert list(means["variant"]) == ["seeded 0 (+1 seeds)"] and list(means["seeds"]) == [2]
    assert any("Only 2 seeds" in w.value for w in at.warning)


def test_compare_by_group(lab):
    store, mgr = lab
    ids = seed_runs(store, 3)
    at = app(mgr, "pages/compare.py")
    at.selectbox(key="compare.group").set_value("seeded").run()
    assert sorted(at.session_state["compare.runs"]) == sorted(ids)
    assert at.query_params["group"] == "seeded"   # the URL names the group: a reload or a link reopens it


def compare_by_link(mgr, link: dict) -> AppTest:
    """Compare opened by its URL in a fresh session (the app's first page writes its own link first)."""
    at = app(mgr)
    at.query_params.clear()
    for k, v in link.items():
        at.query_params[k] = v
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def test_a_compare_link_reopens_its_group_or_its_runs_and_skips_what_is_gone(lab):
    store, mgr = lab
    ids = seed_runs(store, 3)
    at = compare_by_link(mgr, {"group": "seeded", "metric": "eval/accuracy"})
    assert sorted(at.session_state["compare.runs"]) == sorted(ids)
    assert at.session_state["compare.metric"] == "eval/accuracy" and at.session_state["compare.group"] == "seeded"
    at.multiselect(key="compare.runs").unselect(ids[2]).run()   # a run left out by hand: the link names the runs
    kept = at.session_state["compare.runs"]
    assert sorted(kept) == sorted(ids[:2])
    assert dict(at.query_params) == {"runs": ",".join(kept), "metric": "eval/accuracy"}

    at = compare_by_link(mgr, {"runs": f"{ids[1]},gone12", "metric": "loss"})
    assert at.session_state["compare.runs"] == [ids[1]] and at.session_state["compare.group"] == ""
    assert any("gone12" in w.value and "not in this store" in w.value for w in at.warning)
    at = compare_by_link(mgr, {"group": "deleted-group"})
    assert any("deleted-group" in w.value for w in at.warning)
    assert len(at.session_state["compare.runs"]) == 2   # the default: the two newest runs


# ---- Runs -------------------------------------------------------------------------------------------------

def test_runs_lists_and_deletes_with_confirmation(lab):
    store, mgr = lab
    a, b = seed_runs(store, 2)
    at = app(mgr, "pages/runs.py")
    assert at.title[0].value == "Runs"
    at.selectbox(key="runs.selected").set_value(a).run()
    at.button(key="runs.delete").click().run()
    assert len(store.list_runs()) == 2  # not yet: asks first
    assert any("cannot be undone" in w for w in texts(at, "warning"))
    at.button(key="runs.delete_yes").click().run()
    assert not at.exception, at.exception
    assert [r.id for r in store.list_runs()] == [b]


def test_runs_filters_and_load_into_train(lab):
    store, mgr = lab
    a, b = seed_runs(store, 2)
    at = app(mgr, "pages/runs.py")
    at.text_input(key="runs.text").set_value("seeded 1").run()
    assert list(at.selectbox(key="runs.selected").options) == [f"seeded 1 · {b} · finished"]
    at.button(key="runs.load").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train"
    assert at.session_state["cfg.seed"] == 1 and at.session_state["f.loaded_from"] == b


def test_runs_resume_a_stopped_run(lab):
    store, mgr = lab
    rid = store.create_run(RunConfig(model="tiny:bert", max_steps=5), status="running", device="cpu")
    store.set_status(rid, "stopped")
    at = app(mgr, "pages/runs.py")
    at.button(key="runs.resume").click().run()
    assert not at.exception, at.exception
    assert mgr.wait(rid, timeout=20)
    assert store.get_run(rid).status == "finished"


def test_run_all_variants_of_a_preset_opens_its_group_on_compare(lab):
    store, mgr = lab
    at = app(mgr)
    title = next(o for o in at.selectbox(key="f.preset").options if "scratch" in o.lower())
    at.selectbox(key="f.preset").set_value(title).run()
    run_all = next(b for b in at.button if b.label.startswith("Run all"))
    run_all.click().run()
    assert not at.exception, at.exception
    runs = store.list_runs()
    assert len(runs) == 3 and len({r.group for r in runs}) == 1  # alpha 0, 0.5, 1 as one group
    assert [t.value for t in at.title] == ["Compare"]
    assert at.session_state["compare.group"] == runs[0].group
    assert sorted(at.session_state["compare.runs"]) == sorted(r.id for r in runs)
    assert at.session_state["compare.metric"] == "eval/accuracy"


def test_the_pretraining_preset_runs_at_every_label_budget_as_one_group(lab):
    store, mgr = lab
    at = app(mgr)
    title = next(o for o in at.selectbox(key="f.preset").options if "Pretraining" in o)
    at.selectbox(key="f.preset").set_value(title).run()
    budgets = next(b for b in at.button if b.label.startswith("Run it at 25 / 50 / 100 / 200 labelled"))
    budgets.click().run()
    assert not at.exception, at.exception
    runs = store.list_runs()
    assert len(runs) == 2 + 4 * 4 and len({r.group for r in runs}) == 1   # pretraining once each, 4 variants x 4
    assert runs[0].group.startswith("pretrain_then_finetune_by_labels-")
    assert {r.config["n_train"] for r in runs if r.name.endswith(" labels")} == {25, 50, 100, 200}
    assert [t.value for t in at.title] == ["Compare"] and at.session_state["compare.group"] == runs[0].group
    # a preset without a pretraining run has no such button
    at.switch_page("pages/train.py").run()
    title = next(o for o in at.selectbox(key="f.preset").options if "scratch" in o.lower())
    at.selectbox(key="f.preset").set_value(title).run()
    assert not any(b.label.startswith("Run it at") for b in at.button)


def test_a_variant_that_needs_another_variants_run_says_how_to_start_it(lab):
    store, mgr = lab
    at = app(mgr)
    title = next(o for o in at.selectbox(key="f.preset").options if "student" in o.lower())
    at.selectbox(key="f.preset").set_value(title).run()
    kd = next(o for o in at.selectbox(key="f.variant").options if "KD" in o)
    at.selectbox(key="f.variant").set_value(kd).run()
    assert not at.exception, at.exception
    errors = " ".join(texts(at, "error"))
    assert "run:{teacher}" in errors and "Run all variants" in errors
    at.button(key=next(k for k in (b.key for b in at.button) if k and k.startswith("start-"))).click().run()
    assert store.list_runs() == []  # nothing started
