"""hft_core.comparison: variants of a set of runs with their intervals and paired differences, read from a
temp store (runs written straight into it, no training), checked against scipy on the same numbers."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hft_core import comparison as C  # noqa: E402
from hft_core import presets as P  # noqa: E402
from hft_core import stats as S  # noqa: E402
from hft_core.config import RunConfig  # noqa: E402
from hft_core.store import RunStore  # noqa: E402

PRESET = P.load_preset("finetune_vs_scratch")
A1, A05, A0 = (v.label for v in PRESET.variants)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    s = RunStore(tmp_path)
    yield s
    s.close()


def add(store: RunStore, cfg: RunConfig, name: str, values: dict[str, float], status: str = "finished",
        group: str = "") -> str:
    rid = store.create_run(cfg, status="running", group=group, name=name)
    store.log_metrics(rid, 1, {"loss": 2.0})
    store.log_metrics(rid, 40, values)
    store.set_status(rid, status)
    store.flush()
    return rid


def test_runs_differing_only_by_seed_are_one_variant(store):
    base = RunConfig(model="tiny:bert", max_steps=40)
    lr = base.with_overrides({"lr": 3e-4})
    accs = {"base": [0.70, 0.74, 0.69], "lr 3e-4": [0.80, 0.83, 0.78]}
    for seed in range(3):
        add(store, base.with_overrides({"seed": seed}), "base", {"eval/accuracy": accs["base"][seed]})
        add(store, lr.with_overrides({"seed": seed}), "lr 3e-4", {"eval/accuracy": accs["lr 3e-4"][seed]})
    running = add(store, lr.with_overrides({"seed": 3}), "lr 3e-4", {"eval/accuracy": 0.1}, status="running")
    cmp = C.compare_runs(store, [r.id for r in store.list_runs()], "eval/accuracy")
    assert sorted(v.label for v in cmp.variants) == ["base", "lr 3e-4"]
    assert cmp.notes == [f"not finished, left out: {running} (running)"]
    for label, xs in accs.items():
        est = cmp.estimates[label]
        ref = sps.ttest_1samp(xs, 0).confidence_interval(0.95)
        assert (est.mean, est.lo, est.hi) == pytest.approx((np.mean(xs), ref.low, ref.high))
    (d,) = cmp.differences
    assert (d.a, d.b) == ("lr 3e-4", "base")  # the higher mean first: a positive difference
    ref = sps.ttest_rel(accs["lr 3e-4"], accs["base"]).confidence_interval(0.95)
    assert (d.estimate.lo, d.estimate.hi) == pytest.approx((ref.low, ref.high))
    line = C.difference_line(d, "eval/accuracy")
    assert line == (f"lr 3e-4 − base: +{100 * d.estimate.mean:.1f} points [+{100 * ref.low:.1f}, "
                    f"+{100 * ref.high:.1f}], higher on 3/3 seeds")
    assert cmp.warning == "" and "3 seeds" in cmp.method_note
    rows = cmp.mean_rows()
    assert rows[0]["seeds"] == 3 and rows[0]["per seed"].startswith("0: ")
    text = "\n".join(cmp.lines())
    assert line in text and "95% t-interval" in text


def test_a_preset_group_compares_its_labels_and_warns_with_two_seeds(store):
    group = "finetune_vs_scratch-1126-101500"
    values = {A1: (0.90, 0.95), A05: (0.70, 0.80), A0: (0.20, 0.18)}
    for label, accs in values.items():
        variant = next(v for v in PRESET.variants if v.label == label)
        for seed, acc in enumerate(accs):
            add(store, P.variant_config(PRESET, variant, seed, group=group), label, {"eval/accuracy": acc}, group=group)
    cmp = C.compare_runs(store, [r.id for r in store.list_runs(group=group)], preset=PRESET)
    assert [v.label for v in cmp.variants] == [A1, A05, A0]  # the preset's order
    assert [(d.a, d.b) for d in cmp.differences] == [(A1, A05), (A1, A0), (A05, A0)]
    assert "only 2 seeds" in cmp.warning
    assert any("warning: only 2 seeds" in line for line in cmp.lines())


def test_formatting_in_display_units():
    assert C.format_value(0.925, "eval/accuracy") == "92.5"
    assert C.format_value(0.183, "eval/accuracy", signed=True) == "+18.3"
    assert C.format_value(22715141.0, "params_trainable") == "22,715,141"
    assert C.format_value(0.43121, "eval/loss") == "0.4312"
    est = S.Estimate(0.925, 0.881, 0.969, 3, "t")
    assert C.format_estimate(est, "eval/accuracy") == "92.5% [88.1, 96.9]"
    assert C.format_estimate(S.Estimate(0.5, float("nan"), float("nan"), 1, "none"), "eval/loss") == "0.5 nats"
    d = S.paired_difference({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.895, 1: 0.905, 2: 0.915}, labels=("full", "LoRA"))
    assert C.difference_line(d, "eval/accuracy", "near", 0.03).endswith("within ±3.0 points on 3/3 seeds")
    assert C.difference_line(S.paired_difference({0: 1.0}, {1: 1.0}, labels=("x", "y")), "loss") == \
        "x − y: no seed in common"


def test_many_variants_are_each_compared_with_the_best():
    variants = [C.Variant(f"v{i}", {0: i / 10, 1: i / 10 + 0.01}) for i in range(8)]
    est = {v.label: S.mean_interval(v.values.values()) for v in variants}
    pairs = C.pairs_of(variants, est)
    assert pairs == [("v7", f"v{i}") for i in range(6, -1, -1)]
    assert len(C.pairs_of(variants[:4], est)) == 6  # every pair of 4


# ---- `hft compare` ---------------------------------------------------------------------------------

def preset_group(store: RunStore, group: str, values: dict[str, tuple[float, ...]]) -> None:
    for label, accs in values.items():
        variant = next(v for v in PRESET.variants if v.label == label)
        for seed, acc in enumerate(accs):
            add(store, P.variant_config(PRESET, variant, seed, group=group), label, {"eval/accuracy": acc}, group=group)


def test_hft_compare_prints_the_table_and_the_verdicts(store, capsys):
    from hft_core.cli import main

    group = "finetune_vs_scratch-1126-101500"
    values = {A1: (0.925, 0.90, 0.95), A05: (0.80, 0.81, 0.70), A0: (0.20, 0.18, 0.21)}
    preset_group(store, group, values)
    assert main(["compare", group]) == 0
    out = capsys.readouterr().out
    cmp = C.compare_runs(store, [r.id for r in store.list_runs(group=group)], preset=PRESET)
    for line in cmp.lines():
        assert line in out
    d = S.paired_difference(dict(enumerate(values[A1])), dict(enumerate(values[A05])), labels=(A1, A05))
    line = C.difference_line(d, "eval/accuracy", "higher")
    assert f"expected {A1} > {A05} on eval/accuracy: held on the mean ({line})" in out  # +15.5 points on average, held on 3/3 seeds, but the interval reaches below 0
    assert f"expected {A05} > {A0} on eval/accuracy: held with confidence" in out
    assert "92.5% [" in out and "95% t-interval" in out and "3 seeds" in out

    ids = [r.id for r in store.list_runs(group=group) if r.name in (A1, A0)]
    assert main(["compare", *ids, "--method", "bootstrap"]) == 0
    out = capsys.readouterr().out
    assert "percentile bootstrap" in out and "3 seeds" in out  # run ids: grouped by config, seed left out
    assert f"{A1} − {A0}: +72.8 points [" in out and "higher on 3/3 seeds" in out


def test_hft_compare_bad_input_says_what_to_do(store, capsys):
    from hft_core.cli import main

    assert main(["compare", "no-such-group"]) == 2
    assert "no group 'no-such-group'" in capsys.readouterr().err
    assert main(["compare", "r-000000", "r-000001"]) == 2
    assert "no run 'r-000000'" in capsys.readouterr().err
    preset_group(store, "finetune_vs_scratch-1126-101500", {A1: (0.9,)})
    assert main(["compare", "finetune_vs_scratch-1126-101500", "--confidence", "95"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


# ---- the Compare page (AppTest) ---------------------------------------------------------------------

def test_compare_page_shows_means_with_intervals_and_paired_differences(store):
    from streamlit.testing.v1 import AppTest

    from hft_core.runs import RunManager
    from ui.state import MANAGER_KEY

    group = "finetune_vs_scratch-1126-101500"
    values = {A1: (0.925, 0.90, 0.95), A05: (0.74, 0.72, 0.77), A0: (0.20, 0.18, 0.21)}
    preset_group(store, group, values)
    mgr = RunManager(store, train_fn=lambda *a, **k: None)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
        at.session_state[MANAGER_KEY] = mgr
        at.run()
        at.switch_page("pages/compare.py").run()
        assert not at.exception, at.exception
        at.selectbox(key="compare.group").set_value(group).run()
        assert not at.exception, at.exception
        assert at.session_state["compare.metric"] == "eval/accuracy"
        means = next(d.value for d in at.dataframe if "variant" in d.value)
        diffs = next(d.value for d in at.dataframe if "difference" in d.value and "higher on" in d.value)
        cmp = C.compare_runs(store, [r.id for r in store.list_runs(group=group)], preset=PRESET)
        assert list(means["variant"]) == [A1, A05, A0]
        assert list(means["mean [95% interval]"]) == [C.format_estimate(cmp.estimates[v], "eval/accuracy")
                                                      for v in (A1, A05, A0)]
        assert means["mean [95% interval]"][0].startswith("92.5% [")
        ref = sps.ttest_rel(values[A1], values[A05]).confidence_interval(0.95)
        assert diffs["difference"][0] == f"{A1} − {A05}"
        assert diffs["mean [95% interval]"][0] == (f"+{100 * (np.mean(values[A1]) - np.mean(values[A05])):.1f} points "
                                                   f"[+{100 * ref.low:.1f}, +{100 * ref.high:.1f}]")
        assert list(diffs["higher on"]) == ["3/3 seeds"] * 3
        captions = " ".join(c.value for c in at.caption)
        assert "95% t-interval" in captions and "3 seeds" in captions
        assert not at.warning  # 3 seeds: no warning
        buttons = [b.proto.label for b in at.get("download_button")]
        assert "Report of this group (one HTML file)" in buttons  # the preset's outcome panel
        assert any(b.startswith("Report (one HTML file") for b in buttons)  # the Export tab

        one = [r.id for r in store.list_runs(group=group) if r.seed == 0]  # one seed of each: warned
        at.session_state["compare.runs"] = one
        at.run()
        assert not at.exception, at.exception
        assert any("1 seed: no interval" in w.value for w in at.warning)
    finally:
        mgr.shutdown()
