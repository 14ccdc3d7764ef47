"""Data for the Train form: uploads, local tables, and a dry load before Start.

Every problem with the data shows next to the data picker, before Start, in the words the
trainer would use: the same ``hft_core.data`` functions read, guess columns and split.

    save_upload(name, content)      keep an upload under $HFT_HOME/uploads/ (content-addressed)
    check_upload(state, name, content)   parse a new upload once: path + guessed columns, or why not
    table_summary(path)             rows, columns, first rows and guessed columns of a local table
    dry_load(path, ...)             load and split exactly as the run will: (train, eval, classes)
    column_problem(...)             the missing-column message, or None
    data_picker(state, options)     the widgets (page layout), returning (data source, error)
"""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any, Mapping, MutableMapping

import streamlit as st

from hft_core import data as data_sources
from hft_core.config import RunConfig, help_of
from hft_core.home import hft_home
from ui import form_state as fs
from ui.fields import PERSIST

State = MutableMapping[str, Any]
UPLOAD_TYPES = ["csv", "tsv", "jsonl", "json", "parquet"]
DRY_LOAD_MAX_BYTES = 20 * 2**20  # larger files are checked by the run itself


def save_upload(name: str, content: bytes, folder: Path | None = None) -> Path:
    """Keep an uploaded table under $HFT_HOME/uploads/ (content-addressed, so re-uploads reuse it)."""
    digest = hashlib.sha1(content).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name)[-80:] or "upload.csv"
    folder = folder or hft_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}-{safe}"
    if not path.exists():
        path.write_bytes(content)
    return path


def upload_display_name(path: str) -> str:
    """'reviews.csv' for '<home>/uploads/1a2b3c4d5e-reviews.csv'."""
    return Path(path).name[11:]


def check_upload(state: State, name: str, content: bytes) -> None:
    """Parse a new upload once: keep it (and guess its columns) or remember why it cannot be used.

    Writes f.upload_path / f.upload_error / f.upload_note and the column pickers; an n_train
    larger than the file's training split is reset to 0 (all), with a note.
    """
    digest = hashlib.sha1(content).hexdigest()
    if state.get("f.upload_digest") == digest:
        return
    state["f.upload_digest"] = digest
    try:
        df = data_sources.read_table(io.BytesIO(content), name)
        text_col, label_col = data_sources.guess_columns(df)
    except data_sources.DataError as e:
        state["f.upload_error"], state["f.upload_path"] = f"{name} cannot be used: {e}", None
        return
    state["f.upload_error"] = None
    state["f.upload_path"] = str(save_upload(name, content))
    state["cfg.text_column"], state["cfg.label_column"] = text_col or "", label_col or ""
    n_train = int(state.get("cfg.n_train", 0))
    if n_train and n_train > len(df) * (1 - float(state.get("cfg.eval_fraction", 0.2))):
        state["cfg.n_train"] = 0
        state["f.upload_note"] = (f"n_train was {n_train}, more than {name} holds ({len(df)} rows): "
                                  "set to 0, i.e. all training rows.")
    else:
        state["f.upload_note"] = None


@st.cache_data(show_spinner=False, max_entries=16)
def _table_summary(path: str, mtime: float) -> tuple[int, list[str], Any, tuple[str | None, str | None]]:
    df = data_sources.read_table(path, Path(path).name)
    text_col, label_col = data_sources.guess_columns(df)
    return len(df), [str(c) for c in df.columns], df.head(6), (text_col, label_col)


def table_summary(path: str) -> tuple[int, list[str], Any, tuple[str | None, str | None]]:
    """(rows, columns, head, guessed columns) of a local table, or raises DataError / OSError."""
    p = Path(path).expanduser()
    return _table_summary(str(p), p.stat().st_mtime)


@st.cache_data(show_spinner=False, max_entries=32)
def _dry_load(path: str, mtime: float, task: str, text_column: str, label_column: str, n_train: int, n_eval: int,
              eval_fraction: float, seed: int) -> tuple[int, int, int]:
    d = data_sources.load_data(path, task, text_column=text_column, label_column=label_column, n_train=n_train,
                               n_eval=n_eval, eval_fraction=eval_fraction, seed=seed)
    return len(d.train), len(d.eval), d.num_labels


