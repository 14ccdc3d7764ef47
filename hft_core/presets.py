"""Presets: small teaching experiments, each a stated question with an expected outcome.

A preset is one YAML file in ``presets/``::

    title: Fine-tune vs train from scratch
    lesson: blend                  # the Learn page lesson it belongs to
    question: Does starting from pretrained weights matter with 200 examples?
    expected: alpha 1 > alpha 0.5 > alpha 0 in eval accuracy ...
    look_for: what to watch in the curves
    metric: eval/accuracy          # the key metric: the bench's table and the checks use it
    minutes: 3                     # wall time of all variants, one seed, on an idle 2-core CPU (estimate)
    base: {model: bundled:minilm-l6, max_steps: 40, ...}      # RunConfig fields
    variants:
      - {label: "alpha 1 (fine-tune)", set: {mix.blend.alpha: 1.0}}   # dotted overrides on base
      - {label: "teacher", id: teacher, set: {...}}                     # `id`: others may refer to it
      - {label: "student + KD", set: {mix.kd.teacher: "run:{teacher}"}}  # ... as {teacher}: its run id
      - {label: "pretrain", id: pretrain, metric: eval/perplexity, set: {task: masked-lm}}  # own key metric
    seeds: [0, 1, 2]
    checks:                        # the expected direction, checked by bench/presets.py
      - {higher: "alpha 1 (fine-tune)", lower: "alpha 0 (scratch)"}       # on `metric` unless given
      - {near: ["LoRA", "full"], tol: 0.05, metric: eval/accuracy}
      - {higher: "bf16", lower: "fp32", metric: samples_per_s, when: bf16 native}   # only on such a device
      - {higher: "full", lower: "LoRA", metric: "eval/accuracy@10"}       # the value logged at step 10
    after: {wise_ft: {of: finetune, points: 11}}   # optional post-training step (WiSE-FT sweep)
    quick: {model: tiny:bert, max_steps: 4}        # overrides for tests and HFT_NOTEBOOK_QUICK runs
    result: what bench/presets.py measured, written honestly (shown on the page)

A variant whose values mention ``{some_id}`` runs after the variant with that id
(same seed) and gets its run id substituted, so distillation can name a teacher
trained moments earlier (in quick mode too: the quick overrides never replace such a
reference). ``write_plain_configs`` writes each variant as a plain RunConfig YAML that
``python -m hft_core train --config`` takes.
"""
from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from hft_core import baselines, stats
from hft_core.config import ConfigError, RunConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
KEYS = {"title", "lesson", "question", "expected", "look_for", "metric", "minutes", "base", "variants", "seeds",
        "checks", "after", "quick", "result"}
REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Variant:
    label: str                           # shown in charts and tables; also the run's name
    set: dict[str, Any] = field(default_factory=dict)   # dotted overrides on the preset's base
    id: str = ""                         # a name other variants use as "{id}" for this run's id
    metric: str = ""                     # its own key metric (a pretraining run: eval/perplexity); "" = the preset's

    @property
    def needs(self) -> set[str]:
        """Ids of the variants this one refers to (must run first)."""
        return {m for v in self.set.values() if isinstance(v, str) for m in REF.findall(v)}


@dataclass(frozen=True)
class Check:
    """One expected direction: ``higher``'s mean of ``metric`` above ``lower``'s, or the ``near`` labels'
    means within ``tol`` of each other. (For a loss, where lower is better, name the worse run ``higher``.)"""

    metric: str
    higher: str = ""
    lower: str = ""
    near: tuple[str, ...] = ()
    tol: float = 0.0
    when: str = ""          # "" always; "bf16 native" / "bf16 emulated": only on such a device (WHEN)

    def describe(self) -> str:
        where = f" (only where {self.when.replace(' ', ' is ')})" if self.when else ""
        if self.near:
            return f"{' ~ '.join(self.near)} on {self.metric} (within {self.tol:g}){where}"
        return f"{self.higher} > {self.lower} on {self.metric}{where}"

    def holds(self, means: Mapping[str, float]) -> bool:
        """Does the check hold for these per-label means of ``metric``?"""
        if self.near:
            vals = [means[label] for label in self.near]
            return max(vals) - min(vals) <= self.tol
        return means[self.higher] > means[self.lower]


WHEN = ("", "bf16 native", "bf16 emulated")


