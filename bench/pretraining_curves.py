"""The pretraining lesson's two curves: fine-tuned accuracy against the pretraining budget and against
the number of labelled articles (issue 19 §1), measured by training, and saved for the Learn page.

    python bench/pretraining_curves.py                      # seeds 0,1,2 (about 20 min on 2 CPU cores)
    python bench/pretraining_curves.py --seeds 0 --quick    # the plumbing only: tiny models, a few steps

Both sweeps are made from the preset ``pretrain_then_finetune`` by ``hft_core.label_budget`` and run
through the store's queue like any preset (one group each, open on Compare):

    pretraining budget  its contrastive pretraining at 50 / 150 / 300 steps, each fine-tuned as in the
                        preset; 0 steps is the tiny BERT from scratch
    label budget        every fine-tuning variant (scratch, after contrastive, after masked-LM, the
                        bag-of-words baseline) at 25 / 50 / 100 / 200 labelled articles, from one
                        pretraining run per seed

Prints a table per curve (mean ± sd over seeds) and writes them, with the seeds, the command and the
machine, to presets/measured/pretrain_then_finetune.json (``--out``), which the Learn page draws.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hft_core import explain  # noqa: E402
from hft_core import label_budget as LB  # noqa: E402
from hft_core import presets as P  # noqa: E402
from hft_core.report import cpu_name  # noqa: E402


def values(outcome: P.Outcome, label: str) -> list[float]:
    """The label's eval/accuracy per seed, in seed order."""
    per_seed = outcome.extra["per_seed"].get(label, {}).get("eval/accuracy", {})
    return [per_seed[s] for s in sorted(per_seed)]


def table(title: str, xs: list, series: dict[str, list[list[float]]], x_name: str) -> None:
    print(f"\n{title}")
    print(f"   {x_name:>10}  " + "  ".join(f"{name[:34]:>34}" for name in series))
    for i, x in enumerate(xs):
        cells = []
        for runs in series.values():
            v = runs[i]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{100 * statistics.fmean(v):5.1f} ± {100 * sd:4.1f} %" if v else "-")
        print(f"   {x!s:>10}  " + "  ".join(f"{c:>34}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="which seeds, e.g. 0,1,2")
    ap.add_argument("--quick", action="store_true", help="tiny models, a few steps (plumbing check, numbers meaningless)")
    ap.add_argument("--home", default="", help="store folder (default $HFT_HOME)")
    ap.add_argument("--out", default=str(explain.PRETRAINING_CURVES), help="where to write the curves (JSON)")
    args = ap.parse_args(argv)
    if args.home:
        os.environ["HFT_HOME"] = args.home
    from hft_core.store import RunStore

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    preset = P.load_preset("pretrain_then_finetune")
    store = RunStore()
    log = lambda m: print(f"   . {m}", flush=True)  # noqa: E731
    t0 = time.time()

    by_steps = LB.pretraining_budget_preset(preset, "contrastive")
    out_steps = P.run_preset_here(by_steps, seeds, quick=args.quick, store=store, log=log)
    tuned = "tiny BERT after contrastive pretraining"
    steps = [0, *LB.PRETRAINING_STEPS]
    steps_series = {tuned: [values(out_steps, "tiny BERT from scratch")]
                    + [values(out_steps, LB.steps_label(tuned, n)) for n in LB.PRETRAINING_STEPS],
                    "bag-of-words logistic regression": [values(out_steps, "bag-of-words logistic regression")]
                    * len(steps)}
    table("fine-tuned eval accuracy against contrastive pretraining steps (0 = from scratch)", steps, steps_series,
          "steps")

    by_labels = LB.label_budget_preset(preset)
    out_labels = P.run_preset_here(by_labels, seeds, quick=args.quick, store=store, log=log)
    finetunes = [v.label for v in preset.variants if not v.id]
    label_series = {name: [values(out_labels, LB.budget_label(name, n)) for n in LB.LABEL_BUDGETS]
                    for name in finetunes}
    table("fine-tuned eval accuracy against labelled articles", list(LB.LABEL_BUDGETS), label_series, "labels")
    minutes = (time.time() - t0) / 60
    print(f"\n{minutes:.1f} min for {len(seeds)} seed(s); groups {out_steps.extra['group']!r} and "
          f"{out_labels.extra['group']!r}")
    store.close()
    if args.quick:
        print("quick mode: numbers meaningless, not written")
        return 0
    record = {
        "seeds": seeds, "command": "python bench/pretraining_curves.py --seeds " + ",".join(map(str, seeds)),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, no GPU",
        "minutes": round(minutes, 1), "metric": "eval/accuracy",
        "pretraining_steps": {"x": steps, "series": steps_series},
        "label_budget": {"x": list(LB.LABEL_BUDGETS), "series": label_series},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
