"""The Train form in the page's URL: only what differs from its starting point (and Compare's selection).

A reload keeps the form, and a copied link opens the same form in another browser:

    /?model=bundled:minilm-l6&lr=0.0001&mix.blend.alpha=0.5
    /?preset=finetune_vs_scratch&variant=alpha-0-5-half-and-half&max_steps=20

Keys are the CLI's ``--set`` keys (``lr``, ``mix.blend.alpha``, ``mix.l2sp=true``), values
YAML scalars, so a link and a command line read the same. The starting point is the quick
demo, or the preset variant named by ``preset``/``variant``.

Reading a link never fails: an unknown key, a value the config refuses or a preset that no
longer exists is skipped, and each skip becomes a note the page shows. Pure functions (no
streamlit), unit-tested; the page reads ``st.query_params`` once per session and writes
them back after every run.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping, Sequence

import yaml

from hft_core.config import ConfigError, RunConfig

PRESET, VARIANT = "preset", "variant"
RESERVED = ("embed", "embed_options")  # Streamlit's own query parameters
FIRST_KEYS = ("model", "task", "data")  # applied first: later keys are validated against them


def last_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters as one string each: a key given twice keeps its last value."""
    return {k: (v[-1] if isinstance(v, (list, tuple)) else str(v)) for k, v in params.items()}


def slug(text: str) -> str:
    """'alpha 0.5 (half and half)' -> 'alpha-0-5-half-and-half' (a variant's name in a link)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def encode_value(v: Any) -> str:
    """A YAML scalar as the CLI takes it: 0.0001, true, tiny:bert, '[query, value]'."""
    s = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    return s.removesuffix("...").strip()


def decode_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def config_params(cfg: RunConfig | Mapping[str, Any], base: RunConfig | Mapping[str, Any]) -> dict[str, str]:
    """The dotted keys whose value in ``cfg`` differs from ``base``, encoded for a URL.

    A strategy ``cfg`` enables gets its fields that differ from that strategy's defaults (a
    field alone enables it, as with ``--set``); when none differ, its headline field (blend's
    alpha) or else ``mix.<name>=true``. One ``base`` has and ``cfg`` lacks: ``mix.<name>=false``.
    """
    from hft_core.strategies.base import get_spec

    cur = cfg.to_dict() if isinstance(cfg, RunConfig) else dict(cfg)
    ref = base.to_dict() if isinstance(base, RunConfig) else dict(base)
    out: dict[str, str] = {}
    for k, v in cur.items():
        if k != "mix" and v != ref.get(k):
            out[k] = encode_value(v)
    cur_mix, ref_mix = dict(cur.get("mix") or {}), dict(ref.get("mix") or {})
    for name, values in cur_mix.items():
        values = dict(values or {})
        if name in ref_mix:
            against = dict(ref_mix[name] or {})
        else:
            against = dataclasses.asdict(get_spec(name).config_cls())
        changed = {f: v for f, v in values.items() if v != against.get(f)}
        if name not in ref_mix and not changed:
            headline = next((f.name for f in dataclasses.fields(get_spec(name).config_cls)
                             if f.metadata.get("headline") and f.name in values), None)
            if headline:  # mix.blend.alpha=0.5 says more than mix.blend=true
                changed = {headline: values[headline]}
            else:
                out[f"mix.{name}"] = "true"
        for f, v in changed.items():
            out[f"mix.{name}.{f}"] = encode_value(v)
    for name in ref_mix:
        if name not in cur_mix:
            out[f"mix.{name}"] = "false"
    return out


def _order(keys: Iterable[str]) -> list[str]:
    """model, task, data, then the RunConfig fields in declaration order, then strategies (on/off first)."""
    names = [f.name for f in dataclasses.fields(RunConfig)]
    rank = {k: i for i, k in enumerate(FIRST_KEYS)}

    def key(k: str) -> tuple:
        if k in rank:
            return (0, rank[k], k)
        if k in names:
            return (1, names.index(k), k)
        return (2, k.count("."), k)
    return sorted(keys, key=key)


def apply_params(base: RunConfig, params: Mapping[str, str]) -> tuple[RunConfig, list[str], list[str]]:
    """``base`` with the link's config keys applied: (config, keys applied, notes on keys skipped).

    Each key is applied and validated on its own, so one bad key costs only itself. Keys that
    fail are tried once more at the end (``warmup_steps=30`` may need the ``max_steps=60`` that
    sorts after it).
    """
    cfg = base
    applied: list[str] = []
    failed: dict[str, str] = {}
    keys = [k for k in _order(params) if k not in (PRESET, VARIANT, *RESERVED)]
    known = {f.name for f in dataclasses.fields(RunConfig)} - {"mix"}
    for k in [k for k in keys if k.split(".")[0] not in known and not k.startswith("mix.")]:
        failed[k] = "not a setting of the form"
        keys.remove(k)
    for attempt in (0, 1):
        retry = []
        for k in keys:
            raw = params[k]
            try:
                cfg = cfg.with_overrides({k: decode_value(raw)})
            except (ConfigError, ValueError, TypeError) as e:
                failed[k] = str(e)
                retry.append(k)
            else:
                failed.pop(k, None)
                applied.append(k)
        keys = retry
        if not keys:
            break
    notes = [f"{k}={params[k]!r} ignored: {why}" for k, why in failed.items()]
    return cfg, applied, notes


@dataclasses.dataclass(frozen=True)
class LinkedForm:
    """What a link asks for: the preset and variant (None: the quick demo), the config, and notes."""

    preset: Any            # the Preset, or None
    variant: str | None    # the variant's label
    config: RunConfig
    applied: tuple[str, ...]
    notes: tuple[str, ...]


def read_link(params: Mapping[str, str], presets: Mapping[str, Any], quick_demo: RunConfig,
              variant_config: Any) -> LinkedForm:
    """Turn query parameters into a form: never raises; everything skipped is in ``notes``.

    ``presets``: preset name (file stem) -> Preset; ``variant_config(preset, label)`` -> RunConfig.
    A preset that does not exist (renamed, deleted) voids the whole link: its other keys were
    changes to that preset, meaningless on the quick demo.
    """
    params = last_values(params)
    name = params.get(PRESET)
    if name is not None and name not in presets:
        return LinkedForm(None, None, quick_demo, (), (
            f"preset={name!r} from the link does not exist (presets: {', '.join(sorted(presets)) or 'none'}): "
            "the form shows the quick demo, and the link's other settings were ignored",))
    notes: list[str] = []
    preset, label, base = None, None, quick_demo
    if name is None and VARIANT in params:
        notes.append(f"variant={params[VARIANT]!r} ignored: the link names no preset")
    if name is not None:
        preset = presets[name]
        labels = [v.label for v in preset.variants]
        wanted = params.get(VARIANT)
        label = labels[0]
        if wanted is not None:
            match = [lb for lb in labels if wanted in (lb, slug(lb))]
            if match:
                label = match[0]
            else:
                notes.append(f"variant={wanted!r} ignored: preset {name} has "
                             f"{', '.join(slug(lb) for lb in labels)}; showing {slug(label)}")
        try:
            base = variant_config(preset, label)
        except (ConfigError, ValueError) as e:
            return LinkedForm(None, None, quick_demo, (), (f"preset={name!r} cannot be loaded ({e}): the form "
                                                           "shows the quick demo",))
    cfg, applied, skipped = apply_params(base, params)
    return LinkedForm(preset, label, cfg, tuple(applied), tuple(notes + skipped))


def form_params(cfg: RunConfig | Mapping[str, Any] | None, base: RunConfig, preset_name: str | None = None,
                variant_label: str | None = None, first_variant: str | None = None) -> dict[str, str]:
    """The query parameters of a form: preset, variant (unless the first), and the config's changes."""
    out: dict[str, str] = {}
    if preset_name:
        out[PRESET] = preset_name
        if variant_label and variant_label != first_variant:
            out[VARIANT] = slug(variant_label)
    if cfg is not None:
        out.update(config_params(cfg, base))
    return out


