"""`hft report` on a finished preset group (issue 22): the file it writes opens in Chromium with the network
off, every chart has its traces, and the table shows the store's numbers.

No app server: the store is written straight into a temp HFT_HOME (finished finetune_vs_scratch runs, three
variants x three seeds, no training), the real CLI writes the report in a subprocess, and Chromium opens the
file from disk in an offline context. Every expectation is computed here from the store (final values by
``RunStore.last_metrics``, intervals by the textbook t formula with scipy's t quantile), not read from the
report's own JSON.
"""
from __future__ import annotations

import importlib.util
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

# this folder's conftest by its path: a bare `import conftest` may find tests/conftest.py in a full run
_spec = importlib.util.spec_from_file_location("e2e_conftest", Path(__file__).with_name("conftest.py"))
E2E = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(E2E)
CHROMIUM, CHROMIUM_ARGS, ROOT, SHOTS, VIEWPORT = E2E.CHROMIUM, E2E.CHROMIUM_ARGS, E2E.ROOT, E2E.SHOTS, E2E.VIEWPORT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hft_core import charts  # noqa: E402
from hft_core import comparison as C  # noqa: E402
from hft_core import presets as P  # noqa: E402
from hft_core import report as R  # noqa: E402
from hft_core.store import RunStore  # noqa: E402

pytestmark = pytest.mark.e2e

PRESET = P.load_preset("finetune_vs_scratch")
GROUP = "finetune_vs_scratch-0308-141500"
SEEDS = (0, 1, 2)
STEPS, EVAL_EVERY = 120, 20
CONFIDENCE = 0.95


def _final_accuracy(variant: int, seed: int) -> float:
    """Made-up final accuracies: the fine-tuned variant best; every seed, and every pair's per-seed differences,
    different (each interval has its own width, a swapped pair would show)."""
    return round(0.93 - 0.27 * variant - 0.05 * variant ** 2 + 0.013 * ((seed * 5 + variant * 4 + 1) % 7)
                 + 0.006 * ((seed * variant) % 3) - 0.01 * seed, 4)


def _write_group(home: Path) -> None:
    with RunStore(home) as s:
        for vi, variant in enumerate(PRESET.variants):
            for seed in SEEDS:
                rid = s.create_run(P.variant_config(PRESET, variant, seed, group=GROUP), status="running",
                                   group=GROUP, name=variant.label)
                acc = _final_accuracy(vi, seed)
                for step in range(1, STEPS + 1):
                    loss = (2.0 + vi) / math.sqrt(step) + 0.01 * seed
                    s.log_metrics(rid, step, {"loss": loss, "loss/task": 0.9 * loss, "loss/l2sp": 0.1 * loss,
                                              "samples_per_s": 50.0 + seed})
                    if step % EVAL_EVERY == 0:
                        s.log_metrics(rid, step, {"eval/accuracy": acc * step / STEPS, "eval/loss": 1.5 - acc})
                s.set_status(rid, "finished")
        s.flush()


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its two-sided t interval: mean -+ t(1 - a/2, n - 1) * sd / sqrt(n)."""
    from scipy.stats import t

    n, mean = len(values), statistics.fmean(values)
    half = t.ppf(0.5 + CONFIDENCE / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def _shown(mean: float, lo: float, hi: float, metric: str, signed: bool = False) -> str:
    """As the report's table writes an estimate: '92.5% [88.1, 96.9]', a difference '+18.3 points [...]'."""
    f = lambda v: C.format_value(v, metric, signed)  # noqa: E731
    unit = C.unit_of(metric, difference=signed)
    head = f"{f(mean)}%" if unit == "%" else f"{f(mean)} {unit}" if unit else f(mean)
    return f"{head} [{f(lo)}, {f(hi)}]"


def _table(page, selector: str) -> list[dict[str, str]]:
    """The rows of an HTML table in the page, as {header text: cell text}."""
    return page.evaluate("""sel => {
        const t = document.querySelector(sel);
        if (!t) return null;
        const heads = [...t.querySelectorAll('thead th')].map(th => th.innerText.trim());
        return [...t.querySelectorAll('tbody tr')].map(tr =>
            Object.fromEntries([...tr.querySelectorAll('td')].map((td, i) => [heads[i], td.innerText.trim()])));
    }""", selector)


