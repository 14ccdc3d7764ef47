"""The Search form on Train: ranges per field over the Train form's config -> an Optuna study.

The logic (rows -> search space -> ``hft_core.search.SearchSpec``; the registry of running
studies) is tested without a browser; ``render_search_form`` lays it out.

How the app runs a study: in a background thread of the app process (``SearchThread``), kept
in a ``st.cache_resource`` registry like the RunManager, never in a Streamlit script thread.
Why a thread and not a ``hft search`` subprocess: the app's RunManager already trains the
trials (they are plain queued runs of its worker threads, the one queue per device), and the
driver itself is a light loop (ask, queue, read the store twice a second, tell), so a second
Python process with torch would only add memory and start-up time. Closing the tab does not
stop the study; restarting the app does: its next start (the same name) settles the trials
left behind (see hft_core/search.py). Stop one trial: Stop on Live (its run). Stop the whole
study: the button here, or ``hft search --stop NAME`` from a terminal.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable, Mapping

import streamlit as st
import yaml

from hft_core import search
from hft_core.config import RunConfig

COLUMNS = ("field", "kind", "low", "high", "values")
KIND_HELP = ("log_uniform: [low, high] on a log scale (learning rates); uniform: [low, high]; int: whole numbers "
             "from low to high; choice: the comma-separated values")
SAMPLER_HELP = {"tpe": "TPE (Bayesian): a few random trials, then where good trials were",
                "random": "random: independent draws from the ranges",
                "grid": "grid: every combination (choice lists and int ranges only)"}
PRUNER_HELP = {"none": "none: every trial trains to the end",
               "median": "median: stop a trial whose eval is below the median of earlier trials at the same step",
               "hyperband": "Hyperband: successive halving over the training steps"}


def field_options() -> list[str]:
    """Searchable fields, the usual ones first (lr, the headline strategy fields)."""
    names = list(search.field_types())
    first = [n for n in ("lr", "mix.blend.alpha", "mix.l2sp.beta", "mix.lora.r", "weight_decay", "batch_size",
                         "warmup_steps", "max_steps") if n in names]
    return first + sorted(n for n in names if n not in first)


def default_rows(cfg: RunConfig | None) -> list[dict[str, Any]]:
    """A first table: lr around the form's value (a decade each way), blend's alpha over [0, 1]."""
    lr = cfg.lr if cfg is not None else 1e-4
    low, high = float(f"{lr / 10:.3g}"), float(f"{min(lr * 10, 0.5):.3g}")
    rows = [{"field": "lr", "kind": "log_uniform", "low": low, "high": high, "values": ""}]
    if "mix.blend.alpha" in search.field_types():
        rows.append({"field": "mix.blend.alpha", "kind": "uniform", "low": 0.0, "high": 1.0, "values": ""})
    return rows


def rows_to_space(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The table's rows as a search space mapping (rows without a field are ignored)."""
    space: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows, start=1):
        name = str(row.get("field") or "").strip()
        if not name:
            continue
        kind = str(row.get("kind") or "").strip()
        at = f"row {n} ({name})"
        if name in space:
            raise search.SearchError(f"{at}: {name} is in the table twice; keep one row per field")
        if kind == "choice":
            space[name] = {"choice": parse_values(row.get("values"), at)}
        elif kind in ("log_uniform", "uniform", "int"):
            low, high = row.get("low"), row.get("high")
            if _blank(low) or _blank(high):
                raise search.SearchError(f"{at}: give low and high for a {kind} range (or kind choice with values)")
            if kind == "int":
                low, high = _whole(low), _whole(high)
            space[name] = {kind: [low, high]}
        else:
            raise search.SearchError(f"{at}: pick a kind: {', '.join(search.KINDS)}")
    if not space:
        raise search.SearchError("the search table is empty: add a row, e.g. lr, log_uniform, 1e-5, 1e-3")
    return space


def parse_values(text: Any, at: str = "values") -> list[Any]:
    """'0, 0.01, 0.1' -> [0, 0.01, 0.1]; each item read as YAML (numbers, true/false, text)."""
    items = [t.strip() for t in str(text or "").split(",") if t.strip()]
    if not items:
        raise search.SearchError(f"{at}: a choice needs its values, comma-separated, e.g. 0, 0.01, 0.1")
    out = []
    for item in items:
        try:
            value = yaml.safe_load(item)
        except yaml.YAMLError:
            value = item
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else value  # 1e-5: YAML 1.1 reads a string
            except ValueError:
                pass
        out.append(value)
    return out


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


def _whole(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def default_study_name(now: float | None = None) -> str:
    return f"search-{time.strftime('%m%d-%H%M%S', time.localtime(now))}"


def build_spec(cfg: RunConfig | None, rows: Iterable[Mapping[str, Any]], *, name: str = "", sampler: str = "tpe",
               pruner: str = "median", trials: int = 10, parallel: int = 1, seed: int = 0,
               problem: str | None = None) -> search.SearchSpec:
    """The study the form describes, checked (SearchError with one line on the first problem)."""
    if cfg is None or problem:
        raise search.SearchError(f"the Train form's config is not ready: {problem or 'fix the form first'}")
    base = cfg.to_dict()
    base["name"] = ""
    return search.parse_search({"base": base, "space": rows_to_space(rows), "sampler": sampler, "pruner": pruner,
                                "trials": int(trials), "parallel": int(parallel), "seed": int(seed)},
                               name=name.strip() or default_study_name(), where="search")


class Studies:
    """The studies this app process drives, by name (one registry per process, shared by every tab)."""

    def __init__(self) -> None:
        self._threads: dict[str, search.SearchThread] = {}
        self._lock = threading.Lock()

    def start(self, spec: search.SearchSpec, manager: Any) -> search.SearchThread:
        with self._lock:
            old = self._threads.get(spec.name)
            if old is not None and old.alive:
                raise search.SearchError(f"study {spec.name!r} is already running here; stop it first, or give "
                                         f"another name")
            thread = self._threads[spec.name] = search.SearchThread(spec, manager=manager).start()
        return thread

    def stop(self, name: str) -> bool:
        with self._lock:
            thread = self._threads.get(name)
        if thread is None or not thread.alive:
            return False
        thread.stop()
        return True

    def all(self) -> list[search.SearchThread]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._threads.values()))


