"""The training loop on tiny models: determinism, logging, stop, divergence, and bad input."""
import math
import threading

import pandas as pd
import pytest
import torch

from hft_core.config import ConfigError, RunConfig
from hft_core.sinks import MemorySink
from hft_core.trainer import TrainingDiverged, train


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    rows = []
    for i in range(60):
        rows.append((f"the striker scored a late goal in match {i}", "sport"))
        rows.append((f"the bank raised interest rates as shares fell {i}", "business"))
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def tiny(toy_csv, **kw):
    base = dict(model="tiny:bert", data=toy_csv, batch_size=8, max_length=32, max_steps=6, eval_every=3, n_eval=24,
                lr=1e-3, seed=0, device="cpu", precision="fp32")
    return RunConfig(**{**base, **kw})


class StopAt(MemorySink):
    """A MemorySink that sets ``stop`` once step ``at``'s loss is logged (as a Stop click would then)."""

    def __init__(self, at: int, stop: threading.Event) -> None:
        super().__init__()
        self.at, self.stop = at, stop

    def log(self, step, values):
        super().log(step, values)
        if step == self.at and "loss" in values:
            self.stop.set()


def test_same_seed_same_losses_and_every_metric_logged(toy_csv):
    a, b = MemorySink(), MemorySink()
    train(tiny(toy_csv), a)
    train(tiny(toy_csv), b)
    la, lb = [v for _, v in a.series("loss")], [v for _, v in b.series("loss")]
    assert len(la) == 6 and la == lb
    assert all(math.isfinite(v) for v in la)
    for key in ("loss/task", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "tokens_seen", "peak_mem_mb",
                "progress", "eval/accuracy", "eval/macro_f1", "eval/roc_auc", "eval/loss"):
        assert a.series(key), f"{key} was not logged"
    assert [s for s, _ in a.series("eval/accuracy")] == [3, 6]   # every eval_every and at the end
    assert a.last("progress") == 1.0
    c = MemorySink()
    train(tiny(toy_csv, seed=1), c)
    assert [v for _, v in c.series("loss")] != la


def test_learns_the_toy_task(toy_csv):
    sink = MemorySink()
    result = train(tiny(toy_csv, max_steps=30, eval_every=0), sink)
    assert result.status == "finished" and result.step == 30
    assert result.metrics["eval/accuracy"] > 0.9   # two perfectly separable word sets


def test_lr_schedule_linear_decay_to_zero(toy_csv):
    sink = MemorySink()
    train(tiny(toy_csv, warmup_steps=2, schedule="linear"), sink)
    lrs = [v for _, v in sink.series("lr")]
    assert lrs[0] == pytest.approx(1e-3)          # after step 1 of warmup 2: factor for step index 1 = 2/2
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(x >= y for x, y in zip(lrs[1:], lrs[2:]))


def test_stop_event_ends_within_one_step_and_keeps_checkpoint(toy_csv, tmp_path):
    stop = threading.Event()

    sink = StopAt(2, stop)
    result = train(tiny(toy_csv, max_steps=50), sink, stop, out_dir=tmp_path)
    assert result.status == "stopped" and result.step == 2
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()
    assert (tmp_path / "checkpoint" / "run_config.yaml").exists()
    assert max(s for s, _ in sink.series("loss")) == 2