@functools.lru_cache(maxsize=None)  # the hardware does not change; judging reruns every 2 s on Compare
def device_case(device: str = "cpu") -> str:
    """Which hardware case ``device`` is for the checks that depend on it: "bf16 native" (a CPU with
    avx512_bf16/AMX, a GPU of compute capability 8.0 or later) or "bf16 emulated"."""
    from hft_core.placement import resolve_device
    from hft_core.precision import describe_device

    info = describe_device(resolve_device(device))
    native = info.cpu_has_fast_bf16 if info.type == "cpu" else info.type == "cuda" and info.capability >= (8, 0)
    return "bf16 native" if native else "bf16 emulated"


def applies(check: "Check", device: str = "cpu") -> bool:
    """Does ``check`` apply on ``device`` (this machine's, where the runs are judged)?"""
    return not check.when or check.when == device_case(device)


def checks_here(preset: "Preset") -> list["Check"]:
    """The preset's checks that apply on its device here (a hardware check only in its own case)."""
    device = str(preset.base.get("device", "cpu"))
    return [c for c in preset.checks if applies(c, device)]


@dataclass(frozen=True)
class Preset:
    name: str                            # file stem, e.g. "finetune_vs_scratch"
    title: str
    question: str
    expected: str
    look_for: str
    base: dict[str, Any]
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    metric: str = "eval/accuracy"
    lesson: str = ""
    minutes: float = 0.0
    checks: tuple[Check, ...] = ()
    after: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    result: str = ""
    path: str = ""

    @property
    def labels(self) -> list[str]:
        """Variant labels, then the labels of post-training results (WiSE-FT: "a=0.0" ... "a=1.0")."""
        extra = wise_ft_labels(int(self.after["wise_ft"].get("points", 11))) if "wise_ft" in self.after else []
        return [v.label for v in self.variants] + extra

    def metric_of(self, label: str) -> str:
        """The key metric of one label: the variant's own ``metric`` if it has one, else the preset's."""
        return next((v.metric for v in self.variants if v.label == label and v.metric), self.metric)


# ---- loading ---------------------------------------------------------------------------

