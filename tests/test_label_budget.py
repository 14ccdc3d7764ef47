"""The label-budget sweep (hft_core/label_budget.py): the pretraining preset's fine-tuning variants at
25/50/100/200 labelled articles, queued as one group behind one pretraining run per seed. Nothing trains:
the queue rows are checked."""
from __future__ import annotations

import pytest

from hft_core import label_budget as LB
from hft_core import presets as P
from hft_core.config import ConfigError


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
    assert len(ids) == 2 * (1 + len(finetunes) * 4) == 26
    for seed in (0, 1):
        rows = [r for r in m.rows if r[1].seed == seed]
        pre_id, pre_cfg, _, pre_name, pre_after = rows[0]  # the pretraining run first, once, as in the preset
        assert pre_cfg.task == "masked-lm" and pre_cfg.n_train == 0 and pre_after == []
        assert pre_cfg == P.variant_config(base, base.variants[0], seed, group=group)
        budgets = {}
        for run_id, cfg, _, name, after in rows[1:]:
            assert cfg.task == "classification" and cfg.n_eval == 200   # the same eval articles at every budget
            budgets.setdefault(cfg.n_train, []).append(name)
            variant = next(v for v in finetunes if name == f"{v.label} · {cfg.n_train} labels")
            expected = P.variant_config(base, variant, seed, resolve={"pretrain": pre_id}, group=group)
            assert cfg.to_dict() == {**expected.to_dict(), "n_train": cfg.n_train, "name": name}
            if "{pretrain}" in str(variant.set.get("model", "")):
                assert cfg.model == f"run:{pre_id}" and after == [pre_id]   # waits for its seed's pretraining
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
    assert sorted(cfg.n_train for label, cfg in quick if label.endswith(" labels")) == [25, 25, 25, 100, 100, 100]
    assert all(label.endswith(f" · {cfg.n_train} labels") for label, cfg in quick if label.endswith(" labels"))
    assert all(cfg.model == "tiny:bert" for label, cfg in quick if "scratch" in label)


@pytest.mark.parametrize("budgets", [[], [0, 25], [-5]])
def test_bad_budgets_say_what_to_give(budgets):
    with pytest.raises(ConfigError, match="labelled examples of at least 1"):
        LB.label_budget_preset(P.load_preset("pretrain_then_finetune"), budgets)


def test_a_preset_with_a_post_training_step_is_refused():
    with pytest.raises(ConfigError, match="post-training step"):
        LB.label_budget_preset(P.load_preset("wise_ft"))
