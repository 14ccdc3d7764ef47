"""The Learn page's numbers: known answers and properties, no training."""
import math

import pytest
import torch

from hft_core import explain


def test_blend_endpoints_are_exact_copies_and_middle_shrinks():
    p, _ = explain.pretrained_weights()
    f = explain.random_weights(p.numel(), seed=0)
    assert torch.equal(explain.blend_weights(p, f, 1.0).view(torch.int32), p.view(torch.int32))
    assert torch.equal(explain.blend_weights(p, f, 0.0), f)
    mid = explain.blend_stats(p, f, 0.5)
    # independent tensors: std^2 = a^2 sp^2 + (1-a)^2 sf^2, smaller than either end
    expected = math.sqrt(0.25 * mid.std_pretrained ** 2 + 0.25 * mid.std_fresh ** 2)
    assert mid.std_blend == pytest.approx(expected, rel=0.02)
    assert mid.std_blend < mid.std_pretrained
    assert explain.blend_stats(p, f, 1.0).cosine_to_pretrained == pytest.approx(1.0, abs=1e-5)
    assert abs(explain.blend_stats(p, f, 0.0).cosine_to_pretrained) < 0.05


def test_blend_rejects_alpha_outside_unit_interval():
    with pytest.raises(ValueError, match="alpha=1.5"):
        explain.blend_weights(torch.zeros(3), torch.zeros(3), 1.5)


def test_histogram_shares_sum_to_one():
    centres, shares = explain.histogram(torch.randn(1000) * 0.1, bins=20)
    assert len(centres) == len(shares) == 20
    assert sum(shares) == pytest.approx(1.0)


def test_softmax_temperature_softens_and_keeps_order():
    logits = [4.0, 1.0, 0.0, -1.0]
    p1, p5 = explain.softmax_at_temperature(logits, 1), explain.softmax_at_temperature(logits, 5)
    assert sum(p1) == pytest.approx(1) and sum(p5) == pytest.approx(1)
    assert p5[0] < p1[0] and explain.entropy_bits(p5) > explain.entropy_bits(p1)
    assert sorted(p5, reverse=True) == p5
    big = explain.softmax_at_temperature(logits, 1e6)
    assert explain.entropy_bits(big) == pytest.approx(2.0, abs=1e-6)  # uniform over 4 classes
    with pytest.raises(ValueError, match="temperature=0"):
        explain.softmax_at_temperature(logits, 0)


def test_kd_term_is_zero_for_equal_logits():
    assert explain.kd_term([1, 2, 3], [1, 2, 3], 2.0) == pytest.approx(0.0, abs=1e-12)
    assert explain.kd_term([3, 0, 0], [0, 0, 3], 2.0) > 0


def test_lora_count_for_minilm_query_value():
    c = explain.lora_trainable(8)
    assert c.lora == 12 * 8 * (384 + 384) == 73_728
    assert c.adapted_full == 12 * 384 * 384
    assert explain.lora_trainable(16).lora == 2 * c.lora
    assert c.share_of_model == pytest.approx(73_728 / 22_713_216)
    with pytest.raises(ValueError, match="r=0"):
        explain.lora_trainable(0)


def test_lora_count_matches_peft():
    import peft  # pinned in requirements.txt
    layer = torch.nn.ModuleDict({"query": torch.nn.Linear(40, 30), "value": torch.nn.Linear(40, 30)})

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = layer

        def forward(self, x):
            return self.attn["query"](x) + self.attn["value"](x)

    m = peft.get_peft_model(M(), peft.LoraConfig(r=4, target_modules=["query", "value"]))
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert trainable == explain.lora_trainable(4, [(30, 40), (30, 40)]).lora


@pytest.mark.parametrize("x,name,stored,note", [
    (1.0, "bf16", 1.0, "exact"),
    (70000.0, "fp16", math.inf, "overflow -> inf"),
    (70000.0, "bf16", 70144.0, "rounded"),
    (1e-8, "fp16", 0.0, "underflow -> 0"),
    (0.1, "fp16", 0.0999755859375, "rounded"),
])
def test_precision_table_known_values(x, name, stored, note):
    row = {r.name: r for r in explain.precision_table(x)}[name]
    assert row.stored == stored and row.note == note


def test_precision_relative_error_within_half_eps():
    eps = {r.name: r.eps for r in explain.dtype_ranges()}
    for x in (0.1, 3.14159, 123.456, -7.77):
        for row in explain.precision_table(x):
            assert row.rel_error <= eps[row.name] / 2 + 1e-12


