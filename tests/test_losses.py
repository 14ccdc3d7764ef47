"""The pure loss functions against known answers and autograd."""
import math

import pytest
import torch
import torch.nn.functional as F

from hft_core import losses


def test_kd_zero_for_equal_logits():
    t = torch.randn(6, 5)
    assert losses.kd_kl(t.clone(), t, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    lm = torch.randn(2, 7, 11)
    assert losses.kd_kl(lm.clone(), lm, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_matches_the_formula():
    torch.manual_seed(0)
    s, t, T = torch.randn(4, 3), torch.randn(4, 3), 2.0
    p_t = F.softmax(t / T, -1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert losses.kd_kl(s, t, T).item() == pytest.approx(manual.item(), rel=1e-5)


def test_kd_gradient_at_high_temperature_is_logit_difference():
    # Hinton et al. 2015: at large T with zero-mean logits, d(T^2 KL)/ds -> (s - t) / C per example
    torch.manual_seed(0)
    N, C, T = 8, 5, 200.0
    s = torch.randn(N, C, dtype=torch.float64)
    t = torch.randn(N, C, dtype=torch.float64)
    s, t = s - s.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
    s.requires_grad_(True)
    # float64 to see the limit, so compute the same formula directly in double precision
    loss = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True) * T * T
    (grad,) = torch.autograd.grad(loss, s)
    expected = (s.detach() - t) / (C * N)
    scale = expected.abs().max()
    assert (grad - expected).abs().max() < 0.01 * scale
    # and the library function (float32) gives the same gradient as autograd of that formula
    s32 = s.detach().float().requires_grad_(True)
    (g32,) = torch.autograd.grad(losses.kd_kl(s32, t.float(), T), s32)
    assert (g32.double() - expected).abs().max() < 0.02 * scale


def test_kd_mask_selects_positions_and_teacher_gets_no_gradient():
    s = torch.randn(2, 4, 6, requires_grad=True)
    t = torch.randn(2, 4, 6, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    full = losses.kd_kl(s, t, 1.0, mask)
    by_hand = losses.kd_kl(s[mask], t[mask], 1.0)
    assert full.item() == pytest.approx(by_hand.item(), rel=1e-6)
    full.backward()
    assert t.grad is None
    assert torch.all(s.grad[~mask] == 0)


def test_mutual_kl_is_kd_at_temperature_one():
    s, o = torch.randn(5, 4), torch.randn(5, 4)
    assert losses.mutual_kl(s, o).item() == pytest.approx(losses.kd_kl(s, o, 1.0).item())


def test_l2sp_zero_at_start_and_gradient_is_beta_times_difference():
    torch.manual_seed(0)
    w0 = [torch.randn(3, 4), torch.randn(5)]
    w = [x.clone().requires_grad_(True) for x in w0]
    assert losses.l2sp_penalty(w, w0, 0.01).item() == 0.0
    with torch.no_grad():
        for x in w:
            x.add_(torch.randn_like(x))
    beta = 0.3
    grads = torch.autograd.grad(losses.l2sp_penalty(w, w0, beta), w)
    for g, x, x0 in zip(grads, w, w0):
        assert torch.allclose(g, beta * (x.detach() - x0), atol=1e-6)


def test_l2_head_penalty():
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    assert losses.l2_penalty([w], 0.1).item() == pytest.approx(0.5 * 0.1 * 25)


def test_neftune_bound_and_zero_alpha():
    torch.manual_seed(0)
    emb = torch.randn(3, 10, 16)
    alpha = 5.0
    noise = losses.neftune_noise(emb, alpha)
    bound = alpha / math.sqrt(10 * 16)
    assert noise.shape == emb.shape and noise.abs().max().item() <= bound
    assert noise.abs().max().item() > 0.9 * bound  # uniform over the whole interval, not a tiny patch
    assert torch.equal(losses.neftune_noise(emb, 0.0), torch.zeros_like(emb))


def test_neftune_hook_is_identity_in_eval_mode_and_at_alpha_zero():
    from hft_core.strategies.neftune import add_neftune_hook

    emb = torch.nn.Embedding(50, 8)
    ids = torch.randint(0, 50, (2, 6))
    clean = emb(ids).detach()
    handle = add_neftune_hook(emb, 5.0)
    emb.eval()
    assert torch.equal(emb(ids), clean)
    emb.train()
    noisy = emb(ids).detach()
    assert not torch.equal(noisy, clean)
    assert (noisy - clean).abs().max().item() <= 5.0 / math.sqrt(6 * 8) + 1e-6
    handle.remove()
    add_neftune_hook(emb, 0.0)
    assert torch.equal(emb(ids), clean)


def test_masked_lm_mask_is_seeded_and_skips_special_and_padding():
    ids = torch.randint(5, 100, (4, 30))
    ids[:, 0] = 1  # [CLS]
    attn = torch.ones_like(ids)
    attn[:, 25:] = 0
    kw = dict(prob=0.15, mask_token_id=3, vocab_size=100, special_ids=[1])
    a = losses.masked_lm_mask(ids, attn, generator=torch.Generator().manual_seed(1), **kw)
    b = losses.masked_lm_mask(ids, attn, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    corrupted, labels = a
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 25:].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    assert 0.05 < chosen.float().sum().item() / (4 * 24) < 0.3
    assert (corrupted[chosen] == 3).float().mean() > 0.5  # most chosen tokens become [MASK]


def test_causal_lm_loss_ignores_masked_targets():
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[-100, 2, -100, 5]])
    expected = F.cross_entropy(logits[0, [0, 2]], torch.tensor([2, 5]))
    assert losses.causal_lm_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_mixout_mean_is_the_weight_and_p_zero_is_identity():
    torch.manual_seed(0)
    w, w_pre = torch.randn(20, 20), torch.randn(20, 20)
    g = torch.Generator().manual_seed(0)
    mean = torch.stack([losses.mixout_weight(w, w_pre, 0.3, g) for _ in range(4000)]).mean(0)
    assert (mean - w).abs().mean().item() < 0.03
    assert losses.mixout_weight(w, w_pre, 0.0) is w
