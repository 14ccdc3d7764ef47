"""Variants over seeds, from the store: each one's final metric with a 95% interval, and paired differences.

What the Compare page, a preset's outcome panel, ``hft compare`` and ``hft report`` show, from
one place (the statistics themselves are ``hft_core.stats``, i.e. scipy's):

    compare_runs       runs -> Comparison: variants (a preset's labels, or runs whose configs
                       differ only by seed), each with {seed: final value} of one metric,
                       mean and interval per variant, paired differences between variants
    difference_line    "alpha 1 − alpha 0.5: +18.3 points [+10.2, +26.4], held on 3/3 seeds"
    format_value, format_estimate    a metric's numbers in its display units (accuracy in %)

A run's final value is ``presets.summarise_run``'s: the last logged value (throughput: the
mean after the first step). Only finished runs count; the others are named in the notes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from hft_core import stats
from hft_core.charts import SEED_IGNORED, flatten_config, metric_info

MINUS = "−"          # U+2212, as in "alpha 1 − alpha 0.5"
ALL_PAIRS_UP_TO = 6  # more variants than this: each against the best instead of every pair (15 rows at 6)


# ---- numbers in a metric's display units ------------------------------------------------------

def _percent(metric: str) -> bool:
    return metric_info(metric)[1] == "%"


def format_value(value: float, metric: str, signed: bool = False) -> str:
    """92.5% (accuracy), 0.4312 (a loss), 22,715,141 (a parameter count); ``signed``: a leading +/-."""
    if value is None or not math.isfinite(value):
        return "n/a"
    sign = "+" if signed else ""
    if _percent(metric):
        return f"{100 * value if metric_info(metric)[2] == 100 else value:{sign}.1f}"
    if metric.startswith("params") or (abs(value) >= 1e5 and float(value).is_integer()):
        return f"{value:{sign},.0f}"
    return f"{value:{sign}.4g}"


def unit_of(metric: str, difference: bool = False) -> str:
    """'%' for accuracy values and 'points' for their differences; the metric's own unit otherwise."""
    unit = metric_info(metric)[1]
    if unit == "%":
        return "points" if difference else "%"
    return "" if unit in ("count", "0-1") else unit


def _with_unit(text: str, metric: str, difference: bool) -> str:
    unit = unit_of(metric, difference)
    return f"{text}%" if unit == "%" else f"{text} {unit}" if unit else text


def format_estimate(est: stats.Estimate, metric: str, signed: bool = False) -> str:
    """'92.5% [88.1, 96.9]' or, for a difference, '+18.3 points [+10.2, +26.4]'; no interval: the mean alone."""
    mean = _with_unit(format_value(est.mean, metric, signed), metric, signed)
    if not est.has_interval:
        return mean
    return f"{mean} [{format_value(est.lo, metric, signed)}, {format_value(est.hi, metric, signed)}]"


def difference_line(diff: stats.PairedDifference, metric: str, expect: str = "", tol: float = 0.0,
                    verdict: str = "") -> str:
    """'alpha 1 − alpha 0.5: +18.3 points [+10.2, +26.4], held on 3/3 seeds'.

    ``expect`` "higher" / "near" (a preset's check): "held on k/n seeds" counts the seeds where it
    held; "" (no expectation): "higher on k/n seeds". ``verdict`` is appended when given.
    """
    head = f"{diff.a} {MINUS} {diff.b}: "
    if diff.n == 0:
        return head + "no seed in common" + (f" ({verdict})" if verdict else "")
    text = head + format_estimate(diff.estimate, metric, signed=True)
    if expect == "near":
        band = _with_unit(format_value(tol, metric), metric, True)
        text += f", within ±{band} on {stats.seeds_held(diff, 'near', tol)}/{diff.n} seeds"
    elif expect == "higher":
        text += f", held on {stats.seeds_held(diff)}/{diff.n} seeds"
    else:
        text += f", higher on {stats.seeds_held(diff)}/{diff.n} seeds"
    return text + (f": {verdict}" if verdict else "")


# ---- variants of a set of runs ----------------------------------------------------------------

