"""Run the teaching presets over several seeds and check their expected directions.

    python bench/presets.py                        # every preset, 3 seeds each
    python bench/presets.py --only finetune_vs_scratch --seeds 5
    python bench/presets.py --seeds 3,4,5          # the held-out seeds: check a design without changing it
    python bench/presets.py --quick                # tiny models, a few steps: checks the plumbing only

For each preset: the key metric per variant as mean ± sd over the seeds, the wall time
of one comparison (all variants, one seed), and whether each expected direction held.
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

from hft_core import presets as P  # noqa: E402


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
        print(f"   {label:{width}}  {metric} = {fmt(mean, sd, metric)}   {took}", file=out)
    per_seed = sum(statistics.fmean(s) for s in outcome.seconds.values() if s)
    cpu = sum(statistics.fmean(s) for s in outcome.extra.get("cpu_seconds", {}).values() if s)
    print(f"   one comparison (all variants, one seed): {per_seed:.0f} s wall, {cpu:.0f} s CPU "
          f"(so {cpu / max(1, os.cpu_count() or 1) / 60:.1f}-{cpu / 60:.1f} min on an idle {os.cpu_count()}-core machine; "
          f"preset states {p.minutes:g} min; load average now {os.getloadavg()[0]:.1f})", file=out)
    for label, lines in outcome.extra.get("samples", {}).items():
        print(f"   sample answers, {label} (seed {outcome.preset.seeds[0]}):", file=out)
        for line in lines:
            print(f"     {line[:300]}", file=out)
    for check, held in outcome.check_results:
        mark = {True: "held", False: "DID NOT HOLD", None: "not measured"}[held]
        extra = ""
        if check.metric != p.metric:
            per_label = outcome.extra.get("per_label", {})
            shown = []
            for label in (check.near or (check.higher, check.lower)):
                vals = per_label.get(label, {}).get(check.metric, [])
                if vals:
                    shown.append(f"{label}: {fmt(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0, check.metric)}")
            extra = f"  [{'; '.join(shown)}]"
        print(f"   expected {check.describe()}: {mark}{extra}", file=out)


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
    held = failed = unmeasured = 0
    t0 = time.time()
    for p in chosen:
        seeds = seed_list(args.seeds, p.seeds)
        try:
            outcome = P.run_preset_here(p, seeds, quick=args.quick, store=store,
                                        log=lambda m: print(f"   . {m}", flush=True))
        except Exception as e:  # report and go on with the next preset
            print(f"\n== {p.name}: FAILED: {type(e).__name__}: {e}", flush=True)
            unmeasured += len(p.checks)
            continue
        report(outcome)
        sys.stdout.flush()
        for _, h in outcome.check_results:
            held += h is True
            failed += h is False
            unmeasured += h is None
    store.close()
    print(f"\nsummary: {len(chosen)} preset(s), {held} expected direction(s) held, {failed} did not, "
          f"{unmeasured} not measured; {time.time() - t0:.0f} s{' (quick mode: numbers meaningless)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
