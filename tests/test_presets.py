"""Presets: every YAML loads into valid RunConfigs, references resolve, and each runs in quick mode."""
import textwrap

import pytest
import yaml

from hft_core import presets as P
from hft_core.config import ConfigError, RunConfig

ALL = P.list_presets()
NAMES = [p.name for p in ALL]


def test_there_are_presets_with_text():
    assert "finetune_vs_scratch" in NAMES and len(ALL) >= 6, NAMES
    for p in ALL:
        assert p.title and p.question and p.expected and p.look_for, p.name
        assert len(p.variants) >= 2 or p.after, p.name
        assert 0 < p.minutes <= 5, f"{p.name}: the whole comparison (one seed) must fit in 5 minutes"
        assert len(p.seeds) >= 3, p.name


@pytest.mark.parametrize("preset", ALL, ids=NAMES)
def test_every_variant_is_a_valid_config(preset):
    runs = P.preset_runs(preset, seeds=preset.seeds)
    assert len(runs) == len(preset.variants) * len(preset.seeds)
    for label, cfg in runs:
        assert isinstance(cfg, RunConfig) and cfg.name == label
        assert RunConfig.from_yaml(cfg.to_yaml()) == cfg
    assert {cfg.seed for _, cfg in runs} == set(preset.seeds)
    for label, cfg in P.preset_runs(preset, quick=True):
        # a tiny model, the run of another variant (which is itself tiny in quick mode), or a baseline (seconds)
        assert cfg.model.startswith(("tiny:", "run:{", "baseline:")), \
            f"{preset.name}/{label}: quick mode must use a tiny model"


@pytest.mark.parametrize("preset", ALL, ids=NAMES)
def test_the_lesson_exists(preset):
    from hft_core.explain import lessons

    assert preset.lesson in {les.key for les in lessons()}, preset.name


def test_presets_for_a_lesson():
    assert [p.name for p in P.presets_for("blend")] == ["finetune_vs_scratch"]


def test_references_run_after_their_target_and_resolve():
    preset = P.parse_preset(yaml.safe_load(textwrap.dedent("""
        title: t
        question: q
        expected: e
        look_for: l
        base: {model: "tiny:bert"}
        variants:
          - {label: student, set: {mix.kd.teacher: "run:{teacher}"}}
          - {label: teacher, id: teacher, set: {}}
        seeds: [0, 1]
    """)), name="ref")
    assert [v.label for v in P.ordered(preset)] == ["teacher", "student"]
    runs = dict(P.preset_runs(preset, resolve={"teacher": "r-abc123"}))
    assert runs["student"].mix["kd"].teacher == "run:r-abc123"
    assert dict(P.preset_runs(preset))["student"].mix["kd"].teacher == "run:{teacher}"


class FakeManager:
    max_per_device = 1

    def __init__(self):
        self.submitted = []
        self.after = {}

    def submit(self, cfg, *, group="", name="", after=()):
        self.submitted.append((cfg, group, name))
        self.after[f"r-{len(self.submitted):06d}"] = list(after)
        return f"r-{len(self.submitted):06d}"


def test_submit_preset_queues_one_group_in_dependency_order():
    preset = P.load_preset("distill_student")
    m = FakeManager()
    group, ids = P.submit_preset(m, preset, seeds=[0, 1])
    assert len(ids) == 2 * len(preset.variants)
    assert {g for _, g, _ in m.submitted} == {group} and group.startswith("distill_student-")
    by_seed = {}
    for (cfg, _, name), run_id in zip(m.submitted, ids):
        by_seed.setdefault(cfg.seed, []).append((name, cfg, run_id))
    for seed, rows in by_seed.items():
        teacher_id = next(run_id for name, cfg, run_id in rows if name.startswith("teacher"))
        for name, cfg, run_id in rows:
            if "kd" in cfg.mix:
                assert cfg.mix["kd"].teacher == f"run:{teacher_id}"
                assert ids.index(run_id) > ids.index(teacher_id)
                assert m.after[run_id] == [teacher_id]  # it waits in the queue for its teacher to finish


