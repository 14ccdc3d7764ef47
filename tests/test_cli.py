"""The CLI verbs end to end on a tiny model: what they print, what they leave in the store, their exit codes.

Most run in-process (``hft_core.cli.main``: no interpreter start-up per call); Ctrl-C and a
closed pipe need a real process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hft_core.cli import main
from hft_core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    rows = [(f"the match ended with a late goal number {i}", "sport") if i % 2 else
            (f"shares fell as the bank cut rates again {i}", "business") for i in range(48)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "toy.csv", index=False)
    return tmp_path


def sets(home: Path, **over) -> list[str]:
    values = {"model": "tiny:bert", "data": str(home / "toy.csv"), "batch_size": 4, "max_length": 32,
              "max_steps": 4, "eval_every": 2, "n_eval": 8, "lr": 1e-3, "device": "cpu", **over}
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def only_run(home: Path):
    with RunStore(home / "home") as store:
        (rec,) = store.list_runs()
        return rec, store.metrics(rec.id)


def test_train_prints_the_result_and_leaves_the_run_in_the_store(home, capsys):
    assert main(["train", *sets(home), "--quiet"]) == 0
    out, err = capsys.readouterr()
    rec, metrics = only_run(home)
    assert f"run {rec.id} finished at step 4" in out and "eval/accuracy = " in out
    assert f"checkpoint: {rec.checkpoint_dir}" in out and Path(rec.checkpoint_dir, "run_config.yaml").is_file()
    assert rec.status == "finished" and sorted(set(metrics[metrics.name == "loss"].step)) == [1, 2, 3, 4]
    assert f"`hft stop {rec.id}`" in err  # says how to stop it from elsewhere


def test_a_model_given_without_lr_takes_its_recommended_lr_and_says_so(home, capsys):
    import yaml

    assert main(["train", "--set", "model=tiny:bert", "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["lr"] == 1e-3 and "lr set to 1e-3" in err and "--set lr=" in err
    assert main(["train", "--set", "model=tiny:bert", "--set", "lr=3e-4", "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["lr"] == 3e-4 and "lr set" not in err  # given by hand: kept, nothing said
    assert main(["train", "--print-config"]) == 0  # no model given: the defaults stand
    assert yaml.safe_load(capsys.readouterr().out)["lr"] == 1e-4


def test_bad_input_is_one_line_and_exit_2(home, capsys):
    for argv, words in ((["train", "--set", "lr=7"], "lr=7"),
                        (["train", "--set", "nonsense=1"], "unknown field 'nonsense'"),
                        (["train", "--set", "model=tiny:nope"], "tiny:nope"),
                        (["train", "--resume", "r-000000"], "no run 'r-000000'"),
                        (["export", "r-000000"], "no run 'r-000000'"),
                        (["delete", "r-000000"], "no run 'r-000000'"),
                        (["preset", "no_such_preset"], "not found"),
                        (["preset", "finetune_vs_scratch", "--seeds", "x"], "--seeds 'x'")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], (argv, err)


def test_stop_then_resume_continues_the_step_axis(home, capsys):
    assert main(["train", *sets(home, max_steps=6, checkpoint_every=0), "--quiet"]) == 0
    rec, _ = only_run(home)
    with RunStore(home / "home") as store:  # as if it had been stopped at step 6 of 10
        store.set_status(rec.id, "stopped")
        store._wcon.execute("UPDATE runs SET config_json = json_set(config_json, '$.max_steps', 10) WHERE id = ?",
                            (rec.id,))
    capsys.readouterr()
    assert main(["train", "--resume", rec.id, "--quiet"]) == 0
    assert f"run {rec.id} finished at step 10" in capsys.readouterr().out
    rec, metrics = only_run(home)
    assert sorted(set(metrics[metrics.name == "loss"].step)) == list(range(1, 11))
    assert main(["train", "--resume", rec.id]) == 2  # finished: nothing to resume
    assert "only stopped, interrupted, failed, pruned runs can be resumed" in capsys.readouterr().err


def test_list_export_delete(home, capsys, tmp_path):
    assert main(["train", *sets(home, name="first run"), "--quiet"]) == 0
    rec, metrics = only_run(home)
    capsys.readouterr()
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["id", "status", "group"] and rec.id in out[1] and "finished" in out[1]
    assert main(["list", "--status", "running"]) == 0 and "no runs" in capsys.readouterr().out

    assert main(["export", rec.id, "--out", str(tmp_path / "x")]) == 0
    files = capsys.readouterr().out.split()
    assert sorted(Path(f).name for f in files) == ["config.yaml", "events.csv", "metrics.csv"]
    wide = pd.read_csv(tmp_path / "x" / "metrics.csv")
    assert list(wide.step) == sorted(set(metrics.step)) and "eval/accuracy" in wide

    assert main(["delete", rec.id]) == 0 and f"deleted {rec.id}" in capsys.readouterr().out
    assert RunStore(home / "home").list_runs() == [] and not Path(rec.checkpoint_dir).exists()


def test_preset_quick_runs_every_variant_as_one_group(home, capsys):
    assert main(["preset", "finetune_vs_scratch", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "open the group 'finetune_vs_scratch-" in out
    # a quick run checks the plumbing: the lesson is not judged on 3 steps of a tiny model
    assert "expected alpha 1 (fine-tune) > alpha 0.5 (half and half) on eval/accuracy: not judged (quick check)" in out
    assert "95% t-interval" in out and "1 seed: no interval" in out
    with RunStore(home / "home") as store:
        runs = store.list_runs()
        assert {r.status for r in runs} == {"finished"} and len({r.group for r in runs}) == 1
        assert len(runs) == 3  # alpha 1, 0.5, 0


def test_the_bag_of_words_baseline_trains_from_the_cli_like_a_model(home, capsys):
    assert main(["train", "--set", "model=baseline:bag-of-words", "--set", f"data={home / 'toy.csv'}",
                 "--set", "n_eval=8", "--set", "max_steps=5"]) == 0
    assert "lr set to" not in capsys.readouterr().err   # no training recipe applies to it: no advice
    rec, df = only_run(home)
    assert rec.status == "finished" and rec.config["model"] == "baseline:bag-of-words"
    acc = df[df["name"] == "eval/accuracy"]
    assert acc["step"].tolist() == [5] and acc["value"].iloc[0] == 1.0   # two topics with disjoint words
    assert main(["train", "--set", "model=baseline:bag-of-words", "--set", "task=causal-lm"]) == 2
    assert "use task classification" in capsys.readouterr().err


def test_preset_at_label_budgets_trains_one_group_that_compare_judges_and_draws(home, capsys):
    from hft_core import comparison, label_budget, presets

    assert main(["preset", "pretrain_then_finetune", "--label-budgets", "25,50", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "open the group 'pretrain_then_finetune_by_labels_25_50-" in out   # the name says the budgets
    assert ("expected tiny BERT after contrastive pretraining · 25 labels > tiny BERT from scratch · 25 labels on "
            "eval/accuracy: not judged (quick check)") in out
    with RunStore(home / "home") as store:
        runs = store.list_runs()
        assert {r.status for r in runs} == {"finished"} and len({r.group for r in runs}) == 1
        assert len(runs) == 2 + 4 * 2   # each pretraining once, the 4 fine-tuning variants at 2 budgets
        assert sorted(r.config["n_train"] for r in runs if r.name.endswith(" labels")) == [25] * 4 + [50] * 4
        group = runs[0].group
        cmp = comparison.compare_runs(store, [r.id for r in runs], preset=presets.preset_named(
            presets.preset_of_group(group)))
        curves = label_budget.budget_curves(cmp.variants)
        assert {c.name for c in curves} == {"tiny BERT from scratch", "tiny BERT after contrastive pretraining",
                                            "tiny BERT after masked-LM pretraining", "bag-of-words logistic regression"}
        assert all(c.x == [25, 50] and c.n == [1, 1] for c in curves)
        assert len(presets.judge_group(store, group)) == 4 * 2   # every check at every budget
    assert main(["compare", group]) == 0
    assert "tiny BERT after contrastive pretraining · 50 labels" in capsys.readouterr().out


def test_queue_shows_what_waits_and_what_runs(home, capsys):
    with RunStore(home / "home") as store:
        from hft_core.config import RunConfig

        a = store.create_run(RunConfig(model="tiny:bert", device="cpu", name="waiting one"), device="cpu")
    assert main(["queue"]) == 0
    out = capsys.readouterr().out
    assert "cpu: 0 worker(s) (none: queued runs wait for the app or `hft worker`)" in out
    assert f"queued  1 {a}" in out and "waiting one" in out
    assert main(["stop", a]) == 0 and f"cancelled {a}" in capsys.readouterr().out


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "HFT_HOME": str(home / "home"), "HFT_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT)}


def test_ctrl_c_asks_the_run_to_stop_with_a_checkpoint(home):
    log = open(home / "train.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "hft_core", "train", *sets(home, max_steps=100_000, eval_every=0),
                          "--quiet"], env=_env(home), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        with RunStore(home / "home") as store:
            while not (store.list_runs() and store.last_metrics(store.list_runs()[0].id).get("step", 0) >= 3):
                assert p.poll() is None and time.monotonic() < deadline, (home / "train.log").read_text()
                time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=120) == 130
    finally:
        if p.poll() is None:
            p.kill()
    text = (home / "train.log").read_text()
    assert "stopping run" in text and "resume with: hft train --resume" in text and "Traceback" not in text
    rec, metrics = only_run(home)
    assert rec.status == "stopped" and rec.stop_reason == "Ctrl-C in its terminal"
    from hft_core.runs import checkpoint_step

    assert checkpoint_step(Path(rec.checkpoint_dir).parent) == int(metrics.step.max())


def test_a_closed_pipe_ends_quietly(home):
    with RunStore(home / "home") as store:
        from hft_core.config import RunConfig

        for i in range(300):  # more lines than one pipe buffer's worth of `head`
            store.create_run(RunConfig(model="tiny:bert", name=f"run {i}"), status="finished")
    out = subprocess.run(f"{sys.executable} -m hft_core list | head -2", shell=True, env=_env(home), cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert len(out.stdout.splitlines()) == 2
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
