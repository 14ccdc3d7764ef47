"""hft report: one self-contained HTML file whose numbers equal the store's (runs written straight into a
temp store, no training). The browser check (opens offline, every chart has its traces) is left to e2e."""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hft_core import comparison as C  # noqa: E402
from hft_core import presets as P  # noqa: E402
from hft_core import report as R  # noqa: E402
from hft_core.cli import main  # noqa: E402
from hft_core.store import RunStore  # noqa: E402

PRESET = P.load_preset("finetune_vs_scratch")
A1, A05, A0 = (v.label for v in PRESET.variants)
GROUP = "finetune_vs_scratch-1126-101500"
STEPS = 1000
ACC = {A1: (0.925, 0.90, 0.95), A05: (0.74, 0.72, 0.77), A0: (0.20, 0.18, 0.21)}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    s = RunStore(tmp_path)
    for label, accs in ACC.items():
        variant = next(v for v in PRESET.variants if v.label == label)
        for seed, acc in enumerate(accs):
            rid = s.create_run(P.variant_config(PRESET, variant, seed, group=GROUP), status="running", group=GROUP,
                               name=label)
            for step in range(1, STEPS + 1):
                loss = 2.0 / math.sqrt(step) + 0.01 * seed
                s.log_metrics(rid, step, {"loss": loss, "loss/task": loss * 0.9, "samples_per_s": 50.0 + seed})
                if step % 100 == 0:
                    s.log_metrics(rid, step, {"eval/accuracy": acc * step / STEPS})
            s.set_status(rid, "finished")
    s.flush()
    yield s
    s.close()


def test_report_numbers_equal_the_stores(store, tmp_path, capsys):
    out = tmp_path / "out" / "report.html"
    assert main(["report", GROUP, "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    data = R.read_data(text)
    runs = store.list_runs(group=GROUP)
    assert {r["id"] for r in data["runs"]} == {r.id for r in runs}
    for r in data["runs"]:  # every run's final values: exactly the store's
        assert r["final"] == P.summarise_run(store, r["id"])
        assert r["final"]["eval/accuracy"] == store.last_metrics(r["id"])["eval/accuracy"]
    cmp = C.compare_runs(store, [r.id for r in runs], preset=PRESET)
    assert [v["label"] for v in data["variants"]] == [A1, A05, A0]
    for v in data["variants"]:
        assert [v["values"][str(s)] for s in range(3)] == list(ACC[v["label"]])
        est = cmp.estimates[v["label"]]
        assert (v["mean"], v["lo"], v["hi"]) == (est.mean, est.lo, est.hi)
        assert f"<td>{C.format_estimate(est, 'eval/accuracy')}</td>" in text  # the table shows the same numbers
    for d, ref in zip(data["differences"], cmp.differences):
        assert (d["a"], d["b"], d["mean"], d["lo"], d["hi"]) == (ref.a, ref.b, ref.estimate.mean, ref.estimate.lo,
                                                                 ref.estimate.hi)
    assert [c["verdict"] for c in data["checks"]] == ["held with confidence", "held with confidence"]
    assert PRESET.question in text and "held with confidence" in text and "95% t-interval" in text


def test_report_is_one_file_that_needs_no_network(store, tmp_path):
    group, ids = C.runs_of(store, [GROUP])
    text = R.build_report(store, ids, group=group)
    assert not re.findall(r"<script[^>]*\bsrc=", text) and "<link" not in text  # nothing fetched
    assert text.count("plotly.js v") == 1  # plotly.js inlined once, the other charts reuse it
    data = R.read_data(text)
    charted = [c["metric"] for c in data["charts"]]
    assert charted[:2] == ["eval/accuracy", "loss"] and "loss/task" in charted
    assert all(c["traces"] == 2 * 3 for c in data["charts"])  # 3 variants: a band and a mean line each
    assert text.count("Plotly.newPlot(") == len(charted)
    # 1,000 steps thinned to every 3rd (and the last): the file says so, the bands still line up
    assert data["thinned_every"] == 3 and "thinned for a small file: every 3rd step" in text
    env = text[text.index("<h2>Environment</h2>"):]
    for key in ("HFT Lab", "torch", "devices of the runs", "CPU (this machine)", "GPU (this machine)", "written"):
        assert f"<th>{key}</th>" in env
    from plotly.offline import get_plotlyjs

    size, js = len(text.encode("utf-8")), len(get_plotlyjs().encode("utf-8"))
    assert size - js < 250e3, f"{(size - js) / 1e3:.0f} kB besides plotly.js for 9 runs of {STEPS} steps"
    assert size < 5.2e6, f"{size / 1e6:.2f} MB in all (plotly.js {js / 1e6:.2f} MB)"


def test_thin_keeps_common_steps_and_each_last_step():
    import pandas as pd

    rows = [("a", s, "loss", 1.0 / s, 0.0) for s in range(1, 1001)] + \
           [("b", s, "loss", 2.0 / s, 0.0) for s in range(1, 998)]
    df = pd.DataFrame(rows, columns=["run_id", "step", "name", "value", "wall_time"])
    thinned, k = R.thin(df, max_points=100)
    assert k == 10
    a, b = (set(thinned[thinned.run_id == r].step) for r in "ab")
    assert {10, 20, 990} <= a & b and 1000 in a and 997 in b and 995 not in b
    assert len(a) <= 101 and R.thin(df, max_points=5000)[1] == 1


def test_report_bad_input_says_what_to_do(store, tmp_path, capsys):
    assert main(["report", "nope", "-o", str(tmp_path / "x.html")]) == 2
    assert "no group 'nope'" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