@dataclass
class Variant:
    label: str
    values: dict[int, float] = field(default_factory=dict)   # seed -> final value of the metric
    run_ids: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """Variants of one metric over seeds, with intervals and paired differences."""

    metric: str
    method: str
    confidence: float
    variants: list[Variant]
    estimates: dict[str, stats.Estimate]          # label -> mean with its interval
    differences: list[stats.PairedDifference]     # a - b, a the higher mean
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    @property
    def seed_counts(self) -> list[int]:
        return [len(v.values) for v in self.variants]

    @property
    def method_note(self) -> str:
        return stats.method_note(self.method, self.seed_counts or [0], self.confidence)

    @property
    def warning(self) -> str:
        """A sentence when some variant has fewer than ``stats.MIN_SEEDS`` seeds, else ""."""
        few = min(self.seed_counts, default=0)
        return stats.few_seeds_warning(few) if self.variants else ""

    def mean_rows(self) -> list[dict[str, Any]]:
        """One row per variant: its mean with the interval, the seeds, each seed's value."""
        return [{"variant": v.label,
                 f"mean [{self.confidence:.0%} interval]": format_estimate(self.estimates[v.label], self.metric),
                 "seeds": len(v.values),
                 "per seed": ", ".join(f"{s}: {format_value(x, self.metric)}" for s, x in sorted(v.values.items()))}
                for v in self.variants]

    def difference_rows(self) -> list[dict[str, Any]]:
        """One row per pair: the paired difference with its interval and the seeds it held on."""
        return [{"difference": f"{d.a} {MINUS} {d.b}",
                 f"mean [{self.confidence:.0%} interval]": format_estimate(d.estimate, self.metric, signed=True)
                 if d.n else "no seed in common",
                 "higher on": f"{stats.seeds_held(d)}/{d.n} seeds" if d.n else "-"}
                for d in self.differences]

    def lines(self) -> list[str]:
        """The whole comparison as text (the CLI, the report's plain part)."""
        width = max((len(v.label) for v in self.variants), default=0)
        out = [f"{self.metric} (final value; {self.method_note})"]
        for v in self.variants:
            out.append(f"  {v.label:{width}}  {format_estimate(self.estimates[v.label], self.metric)}"
                       f"   ({len(v.values)} seed{'s' if len(v.values) != 1 else ''})")
        if self.differences:
            out.append("paired differences:")
            out += [f"  {difference_line(d, self.metric)}" for d in self.differences]
        if self.warning:
            out.append(f"warning: {self.warning}")
        out += [f"note: {n}" for n in self.notes]
        return out


def runs_of(store: Any, names: Sequence[str]) -> tuple[str, list[str]]:
    """A group name or run ids -> (the group or "", run ids; a group's oldest first, the queue's order).

    Unknown names raise, saying where the lab looked and what it has.
    """
    from hft_core.config import ConfigError

    names = list(names)
    if not names:
        raise ConfigError("give a group name or run ids (`hft list` shows both)")
    if len(names) == 1 and names[0] in store.groups():
        return names[0], [r.id for r in reversed(store.list_runs(group=names[0]))]
    for rid in names:
        if len(names) == 1 and not rid.startswith("r-"):
            raise ConfigError(f"no group {rid!r} in {store.path}; groups: {store.groups()[:10]} "
                              "(or give run ids, as `hft list` shows them)")
        store.get_run(rid)  # an unknown id: "no run 'x' in ...; `hft list` shows the runs there"
    return "", names


def _config_key(config: Mapping[str, Any]) -> str:
    flat = flatten_config(config)
    return repr(sorted((k, repr(v)) for k, v in flat.items() if k not in SEED_IGNORED))


def _seed(rec: Any) -> int:
    return int(rec.seed if rec.seed is not None else rec.config.get("seed", 0))


def variants_of(store: Any, run_ids: Sequence[str], metric: str) -> tuple[list[Variant], list[str]]:
    """Finished training runs grouped into variants (configs equal but for seed, name and group),
    each with {seed: final value of ``metric``}; and notes on what was left out."""
    from hft_core.presets import summarise_run

    buckets: dict[str, Variant] = {}
    names: dict[str, list[str]] = {}
    unfinished, jobs, without, doubled = [], [], [], []
    for rid in run_ids:
        rec = store.get_run(rid)
        if rec.kind != "train":
            jobs.append(rid)
            continue
        if rec.status != "finished":
            unfinished.append(f"{rid} ({rec.status})")
            continue
        value = summarise_run(store, rid).get(metric)
        if value is None:
            without.append(rid)
            continue
        v = buckets.setdefault(_config_key(rec.config), Variant(""))
        seed = _seed(rec)
        if seed in v.values:
            doubled.append(f"{rid} (seed {seed})")
            continue
        v.values[seed] = value
        v.run_ids.append(rid)
        names.setdefault(_config_key(rec.config), []).append(rec.name or rid)
    for key, v in buckets.items():
        ns = list(dict.fromkeys(names[key]))
        v.label = ns[0] if len(ns) == 1 else f"{ns[0]} (+{len(v.run_ids) - 1} seeds)"
    labels = [v.label for v in buckets.values()]
    for v in buckets.values():  # two variants that share a name: tell them apart by their first run
        if labels.count(v.label) > 1:
            v.label = f"{v.label} ({v.run_ids[0]})"
    notes = []
    if unfinished:
        notes.append(f"not finished, left out: {', '.join(unfinished)}")
    if without:
        notes.append(f"no {metric} logged, left out: {', '.join(without)}")
    if jobs:
        notes.append(f"jobs (not training runs) left out: {', '.join(jobs)}")
    if doubled:
        notes.append(f"a second run of the same config and seed, left out: {', '.join(doubled)}")
    return list(buckets.values()), notes


