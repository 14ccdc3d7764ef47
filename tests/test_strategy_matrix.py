"""Every strategy alone and every pair, through the real trainer for 2 steps.

tiny:bert on bundled:bbc-news (classification) and tiny:gpt2 on bundled:qa (causal-lm):
the run must finish with finite losses, log each extra loss term under its own key,
and (alone) save a checkpoint that loads back as a plain model. Pairs that do not mix
must be refused with a ConfigError naming both strategies.

To add a strategy: one row in SETTINGS (its test settings) and EXPECTED (its keys).
"""
import itertools
import math

import pytest

from hft_core.config import ConfigError, RunConfig
from hft_core.sinks import MemorySink
from hft_core.strategies import base

TASKS = {
    "classification": dict(model="tiny:bert", task="classification", data="bundled:bbc-news"),
    "causal-lm": dict(model="tiny:gpt2", task="causal-lm", data="bundled:qa"),
}
COMMON = dict(n_train=16, n_eval=8, batch_size=4, max_length=32, max_steps=2, eval_every=0, lr=1e-3)

# settings per strategy for a 2-step run (kd needs a teacher; lpft must switch within 2 steps)
SETTINGS = {
    "blend": {"alpha": 0.5}, "reinit": {"layers": 1}, "l2sp": {}, "kd": {"teacher": "tiny:bert"}, "mutual": {},
    "aux": {}, "eda": {}, "neftune": {}, "lora": {}, "freeze": {"layers": 1}, "half_ft": {},
    "lpft": {"head_steps": 1}, "mixout": {},
}
CAUSAL_SETTINGS = {"kd": {}}  # teacher '' = a frozen copy of the starting LM


def expected_keys(name: str, task: str) -> set[str]:
    """Metrics a run with strategy ``name`` must log, besides loss and loss/task."""
    cls = task == "classification"
    return {
        "l2sp": {"loss/l2sp"} | ({"loss/l2_head"} if cls else set()),
        "kd": {"loss/kd"} | ({"loss/kd_transfer"} if cls else set()),
        "mutual": {"loss/mutual", "peer/loss", "peer/accuracy"},
        "aux": {"loss/aux_lm"},
        "lpft": {"lpft/backbone_trainable"},
    }.get(name, set())


FREEZES = {"lora", "freeze", "half_ft"}  # fewer trainable parameters than the model has


def settings(name: str, task: str) -> dict:
    return dict(CAUSAL_SETTINGS.get(name, SETTINGS[name])) if task == "causal-lm" else dict(SETTINGS[name])


def applicable(task: str) -> list[str]:
    return [s.name for s in base.all_specs() if task in s.tasks]


def conflicting(a: str, b: str) -> bool:
    return b in base.get_spec(a).conflicts or a in base.get_spec(b).conflicts


def cases(pairs: bool):
    for task in TASKS:
        names = applicable(task)
        combos = itertools.combinations(names, 2) if pairs else ((n,) for n in names)
        for combo in combos:
            if pairs and conflicting(*combo):
                continue
            yield pytest.param(task, combo, id=f"{task}-{'+'.join(combo)}")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_settings_cover_every_registered_strategy():
    assert set(SETTINGS) == {s.name for s in base.all_specs()}, "add the new strategy to SETTINGS"


def run(task: str, names: tuple[str, ...], out_dir=None):
    from hft_core.trainer import train

    cfg = RunConfig(**TASKS[task], **COMMON, mix={n: settings(n, task) for n in names})
    sink = MemorySink()
    result = train(cfg, sink, out_dir=out_dir)
    return result, sink


def check_run(result, sink, task, names):
    assert result.status == "finished" and result.step == 2
    logged = {k for _, v in sink.rows for k in v}
    for step, values in sink.rows:
        for k, v in values.items():
            if k.startswith("loss"):
                assert math.isfinite(v), f"{k}={v} at step {step}"
    want = {"loss", "loss/task"}.union(*(expected_keys(n, task) for n in names))
    assert want <= logged, f"missing {sorted(want - logged)}"
    train_rows = [v for _, v in sink.rows if "loss" in v]
    assert len(train_rows) == 2
    for v in train_rows:  # the total is the sum of the logged terms
        terms = sum(x for k, x in v.items() if k.startswith("loss/"))
        assert v["loss"] == pytest.approx(terms, rel=1e-5, abs=1e-6)
    if FREEZES & set(names):
        assert sink.last("params_trainable") < sink.last("params_total")


@pytest.mark.parametrize("task,names", list(cases(pairs=False)))
def test_each_strategy_alone_trains_and_exports_a_plain_model(task, names, tmp_path):
    from hft_core.models import load_model

    result, sink = run(task, names, out_dir=tmp_path)
    check_run(result, sink, task, names)
    n_labels = 5 if task == "classification" else 0
    reloaded = load_model(result.checkpoint, task, n_labels)
    keys = [k for k, _ in reloaded.named_parameters()]
    assert not any(("lora_" in k or "hft_" in k or "parametrizations" in k or "modules_to_save" in k) for k in keys)
    assert not any("Missing" in msg or "UNEXPECTED" in msg for _, msg in sink.events)


def pair_cases():
    """Every pair. The default run trains every strategy alone on both tasks and every pair with
    alpha blending (the headline strategy) on classification; the other pairs (115, about 40 s)
    are marked slow."""
    for case in cases(pairs=True):
        task, names = case.values
        fast = task == "classification" and "blend" in names
        yield pytest.param(*case.values, id=case.id, marks=[] if fast else [pytest.mark.slow])


@pytest.mark.parametrize("task,names", list(pair_cases()))
def test_every_pair_trains(task, names, monkeypatch):
    # sampled generations at the final eval are checked alone above; here they would double the time
    monkeypatch.setattr("hft_core.tasks.generate_samples", lambda *a, **k: [])
    result, sink = run(task, names)
    check_run(result, sink, task, names)


def test_kd_student_from_every_other_teacher_layer_with_blend():
    from hft_core.models import load_model
    from hft_core.trainer import train

    cfg = RunConfig(**TASKS["causal-lm"], **COMMON, mix={"kd": {"student_from_teacher": "every_other_layer"},
                                                         "blend": {"alpha": 0.5}})
    sink = MemorySink()
    result = train(cfg, sink)
    check_run(result, sink, "causal-lm", ("kd", "blend"))
    teacher = load_model("tiny:gpt2", "causal-lm")
    block = sum(p.numel() for p in teacher.transformer.h[1].parameters())
    assert sink.last("params_total") == sum(p.numel() for p in teacher.parameters()) - block


@pytest.mark.parametrize("a,b", [p for p in itertools.combinations(sorted(SETTINGS), 2) if conflicting(*p)])
def test_conflicting_pairs_are_refused_naming_both(a, b):
    for first, second in ((a, b), (b, a)):
        with pytest.raises(ConfigError) as e:
            RunConfig(**TASKS["classification"], mix={first: SETTINGS[first], second: SETTINGS[second]})
        assert f"'{a}'" in str(e.value) and f"'{b}'" in str(e.value)


@pytest.mark.parametrize("name", sorted(n for n in SETTINGS if "causal-lm" not in base.get_spec(n).tasks))
def test_strategies_unfit_for_a_task_are_refused(name):
    with pytest.raises(ConfigError, match=f"'{name}' does not apply to task 'causal-lm'"):
        RunConfig(**TASKS["causal-lm"], mix={name: {}})
