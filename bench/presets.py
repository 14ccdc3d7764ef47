"""Run the teaching presets over several seeds and check their expected directions.

    python bench/presets.py                        # every preset, 3 seeds each
    python bench/presets.py --only finetune_vs_scratch --seeds 5
    python bench/presets.py --seeds 3,4,5          # the held-out seeds: check a design without changing it
    python bench/presets.py --quick                # tiny models, a few steps: checks the plumbing only

For each preset: the key metric per variant as mean ± sd over the seeds with its 95%
t-interval, the wall time of one comparison (all variants, one seed), and each expected
direction's verdict, paired by seed (hft_core.stats): held with confidence / held on the
mean / did not hold; a --quick run is "not judged (quick check)".
The last line is a summary. Runs go to a store in $HFT_HOME (or --home), one group per
preset, so they can be opened on the Compare page afterwards.

A preset whose expected outcome does not hold is reported as such: its YAML text must
then say so honestly (field ``result``), not be tuned until it does.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hft_core import comparison as C  # noqa: E402
from hft_core import presets as P  # noqa: E402
from hft_core import stats  # noqa: E402


def fmt(mean: float, sd: float, metric: str) -> str:
    if metric.startswith("eval/accuracy") or metric.startswith("eval/f1"):
        return f"{100 * mean:5.1f} ± {100 * sd:4.1f} %"
    if metric.startswith("params"):
        return f"{mean:,.0f}"
    return f"{mean:.4g} ± {sd:.2g}"


def report(outcome: P.Outcome, out=sys.stdout) -> None:
    p = outcome.preset
    n = max((len(v) for v in outcome.values.values()), default=0)
    print(f"\n== {p.name}: {p.title}  ({n} seed(s))", file=out)
    print(f"   {p.question}", file=out)
    width = max(len(label) for label in outcome.values) if outcome.values else 10
    for label, values in outcome.values.items():
        mean, sd = outcome.mean_sd(label)
        secs = outcome.seconds.get(label, [])
        took = f"{statistics.fmean(secs):5.0f} s/run" if secs else ""
        metric = p.metric_of(label)  # a pretraining variant reports its own (eval/perplexity)
        est = stats.mean_interval(values)
        ci = f"  95% [{C.format_value(est.lo, metric)}, {C.format_value(est.hi, metric)}]" if est.has_interval else ""
        print(f"   {label:{width}}  {metric} = {fmt(mean, sd, metric)}{ci}   {took}", file=out)
    per_seed = sum(statistics.fmean(s) for s in outcome.seconds.values() if s)
    cpu = sum(statistics.fmean(s) for s in outcome.extra.get("cpu_seconds", {}).values() if s)
    print(f"   one comparison (all variants, one seed): {per_seed:.0f} s wall, {cpu:.0f} s CPU "
          f"(so {cpu / max(1, os.cpu_count() or 1) / 60:.1f}-{cpu / 60:.1f} min on an idle {os.cpu_count()}-core machine; "
          f"preset states {p.minutes:g} min; load average now {os.getloadavg()[0]:.1f})", file=out)
    for label, lines in outcome.extra.get("samples", {}).items():
        print(f"   sample answers, {label} {lines[0]}:", file=out)  # the first run's seed
        for line in lines[1:]:
            print(f"     {line[:300]}", file=out)
    seeds = [d.n for v in outcome.verdicts for d in v.differences]
    if seeds:
        print(f"   checks paired by seed: {stats.method_note('t', seeds)}", file=out)
        if min(seeds) < stats.MIN_SEEDS:
            print(f"   warning: {stats.few_seeds_warning(min(seeds))}", file=out)
    if outcome.quick:
        print("   quick check (tiny model, a few steps): the plumbing is checked, the lesson is not judged", file=out)
    for v in outcome.verdicts:
        extra = ""
        if v.check.metric != p.metric:
            extra = "  [" + "; ".join(f"{label}: {C.format_estimate(est, v.check.metric)}"
                                      for label, est in v.estimates.items()) + "]"
        print(f"   {C.check_line(v)}{extra}", file=out)


def seed_list(text: str, own: list[int]) -> list[int]:
    """"3": the preset's first 3 seeds (more after its last if it has fewer); "3,4,5": these."""
    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    if not parts or not all(t.isdigit() for t in parts):
        raise SystemExit(f"--seeds {text!r}: give a count (3) or a list of seeds (3,4,5)")
    if len(parts) > 1 or "," in str(text):
        return [int(t) for t in parts]
    n = int(parts[0])
    return list(own[:n]) + list(range(max(own) + 1, max(own) + 1 + n - len(own)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="3", help="how many seeds per preset, from each preset's own (default 3), "
                    "or which: e.g. 3,4,5")
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this preset (repeatable)")
    ap.add_argument("--skip", action="append", default=[], metavar="NAME", help="skip this preset (repeatable)")
    ap.add_argument("--quick", action="store_true", help="tiny models, a few steps (plumbing check, numbers meaningless)")
    ap.add_argument("--home", default="", help="store folder (default $HFT_HOME)")
    args = ap.parse_args(argv)
    if args.home:
        os.environ["HFT_HOME"] = args.home
    from hft_core.store import RunStore

    every = {p.name: p for p in P.list_presets()}
    names = args.only or list(every)  # --only: in the order given
    unknown = set(names) - set(every)
    chosen = [every[n] for n in names if n in every and n not in args.skip]
    if unknown:
        print(f"unknown preset(s) {sorted(unknown)}; have {[p.name for p in P.list_presets()]}", file=sys.stderr)
        return 2
    store = RunStore()
    counts: dict[str, int] = {}
    t0 = time.time()
    for p in chosen:
        seeds = seed_list(args.seeds, p.seeds)
        try:
            outcome = P.run_preset_here(p, seeds, quick=args.quick, store=store,
                                        log=lambda m: print(f"   . {m}", flush=True))
        except Exception as e:  # report and go on with the next preset
            print(f"\n== {p.name}: FAILED: {type(e).__name__}: {e}", flush=True)
            counts[stats.NOT_MEASURABLE] = counts.get(stats.NOT_MEASURABLE, 0) + len(p.checks)
            continue
        report(outcome)
        sys.stdout.flush()
        for word, n in C.verdict_counts(outcome.verdicts).items():
            counts[word] = counts.get(word, 0) + n
    store.close()
    shown = ", ".join(f"{counts[w]} {w}" for w in stats.VERDICTS if counts.get(w)) or "no checks"
    print(f"\nsummary: {len(chosen)} preset(s), expected directions: {shown}; {time.time() - t0:.0f} s"
          f"{' (quick mode: numbers meaningless, lessons not judged)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
