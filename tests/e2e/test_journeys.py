"""Journeys through the app in a real browser that no other browser test walks:

    a. Search: the form on Train (a tiny study, 2 trials), and the study with its trials on Compare
    b. Runs, After training: queue a WiSE-FT from the page, see it finish and its line
    c. Runs, token attributions of a finished run: Explain draws the tokens with their scores
    d. Runs, Resume clicked on a stopped run: queued, then finished, its curve continued
    e. Runs, Delete: gone from the page and from the store (rows and folder)
    f. Runs, Export: the zip holds the run's metrics and config, as stored
    g. Compare: seeds drawn as mean + band, paired deltas against a chosen baseline, intervals over seeds

The runs a journey starts from are made inside its test, after conftest's ``fresh_home`` emptied
the store: trained for real in this process (``run_here``, tiny:bert, a few steps) where the page
needs a checkpoint, else written straight into the store (known numbers, no training). Training
in the browser is kept to a few steps of tiny:bert. Every wait reads the state its assertion is
about, with a generous deadline (e2e_helpers); no fixed sleeps. Screenshots:
artifacts/screenshots/e2e-5*.png and e2e-6*.png.
"""
from __future__ import annotations

import csv
import io
import re
import time
import zipfile

import pytest
import yaml
from scipy import stats as sps

from e2e_helpers import wait_for, wait_idle

pytestmark = pytest.mark.e2e

LONG = 180  # s: a first page, a training or a job on a busy 2-core machine
TINY = dict(model="tiny:bert", data="bundled:bbc-news", n_train=32, n_eval=16, batch_size=8, max_length=32, lr=1e-3,
            eval_every=0, device="cpu")

