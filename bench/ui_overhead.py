"""What does the browser UI cost a training run, and how fast does a first point appear?

1. start -> first point: the app (``streamlit run app.py``) in headless Chromium; on the
   Train page (Quick demo: tiny:bert) click Start, and time until the Live page's loss
   chart shows a point. Repeated; the median is reported, with where the time went
   (run created, first metric written by the trainer, drawn in the browser).
2. UI vs CLI throughput: the same config trained (a) in the app, started from the
   Train page while Chromium keeps the Live page open (new points every second), and
   (b) with ``python -m hft_core train`` alone (no app page open), interleaved
   a, b, b, a, a, b ... Each run's throughput is its median samples/s over the steps
   after the third (warm-up excluded; the trainer already leaves eval time out); the
   figure is the median over pairs of UI / CLI, each pair run back to back. Also the
   CPU-seconds per wall-second of Chromium's renderer processes while the UI run trained
   (the browser's share; much less sensitive to other load on the machine than a ratio).

Prints a table, then ``RESULT start_to_first_point_s=<y>`` and, last,
``RESULT ui_vs_cli=<x>`` (1.0 = no cost; target >= 0.95).

    python bench/ui_overhead.py                                   # MiniLM-L6, batch 16, 128 tokens, 20 steps
    python bench/ui_overhead.py --model tiny:bert --steps 60 --repeats 3

Numbers on a shared 2-core machine are noisy: the interleaving keeps slow phases of
the machine from landing on one side only. Never `playwright install`: Debian's
Chromium at /usr/bin/chromium is used.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402  (bench/ is on sys.path: run as python bench/X.py)

from hft_core.config import RunConfig  # noqa: E402
from hft_core.store import RunStore  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMELINE_JS = """() => {
  // the chart iframe's own record (ui/live_chart.py): created, plotly.js loaded, first args, draws
  for (const f of document.querySelectorAll('iframe')) {
    try { if (f.contentWindow.hftTimeline) return f.contentWindow.hftTimeline; } catch (e) {}
  }
  return null;
}"""
RUN_POINTS_JS = """(name) => {
  // points of the trace called `name` in the first chart on the page (Live: the training loss)
  for (const f of document.querySelectorAll('iframe')) {
    try {
      const p = f.contentDocument && f.contentDocument.querySelector('.js-plotly-plot');
      if (p && p._fullData) return p._fullData.filter(t => t.name === name)
                                              .reduce((n, t) => n + ((t.x || []).length), 0);
    } catch (e) {}
  }
  return 0;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                             str(port), "--server.headless", "true"], cwd=ROOT, env=env,
                            stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the app did not start; see {home / 'server.log'}")


def open_train(page, url: str) -> None:
    page.goto(url + "/")
    page.locator("h1", has_text="Train").wait_for(timeout=120_000)
    page.get_by_role("button", name="Start", exact=True).wait_for()


