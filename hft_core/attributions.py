"""Token attributions for a classification checkpoint: which tokens moved the prediction.

Integrated Gradients (Sundararajan et al. 2017) through captum's ``LayerIntegratedGradients``
on the model's input (word) embedding layer; the attribution maths is captum's, not ours.
For a class c, with f_c = the softmax probability of c:

    attribution of token i = (e_i - e'_i) . integral_0^1 grad_{e_i} f_c(e' + a (e - e')) da

summed over the embedding dimensions, where e are the text's word embeddings and e' the
baseline's. Completeness: the attributions add up to f_c(text) - f_c(baseline); captum
returns the gap left by its numerical integral as the *convergence delta* (more
``n_steps``, smaller delta).

Baseline: the same sequence with every word token replaced by [PAD] and the special tokens
([CLS], [SEP]) kept, attended like the text (captum's BERT tutorial does the same): a
"no words" input of the same length, so position embeddings and the [CLS] read-out are the
same on both sides and only the words differ. (GPT-style classifiers read the last non-pad
token, so for decoders the baseline token is [UNK]/<unk> when the tokenizer has one that is
not its pad token.)

    explain("run:<id>", "Shares fell sharply ...", true_label=0)   -> Explanation
    compare_runs(["run:a", "run:b"], text)                          -> [Explanation, Explanation]
    eval_examples("run:<id>")                                       -> the run's eval texts and labels
    tokens_html(ex.tokens, ex.scores[c])                            -> the text, tokens coloured (HTML)

Colours: orange = the token pushed the class's probability up, blue = down: a diverging pair
colour-blind readers tell apart (unlike red/green); strength = share of the row's largest |score|
(at least MIN_SCALE, so a prediction that barely depends on the words shows pale tokens).
"""
from __future__ import annotations

import functools
import html
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from hft_core import models

N_STEPS = 50          # captum's default; the delta is usually well under 1% of the probability moved
MAX_LENGTH = 128
_LOCK = threading.Lock()  # one attribution at a time per process: a page rerun must not race a model


class AttributionError(ValueError):
    """A source cannot be explained. The message names the value and the fix."""


@dataclass
class Explanation:
    """Per-token attributions of one text under one model.

    tokens:      the model's tokens, special ones included, e.g. ["[CLS]", "shares", "fell", ..., "[SEP]"]
    scores:      class id -> one attribution per token (same length as ``tokens``), toward that class
    delta:       class id -> captum's convergence delta: sum(scores[c]) - (f_c(text) - f_c(baseline))
    probs:       softmax probabilities of the text, one per class
    base_probs:  the same for the baseline (the "no words" input)
    """

    source: str
    text: str
    tokens: list[str]
    label_names: list[str]
    probs: list[float]
    base_probs: list[float]
    predicted: int
    true_label: int | None
    scores: dict[int, list[float]] = field(default_factory=dict)
    delta: dict[int, float] = field(default_factory=dict)
    n_steps: int = N_STEPS

    def name(self, c: int) -> str:
        return self.label_names[c] if 0 <= c < len(self.label_names) else f"class {c}"

    @property
    def targets(self) -> list[int]:
        """The classes attributed: the predicted one, then the true one when it differs."""
        return list(self.scores)


# ---- loading ----------------------------------------------------------------------------------
def run_config(source: str) -> Any:
    """The RunConfig saved with a run's checkpoint: ``run:<id>``, or a checkpoint folder the trainer
    wrote (it holds run_config.yaml); None for any other source."""
    from hft_core.config import ConfigError, RunConfig

    source = source.strip()
    if source.startswith("run:"):
        path = Path(models.resolve_path(source)) / "run_config.yaml"  # raises ModelError if there is no checkpoint
    else:
        path = Path(source).expanduser() / "run_config.yaml"
        if not path.is_file():
            return None
    if not path.is_file():
        raise AttributionError(f"{source}: its checkpoint has no run_config.yaml ({path}), so its task and labels "
                               "are unknown; explain a run trained by this version of the lab")
    try:
        return RunConfig.from_yaml(path.read_text(encoding="utf-8"))
    except ConfigError as e:
        raise AttributionError(f"{source}: its saved config cannot be read ({e}); retrain the run") from None


def load_classifier(source: str) -> tuple[torch.nn.Module, Any, list[str]]:
    """(model in eval mode, tokenizer, class names) of a classification checkpoint.

    ``source`` is ``run:<id>`` of a finished classification run, its checkpoint folder, or a
    folder / hub id whose config is a ``...ForSequenceClassification``. A model with a fresh head (a bundled or
    tiny model) would explain noise, so it is refused.
    """
    if not isinstance(source, str) or not source.strip():
        raise AttributionError(f"model source {source!r} is empty; give run:<id> of a finished classification run")
    source = source.strip()
    cfg = run_config(source)
    if cfg is not None:
        if cfg.task != "classification":
            raise AttributionError(f"{source} is a {cfg.task} run, not a classification run; token attributions "
                                   "explain a class prediction: pick a finished classification run")
        path = models.resolve_path(source)
    else:
        info = models.describe(source)
        if not str(info.get("arch", "")).endswith("ForSequenceClassification"):
            raise AttributionError(f"{source} is not a classification checkpoint (architecture {info.get('arch')}); "
                                   "its class head would be untrained: fine-tune it first and explain run:<id>")
        path = info["path"]
    stamp = _stamp(path)
    return _load(source, stamp)