# The sweeps of hft_core.label_budget are named after their preset, so a group's name says what it holds:
# "<preset>_by_labels" (its default budgets) or "<preset>_by_labels_25_50", and "<preset>_by_pretraining_steps".
BY_LABELS, BY_STEPS = "_by_labels", "_by_pretraining_steps"
SWEEP_NAME = re.compile(rf"^(?P<base>.+?)(?:(?P<labels>{BY_LABELS})(?P<budgets>(?:_\d+)*)|(?P<steps>{BY_STEPS}))$")


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by name ("finetune_vs_scratch") or path; every variant is validated as a RunConfig."""
    p = Path(name_or_path)
    if not p.suffix and not (PRESET_DIR / f"{p}.yaml").exists():
        # a sweep of a preset, named by the preset it was made from (so a group's name says which):
        # "<preset>_by_labels" its label-budget sweep, "<preset>_by_pretraining_steps" its pretraining-budget
        # sweep of its first pretraining variant
        from hft_core import label_budget as LB

        m = SWEEP_NAME.match(str(p))
        if m and m["labels"]:
            budgets = [int(n) for n in m["budgets"].split("_") if n] or LB.LABEL_BUDGETS
            return LB.label_budget_preset(load_preset(m["base"]), budgets)
        if m and m["steps"]:
            base = load_preset(m["base"])
            return LB.pretraining_budget_preset(base, next((v.id for v in base.variants if v.id), ""))
    if not p.suffix:
        p = PRESET_DIR / f"{p}.yaml"
    if not p.exists():
        raise ConfigError(f"preset {str(name_or_path)!r} not found (looked for {p}); available: "
                          f"{[q.stem for q in sorted(PRESET_DIR.glob('*.yaml'))]}")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {p.name} is not valid YAML: {e}") from None
    return parse_preset(d, name=p.stem, path=str(p))


def parse_preset(d: Any, name: str, path: str = "") -> Preset:
    where = f"preset {name}"
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: expected a mapping with keys {sorted(KEYS)}, got {type(d).__name__}")
    unknown = set(d) - KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; a preset has {sorted(KEYS)}")
    for key in ("title", "question", "expected", "look_for", "base", "variants"):
        if not d.get(key):
            raise ConfigError(f"{where}: '{key}' is missing or empty")
    variants = []
    for i, v in enumerate(d["variants"]):
        if not isinstance(v, Mapping) or not v.get("label"):
            raise ConfigError(f"{where}: variant {i + 1} needs a 'label' (and 'set': overrides), got {v!r}")
        extra = set(v) - {"label", "set", "id", "metric"}
        if extra:
            raise ConfigError(f"{where}: variant {v['label']!r} has unknown key(s) {sorted(extra)}; use label, set, id, "
                              "metric")
        variants.append(Variant(str(v["label"]), dict(v.get("set") or {}), str(v.get("id", "")), str(v.get("metric", ""))))
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where}: variant labels must differ, got {labels}")
    ids = {v.id for v in variants if v.id}
    for v in variants:
        missing = v.needs - ids
        if missing:
            raise ConfigError(f"{where}: variant {v.label!r} refers to {sorted(missing)} but no variant has that id; "
                              f"ids: {sorted(ids)}")
    after = dict(d.get("after") or {})
    unknown_after = set(after) - {"wise_ft"}
    if unknown_after:
        raise ConfigError(f"{where}: unknown post-training step(s) {sorted(unknown_after)}; supported: ['wise_ft']")
    if "wise_ft" in after:
        w = after["wise_ft"]
        if not isinstance(w, Mapping) or w.get("of") not in ids:
            raise ConfigError(f"{where}: after.wise_ft needs 'of': the id of the fine-tuning variant (ids: "
                              f"{sorted(ids)}), got {w!r}")
        if int(w.get("points", 11)) < 2:
            raise ConfigError(f"{where}: after.wise_ft.points={w.get('points')!r}: use at least 2")
        labels = labels + wise_ft_labels(int(w.get("points", 11)))
    metric = str(d.get("metric", "eval/accuracy"))
    checks = []
    for c in d.get("checks") or []:
        c = dict(c)
        c.setdefault("metric", metric)
        if "near" in c:
            c["near"] = tuple(c["near"])
        try:
            chk = Check(**c)
        except TypeError as e:
            raise ConfigError(f"{where}: bad check {c!r} ({e}); use higher/lower or near/tol, and metric") from None
        if chk.when not in WHEN:
            raise ConfigError(f"{where}: check {c!r}: when={chk.when!r}; use one of {sorted(w for w in WHEN if w)} "
                              f"(a check that holds only on such a device), or leave it out")
        if "@" in chk.metric and not chk.metric.rsplit("@", 1)[1].isdigit():
            raise ConfigError(f"{where}: check {c!r}: metric {chk.metric!r} names no step; write it as "
                              f"'eval/accuracy@10' (the value logged at step 10)")
        for label in (*chk.near, *(x for x in (chk.higher, chk.lower) if x)):
            if label not in labels:
                raise ConfigError(f"{where}: check {c!r} names {label!r}, which is not a variant label; labels: {labels}")
        checks.append(chk)
    seeds = tuple(int(s) for s in d.get("seeds") or (0,))
    preset = Preset(name=name, title=str(d["title"]), question=str(d["question"]).strip(),
                    expected=str(d["expected"]).strip(), look_for=str(d["look_for"]).strip(), base=dict(d["base"]),
                    variants=tuple(variants), seeds=seeds, metric=metric, lesson=str(d.get("lesson", "")),
                    minutes=float(d.get("minutes") or 0), checks=tuple(checks), after=after,
                    quick=dict(d.get("quick") or {}), result=str(d.get("result") or "").strip(), path=path)
    preset_runs(preset)             # validates every variant now, with the preset's name in the message
    preset_runs(preset, quick=True)
    return preset


def list_presets(folder: str | Path | None = None) -> list[Preset]:
    """Every preset in ``presets/``, sorted by file name."""
    return [load_preset(p) for p in sorted(Path(folder or PRESET_DIR).glob("*.yaml"))]


def presets_for(lesson: str) -> list[Preset]:
    """The presets that demonstrate one Learn-page lesson (its strategy name)."""
    return [p for p in list_presets() if p.lesson == lesson]


# ---- configs ---------------------------------------------------------------------------

def ordered(preset: Preset) -> list[Variant]:
    """Variants in an order where every referenced variant comes before the ones that refer to it."""
    done: list[Variant] = []
    pending = list(preset.variants)
    while pending:
        ready = [v for v in pending if v.needs <= {d.id for d in done if d.id}]
        if not ready:
            raise ConfigError(f"preset {preset.name}: variants refer to each other in a circle: "
                              f"{[v.label for v in pending]}")
        done += ready
        pending = [v for v in pending if v not in ready]
    return done


def variant_config(preset: Preset, variant: Variant, seed: int | None = None, *, quick: bool = False,
                   resolve: Mapping[str, str] | None = None, group: str = "") -> RunConfig:
    """The RunConfig of one variant: base, then the variant's overrides, then (quick) the preset's quick ones.

    ``resolve`` maps variant ids to run ids for the ``{id}`` placeholders; without it the
    placeholders stay in the config (it is still valid, but cannot train until resolved).
    """
    overrides = {k: _substitute(v, resolve) for k, v in variant.set.items()}
    try:
        cfg = RunConfig.from_dict(preset.base).with_overrides(overrides)
        if quick and preset.quick:
            cfg = cfg.with_overrides(preset.quick)
            # a reference to another variant's run (model: "run:{pretrain}") stays one in quick mode
            refs = {k: v for k, v in overrides.items() if isinstance(variant.set[k], str) and REF.search(variant.set[k])}
            # so does a baseline (it is quick already), and such a variant keeps its own vocabulary setting
            if baselines.is_baseline(overrides.get("model", "")):
                refs["model"] = overrides["model"]
            if "model" in refs and "corpus_vocab" in overrides:
                refs["corpus_vocab"] = overrides["corpus_vocab"]
            cfg = cfg.with_overrides(refs) if refs else cfg
        extra = {"name": variant.label, "group": group or cfg.group}
        if seed is not None:
            extra["seed"] = seed
        return cfg.with_overrides(extra)
    except ConfigError as e:
        raise ConfigError(f"preset {preset.name}, variant {variant.label!r}: {e}") from None


def preset_runs(preset: Preset, seeds: Iterable[int] | None = None, *, quick: bool = False,
                resolve: Mapping[str, str] | None = None, group: str = "") -> list[tuple[str, RunConfig]]:
    """[(label, RunConfig)] for every variant (dependency order) and seed.

    ``seeds`` None: the preset's first seed only (one comparison, the preset's stated
    ``minutes``). The run name is the label, the same across seeds, so the dashboard
    groups a label's seeds into one band.
    """
    seeds = list(seeds) if seeds is not None else list(preset.seeds[:1])
    return [(v.label, variant_config(preset, v, s, quick=quick, resolve=resolve, group=group))
            for s in seeds for v in ordered(preset)]


def write_plain_configs(preset: Preset, out_dir: str | Path, *, quick: bool = False) -> list[Path]:
    """Write each variant (first seed) as a plain RunConfig YAML for ``python -m hft_core train --config``.

    A variant that refers to another run keeps its ``run:{id}`` placeholder and says in
    a comment which run to train first and what to put there.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in ordered(preset):
        cfg = variant_config(preset, v, preset.seeds[0], quick=quick)
        head = f"# preset {preset.name}: {v.label}\n# {preset.question}\n"
        for dep in sorted(v.needs):
            src = next(x for x in preset.variants if x.id == dep)
            head += f"# first train variant {src.label!r}, then replace {{{dep}}} below with its run id\n"
        p = out / f"{preset.name}--{_slug(v.label)}.yaml"
        p.write_text(head + cfg.to_yaml(), encoding="utf-8")
        paths.append(p)
    return paths