def test_report_file_opens_offline_with_every_trace_and_the_stores_numbers(tmp_path):
    why = E2E.missing_browser()
    if why:
        pytest.fail(why, pytrace=False)
    from playwright.sync_api import sync_playwright

    home, out = tmp_path / "home", tmp_path / "out" / "report.html"
    _write_group(home)

    # the real CLI, as a user runs it
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "hft_core", "report", GROUP, "-o", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"hft report exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert f"wrote {out}" in proc.stdout and out.is_file()

    # what the file should show, from the store
    metric = PRESET.metric
    with RunStore(home) as s:
        runs = [r for r in s.list_runs(group=GROUP) if r.kind == "train"]
        assert len(runs) == len(PRESET.variants) * len(SEEDS) and all(r.status == "finished" for r in runs)
        finals: dict[str, dict[int, float]] = {}
        for r in sorted(runs, key=lambda r: r.created):
            finals.setdefault(r.name, {})[r.seed] = s.last_metrics(r.id)[metric]
        logged = set(s.metrics([r.id for r in runs])["name"])
    variants = [v.label for v in PRESET.variants]
    assert set(finals) == set(variants)
    charted = [m for m in dict.fromkeys([metric, *R.CHART_METRICS]) if m in logged]
    charted += sorted(m for m in logged if m.startswith("loss/"))
    assert {"eval/accuracy", "eval/loss", "loss", "loss/task", "loss/l2sp"} <= set(charted)
    # seeds of one variant are drawn as a min-max band and a mean line: two traces a variant (one if a single run)
    traces_per_chart = sum(2 if len(seeds) > 1 else 1 for seeds in finals.values())

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport=VIEWPORT, offline=True)
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("request", lambda req: None if req.url.startswith("file://") else requests.append(req.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(out.as_uri(), wait_until="load")

            # every chart drawn with its data (plotly sets gd.data and gd._fullLayout on newPlot)
            page.wait_for_function(f"""() => {{
                const gds = [...document.querySelectorAll('.js-plotly-plot')];
                return gds.length === {len(charted)} && gds.every(g => Array.isArray(g.data) && g._fullLayout
                    && g.querySelector('.main-svg'));
            }}""")
            drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(g => ({
                title: (g.layout.title && (g.layout.title.text || g.layout.title)) || '',
                traces: g.data.length,
                points: g.data.map(t => (t.y || []).length),
                drawn: g.querySelectorAll('.scatterlayer .trace').length,
                means: Object.fromEntries(g.data.filter(t => t.fill !== 'toself').map(t => [t.name, t.y[t.y.length - 1]])),
            }))""")
            assert [d["traces"] for d in drawn] == [traces_per_chart] * len(charted), drawn
            for d in drawn:
                assert d["drawn"] == d["traces"] and all(n > 0 for n in d["points"]), d
            # the charts are the metrics the store logged, in the report's order (titled by their axis title)
            assert [d["title"] for d in drawn] == [charts.axis_title(m) for m in charted]
            # the first chart (the preset's metric, drawn at its scale: accuracy in %): each variant's mean line
            # ends at the mean of its seeds' final values (chart points carry 6 significant digits)
            scale = charts.metric_info(metric)[2]
            ends = drawn[0]["means"]
            for label, seeds in finals.items():
                (end,) = [y for name, y in ends.items() if name.startswith(f"{label} +")]
                assert end == pytest.approx(scale * statistics.fmean(seeds.values()), rel=1e-5)

            # the intervals table: each variant's mean over seeds with its 95% interval, the store's numbers
            means = _table(page, "table.means")
            assert means is not None, "no table.means in the report"
            head = f"mean [{CONFIDENCE:.0%} interval]"
            assert [row["variant"] for row in means] == variants
            for row in means:
                values = finals[row["variant"]]
                assert row[head] == _shown(*_t_interval(list(values.values())), metric)
                assert row["seeds"] == str(len(values))
                assert row["per seed"] == ", ".join(f"{s}: {C.format_value(x, metric)}"
                                                    for s, x in sorted(values.items()))

            # the paired differences (same seeds): a - b per seed, its t interval, on how many seeds a was higher
            diffs = _table(page, "table.differences")
            assert diffs, "no paired differences in the report"
            for row in diffs:
                a, b = row["difference"].split(f" {C.MINUS} ")
                d = [finals[a][s] - finals[b][s] for s in sorted(set(finals[a]) & set(finals[b]))]
                assert row[head] == _shown(*_t_interval(d), metric, signed=True)
                assert row["higher on"] == f"{sum(x > 0 for x in d)}/{len(d)} seeds"

            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
            context.close()
        finally:
            browser.close()
    assert not requests, f"the report asked the network for {requests}"
    assert not errors, f"errors in the page: {errors}"