def preset_variants(preset: Any, store: Any, run_ids: Sequence[str], metric: str) -> tuple[list[Variant], list[str]]:
    """A preset's runs by variant label (its WiSE-FT points included), in the preset's order."""
    from hft_core.presets import outcome_of

    outcome = outcome_of(preset, store, run_ids)
    per_seed, run_of = outcome.extra["per_seed"], outcome.extra["run_ids"]
    out = [Variant(label, dict(per_seed[label][metric]), list(run_of.get(label, [])))
           for label in preset.labels if metric in per_seed.get(label, {})]
    failed = outcome.extra.get("failed") or {}
    return out, ([f"not finished, left out: {', '.join(f'{r} ({w})' for r, w in failed.items())}"] if failed else [])


def pairs_of(variants: Sequence[Variant], estimates: Mapping[str, stats.Estimate]) -> list[tuple[str, str]]:
    """(a, b) with a's mean >= b's: every pair up to ``ALL_PAIRS_UP_TO`` variants, else each against the best."""
    ranked = sorted((v.label for v in variants), key=lambda label: -estimates[label].mean)
    if len(ranked) <= ALL_PAIRS_UP_TO:
        return [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1:]]
    return [(ranked[0], b) for b in ranked[1:]]


def compare_runs(store: Any, run_ids: Iterable[str], metric: str = "", *, preset: Any = None, method: str = "t",
                 confidence: float = stats.CONFIDENCE) -> Comparison:
    """Compare the finished runs among ``run_ids`` on ``metric`` (default: the preset's, else eval/accuracy).

    With a ``preset`` its variant labels are the variants (a KD student's config names its
    teacher's run, different on every seed, so configs alone would not group it); otherwise runs
    whose configs differ only by seed, name and group are one variant.
    """
    run_ids = list(run_ids)
    metric = metric or (preset.metric if preset is not None else "eval/accuracy")
    if preset is not None:
        variants, notes = preset_variants(preset, store, run_ids, metric)
    else:
        variants, notes = variants_of(store, run_ids, metric)
    for v in variants:  # by seed: the same numbers whatever order the runs came in (sums in floating point)
        v.values = dict(sorted(v.values.items()))
    estimates = {v.label: stats.mean_interval(v.values.values(), confidence, method) for v in variants}
    values = {v.label: v.values for v in variants}
    diffs = [stats.paired_difference(values[a], values[b], confidence, method, labels=(a, b))
             for a, b in pairs_of(variants, estimates)]
    if not variants:
        notes.insert(0, f"no finished run among the {len(run_ids)} given has {metric!r}")
    if preset is None and variants and all(len(v.values) == 1 for v in variants) and len(variants) > 1:
        notes.append("every variant has one seed: the differences are single measurements, with no interval")
    return Comparison(metric, method, confidence, variants, estimates, diffs, notes)


# ---- a preset's checks as text ------------------------------------------------------------------

def check_line(v: Any) -> str:
    """One judged check (``presets.CheckVerdict``) as a line: what was expected, the verdict, the evidence.

    'expected alpha 1 > alpha 0.5 on eval/accuracy: held on the mean (alpha 1 − alpha 0.5: +16.0 points
    [-2.1, +34.1], held on 3/3 seeds)'
    """
    evidence = "; ".join(difference_line(d, v.check.metric, v.expect, v.check.tol) for d in v.differences)
    if v.missing:
        evidence = "no finished run of " + ", ".join(v.missing)
    if v.verdict == stats.NOT_JUDGED_QUICK:  # a few steps of a tiny model: its numbers are no evidence
        evidence = ""
    return f"expected {v.check.describe()}: {v.verdict}" + (f" ({evidence})" if evidence else "")


def verdict_counts(verdicts: Iterable[Any]) -> dict[str, int]:
    """How many checks got each verdict, in ``stats.VERDICTS`` order (zeros left out)."""
    found = [v.verdict for v in verdicts]
    return {word: found.count(word) for word in stats.VERDICTS if found.count(word)}
