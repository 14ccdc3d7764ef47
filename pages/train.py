"""Train: pick a recipe, adjust it, Start (or a sweep, or every variant of a preset).

widgets -> st.session_state -> RunConfig (ui.form_state) -> RunManager.submit -> run id. Layout only:
ui/ holds the logic (train_form: options, presets, the link; recommend: model cards; data_check;
device_check; cost: time estimate; launch). Config widgets sit outside the form, so previews and
checks follow each change; Start's key carries a token renewed after every start, so a double click
starts nothing twice. The form lives in the URL: a reload or a shared link reopens it.
"""
from __future__ import annotations

import streamlit as st

from hft_core import model_cards
from hft_core.config import OPTIMIZERS, PRECISIONS, SCHEDULES, TASKS, ConfigError, RunConfig, help_of
from ui import cost, data_check, device_check, launch, recommend
from ui import form_state as fs
from ui import state as ui_state
from ui import train_form as tf
from ui.fields import PERSIST, field_widget, headline_label, strategy_card
from ui.preset_outcome import render_preset_outcome
from ui.search_form import render_search_form

ui_state.through_app()  # first: a page opened by its URL on a fresh server runs inside app.py

ss = st.session_state
SPECS = tf.SPECS
HEADLINES = [(s, f) for s in SPECS if (f := fs.headline_field(s)) is not None]
PRESETS, PRESET_ERRORS = tf.load_presets()
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS}
tf.init_state(ss, st.query_params.to_dict(), PRESETS)

st.title("Train")
st.caption("Pick a recipe, press **Start**, watch it on **Live**. Runs keep training when you close the tab, "
           "and wait in a queue when the device is busy.")
if ss.get("f.load_error"):
    st.error(ss.pop("f.load_error"))
if ss.get("f.link_notes"):
    n1, n2 = st.columns([12, 1], vertical_alignment="center")
    n1.warning("From the link: " + "; ".join(ss["f.link_notes"]), icon=":material/link_off:")
    n2.button("OK", key="f.link_ok", on_click=lambda: ss.update({"f.link_notes": []}))

if ss["f.preset"] not in (titles := [fs.QUICK_DEMO, *PRESETS]):
    ss["f.preset"] = fs.QUICK_DEMO
top_left, top_right = st.columns([2, 3], gap="large")
with top_left:
    st.selectbox("Preset", titles, key="f.preset", on_change=tf.on_preset, args=(ss, PRESETS), persist_state=PERSIST,
                 help="A known-good starting point. Choosing one fills in the form below; change anything after.")
    chosen = PRESETS.get(ss["f.preset"])
    if ss.get("f.loaded_from"):
        st.caption(f"The form holds the config of run {ss['f.loaded_from']} (loaded from the Runs page).")
    elif chosen is None:
        st.caption("A tiny random BERT learns BBC News topics from 200 articles in 40 steps: "
                   "the first curve appears within seconds, no download needed.")
    else:
        if ss.get("f.variant") not in chosen.labels:
            ss["f.variant"] = chosen.labels[0]
        st.selectbox("Variant loaded into the form", chosen.labels, key="f.variant", on_change=tf.on_variant,
                     args=(ss, PRESETS),
                     help="A preset compares a few variants; pick the one to edit and start, or run them all.")
    for stem, err in PRESET_ERRORS.items():
        st.warning(f"Preset file {stem}.yaml could not be loaded: {err}")
with top_right:
    for spec, f in HEADLINES:  # a strategy's headline field (blend's alpha), drawn big; off its neutral value = on
        field_widget(f, f"mix.{spec.name}.{f.name}", label=headline_label(spec, f))
    if chosen is not None:
        st.info(f"**{chosen.question}**  \nExpected: {chosen.expected}", icon=":material/science:")
        if chosen.result:
            with st.expander("Measured on a 2-core CPU: what held and what did not"):
                st.markdown(chosen.result)
        render_preset_outcome(chosen, ui_state.store())  # the user's own runs of it against the expected outcome

token, preset_clicked, budgets_clicked = ss["f.token"], False, False
if chosen is not None:  # the whole comparison, queued as one group and opened on Compare
    q1, q2, q3 = st.columns([2.2, 2.6, 4], vertical_alignment="center")
    preset_clicked = q1.button(f"Run all {len(chosen.variants)} variants of this preset", key=f"preset-{token}",
                               icon=":material/playlist_play:")
    q2.checkbox("Quick check: tiny models, a few steps", key="f.preset_quick", persist_state=PERSIST,
                help="Runs every variant with the preset's 'quick' settings (tiny random models, seconds in all): "
                     "checks that the whole comparison works before the real one. The numbers mean nothing.")
    when = cost.group_line(chosen, ui_state.store(), bool(ss.get("f.preset_quick"))) or (
        f"about {chosen.minutes:g} min on 2 CPU cores" if chosen.minutes else "")
    q3.caption(f"{len(chosen.variants)} variant(s) × seed {chosen.seeds[0]}{f': {when}' if when else ''}; "
               "or edit the loaded variant below and Start it alone.")
    budgets_clicked = launch.budgets_button(chosen, f"budgets-{token}")
