"""The label-budget sweep: fine-tuned accuracy against the number of labelled examples, as one group.

Pretraining matters most when labels are few (STRATEGIES.md, seed 003): the lesson needs the
curve of eval accuracy against n_train (e.g. 25 / 50 / 100 / 200 labelled articles) for each
starting point, not one point at 200. ``label_budget_preset`` turns a preset into that sweep:

    - a variant other variants refer to (``id``: the pretraining run) runs once per seed, unchanged:
      every budget fine-tunes from the same pretrained checkpoint;
    - every other variant runs once per budget, with ``n_train`` = the budget and the label
      "<its label> · <n> labels"; the data's few-shot subsets are nested (the 25 articles are among
      the 50, ...: ``data._few_shot``) and the eval articles are the same at every budget;
    - each of the preset's checks between such variants is checked at every budget.

``submit_label_budget_sweep`` queues it through ``presets.submit_preset``: one group (Compare opens
on it, ``hft compare <group>`` reads it), the fine-tuning runs waiting for their seed's pretraining.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Sequence

from hft_core import presets as P
from hft_core.config import ConfigError

LABEL_BUDGETS = (25, 50, 100, 200)   # labelled articles; the pretraining preset's base uses 200
PRESET = "pretrain_then_finetune"


def budget_label(label: str, n: int) -> str:
    return f"{label} · {n} labels"


def label_budget_preset(preset: P.Preset, budgets: Sequence[int] = LABEL_BUDGETS) -> P.Preset:
    """``preset`` as a label-budget sweep (see the module docstring); every run's config validated."""
    budgets = list(dict.fromkeys(int(n) for n in budgets))
    if not budgets or any(n < 1 for n in budgets):
        raise ConfigError(f"label budgets {budgets!r} are not valid: give whole numbers of labelled examples of at "
                          "least 1, e.g. 25, 50, 100, 200")
    if preset.after:
        raise ConfigError(f"preset {preset.name} has a post-training step ({sorted(preset.after)}); a label-budget "
                          "sweep repeats plain fine-tuning variants only: pick a preset without 'after'")
    shared = [v for v in preset.variants if v.id]
    repeated = [v for v in preset.variants if not v.id]
    if not repeated:
        raise ConfigError(f"preset {preset.name} has no fine-tuning variant to repeat at each label budget")
    variants = tuple(shared) + tuple(
        dataclasses.replace(v, label=budget_label(v.label, n), set={**v.set, "n_train": n})
        for n in budgets for v in repeated)
    names = {v.label for v in repeated}
    checks = tuple(dataclasses.replace(c, higher=budget_label(c.higher, n) if c.higher else "",
                                       lower=budget_label(c.lower, n) if c.lower else "",
                                       near=tuple(budget_label(x, n) for x in c.near))
                   for n in budgets for c in preset.checks
                   if {x for x in (c.higher, c.lower, *c.near) if x} <= names)
    n_runs, n_before = len(shared) + len(repeated) * len(budgets), len(preset.variants)
    suffix = "" if budgets == list(LABEL_BUDGETS) else "".join(f"_{n}" for n in budgets)   # P.SWEEP_NAME reads it
    swept = dataclasses.replace(
        preset, name=f"{preset.name}{P.BY_LABELS}{suffix}",
        title=f"{preset.title}: accuracy against the number of labels",
        question=f"{preset.question} How does the answer change with {', '.join(map(str, budgets))} labelled "
                 "examples?",
        expected=f"{preset.expected} At every number of labels; the textbook expects the gain from pretraining "
                 "to be largest with the fewest.",
        look_for=f"eval/accuracy of each starting point at each label budget ({', '.join(map(str, budgets))}): "
                 "one curve per starting point against the number of labels.",
        variants=variants, checks=checks,
        minutes=round(preset.minutes * n_runs / n_before, 1) if preset.minutes else 0.0,  # rough: runs scale it
        # quick mode keeps the budgets (a quick n_train would make every budget the same run)
        quick={k: v for k, v in preset.quick.items() if k != "n_train"}, result="", path="")
    for quick in (False, True):
        P.preset_runs(swept, quick=quick)  # every config valid now, naming the variant if not
    return swept


def submit_label_budget_sweep(target: Any, preset: str | P.Preset = PRESET, budgets: Sequence[int] = LABEL_BUDGETS,
                              seeds: Iterable[int] | None = None, *, quick: bool = False,
                              group: str = "") -> tuple[str, list[str]]:
    """Queue the label-budget sweep of ``preset`` (a name or a Preset) as one group; (group, run ids).

    ``target`` as for ``presets.submit_preset``: a RunManager (the app's workers train the runs) or
    anything with its ``submit(cfg, group=, name=, after=)``.
    """
    base = P.load_preset(preset) if isinstance(preset, str) else preset
    return P.submit_preset(target, label_budget_preset(base, budgets), seeds, quick=quick, group=group)


