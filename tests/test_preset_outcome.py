"""A user's own runs of a preset judged against its expected outcome: hft_core.presets.judge_group,
ui.preset_outcome (AppTest) and the Compare page's block for a preset's group. Runs are written
straight into a temp store (no training)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hft_core import presets as P  # noqa: E402
from hft_core.config import ConfigError  # noqa: E402
from hft_core.store import RunStore  # noqa: E402
from scipy import stats as sps  # noqa: E402
from ui.preset_outcome import outcome_rows  # noqa: E402

PRESET = P.load_preset("finetune_vs_scratch")
A1, A05, A0 = (v.label for v in PRESET.variants)  # alpha 1, alpha 0.5, alpha 0


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    s = RunStore(tmp_path)
    yield s
    s.close()


def add_run(store: RunStore, group: str, label: str, seed: int, acc: float | None, status: str = "finished",
            quick: bool = False) -> str:
    variant = next(v for v in PRESET.variants if v.label == label)
    rid = store.create_run(P.variant_config(PRESET, variant, seed, group=group, quick=quick), status="running",
                           group=group, name=label)
    store.log_metrics(rid, 10, {"loss": 1.0})
    if acc is not None:
        store.log_metrics(rid, 40, {"eval/accuracy": acc})
    store.set_status(rid, status)
    store.flush()
    return rid


def test_group_names_give_their_preset():
    assert P.preset_of_group(P.group_name(PRESET)) == "finetune_vs_scratch"
    assert P.preset_of_group("lora_vs_full-1126-101500") == "lora_vs_full"
    assert P.preset_of_group("lora_vs_full-1126-101500-quick") == "lora_vs_full"  # the app's quick check
    assert P.preset_of_group("lora_vs_full-1126-101500-other") == ""
    assert P.preset_of_group("my sweep") == "" and P.preset_of_group("") == ""


def test_judge_group_held_did_not_hold_and_not_measurable(store):
    group = "finetune_vs_scratch-1126-101500"
    add_run(store, group, A1, 0, 0.90)
    add_run(store, group, A1, 1, 0.80)
    add_run(store, group, A05, 0, 0.95)    # alpha 0.5 above alpha 1: the first expectation fails
    add_run(store, group, A05, 1, 0.85)
    add_run(store, group, A0, 0, 0.20)
    add_run(store, group, A0, 1, 0.99, status="failed")  # not counted
    add_run(store, group, A0, 2, None, status="running")  # not counted
    verdicts = P.judge_group(store, group)
    assert [v.held for v in verdicts] == [False, True]
    assert [v.verdict for v in verdicts] == ["did not hold", "held on the mean"]  # 2nd: one seed in common
    assert verdicts[0].means == pytest.approx({A1: 0.85, A05: 0.90})
    assert verdicts[1].runs == {A05: 2, A0: 1} and verdicts[1].missing == ()
    assert verdicts[1].differences[0].seeds == (0,) and verdicts[1].held_on() == (1, 1)
    assert P.preset_groups(store, PRESET) == [group]


def test_judge_group_not_measurable_without_a_finished_run_of_a_variant(store):
    group = "finetune_vs_scratch-1126-111500"
    add_run(store, group, A1, 0, 0.9)
    add_run(store, group, A05, 0, 0.5)
    add_run(store, group, A0, 0, None, status="queued")
    verdicts = P.judge_group(store, group)
    assert [v.held for v in verdicts] == [True, None]
    assert verdicts[1].missing == (A0,) and verdicts[1].verdict == "not measurable"
    with pytest.raises(ConfigError, match="group 'my sweep' was not made by a preset"):
        P.judge_group(store, "my sweep")


def _outcome_page(home: str, preset_name: str) -> None:
    from hft_core import presets as P
    from hft_core.store import RunStore
    from ui.preset_outcome import render_preset_outcome

    render_preset_outcome(P.load_preset(preset_name), RunStore(home))


def test_render_preset_outcome_lists_each_group_with_its_verdicts(store, tmp_path):
    at = AppTest.from_function(_outcome_page, kwargs={"home": str(tmp_path), "preset_name": PRESET.name},
                               default_timeout=60).run()
    assert not at.exception, at.exception
    assert "No finished runs" in at.caption[0].value
    old, new = "finetune_vs_scratch-1126-090000", "finetune_vs_scratch-1126-100000"
    for label, acc in ((A1, 0.9), (A05, 0.6), (A0, 0.2)):
        add_run(store, old, label, 0, acc)
    add_run(store, new, A1, 0, 0.5)
    add_run(store, new, A05, 0, 0.7)
    add_run(store, new, A0, 0, None, status="running")
    at.run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert text.index(new) < text.index(old)  # newest group first
    assert "2 of 3 runs finished, 1 still to come" in text
    newest, oldest = (at.dataframe[i].value for i in range(2))
    assert list(newest["verdict"]) == ["✗ did not hold", "… not measurable yet"]
    assert list(oldest["verdict"]) == ["⚠ held on the mean", "⚠ held on the mean"]  # one seed: no interval
    assert "50.0%" in newest["means"][0] and "no finished run yet: alpha 0" in newest["means"][1]
    assert newest["difference"][0] == f"{A1} − {A05}: -20.0 points, held on 0/1 seeds"
    notes = " ".join(c.value for c in at.caption)
    assert "95% t-interval" in notes and "1 seed: no interval" in notes


def test_compare_page_shows_the_outcome_of_a_preset_group(store, tmp_path):
    from hft_core.runs import RunManager
    from ui.state import MANAGER_KEY

    group = "finetune_vs_scratch-1126-120000"
    for label, acc in ((A1, 0.9), (A05, 0.6), (A0, 0.2)):
        add_run(store, group, label, 0, acc)
    add_run(store, "", A1, 0, 0.9)  # a run outside any group
    mgr = RunManager(store, train_fn=lambda *a, **k: None)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.session_state[MANAGER_KEY] = mgr
        at.run()
        at.switch_page("pages/compare.py").run()
        assert not at.exception, at.exception
        assert not any("Did the preset" in e.label for e in at.expander)  # runs picked by hand: no verdicts
        at.selectbox(key="compare.group").set_value(group).run()
        assert not at.exception, at.exception
        assert any("Did the preset" in e.label for e in at.expander)
        verdicts = [list(d.value["verdict"]) for d in at.dataframe if "verdict" in d.value]
        assert verdicts == [["⚠ held on the mean", "⚠ held on the mean"]]
    finally:
        mgr.shutdown()


def three_seeds(store: RunStore, group: str, accs: dict[str, tuple[float, float, float]], quick: bool = False) -> None:
    for label, values in accs.items():
        for seed, acc in enumerate(values):
            add_run(store, group, label, seed, acc, quick=quick)


def test_a_check_holding_on_two_of_three_seeds_is_held_on_the_mean(store):
    group = "finetune_vs_scratch-1126-130000"
    # alpha 1 above alpha 0.5 on seeds 0 and 1, below on seed 2; alpha 0.5 far above alpha 0 on every seed
    three_seeds(store, group, {A1: (0.90, 0.92, 0.70), A05: (0.80, 0.81, 0.75), A0: (0.20, 0.19, 0.21)})
    first, second = P.judge_group(store, group)
    assert first.held is True and first.held_on() == (2, 3)
    assert first.verdict == "held on the mean"
    d = first.differences[0]
    ref = sps.ttest_rel([0.90, 0.92, 0.70], [0.80, 0.81, 0.75]).confidence_interval(0.95)
    assert (d.estimate.lo, d.estimate.hi) == pytest.approx((ref.low, ref.high))   # scipy's paired t interval
    assert second.verdict == "held with confidence" and second.held_on() == (3, 3)
    assert second.differences[0].estimate.lo > 0
    assert second.estimates[A0].mean == pytest.approx(0.20)


def test_quick_runs_are_not_judged(store):
    group = "finetune_vs_scratch-1126-140000-quick"  # as the app names a quick check's group
    three_seeds(store, group, {A1: (0.9, 0.9, 0.9), A05: (0.5, 0.5, 0.5), A0: (0.9, 0.9, 0.9)}, quick=True)
    verdicts = P.judge_group(store, group)
    assert [v.verdict for v in verdicts] == ["not judged (quick check)"] * 2
    assert [v.held for v in verdicts] == [True, False]  # the means are still there, only not judged
    assert all(P.is_quick_run(PRESET, r) for r in store.list_runs(group=group))
    rows = outcome_rows(PRESET, store, [group])[0].rows
    assert [r["verdict"] for r in rows] == ["» not judged (quick check)"] * 2
    assert P.preset_groups(store, PRESET) == [group]  # the Train page's panel lists it, not judged


def test_panel_shows_intervals_and_paired_differences(store, tmp_path):
    group = "finetune_vs_scratch-1126-150000"
    three_seeds(store, group, {A1: (0.925, 0.90, 0.95), A05: (0.74, 0.72, 0.77), A0: (0.20, 0.18, 0.21)})
    at = AppTest.from_function(_outcome_page, kwargs={"home": str(tmp_path), "preset_name": PRESET.name},
                               default_timeout=60).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["verdict"]) == ["✓ held with confidence", "✓ held with confidence"]
    d = P.judge_group(store, group)[0].differences[0]
    assert table["difference"][0] == (f"{A1} − {A05}: +{100 * d.estimate.mean:.1f} points "
                                      f"[+{100 * d.estimate.lo:.1f}, +{100 * d.estimate.hi:.1f}], held on 3/3 seeds")
    assert "3 runs" in table["means"][0] and "92.5% [" in table["means"][0]
    assert f"- {table['difference'][0]}" in [line for m in at.markdown for line in m.value.splitlines()]
    notes = " ".join(c.value for c in at.caption)
    assert "3 seeds" in notes and "seed: no interval" not in notes


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_presets", ROOT / "bench" / "presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_prints_the_same_verdicts(store):
    import io

    group = "finetune_vs_scratch-1126-160000"
    three_seeds(store, group, {A1: (0.90, 0.92, 0.70), A05: (0.80, 0.81, 0.75), A0: (0.20, 0.19, 0.21)})
    outcome = P.outcome_of(PRESET, store, [r.id for r in store.list_runs(group=group)], group)
    out = io.StringIO()
    _bench().report(outcome, out=out)
    text = out.getvalue()
    assert (f"expected {A1} > {A05} on eval/accuracy: held on the mean ({A1} − {A05}: +5.3 points [-16.9, +27.6], "
            "held on 2/3 seeds)") in text
    assert f"expected {A05} > {A0} on eval/accuracy: held with confidence" in text
    assert "checks paired by seed: 95% t-interval" in text and "warning" not in text

    quick = "finetune_vs_scratch-1126-170000"
    three_seeds(store, quick, {A1: (0.9,), A05: (0.5,), A0: (0.1,)}, quick=True)
    outcome = P.outcome_of(PRESET, store, [r.id for r in store.list_runs(group=quick)], quick)
    out = io.StringIO()
    _bench().report(outcome, out=out)
    text = out.getvalue()
    assert text.count(": not judged (quick check)") == 2 and "held" not in text.replace("not judged", "")
    assert "warning: 1 seed: no interval" in text