def wait_done(store: RunStore, run_id: str, timeout: float = 1800) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = store.get_run(run_id).status
        if status not in ("queued", "running"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not end within {timeout:.0f} s")


def newest_run(store: RunStore, after: float, name: str | None = None, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for r in store.list_runs(limit=5):
            if r.created >= after and (name is None or r.name == name):
                return r.id
        time.sleep(0.05)
    raise TimeoutError("no new run appeared in the store")


def run_throughput(store: RunStore, run_id: str, skip: int = 3) -> float:
    df = store.metrics(run_id, names=["samples_per_s"])
    values = df.sort_values("step")["value"].tolist()
    values = values[skip:] or values
    return statistics.median(values)


# ---- 1. start -> first point -------------------------------------------------------------------

def start_to_first_point(browser, url: str, store: RunStore, repeats: int) -> list[dict]:
    out = []
    for i in range(repeats):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        open_train(page, url)
        name = f"first-point-{i + 1}-{int(time.time())}"  # a unique name: its own trace on the chart
        box = page.locator('[data-testid="stTextInput"]').filter(has_text="Run name").locator("input")
        box.fill(name)
        box.press("Tab")
        page.wait_for_timeout(1500)
        t0 = time.time()
        page.get_by_role("button", name="Start", exact=True).click()
        page.locator("h1", has_text="Live").wait_for(timeout=60_000)
        t_live = time.time()
        while page.evaluate(RUN_POINTS_JS, name) < 1:
            if time.time() - t0 > 300:
                raise TimeoutError("no point on the chart within 300 s")
            page.wait_for_timeout(50)
        t_point = time.time()
        tl = page.evaluate(TIMELINE_JS) or {}
        run_id = newest_run(store, t0 - 1, name=name)
        rec = store.get_run(run_id)
        first = store.metrics(run_id, names=["loss"])
        t_metric = float(first["wall_time"].min()) if not first.empty else float("nan")
        out.append({"total": t_point - t0, "created": rec.created - t0, "live_page": t_live - t0,
                    "claimed": (rec.started or float("nan")) - t0, "first_metric": t_metric - t0,
                    "drawn_after_metric": t_point - t_metric,
                    "frame_created": (tl.get("created") or float("nan")) / 1000 - t0,
                    "plotly_loaded": (tl.get("plotly") or float("nan")) / 1000 - t0,
                    "first_loss_draw": min((d["t"] / 1000 - t0 for d in tl.get("draws", [])
                                            if d["id"] == "loss" and d["t"] / 1000 >= t_metric), default=float("nan")),
                    "draw_ms_before": sum(d["ms"] for d in tl.get("draws", []) if d["t"] / 1000 <= t_point)})
        page.close()
        stop_page = browser.new_page(viewport={"width": 1280, "height": 800})
        stop_page.goto(url + "/")
        stop_page.locator("h1").first.wait_for(timeout=60_000)
        stop_page.goto(url + "/live")
        row = stop_page.locator('[class*="st-key-run-"]').filter(has_text=run_id).first
        try:
            row.get_by_role("button", name="Stop").click(timeout=15_000)
        except Exception:
            pass  # finished already
        wait_done(store, run_id)
        stop_page.close()
        print(f"  start -> first point #{i + 1}: {out[-1]['total']:.2f} s "
              f"(run stored {out[-1]['created']:.2f} s, Live page {out[-1]['live_page']:.2f} s, "
              f"claimed by a worker {out[-1]['claimed']:.2f} s, "
              f"first metric written {out[-1]['first_metric']:.2f} s, drawn {out[-1]['drawn_after_metric']:.2f} s "
              f"after it; chart frame created {out[-1]['frame_created']:.2f} s, plotly.js loaded "
              f"{out[-1]['plotly_loaded']:.2f} s, loss chart drawn after the metric {out[-1]['first_loss_draw']:.2f} s, "
              f"{out[-1]['draw_ms_before']:.0f} ms of plotly draws by then)", flush=True)
    return out


# ---- 2. UI vs CLI ----------------------------------------------------------------------------------

def chromium_cpu() -> tuple[float, float]:
    """(CPU-seconds of Chromium's renderer processes, of all its processes) so far: the browser's work."""
    import psutil

    renderer = everything = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" not in p.name().lower():
                continue
            t = p.cpu_times()
            everything += t.user + t.system
            if "--type=renderer" in p.cmdline():
                renderer += t.user + t.system
        except psutil.Error:
            pass
    return renderer, everything


def server_cpu(pid: int) -> float:
    """CPU-seconds of the app's server process itself so far (not its workers: they are other processes)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def ui_run(browser, url: str, store: RunStore, cfg_path: Path, name: str,
           server_pid: int) -> tuple[float, float, float, float]:
    """Start the config from the Train page (loaded as YAML), keep Live open until it ends.
    Returns (throughput, wall seconds, and the CPU-seconds per wall-second while it trained of Chromium's
    renderers and of the app's server)."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    open_train(page, url)
    page.get_by_role("tab", name="Config & command").click()
    page.locator('[data-testid="stFileUploader"]').filter(has_text="Load a config YAML").locator(
        "input[type=file]").set_input_files(str(cfg_path))
    page.wait_for_timeout(1500)
    t0 = time.time()
    page.get_by_role("button", name="Start", exact=True).click()
    page.locator("h1", has_text="Live").wait_for(timeout=60_000)
    run_id = newest_run(store, t0 - 1, name=name)
    c0, s0, w0 = chromium_cpu()[0], server_cpu(server_pid), time.time()
    status = wait_done(store, run_id)
    wall = time.time() - t0
    renderer = (chromium_cpu()[0] - c0) / max(1e-9, time.time() - w0)
    server = (server_cpu(server_pid) - s0) / max(1e-9, time.time() - w0)
    page.close()
    if status != "finished":
        raise RuntimeError(f"UI run {run_id} ended {status}: {store.get_run(run_id).error}")
    return run_throughput(store, run_id), wall, renderer, server


def cli_run(home: Path, cfg_path: Path, name: str) -> tuple[float, float]:
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1"}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "hft_core", "train", "--config", str(cfg_path), "--quiet"], cwd=ROOT,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    with RunStore(home) as store:
        run_id = next(r.id for r in store.list_runs(limit=5) if r.name == name)
        return run_throughput(store, run_id), wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled:minilm-l6")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="UI/CLI pairs (0: only the start -> first point part)")
    p.add_argument("--first-point-repeats", type=int, default=3)
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}; install Debian's chromium (never `playwright install`)")
        return 2
    from playwright.sync_api import sync_playwright

    work = scratch_dir("hft-ui-bench-")
    app_home, cli_home = work / "app", work / "cli"
    app_home.mkdir()
    cli_home.mkdir()
    print(f"work folder {work}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", flush=True)
    proc, url = start_app(app_home)
    store = RunStore(app_home)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            warm = browser.new_page()
            open_train(warm, url)  # the first page view imports the pages; not part of any timing
            warm.close()

            print("1. start -> first point (Quick demo, tiny:bert)", flush=True)
            firsts = start_to_first_point(browser, url, store, args.first_point_repeats)

            print(f"2. UI (Live page open) vs CLI: {args.model}, batch {args.batch_size}, {args.max_length} tokens, "
                  f"{args.steps} steps, {args.repeats} pairs", flush=True)
            ui, cli, renderer, server = [], [], [], []
            for i in range(args.repeats):
                for mode in (("ui", "cli") if i % 2 == 0 else ("cli", "ui")):
                    name = f"bench-{mode}-{i}"
                    cfg = RunConfig(model=args.model, data="bundled:bbc-news", batch_size=args.batch_size,
                                    max_length=args.max_length, max_steps=args.steps, eval_every=0, n_eval=32,
                                    lr=5e-5, seed=0, name=name)
                    cfg_path = work / f"{name}.yaml"
                    cfg_path.write_text(cfg.to_yaml())
                    extra = ""
                    if mode == "ui":
                        tput, wall, cpu, srv = ui_run(browser, url, store, cfg_path, name, proc.pid)
                        ui.append(tput)
                        renderer.append(cpu)
                        server.append(srv)
                        extra = f", Chromium renderer {cpu:.3f} CPU-s/s, app server {srv:.3f} CPU-s/s"
                    else:
                        tput, wall = cli_run(cli_home, cfg_path, name)
                        cli.append(tput)
                    print(f"  {mode:3} pair {i + 1}: {tput:7.2f} samples/s (median over steps > 3), "
                          f"{wall:6.1f} s wall, load {os.getloadavg()[0]:.1f}{extra}", flush=True)
            browser.close()
    finally:
        store.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    first_total = statistics.median(f["total"] for f in firsts) if firsts else None
    # each pair ran back to back: the ratio within a pair cancels the machine's slow drifts
    pair_ratios = [u / c for u, c in zip(ui, cli)]
    print()
    print(f"{'measure':44} {'value':>10}")
    if firsts:  # --first-point-repeats 0: not measured
        print(f"{'start -> first point on the chart (median)':44} {first_total:9.2f}s")
        for k, label in (("created", "  run stored"), ("live_page", "  Live page shown"),
                         ("claimed", "  claimed by a worker"),
                         ("first_metric", "  first metric written by the trainer"),
                         ("drawn_after_metric", "  drawn in the browser after that"),
                         ("frame_created", "  chart frame created"), ("plotly_loaded", "  plotly.js loaded in it"),
                         ("first_loss_draw", "  loss chart drawn (first after the metric)")):
            print(f"{label:44} {statistics.median(f[k] for f in firsts):9.2f}s")
    if pair_ratios:
        print(f"{'UI throughput (median of runs)':44} {statistics.median(ui):10.2f} samples/s")
        print(f"{'CLI throughput (median of runs)':44} {statistics.median(cli):10.2f} samples/s")
        print(f"{'UI / CLI per pair':44} {'  '.join(f'{r:.3f}' for r in pair_ratios)}")
        print(f"{'Chromium renderer while the UI run trained':44} {statistics.median(renderer):10.3f} CPU-s per s "
              f"(of {os.cpu_count()} cores)")
        print(f"{'app server process while the UI run trained':44} {statistics.median(server):10.3f} CPU-s per s")
    print(f"{'worker niceness (HFT_WORKER_NICE)':44} {os.environ.get('HFT_WORKER_NICE', '0 (default)'):>10}")
    if firsts:
        print(f"RESULT start_to_first_point_s={first_total:.2f}")
    if pair_ratios:
        print(f"RESULT ui_vs_cli={statistics.median(pair_ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