# ---- the pretraining-budget sweep ---------------------------------------------------------------

PRETRAINING_STEPS = (50, 150, 300)   # plus 0: the from-scratch variant is the curve's first point
BY_STEPS = P.BY_STEPS


def steps_label(label: str, n: int) -> str:
    return f"{label} · {n} pretraining steps"


def pretraining_budget_preset(preset: P.Preset, pretraining: str, steps: Sequence[int] = PRETRAINING_STEPS
                              ) -> P.Preset:
    """``preset`` as fine-tuned accuracy against the pretraining budget of its variant ``pretraining`` (an id).

    For each budget n the pretraining variant runs with ``max_steps`` n (its warmup scaled alike, so
    each budget is spent as a run of that length would spend it), and every fine-tuning variant that
    starts from it (``run:{id}``) fine-tunes that checkpoint, labelled "<label> · n pretraining steps".
    Variants that do not start from it (from scratch: the curve at 0 steps; baselines) run once per
    seed, as in the preset; other pretraining variants and their fine-tunes are left out.
    """
    steps = list(dict.fromkeys(int(n) for n in steps))
    if not steps or any(n < 1 for n in steps):
        raise ConfigError(f"pretraining budgets {steps!r} are not valid: give whole numbers of steps of at least 1, "
                          "e.g. 50, 150, 300")
    source = next((v for v in preset.variants if v.id == pretraining), None)
    if source is None:
        raise ConfigError(f"preset {preset.name} has no pretraining variant with id {pretraining!r}; its ids are "
                          f"{[v.id for v in preset.variants if v.id]}")
    ref = "{" + pretraining + "}"
    tuned = [v for v in preset.variants if pretraining in v.needs]
    others = [v for v in preset.variants if not v.id and not v.needs]
    base_steps = int(source.set.get("max_steps", preset.base.get("max_steps", 1)))
    base_warmup = int(source.set.get("warmup_steps", preset.base.get("warmup_steps", 0)))
    variants: list[P.Variant] = []
    for n in steps:
        vid = f"{pretraining}_{n}"
        warmup = round(base_warmup * n / base_steps) if base_warmup else 0
        variants.append(dataclasses.replace(source, id=vid, label=steps_label(source.label, n),
                                            set={**source.set, "max_steps": n, "warmup_steps": warmup}))
        variants += [dataclasses.replace(v, label=steps_label(v.label, n),
                                         set={k: (x.replace(ref, "{" + vid + "}") if isinstance(x, str) else x)
                                              for k, x in v.set.items()}) for v in tuned]
    variants += others
    n_runs = len(variants)
    swept = dataclasses.replace(
        preset, name=f"{preset.name}{BY_STEPS}", title=f"{preset.title}: accuracy against the pretraining budget",
        question=f"{preset.question} How does the answer change with {', '.join(map(str, steps))} steps of "
                 f"{source.label}?",
        expected="Fine-tuned accuracy rises with the pretraining budget, from the from-scratch run at 0 steps.",
        look_for="eval/accuracy of each fine-tuning run against the steps of pretraining it started from.",
        variants=tuple(variants), checks=(),
        minutes=round(preset.minutes * n_runs / len(preset.variants), 1) if preset.minutes else 0.0,
        result="", path="")
    for quick in (False, True):
        P.preset_runs(swept, quick=quick)
    return swept


# ---- the curve, from a group's finished runs ----------------------------------------------------------

_BUDGET_NAME = re.compile(r"^(?P<label>.+) · (?P<n>\d+) labels$")


def budget_curves(variants: Iterable[Any]) -> list:
    """The variants labelled "<label> · N labels" (``comparison.Variant``s of a label-budget group, compared by
    their preset labels: label, seed -> final value) as one ``charts.Curve`` per label, x = N, the mean and sd
    over seeds. Empty when there is none (not a label-budget group)."""
    from hft_core.charts import curves_of

    series: dict[str, dict[int, list[float]]] = {}
    for v in variants:
        m = _BUDGET_NAME.match(v.label)
        if m and v.values:
            series.setdefault(m["label"], {})[int(m["n"])] = list(v.values.values())
    return curves_of({label: dict(sorted(points.items())) for label, points in series.items()})