def is_preset_file(path: str | Path) -> bool:
    """True when a YAML file is a preset (has ``variants``) rather than a plain RunConfig."""
    try:
        d = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(d, Mapping) and "variants" in d and "base" in d


def load_run_config(path: str | Path, variant: str = "") -> RunConfig:
    """A RunConfig from a plain config file or from a preset file (for ``train --config``).

    For a preset: the variant whose label is ``variant`` (or starts with it), else the first
    variant that needs no other run. Its seed is the preset's first seed.
    """
    if not is_preset_file(path):
        return RunConfig.load(str(path))
    preset = load_preset(path)
    choices = [v for v in ordered(preset) if not v.needs]
    if variant:
        choices = [v for v in preset.variants if v.label == variant] or \
                  [v for v in preset.variants if v.label.lower().startswith(variant.lower())]
        if not choices:
            raise ConfigError(f"preset {preset.name} has no variant {variant!r}; its variants: {preset.labels}")
        if choices[0].needs:
            raise ConfigError(f"preset {preset.name}, variant {choices[0].label!r} needs the run id of "
                              f"{sorted(choices[0].needs)}: run the whole preset instead")
    return variant_config(preset, choices[0], preset.seeds[0])


# ---- running ---------------------------------------------------------------------------

def group_name(preset: Preset, when: float | None = None) -> str:
    return f"{preset.name}-{time.strftime('%m%d-%H%M%S', time.localtime(when or time.time()))}"