with st.form("start-form", enter_to_submit=True):
    c_name, c_group, c_live, c_start = st.columns([3, 2, 2, 1.3], vertical_alignment="bottom")
    c_name.text_input("Run name", key="cfg.name", placeholder="generated: model + strategies",
                      help=help_of(RunConfig, "name"), persist_state=PERSIST)
    c_group.text_input("Group", key="cfg.group", placeholder="optional", help=help_of(RunConfig, "group"),
                       persist_state=PERSIST)
    c_live.checkbox("Open Live after Start", key="f.go_live", persist_state=PERSIST)
    start_clicked = c_start.form_submit_button("Start", type="primary", icon=":material/play_arrow:",
                                               key=f"start-{token}", use_container_width=True)
summary_box, message_box = st.container(), st.container()

with st.expander("Sweep: several runs at once (alphas × seeds), queued as one group"):
    with st.form("sweep-form", enter_to_submit=False):
        s1, s2, s3, s4 = st.columns([3, 1.3, 2, 1.6], vertical_alignment="bottom")
        s1.multiselect("alpha values", [0.0, 0.25, 0.5, 0.75, 1.0], key="f.sweep_alphas", persist_state=PERSIST,
                       disabled="blend" not in {s.name for s in SPECS},
                       help="One run per alpha (1 = fine-tune, 0 = from scratch); empty = keep the form's alpha.")
        s2.number_input("seeds", min_value=1, max_value=10, step=1, key="f.sweep_seeds", persist_state=PERSIST,
                        help="Runs per alpha, with seeds seed, seed+1, ...; Compare draws them as a mean and band.")
        s3.text_input("Sweep group", key="f.sweep_group", placeholder="generated: sweep-<time>",
                      persist_state=PERSIST)
        sweep_clicked = s4.form_submit_button("Start as sweep", icon=":material/grid_view:", key=f"sweep-{token}",
                                              use_container_width=True)
search_box = st.expander("Search: an Optuna study over ranges of the form's fields, each trial a queued run")

tab_data, tab_mix, tab_train, tab_cfg = st.tabs(["Model & data", "Strategy mix", "Training & precision",
                                                 "Config & command"])
with tab_data:
    left, right = st.columns(2, gap="large")
    with left:
        st.selectbox("Model", list(tf.MODEL_OPTIONS), key="f.model_choice", persist_state=PERSIST,
                     format_func=lambda k: k if k != fs.CUSTOM else "Other source…", help=help_of(RunConfig, "model"),
                     on_change=recommend.on_model_change, args=(ss, SPECS))
        if ss["f.model_choice"] == fs.CUSTOM:
            st.text_input("Model source", key="f.model_text", persist_state=PERSIST, help=help_of(RunConfig, "model"),
                          placeholder="hub:bert-base-uncased, /path/to/model_folder or run:r-3f9a2c",
                          on_change=recommend.on_model_change, args=(ss, SPECS))
        else:
            st.caption(tf.MODEL_OPTIONS[ss["f.model_choice"]])
        recommend.render_note(ss)  # "Set for MiniLM-L6, as recommended: lr 1e-4 (was 1e-3)" + Undo
        st.radio("Task", list(TASKS), key="f.task", horizontal=True, persist_state=PERSIST,
                 help=help_of(RunConfig, "task"))
    with right:
        data_source, data_error = data_check.data_picker(ss, tf.DATA_OPTIONS)

with tab_mix:
    if not SPECS:
        st.info("No strategies are installed yet: runs train the plain way (fine-tuning).")
    cols = st.columns(2, gap="medium")
    for i, spec in enumerate(SPECS):
        with cols[i % 2].container(border=True):
            strategy_card(spec, ss, ss["f.task"], on_toggle=recommend.on_strategy_change, args=(ss, SPECS, spec.name))
            recommend.render_note(ss, origin=spec.name)  # LoRA: "Set for LoRA on MiniLM-L6 ...: lr 1e-3" + Undo

