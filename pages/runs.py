"""Runs: the history. Filter, see a run's status, config, log and where its model is;
resume, stop, export, load into Train, or delete it.
"""
from __future__ import annotations

import io
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from hft_core import charts
from hft_core.config import ConfigError, RunConfig
from hft_core.store import STATUSES, StoreError, export_run
from ui import after_training, attributions_view
from ui import state as ui_state

ui_state.through_app()  # first: a page opened by its URL on a fresh server runs inside app.py

ss = st.session_state
TABLE_LIMIT = 300

st.title("Runs")
store = ui_state.store()
mgr = ui_state.manager()
flash = ss.pop("runs.flash", None)
if flash:
    st.success(flash)

f1, f2, f3 = st.columns([3, 2, 3], vertical_alignment="bottom")
statuses = f1.multiselect("Status", list(STATUSES), key="runs.status", placeholder="any status")
groups = store.groups()
group = f2.selectbox("Group", ["", *groups], key="runs.group", format_func=lambda g: g or "(any group)")
text = f3.text_input("Search", key="runs.text", placeholder="id, name, model, data, strategy …")

runs = store.list_runs(status=statuses or None, group=group or None, limit=TABLE_LIMIT)
if text.strip():
    needle = text.strip().lower()
    runs = [r for r in runs if needle in " ".join([r.id, r.name, r.group, str(r.config.get("model", "")),
                                                   str(r.config.get("data", "")),
                                                   " ".join(r.config.get("mix", {}))]).lower()]
if not runs:
    st.info("No runs match." if (statuses or group or text.strip()) else
            "No runs yet: start one on the Train page.")
    st.stop()


def _row(r) -> dict:
    last = store.last_metrics(r.id)
    return {
        "id": r.id, "name": r.name, "status": r.status,
        "group": r.group, "model": r.config.get("model", ""), "data": Path(str(r.config.get("data", ""))).name
        if "/" in str(r.config.get("data", "")) else r.config.get("data", ""),
        "strategies": ", ".join(r.config.get("mix", {})) or "-", "created": ui_state.ago(r.created),
        "duration": ui_state.duration(r), "step": int(last["step"]) if "step" in last else None,
        "loss": last.get("loss"), "eval accuracy (%)": last["eval/accuracy"] * 100 if "eval/accuracy" in last
        else None, "eval loss": last.get("eval/loss"),
    }


table = pd.DataFrame([_row(r) for r in runs])
table = table[[c for c in table.columns if not table[c].isna().all()]]  # e.g. no eval loss without LM runs
st.dataframe(table, hide_index=True, height=min(38 + 35 * len(table), 320),
             column_config={"loss": st.column_config.NumberColumn(format="%.4f"),
                            "eval loss": st.column_config.NumberColumn(format="%.4f"),
                            "eval accuracy (%)": st.column_config.NumberColumn(format="%.1f")})
if len(runs) == TABLE_LIMIT:
    st.caption(f"Showing the newest {TABLE_LIMIT}; filter to find older runs.")

by_id = {r.id: r for r in runs}
if ss.get("runs.selected") not in by_id:
    ss["runs.selected"] = runs[0].id
st.selectbox("Run", list(by_id), key="runs.selected", format_func=lambda rid: ui_state.run_label(by_id[rid]))
rec = store.get_run(ss["runs.selected"])

# ---- one run -------------------------------------------------------------------------------------
st.subheader(f"{rec.name or rec.id}  ·  {rec.id}")
last = store.last_metrics(rec.id)
m = st.columns(5)
m[0].metric("status", f"{ui_state.STATUS_ICONS.get(rec.status, '')} {rec.status}")
if rec.kind in after_training.JOB_AXES:  # a job's steps are its own axis (a or sparsity x 100, soup number)
    m[1].metric("points evaluated", len(after_training.job_results(rec.kind, store.metrics(rec.id))))
else:
    m[1].metric("step", f"{int(last.get('step', 0))} / {rec.config.get('max_steps', '?')}")
m[2].metric("loss (nats)", f"{last['loss']:.4f}" if "loss" in last else "-")
if "eval/accuracy" in last:
    m[3].metric("eval accuracy", f"{last['eval/accuracy'] * 100:.1f} %")
elif "eval/loss" in last:
    m[3].metric("eval loss (nats)", f"{last['eval/loss']:.4f}")
else:
    m[3].metric("eval", "-")
m[4].metric("duration", ui_state.duration(rec))

if rec.status == "failed":
    st.error(f"**Failed:** {rec.error or 'no message was recorded'}", icon=":material/error:")
    if rec.traceback:
        with st.expander("Traceback"):
            st.code(rec.traceback, language="text")
elif rec.status == "interrupted" and rec.error:
    st.warning(rec.error)

ckpt = rec.checkpoint_dir
if ckpt and Path(ckpt).is_dir():
    st.markdown(f"**Model checkpoint:** `{ckpt}`  \nUse it as a model source `run:{rec.id}` (e.g. as a KD teacher "
                f"or to fine-tune further), or load it in Python with "
                f"`AutoModelForSequenceClassification.from_pretrained('{ckpt}')`.")
elif rec.status in ("queued", "running"):
    st.caption("The checkpoint is written when the run ends (or is stopped).")
else:
    st.caption("No checkpoint was saved for this run.")
