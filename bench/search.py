"""Acceptance of the search on real data (issue 11): MiniLM-L6 + BBC News few-shot.

    nice -n 10 python3 bench/search.py              # tens of minutes on 2 cores
    python3 bench/search.py --quick                 # tiny model, a few steps: checks the script only

1. The search file presets/search/lr_alpha_beta.yaml (the finetune_vs_scratch preset's alpha 1
   config as base: 200 training articles, 40 steps, eval every 10 on 200 held-out articles;
   space: lr, mix.blend.alpha, mix.l2sp.beta) runs twice, 12 TPE trials each, the same sampler
   seed: once with the median pruner (the file's), once without pruning.
2. The best config of the pruned study and the preset's alpha 1 config are each trained on
   seeds 0, 1 and 2 (each seed its own data split; both configs see the same split per seed).

Stated before the run, judged after it, never tuned on the comparison seeds:
  * search_vs_preset: mean eval/accuracy of the best config >= that of the preset's alpha 1.
  * pruning_steps: the pruned study trains >= 30% fewer optimizer steps (counted from the
    store: each run's last logged step) than the unpruned one.
  * pruning_best: the pruned study's best value is at least the unpruned one's minus one eval
    example (1/n_eval): "the same best value" on a 200-example eval set.
Runs go to a fresh store (--home, default a new folder under /tmp), so Compare can open them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402  (bench/ is on sys.path: run as python bench/X.py)

SEARCH_FILE = ROOT / "presets" / "search" / "lr_alpha_beta.yaml"
QUICK = {"model": "tiny:bert", "n_train": 48, "n_eval": 32, "max_length": 32, "batch_size": 8, "max_steps": 8,
         "eval_every": 2}
SEEDS = (0, 1, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny model, few steps: checks the script, the numbers mean nothing")
    p.add_argument("--home", default="", help="store folder (default: a new folder under /tmp)")
    p.add_argument("--trials", type=int, default=12)
    args = p.parse_args(argv)
    home = Path(args.home or scratch_dir("hft-bench-search-"))
    os.environ["HFT_HOME"] = str(home)
    os.environ.setdefault("HFT_OFFLINE", "1")

    from hft_core import presets as P
    from hft_core import search as S
    from hft_core.runs import run_here
    from hft_core.store import RunStore

    t0 = time.time()
    stamp = time.strftime("%m%d-%H%M%S")
    spec = S.load_search(SEARCH_FILE)
    overrides = QUICK if args.quick else {}
    base = spec.base.with_overrides(overrides)  # --quick: the same shrinking for the study and the preset's config
    space = {d.field: {k: v for k, v in d.to_dict().items() if k != "field"} for d in spec.space}
    store = RunStore(home)
    print(f"store {home}; search file {SEARCH_FILE.relative_to(ROOT)}; {args.trials} trials per study; "
          f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores, shared with other work)", flush=True)

    studies = {}
    for pruner in ("median", "none"):
        objective = {"metric": spec.metric, "direction": spec.direction}
        one = S.parse_search({"base": base, "space": space, "objective": objective,
                              "sampler": {"name": spec.sampler, **spec.sampler_args},
                              "pruner": {"name": pruner, **(spec.pruner_args if pruner == spec.pruner else {})},
                              "seed": spec.seed}, name=f"bench-{pruner}-{stamp}")
        t = time.time()
        print(f"\n== study {one.name}: sampler {one.sampler} {one.sampler_args}, pruner {pruner} "
              f"{one.pruner_args if pruner != 'none' else ''}", flush=True)
        result = S.run_search(one, trials=args.trials, store=store,
                              on_trial=lambda info, m=one.metric: print("  " + info.describe(m), flush=True))
        studies[pruner] = (one, result, time.time() - t)

    # ---- the final comparison: the pruned study's best config vs the preset's alpha 1, seeds 0-2 ----
    _, pruned, _ = studies["median"]
    best = pruned.best
    preset = P.load_preset("finetune_vs_scratch")
    alpha1 = next(v for v in preset.variants if v.label.startswith("alpha 1"))
    finals: dict[str, list[float]] = {"best config": [], "preset alpha 1": []}
    t = time.time()
    print(f"\n== final comparison on seeds {list(SEEDS)}: best trial {best.number} {best.params} vs the preset's "
          f"{alpha1.label!r}", flush=True)
    for seed in SEEDS:
        arms = {"best config": base.with_overrides({**best.params, "seed": seed}),
                "preset alpha 1": P.variant_config(preset, alpha1, seed).with_overrides(overrides)}
        for label, cfg in arms.items():
            outcome = run_here(cfg, store=store, group=f"bench-final-{stamp}", name=label, handle_ctrl_c=False)
            value = store.last_metrics(outcome.run_id).get(spec.metric, float("nan"))
            finals[label].append(value)
            print(f"  seed {seed} {label:15} {outcome.status:9} {spec.metric} = {value:.4f}  (run {outcome.run_id})",
                  flush=True)
    final_s = time.time() - t

    # ---- the tables ------------------------------------------------------------------------------
    print("\n== trials (value = last eval/accuracy; a pruned trial's value is its last eval before the stop)")
    fields = [d.field for d in spec.space]
    head = f"{'study':8} {'trial':>5} " + " ".join(f"{f.split('.')[-1]:>9}" for f in fields) + \
        f" {'state':>9} {'steps':>5} {'value':>7}"
    print(head)
    for pruner, (one, result, _) in studies.items():
        for tr in result.trials:
            vals = " ".join(f"{tr.params.get(f, float('nan')):9.3g}" for f in fields)
            value = f"{tr.value:7.4f}" if tr.value is not None else "      -"
            print(f"{pruner:8} {tr.number:5d} {vals} {tr.state.lower():>9} {tr.steps:5d} {value}")
    print(f"\n{'study':8} {'trials':>6} {'pruned':>6} {'steps':>6} {'best':>7} {'minutes':>7}")
    for pruner, (one, result, secs) in studies.items():
        c = result.counts()
        print(f"{pruner:8} {len(result.trials):6d} {c['PRUNED']:6d} {result.steps_trained():6d} "
              f"{result.best.value if result.best else float('nan'):7.4f} {secs / 60:7.1f}")
    print(f"\n{'config':15} " + " ".join(f"{'seed ' + str(s):>8}" for s in SEEDS) + f" {'mean':>8} {'sd':>7}")
    for label, values in finals.items():
        print(f"{label:15} " + " ".join(f"{v:8.4f}" for v in values) +
              f" {statistics.fmean(values):8.4f} {statistics.stdev(values):7.4f}")

    # ---- the verdicts ------------------------------------------------------------------------------
    mean_best, mean_preset = statistics.fmean(finals["best config"]), statistics.fmean(finals["preset alpha 1"])
    steps_m, steps_n = studies["median"][1].steps_trained(), studies["none"][1].steps_trained()
    saving = 1 - steps_m / steps_n if steps_n else float("nan")
    best_m = studies["median"][1].best.value if studies["median"][1].best else float("nan")
    best_n = studies["none"][1].best.value if studies["none"][1].best else float("nan")
    tol = 1 / base.n_eval
    verdict = {True: "held", False: "DID NOT HOLD"}
    print(f"\nRESULT search_vs_preset: best config {best.params} mean {spec.metric} {mean_best:.4f} vs the preset's "
          f"alpha 1 {mean_preset:.4f} over seeds {list(SEEDS)}: {verdict[mean_best >= mean_preset]} "
          f"(delta {mean_best - mean_preset:+.4f})")
    print(f"RESULT pruning_steps: median pruner {steps_m} steps vs none {steps_n}: {100 * saving:.1f}% fewer "
          f"(>= 30% expected): {verdict[saving >= 0.30]}")
    print(f"RESULT pruning_best: best value with the median pruner {best_m:.4f} vs without {best_n:.4f} "
          f"(the same within one eval example, {tol:.4f}): {verdict[best_m >= best_n - tol]}")
    print(f"RESULT wall_time: {(time.time() - t0) / 60:.1f} min in all (studies {studies['median'][2] / 60:.1f} + "
          f"{studies['none'][2] / 60:.1f} min, final runs {final_s / 60:.1f} min); load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores shared with other work"
          + ("; --quick: the numbers mean nothing" if args.quick else ""))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
