"""The label-budget sweep (hft_core/label_budget.py): the pretraining preset's fine-tuning variants at
25/50/100/200 labelled articles, queued as one group behind one pretraining run per seed. Nothing trains:
the queue rows are checked."""
from __future__ import annotations

import pytest

from hft_core import label_budget as LB
from hft_core import presets as P
from hft_core.config import ConfigError


@pytest.fixture(autouse=True)
def fixed_split(monkeypatch):
    """A fixed runs-per-device: on a machine of 2+ free cores the auto schedule would queue a measurement
    probe first (schedule.queue_measurements), which is not what these tests are about."""
    monkeypatch.setenv("HFT_RUNS_PER_DEVICE", "1")


class FakeManager:
    """Records what is queued, as RunManager.submit would receive it."""

    def __init__(self):
        self.rows = []      # (run id, cfg, group, name, after)

    def submit(self, cfg, *, group="", name="", after=()):
        run_id = f"r-{len(self.rows) + 1:06d}"
        self.rows.append((run_id, cfg, group, name, list(after)))
        return run_id


def test_the_sweep_queues_one_group_with_every_budget_behind_its_seeds_pretraining():
    base = P.load_preset("pretrain_then_finetune")
    finetunes = [v for v in base.variants if not v.id]
    m = FakeManager()
    group, ids = LB.submit_label_budget_sweep(m, "pretrain_then_finetune", seeds=[0, 1])

    assert group.startswith("pretrain_then_finetune_by_labels-")
    assert {g for _, _, g, _, _ in m.rows} == {group} and [r[0] for r in m.rows] == ids
    pretraining = [v for v in base.variants if v.id]
    assert len(ids) == 2 * (len(pretraining) + len(finetunes) * 4) == 2 * (2 + 4 * 4)
    for seed in (0, 1):
        rows = [r for r in m.rows if r[1].seed == seed]
        pre_ids = {}
        for (pre_id, pre_cfg, _, pre_name, pre_after), v in zip(rows, pretraining):  # each pretraining run once, first
            assert pre_cfg.task in ("contrastive", "masked-lm") and pre_cfg.n_train == 0 and pre_after == []
            assert pre_cfg == P.variant_config(base, v, seed, group=group)
            pre_ids[v.id] = pre_id
        budgets = {}
        for run_id, cfg, _, name, after in rows[len(pretraining):]:
            assert cfg.task == "classification" and cfg.n_eval == 200   # the same eval articles at every budget
            budgets.setdefault(cfg.n_train, []).append(name)
            variant = next(v for v in finetunes if name == f"{v.label} · {cfg.n_train} labels")
            expected = P.variant_config(base, variant, seed, resolve=pre_ids, group=group)
            assert cfg.to_dict() == {**expected.to_dict(), "n_train": cfg.n_train, "name": name}
            if variant.needs:
                (ref,) = variant.needs
                assert cfg.model == f"run:{pre_ids[ref]}" and after == [pre_ids[ref]]  # waits for its pretraining
            else:
                assert after == []
        assert sorted(budgets) == [25, 50, 100, 200]
        assert all(len(names) == len(finetunes) for names in budgets.values())


def test_each_check_of_the_preset_is_checked_at_every_budget_and_quick_keeps_the_budgets():
    base = P.load_preset("pretrain_then_finetune")
    swept = LB.label_budget_preset(base, budgets=[25, 100])
    assert [c.describe() for c in swept.checks] == [
        c.describe().replace(c.higher, f"{c.higher} · {n} labels").replace(c.lower, f"{c.lower} · {n} labels")
        for n in (25, 100) for c in base.checks]
    quick = P.preset_runs(swept, quick=True)
    assert sorted(cfg.n_train for label, cfg in quick if label.endswith(" labels")) == [25] * 4 + [100] * 4
    assert all(label.endswith(f" · {cfg.n_train} labels") for label, cfg in quick if label.endswith(" labels"))
    assert all(cfg.model == "tiny:bert" for label, cfg in quick if "scratch" in label)
    assert all(cfg.model == "baseline:bag-of-words" for label, cfg in quick if "bag-of-words" in label)
    # a group of the sweep names it, and the name loads it again (Compare and `hft compare` judge such a group)
    assert swept.name == "pretrain_then_finetune_by_labels_25_100"   # not the default budgets: the name says which
    assert P.load_preset(P.preset_of_group(P.group_name(swept))).checks == swept.checks


@pytest.mark.parametrize("budgets", [[], [0, 25], [-5]])
def test_bad_budgets_say_what_to_give(budgets):
    with pytest.raises(ConfigError, match="labelled examples of at least 1"):
        LB.label_budget_preset(P.load_preset("pretrain_then_finetune"), budgets)


def test_a_preset_with_a_post_training_step_is_refused():
    with pytest.raises(ConfigError, match="post-training step"):
        LB.label_budget_preset(P.load_preset("wise_ft"))


def test_the_pretraining_budget_sweep_repeats_the_pretraining_at_each_length_and_fine_tunes_each():
    base = P.load_preset("pretrain_then_finetune")
    swept = LB.pretraining_budget_preset(base, "contrastive", steps=[50, 150])
    source = next(v for v in base.variants if v.id == "contrastive")
    runs = dict(P.preset_runs(swept))
    for n in (50, 150):
        pre = runs[LB.steps_label(source.label, n)]
        assert pre.task == "contrastive" and pre.max_steps == n and pre.warmup_steps == round(30 * n / 300)
        tuned = runs[LB.steps_label("tiny BERT after contrastive pretraining", n)]
        assert tuned.model == f"run:{{contrastive_{n}}}" and tuned.task == "classification"
    # 0 steps is the from-scratch run, and the baseline is there once; masked-LM is not part of this sweep
    assert {"tiny BERT from scratch", "bag-of-words logistic regression"} <= set(runs)
    assert not any("masked-LM" in label for label in runs)
    assert P.load_preset("pretrain_then_finetune" + LB.BY_STEPS).name == "pretrain_then_finetune" + LB.BY_STEPS
    with pytest.raises(ConfigError, match="no pretraining variant with id 'mlm2'"):
        LB.pretraining_budget_preset(base, "mlm2")
    with pytest.raises(ConfigError, match="at least 1"):
        LB.pretraining_budget_preset(base, "contrastive", steps=[0])