def test_dtype_ranges_known_answers():
    r = {d.name: d for d in explain.dtype_ranges()}
    assert r["fp16"].max == 65504.0 and r["fp16"].min_normal == 2 ** -14
    assert r["bf16"].eps == 2 ** -7 and r["fp32"].eps == 2 ** -23
    assert r["bf16"].min_normal == r["fp32"].min_normal  # same exponent range


def test_l2sp_penalty_zero_at_start_and_quadratic():
    assert explain.l2sp_penalty(0, 0.01) == 0
    assert explain.l2sp_penalty(2, 0.01) == pytest.approx(4 * explain.l2sp_penalty(1, 0.01))
    ds, sp, l2 = explain.l2sp_curve(0.01)
    assert sp[0] == 0 and l2[0] > 0 and len(ds) == len(sp) == len(l2)


def test_eda_rate_zero_is_identity_and_seeded():
    s = "the quick brown fox jumps over the lazy dog"
    assert all(t == s for _, t in explain.eda_examples(s, 0.0))
    a, b = explain.eda_examples(s, 0.2, seed=3), explain.eda_examples(s, 0.2, seed=3)
    assert a == b and any(t != s for _, t in a)
    ops = dict(explain.eda_examples(s, 0.2, copies=3))
    assert len(ops["insert"].split()) > len(s.split()) > len(ops["delete"].split())
    assert sorted(ops["swap"].split()) == sorted(s.split())


def test_eda_changes_n_words():
    s = " ".join(f"w{i}" for i in range(20))
    ops = dict(explain.eda_examples(s, 0.1, copies=3))
    assert len(ops["delete"].split()) == 18 and len(ops["insert"].split()) == 22  # n = max(1, int(0.1 * 20)) = 2


def test_neftune_bound_and_norm():
    assert explain.neftune_bound(5, 100, 576) == pytest.approx(5 / math.sqrt(57_600))
    lens, bound, norm = explain.neftune_curve(5, 576, max_len=256)
    assert lens[0] == 1 and lens[-1] == 256
    assert all(b1 > b2 for b1, b2 in zip(bound, bound[1:]))
    # the expected per-token norm, checked by sampling
    L, d = 64, 576
    b = explain.neftune_bound(5, L, d)
    noise = (torch.rand(2000, d, dtype=torch.float64) * 2 - 1) * b
    assert float(noise.norm(dim=1).mean()) == pytest.approx(explain.neftune_token_noise_norm(5, L), rel=0.01)


def test_wise_ft_weights_and_schematic():
    assert explain.wise_ft_weights([0, 2], [2, 4], 0.25) == [0.5, 2.5]
    a, ind, ood = explain.wise_ft_schematic()
    assert a[0] == 0 and a[-1] == 1 and ind[-1] == max(ind)
    assert 0 < ood.index(max(ood)) < len(ood) - 1  # peaks in the middle


def test_every_lesson_has_text_formula_and_reference():
    for les in explain.lessons():
        assert les.title and les.plain and les.formula and les.reference and les.look_for, les.key


def test_every_registered_strategy_has_a_lesson():
    from hft_core.strategies import base

    keys = {les.key for les in explain.lessons()}
    assert {s.name for s in base.all_specs()} <= keys
    assert {s.name for s in base.all_specs()} <= {les.key for les in explain.LESSONS}, "write a lesson for it"


# ---- the pictures that call what trains ---------------------------------------------------------

def test_learn_numbers_come_from_the_functions_that_train(monkeypatch):
    """blend, KD and L2-SP pictures call the strategy / losses functions a run calls: they cannot drift."""
    from hft_core import losses
    from hft_core.strategies import blend

    calls = []

    def spy(mod, name):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, **k: calls.append(name) or real(*a, **k))

    spy(blend, "blend_init")
    spy(losses, "kd_kl")
    spy(losses, "l2sp_penalty")
    spy(losses, "l2_penalty")
    explain.blend_weights(torch.ones(4), torch.zeros(4), 0.3)
    explain.kd_term([1.0, 0.0], [0.0, 1.0], 2.0)
    explain.l2sp_curve(0.01, points=3)
    assert {"blend_init", "kd_kl", "l2sp_penalty", "l2_penalty"} <= set(calls)
    assert explain.kd_term([3, 0, 0], [0, 0, 3], 2.0) == pytest.approx(
        float(losses.kd_kl(torch.tensor([[0.0, 0, 3]]), torch.tensor([[3.0, 0, 0]]), 2.0)))