with tab_train:
    left, right = st.columns([3, 2], gap="large")
    by_name = {f.name: f for f in fs.scalar_fields()}
    with left:
        grid = st.columns(3)
        for j, name in enumerate(tf.MAIN_FIELDS):
            with grid[j % 3]:
                field_widget(by_name[name], f"cfg.{name}", label=name.replace("_", " "),
                             on_change=recommend.mark_edited, args=(ss, name))
        with st.expander("More settings"):
            grid = st.columns(3)
            rest = [f for f in fs.scalar_fields() if f.name not in tf.MAIN_FIELDS + tf.OWN_WIDGETS]
            for j, f in enumerate(rest):
                with grid[j % 3]:
                    field_widget(f, f"cfg.{f.name}", choices=CHOICES.get(f.name), on_change=recommend.mark_edited,
                                 args=(ss, f.name))
    with right:
        field_widget(by_name["precision"], "cfg.precision", choices=PRECISIONS)
        if ss.get("cfg.device") not in device_check.device_options():
            ss["cfg.device"] = "auto"
        field_widget(by_name["device"], "cfg.device", choices=device_check.device_options())
        plan, precision_error = device_check.precision_check(ss["cfg.precision"], ss["cfg.device"])
        if plan is not None:
            st.success(f"Will run **{plan.name}**: {plan.reason}.", icon=":material/check_circle:")
            if plan.warning:
                st.warning(plan.warning)
        else:
            st.error(f"Refused: {precision_error}", icon=":material/block:")
        precision_slot = st.empty()  # bf16 on a CPU: its measured speed against fp32 (filled once cfg is built)
        st.caption("The check runs here, before Start, with the same function the trainer uses.")

cfg: RunConfig | None = None
config_error: str | None = None
try:
    cfg = fs.state_to_config(ss, SPECS, data_source=data_source)
except (ConfigError, ValueError, TypeError) as e:
    config_error = str(e)
problem = launch.blocking_problem(cfg, config_error, data_error, precision_error)
if cfg is not None and (bf16 := cost.bf16_message(cfg, plan, cost.prober())):
    precision_slot.info(bf16, icon=":material/speed:")

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
                     on_change=tf.on_yaml_upload, args=(ss,))
    if ss.get("f.yaml_error"):
        st.error(ss["f.yaml_error"])

with summary_box:
    if cfg is not None and not problem:
        st.caption(launch.summary_line(cfg, plan.name if plan else cfg.precision,
                                       device_check.resolved_device(cfg.device)))
        if warning := model_cards.lr_warning(cfg):
            st.warning(warning, icon=":material/warning:")
        cost.render_estimate(cfg, ui_state.store(), cfg.device)
    else:
        st.error(f"{'Not started' if start_clicked or sweep_clicked else 'Cannot start yet'}: {problem}",
                 icon=":material/error:")
    if queue := launch.queue_line(ui_state.store()):
        st.caption(queue)

if (params := tf.link_params(ss, PRESETS, data_source)) != st.query_params.to_dict():
    st.query_params.from_dict(params)  # the form in the URL: a reload or a shared link reopens it

if start_clicked or sweep_clicked or preset_clicked or budgets_clicked:
    mgr, page, ids, what = ui_state.manager(), "", [], ""
    try:
        if preset_clicked or budgets_clicked:   # the preset, or its label-budget sweep: one group on Compare
            group, ids = launch.start_preset(mgr, chosen, bool(ss.get("f.preset_quick")), by_labels=budgets_clicked)
            launch.open_preset_on_compare(ss, chosen, group, ids)
            what, page = f"{'label-budget' if budgets_clicked else 'preset'} group {group}", "pages/compare.py"
        elif cfg is not None and not problem and start_clicked:
            ids = launch.start_run(mgr, cfg)
            what = f"run {ids[0]}"
        elif cfg is not None and not problem:
            group = launch.sweep_group(ss["f.sweep_group"], cfg.group)
            ids = launch.start_sweep(mgr, cfg, ss["f.sweep_alphas"], int(ss["f.sweep_seeds"]), group,
                                     "blend" in {s.name for s in SPECS})
            what = f"sweep {group} ({len(ids)} runs)"
    except (ConfigError, ValueError) as e:
        message_box.error(f"Not started: {e}")
    if ids:
        target = launch.after_start(ss, ids, what, page)
        if target:
            st.switch_page(target)
        st.rerun()

with search_box:  # filled here, once the form's config is built (ui/search_form.py)
    render_search_form(cfg, problem, ui_state.manager())

if ss.get("f.last_started"):
    with message_box:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.success(f"Started {', '.join(ss['f.last_started'])}. It trains in the background; closing the tab does "
                   "not stop it.")
        c2.page_link("pages/live.py", label="Watch it on Live", icon=":material/monitoring:")