def group_configs(preset: Preset, seeds: Iterable[int] | None = None, *, quick: bool = False) -> list[RunConfig] | None:
    """The training configs of ``preset``'s group (one per variant and seed), for an estimate; None
    when a variant trains from another's result (its model is known only once that run exists)."""
    if any(v.needs for v in preset.variants):
        return None
    seeds = list(seeds) if seeds is not None else list(preset.seeds[:1])
    return [variant_config(preset, v, s, quick=quick) for s in seeds for v in ordered(preset)]


def submit_preset(target: Any, preset: Preset, seeds: Iterable[int] | None = None, *, quick: bool = False,
                  group: str = "", reserve: Any = None) -> tuple[str, list[str]]:
    """Queue every run of ``preset`` as one group; returns (group, run ids in queue order).

    ``target``: a RunManager (the app: its workers train them) or a foreground Worker
    (``reserve``d runs only that worker trains: the CLI and the bench). ``seeds`` None: the
    preset's first seed (one comparison). A variant that refers to another (``run:{teacher}``)
    is queued with that run's id filled in and waits for it to finish (if the teacher fails,
    the student fails too, saying so); the WiSE-FT step is a queued job that waits likewise.
    Returns at once: the queue does the ordering, in any process.
    """
    from hft_core import jobs

    group = group or group_name(preset)
    seeds = list(seeds) if seeds is not None else list(preset.seeds[:1])
    ids: list[str] = []
    if reserve is None and not quick:  # side by side as measured: the measurement goes first (schedule.py)
        from hft_core import schedule

        schedule.queue_measurements(target, [variant_config(preset, v, s, group=group) for s in seeds
                                                    for v in ordered(preset) if not v.needs])
    for seed in seeds:
        run_of: dict[str, str] = {}
        for v in ordered(preset):
            cfg = variant_config(preset, v, seed, quick=quick, resolve=run_of, group=group)
            needs = [run_of[d] for d in sorted(v.needs)]
            if reserve is not None:
                run_id = reserve.reserve(cfg, group=group, name=v.label, after=needs)
            else:
                run_id = target.submit(cfg, group=group, name=v.label, after=needs)
            ids.append(run_id)
            if v.id:
                run_of[v.id] = run_id
        if "wise_ft" in preset.after:
            spec = {"of": run_of[preset.after["wise_ft"]["of"]], "points": int(preset.after["wise_ft"].get("points", 11))}
            if reserve is not None:
                ids.append(jobs.submit_job(reserve.store, "wise_ft", spec, group=group, reserved_for=reserve.id))
            else:
                ids.append(target.submit_job("wise_ft", spec, group=group))
    return group, ids


def run_preset_here(preset: Preset, seeds: Iterable[int] | None = None, *, quick: bool = False, store: Any = None,
                    group: str = "", log: Callable[[str], None] | None = None) -> "Outcome":
    """Queue every run of ``preset`` and train them in this process, in their turn; returns the Outcome.

    The runs go through the store's queue like any other (one group; the app's Live page
    shows them, Stop there stops them, a failure keeps its traceback); a foreground worker
    of this process trains them one after another. For the bench, the CLI and notebooks.
    """
    from hft_core.placement import resolve_device
    from hft_core.runs import Worker
    from hft_core.store import RunStore

    store = store if store is not None else RunStore()
    log = log or (lambda msg: None)
    device = resolve_device(RunConfig.from_dict(preset.base).device)
    worker = Worker(store, device, role="foreground")
    try:
        group, ids = submit_preset(None, preset, seeds, quick=quick, group=group, reserve=worker)
        log(f"{preset.name}: {len(ids)} runs queued as group {group!r} on {device}")
        t0 = {"t": time.perf_counter(), "c": time.process_time()}
        seconds: dict[str, list[float]] = {}
        cpu_seconds: dict[str, list[float]] = {}  # CPU time of this process: wall time on a busy machine misleads

        def timed(rid: str) -> None:
            rec = store.get_run(rid)
            seconds.setdefault(rec.name, []).append(time.perf_counter() - t0["t"])
            cpu_seconds.setdefault(rec.name, []).append(time.process_time() - t0["c"])
            t0["t"], t0["c"] = time.perf_counter(), time.process_time()
            log(f"{preset.name} {rec.name!r} (seed {rec.seed}): {rec.status}, {preset.metric}="
                f"{store.last_metrics(rid).get(preset.metric, float('nan')):.4g} in {seconds[rec.name][-1]:.0f}s "
                f"(run {rid})" + (f": {rec.error}" if rec.error else ""))

        for rid in ids:  # one at a time, in queue order, so each gets its own timing line
            worker.work_on([rid], on_wait=lambda m: log(f"waiting: {m}"))
            timed(rid)
    finally:
        worker.close(wait=False)
    return outcome_of(preset, store, ids, group, seconds=seconds, cpu_seconds=cpu_seconds,
                      quick=quick)


