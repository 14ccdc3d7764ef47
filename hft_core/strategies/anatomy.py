"""Where things are in a transformer: its blocks, embeddings, head, pooler.

Strategies need to find "the last k blocks" or "the new classifier head" in BERT,
GPT-2 and Llama alike. Rather than a table of attribute paths per architecture,
these helpers look at the module tree: the block list is the largest
``nn.ModuleList`` of identical modules; the head is a child named ``classifier``
or ``score`` (the names Hugging Face uses for a freshly initialised task head);
embeddings are the parameters registered before the first block.

Modules a strategy attaches to a model (e.g. the auxiliary LM head) are named
with the ``hft_`` prefix, so other strategies can tell them apart and
``strip_attached`` can drop them from an exported checkpoint.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

HEAD_NAMES = ("classifier", "score")   # new task heads: randomly initialised on load
ATTACHED_PREFIX = "hft_"               # modules added by strategies (trained, not exported)
ENCODER_TYPES = {"bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "xlm-roberta", "albert",
                 "mpnet", "camembert", "modernbert"}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain transformers model inside a peft / DDP wrapper (same module objects)."""
    if hasattr(model, "module") and isinstance(model.module, nn.Module) and not hasattr(model, "config"):
        model = model.module  # DDP
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()  # peft: the base model, modified in place
    return model


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(dotted name, ModuleList) of the transformer blocks, bottom first.

    The largest ModuleList (by parameter count) whose entries are all the same class:
    ``bert.encoder.layer`` in BERT, ``transformer.h`` in GPT-2, ``model.layers`` in Llama.
    """
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and len({type(m) for m in mod}) == 1:
            n = sum(p.numel() for p in mod.parameters())
            if best is None or n > best[0]:
                best = (n, name, mod)
    if best is None:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}: no list of layers in it")
    return best[1], best[2]


def is_head_name(name: str) -> bool:
    """True for parameters/modules of a new task head or of a strategy-attached module."""
    parts = name.split(".")
    return any(p in HEAD_NAMES or p.startswith(ATTACHED_PREFIX) for p in parts)


def head_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The new task head(s) (``classifier`` / ``score``), outermost matches only."""
    out: list[tuple[str, nn.Module]] = []
    for name, mod in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if last in HEAD_NAMES and not any(name.startswith(n + ".") for n, _ in out):
            out.append((name, mod))
    return out


def head_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if is_head_name(n)]


def backbone_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if not is_head_name(n)]


def embedding_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Parameters registered before the first block (word/position embeddings, their norm)."""
    block_name, _ = find_blocks(model)
    out = []
    for n, p in model.named_parameters():
        if n.startswith(block_name + "."):
            break
        if not is_head_name(n):
            out.append((n, p))
    return out


def pooler_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == "pooler" and m is not None]


def initializer_range(model: nn.Module) -> float:
    return float(getattr(getattr(unwrap(model), "config", None), "initializer_range", 0.02) or 0.02)


def is_encoder(model: nn.Module) -> bool:
    """BERT-like (bidirectional, masked-LM pretrained) rather than a causal decoder."""
    cfg = getattr(unwrap(model), "config", None)
    return getattr(cfg, "model_type", "") in ENCODER_TYPES


@torch.no_grad()
def reset_parameters(module: nn.Module, std: float, generator: torch.Generator) -> None:
    """BERT-style init of every sub-module: Linear/Conv1D/Embedding weights ~ N(0, std),
    biases 0, norms weight 1 / bias 0. Draws come from ``generator`` (CPU) so it is seeded."""
    for m in module.modules():
        kind = type(m).__name__
        weight = getattr(m, "weight", None)
        bias = getattr(m, "bias", None)
        if isinstance(m, (nn.Linear, nn.Embedding)) or kind == "Conv1D":
            _normal_(weight, std, generator)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
            pad = getattr(m, "padding_idx", None)
            if isinstance(m, nn.Embedding) and pad is not None:
                weight[pad].zero_()
        elif isinstance(m, nn.LayerNorm) or "Norm" in kind:
            if isinstance(weight, torch.Tensor):
                weight.fill_(1.0)
            if isinstance(bias, torch.Tensor):
                bias.zero_()


def _normal_(t: torch.Tensor, std: float, generator: torch.Generator) -> None:
    t.copy_(torch.randn(t.shape, generator=generator, dtype=torch.float32).mul_(std).to(t.dtype))


def saved_label_count(source: str) -> int | None:
    """Labels of the classifier saved with ``source`` (0 = saved without one); None if unknown.

    Read from the saved config, before loading: loading for this task would otherwise
    give a model saved without a trained head a fresh random one, silently.
    """
    try:
        from hft_core import models

        path = Path(models.resolve_path(source))
    except Exception:
        return None  # hub ids and sources models.py cannot place: checked after loading instead
    if source.startswith("tiny:") or not (path / "config.json").is_file():
        return None
    d = json.loads((path / "config.json").read_text())
    if not any("SequenceClassification" in a for a in d.get("architectures") or []):
        return 0
    return len(d.get("id2label") or {}) or int(d.get("num_labels", 2))


def strip_attached(model: nn.Module) -> nn.Module:
    """A view of ``model`` without the ``hft_*`` sub-modules strategies attached.

    Copies only the modules on the path to each attached module (shallow copies with
    their own child dicts); the live model and its parameters are untouched and shared.
    """
    paths = [n for n, _ in model.named_modules() if n and n.rsplit(".", 1)[-1].startswith(ATTACHED_PREFIX)]
    if not paths:
        return model
    root = _shallow(model)
    for path in paths:
        *parents, last = path.split(".")
        node = root
        for p in parents:
            child = _shallow(node._modules[p])
            node._modules[p] = child
            node = child
        node._modules.pop(last, None)
    return root


def _shallow(module: nn.Module) -> nn.Module:
    new = copy.copy(module)
    new.__dict__["_modules"] = dict(module._modules)
    return new