def _stamp(path: str) -> float:
    """The checkpoint's weights' modification time: a resumed run's new weights are a new model."""
    p = Path(path)
    files = list(p.glob("*.safetensors")) if p.is_dir() else []
    return max((f.stat().st_mtime for f in files), default=0.0)


@functools.lru_cache(maxsize=4)
def _load(source: str, stamp: float) -> tuple[torch.nn.Module, Any, list[str]]:
    from transformers import AutoConfig

    path = models.resolve_path(source)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    num_labels = int(config.num_labels)
    model = models.load_model(source, "classification", num_labels).eval()
    tokenizer = models.load_tokenizer(source)
    cfg = run_config(source)
    names = _label_names(cfg, num_labels) if cfg is not None else \
        [str(config.id2label.get(i, f"class {i}")) for i in range(num_labels)]
    return model, tokenizer, names


def _label_names(cfg: Any, num_labels: int) -> list[str]:
    try:
        names = eval_examples_for(cfg)[1]
    except Exception:  # data no longer readable: the classes still have ids
        names = []
    return names if len(names) == num_labels else [f"class {i}" for i in range(num_labels)]


def eval_examples(source: str) -> tuple[list[dict], list[str]]:
    """The eval examples ({"text", "label"}) of run ``run:<id>`` and its class names: the same
    held-out split it was evaluated on (same data, seed, eval_fraction and n_eval)."""
    cfg = run_config(source)
    if cfg is None:
        raise AttributionError(f"{source!r} is not a run; eval examples belong to a run: give run:<id> or its "
                               "checkpoint folder")
    if cfg.task != "classification":
        raise AttributionError(f"{source} is a {cfg.task} run, not a classification run; pick a classification run")
    return eval_examples_for(cfg)


def eval_examples_for(cfg: Any) -> tuple[list[dict], list[str]]:
    from hft_core.data import load_data

    d = load_data(cfg.data, "classification", text_column=cfg.text_column, label_column=cfg.label_column,
                  n_eval=cfg.n_eval, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    return d.eval, d.label_names


# ---- attributions -----------------------------------------------------------------------------
def explain(source: str, text: str, *, true_label: int | None = None, targets: Sequence[int] | None = None,
            n_steps: int = N_STEPS, max_length: int = MAX_LENGTH) -> Explanation:
    """Integrated-Gradients attributions of ``text``'s tokens toward classes of ``source``'s prediction.

    targets: the classes to attribute toward; default the predicted class and ``true_label``
    (when given and different). Each is one captum call with ``n_steps`` interpolation steps.
    """
    if not isinstance(text, str) or not text.strip():
        raise AttributionError("the text to explain is empty; type a sentence or pick an eval example")
    if not isinstance(n_steps, int) or n_steps < 2:
        raise AttributionError(f"n_steps={n_steps!r} is not valid: use a whole number of at least 2, e.g. 50")
    model, tokenizer, names = load_classifier(source)
    if true_label is not None and not 0 <= int(true_label) < len(names):
        raise AttributionError(f"true_label={true_label!r} is not a class of {source}; its classes are 0..{len(names) - 1}")
    enc = tokenizer(text.strip(), truncation=True, max_length=max_length, return_tensors="pt")
    ids = enc["input_ids"]
    mask = torch.ones_like(ids)
    baseline = baseline_ids(ids, tokenizer, models.model_kind(source) == models.ENCODER)
    with _LOCK:
        probs, base_probs = _probabilities(model, ids, mask), _probabilities(model, baseline, mask)
        predicted = int(probs.argmax())
        chosen = list(targets) if targets is not None else \
            list(dict.fromkeys([predicted] + ([int(true_label)] if true_label is not None else [])))
        for c in chosen:
            if not 0 <= int(c) < len(names):
                raise AttributionError(f"target class {c!r} is not a class of {source}; its classes are "
                                       f"0..{len(names) - 1}")
        scores, deltas = {}, {}
        for c in chosen:
            s, d = _integrated_gradients(model, ids, baseline, mask, int(c), n_steps)
            scores[int(c)], deltas[int(c)] = s, d
    return Explanation(source=source, text=text.strip(), tokens=tokenizer.convert_ids_to_tokens(ids[0].tolist()),
                       label_names=names, probs=probs.tolist(), base_probs=base_probs.tolist(), predicted=predicted,
                       true_label=None if true_label is None else int(true_label), scores=scores, delta=deltas,
                       n_steps=n_steps)


def compare_runs(sources: Sequence[str], text: str, *, true_label: int | None = None, n_steps: int = N_STEPS,
                 max_length: int = MAX_LENGTH) -> list[Explanation]:
    """The same text explained by several runs (e.g. alpha 1 vs alpha 0), each toward its own
    predicted class and the true one."""
    return [explain(s, text, true_label=true_label, n_steps=n_steps, max_length=max_length) for s in sources]


def baseline_ids(input_ids: torch.Tensor, tokenizer: Any, encoder: bool = True) -> torch.Tensor:
    """(1, L) ids of the baseline: every token that is not special becomes [PAD] (decoders: [UNK]
    when the tokenizer has one distinct from its pad token); [CLS], [SEP] and the like stay."""
    token = tokenizer.pad_token_id
    if not encoder and tokenizer.unk_token_id is not None and tokenizer.unk_token_id != tokenizer.pad_token_id:
        token = tokenizer.unk_token_id
    special = torch.isin(input_ids, torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype))
    return torch.where(special, input_ids, torch.full_like(input_ids, token))


