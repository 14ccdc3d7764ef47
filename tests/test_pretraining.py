"""Pretraining, then fine-tuning: a tiny masked-LM run lowers held-out perplexity, resumes with the
same masks, and its checkpoint (run:<id>) fine-tunes for classification with every strategy; an
alpha-1 blend starts from exactly the pretrained encoder."""
import math
import threading

import pytest
import torch
from safetensors.torch import load_file

from hft_core import home, models
from hft_core.config import RunConfig
from hft_core.sinks import MemorySink
from hft_core.strategies import base
from hft_core.strategies.base import StrategyContext
from hft_core.trainer import train

RUN_ID = "mlm-tiny-pretrain"
COMMON = dict(device="cpu", precision="fp32", max_length=32, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pretrained(hft_home):
    """A tiny BERT pretrained with masked-LM on the BBC training articles, saved as run RUN_ID."""
    cfg = RunConfig(model="tiny:bert", task="masked-lm", data="bundled:bbc-news", n_train=400, n_eval=40,
                    batch_size=16, max_steps=40, lr=2e-3, eval_every=0, eval_at_start=True, **COMMON)
    sink = MemorySink()
    result = train(cfg, sink, out_dir=home.run_dir(RUN_ID))
    assert result.status == "finished"
    return sink


def test_masked_lm_run_lowers_held_out_perplexity(pretrained):
    ppl = pretrained.series("eval/perplexity")
    assert [s for s, _ in ppl] == [0, 40]                     # eval_at_start, then the end
    (_, start), (_, end) = ppl
    assert start > 10_000                                     # a random model: about the vocabulary size
    assert end < start / 2, (start, end)                      # measured: about 4x lower
    loss = dict(pretrained.series("eval/loss"))
    assert math.exp(loss[40]) == pytest.approx(end, rel=1e-6)
    assert pretrained.series("eval/token_accuracy")[-1][1] > pretrained.series("eval/token_accuracy")[0][1]
    assert any("sample at step 40" in m and "[MASK]" in m for _, m in pretrained.events)


def test_masked_lm_resume_replays_the_same_masks(tmp_path):
    """Stop at step 3, resume: steps 4..6 match a run that never stopped (data, masks, dropout, optimizer)."""
    cfg = RunConfig(model="tiny:bert", task="masked-lm", data="bundled:bbc-news", n_train=64, n_eval=8,
                    batch_size=8, max_steps=6, lr=1e-3, eval_every=0, **COMMON)
    full = MemorySink()
    train(cfg, full)
    stop = threading.Event()

    class StopAt3(MemorySink):
        def log(self, step, values):
            super().log(step, values)
            if step == 3 and "loss" in values:
                stop.set()

    train(cfg, StopAt3(), stop, out_dir=tmp_path)
    second = MemorySink()
    train(cfg, second, out_dir=tmp_path, resume=True)
    assert [s for s, _ in second.series("loss")] == [4, 5, 6]
    assert [v for _, v in second.series("loss")] == pytest.approx([v for s, v in full.series("loss") if s > 3],
                                                                  rel=1e-5)


def test_alpha_one_blend_starts_from_exactly_the_pretrained_encoder(pretrained):
    stored = load_file(str(home.checkpoint_dir(RUN_ID) / "model.safetensors"))
    encoder = {k: v for k, v in stored.items() if k.startswith("bert.")}
    assert len(encoder) > 20
    source = f"run:{RUN_ID}"

    def start(alpha: float) -> torch.nn.Module:
        model = models.load_model(source, "classification", 5, seed=0)
        ctx = StrategyContext(task="classification", num_labels=5, tokenizer=models.load_tokenizer(source),
                              device=torch.device("cpu"), seed=0, max_steps=1, model_source=source,
                              fresh_model=lambda s: models.load_model(source, "classification", 5, pretrained=False,
                                                                      seed=s),
                              load_model=lambda src: models.load_model(src, "classification", 5))
        for s in base.build(RunConfig(model=source, mix={"blend": {"alpha": alpha}}).mix):
            model = s.setup(model, ctx)
        return model

    def bits(t):
        return t.detach().contiguous().view(torch.int32)

    one, zero, half = (start(a).state_dict() for a in (1.0, 0.0, 0.5))
    for k, v in encoder.items():
        assert torch.equal(bits(one[k]), bits(v)), k          # your pretrained weights, bit for bit
    moved = [k for k, v in encoder.items() if v.dim() == 2 and not torch.equal(zero[k], v)]
    assert len(moved) == sum(v.dim() == 2 for v in encoder.values())  # alpha 0: every matrix random
    w = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.allclose(half[w], 0.5 * encoder[w] + 0.5 * zero[w], atol=1e-6)


def _classification_settings() -> dict[str, dict]:
    from test_strategy_matrix import SETTINGS

    return {s.name: SETTINGS[s.name] for s in base.all_specs() if "classification" in s.tasks}


@pytest.mark.parametrize("strategy", [None, *_classification_settings()])
def test_the_pretrained_checkpoint_fine_tunes_for_classification_with_every_strategy(pretrained, strategy):
    mix = {strategy: _classification_settings()[strategy]} if strategy else {}
    cfg = RunConfig(model=f"run:{RUN_ID}", task="classification", data="bundled:bbc-news", n_train=16, n_eval=8,
                    batch_size=4, max_steps=2, lr=1e-3, eval_every=0, mix=mix, **COMMON)
    sink = MemorySink()
    result = train(cfg, sink)
    assert result.status == "finished" and result.step == 2
    assert all(math.isfinite(v) for _, v in sink.series("loss"))
    assert 0 <= result.metrics["eval/accuracy"] <= 1


def test_masked_lm_refuses_strategies_and_decoders():
    from hft_core.config import ConfigError

    with pytest.raises(ConfigError, match="does not apply to task 'masked-lm'"):
        RunConfig(model="tiny:bert", task="masked-lm", mix={"lora": {}})
    with pytest.raises(models.ModelError, match="cannot do task 'masked-lm'"):
        train(RunConfig(model="tiny:gpt2", task="masked-lm", max_steps=1, **COMMON), MemorySink())
