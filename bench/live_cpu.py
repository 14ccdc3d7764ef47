"""What does watching cost? CPU-seconds per wall-second of Chromium and of the app server with Live open.

A run trains in a separate process (``python -m hft_core train``, tiny:bert), so the app
server's CPU is all UI work (the Live fragment's store reads and chart updates), and
Chromium's is all drawing. For ``--seconds`` the Live page stays open (visible, then,
with ``--hidden``, as a tab in the background: the page is told so through the Page
Visibility API, since headless Chromium keeps every tab visible) and psutil samples the
CPU times of:

    renderer   Chromium's renderer processes (the page and its chart iframe)
    browser    every Chromium process (renderer + GPU/compositor + browser)
    server     the Streamlit process (no training in it)

CPU-seconds per wall-second are much less sensitive to other load on a shared machine
than a throughput ratio (a busy CPU slows a process, it does not make it use more CPU).
With ``--profile`` it also prints the Chrome DevTools Protocol's Performance metrics of
the page (script, layout and style time per second).

    python bench/live_cpu.py --seconds 30
    python bench/live_cpu.py --seconds 30 --runs 4 --hidden
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import scratch_dir  # noqa: E402  (bench/ is on sys.path: run as python bench/X.py)

from ui_overhead import CHROMIUM, CHROMIUM_ARGS, start_app  # noqa: E402

from hft_core.store import RunStore  # noqa: E402


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def chromium_processes() -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(renderers, all) Chromium processes started by this script (through Playwright's driver)."""
    procs = [c for c in psutil.Process().children(recursive=True) if "chrom" in c.name().lower()]
    renderers = [c for c in procs if "--type=renderer" in c.cmdline()]
    return renderers, procs


class Meter:
    """CPU-seconds of some processes between start() and read()."""

    def __init__(self, procs: list[psutil.Process]) -> None:
        self.procs = procs
        self.t0 = time.monotonic()
        self.c0 = cpu_seconds(procs)

    def read(self) -> float:
        return (cpu_seconds(self.procs) - self.c0) / max(1e-9, time.monotonic() - self.t0)


def print_js_profile(cdp, seconds: float, top: int = 12) -> None:
    """Sample the page's JavaScript for ``seconds`` (CDP Profiler); print self time by script and function."""
    from collections import Counter

    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
    cdp.send("Profiler.start")
    time.sleep(seconds)
    prof = cdp.send("Profiler.stop")["profile"]
    nodes = {n["id"]: n for n in prof["nodes"]}
    dt = Counter()
    for nid, delta in zip(prof["samples"], prof["timeDeltas"]):
        dt[nid] += delta
    by_url, by_fn = Counter(), Counter()
    for nid, us in dt.items():
        f = nodes[nid]["callFrame"]
        url = f["url"].rsplit("/", 1)[-1] or f["functionName"] or "(native)"
        by_url[url] += us
        by_fn[f"{f['functionName'] or '(anon)'} @ {url}:{f['lineNumber']}"] += us
    parent = {c: n["id"] for n in prof["nodes"] for c in n.get("children", [])}
    inclusive = Counter()
    for nid, us in dt.items():
        seen, x = set(), nid
        while x is not None:
            f = nodes[x]["callFrame"]
            key = f"{f['functionName'] or '(anon)'} @ {f['url'].rsplit('/', 1)[-1]}:{f['lineNumber']}"
            if key not in seen:
                inclusive[key] += us
                seen.add(key)
            x = parent.get(x)
    busy = sum(v for k, v in by_url.items() if k not in ("(idle)", "(program)"))
    print(f"  JS profile, {seconds:.0f} s: {busy / 1e6 / seconds:.3f} s per s outside idle/program")
    for k, v in by_url.most_common(top):
        print(f"    {v / 1e6 / seconds:7.4f} s/s  {k}")
    for k, v in by_fn.most_common(top):
        print(f"    {v / 1e6 / seconds:7.4f} s/s  {k}")
    print("  inclusive:")
    for k, v in inclusive.most_common(3 * top):
        print(f"    {v / 1e6 / seconds:7.4f} s/s  {k}")


def start_cli_run(home: Path, steps: int, name: str) -> subprocess.Popen:
    env = {**os.environ, "HFT_HOME": str(home), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hft_core", "train", "--set", "model=tiny:bert", "--set",
                             f"max_steps={steps}", "--set", "eval_every=50", "--set", f"name={name}", "--quiet"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--runs", type=int, default=1, help="runs shown (1 training + ended ones)")
    p.add_argument("--hidden", action="store_true", help="also measure with Live in a background tab")
    p.add_argument("--profile", action="store_true", help="CDP Performance metrics of the page")
    p.add_argument("--idle", action="store_true", help="no run training: Live waits for one")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    home = scratch_dir("hft-live-cpu-")
    proc, url = start_app(home)
    server = psutil.Process(proc.pid)
    store = RunStore(home)
    trainers: list[subprocess.Popen] = []
    try:
        for i in range(args.runs - 1):  # ended runs: they stay on Live (as "recently ended")
            t = start_cli_run(home, 30, f"ended-{i}")
            t.wait()
        if not args.idle:
            trainers.append(start_cli_run(home, 100000, "watched"))
        deadline = time.time() + 120
        while not args.idle and time.time() < deadline and not any(r.name == "watched" and r.status == "running"
                                                                   for r in store.list_runs(limit=3)):
            time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url + "/live")
            page.locator("h1", has_text="Live").wait_for(timeout=120_000)
            page.wait_for_timeout(8000)  # plotly.js parsed, first draw done
            renderers, everything = chromium_processes()
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")

            def perf() -> dict:
                return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

            m0 = perf()
            meters = Meter(renderers), Meter(everything), Meter([server])
            page.wait_for_timeout(args.seconds * 1000)
            rates = [m.read() for m in meters]
            m1 = perf()
            print(f"Live visible, {'idle, ' if args.idle else ''}{args.runs} run(s), {args.seconds:.0f} s: renderer {rates[0]:.3f}, "
                  f"all Chromium {rates[1]:.3f}, app server {rates[2]:.3f} CPU-s per s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            if args.profile:
                for k in ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration"):
                    print(f"  {k:20} {(m1[k] - m0[k]) / args.seconds:.3f} s per s")
                print(f"  {'LayoutCount':20} {(m1['LayoutCount'] - m0['LayoutCount']) / args.seconds:.2f} per s")
            if args.profile:
                print_js_profile(cdp, args.seconds)
            if args.hidden:
                # Headless Chromium keeps every tab "visible"; tell the page (and its chart iframe) it is
                # hidden, as a tab in the background is: the Page Visibility API then reads "hidden".
                hide = """(hidden) => {
                  for (const d of [document, ...[...document.querySelectorAll('iframe')].map(f => f.contentDocument)]) {
                    Object.defineProperty(d, 'visibilityState', {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
                    Object.defineProperty(d, 'hidden', {configurable: true, get: () => hidden});
                    d.dispatchEvent(new Event('visibilitychange'));
                  }
                }"""
                page.evaluate(hide, True)
                page.wait_for_timeout(2000)
                meters = Meter(renderers), Meter(everything), Meter([server])
                page.wait_for_timeout(args.seconds * 1000)
                rates = [m.read() for m in meters]
                print(f"Live hidden: renderer {rates[0]:.3f}, all Chromium {rates[1]:.3f}, "
                      f"app server {rates[2]:.3f} CPU-s per s", flush=True)
                page.evaluate(hide, False)
            browser.close()
    finally:
        for t in trainers:
            t.terminate()
            t.wait()
        store.close()
        proc.terminate()
        proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
