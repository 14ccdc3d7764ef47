"""Train: pick a recipe, adjust it, Start (or start a sweep).

widgets -> st.session_state -> RunConfig (ui.form_state) -> RunManager.submit -> run id.

Every config widget sits outside the form, so the config preview, the command line
and the device check follow each change at once. Only Start sits in a form, and its
submit button's key carries a token renewed after every start: Enter in a field plus
a click, or a double click, reaches a button that no longer exists and starts nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import uuid
from pathlib import Path

import streamlit as st
import torch

from hft_core import data as data_sources
from hft_core import models as model_sources
from hft_core import presets as preset_lib
from hft_core.config import OPTIMIZERS, PRECISIONS, SCHEDULES, TASKS, ConfigError, RunConfig, help_of
from hft_core.home import hft_home
from hft_core.precision import PrecisionError, describe_device, plan_precision
from hft_core.strategies.base import all_specs
from ui import form_state as fs
from ui import state as ui_state
from ui.fields import PERSIST, field_widget

ui_state.through_app()  # first: a page opened by its URL on a fresh server runs inside app.py

ss = st.session_state
SPECS = all_specs()
SPEC_BY_NAME = {s.name: s for s in SPECS}
HAS_BLEND = "blend" in SPEC_BY_NAME
BLEND_ALPHA_FIELD = next((f for f in dataclasses.fields(SPEC_BY_NAME["blend"].config_cls) if f.name == "alpha"),
                         None) if HAS_BLEND else None


def _with_prefix(name: str, prefix: str) -> str:
    return name if ":" in name else prefix + name


MODEL_OPTIONS: dict[str, str] = {_with_prefix(k, "bundled:"): v for k, v in model_sources.bundled_models().items()}
for _k, _v in fs.TINY_MODELS.items():
    MODEL_OPTIONS.setdefault(_k, _v)
MODEL_OPTIONS[fs.CUSTOM] = "Another source: hub:<id>, a local folder, or run:<id> (an earlier run's checkpoint)"
DATA_OPTIONS: dict[str, str] = {_with_prefix(k, "bundled:"): v for k, v in data_sources.bundled_datasets().items()}
DATA_OPTIONS[fs.UPLOAD] = "Upload a file (CSV, JSONL or Parquet)"
DATA_OPTIONS[fs.CUSTOM] = "A local file path, or hub:<name>"

MAIN_FIELDS = ("max_steps", "batch_size", "lr", "seed", "eval_every", "n_train")
OWN_WIDGETS = ("name", "group", "precision", "device", "text_column", "label_column")  # drawn elsewhere
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS}
UPLOAD_TYPES = ["csv", "tsv", "jsonl", "json", "parquet"]


# ---- presets ---------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _load_presets(stamp: tuple) -> tuple[dict, dict]:
    """(title -> Preset, title -> error message); reloaded when a preset file changes."""
    good, bad = {}, {}
    for p in sorted(preset_lib.PRESET_DIR.glob("*.yaml")):
        try:
            pr = preset_lib.load_preset(p)
            good[pr.title] = pr
        except ConfigError as e:
            bad[p.stem] = str(e)
    return good, bad


def presets() -> tuple[dict, dict]:
    files = sorted(preset_lib.PRESET_DIR.glob("*.yaml")) if preset_lib.PRESET_DIR.is_dir() else []
    return _load_presets(tuple((p.name, p.stat().st_mtime) for p in files))


PRESETS, PRESET_ERRORS = presets()


def _apply_config(cfg: RunConfig) -> None:
    for k, v in fs.config_to_state(cfg, SPECS, MODEL_OPTIONS, DATA_OPTIONS).items():
        ss[k] = v
    if cfg.data not in DATA_OPTIONS:
        ss["f.upload_path"] = None


def _preset_variant_config(title: str, label: str | None) -> RunConfig:
    pr = PRESETS[title]
    v = next((v for v in pr.variants if v.label == label), pr.variants[0])
    return preset_lib.variant_config(pr, v, pr.seeds[0])


def _on_preset() -> None:
    ss["f.loaded_from"] = None
    title = ss["f.preset"]
    if title == fs.QUICK_DEMO:
        _apply_config(fs.quick_demo_config())
    elif title in PRESETS:
        ss["f.variant"] = PRESETS[title].variants[0].label
        _apply_config(_preset_variant_config(title, ss["f.variant"]))


def _on_variant() -> None:
    if ss.get("f.preset") in PRESETS:
        _apply_config(_preset_variant_config(ss["f.preset"], ss["f.variant"]))


def _on_yaml_upload() -> None:
    up = ss.get("f.yaml_upload")
    if up is None:
        return
    try:
        cfg = RunConfig.from_yaml(up.getvalue().decode("utf-8", errors="replace"))
    except ConfigError as e:
        ss["f.yaml_error"] = f"{up.name}: {e}"
        return
    ss["f.yaml_error"] = None
    _apply_config(cfg)


# ---- first visit: the quick demo; later visits: whatever the user left -------------------------
if "f.token" not in ss:
    ss["f.token"] = uuid.uuid4().hex
defaults = fs.config_to_state(fs.quick_demo_config(), SPECS, MODEL_OPTIONS, DATA_OPTIONS)
defaults.update({"f.preset": fs.QUICK_DEMO, "f.go_live": True, "f.sweep_alphas": [0.0, 0.5, 1.0],
                 "f.sweep_seeds": 1, "f.sweep_group": "", "f.preset_quick": False})
for k, v in defaults.items():
    if k not in ss:
        ss[k] = v
_pending = ss.pop("f.load_config", None)  # "Load into Train" on the Runs page
if _pending:
    try:
        _apply_config(RunConfig.from_dict({**_pending[1], "name": ""}))
        ss["f.loaded_from"] = _pending[0]
    except ConfigError as e:
        ss["f.loaded_from"] = None
        st.error(f"Run {_pending[0]}'s config cannot be loaded into the form: {e}")


# ---- helpers --------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _device_info(device: str):
    return describe_device(device)


def _resolved_device(device: str) -> str:
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def device_options() -> list[str]:
    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def precision_check(precision: str, device: str):
    """(plan, error message): what will run on the chosen device, or why it is refused."""
    dev = _resolved_device(device)
    if dev.startswith("cuda") and not torch.cuda.is_available():
        return None, f"device={device!r}, but no CUDA GPU is visible on this machine; choose 'auto' or 'cpu'."
    try:
        return plan_precision(precision, _device_info(dev)), None
    except PrecisionError as e:
        return None, str(e)


@st.cache_data(show_spinner=False, max_entries=16)
def _table_summary(path: str, mtime: float) -> tuple[int, list[str], object, tuple[str | None, str | None]]:
    df = data_sources.read_table(path, Path(path).name)
    text_col, label_col = data_sources.guess_columns(df)
    return len(df), [str(c) for c in df.columns], df.head(6), (text_col, label_col)


def table_summary(path: str):
    """(rows, columns, head, guessed columns) of a local table, or raises DataError / OSError."""
    p = Path(path).expanduser()
    return _table_summary(str(p), p.stat().st_mtime)


def save_upload(name: str, content: bytes) -> Path:
    """Keep an uploaded table under $HFT_HOME/uploads/ (content-addressed, so re-uploads reuse it)."""
    digest = hashlib.sha1(content).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name)[-80:] or "upload.csv"
    folder = hft_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}-{safe}"
    if not path.exists():
        path.write_bytes(content)
    return path


def check_upload(up) -> None:
    """Parse a new upload once: keep it (and guess its columns) or remember why it cannot be used."""
    content = up.getvalue()
    digest = hashlib.sha1(content).hexdigest()
    if ss.get("f.upload_digest") == digest:
        return
    ss["f.upload_digest"] = digest
    try:
        df = data_sources.read_table(io.BytesIO(content), up.name)
        text_col, label_col = data_sources.guess_columns(df)
    except data_sources.DataError as e:
        ss["f.upload_error"], ss["f.upload_path"] = f"{up.name} cannot be used: {e}", None
        return
    ss["f.upload_error"] = None
    ss["f.upload_path"] = str(save_upload(up.name, content))
    ss["cfg.text_column"], ss["cfg.label_column"] = text_col or "", label_col or ""
    n_train = int(ss.get("cfg.n_train", 0))
    if n_train and n_train > len(df) * (1 - float(ss.get("cfg.eval_fraction", 0.2))):
        ss["cfg.n_train"] = 0
        ss["f.upload_note"] = (f"n_train was {n_train}, more than {up.name} holds ({len(df)} rows): "
                               "set to 0, i.e. all training rows.")
    else:
        ss["f.upload_note"] = None


@st.cache_data(show_spinner=False, max_entries=32)
def _dry_load(path: str, mtime: float, task: str, text_column: str, label_column: str, n_train: int, n_eval: int,
              eval_fraction: float, seed: int) -> tuple[int, int, int]:
    """Load and split a local table exactly as the trainer will: (train, eval, classes) or DataError."""
    d = data_sources.load_data(path, task, text_column=text_column, label_column=label_column, n_train=n_train,
                               n_eval=n_eval, eval_fraction=eval_fraction, seed=seed)
    return len(d.train), len(d.eval), d.num_labels


DRY_LOAD_MAX_BYTES = 20 * 2**20  # larger files are checked by the run itself


# ---- the page --------------------------------------------------------------------------------
st.title("Train")
st.caption("Pick a recipe, press **Start**, watch it on **Live**. Runs keep training when you close the tab, "
           "and wait in a queue when the device is busy.")

preset_titles = [fs.QUICK_DEMO, *PRESETS]
if ss["f.preset"] not in preset_titles:
    ss["f.preset"] = fs.QUICK_DEMO
top_left, top_right = st.columns([2, 3], gap="large")
with top_left:
    st.selectbox("Preset", preset_titles, key="f.preset", on_change=_on_preset, persist_state=PERSIST,
                 help="A known-good starting point. Choosing one fills in the form below; change anything after.")
    chosen = PRESETS.get(ss["f.preset"])
    if ss.get("f.loaded_from"):
        st.caption(f"The form holds the config of run {ss['f.loaded_from']} (loaded from the Runs page).")
    elif chosen is None:
        st.caption("A tiny random BERT learns BBC News topics from 200 articles in 40 steps: "
                   "the first curve appears within seconds, no download needed.")
    else:
        labels = chosen.labels
        if ss.get("f.variant") not in labels:
            ss["f.variant"] = labels[0]
        st.selectbox("Variant loaded into the form", labels, key="f.variant", on_change=_on_variant,
                     help="A preset compares a few variants; pick the one to edit and start, or run them all.")
    for stem, err in PRESET_ERRORS.items():
        st.warning(f"Preset file {stem}.yaml could not be loaded: {err}")
with top_right:
    if HAS_BLEND:
        st.slider("alpha: 1 = fine-tune, 0 = from scratch", 0.0, 1.0, step=0.05, key="mix.blend.alpha",
                  persist_state=PERSIST,
                  help=(BLEND_ALPHA_FIELD.metadata.get("help") if BLEND_ALPHA_FIELD else "") +
                  " Below 1 turns on the alpha blend: the run starts from alpha x pretrained + (1 - alpha) x random.")
    if chosen is not None:
        st.info(f"**{chosen.question}**  \nExpected: {chosen.expected}", icon=":material/science:")
        if chosen.result:
            with st.expander("Measured on a 2-core CPU: what held and what did not"):
                st.markdown(chosen.result)

token = ss["f.token"]
preset_clicked = False
if chosen is not None:  # the whole comparison, queued as one group and opened on Compare
    n = len(chosen.variants)
    q1, q2, q3 = st.columns([2.2, 2.6, 4], vertical_alignment="center")
    preset_clicked = q1.button(f"Run all {n} variants of this preset", key=f"preset-{token}",
                               icon=":material/playlist_play:")
    q2.checkbox("Quick check: tiny models, a few steps", key="f.preset_quick", persist_state=PERSIST,
                help="Runs every variant with the preset's 'quick' settings (tiny random models, seconds "
                     "in all): checks that the whole comparison works before the real one. The numbers "
                     "mean nothing.")
    q3.caption(f"{n} variant(s) × seed {chosen.seeds[0]}"
               f"{f', about {chosen.minutes:g} min on 2 CPU cores' if chosen.minutes else ''}; "
               "or edit the loaded variant below and Start it alone.")
with st.form("start-form", enter_to_submit=True):
    c_name, c_group, c_live, c_start = st.columns([3, 2, 2, 1.3], vertical_alignment="bottom")
    c_name.text_input("Run name", key="cfg.name", placeholder="generated: model + strategies",
                      help=help_of(RunConfig, "name"), persist_state=PERSIST)
    c_group.text_input("Group", key="cfg.group", placeholder="optional", help=help_of(RunConfig, "group"),
                       persist_state=PERSIST)
    c_live.checkbox("Open Live after Start", key="f.go_live", persist_state=PERSIST)
    start_clicked = c_start.form_submit_button("Start", type="primary", icon=":material/play_arrow:",
                                               key=f"start-{token}", use_container_width=True)
summary_box = st.container()
message_box = st.container()

with st.expander("Sweep: several runs at once (alphas × seeds), queued as one group"):
    with st.form("sweep-form", enter_to_submit=False):
        s1, s2, s3, s4 = st.columns([3, 1.3, 2, 1.6], vertical_alignment="bottom")
        s1.multiselect("alpha values", [0.0, 0.25, 0.5, 0.75, 1.0], key="f.sweep_alphas", disabled=not HAS_BLEND,
                       persist_state=PERSIST,
                       help="One run per alpha (1 = fine-tune, 0 = from scratch); empty = keep the form's alpha.")
        s2.number_input("seeds", min_value=1, max_value=10, step=1, key="f.sweep_seeds", persist_state=PERSIST,
                        help="Runs per alpha, with seeds seed, seed+1, ...; Compare draws them as a mean and band.")
        s3.text_input("Sweep group", key="f.sweep_group", placeholder="generated: sweep-<time>",
                      persist_state=PERSIST)
        sweep_clicked = s4.form_submit_button("Start as sweep", icon=":material/grid_view:", key=f"sweep-{token}",
                                              use_container_width=True)

tab_data, tab_mix, tab_train, tab_cfg = st.tabs(["Model & data", "Strategy mix", "Training & precision",
                                                 "Config & command"])

# ---- model & data ----------------------------------------------------------------------------
data_source: str | None = None
data_error: str | None = None
with tab_data:
    left, right = st.columns(2, gap="large")
    with left:
        st.selectbox("Model", list(MODEL_OPTIONS), key="f.model_choice", persist_state=PERSIST,
                     format_func=lambda k: k if k != fs.CUSTOM else "Other source…",
                     help=help_of(RunConfig, "model"))
        if ss["f.model_choice"] == fs.CUSTOM:
            st.text_input("Model source", key="f.model_text", persist_state=PERSIST,
                          placeholder="hub:bert-base-uncased, /path/to/model_folder or run:r-3f9a2c",
                          help=help_of(RunConfig, "model"))
        else:
            st.caption(MODEL_OPTIONS[ss["f.model_choice"]])
        st.radio("Task", list(TASKS), key="f.task", horizontal=True, persist_state=PERSIST,
                 help=help_of(RunConfig, "task"))
    with right:
        st.selectbox("Data", list(DATA_OPTIONS), key="f.data_choice", persist_state=PERSIST,
                     format_func=lambda k: k if k not in (fs.CUSTOM, fs.UPLOAD) else DATA_OPTIONS[k],
                     help=help_of(RunConfig, "data"))
        choice = ss["f.data_choice"]
        table_path = None
        if choice == fs.UPLOAD:
            up = st.file_uploader("Your data: one example per row, a text column and (classification) a label "
                                  "column", type=UPLOAD_TYPES, key="f.upload")
            if up is not None:
                check_upload(up)
            if ss.get("f.upload_error"):
                data_error = ss["f.upload_error"]
                st.error(data_error)
            elif ss.get("f.upload_path"):
                table_path = ss["f.upload_path"]
                if up is None:
                    st.caption(f"Using the file uploaded earlier: {Path(table_path).name[11:]}")
            else:
                data_error = "no file uploaded yet: choose a CSV, JSONL or Parquet file above."
        elif choice == fs.CUSTOM:
            st.text_input("Data source", key="f.data_text", persist_state=PERSIST,
                          placeholder="/path/to/data.csv (or .jsonl, .parquet) or hub:ag_news",
                          help=help_of(RunConfig, "data"))
            text = (ss.get("f.data_text") or "").strip()
            if text and not text.startswith("hub:"):
                if Path(text).expanduser().is_file():
                    table_path = text
                else:
                    data_error = f"data file {text!r} does not exist; give the full path of a .csv/.jsonl/.parquet file."
                    st.error(data_error)
        else:
            st.caption(DATA_OPTIONS[choice])

        columns: list[str] = []
        guessed: tuple = ("", "")
        if table_path:
            try:
                n_rows, columns, head, guessed = table_summary(table_path)
            except (data_sources.DataError, OSError) as e:
                data_error = f"{Path(table_path).name} cannot be used: {e}"
                st.error(data_error)
            else:
                data_source = str(table_path) if choice == fs.UPLOAD else None
                st.caption(f"{n_rows} rows · columns: {', '.join(columns)}")
                st.dataframe(head, height=180, hide_index=True)
        col_t, col_l = st.columns(2)
        if columns:
            for key, label in (("cfg.text_column", "Text column"), ("cfg.label_column", "Label column")):
                if ss.get(key) not in ["", *columns]:
                    ss[key] = ""
            col_t.selectbox("Text column", ["", *columns], key="cfg.text_column", persist_state=PERSIST,
                            format_func=lambda c: c or "(guess)", help=help_of(RunConfig, "text_column"))
            col_l.selectbox("Label column", ["", *columns], key="cfg.label_column", persist_state=PERSIST,
                            format_func=lambda c: c or "(guess / none)", help=help_of(RunConfig, "label_column"))
            text_col = ss.get("cfg.text_column") or guessed[0]
            label_col = ss.get("cfg.label_column") or guessed[1]
            if not data_error and not text_col:
                data_error = (f"no text column found among {columns}: pick the column that holds the text "
                              "under 'Text column'.")
            elif not data_error and ss["f.task"] == "classification" and not label_col:
                data_error = (f"no label column found among {columns}: pick the column that holds the class "
                              "under 'Label column' (or choose the causal-lm task).")
            p = Path(table_path).expanduser()
            if not data_error and p.stat().st_size <= DRY_LOAD_MAX_BYTES:
                try:  # the same load and split the run will do: its errors show here, before Start
                    n_tr, n_ev, n_cls = _dry_load(str(p), p.stat().st_mtime, ss["f.task"],
                                                  ss.get("cfg.text_column", ""), ss.get("cfg.label_column", ""),
                                                  int(ss["cfg.n_train"]), int(ss["cfg.n_eval"]),
                                                  float(ss["cfg.eval_fraction"]), int(ss["cfg.seed"]))
                except data_sources.DataError as e:
                    data_error = str(e)
                else:
                    st.caption(f"Text from **{text_col}**" + (f", labels from **{label_col}** ({n_cls} classes)"
                                                              if ss["f.task"] == "classification" else "")
                               + f": {n_tr} training and {n_ev} eval examples.")
            if ss.get("f.upload_note") and choice == fs.UPLOAD:
                st.info(ss["f.upload_note"])
            if data_error:
                st.error(data_error)
        elif choice in (fs.CUSTOM,):
            col_t.text_input("Text column", key="cfg.text_column", persist_state=PERSIST,
                             help=help_of(RunConfig, "text_column"))
            col_l.text_input("Label column", key="cfg.label_column", persist_state=PERSIST,
                             help=help_of(RunConfig, "label_column"))

# ---- strategy mix ----------------------------------------------------------------------------
with tab_mix:
    if not SPECS:
        st.info("No strategies are installed yet: runs train the plain way (fine-tuning).")
    task = ss["f.task"]
    cols = st.columns(2, gap="medium")
    for i, spec in enumerate(SPECS):
        with cols[i % 2].container(border=True):
            on_key = f"mix.{spec.name}.on"
            fits = task in spec.tasks
            auto_on = spec.name == "blend" and float(ss.get("mix.blend.alpha", 1.0)) < 1.0
            title = spec.title + (f"  ·  {spec.reference}" if spec.reference else "")
            st.toggle(title, key=on_key, persist_state=PERSIST, disabled=(not fits and not ss.get(on_key)),
                      help=spec.summary)
            note = spec.summary
            if not fits:
                note += f" (only for {', '.join(spec.tasks)})"
            if auto_on and not ss.get(on_key):
                note += f" **On:** alpha = {float(ss['mix.blend.alpha']):g} on the slider at the top."
            if spec.conflicts:
                note += " Does not mix with " + ", ".join(spec.conflicts) + "."
            st.caption(note)
            if ss.get(on_key) or auto_on:
                fields = [f for f in dataclasses.fields(spec.config_cls)
                          if not (spec.name == "blend" and f.name == "alpha")]
                fcols = st.columns(min(3, max(1, len(fields))))
                for j, f in enumerate(fields):
                    with fcols[j % len(fcols)]:
                        field_widget(f, f"mix.{spec.name}.{f.name}")

# ---- training & precision --------------------------------------------------------------------
with tab_train:
    left, right = st.columns([3, 2], gap="large")
    fields_by_name = {f.name: f for f in fs.scalar_fields()}
    with left:
        grid = st.columns(3)
        for j, name in enumerate(MAIN_FIELDS):
            with grid[j % 3]:
                field_widget(fields_by_name[name], f"cfg.{name}", label=name.replace("_", " "))
        with st.expander("More settings"):
            rest = [f for f in fs.scalar_fields() if f.name not in MAIN_FIELDS + OWN_WIDGETS]
            grid = st.columns(3)
            for j, f in enumerate(rest):
                with grid[j % 3]:
                    field_widget(f, f"cfg.{f.name}", choices=CHOICES.get(f.name))
    with right:
        field_widget(fields_by_name["precision"], "cfg.precision", choices=PRECISIONS)
        if ss.get("cfg.device") not in device_options():
            ss["cfg.device"] = "auto"
        field_widget(fields_by_name["device"], "cfg.device", choices=device_options())
        plan, precision_error = precision_check(ss["cfg.precision"], ss["cfg.device"])
        if plan is not None:
            st.success(f"Will run **{plan.name}**: {plan.reason}.", icon=":material/check_circle:")
            if plan.warning:
                st.warning(plan.warning)
        else:
            st.error(f"Refused: {precision_error}", icon=":material/block:")
        st.caption("The check runs here, before Start, with the same function the trainer uses.")

# ---- the config, as the form describes it ----------------------------------------------------
cfg: RunConfig | None = None
config_error: str | None = None
try:
    cfg = fs.state_to_config(ss, SPECS, data_source=data_source)
except (ConfigError, ValueError, TypeError) as e:
    config_error = str(e)
if data_error:  # a bad upload or a missing file: say that, not what the empty data field becomes
    config_error = data_error
elif precision_error:
    config_error = precision_error
elif cfg is not None and (refs := sorted(set(re.findall(r"run:\{(\w+)\}", cfg.to_yaml())))):
    # a preset variant that learns from another variant's run (a KD teacher): only the preset knows which
    config_error = (f"this variant uses the run of the preset's '{refs[0]}' variant (run:{{{refs[0]}}}), which does "
                    f"not exist yet: press 'Run all variants of this preset', or replace run:{{{refs[0]}}} with "
                    f"the id of a finished run (Runs page), e.g. run:r-1a2b3c")

with tab_cfg:
    if cfg is None:
        st.error(config_error)
    else:
        left, right = st.columns(2, gap="large")
        left.markdown("**Config (YAML)** — `python -m hft_core train --config run.yaml`")
        left.code(cfg.to_yaml(), language="yaml")
        left.download_button("Save config as YAML", cfg.to_yaml(), file_name="run.yaml", mime="text/yaml",
                             icon=":material/download:", on_click="ignore")
        right.markdown("**The same run from the command line**")
        right.code(cfg.cli_command(), language="bash")
    st.file_uploader("Load a config YAML into the form", type=["yaml", "yml"], key="f.yaml_upload",
                     on_change=_on_yaml_upload)
    if ss.get("f.yaml_error"):
        st.error(ss["f.yaml_error"])

with summary_box:
    if cfg is not None and not config_error:
        strategies = ", ".join(cfg.mix) if len(cfg.mix) else "plain fine-tuning"
        alpha = f" (alpha {cfg.mix['blend'].alpha:g})" if "blend" in cfg.mix else ""
        what = plan.name if plan is not None else cfg.precision
        st.caption(f"**Will train** {cfg.model} · {cfg.task} · {Path(cfg.data).name if '/' in cfg.data else cfg.data}"
                   f" · {cfg.max_steps} steps × batch {cfg.batch_size} · lr {cfg.lr:g} · {strategies}{alpha}"
                   f" · {what} on {_resolved_device(cfg.device)}")
    elif start_clicked or sweep_clicked:
        st.error(f"Not started: {config_error}", icon=":material/error:")
    else:
        st.error(f"Cannot start yet: {config_error}", icon=":material/error:")
    try:
        queued = ui_state.store().list_runs(status=["queued", "running"])
    except Exception:  # the store is optional for drawing the form
        queued = []
    if queued:
        running = sum(r.status == "running" for r in queued)
        st.caption(f"Queue: {running} running, {len(queued) - running} waiting. A new run waits its turn.")

# ---- start -----------------------------------------------------------------------------------


def _started(ids: list[str], what: str, page: str = "") -> None:
    ss["f.token"] = uuid.uuid4().hex  # the buttons just pressed are gone from the next run on
    ss["f.last_started"] = ids
    ss["compare.flash" if page.endswith("compare.py") else "live.flash"] = f"Started {what}: {', '.join(ids)}"
    if page or ss.get("f.go_live"):
        st.switch_page(page or "pages/live.py")
    st.rerun()


if start_clicked or sweep_clicked or preset_clicked:
    mgr = ui_state.manager()
    if preset_clicked:
        try:
            quick = bool(ss.get("f.preset_quick"))
            group, ids = preset_lib.submit_preset(mgr, PRESETS[ss["f.preset"]], quick=quick,
                                                  group=f"{preset_lib.group_name(PRESETS[ss['f.preset']])}-quick"
                                                  if quick else "")
        except (ConfigError, ValueError) as e:
            message_box.error(f"Not started: {e}")
        else:
            # a preset is a comparison: open its group on Compare, on the metric it is about
            ss["compare.group"], ss["compare.runs"] = group, ids
            ss["compare.metric"] = PRESETS[ss["f.preset"]].metric
            _started(ids, f"preset group {group}", page="pages/compare.py")
    elif cfg is None or config_error:
        pass  # said in the summary above ("Not started: ...")
    elif start_clicked:
        try:
            run_id = mgr.submit(cfg, group=cfg.group, name=cfg.name)
        except (ConfigError, ValueError) as e:
            message_box.error(f"Not started: {e}")
        else:
            _started([run_id], f"run {run_id}")
    else:
        grid = fs.sweep_grid(ss["f.sweep_alphas"], int(ss["f.sweep_seeds"]), cfg.seed, HAS_BLEND)
        if not grid:
            message_box.error("Not started: a sweep needs at least one alpha value or 2 or more seeds.")
        else:
            import time as _time

            group = ss["f.sweep_group"].strip() or cfg.group or f"sweep-{_time.strftime('%m%d-%H%M%S')}"
            try:
                ids = mgr.submit_sweep(cfg, grid, group=group)
            except (ConfigError, ValueError) as e:
                message_box.error(f"Not started: {e}")
            else:
                _started(ids, f"sweep {group} ({len(ids)} runs)")

if ss.get("f.last_started"):
    ids = ss["f.last_started"]
    with message_box:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.success(f"Started {', '.join(ids)}. It trains in the background; closing the tab does not stop it.")
        c2.page_link("pages/live.py", label="Watch it on Live", icon=":material/monitoring:")