def forward_probs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) ids -> (B, C) softmax probabilities: the function whose output is attributed."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits.float().softmax(-1)


@torch.no_grad()
def _probabilities(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return forward_probs(model, ids, mask)[0]


def _integrated_gradients(model: torch.nn.Module, ids: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor,
                          target: int, n_steps: int) -> tuple[list[float], float]:
    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(lambda i, m: forward_probs(model, i, m), model.get_input_embeddings())
    attr, delta = lig.attribute(ids, baselines=baseline, target=target, additional_forward_args=(mask,),
                                n_steps=n_steps, internal_batch_size=max(1, min(n_steps, 64)),
                                return_convergence_delta=True)
    return attr.sum(-1)[0].detach().float().tolist(), float(delta.reshape(-1)[0])


# ---- rendering (the Runs page and the notebook) ------------------------------------------------
UP = (230, 97, 1)       # orange (#e66101): toward the class
DOWN = (33, 102, 172)   # blue (#2166ac): against it
MAX_ALPHA = 0.85
MIN_SCALE = 0.02        # probability: attributions below this never get the full colour
HIDDEN = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}


def colour(score: float, scale: float) -> tuple[str, str]:
    """(background, text colour) CSS for an attribution ``score`` out of ``scale`` (the row's largest |score|)."""
    share = 0.0 if scale <= 0 else min(1.0, abs(score) / scale)
    r, g, b = UP if score >= 0 else DOWN
    alpha = round(MAX_ALPHA * share, 3)
    return f"rgba({r}, {g}, {b}, {alpha})", ("#ffffff" if alpha > 0.55 else "#111111")


def words(tokens: Sequence[str], scores: Sequence[float]) -> list[tuple[str, float, bool]]:
    """(piece, score, starts a new word) per visible token: special tokens are left out (their
    attribution is 0: the baseline keeps them); WordPiece '##' pieces join the word before them."""
    out = []
    for t, s in zip(tokens, scores):
        if t in HIDDEN:
            continue
        if t.startswith("##"):
            out.append((t[2:], s, False))
        elif t.startswith(("Ġ", "▁")):  # byte-level BPE / SentencePiece mark a leading space
            out.append((t[1:], s, True))
        else:
            out.append((t, s, True))
    return out


def tokens_html(tokens: Sequence[str], scores: Sequence[float]) -> str:
    """The text as coloured token spans; each span's tooltip gives its attribution."""
    pieces = words(tokens, scores)
    # full colour = the row's largest |attribution|, but never less than MIN_SCALE: a model whose
    # prediction hardly depends on the words shows pale tokens, not loud noise
    scale = max([abs(s) for _, s, _ in pieces] + [MIN_SCALE])
    spans = []
    for i, (piece, s, new_word) in enumerate(pieces):
        bg, fg = colour(s, scale)
        gap = " " if new_word and i else ""
        spans.append(f'{gap}<span title="{html.escape(piece)}: {s:+.4f}" style="background:{bg};color:{fg};'
                     f'padding:1px 0">{html.escape(piece)}</span>')  # pieces of a word abut; words keep their space
    return f'<div style="line-height:1.9;font-size:0.95rem">{"".join(spans)}</div>'


def legend_html() -> str:
    up, down = colour(1, 1)[0], colour(-1, 1)[0]
    return (f'<span style="background:{up};color:#fff;padding:1px 6px;border-radius:3px">toward the class</span> '
            f'<span style="background:{down};color:#fff;padding:1px 6px;border-radius:3px">against it</span> '
            f'<span style="color:#666">· stronger colour = larger share of the row\'s largest attribution (or of '
            f'{MIN_SCALE:g} probability, when all are smaller); hover a token for its value</span>')