def outcome_of(preset: Preset, store: Any, run_ids: Iterable[str], group: str = "", *,
               seconds: Mapping[str, list[float]] | None = None,
               cpu_seconds: Mapping[str, list[float]] | None = None, quick: bool | None = None) -> "Outcome":
    """The Outcome of a preset's runs as they are in the store (finished runs only are counted).

    ``quick`` None: decided from the runs' configs (``is_quick_run``). A quick outcome's checks
    are "not judged (quick check)": a few steps of a tiny model check the plumbing, not the lesson.
    """
    per_label: dict[str, dict[str, list[float]]] = {}
    per_seed: dict[str, dict[str, dict[int, float]]] = {}   # label -> metric -> seed -> final value
    quick_runs: list[bool] = []
    run_ids_by_label: dict[str, list[str]] = {}
    sample_lines: dict[str, list[str]] = {}   # causal-lm: the generations logged at the end (first seed)
    failed: dict[str, str] = {}
    for rid in run_ids:
        rec = store.get_run(rid)
        if rec.status != "finished":
            failed[rid] = f"{rec.name}: {rec.status}" + (f" ({rec.error})" if rec.error else "")
            continue
        if rec.kind == "wise_ft":  # one label per point: "a=0.3"
            df = store.metrics(rid)
            for step, g in df.groupby("step"):
                label = f"a={step / 100:.1f}"
                for name, value in zip(g["name"], g["value"]):
                    per_label.setdefault(label, {}).setdefault(name, []).append(float(value))
                    per_seed.setdefault(label, {}).setdefault(name, {})[_seed_of(rec)] = float(value)
            continue
        run_ids_by_label.setdefault(rec.name, []).append(rid)
        quick_runs.append(is_quick_run(preset, rec))
        samples = [m for _, _, m in store.events(rid) if m.startswith("sample at step")]
        if samples and rec.name not in sample_lines:
            sample_lines[rec.name] = [f"(seed {_seed_of(rec)})", *samples]
        for k, val in summarise_run(store, rid, at={c.metric for c in preset.checks if "@" in c.metric}).items():
            per_label.setdefault(rec.name, {}).setdefault(k, []).append(val)
            per_seed.setdefault(rec.name, {}).setdefault(k, {})[_seed_of(rec)] = val
    values = {label: d.get(preset.metric_of(label), []) for label, d in per_label.items()}
    quick = bool(quick_runs) and all(quick_runs) if quick is None else quick
    return Outcome(preset, values, judge(preset, per_label), dict(seconds or {}),
                   {"per_label": per_label, "per_seed": per_seed, "group": group, "run_ids": run_ids_by_label,
                    "samples": sample_lines, "cpu_seconds": dict(cpu_seconds or {}), "failed": failed},
                   verdicts=judge_paired(preset, per_seed, quick=quick), quick=quick)


def _seed_of(rec: Any) -> int:
    seed = rec.seed if rec.seed is not None else rec.config.get("seed", 0)
    return int(seed)


def is_quick_run(preset: Preset, rec: Any) -> bool:
    """Was this run of ``preset`` made with its ``quick`` overrides (tiny model, a few steps)?

    Decided from the run's own config: on every field where the variant's quick config differs
    from its full one, the run has the quick value. A preset without ``quick`` has no quick runs.
    """
    variant = next((v for v in preset.variants if v.label == rec.name), None)
    if variant is None or not preset.quick:
        return False
    full = variant_config(preset, variant).to_dict()
    short = variant_config(preset, variant, quick=True).to_dict()
    differ = [k for k in short if k not in ("name", "group", "seed") and short[k] != full.get(k)]
    return bool(differ) and all(rec.config.get(k) == short[k] for k in differ)


