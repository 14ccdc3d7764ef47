"""Post-hoc merging: WiSE-FT endpoints, soups of identical models, pruning sparsity, the CLI."""
import csv

import pytest
import torch

from hft_core import merge
from hft_core.models import load_model
from hft_core.tasks import evaluate

TOPICS = {0: "the match ended with a late goal from the striker", 1: "shares rose after the bank reported profits",
          2: "the band played new songs at the concert"}
EXAMPLES = [{"text": f"{TOPICS[i % 3]} number {i}", "label": i % 3} for i in range(12)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three tiny BERT classifiers saved as model folders: seeds 0, 1 and a copy of seed 0."""
    from hft_core.models import load_tokenizer

    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, seed in (("a", 0), ("b", 1), ("a_copy", 0)):
        m = load_model("tiny:bert", "classification", 3, seed=seed)
        with torch.no_grad():  # make "b" clearly different, like a fine-tuned model
            if name == "b":
                m.classifier.weight.mul_(20)
        m.save_pretrained(root / name)
        load_tokenizer("tiny:bert").save_pretrained(root / name)
        out[name] = str(root / name)
    return out


def bits(t):
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t


def test_interpolate_endpoints_are_exact_and_midpoint_is_the_mean():
    torch.manual_seed(0)
    a = {"w": torch.randn(4, 4), "ids": torch.arange(4)}
    b = {"w": torch.randn(4, 4), "ids": torch.arange(4) + 7}
    assert torch.equal(bits(merge.interpolate(a, b, 0.0)["w"]), bits(a["w"]))
    assert torch.equal(bits(merge.interpolate(a, b, 1.0)["w"]), bits(b["w"]))
    mid = merge.interpolate(a, b, 0.5)
    assert torch.allclose(mid["w"], (a["w"] + b["w"]) / 2, atol=1e-7)
    assert torch.equal(mid["ids"], a["ids"])  # integer buffers are copied, not averaged
    assert merge.interpolate(a, b, 1.0)["w"] is not b["w"]  # a copy, inputs untouched
    with pytest.raises(merge.MergeError, match="alpha=1.5"):
        merge.interpolate(a, b, 1.5)


def test_architectures_must_match():
    with pytest.raises(merge.MergeError, match=r"different architectures.*only in model a: \['x'\]"):
        merge.interpolate({"x": torch.zeros(2)}, {"y": torch.zeros(2)}, 0.5)
    with pytest.raises(merge.MergeError, match=r"w is \(2,\) vs \(3,\).*number of labels"):
        merge.uniform_soup([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}])


def test_wise_ft_endpoints_reproduce_the_two_models(folders):
    from hft_core.models import load_tokenizer

    rows = merge.wise_ft_sweep(folders["a"], folders["b"], "classification", EXAMPLES, alphas=(0.0, 0.5, 1.0))
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0]
    tok = load_tokenizer(folders["a"])
    for row, name in ((rows[0], "a"), (rows[-1], "b")):
        direct = evaluate(load_model(folders[name], "classification", 3), tok, "classification", EXAMPLES)
        for k, v in direct.items():
            assert row[f"eval/{k}"] == v, (name, k)
    assert rows[1]["eval/loss"] != rows[0]["eval/loss"]


def test_soups_of_identical_models_equal_the_model(folders):
    states = [merge.load_state(folders[n], "classification", 3) for n in ("a", "a_copy", "a")]
    soup = merge.uniform_soup(states)
    for k, v in states[0].items():
        assert torch.allclose(soup[k], v, atol=1e-7), k
    rows, greedy = merge.soup_sweep([folders["a"], folders["a_copy"]], "classification", EXAMPLES)
    alone = rows[0]
    for row in rows[1:]:
        assert row["eval/accuracy"] == alone["eval/accuracy"]
        assert row["eval/loss"] == pytest.approx(alone["eval/loss"], abs=1e-6)
    assert rows[-1]["model"] == "greedy soup" and rows[-1]["soup_size"] == 2.0  # no drop: both kept


def test_greedy_soup_adds_best_first_and_skips_a_model_that_hurts():
    target = torch.ones(3)
    states = [{"w": torch.tensor([1.0, 1.0, 0.8])}, {"w": torch.tensor([1.0, 1.2, 1.0])},
              {"w": torch.tensor([-5.0, 9.0, 3.0])}, {"w": torch.tensor([0.9, 1.0, 1.0])}]
    score = lambda s: -float((s["w"] - target).norm())
    soup, kept, rows = merge.greedy_soup(states, score)
    assert kept[0] == 3 and 2 not in kept  # best alone first; the bad model is rejected
    assert [r["kept"] for r in rows if r["model"] == "model 3"] == [0.0]
    assert score(soup) >= max(score(s) for s in states)


def test_magnitude_pruning_reaches_the_sparsity(folders):
    state = merge.load_state(folders["a"], "classification", 3)
    selected = [k for k, v in state.items() if merge.prunable(k, v)]
    assert selected and not any("embeddings" in k or "classifier" in k for k in selected)
    for scope in ("global", "per_tensor"):
        pruned, achieved = merge.magnitude_prune(state, 0.5, scope)
        assert achieved == pytest.approx(0.5, abs=1e-3)
        for k, v in state.items():
            if k not in selected:
                assert torch.equal(pruned[k], v), k
        if scope == "per_tensor":
            for k in selected:
                assert (pruned[k] == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
        # the survivors are the largest in magnitude
        flat_kept = torch.cat([pruned[k].abs().flatten() for k in selected])
        flat_all = torch.cat([state[k].abs().flatten() for k in selected])
        if scope == "global":
            assert flat_kept[flat_kept > 0].min() >= flat_all[flat_kept == 0].max()
    rows = merge.prune_sweep(folders["a"], "classification", EXAMPLES, sparsities=(0.0, 0.9))
    assert rows[0]["sparsity_achieved"] < 0.01 and rows[1]["sparsity_achieved"] == pytest.approx(0.9, abs=1e-3)
    with pytest.raises(merge.MergeError, match="sparsity=1.0"):
        merge.magnitude_prune(state, 1.0)


def test_cli_prune_and_soup(folders, tmp_path, capsys):
    from hft_core.cli import main

    data = tmp_path / "toy.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(30):
            w.writerow([f"{TOPICS[i % 3]} {i}", ["sport", "business", "music"][i % 3]])
    out = tmp_path / "rows.csv"
    assert main(["merge", "prune", folders["a"], "--task", "classification", "--data", str(data),
                 "--sparsity", "0", "0.5", "--out", str(out)]) == 0
    assert "sparsity_achieved" in capsys.readouterr().out and out.exists()
    soup_dir = tmp_path / "soup"
    assert main(["merge", "soup", folders["a"], folders["a_copy"], "--task", "classification", "--data", str(data),
                 "--save", str(soup_dir)]) == 0
    assert load_model(str(soup_dir), "classification", 3) is not None
    assert main(["merge", "wise-ft", "--b", folders["b"], "--task", "classification", "--data", str(data)]) == 2
    assert "--a is needed" in capsys.readouterr().err


def test_wise_ft_of_a_finished_run(tmp_path, monkeypatch):
    from hft_core import home
    from hft_core.config import RunConfig
    from hft_core.sinks import MemorySink
    from hft_core.trainer import train

    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    cfg = RunConfig(model="tiny:bert", data="bundled:bbc-news", n_train=16, n_eval=8, batch_size=4, max_length=32,
                    max_steps=2, eval_every=0, lr=1e-3)
    sink = MemorySink()
    result = train(cfg, sink, out_dir=home.run_dir("r-wise"))
    rows = merge.run_wise_ft("r-wise", points=3)
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[-1]["eval/accuracy"] == result.metrics["eval/accuracy"]
    assert rows[-1]["eval/loss"] == pytest.approx(result.metrics["eval/loss"], rel=1e-5)