# ---- reading the page ----------------------------------------------------------------------------
PLOTS_JS = """() => {
  // every plotly chart on the page, in the chart iframes too: title, y-axis title and traces
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  for (const f of document.querySelectorAll('iframe')) {
    try { if (f.contentDocument) plots.push(...f.contentDocument.querySelectorAll('.js-plotly-plot')); }
    catch (e) {}
  }
  return plots.filter(p => p._fullData && p._fullLayout).map(p => ({
    title: ((p._fullLayout.title && p._fullLayout.title.text) || '').replace(/<[^>]*>/g, ''),  // st.plotly_chart: <b>
    ytitle: (p._fullLayout.yaxis && p._fullLayout.yaxis.title && p._fullLayout.yaxis.title.text) || '',
    traces: p._fullData.map(t => ({name: t.name || '', n: (t.x || []).length, fill: t.fill || 'none',
                                   x: [...(t.x || [])], y: [...(t.y || [])]}))}));
}"""
TABLES_JS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')].map(t =>
  // st.dataframe draws on a canvas; its accessible table holds the text: header row first
  [...t.querySelectorAll('tr')].map(tr => [...tr.children].map(c => c.textContent.trim())))"""
METRICS_JS = """() => Object.fromEntries([...document.querySelectorAll('[data-testid="stMetric"]')].map(m => [
  m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
  m.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))"""


def plots(page) -> list[dict]:
    return page.evaluate(PLOTS_JS)


def plot_titled(page, start: str) -> dict | None:
    """The chart whose title starts with ``start`` (None while there is none)."""
    return next((p for p in plots(page) if p["title"].startswith(start)), None)


def tables(page) -> list[list[dict[str, str]]]:
    """Every st.dataframe on the page (its rows drawn so far) as a list of {column: text}."""
    return [[dict(zip(rows[0], r)) for r in rows[1:]] for rows in page.evaluate(TABLES_JS) if rows]


def metric(page, label: str) -> str:
    """The value shown by the st.metric called ``label`` ('' while there is none)."""
    return page.evaluate(METRICS_JS).get(label, "")


# ---- driving the page ----------------------------------------------------------------------------
def open_page(page, path: str, title: str) -> None:
    page.goto(page.base_url + "/" + path)
    page.locator("h1", has_text=title).first.wait_for(timeout=LONG * 1000)
    wait_idle(page)


def widget(page, testid: str, label: str):
    """The widget of kind ``testid`` whose label is exactly ``label``."""
    return page.locator(f'[data-testid="{testid}"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(f"^{re.escape(label)}$"))).first


def expand(page, title: str) -> None:
    """Open the expander whose title starts with ``title``."""
    exp = page.locator('[data-testid="stExpander"]').filter(has_text=title).first
    exp.locator("summary").first.click()
    wait_idle(page)


def open_list(page, label: str):
    """Open the option list of the selectbox ``label``; reopens it if a rerun closed it (slow, busy machines)."""
    deadline = time.time() + 60
    while True:
        widget(page, "stSelectbox", label).locator("input").first.click()
        try:
            page.get_by_role("option").first.wait_for(timeout=5000)
            return
        except Exception:
            if time.time() > deadline:
                raise
            page.keyboard.press("Escape")
            wait_idle(page)


def choose(page, label: str, option) -> None:
    """Pick ``option`` (text or pattern) in the selectbox ``label``; reopens the list if a rerun closed it."""
    deadline = time.time() + 60
    while True:
        open_list(page, label)
        opt = page.get_by_role("option", name=option)
        try:
            opt.first.wait_for(timeout=5000)
            opt.first.click()
            wait_idle(page)
            return
        except Exception:
            if time.time() > deadline:
                raise
            page.keyboard.press("Escape")
            wait_idle(page)


def options(page, label: str) -> list[str]:
    """The options the selectbox ``label`` offers (opens its list, reads it, closes it)."""
    open_list(page, label)
    names = [o.inner_text().strip() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    return names


def selected(page, label: str) -> str:
    """The option the selectbox ``label`` shows (a combobox input holds it)."""
    return widget(page, "stSelectbox", label).locator("input").first.input_value()


def set_number(page, label: str, value) -> None:
    box = widget(page, "stNumberInput", label).locator("input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def set_text(page, label: str, value: str) -> None:
    box = widget(page, "stTextInput", label).locator("input")
    box.fill(value)
    box.press("Tab")
    wait_idle(page)


@pytest.fixture
def app(page, app_server):
    page.base_url = str(app_server)
    return page


# ---- the runs a journey starts from -------------------------------------------------------------
def stopping_at(step: int):
    """The real trainer, asked to stop (as Stop does) once step ``step`` is logged: the run ends
    "stopped" with its checkpoint at exactly that step, however fast the machine."""
    from hft_core.runs import load_trainer

    train = load_trainer()

    class StopAt:  # the store's sink, plus the stop
        def __init__(self, sink, stop):
            self.sink, self.stop = sink, stop

        def log(self, at, values):
            self.sink.log(at, values)
            if at >= step:
                self.stop.set()

        def __getattr__(self, attr):
            return getattr(self.sink, attr)

    def train_fn(cfg, sink=None, stop=None, **kw):
        return train(cfg, StopAt(sink, stop), stop, **kw)
    return train_fn


def train_run(home, name: str, steps: int, stop_after: int | None = None, **fields) -> str:
    """A real tiny:bert run trained here (``run_here``: queued in the app's store, trained in this
    process, a few seconds). ``stop_after``: stopped at that step (``stopping_at``)."""
    from hft_core.config import RunConfig
    from hft_core.runs import run_here
    from hft_core.store import RunStore

    cfg = RunConfig(**{**TINY, "max_steps": steps, **fields})
    with RunStore(home) as store:
        out = run_here(cfg, store=store, name=name, train_fn=None if stop_after is None else stopping_at(stop_after),
                       handle_ctrl_c=False)
        rec = store.get_run(out.run_id)
    assert rec.status == ("finished" if stop_after is None else "stopped"), (rec.status, rec.error)
    assert rec.checkpoint_dir, rec
    return rec.id


def stored_run(store, name: str, steps: dict[int, dict[str, float]], group: str = "", **fields) -> str:
    """A finished run written straight into the store (no training): ``steps`` = {step: {metric: value}}."""
    from hft_core.config import RunConfig

    rid = store.create_run(RunConfig(**{**TINY, "max_steps": max(steps), **fields}), status="running", group=group,
                           name=name)
    for step, values in steps.items():
        store.log_metrics(rid, step, values)
    store.flush()  # every metric written before "finished", as a worker does
    store.set_status(rid, "finished")
    return rid


def run_status(home, run_id: str) -> str:
    from hft_core.store import RunStore

    with RunStore(home) as store:
        return store.get_run(run_id).status


# ---- a. Search ----------------------------------------------------------------------------------
def test_search_form_starts_a_study_and_compare_shows_its_trials(app, app_server, shot):
    from hft_core import search
    from hft_core.store import RunStore

    home, study = app_server.home, "e2e-study"
    open_page(app, "", "Train")
    app.get_by_role("tab", name="Training & precision").click()          # the trials: 3 steps of tiny:bert
    set_number(app, "max steps", 3)
    expand(app, "Search: an Optuna study")
    set_number(app, "trials", 2)
    choose(app, "pruner", "none")
    set_text(app, "study name", study)
    app.get_by_role("button", name="Start the study").click()
    app.get_by_text(f"Study '{study}' started").first.wait_for(timeout=60_000)

    def study_done():  # the state the study view reads: 2 trial runs ended, the driver gone
        with RunStore(home) as store:
            trials = store.list_runs(group=study)
        ended = len(trials) == 2 and all(r.status in ("finished", "failed", "stopped", "pruned") for r in trials)
        return ended and search.study_driver(study, home=home) is None and trials
    trials = wait_for(study_done, 2 * LONG, "the study's 2 trials to end and its driver to stop")
    assert all(r.status == "finished" for r in trials), [(r.id, r.status, r.error) for r in trials]

    open_page(app, "compare", "Compare")
    choose(app, "Group", study)                                           # its trials are the group's runs
    summary = app.get_by_text(re.compile(r"2 finished, 0 pruned, 0 failed")).first
    summary.wait_for(timeout=60_000)
    app.get_by_role("tab", name="Trials' curves").scroll_into_view_if_needed()   # the charts below it, on screen
    curves = wait_for(lambda: (p := plot_titled(app, "The trials'")) and len([t for t in p["traces"] if t["n"]]) == 2
                      and p, 60, "both trials' curves in the study view")
    assert sorted(t["name"].split(" (")[0] for t in curves["traces"]) == ["trial 0", "trial 1"]
    assert any("(best)" in t["name"] for t in curves["traces"])
    assert selected(app, "Study") == study
    shot(app, "e2e-51-compare-study")
    assert not app.console_errors


# ---- b. After training: WiSE-FT -----------------------------------------------------------------
def test_wise_ft_queued_from_the_runs_page_finishes_and_draws_its_line(app, app_server, shot):
    home = app_server.home
    rid = train_run(home, "wise base", steps=4)
    open_page(app, "runs", "Runs")
    assert rid in selected(app, "Run")                                    # the only run: selected
    expand(app, "After training")
    set_number(app, "WiSE-FT points", 3)
    app.get_by_role("button", name="Queue WiSE-FT").click()
    queued = app.get_by_text(re.compile(r"Queued as run r-\w+"))
    queued.first.wait_for(timeout=60_000)
    job = re.search(r"Queued as run (r-\w+)", queued.first.inner_text()).group(1)
    assert wait_for(lambda: (s := run_status(home, job)) not in ("queued", "running") and s, LONG,
                    "the WiSE-FT job to end") == "finished"

    app.reload()                                      # the Runs page lists the store as it is now
    app.locator("h1", has_text="Runs").first.wait_for(timeout=LONG * 1000)
    choose(app, "Run", re.compile(job))                                   # the job, as a user picks it
    # (its source run was finished too: the job's own metric tells the page was drawn for the job)
    wait_for(lambda: metric(app, "points evaluated") == "3" and metric(app, "status").endswith("finished"), 60,
             "the job shown finished, with its 3 points")
    assert not metric(app, "step")                                       # not "step 100 / 4": a is its axis
    line = wait_for(lambda: plot_titled(app, "eval/accuracy along the job"), 60, "the job's results chart")
    (trace,) = line["traces"]
    assert trace["x"] == [0.0, 0.5, 1.0]                                 # a = 0, 0.5, 1: start, middle, fine-tuned
    assert all(0.0 <= y <= 1.0 for y in trace["y"])
    app.get_by_role("heading", name="Results").first.wait_for()
    shot(app, "e2e-53-runs-wise-ft-results")
    assert not app.console_errors


# ---- c. Token attributions ----------------------------------------------------------------------
def test_attributions_of_a_finished_run_colour_its_tokens(app, app_server, shot):
    train_run(app_server.home, "explain me", steps=4)
    open_page(app, "runs", "Runs")
    expand(app, "Why this prediction?")
    set_number(app, "IG steps", 8)                                        # the fewest: quick, a looser delta
    app.get_by_role("button", name="Explain").click()
    spans = app.locator('[data-testid="stHtml"] span[title]')
    # the completeness check under a class's tokens: drawn after them
    app.get_by_text(re.compile(r"sum of attributions [+-]\d")).first.wait_for(timeout=LONG * 1000)
    n = wait_for(lambda: spans.count(), 60, "the example's tokens coloured by their attribution")
    titles = spans.evaluate_all("spans => spans.map(s => s.title)")
    assert len(titles) >= n
    assert all(re.fullmatch(r".+: [+-]\d+\.\d{4}", t) for t in titles), titles[:5]
    assert app.get_by_text(re.compile(r"toward .+ \(predicted")).count() >= 1
    probs = wait_for(lambda: next((t for t in tables(app) if t and "probability" in t[0]), None), 60,
                     "the table of predicted probabilities")                  # one row per BBC topic
    assert sorted(r["class"] for r in probs) == ["business", "entertainment", "politics", "sports", "tech"], probs
    assert sum(float(r["probability"]) for r in probs) == pytest.approx(1, abs=0.03)   # shown to 2 decimals
    spans.first.scroll_into_view_if_needed()
    shot(app, "e2e-54-runs-attributions")
    assert not app.console_errors


# ---- d. Resume -------------------------------------------------------------------------------------
def test_resume_clicked_on_a_stopped_run_continues_it_to_the_end(app, app_server, shot):
    from hft_core.store import RunStore

    home = app_server.home
    rid = train_run(home, "stopped early", steps=8, stop_after=3)
    open_page(app, "runs", "Runs")
    wait_for(lambda: metric(app, "status").endswith("stopped") and metric(app, "step") == "3 / 8", 60,
             "the run shown stopped at step 3 of 8")
    app.get_by_role("button", name="Resume").click()
    app.get_by_text(f"Resumed {rid}: it is queued").first.wait_for(timeout=60_000)
    # the page as drawn right after the click: queued or running (finished only if the worker beat a slow page)
    shown = wait_for(lambda: (v := metric(app, "status")) and not v.endswith("stopped") and v, 60,
                     "the page to show the run again after Resume")
    assert shown.split()[-1] in ("queued", "running", "finished"), shown
    assert wait_for(lambda: (s := run_status(home, rid)) not in ("queued", "running") and s, LONG,
                    "the resumed run to end") == "finished"

    app.reload()                                      # the Runs page draws the store as it is now
    wait_for(lambda: metric(app, "status").endswith("finished") and metric(app, "step") == "8 / 8", 60,
             "the page to show the run finished at step 8")
    with RunStore(home) as store:
        steps = store.metrics(rid, names=["loss"])["step"].tolist()
        log = [m for _, _, m in store.events(rid)]
    assert sorted(steps) == list(range(1, 9)), steps  # one curve: steps 1-3, then 4-8 after the resume
    # queued again, claimed by a worker of the app (the first claim was this process's), trained on from step 3
    assert log.index("resuming from the checkpoint at step 3") < log.index("resumed from step 3"), log
    assert sum(m.startswith("claimed by worker") for m in log) == 2, log
    assert any(m.startswith("finished at step 8") for m in log), log
    shot(app, "e2e-56-runs-resumed-finished")
    assert not app.console_errors


# ---- e. Delete ---------------------------------------------------------------------------------
def test_delete_a_run_from_the_page_removes_it_from_the_list_and_the_store(app, app_server, shot):
    from hft_core.store import RunStore, UnknownRun

    home = app_server.home
    with RunStore(home) as store:
        keep = stored_run(store, "keep me", {1: {"loss": 1.6}, 2: {"loss": 1.5}})
        gone = stored_run(store, "delete me", {1: {"loss": 1.6}, 2: {"loss": 1.4}})
        folder = store.run_dir(gone)
    (folder / "checkpoint").mkdir(parents=True)      # what a trained run leaves: its checkpoint folder
    (folder / "checkpoint" / "model.safetensors").write_bytes(b"weights")
    open_page(app, "runs", "Runs")
    assert gone in selected(app, "Run")                                   # the newest run: selected
    app.get_by_role("button", name="Delete…").click()
    app.get_by_text(re.compile(r"This cannot be undone")).first.wait_for(timeout=30_000)
    shot(app, "e2e-57-runs-delete-confirm")
    app.get_by_role("button", name="Yes, delete it").click()
    app.get_by_text(f"Deleted {gone}.").first.wait_for(timeout=60_000)
    # the page drawn again (a rerun replaces the old elements one by one): the table, then the picker
    wait_for(lambda: (t := tables(app)) and [row["id"] for row in t[0]] == [keep], 60,
             "the table of runs to list only the run kept")
    wait_for(lambda: keep in selected(app, "Run"), 60, "the run kept to be selected")
    listed = wait_for(lambda: (o := options(app, "Run")) and not any(gone in x for x in o) and o, 60,
                      "the Run picker without the deleted run")
    assert len(listed) == 1 and keep in listed[0], listed
    with RunStore(home) as store:
        assert [r.id for r in store.list_runs()] == [keep]
        with pytest.raises(UnknownRun):
            store.get_run(gone)
    assert not folder.exists()
    assert not app.console_errors


# ---- f. Export ---------------------------------------------------------------------------------
def test_export_downloads_a_zip_with_the_runs_metrics_and_config(app, app_server, tmp_path):
    from hft_core.store import RunStore

    losses = {1: 1.61, 2: 1.52, 3: 1.37, 4: 1.20}
    with RunStore(app_server.home) as store:
        rid = stored_run(store, "export me", {s: {"loss": v, **({"eval/accuracy": 0.25} if s == 4 else {})}
                                              for s, v in losses.items()}, lr=3e-4, seed=7)
    open_page(app, "runs", "Runs")
    with app.expect_download(timeout=60_000) as dl:
        app.get_by_role("button", name="Export (CSV zip)").click()
    assert dl.value.suggested_filename == f"{rid}.zip"
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted(f"{rid}/{f}" for f in ("metrics.csv", "events.csv", "config.yaml"))
        rows = list(csv.DictReader(io.StringIO(z.read(f"{rid}/metrics.csv").decode())))
        config = yaml.safe_load(z.read(f"{rid}/config.yaml"))
    assert {int(r["step"]): float(r["loss"]) for r in rows} == losses
    assert float(rows[-1]["eval/accuracy"]) == 0.25
    assert (config["model"], config["max_steps"], config["lr"], config["seed"]) == ("tiny:bert", 4, 3e-4, 7)
    assert not app.console_errors


# ---- g. Compare: seeds, baseline, deltas -------------------------------------------------------
def test_compare_draws_seed_bands_and_deltas_against_a_baseline(app, app_server, shot):
    from hft_core.store import RunStore

    group = "e2e-seeds"
    # two configs (lr 1e-3 and 3e-4), three seeds each; eval accuracy at steps 10..40, known numbers
    acc = {(lr, seed): [round(0.30 + 0.05 * k + (0.10 if lr == 1e-3 else 0.0) + 0.01 * seed, 4) for k in range(4)]
           for lr in (1e-3, 3e-4) for seed in (0, 1, 2)}
    ids = {}
    with RunStore(app_server.home) as store:
        for (lr, seed), values in acc.items():
            ids[lr, seed] = stored_run(store, f"lr {lr:g}", {10 * (k + 1): {"loss": 1.6 - 0.1 * k, "eval/accuracy": v}
                                                             for k, v in enumerate(values)},
                                       group=group, lr=lr, seed=seed, max_steps=40)
    open_page(app, "compare", "Compare")
    choose(app, "Group", group)
    choose(app, "Metric", re.compile("accuracy", re.I))
    slider = widget(app, "stSlider", "smoothing").locator("input[type=range]")
    slider.press("Home")                             # smoothing 0: the raw values, comparable with the numbers above
    wait_idle(app)
    assert float(slider.input_value()) == 0

    def main_chart():
        return next((p for p in plots(app) if "accuracy" in p["ytitle"] and not p["ytitle"].startswith("Δ")), None)
    wait_for(lambda: (p := main_chart()) and sum(t["n"] > 0 for t in p["traces"]) == 6, 60, "the six runs' curves")
    widget(app, "stCheckbox", "Seeds as mean + band (2 groups)").click()     # a toggle
    main = wait_for(lambda: (p := main_chart()) and [t for t in p["traces"] if t["fill"] == "toself"] and p, 60,
                    "the seed bands")
    bands = [t for t in main["traces"] if t["fill"] == "toself"]
    means = [t for t in main["traces"] if "seeds: mean" in t["name"] and t["fill"] != "toself"]
    assert len(bands) == 2 and len(means) == 2, [t["name"] for t in main["traces"]]
    pct = 100                                        # accuracy is drawn in %
    for mean, band in zip(means, bands):             # mean over the 3 seeds at each step, inside its min-max band
        lr = 1e-3 if mean["name"].startswith("lr 0.001") else 3e-4
        expected = [pct * sum(acc[lr, s][k] for s in range(3)) / 3 for k in range(4)]
        assert mean["x"] == [10, 20, 30, 40] and mean["y"] == pytest.approx(expected), mean
        hi, lo = [pct * acc[lr, 2][k] for k in range(4)], [pct * acc[lr, 0][k] for k in range(4)]
        assert band["y"] == pytest.approx(hi + lo[::-1]), band

    base = ids[3e-4, 0]
    choose(app, "Paired deltas against", re.compile(base))
    charts = app.locator('iframe[title*="live_chart"]').first

    def delta_chart():  # below the main chart: scrolled to, as a user does (the iframe draws what is on screen)
        charts.evaluate("f => f.scrollIntoView({block: 'end'})")
        return next((p for p in plots(app) if p["ytitle"].startswith("Δ")), None)
    delta = wait_for(delta_chart, 60, "the paired-delta chart")
    by_run = {t["name"]: t for t in delta["traces"] if t["n"]}
    other = next(t for name, t in by_run.items() if ids[1e-3, 0] in name)   # lr 1e-3, seed 0 against its pair
    assert other["y"] == pytest.approx([pct * 0.10] * 4), other   # +10 points at every step
    caption = app.get_by_text(re.compile(r"^Latest paired delta:")).first
    caption.wait_for(timeout=60_000)
    assert "at step 40" in caption.inner_text(), caption.inner_text()
    shot(app, "e2e-61-compare-deltas")

    app.get_by_role("tab", name=re.compile("Over seeds")).click()
    app.get_by_text(re.compile(r"runs whose configs differ only by seed are one variant")).first.wait_for(
        timeout=30_000)

    def seed_tables():
        shown = tables(app)
        means = next((t for t in shown if t and "variant" in t[0]), None)
        diffs = next((t for t in shown if t and "paired difference" in t[0]), None)
        return means and diffs and (means, diffs)
    means, diffs = wait_for(seed_tables, 30, "the tables of means and paired differences over seeds")
    half = sps.t.ppf(0.975, 2) * 1.0 / 3 ** 0.5     # 95% t-interval over 3 seeds whose finals are 1 point apart
    by_variant = {row["variant"]: row for row in means}
    for label, mean in (("lr 0.001", 56.0), ("lr 0.0003", 46.0)):
        row = by_variant[label]
        assert row["mean [95% interval]"] == f"{mean:.1f}% [{mean - half:.1f}, {mean + half:.1f}]", row
        assert row["seeds"] == "3" and row["final value on each seed"] == \
            f"0: {mean - 1:.1f}, 1: {mean:.1f}, 2: {mean + 1:.1f}", row
    (diff,) = diffs
    assert diff == {"paired difference": "lr 0.001 − lr 0.0003", "mean [95% interval]": "+10.0 points [+10.0, +10.0]",
                    "higher on": "3/3 seeds"}, diff
    shot(app, "e2e-62-compare-over-seeds")
    assert not app.console_errors