def test_lora_shapes_are_the_strategys_targets():
    all_linear, qv = explain.minilm_lora_shapes("all-linear"), explain.minilm_lora_shapes("query-value")
    assert len(all_linear) == 6 * 6 and len(qv) == 6 * 2
    assert sorted(set(all_linear)) == [(384, 384), (384, 1536), (1536, 384)]
    assert explain.lora_trainable(8, qv).lora == 73_728
    assert explain.lora_trainable(8, all_linear).lora == 6 * 8 * (4 * 768 + 2 * 1920) == 331_776


def test_reinit_picture_keeps_lower_layers_and_redraws_the_top():
    res = explain.reinit_layer_stds(2)
    assert res.layers[0] == "embeddings" and res.layers[-1] == "pooler"
    assert res.reinit == [False] * 5 + [True, True, True]  # blocks 4, 5 and the pooler
    for before, after, hit in zip(res.before, res.after, res.reinit):
        if hit:
            assert after == pytest.approx(0.02, rel=0.05)  # BERT's initializer_range
        else:
            assert after == before  # bit for bit: the same tensors
    assert all(b > 0.04 for b, hit in zip(res.before, res.reinit) if not hit)  # trained weights are wider


def test_mixout_picture_mean_converges_to_w_and_p0_is_identity():
    d = explain.mixout_demo(0.3, draws=4000)
    assert d.max_error[-1] < 0.3 * d.max_error[0] and d.max_error[-1] < 0.01
    assert any(abs(x - w) > 1e-6 for x, w in zip(d.one_draw, d.w))  # one draw is not w
    d0 = explain.mixout_demo(0.0, draws=10)
    assert d0.one_draw == d0.w


def test_aux_picture_terms_scale_with_lambda():
    zero, half = explain.aux_terms(0.0), explain.aux_terms(0.5)
    assert zero["loss/aux_lm"] == 0.0 and zero["loss"] == zero["loss/task"]
    assert half["loss/aux_lm"] == pytest.approx(0.5 * half["L_LM"], rel=1e-5)
    assert half["loss/task"] == zero["loss/task"]
    assert 1.0 < zero["loss/task"] < 2.5 and half["L_LM"] > 3  # a new 5-way head; a new MLM head


def test_trainable_maps_follow_the_strategies():
    tm = explain.trainable_map("freeze", layers=2, embeddings=True)
    rows = dict(zip(tm.rows, tm.trainable))
    assert all(v in (0.0, None) for r in ("embeddings", "block 0", "block 1") for v in rows[r])
    assert all(v in (1.0, None) for r in ("block 2", "block 5", "classifier") for v in rows[r])
    full = explain.trainable_map("none")
    assert full.n_trainable == full.n_total == 22_715_141
    half = explain.trainable_map("half_ft", seed=0)
    for r, vals in zip(half.rows, half.trainable):
        if r.startswith("block"):
            assert sum(v == 0.0 for v in vals) == sum(v == 1.0 for v in vals) == 8  # 16 tensors, half frozen
    assert half.trainable != explain.trainable_map("half_ft", seed=1).trainable
    assert explain.trainable_map("lpft").n_trainable == 384 * 5 + 5  # the head alone
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        explain.trainable_map("nope")


def test_lpft_schedule_switches_after_the_head_steps():
    s = explain.lpft_schedule(5, max_steps=10, lr=1e-4)
    assert s.backbone_trainable == [0.0] * 5 + [1.0] * 5
    assert s.trainable[:5] == [1925] * 5 and s.trainable[5:] == [22_715_141] * 5
    assert s.lr[0] == pytest.approx(1e-4) and s.lr[5] == pytest.approx(0.5e-4)  # the trainer's linear decay


def test_loss_tokens_are_the_answer_only():
    toks = explain.loss_tokens("What is a computer?", "A machine.", "tiny:gpt2")
    first = [i for i, (_, in_loss) in enumerate(toks) if in_loss][0]
    assert not any(in_loss for _, in_loss in toks[:first]) and all(in_loss for _, in_loss in toks[first:])
    assert "what" in "".join(t for t, _ in toks[:first]).lower()
    assert "machine" in "".join(t for t, _ in toks[first:]).lower()


def test_masking_example_never_masks_special_tokens_and_is_seeded():
    text = "the quick brown fox jumps over the lazy dog near the river bank today"
    toks = explain.masking_example(text, prob=0.5, seed=3)
    assert toks[0].kind == toks[-1].kind == "special" and toks[0].original == "[CLS]"
    assert toks == explain.masking_example(text, prob=0.5, seed=3)
    chosen = [t for t in toks if t.kind in ("[MASK]", "random", "kept")]
    assert chosen and all(t.shown == t.original for t in toks if t.kind in ("kept", "not chosen", "special"))
    assert all(t.shown == "[MASK]" for t in toks if t.kind == "[MASK]")
