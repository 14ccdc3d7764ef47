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
    cfg = RunConfig(model="tiny:bert", optimizer="sgd", lr=0.05, weight_decay=0.1, max_grad_norm=0,
                    schedule="constant")
    model = tiny_model()
    reference = tiny_model()  # the same start; updated below by the formula, by hand
    optimizer = _make_optimizer(cfg, model)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = make_scaler(plan_precision("fp32", describe_device(torch.device("cpu"))), "cpu")
    buffers: dict[str, torch.Tensor] = {}
    for k in range(3):
        loss_of(model, k).backward()
        optimizer_step(model, optimizer, scaler, cfg.max_grad_norm)  # the trainer's step
        scheduler.step()

        reference.zero_grad()
        loss_of(reference, k).backward()
        with torch.no_grad():
            for name, p in reference.named_parameters():
                decay = cfg.weight_decay if p.ndim >= 2 else 0.0
                d = p.grad + decay * p
                buffers[name] = d.clone() if k == 0 else MOMENTUM * buffers[name] + d
                p -= cfg.lr * buffers[name]
        for (name, got), (_, want) in zip(model.named_parameters(), reference.named_parameters()):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, msg=f"{name} after step {k + 1}")


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
