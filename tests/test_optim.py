"""The trainer's SGD optimizer and learning-rate schedules against their formulas (issue 12).

SGD (``optimizer="sgd"``): heavy-ball momentum 0.9 with L2 weight decay added to the gradient
(coupled, as torch.optim.SGD does it) on weight matrices only; biases and norms get no decay.
Schedules: the factor on the peak lr at scheduler step s (the lr of optimizer step s + 1) is
    warmup (s < w):   (s + 1) / w
    constant:         1
    cosine:           (1 + cos(pi * (s - w) / (max_steps - w))) / 2, reaching 0 at s = max_steps
"""
from __future__ import annotations

import math

import pytest
import torch

from hft_core.config import RunConfig
from hft_core.precision import describe_device, make_scaler, plan_precision
from hft_core.trainer import _make_optimizer, _make_scheduler, optimizer_step

MOMENTUM = 0.9


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))


def batch(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + k)
    return torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)


def loss_of(model, k: int) -> torch.Tensor:
    x, y = batch(k)
    return ((model(x) - y) ** 2).mean()


def test_sgd_steps_equal_momentum_sgd_with_decay_on_weight_matrices_only():
    """The trainer's SGD steps are bit-equal to torch.optim.SGD with momentum 0.9 (no dampening, no
    Nesterov) and weight decay on the weight matrices only, the groups spelled out here. Bit-equal by
    construction on any CPU: both sides run the same kernels in the same order on the same numbers
    (a hand-written formula rounds differently from torch's kernels, by a few float32 ulps that
    three steps of backprop amplify; the formula itself is checked below, with its own tolerance)."""
    cfg = RunConfig(model="tiny:bert", optimizer="sgd", lr=0.05, weight_decay=0.1, max_grad_norm=0,
                    schedule="constant")
    model = tiny_model()
    reference = tiny_model()  # the same start
    optimizer = _make_optimizer(cfg, model)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = make_scaler(plan_precision("fp32", describe_device(torch.device("cpu"))), "cpu")
    matrices = [p for p in reference.parameters() if p.ndim >= 2]
    vectors = [p for p in reference.parameters() if p.ndim < 2]
    assert len(matrices) == 2 and len(vectors) == 4  # 2 Linear weights; 2 biases, LayerNorm weight and bias
    ref_opt = torch.optim.SGD([{"params": matrices, "weight_decay": cfg.weight_decay},
                               {"params": vectors, "weight_decay": 0.0}],
                              lr=cfg.lr, momentum=MOMENTUM, dampening=0.0, nesterov=False)
    for k in range(3):
        loss_of(model, k).backward()
        optimizer_step(model, optimizer, scaler, cfg.max_grad_norm)  # the trainer's step
        scheduler.step()

        ref_opt.zero_grad()
        loss_of(reference, k).backward()
        ref_opt.step()
        for (name, got), (_, want) in zip(model.named_parameters(), reference.named_parameters()):
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{name} after step {k + 1}")
    start = tiny_model()
    assert all(not torch.equal(got, p0) for got, p0 in zip(model.parameters(), start.parameters()))  # all moved


def test_momentum_sgd_with_coupled_decay_is_the_formula():
    """torch.optim.SGD as configured above is the formula of the module docstring:
        d = g + wd * p;   buf = d (first step), else 0.9 * buf + d;   p -= lr * buf
    checked on fixed tensors against the formula in float64. Tolerance from float32 rounding: each
    step does 6 float32 operations, each off by at most eps/2 of the largest magnitude involved, and
    an error made once carries into later steps (through p, and through buf times 0.9 < 1); so over
    n steps the error is below n * 6 * eps * scale, doubled for the carries. No fixed rtol that
    could be tighter than a CPU's rounding (FMA or not, vector width)."""
    lr, wd, steps = 0.05, 0.1, 3
    g = torch.Generator().manual_seed(7)
    start = torch.randn(5, 4, generator=g)
    grads = [torch.randn(5, 4, generator=g) for _ in range(steps)]

    p = torch.nn.Parameter(start.clone())
    opt = torch.optim.SGD([p], lr=lr, momentum=MOMENTUM, weight_decay=wd)
    want, buf, scale = start.double(), None, 0.0
    for k in range(steps):
        p.grad = grads[k].clone()
        opt.step()
        d = grads[k].double() + wd * want
        buf = d if buf is None else MOMENTUM * buf + d
        want = want - lr * buf
        scale = max(scale, float(want.abs().max()), float(d.abs().max()), float(buf.abs().max()))
        bound = 2 * (k + 1) * 6 * torch.finfo(torch.float32).eps * scale
        err = float((p.detach().double() - want).abs().max())
        assert err <= bound, f"step {k + 1}: off by {err:.3g} > {bound:.3g} from the formula"
    assert float((p.detach().double() - start.double()).abs().max()) > 1e3 * bound  # it moved, by far more


def test_sgd_is_not_adamw():
    """The two optimizers take different first steps from the same gradient (the config is used)."""
    out = {}
    for name in ("sgd", "adamw"):
        model = tiny_model()
        cfg = RunConfig(model="tiny:bert", optimizer=name, lr=0.05, weight_decay=0.0)
        opt = _make_optimizer(cfg, model)
        loss_of(model, 0).backward()
        opt.step()
        out[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.allclose(out["sgd"], out["adamw"])


def lrs(cfg: RunConfig) -> list[float]:
    """The lr at scheduler steps 0 .. max_steps, as the trainer's scheduler gives it."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = _make_scheduler(cfg, optimizer)
    out = [scheduler.get_last_lr()[0]]
    for _ in range(cfg.max_steps):
        optimizer.step()
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def expected(schedule: str, s: int, lr: float, warmup: int, max_steps: int) -> float:
    if warmup and s < warmup:
        return lr * (s + 1) / warmup
    if schedule == "constant":
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (max_steps - warmup)))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("warmup", [0, 4])
def test_schedule_follows_its_formula(schedule, warmup):
    cfg = RunConfig(model="tiny:bert", lr=0.2, schedule=schedule, warmup_steps=warmup, max_steps=12)
    got = lrs(cfg)
    for s, value in enumerate(got):
        assert value == pytest.approx(expected(schedule, s, cfg.lr, warmup, cfg.max_steps), abs=1e-12), f"step {s}"


def test_schedule_landmarks():
    """The formula's values at a few steps, worked out by hand (lr 0.2, 12 steps, 4 warmup)."""
    cos_w = lrs(RunConfig(model="tiny:bert", lr=0.2, schedule="cosine", warmup_steps=4, max_steps=12))
    assert cos_w[0] == pytest.approx(0.05)       # warmup: 1/4 of the peak at the first step
    assert cos_w[3] == pytest.approx(0.2)        # warmup ends at the peak
    assert cos_w[4] == pytest.approx(0.2)        # cosine starts at the peak
    assert cos_w[8] == pytest.approx(0.1)        # halfway through the cosine part: half the peak
    assert cos_w[12] == pytest.approx(0.0, abs=1e-12)  # and 0 at the end
    cos = lrs(RunConfig(model="tiny:bert", lr=0.2, schedule="cosine", max_steps=12))
    assert cos[0] == pytest.approx(0.2) and cos[6] == pytest.approx(0.1) and cos[3] == pytest.approx(0.1 + 0.1 / 2 ** 0.5)
    const_w = lrs(RunConfig(model="tiny:bert", lr=0.2, schedule="constant", warmup_steps=4, max_steps=12))
    assert const_w[:5] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2]) and const_w[12] == pytest.approx(0.2)
