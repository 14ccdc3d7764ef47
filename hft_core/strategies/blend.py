"""Alpha blend of pretrained and random weights, and shrink-and-perturb.

    blend:           theta = alpha * theta_pretrained + (1 - alpha) * theta_random
    shrink_perturb:  theta = shrink * theta_pretrained + perturb * theta_random   (Ash & Adams 2020)

tensor by tensor, for floating-point parameters and buffers; integer buffers
(position ids ...) are kept. theta_random is a fresh initialisation of the same
architecture drawn from seed + 1 (``fresh_seed``): a stream of its own, so it is
independent of the task head that loading drew from the run seed (and so that on a
tiny random "pretrained" model, itself drawn from the run seed, blending is not a no-op). The endpoints are exact copies (alpha = 1 keeps
the pretrained tensors bit for bit, alpha = 0 is the fresh init), because
``a*x + (1-a)*y`` in floating point is not exact at a = 1 or 0 for every x, y.

Memory: the fresh model exists only during setup; blending is in place, one
tensor at a time, so no second full copy outlives ``setup``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from hft_core.fields import ConfigError, check, coerce_numbers, param
from hft_core.strategies.base import Hooks, StrategyContext, StrategySpec, register

MODES = ("blend", "shrink_perturb")


def fresh_seed(run_seed: int) -> int:
    """The seed of the random endpoint theta_random for a run seeded ``run_seed``."""
    return run_seed + 1


@dataclass
class BlendConfig:
    alpha: float = param(0.5, "Share of the pretrained weights in the start point: 1 = plain fine-tuning, "
                         "0 = training from scratch, 0.5 = half and half (mode 'blend').", headline=True, neutral=1.0, min=0, max=1)
    mode: str = param("blend", "'blend' (alpha*pretrained + (1-alpha)*random) or 'shrink_perturb' "
                      "(shrink*pretrained + perturb*random, Ash & Adams 2020).")
    shrink: float = param(0.4, "Shrink-and-perturb: factor on the pretrained weights (mode 'shrink_perturb').")
    perturb: float = param(0.1, "Shrink-and-perturb: factor on the fresh random weights (mode 'shrink_perturb').")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        check(self.mode in MODES, "mix.blend.mode", self.mode, f"choose one of {list(MODES)}")
        check(0.0 <= self.alpha <= 1.0, "mix.blend.alpha", self.alpha, "use a number from 0 (random) to 1 (pretrained)")
        check(self.shrink >= 0, "mix.blend.shrink", self.shrink, "use 0 or a positive factor, e.g. 0.4")
        check(self.perturb >= 0, "mix.blend.perturb", self.perturb, "use 0 or a positive factor, e.g. 0.1")

    def factors(self) -> tuple[float, float]:
        """(weight on pretrained, weight on random)."""
        return (self.alpha, 1.0 - self.alpha) if self.mode == "blend" else (self.shrink, self.perturb)


@torch.no_grad()
def blend_init(model: nn.Module, fresh: nn.Module, w_pre: float, w_rand: float) -> nn.Module:
    """In place: every float tensor t of ``model`` becomes w_pre*t + w_rand*fresh_t.

    (w_pre, w_rand) = (1, 0) leaves the tensors untouched and (0, 1) copies the fresh
    ones, bit for bit. Integer buffers are left as they are. Architectures must match.
    """
    mine = dict(model.named_parameters()) | dict(model.named_buffers())
    theirs = dict(fresh.named_parameters()) | dict(fresh.named_buffers())
    missing = sorted(set(mine) ^ set(theirs))
    if missing:
        raise ConfigError(f"blend: the fresh model does not match the model ({len(missing)} tensor names differ, "
                          f"e.g. {missing[:3]}); blend needs the same architecture")
    for name, t in mine.items():
        r = theirs.pop(name)  # ours alone now: released below, it is freed at once
        if r.shape != t.shape:
            raise ConfigError(f"blend: tensor {name} has shape {tuple(t.shape)} but the fresh init has "
                              f"{tuple(r.shape)}; blend needs the same architecture")
        if not t.is_floating_point():
            continue  # integer buffers (position ids, token type ids) are copied, never blended
        if w_pre == 1.0 and w_rand == 0.0:
            continue
        if w_pre == 0.0 and w_rand == 1.0:
            t.copy_(r)
        else:
            t.mul_(w_pre).add_(r.to(t.device, t.dtype), alpha=w_rand)
        # free the fresh tensor now: peak memory stays near one model, not two
        _release(fresh, name)
        del r
    return model


def _release(module: nn.Module, name: str) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if attr in owner._parameters:
        owner._parameters[attr] = None
    elif attr in owner._buffers:
        owner._buffers[attr] = None


class Blend(Hooks):
    name = "blend"

    def __init__(self, cfg: BlendConfig) -> None:
        self.cfg = cfg

    def setup(self, model: nn.Module, ctx: StrategyContext) -> nn.Module:
        w_pre, w_rand = self.cfg.factors()
        if w_pre == 1.0 and w_rand == 0.0:
            return model  # plain fine-tuning: nothing to load
        fresh = _fresh_like(model, ctx)
        blend_init(model, fresh, w_pre, w_rand)
        del fresh  # its tensors were freed one by one as they were blended
        return model


def _fresh_like(model: nn.Module, ctx: StrategyContext) -> nn.Module:
    """A fresh init of the model's architecture.

    Normally ``ctx.fresh_model(fresh_seed(ctx.seed))``. If an earlier strategy changed the architecture
    (KD's every-other-layer student), the fresh model is built from the model's own
    config instead, under the same seed.
    """
    seed = fresh_seed(ctx.seed)
    fresh = ctx.fresh_model(seed)
    names = {n: t.shape for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    theirs = {n: t.shape for n, t in list(fresh.named_parameters()) + list(fresh.named_buffers())}
    if names == theirs or getattr(model, "config", None) is None:
        return fresh
    del fresh
    with torch.random.fork_rng(devices=[]):  # leave the run's random stream alone
        torch.manual_seed(seed)
        return type(model)(copy.deepcopy(model.config))


register(StrategySpec(
    name="blend", config_cls=BlendConfig, factory=Blend,
    title="Alpha blend (pretrained x random)",
    summary="Start from a mix of the pretrained weights and a fresh random init: alpha=1 is plain fine-tuning, "
            "alpha=0 is training from scratch.",
    reference="Ash & Adams 2020",
    order=10,
))