def test_write_plain_configs_for_the_cli(tmp_path):
    preset = P.load_preset("finetune_vs_scratch")
    paths = P.write_plain_configs(preset, tmp_path)
    assert len(paths) == len(preset.variants)
    cfgs = [RunConfig.load(str(p)) for p in paths]
    assert sorted(c.mix["blend"].alpha for c in cfgs) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("bad,words", [
    ({"title": "t"}, "missing"),
    ({"colour": "red"}, "unknown key"),
    ({"variants": [{"set": {}}]}, "needs a 'label'"),
    ({"variants": [{"label": "a", "set": {"mix.kd.teacher": "run:{nobody}"}}]}, "no variant has that id"),
    ({"checks": [{"higher": "a", "lower": "zzz"}]}, "not a variant label"),
    ({"variants": [{"label": "a", "set": {"lr": 7}}]}, "variant 'a'"),
])
def test_bad_presets_say_what_is_wrong(bad, words):
    d = {"title": "t", "question": "q", "expected": "e", "look_for": "l", "base": {"model": "tiny:bert"},
         "variants": [{"label": "a", "set": {}}]}
    if "title" in bad and len(bad) == 1:
        d["question"] = ""
    else:
        d.update(bad)
    with pytest.raises(ConfigError, match=words):
        P.parse_preset(d, name="bad")


def test_judge_fails_where_the_expectation_does_not_hold():
    preset = P.parse_preset({"title": "t", "question": "q", "expected": "e", "look_for": "l",
                             "base": {"model": "tiny:bert"}, "variants": [{"label": "a"}, {"label": "b"}],
                             "checks": [{"higher": "a", "lower": "b"}, {"near": ["a", "b"], "tol": 0.05},
                                        {"higher": "a", "lower": "b", "metric": "eval/macro_f1"}]}, name="j")

    def verdicts(a: list[float], b: list[float] | None) -> list[bool | None]:
        per_label = {"a": {"eval/accuracy": a}, **({"b": {"eval/accuracy": b}} if b is not None else {})}
        return [held for _, held in P.judge(preset, per_label)]

    assert verdicts([0.9, 0.8], [0.5, 0.6]) == [True, False, None]      # a far above b; macro-F1 never logged
    assert verdicts([0.5, 0.6], [0.9, 0.8]) == [False, False, None]     # reversed: the expectation fails
    assert verdicts([0.80, 0.84], [0.83, 0.82]) == [False, True, None]  # means 0.82 vs 0.825: near, not above
    assert verdicts([0.9], None) == [None, None, None]                  # b has no finished run: not measurable


def test_checks_hold_on_known_numbers():
    c = P.Check(metric="m", higher="a", lower="b")
    assert c.holds({"a": 0.9, "b": 0.2}) and not c.holds({"a": 0.1, "b": 0.2})
    n = P.Check(metric="m", near=("a", "b"), tol=0.05)
    assert n.holds({"a": 0.90, "b": 0.93}) and not n.holds({"a": 0.8, "b": 0.9})