def test_checkpoint_is_a_loadable_model_folder(toy_csv, tmp_path):
    from transformers import AutoModelForSequenceClassification

    result = train(tiny(toy_csv), MemorySink(), out_dir=tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(result.checkpoint)
    for (n, p), (_, q) in zip(result.model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), n
    assert RunConfig.load(str(tmp_path / "checkpoint" / "run_config.yaml")) == tiny(toy_csv)


def test_nan_loss_stops_with_message_and_keeps_metrics_and_checkpoint(toy_csv, tmp_path, monkeypatch):
    from hft_core.tasks import ClassificationTask

    real_loss = ClassificationTask.loss
    calls = {"n": 0}

    def loss_turning_nan_at_step_4(self, out, batch):   # steps 1-3 fine, then NaN
        calls["n"] += 1
        value = real_loss(self, out, batch)
        return value * float("nan") if calls["n"] == 4 else value

    monkeypatch.setattr(ClassificationTask, "loss", loss_turning_nan_at_step_4)
    sink = MemorySink()
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3.*checkpoint.*kept.*lower lr"):
        train(tiny(toy_csv, max_steps=10, eval_every=0), sink, out_dir=tmp_path)
    assert [s for s, _ in sink.series("loss")] == [1, 2, 3], "metrics before the divergence are kept"
    state = torch.load(tmp_path / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 3, "the checkpoint is the last good step"
    assert any(level == "error" and "loss became" in msg for level, msg in sink.events)


def test_causal_lm_on_tiny_gpt2_lowers_loss():
    sink = MemorySink()
    cfg = RunConfig(model="tiny:gpt2", task="causal-lm", data="bundled:qa", batch_size=8, max_length=48,
                    max_steps=25, eval_every=0, n_train=64, n_eval=32, lr=3e-3, device="cpu", precision="fp32")
    result = train(cfg, sink)
    losses = [v for _, v in sink.series("loss/task")]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert "eval/perplexity" in result.metrics
    assert any(msg.startswith("sample at step") for _, msg in sink.events)


# ---- bad input: a clear error that names the problem and the fix -------------------------

def test_unknown_model(toy_csv):
    from hft_core.models import ModelError
    with pytest.raises(ModelError, match="tiny:resnet"):
        train(tiny(toy_csv, model="tiny:resnet"))


def test_unknown_bundled_data():
    from hft_core.data import DataError
    with pytest.raises(DataError, match="bundled:imagenet"):
        train(RunConfig(model="tiny:bert", data="bundled:imagenet", device="cpu"))


def test_model_that_does_not_fit_the_task():
    from hft_core.models import ModelError
    with pytest.raises(ModelError, match="encoder.*causal-lm"):
        train(RunConfig(model="tiny:bert", task="causal-lm", data="bundled:qa", device="cpu", max_steps=1))


def test_missing_columns(tmp_path):
    from hft_core.data import DataError
    path = tmp_path / "x.csv"
    pd.DataFrame({"body": ["a b", "c d"] * 10, "y": [0, 1] * 10}).to_csv(path, index=False)
    with pytest.raises(DataError, match="body"):   # lists the columns that do exist
        train(RunConfig(model="tiny:bert", data=str(path), device="cpu", text_column="text"))


def test_empty_data(tmp_path):
    from hft_core.data import DataError
    path = tmp_path / "empty.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match="(?i)empty|no rows|0 rows"):
        train(RunConfig(model="tiny:bert", data=str(path), device="cpu"))


def test_n_train_larger_than_the_data(toy_csv):
    from hft_core.data import DataError
    with pytest.raises(DataError, match="n_train=5000"):
        train(tiny(toy_csv, n_train=5000))


def test_out_of_range_values():
    with pytest.raises(ConfigError, match="max_steps=0"):
        RunConfig(max_steps=0)
    with pytest.raises(ConfigError, match="alpha"):
        RunConfig(mix={"blend": {"alpha": 1.5}})


def test_precision_the_device_cannot_do(toy_csv):
    from hft_core.precision import PrecisionError
    with pytest.raises(PrecisionError, match="fp16.*CPU"):
        train(tiny(toy_csv, precision="fp16"))


def test_bf16_autocast_runs_on_cpu(toy_csv):
    sink = MemorySink()
    train(tiny(toy_csv, precision="bf16", max_steps=3, eval_every=0), sink)
    assert all(math.isfinite(v) for _, v in sink.series("loss"))
    assert any("bf16" in msg for _, msg in sink.events)


def test_eval_at_start_gives_a_step_zero_point(toy_csv):
    sink = MemorySink()
    train(tiny(toy_csv, max_steps=2, eval_every=0, eval_at_start=True), sink)
    assert [s for s, _ in sink.series("eval/accuracy")] == [0, 2]


def test_resume_survives_a_kill_between_the_two_renames_of_a_checkpoint_swap(toy_csv, tmp_path):
    from hft_core.trainer import recover_checkpoint

    train(tiny(toy_csv, max_steps=4, checkpoint_every=2, eval_every=0), MemorySink(), out_dir=tmp_path)
    ckpt = tmp_path / "checkpoint"
    ckpt.rename(tmp_path / "checkpoint.old")                   # killed after the first rename ...
    (tmp_path / "checkpoint.old").rename(tmp_path / "checkpoint.tmp")
    (tmp_path / "checkpoint.tmp").rename(tmp_path / "x")
    import shutil
    shutil.copytree(tmp_path / "x", tmp_path / "checkpoint.tmp")  # ... with the new one complete
    shutil.copytree(tmp_path / "x", tmp_path / "checkpoint.old")
    recover_checkpoint(tmp_path)
    assert (ckpt / "trainer_state.pt").exists() and not (tmp_path / "checkpoint.tmp").exists()
    # a lone, possibly half-written tmp (no swap under way) is never used
    shutil.rmtree(ckpt)
    shutil.rmtree(tmp_path / "checkpoint.old")
    shutil.copytree(tmp_path / "x", tmp_path / "checkpoint.tmp")
    recover_checkpoint(tmp_path)
    assert not ckpt.exists()


def test_a_checkpoint_is_never_ahead_of_the_stored_curve(toy_csv, tmp_path, monkeypatch):
    # the store buffers metrics (written every flush_interval); a run killed right after a checkpoint
    # must find every step up to it in the store, or the resumed curve has a hole (seen in CI: the
    # checkpoint at step 60, the stored loss only up to 58)
    import sqlite3

    from hft_core import trainer as T
    from hft_core.store import RunStore

    seen = []
    real_save = T._save

    def save_and_look(ckpt_dir, cfg, *args):
        step = args[-2]
        with sqlite3.connect(tmp_path / "home" / "runs.sqlite") as con:  # what another process reads now
            stored = con.execute("SELECT MAX(step) FROM metrics WHERE run_id = ? AND name = 'loss'", (run_id,)).fetchone()
        seen.append((step, stored[0]))
        return real_save(ckpt_dir, cfg, *args)

    monkeypatch.setattr(T, "_save", save_and_look)
    with RunStore(tmp_path / "home", flush_interval=3600) as store:  # the flusher alone would write nothing
        cfg = tiny(toy_csv, max_steps=9, checkpoint_every=4, eval_every=0)
        run_id = store.create_run(cfg, device="cpu")
        train(cfg, store.sink(run_id), out_dir=store.run_dir(run_id))
    assert [s for s, _ in seen] == [4, 8, 9]
    assert all(stored == step for step, stored in seen), seen


def test_resume_after_a_kill_in_the_old_checkpoints_removal_saves_again(toy_csv, tmp_path):
    # killed in _save's last act (removing checkpoint.old): the new checkpoint is complete and a
    # partly deleted checkpoint.old remains. The resumed run's next save must not trip on it
    # (it did, in a CI run of test_fault: "OSError: [Errno 39] Directory not empty: checkpoint ->
    # checkpoint.old", and the resumed run failed).
    from hft_core.trainer import recover_checkpoint

    stop = threading.Event()

    def cfg():
        return tiny(toy_csv, max_steps=8, checkpoint_every=2, eval_every=0)

    def half_deleted_old():
        (tmp_path / "checkpoint.old" / "part").mkdir(parents=True)
        (tmp_path / "checkpoint.old" / "part" / "model.safetensors").write_bytes(b"half deleted")

    train(cfg(), StopAt(4, stop), stop, out_dir=tmp_path)
    half_deleted_old()
    recover_checkpoint(tmp_path)  # at resume: the leftover goes, the checkpoint stays
    assert not (tmp_path / "checkpoint.old").exists() and (tmp_path / "checkpoint" / "trainer_state.pt").exists()
    half_deleted_old()            # and if it is there when a save swaps, that save clears it
    sink = MemorySink()
    train(cfg(), sink, out_dir=tmp_path, resume=True)
    assert [s for s, _ in sink.series("loss")] == [5, 6, 7, 8]
    assert not (tmp_path / "checkpoint.old").exists()
    assert (tmp_path / "checkpoint" / "trainer_state.pt").exists()


@pytest.mark.parametrize("mix", [{}, {"mutual": {}}], ids=["plain", "mutual-peer"])
def test_resume_continues_the_same_losses(toy_csv, tmp_path, mix):
    """Stop at step 3, resume: steps 4..6 match a run that never stopped (data order, optimizer, RNG)."""
    full = MemorySink()
    train(tiny(toy_csv, eval_every=0, mix=mix), full)
    stop = threading.Event()

    first = StopAt(3, stop)
    train(tiny(toy_csv, eval_every=0, mix=mix), first, stop, out_dir=tmp_path)
    second = MemorySink()
    train(tiny(toy_csv, eval_every=0, mix=mix), second, out_dir=tmp_path, resume=True)
    assert [s for s, _ in second.series("loss")] == [4, 5, 6]
    expected = [v for s, v in full.series("loss") if s > 3]
    got = [v for _, v in second.series("loss")]
    assert got == pytest.approx(expected, rel=1e-5)
    if mix:  # the peer resumed too (a fresh peer would give other peer losses)
        assert [v for _, v in second.series("peer/loss")] == pytest.approx(
            [v for s, v in full.series("peer/loss") if s > 3], rel=1e-5)