# ---- Compare's selection -------------------------------------------------------------------------
# /compare?group=finetune_vs_scratch-ab12&metric=eval/accuracy   or   /compare?runs=ab12cd,ef34gh

def compare_params(group: str, runs: Sequence[str], metric: str) -> dict[str, str]:
    """Compare's selection as query parameters: the group (its runs follow), or the runs picked by hand."""
    out = {"group": group} if group else {"runs": ",".join(runs)} if runs else {}
    return {**out, "metric": metric} if out and metric else out


def read_compare(params: Mapping[str, Any], run_ids: Iterable[str], groups: Iterable[str]
                 ) -> tuple[str, list[str] | None, str | None, list[str]]:
    """(group, runs, metric, notes) from a Compare link. ``runs`` None: the link names none (the page
    picks its default); a group or run that no longer exists is skipped with a note, never an error."""
    params = last_values(params)
    known, notes = set(run_ids), []
    group = params.get("group", "")
    if group and group not in set(groups):
        notes.append(f"group={group!r} from the link has no runs in this store: pick runs or a group above")
        group = ""
    runs = None
    if "runs" in params and not group:
        wanted = [r.strip() for r in params["runs"].split(",") if r.strip()]
        runs = [r for r in wanted if r in known]
        if len(runs) < len(wanted):
            missing = [r for r in wanted if r not in known]
            notes.append(f"run{'s' if len(missing) > 1 else ''} {', '.join(missing)} from the link "
                         "not in this store (deleted, or another HFT_HOME): left out")
    return group, runs, params.get("metric") or None, notes