# Every preset's quick mode (tiny models, a few steps; about 10 s for all nine on one core).
@pytest.mark.parametrize("preset", ALL, ids=NAMES)
def test_quick_mode_runs(preset, tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    from hft_core.store import RunStore

    with RunStore(tmp_path) as store:
        outcome = P.run_preset_here(preset, quick=True, store=store)
        runs = store.list_runs(group=outcome.extra["group"])
        assert len(runs) == len(preset.variants) + (1 if "wise_ft" in preset.after else 0)
        assert {r.status for r in runs} == {"finished"}
    for label in preset.labels:
        assert outcome.values.get(label), f"{preset.name}/{label}: no {preset.metric}"
    here = P.checks_here(preset)  # a hardware check only in this device's case
    assert len(outcome.check_results) == len(here)
    assert outcome.quick and [v.verdict for v in outcome.verdicts] == ["not judged (quick check)"] * len(here)
    per_label = outcome.extra["per_label"]
    for check, held in outcome.check_results:  # each verdict, recomputed here from the runs' own values
        values = [per_label.get(label, {}).get(check.metric) for label in (list(check.near) or [check.higher, check.lower])]
        if not all(values):
            assert held is None, check
            continue
        means = [sum(v) / len(v) for v in values]
        assert held is ((max(means) - min(means) <= check.tol) if check.near else means[0] > means[1]), check
    if preset.base.get("task") == "causal-lm":  # sample answers before and after
        assert set(outcome.extra["samples"]) == set(preset.labels)


def test_a_preset_file_gives_a_run_config_for_train_config(tmp_path):
    path = P.PRESET_DIR / "finetune_vs_scratch.yaml"
    assert P.is_preset_file(path)
    assert P.load_run_config(path).mix["blend"].alpha == 1.0
    assert P.load_run_config(path, "alpha 0 ").mix["blend"].alpha == 0.0
    with pytest.raises(ConfigError, match="no variant 'nope'"):
        P.load_run_config(path, "nope")
    with pytest.raises(ConfigError, match="needs the run id"):
        P.load_run_config(P.PRESET_DIR / "distill_student.yaml", "student +")
    plain = tmp_path / "plain.yaml"
    plain.write_text(RunConfig(model="tiny:bert").to_yaml())
    assert not P.is_preset_file(plain) and P.load_run_config(plain).model == "tiny:bert"


def test_wise_ft_sweep_is_recorded_as_a_run_after_the_fine_tuning(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    from hft_core.runs import RunManager
    from hft_core.store import RunStore

    preset = P.load_preset("wise_ft")
    with RunStore(tmp_path) as store:
        manager = RunManager(store)
        group, ids = P.submit_preset(manager, preset, quick=True)
        assert len(ids) == 2
        assert manager.wait(timeout=180), "the quick fine-tuning and its sweep did not end within 180 s"
        sweep = store.get_run(ids[1])
        for _ in range(600):  # the sweep thread starts when the fine-tuning run has finished
            sweep = store.get_run(ids[1])
            if sweep.status in ("finished", "failed"):
                break
            import time
            time.sleep(0.1)
        assert sweep.status == "finished" and sweep.group == group, sweep.error
        df = store.metrics(ids[1], ["eval/accuracy"])
        assert sorted(df["step"]) == list(range(0, 101, 10))
        manager.shutdown()


def test_a_check_on_the_value_at_a_step_reads_that_step(tmp_path):
    """lora_vs_full checks the early gap: eval/accuracy@10 is the value logged at step 10."""
    from hft_core.config import RunConfig
    from hft_core.presets import parse_preset, summarise_run
    from hft_core.sinks import flush
    from hft_core.store import RunStore

    with RunStore(tmp_path) as store:
        rid = store.create_run(RunConfig(model="tiny:bert"), status="running", device="cpu")
        sink = store.sink(rid)
        for step, acc in ((10, 0.4), (20, 0.8), (30, 0.9)):
            sink.log(step, {"eval/accuracy": acc})
        flush(sink)
        got = summarise_run(store, rid, at={"eval/accuracy@10", "eval/accuracy@15"})
    assert got["eval/accuracy@10"] == pytest.approx(0.4) and got["eval/accuracy"] == pytest.approx(0.9)
    assert "eval/accuracy@15" not in got                                    # never logged at step 15
    from hft_core.charts import metric_info
    from hft_core.comparison import unit_of

    assert metric_info("eval/accuracy@10") == ("eval accuracy at step 10", "%", 100.0)
    assert unit_of("eval/accuracy@10", difference=True) == "points"          # as the final accuracy
    d = {"title": "t", "question": "q", "expected": "e", "look_for": "l", "base": {"model": "tiny:bert"},
         "variants": [{"label": "a", "set": {}}, {"label": "b", "set": {}}],
         "checks": [{"higher": "a", "lower": "b", "metric": "eval/accuracy@ten"}]}
    with pytest.raises(Exception, match="names no step; write it as 'eval/accuracy@10'"):
        parse_preset(d, "t")


def test_a_hardware_check_is_judged_only_in_its_case(monkeypatch):
    """bf16's speed: faster where it is native, slower where emulated; only this device's case counts."""
    d = {"title": "t", "question": "q", "expected": "e", "look_for": "l", "base": {"model": "tiny:bert"},
         "metric": "samples_per_s", "variants": [{"label": "fp32", "set": {}}, {"label": "bf16", "set": {}}],
         "checks": [{"higher": "bf16", "lower": "fp32", "when": "bf16 native"},
                    {"higher": "fp32", "lower": "bf16", "when": "bf16 emulated"},
                    {"near": ["fp32", "bf16"], "tol": 1.0, "metric": "eval/accuracy"}]}
    preset = P.parse_preset(d, "t")
    per_seed = {"fp32": {"samples_per_s": {0: 10.0, 1: 11.0}, "eval/accuracy": {0: 0.5, 1: 0.6}},
                "bf16": {"samples_per_s": {0: 15.0, 1: 16.0}, "eval/accuracy": {0: 0.5, 1: 0.6}}}
    for case, faster in (("bf16 native", "bf16"), ("bf16 emulated", "fp32")):
        monkeypatch.setattr(P, "device_case", lambda device="cpu", case=case: case)
        verdicts = P.judge_paired(preset, per_seed)
        assert [v.check.when for v in verdicts] == [case, ""]
        assert verdicts[0].held is (faster == "bf16")
        assert f"(only where {case.replace(' ', ' is ')})" in verdicts[0].check.describe()
    bad = {**d, "checks": [{"higher": "bf16", "lower": "fp32", "when": "fast cpu"}]}
    with pytest.raises(ConfigError, match="when='fast cpu'; use one of \\['bf16 emulated', 'bf16 native'\\]"):
        P.parse_preset(bad, "t")
    assert P.device_case("cpu") in ("bf16 native", "bf16 emulated")   # this machine is one of the two