THROUGHPUT = ("samples_per_s", "tokens_per_s")


def summarise_run(store: Any, run_id: str, at: Iterable[str] = ()) -> dict[str, float]:
    """One number per metric for a finished run: the last value, except throughput, which is the
    mean over the run's steps after the first (the first step includes warm-up). ``at``: metrics
    at a step, "eval/accuracy@10" (a check on the early gap), added where the run logged them."""
    df = store.metrics(run_id)
    out: dict[str, float] = {}
    for key in at:
        name, step = key.rsplit("@", 1)
        hit = df[(df["name"] == name) & (df["step"] == int(step))]
        if len(hit):
            out[key] = float(hit["value"].iloc[-1])
    for name, g in df.groupby("name"):
        g = g.sort_values("step")
        if name in THROUGHPUT:
            vals = g["value"].iloc[1:] if len(g) > 1 else g["value"]
            out[name] = float(vals.mean())
        else:
            out[name] = float(g["value"].iloc[-1])
    return out


def wise_ft_labels(points: int) -> list[str]:
    return [f"a={i / (points - 1):.1f}" for i in range(points)]


# ---- results ---------------------------------------------------------------------------

@dataclass
class Outcome:
    """Per-label values of the preset's key metric (one per seed) and whether each check held."""

    preset: Preset
    values: dict[str, list[float]]                      # label -> one value per seed
    check_results: list[tuple[Check, bool | None]]      # None: not measurable (missing label/metric)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    verdicts: list["CheckVerdict"] = field(default_factory=list)   # per check: paired by seed, three words
    quick: bool = False                                            # quick mode: checks not judged

    def mean_sd(self, label: str) -> tuple[float, float]:
        import statistics

        xs = self.values.get(label, [])
        if not xs:
            return float("nan"), float("nan")
        return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0

    @property
    def held(self) -> bool | None:
        rs = [r for _, r in self.check_results]
        return None if not rs or any(r is None for r in rs) else all(rs)


def judge(preset: Preset, per_label: Mapping[str, Mapping[str, list[float]]]) -> list[tuple[Check, bool | None]]:
    """Evaluate the checks on per-label, per-metric lists of values (means across seeds)."""
    import statistics

    out: list[tuple[Check, bool | None]] = []
    for c in checks_here(preset):
        labels = list(c.near) or [c.higher, c.lower]
        try:
            means = {label: statistics.fmean(per_label[label][c.metric]) for label in labels}
        except (KeyError, statistics.StatisticsError):
            out.append((c, None))
            continue
        out.append((c, c.holds(means)))
    return out


# ---- a user's own runs of a preset against its expected outcome -------------------------------

GROUP_STAMP = re.compile(r"^(?P<name>.+)-\d{4}-\d{6}(-quick)?$")  # group_name(): "<preset>-MMDD-HHMMSS"; the app
# adds "-quick" to a quick check's group (ui.launch.start_preset)


@dataclass(frozen=True)
class CheckVerdict:
    """One check of a preset judged on a group of runs, paired by seed (``hft_core.stats``).

    ``verdict`` is one of stats.VERDICTS: "held with confidence" (the 95% interval of the
    paired difference lies on the expected side and every seed agrees), "held on the mean",
    "did not hold", "not measurable" (a label without a finished run) or "not judged (quick
    check)". ``held`` is the plain comparison of means (True/False/None), as before.
    """

    check: Check
    held: bool | None               # None: not measurable yet (a label has no finished run with the metric)
    means: dict[str, float]         # label -> mean of the metric's final values over its finished runs
    runs: dict[str, int]            # label -> how many finished runs gave a value
    missing: tuple[str, ...] = ()   # labels without a value: why it is not measurable
    verdict: str = stats.NOT_MEASURABLE
    differences: tuple[stats.PairedDifference, ...] = ()   # higher - lower, or each pair of `near`
    estimates: dict[str, stats.Estimate] = field(default_factory=dict)   # label -> mean with its interval

    @property
    def expect(self) -> str:
        return "near" if self.check.near else "higher"

    def held_on(self) -> tuple[int, int]:
        """(seeds on which the expectation held on every pair, paired seeds)."""
        if not self.differences:
            return 0, 0
        seeds = set.intersection(*(set(d.seeds) for d in self.differences))
        ok = {s for s in seeds if all(
            stats.seeds_held(_one_seed(d, s), self.expect, self.check.tol) for d in self.differences)}
        return len(ok), len(seeds)


