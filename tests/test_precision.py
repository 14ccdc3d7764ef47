"""Precision plans are pure functions of a device description: tested without a GPU."""
import pytest
import torch

from hft_core.precision import DeviceInfo, PrecisionError, make_scaler, plan_precision

A100 = DeviceInfo("cuda", "NVIDIA A100", (8, 0))
T4 = DeviceInfo("cuda", "Tesla T4", (7, 5))
CPU = DeviceInfo("cpu", "AMD EPYC", cpu_flags=frozenset({"avx2"}))
CPU_BF16 = DeviceInfo("cpu", "Xeon", cpu_flags=frozenset({"avx512_bf16"}))


def test_auto_picks_fastest_safe_choice():
    assert plan_precision("auto", A100).name == "bf16"
    t4 = plan_precision("auto", T4)
    assert t4.name == "fp16" and t4.use_scaler
    assert plan_precision("auto", CPU).name == "fp32"


def test_bf16_refused_on_gpu_without_bf16_with_reason():
    with pytest.raises(PrecisionError, match=r"Tesla T4.*capability 7\.5.*8\.0.*'fp16'"):
        plan_precision("bf16", T4)


def test_fp16_refused_on_cpu_with_reason():
    with pytest.raises(PrecisionError, match="fp16.*CPU.*slower.*fp32"):
        plan_precision("fp16", CPU)


def test_bf16_on_cpu_warns_when_emulated():
    assert "emulated" in plan_precision("bf16", CPU).warning
    assert plan_precision("bf16", CPU_BF16).warning == ""


def test_fp16_on_cuda_uses_a_scaler():
    plan = plan_precision("fp16", A100)
    assert plan.use_scaler and plan.autocast_dtype == torch.float16


def test_inf_gradient_skips_step_keeps_weights_and_halves_scale():
    """The loss scaler's contract, through the trainer's own optimizer_step."""
    from hft_core.trainer import optimizer_step

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    plan = plan_precision("fp16", A100)          # a plan that needs a scaler ...
    scaler = make_scaler(plan, "cpu")            # ... exercised on the CPU scaler
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(3, 4)).sum()
    scaler.scale(loss).backward()
    model.weight.grad[0, 0] = float("inf")
    scale0 = scaler.get_scale()
    optimizer_step(model, opt, scaler, max_grad_norm=1.0)
    assert scale0 == 2.0 ** 16
    assert scaler.get_scale() == scale0 * 0.5
    for b, p in zip(before, model.parameters()):
        assert torch.equal(b, p.detach())
    # a finite step afterwards does move the weights
    scaler.scale(model(torch.randn(3, 4)).sum()).backward()
    optimizer_step(model, opt, scaler, max_grad_norm=1.0)
    assert not torch.equal(before[0], model.weight.detach())