st.caption(f"device {rec.device} · created {ui_state.ago(rec.created)} · started {ui_state.ago(rec.started)} · "
           f"ended {ui_state.ago(rec.ended)} · folder `{store.run_dir(rec.id)}`")

# ---- actions -------------------------------------------------------------------------------------
actions = []
if rec.status in ("stopped", "interrupted", "failed"):
    actions.append("resume")
if rec.status in ("queued", "running"):
    actions.append("stop")
actions += ["compare", "load", "export", "delete"]
slots = dict(zip(actions, st.columns(6)))
if "resume" in slots:
    if slots["resume"].button("Resume", icon=":material/play_arrow:", key="runs.resume", use_container_width=True,
                              help="Continue from its last checkpoint, under the same run id."):
        try:
            mgr.resume(rec.id)
        except (ValueError, StoreError) as e:
            st.error(f"Cannot resume {rec.id}: {e}")
        else:
            ss["runs.flash"] = f"Resumed {rec.id}: it is queued and continues from its last checkpoint."
            st.rerun()
if "stop" in slots:
    if slots["stop"].button("Stop", icon=":material/stop:", key="runs.stop", use_container_width=True):
        try:
            mgr.stop(rec.id)
        except StoreError as e:
            st.error(str(e))
        else:
            st.rerun()
if slots["compare"].button("Compare", icon=":material/stacked_line_chart:", key="runs.compare",
                           use_container_width=True, help="Open this run (and the rest of its group) on Compare."):
    ss["compare.runs"] = [r.id for r in store.list_runs(group=rec.group)] if rec.group else [rec.id]
    st.switch_page("pages/compare.py")
if slots["load"].button("Load into Train", icon=":material/edit:", key="runs.load", use_container_width=True,
                        help="Fill the Train form with this run's config, to change something and run it again."):
    ss["f.load_config"] = (rec.id, rec.config)
    st.switch_page("pages/train.py")


def _export_zip(run_id: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        files = export_run(store, run_id, tmp, "csv")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, arcname=f"{run_id}/{Path(f).name}")
    return buf.getvalue()


slots["export"].download_button("Export (CSV zip)", lambda: _export_zip(rec.id), file_name=f"{rec.id}.zip",
                     mime="application/zip", icon=":material/download:", key="runs.export", on_click="ignore",
                     use_container_width=True, help="metrics.csv (one row per step), events.csv and config.yaml")
deletable = rec.status not in ("queued", "running")
if slots["delete"].button("Delete…", icon=":material/delete:", key="runs.delete", use_container_width=True,
               disabled=not deletable, help="Stop the run first." if not deletable else
               "Removes its metrics, log and checkpoint folder."):
    ss["runs.confirm_delete"] = rec.id
if ss.get("runs.confirm_delete") == rec.id:
    with st.container(border=True):
        st.warning(f"Delete run **{rec.name or rec.id}** ({rec.id}): its metrics, log and checkpoint folder? "
                   "This cannot be undone.")
        y, n, _ = st.columns([2, 1, 5])
        if y.button("Yes, delete it", type="primary", key="runs.delete_yes"):
            try:
                store.delete_run(rec.id)
            except StoreError as e:
                st.error(str(e))
            else:
                ss.pop("runs.confirm_delete", None)
                ss.pop("runs.selected", None)
                ss["runs.flash"] = f"Deleted {rec.id}."
                st.rerun()
        if n.button("Cancel", key="runs.delete_no"):
            ss.pop("runs.confirm_delete", None)
            st.rerun()

tab_cfg, tab_curves, tab_log = st.tabs(["Config", "Curves", "Log"])
with tab_cfg:
    left, right = st.columns(2, gap="large")
    try:
        cfg = RunConfig.from_dict(rec.config)
        yaml_text, cli = cfg.to_yaml(), cfg.cli_command()
    except ConfigError as e:  # a config written by an older/newer version
        import yaml

        yaml_text, cli = yaml.safe_dump(rec.config, sort_keys=False), f"# cannot rebuild the command: {e}"
    left.code(yaml_text, language="yaml")
    right.code(cli, language="bash")
with tab_curves:
    df = store.metrics(rec.id)
    colors = {rec.id: charts.run_color(rec.id)}
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(charts.metric_figure(df, "loss", labels={rec.id: rec.name or rec.id}, colors=colors,
                                             title="Training loss", height=300), key="runs.loss", theme=None)
    with c2:
        ev = ["eval/accuracy", "eval/macro_f1"] if "eval/accuracy" in last else "eval/loss"
        st.plotly_chart(charts.metric_figure(df, ev, labels={rec.id: rec.name or rec.id}, colors=colors,
                                             title="Evaluation", height=300), key="runs.eval", theme=None)
with tab_log:
    events = store.events(rec.id, limit=300)
    if not events:
        st.caption("No log lines.")
    for t, level, message in events:
        line = f"`{time.strftime('%H:%M:%S', time.localtime(t))}` {message}"
        if level == "error":
            st.error(line)
        elif level == "warning":
            st.warning(line)
        else:
            st.markdown(line)

after_training.section(store, mgr, rec)  # confusion matrix, WiSE-FT / pruning / soup jobs and their results

# ---- token attributions of a classification run (logic in ui/attributions_view.py) --------------
if attributions_view.explainable(rec):
    attributions_view.section(store, rec)
# ---- end token attributions ---------------------------------------------------------------------