def _one_seed(diff: stats.PairedDifference, seed: int) -> stats.PairedDifference:
    i = diff.seeds.index(seed)
    return stats.PairedDifference(diff.a, diff.b, (seed,), (diff.diffs[i],), diff.estimate)


def judge_paired(preset: Preset, per_seed: Mapping[str, Mapping[str, Mapping[int, float]]], *, quick: bool = False,
                 confidence: float = stats.CONFIDENCE, method: str = "t") -> list[CheckVerdict]:
    """Judge every check on final values paired by seed (``label -> metric -> {seed: value}``).

    A ``higher`` check compares higher - lower; a ``near`` check every pair of its labels (the
    weakest pair decides). The means and ``held`` are over all finished runs of each label;
    the verdict is over the seeds both labels of a pair have.
    """
    import statistics

    out = []
    for check in checks_here(preset):  # the hardware's case only (Check.when)
        labels = list(check.near) or [check.higher, check.lower]
        values = {label: dict(per_seed.get(label, {}).get(check.metric, {})) for label in labels}
        missing = tuple(label for label, v in values.items() if not v)
        means = {label: statistics.fmean(v.values()) for label, v in values.items() if v}
        held = None if missing else check.holds(means)
        estimates = {label: stats.mean_interval([v[s] for s in sorted(v)], confidence, method)
                     for label, v in values.items() if v}
        pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]
        diffs = tuple(stats.paired_difference(values[a], values[b], confidence, method, labels=(a, b))
                      for a, b in pairs) if not missing else ()
        if quick:
            verdict = stats.NOT_JUDGED_QUICK
        elif missing:
            verdict = stats.NOT_MEASURABLE
        else:
            expect = "near" if check.near else "higher"
            verdict = stats.worst(stats.verdict(d, expect, check.tol) for d in diffs)
        out.append(CheckVerdict(check, held, means, {label: len(v) for label, v in values.items()}, missing,
                                verdict, diffs, estimates))
    return out


def preset_of_group(group: str) -> str:
    """The preset name in a group made by ``group_name`` ("lora_vs_full-1126-101500" -> "lora_vs_full"; a quick
    check's "lora_vs_full-1126-101500-quick" too), else ""."""
    m = GROUP_STAMP.match(group or "")
    return m.group("name") if m else ""


def preset_named(name: str) -> Preset | None:
    """The preset called ``name`` (a group's ``preset_of_group``): one of the preset files, or a sweep of one
    ("<preset>_by_labels", "<preset>_by_pretraining_steps"); None when there is no such preset."""
    known = {p.name for p in list_presets()}
    m = SWEEP_NAME.match(name or "")
    if name in known or (m and m["base"] in known):
        try:
            return load_preset(name)
        except ConfigError:
            return None
    return None


def preset_groups(store: Any, preset: Preset) -> list[str]:
    """The store's groups made by running ``preset`` (newest first)."""
    return sorted((g for g in store.groups() if preset_of_group(g) == preset.name), reverse=True)


def judge_group(store: Any, group: str, preset: Preset | None = None) -> list[CheckVerdict]:
    """Judge the user's own finished runs of a preset group against the preset's expected outcome.

    Every check of the preset gets a verdict (held with confidence / held on the mean / did not
    hold / not measurable: a label with no finished run, or a metric its runs never logged),
    with the means and paired differences it was judged on: the same aggregation and the same
    ``judge_paired`` as the bench (``outcome_of``). Runs still queued, running, failed or stopped
    are not counted; a group of one seed is judged on that seed (at best "held on the mean": one
    seed gives no interval); a group of quick runs is not judged.
    """
    if preset is None:
        name = preset_of_group(group)
        if not name:
            raise ConfigError(f"group {group!r} was not made by a preset (expected '<preset>-MMDD-HHMMSS'); "
                              f"pick a preset's group")
        preset = load_preset(name)
    runs = store.list_runs(group=group)
    return outcome_of(preset, store, [r.id for r in runs], group).verdicts


def _substitute(value: Any, resolve: Mapping[str, str] | None) -> Any:
    if not resolve or not isinstance(value, str):
        return value
    return REF.sub(lambda m: resolve.get(m.group(1), m.group(0)), value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