def progress_line(thread: search.SearchThread) -> str:
    """'minilm-lr: 3 of 8 trials ended (1 pruned, 0 failed); best eval/accuracy 0.91 (trial 2)'."""
    spec = thread.spec
    ended = list(thread.ended)
    counts = {s: sum(t.state == s for t in ended) for s in ("PRUNED", "FAIL")}
    done = [t for t in ended if t.state == "COMPLETE" and t.value is not None]
    best = ""
    if done:
        pick = max if spec.direction == "maximize" else min
        b = pick(done, key=lambda t: t.value)
        best = f"; best so far {spec.metric} {b.value:.4g} (trial {b.number})"
    state = "running" if thread.alive else ("failed: " + thread.error if thread.error else
                                            "stopped" if thread.result and thread.result.stopped else "done")
    return (f"**{spec.name}** ({state}): {len(ended)} of {spec.trials} trials ended ({counts['PRUNED']} pruned, "
            f"{counts['FAIL']} failed){best}")


# ---- layout ---------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _shared_registry() -> Studies:
    return Studies()


def registry() -> Studies:
    """This app process's studies (a test may put its own in ``st.session_state["search.registry"]``)."""
    injected = st.session_state.get("search.registry")
    return injected if injected is not None else _shared_registry()


def render_search_form(cfg: RunConfig | None, problem: str | None, manager: Any) -> None:
    """The form (a table of ranges, sampler, pruner, trials) and the studies this app runs."""
    import pandas as pd

    ss = st.session_state
    st.caption("Each trial is a run of the form above with the table's fields sampled: it queues on its device like "
               "any run (Live shows it; Stop there ends that trial). The study is kept in studies.sqlite: the same "
               "name again adds trials to it. Compare shows the study.")
    if "search.rows" not in ss:
        ss["search.rows"] = pd.DataFrame(default_rows(cfg), columns=list(COLUMNS))
    with st.form("search-form", enter_to_submit=False):
        edited = st.data_editor(
            ss["search.rows"], key="search.table", num_rows="dynamic", hide_index=True,
            column_config={
                "field": st.column_config.SelectboxColumn("field", options=field_options(), required=True,
                                                          help="any config field, or a strategy's field "
                                                               "(mix.<strategy>.<field>: setting it turns the "
                                                               "strategy on)"),
                "kind": st.column_config.SelectboxColumn("kind", options=list(search.KINDS), required=True,
                                                         help=KIND_HELP),
                "low": st.column_config.NumberColumn("low", format="%.4g"),
                "high": st.column_config.NumberColumn("high", format="%.4g"),
                "values": st.column_config.TextColumn("values (choice)", help="comma-separated, e.g. 0, 0.01, 0.1")})
        c1, c2, c3, c4, c5 = st.columns([2, 2, 1.2, 1.2, 2.6], vertical_alignment="bottom")
        sampler = c1.selectbox("sampler", list(search.SAMPLERS), index=2, key="search.sampler",
                               format_func=lambda s: SAMPLER_HELP[s].split(":")[0],
                               help="; ".join(SAMPLER_HELP.values()))
        pruner = c2.selectbox("pruner", list(search.PRUNERS), index=1, key="search.pruner",
                              format_func=lambda p: PRUNER_HELP[p].split(":")[0],
                              help="; ".join(PRUNER_HELP.values()))
        trials = c3.number_input("trials", min_value=1, max_value=500, value=10, key="search.trials")
        parallel = c4.number_input("at a time", min_value=1, max_value=16, value=1, key="search.parallel",
                                   help="trials queued at once; how many TRAIN at once is the device's limit "
                                        "(HFT_RUNS_PER_DEVICE, 1 by default): the others wait in the queue")
        name = c5.text_input("study name", key="search.name", placeholder="generated: search-<time>",
                             help="the same name as an earlier study continues it (same fields and ranges)")
        start = st.form_submit_button("Start the study", icon=":material/travel_explore:")
    studies = registry()
    if start:
        try:
            spec = build_spec(cfg, edited.to_dict("records"), name=name, sampler=sampler, pruner=pruner,
                              trials=int(trials), parallel=int(parallel), problem=problem)
            studies.start(spec, manager)
            st.success(f"Study {spec.name!r} started: {spec.trials} trials, group {spec.name!r} (Live, Compare).")
        except search.SearchError as e:
            st.error(f"Not started: {e}")
    for thread in studies.all()[:5]:
        left, right = st.columns([6, 1], vertical_alignment="center")
        left.markdown(progress_line(thread))
        for note in thread.notes:
            left.caption(note)
        if thread.ended:
            left.caption(thread.ended[-1].describe(thread.spec.metric))
        if thread.alive:
            right.button("Stop study", key=f"search.stop.{thread.spec.name}", on_click=studies.stop,
                         args=(thread.spec.name,), help="no new trials; the running one stops with a checkpoint")
