"""RunConfig: one flat, typed description of a training run.

Every field carries its help text in ``metadata["help"]``; the dashboard shows it as
a tooltip and the CLI as ``--help``. Validation happens in ``__post_init__`` and
raises ``ConfigError`` with the field name, the bad value and what to do.

The strategy mix is a mapping ``name -> config dataclass`` of the *enabled*
strategies, e.g. ``{"blend": BlendConfig(alpha=0.5), "kd": KDConfig(...)}``.
The config classes live next to their strategies in ``hft_core/strategies/`` and
are looked up in the registry, so adding a strategy never touches this file.

Round trip: ``RunConfig.from_dict(cfg.to_dict()) == cfg``, and the same through
YAML and JSON (``to_yaml`` / ``from_yaml``, ``to_json`` / ``from_json``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import yaml

from hft_core import baselines
from hft_core.fields import ConfigError, check, coerce_numbers, help_of, param  # noqa: F401 (re-exported)
from hft_core.strategies import base as registry

TASKS = ("classification", "causal-lm", "masked-lm", "contrastive")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class StrategyMix:
    """The enabled strategies, by registry name, each with its own config dataclass."""

    strategies: dict[str, Any] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.strategies

    def __getitem__(self, name: str) -> Any:
        return self.strategies[name]

    def __iter__(self):
        return iter(self.strategies)

    def __len__(self) -> int:
        return len(self.strategies)

    def items(self):
        return self.strategies.items()

    def get(self, name: str, default: Any = None) -> Any:
        return self.strategies.get(name, default)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(c) for name, c in self.strategies.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "StrategyMix":
        out: dict[str, Any] = {}
        for name, values in (d or {}).items():
            if values is False or values is None:
                continue  # `kd: false` in YAML means "off"
            spec = registry.get_spec(name)  # raises ConfigError for unknown names
            values = {} if values is True else dict(values)
            known = {f.name for f in fields(spec.config_cls)}
            unknown = set(values) - known
            check(not unknown, f"mix.{name}", sorted(unknown),
                  f"unknown field(s); {name} takes {sorted(known)}")
            out[name] = spec.config_cls(**values)
        mix = cls(out)
        registry.check_combination(mix)
        return mix


@dataclass
class RunConfig:
    """Everything that defines a run. Saved with the run and with every checkpoint."""

    model: str = param("bundled:minilm-l6", "Model source: 'bundled:minilm-l6', 'bundled:smollm2-135m', "
                       "'tiny:bert', 'tiny:gpt2', 'hub:<id>' (needs a hub), 'run:<id>' (an earlier run's "
                       "checkpoint) or a local folder path.")
    task: str = param("classification", "'classification' (a label per text), 'causal-lm' (next-token "
                      "prediction, e.g. instruction tuning), or pretraining an encoder on unlabelled text: "
                      "'masked-lm' (BERT's recipe) or 'contrastive' (two windows of one article are a pair, "
                      "the batch's other articles negatives; SimCSE-style InfoNCE).")
    data: str = param("bundled:bbc-news", "Data source: 'bundled:bbc-news' (5 topics), 'bundled:qa' "
                      "(Q/A pairs), 'hub:<name>' (needs a hub) or a local .csv/.jsonl/.parquet file.")
    mix: StrategyMix = field(default_factory=StrategyMix, metadata={
        "help": "The strategy mix: enabled strategies by name with their settings."})
    precision: str = param("auto", "'auto' picks the fastest safe choice for the device; 'fp32', "
                           "'bf16' (autocast) or 'fp16' (autocast + loss scaling, CUDA only).")
    text_column: str = param("", "Column holding the text in a local/hub dataset; empty = guess "
                             "('text', 'sentence', 'content', ...).")
    label_column: str = param("", "Column holding the label (classification); empty = guess ('label', ...).")
    n_train: int = param(0, "Use only this many training examples (few-shot); 0 = all.")
    n_eval: int = param(200, "Evaluate on this many held-out examples; 0 = all.")
    eval_fraction: float = param(0.2, "Share of the data held out for evaluation (seeded split).")
    max_length: int = param(128, "Truncate texts to this many tokens.")
    corpus_vocab: int = param(0, "0 = the model's own tokenizer. N > 0 (a tiny:bert model, built from scratch): a "
                              "WordPiece vocabulary of N words learnt from this run's training texts (never the "
                              "eval texts), as BERT's was learnt from its corpus; e.g. 4000.")
    init_std: float = param(0.0, "0 = the model's own init. > 0: the std of the normal draws for freshly "
                            "initialised weights (a model from scratch, a new head); BERT's is 0.02.")
    batch_size: int = param(16, "Examples per step on each device.")
    grad_accum: int = param(1, "Accumulate gradients over this many batches per optimizer step.")
    max_steps: int = param(60, "Optimizer steps to train.")
    lr: float = param(1e-4, "Peak learning rate.")
    weight_decay: float = param(0.01, "AdamW weight decay (0 when L2-SP is on is usual).")
    optimizer: str = param("adamw", "'adamw' or 'sgd'.")
    schedule: str = param("linear", "Learning-rate schedule after warmup: 'constant', 'linear' or 'cosine'.")
    warmup_steps: int = param(0, "Linear warmup steps.")
    max_grad_norm: float = param(1.0, "Clip the gradient norm to this; 0 = no clipping.")
    eval_every: int = param(20, "Evaluate every this many steps (and always at the end); 0 = only at the end.")
    eval_at_start: bool = param(False, "Also evaluate before the first step (a step-0 point on the eval curves, "
                                "and the untrained model's sample answers for causal-lm).")
    log_every: int = param(1, "Log training metrics every this many steps.")
    checkpoint_every: int = param(50, "Save a resumable checkpoint every this many steps (a killed run resumes "
                                  "from the last one); 0 = only at the end and when stopped.")
    seed: int = param(0, "Seed for the data split, order, initialisation and augmentation.")
    device: str = param("auto", "'auto' (CUDA if present), 'cpu', 'cuda' or 'cuda:N'.")
    name: str = param("", "A name for the run (shown in charts); empty = generated.")
    group: str = param("", "Group name: runs of one sweep or preset share it.")

    def __post_init__(self) -> None:
        coerce_numbers(self)
        if isinstance(self.mix, Mapping):
            self.mix = StrategyMix.from_dict(self.mix)
        check(isinstance(self.model, str) and self.model.strip() != "", "model", self.model,
              "give a model source such as 'bundled:minilm-l6' or 'tiny:bert'")
        check(self.task in TASKS, "task", self.task, f"choose one of {list(TASKS)}")
        check(isinstance(self.data, str) and self.data.strip() != "", "data", self.data,
              "give a data source such as 'bundled:bbc-news' or a path to a .csv file")
        check(self.precision in PRECISIONS, "precision", self.precision, f"choose one of {list(PRECISIONS)}")
        check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"choose one of {list(OPTIMIZERS)}")
        check(self.schedule in SCHEDULES, "schedule", self.schedule, f"choose one of {list(SCHEDULES)}")
        for name in ("batch_size", "max_steps", "max_length", "grad_accum", "log_every"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, name, v, "use a whole number of at least 1")
        for name in ("n_train", "n_eval", "eval_every", "checkpoint_every", "warmup_steps", "seed"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 0, name, v, "use a whole number of 0 or more")
        if baselines.is_baseline(self.model):
            problem = baselines.check_config(self)
            check(not problem, "model", self.model, problem)
        check(isinstance(self.corpus_vocab, int) and (self.corpus_vocab == 0 or 100 <= self.corpus_vocab <= 100_000),
              "corpus_vocab", self.corpus_vocab, "use 0 (the model's own tokenizer) or a vocabulary size between "
              "100 and 100000, e.g. 4000")
        check(self.corpus_vocab == 0 or self.model.strip().startswith("tiny:bert"), "corpus_vocab", self.corpus_vocab,
              f"a vocabulary learnt from the corpus needs a model built from scratch, but model is {self.model!r} "
              "(its embeddings belong to its own tokenizer): use model tiny:bert or tiny:bert-small, or corpus_vocab 0;"
              " a run that fine-tunes a pretraining run (run:<id>) reads that run's tokenizer by itself")
        check(isinstance(self.init_std, (int, float)) and 0 <= self.init_std <= 1, "init_std", self.init_std,
              "use 0 (the model's own init) or a std between 0 and 1, e.g. 0.02")
        check(self.max_length <= 8192, "max_length", self.max_length, "use at most 8192 tokens")
        check(0 < self.lr < 1, "lr", self.lr, "use a learning rate between 0 and 1, e.g. 1e-4")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "use 0 or a positive number")
        check(self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm, "use 0 (off) or a positive number")
        check(0 < self.eval_fraction < 1, "eval_fraction", self.eval_fraction, "use a fraction between 0 and 1, e.g. 0.2")
        check(self.warmup_steps < self.max_steps or self.warmup_steps == 0, "warmup_steps", self.warmup_steps,
              f"use fewer warmup steps than max_steps ({self.max_steps})")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps",
              "device", self.device, "use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        registry.check_task(self.mix, self.task)

    # ---- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "mix"}
        d["mix"] = self.mix.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(unknown)}; valid fields are {sorted(known)}")
        d["mix"] = StrategyMix.from_dict(d.get("mix"))
        return cls(**d)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "RunConfig":
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"the config is not valid YAML: {e}") from None
        if not isinstance(d, Mapping):
            raise ConfigError(f"a config must be a mapping of field: value, got {type(d).__name__}")
        return cls.from_dict(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str) -> "RunConfig":
        """Read a YAML or JSON config file."""
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path!r}: {e.strerror}") from None
        return cls.from_json(text) if path.endswith(".json") else cls.from_yaml(text)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "RunConfig":
        """A copy with dotted keys set, e.g. {"lr": 3e-4, "mix.blend.alpha": 0.5, "mix.kd": True}."""
        d = self.to_dict()
        for key, value in overrides.items():
            *path, last = key.split(".")
            target = d
            for i, p in enumerate(path):
                if path[0] == "mix" and i > 0 and not isinstance(target.get(p), dict):
                    target[p] = {}  # enabling a strategy by setting one of its fields
                if not isinstance(target.get(p), dict):
                    raise ConfigError(f"--set {key}: {p!r} is not a config section; sections: ['mix']")
                target = target[p]
            if target is d and last not in d:
                raise ConfigError(f"--set {key}: unknown field {last!r}; valid fields are {sorted(d)}")
            target[last] = value
        return RunConfig.from_dict(d)

    def cli_command(self) -> str:
        """The equivalent `python -m hft_core train` command line."""
        base = RunConfig()
        parts = ["python -m hft_core train"]
        for k, v in self.to_dict().items():
            if k == "mix":
                for sname, sval in v.items():
                    defaults = dataclasses.asdict(type(self.mix[sname])())
                    changed = {fk: fv for fk, fv in sval.items() if fv != defaults.get(fk)}
                    if not changed:
                        parts.append(f"--set mix.{sname}=true")
                    for fk, fv in changed.items():
                        parts.append(f"--set mix.{sname}.{fk}={_cli_value(fv)}")
            elif v != getattr(base, k):
                parts.append(f"--set {k}={_cli_value(v)}")
        return " \\\n  ".join(parts)


def _cli_value(v: Any) -> str:
    """``v`` as the YAML that ``parse_set`` reads back to ``v``, quoted for a POSIX shell.

    A string YAML would read as something else ("123", "true", "a: b") is written as a YAML
    double-quoted scalar, so it comes back a string: ``--set name='"123"'``.
    """
    import shlex

    if isinstance(v, str):
        try:
            plain = yaml.safe_load(v) == v  # reads back as itself
        except yaml.YAMLError:
            plain = False
        s = v if plain else yaml.safe_dump(v, default_style='"', width=10**9).strip()
    else:
        s = yaml.safe_dump(v, default_flow_style=True, width=10**9).strip()
        if s.endswith("..."):  # a bare scalar ends its YAML document with "..."
            s = s[:-3].strip()
    return shlex.quote(s)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse CLI ``key=value`` items; values are YAML scalars (1e-4, true, [1,2], 'text')."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set lr=3e-4")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v) if v != "" else ""
        except yaml.YAMLError:
            out[k.strip()] = v
    return out