def dry_load(path: str, state: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """Load and split ``path`` as the form's run will: (train, eval, classes); None for a file too big
    to read here (the run checks it); raises DataError with the trainer's message."""
    p = Path(path).expanduser()
    if p.stat().st_size > DRY_LOAD_MAX_BYTES:
        return None
    return _dry_load(str(p), p.stat().st_mtime, state["f.task"], state.get("cfg.text_column", ""),
                     state.get("cfg.label_column", ""), int(state["cfg.n_train"]), int(state["cfg.n_eval"]),
                     float(state["cfg.eval_fraction"]), int(state["cfg.seed"]))


def column_problem(columns: list[str], text_col: str, label_col: str, task: str) -> str | None:
    """Why the chosen (or guessed) columns cannot make a dataset for ``task``, or None."""
    if not text_col:
        return f"no text column found among {columns}: pick the column that holds the text under 'Text column'."
    if task == "classification" and not label_col:
        return (f"no label column found among {columns}: pick the column that holds the class under 'Label "
                "column' (or choose the causal-lm task).")
    return None


def custom_path_problem(text: str) -> str | None:
    """A typed data source that is neither hub:<name> nor an existing file."""
    if text and not text.startswith("hub:") and not Path(text).expanduser().is_file():
        return f"data file {text!r} does not exist; give the full path of a .csv/.jsonl/.parquet file."
    return None


# ---- layout ---------------------------------------------------------------------------------------

def data_picker(state: State, options: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The data column of Train: picker, upload or path, preview, column pickers, dry-load result.

    Returns (data source override for the config: an upload's saved path, else None; the error
    that blocks Start, else None).
    """
    st.selectbox("Data", list(options), key="f.data_choice", persist_state=PERSIST,
                 format_func=lambda k: k if k not in (fs.CUSTOM, fs.UPLOAD) else options[k],
                 help=help_of(RunConfig, "data"))
    choice = state["f.data_choice"]
    table_path, source, error = None, None, None
    if choice == fs.UPLOAD:
        up = st.file_uploader("Your data: one example per row, a text column and (classification) a label column",
                              type=UPLOAD_TYPES, key="f.upload")
        if up is not None:
            check_upload(state, up.name, up.getvalue())
        if state.get("f.upload_error"):
            error = state["f.upload_error"]
        elif state.get("f.upload_path"):
            table_path = state["f.upload_path"]
            if up is None:
                st.caption(f"Using the file uploaded earlier: {upload_display_name(table_path)}")
        else:
            error = "no file uploaded yet: choose a CSV, JSONL or Parquet file above."
    elif choice == fs.CUSTOM:
        st.text_input("Data source", key="f.data_text", persist_state=PERSIST, help=help_of(RunConfig, "data"),
                      placeholder="/path/to/data.csv (or .jsonl, .parquet) or hub:ag_news")
        text = (state.get("f.data_text") or "").strip()
        error = custom_path_problem(text)
        table_path = text if text and not error and not text.startswith("hub:") else None
    else:
        st.caption(options[choice])
    columns: list[str] = []
    guessed: tuple = ("", "")
    if table_path:
        try:
            n_rows, columns, head, guessed = table_summary(table_path)
        except (data_sources.DataError, OSError) as e:
            error = f"{Path(table_path).name} cannot be used: {e}"
        else:
            source = str(table_path) if choice == fs.UPLOAD else None
            st.caption(f"{n_rows} rows · columns: {', '.join(columns)}")
            st.dataframe(head, height=180, hide_index=True)
    col_t, col_l = st.columns(2)
    if columns:
        for key in ("cfg.text_column", "cfg.label_column"):
            if state.get(key) not in ["", *columns]:
                state[key] = ""
        col_t.selectbox("Text column", ["", *columns], key="cfg.text_column", persist_state=PERSIST,
                        format_func=lambda c: c or "(guess)", help=help_of(RunConfig, "text_column"))
        col_l.selectbox("Label column", ["", *columns], key="cfg.label_column", persist_state=PERSIST,
                        format_func=lambda c: c or "(guess / none)", help=help_of(RunConfig, "label_column"))
        text_col = state.get("cfg.text_column") or guessed[0] or ""
        label_col = state.get("cfg.label_column") or guessed[1] or ""
        error = error or column_problem(columns, text_col, label_col, state["f.task"])
        if not error:
            try:  # the same load and split the run will do: its errors show here, before Start
                sizes = dry_load(table_path, state)
            except data_sources.DataError as e:
                error = str(e)
            else:
                if sizes:
                    n_tr, n_ev, n_cls = sizes
                    labels = f", labels from **{label_col}** ({n_cls} classes)" if state["f.task"] == "classification" \
                        else ""
                    st.caption(f"Text from **{text_col}**{labels}: {n_tr} training and {n_ev} eval examples.")
        if state.get("f.upload_note") and choice == fs.UPLOAD:
            st.info(state["f.upload_note"])
    elif choice == fs.CUSTOM:
        col_t.text_input("Text column", key="cfg.text_column", persist_state=PERSIST,
                         help=help_of(RunConfig, "text_column"))
        col_l.text_input("Label column", key="cfg.label_column", persist_state=PERSIST,
                         help=help_of(RunConfig, "label_column"))
    if error:
        st.error(error)
    return source, error
