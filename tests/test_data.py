"""Data sources: bundled BBC News and Q/A, local CSV/JSONL/Parquet, the seeded split, errors."""
from __future__ import annotations

import io
import json
import time
from collections import Counter

import pandas as pd
import pytest

from hft_core import data
from hft_core.data import DataError, guess_columns, load_data, read_table

BBC_TOPICS = ["business", "entertainment", "politics", "sports", "tech"]


def ids(examples: list[dict]) -> list[str]:
    return [json.dumps(e, sort_keys=True) for e in examples]


# ---- bundled BBC News ----------------------------------------------------------------------------
def test_bbc_news_is_2125_distinct_articles_in_5_topics():
    d = load_data("bundled:bbc-news", "classification")
    assert len(d.train) + len(d.eval) == 2125 and d.duplicates_dropped == 100  # 2,225 files, 100 repeats
    assert (len(d.train), len(d.eval)) == (1700, 425)
    assert not {e["text"] for e in d.train} & {e["text"] for e in d.eval}  # no article on both sides
    assert d.label_names == BBC_TOPICS and d.num_labels == 5 and d.source == "bundled:bbc-news"
    assert {id(e) for e in d.train}.isdisjoint(id(e) for e in d.eval)
    every = Counter(e["label"] for e in d.train + d.eval)
    assert every == {0: 503, 1: 369, 2: 403, 3: 503, 4: 347}
    held = Counter(e["label"] for e in d.eval)
    for label, n in every.items():  # stratified: each topic gives ~20% to eval
        assert abs(held[label] - 0.2 * n) <= 1
    e = d.train[0]
    assert set(e) == {"text", "label"} and "\n" in e["text"] and "  " not in e["text"]
    assert any("£" in e["text"] for e in d.train + d.eval)  # the one cp1252 file decodes


def test_split_is_seeded_and_independent_of_n_train():
    a = load_data("bundled:bbc-news", "classification", seed=3)
    b = load_data("bundled:bbc-news", "classification", seed=3)
    c = load_data("bundled:bbc-news", "classification", seed=4)
    assert ids(a.train) == ids(b.train) and ids(a.eval) == ids(b.eval)
    assert set(ids(a.eval)) != set(ids(c.eval))

    few10 = load_data("bundled:bbc-news", "classification", seed=3, n_train=10)
    few25 = load_data("bundled:bbc-news", "classification", seed=3, n_train=25)
    few7 = load_data("bundled:bbc-news", "classification", seed=3, n_train=7)
    for few in (few10, few25, few7):
        assert ids(few.eval) == ids(a.eval)  # the eval set does not move with n_train
        assert set(ids(few.train)) <= set(ids(a.train))
    assert Counter(e["label"] for e in few10.train) == {k: 2 for k in range(5)}  # class-balanced
    assert Counter(e["label"] for e in few25.train) == {k: 5 for k in range(5)}
    assert sorted(Counter(e["label"] for e in few7.train).values()) == [1, 1, 1, 2, 2]
    assert set(ids(few10.train)) <= set(ids(few25.train))  # nested few-shot sets
    # the pool (KD's unlabeled transfer set) is the whole training split, whatever n_train, never eval
    assert ids(few10.pool) == ids(a.train) == ids(a.pool)
    assert not set(ids(few10.pool)) & set(ids(few10.eval))

    capped = load_data("bundled:bbc-news", "classification", seed=3, n_eval=50)
    assert ids(capped.eval) == ids(a.eval)[:50] and ids(capped.train) == ids(a.train)
    assert len(load_data("bundled:bbc-news", "classification", n_eval=5000).eval) == 425  # a cap, not a demand


def test_n_train_too_big():
    with pytest.raises(DataError) as e:
        load_data("bundled:bbc-news", "classification", n_train=5000)
    assert str(e.value) == "n_train=5000 but only 1700 training examples; use at most 1700 or 0 for all"


def test_bbc_news_for_language_modelling():
    d = load_data("bundled:bbc-news", "causal-lm")
    assert len(d.train) + len(d.eval) == 2125 and d.label_names == [] and d.num_labels == 0
    assert all(set(e) == {"text"} for e in d.train[:20])


# ---- bundled Q/A ---------------------------------------------------------------------------------
def test_qa_pairs():
    d = load_data("bundled:qa", "causal-lm")
    pairs = d.train + d.eval
    assert len(pairs) == 898 and d.duplicates_dropped == 2026 - 898  # the tech-support file repeats lines ~100x
    assert len({(e["prompt"], e["response"]) for e in pairs}) == 898
    assert all(set(e) == {"prompt", "response"} and e["prompt"] and e["response"] for e in pairs)
    assert {e["prompt"] for e in d.train}.isdisjoint(e["prompt"] for e in d.eval)  # no question on both sides
    assert {"prompt": "What is AI?", "response": "Artificial Intelligence is the branch of engineering and science "
            "devoted to constructing machines that think."} in pairs
    code = next(e["response"] for e in pairs if e["prompt"] == "can you write a class property?")
    assert "\n    def __init__" in code  # multi-line answers keep their lines
    assert any(e["response"] == "22" for e in pairs)  # the pair YAML folds into one string is recovered


def test_qa_topics_as_classification():
    d = load_data("bundled:qa", "classification")
    assert d.num_labels == 21 and d.label_names == sorted(d.label_names)
    assert {"ai", "tech_support", "trivia", "greetings"} <= set(d.label_names)
    texts = [(e["text"], e["label"]) for e in d.train + d.eval]
    assert len(texts) == len(set(texts)) > 700  # each question once, even when it has several answers


def test_bundled_datasets_listing_and_unknown_name():
    assert set(data.bundled_datasets()) == {"bundled:bbc-news", "bundled:qa"}
    with pytest.raises(DataError, match="available") as e:
        load_data("bundled:imdb", "classification")
    assert "bundled:bbc-news" in str(e.value)


# ---- local files --------------------------------------------------------------------------------------
def reviews(n: int = 30) -> pd.DataFrame:
    moods = ["pos", "neg", "neu"]
    return pd.DataFrame({"review": [f"review number {i} is {moods[i % 3]}" for i in range(n)],
                         "stars": [moods[i % 3] for i in range(n)]})


def test_csv_with_string_labels(tmp_path):
    f = tmp_path / "reviews.csv"
    reviews().to_csv(f, index=False)
    d = load_data(str(f), "classification")  # columns guessed: review + (few distinct values) stars
    assert d.label_names == ["neg", "neu", "pos"] and (len(d.train), len(d.eval)) == (24, 6)
    for e in d.train + d.eval:
        assert e["text"].endswith(d.label_names[e["label"]])
    assert Counter(e["label"] for e in d.eval) == {0: 2, 1: 2, 2: 2}


def test_jsonl_and_parquet(tmp_path):
    df = pd.DataFrame({"sentence": [f"s{i}" for i in range(20)], "category": [i % 2 for i in range(20)]})
    df.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    d = load_data(str(tmp_path / "a.jsonl"), "classification")
    assert d.label_names == ["0", "1"] and len(d.train) + len(d.eval) == 20

    df["category"] = [3 if i % 2 else 7 for i in range(20)]
    df.to_parquet(tmp_path / "a.parquet")
    d = load_data(str(tmp_path / "a.parquet"), "classification")
    assert d.label_names == ["3", "7"]  # int labels, sorted, mapped to ids 0..K-1
    assert all((e["label"] == 0) == (int(e["text"][1:]) % 2 == 1) for e in d.train + d.eval)

    df.to_json(tmp_path / "records.json", orient="records")  # a JSON array, not lines
    assert len(read_table(tmp_path / "records.json")) == 20


def test_explicit_columns_and_missing_column(tmp_path):
    f = tmp_path / "x.csv"
    pd.DataFrame({"body": ["a", "b", "c", "d"], "y": [0, 1, 0, 1], "id": [1, 2, 3, 4]}).to_csv(f, index=False)
    d = load_data(str(f), "classification", text_column="body", label_column="y")
    assert {e["text"] for e in d.train + d.eval} == {"a", "b", "c", "d"}
    with pytest.raises(DataError) as e:
        load_data(str(f), "classification", text_column="text", label_column="y")
    assert "'text'" in str(e.value) and "['body', 'y', 'id']" in str(e.value) and "text_column" in str(e.value)
    with pytest.raises(DataError, match=r"label_column"):
        load_data(str(f), "classification", text_column="body", label_column="stars")


def test_causal_lm_files(tmp_path):
    qa = pd.DataFrame({"Question": ["q1", "q2", "q3", "q4", "q5"], "Answer": ["a1", "a2", "a3", "a4", "a5"]})
    qa.to_csv(tmp_path / "qa.csv", index=False)
    d = load_data(str(tmp_path / "qa.csv"), "causal-lm")
    assert sorted(e["prompt"] + e["response"] for e in d.train + d.eval) == [f"q{i}a{i}" for i in range(1, 6)]
    d = load_data(str(tmp_path / "qa.csv"), "causal-lm", text_column="Answer")  # a text column only
    assert all(set(e) == {"text"} for e in d.train + d.eval)

    alpaca = pd.DataFrame({"instruction": ["Add", "Say hi"], "input": ["2 and 3", ""], "output": ["5", "hi"]})
    alpaca.to_json(tmp_path / "alpaca.jsonl", orient="records", lines=True)
    d = load_data(str(tmp_path / "alpaca.jsonl"), "causal-lm")
    assert {e["prompt"] for e in d.train + d.eval} == {"Add\n\n2 and 3", "Say hi"}


def test_empty_and_broken_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_data(str(tmp_path / "empty.csv"), "classification")
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="no examples"):
        load_data(str(tmp_path / "header.csv"), "classification")
    (tmp_path / "blank.csv").write_text("text,label\n ,a\n,b\n")
    with pytest.raises(DataError, match="no examples"):
        load_data(str(tmp_path / "blank.csv"), "classification")
    (tmp_path / "one.csv").write_text("text,label\nx,a\ny,a\nz,a\n")
    with pytest.raises(DataError, match="at least 2 classes"):
        load_data(str(tmp_path / "one.csv"), "classification")
    (tmp_path / "junk.parquet").write_bytes(b"\x00\x01 definitely not parquet " * 10)
    with pytest.raises(DataError, match="cannot read .* as Parquet"):
        load_data(str(tmp_path / "junk.parquet"), "classification")
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(DataError, match="binary"):
        load_data(str(tmp_path / "bin.csv"), "classification")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(DataError, match="cannot read"):
        load_data(str(tmp_path / "bad.jsonl"), "classification")
    (tmp_path / "tiny.csv").write_text("text,label\nx,a\ny,b\n")
    with pytest.raises(DataError, match="too few"):
        load_data(str(tmp_path / "tiny.csv"), "classification")


def test_missing_file_extension_and_arguments(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data(str(tmp_path / "nope.csv"), "classification")
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unsupported extension '.xlsx'"):
        load_data(str(tmp_path / "x.xlsx"), "classification")
    for kwargs, match in [({"n_train": -1}, "n_train=-1"), ({"n_eval": -5}, "n_eval=-5"),
                          ({"eval_fraction": 0.0}, "eval_fraction=0.0"), ({"eval_fraction": 1.5}, "eval_fraction"),
                          ({"seed": -1}, "seed=-1")]:
        with pytest.raises(DataError, match=match):
            load_data("bundled:bbc-news", "classification", **kwargs)
    with pytest.raises(DataError, match="task='regression'"):
        load_data("bundled:bbc-news", "regression")


def test_non_utf8_csv(tmp_path):
    (tmp_path / "latin.csv").write_bytes("text,label\ncafé crème,a\nnaïve,b\nrésumé,a\nfaçade,b\n".encode("cp1252"))
    d = load_data(str(tmp_path / "latin.csv"), "classification")
    assert "café crème" in {e["text"] for e in d.train + d.eval}


# ---- read_table (uploads) and guess_columns ---------------------------------------------------------------
def test_read_table_from_an_upload_buffer(monkeypatch):
    buf = io.BytesIO(reviews(5).to_csv(index=False).encode())
    df = read_table(buf, name="upload.csv")
    assert list(df.columns) == ["review", "stars"] and len(df) == 5
    monkeypatch.setattr(data, "MAX_FILE_BYTES", 100)
    with pytest.raises(DataError, match="MB"):
        read_table(io.BytesIO(b"text,label\n" + b"x,y\n" * 100), name="big.csv")
    with pytest.raises(DataError, match="unsupported extension"):
        read_table(io.BytesIO(b"text"), name="notes.docx")
    assert list(read_table(io.BytesIO(b"one\n\ntwo"), name="notes.txt")["text"]) == ["one", "two"]


@pytest.mark.parametrize("columns,expected", [
    ({"text": ["a b c"], "label": [1]}, ("text", "label")),
    ({"Sentence": ["a b c"], "Topic": ["x"]}, ("Sentence", "Topic")),
    ({"id": [1, 2, 3, 4, 5], "body": ["long text here"] * 5, "y": ["p", "q", "p", "q", "p"]}, ("body", "y")),
    ({"a": [1, 2], "b": [3, 4]}, ("", "")),
])
def test_guess_columns(columns, expected):
    assert guess_columns(pd.DataFrame(columns)) == expected


# ---- hub ----------------------------------------------------------------------------------------------------
def test_hub_dataset_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(DataError, match="hub could not be reached") as e:
        load_data("hub:someone/some-dataset", "classification")
    assert "bundled:bbc-news" in str(e.value)
    assert time.monotonic() - t0 < 20  # includes importing datasets


def test_hub_dataset_keeps_class_label_names(monkeypatch):
    """A reachable hub is faked by an in-memory DatasetDict: ClassLabel order is kept, -1 (unlabelled) dropped."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["World", "Sports", "Business"])})
    rows = {"text": [f"news {i}" for i in range(31)], "label": [i % 3 for i in range(30)] + [-1]}
    fake = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features)})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: fake)
    d = load_data("hub:fake/news", "classification")
    assert d.label_names == ["World", "Sports", "Business"] and len(d.train) + len(d.eval) == 30
    assert all(e["label"] == int(e["text"].split()[1]) % 3 for e in d.train + d.eval)


# ---- pretraining texts (masked-lm, causal-lm on plain text) -------------------------------------------
@pytest.mark.parametrize("task", ["masked-lm", "causal-lm"])
def test_pretraining_on_bbc_never_sees_the_eval_articles_of_the_classification_split(task):
    for seed in range(6):
        cls = load_data("bundled:bbc-news", "classification", seed=seed)
        pre = load_data("bundled:bbc-news", task, seed=seed)
        held_out = {e["text"] for e in cls.eval}
        assert not held_out & {e["text"] for e in pre.train}, seed          # no eval article in pretraining
        assert [e["text"] for e in pre.eval] == [e["text"] for e in cls.eval]  # the very same eval articles
        assert [e["text"] for e in pre.train] == [e["text"] for e in cls.train]
        assert all(set(e) == {"text"} for e in pre.train + pre.eval) and pre.label_names == []
    capped = load_data("bundled:bbc-news", "masked-lm", seed=2, n_eval=50, n_train=100)
    cls = load_data("bundled:bbc-news", "classification", seed=2, n_eval=50)
    assert [e["text"] for e in capped.eval] == [e["text"] for e in cls.eval] and len(capped.train) == 100
    assert len(capped.pool) == 1700


def test_masked_lm_on_qa_reads_the_answers_split_by_question():
    pairs = load_data("bundled:qa", "causal-lm", seed=1)
    d = load_data("bundled:qa", "masked-lm", seed=1)
    assert all(set(e) == {"text"} for e in d.train + d.eval)
    answers_eval = {e["response"] for e in pairs.eval}
    assert {e["text"] for e in d.eval} == answers_eval                 # the answers of the eval questions
    assert not {e["text"] for e in d.train} & answers_eval             # none of them in training
    assert {e["text"] for e in d.train} <= {e["response"] for e in pairs.train}


def test_plain_text_files_paragraphs_or_lines(tmp_path):
    paras = tmp_path / "paras.txt"
    paras.write_text("First paragraph,\nstill the first.\n\n  \nSecond one.\r\n\r\nThird\n\n\nFourth\n\nFifth\n")
    d = load_data(str(paras), "masked-lm", eval_fraction=0.2, seed=0)
    assert sorted(e["text"] for e in d.train + d.eval) == sorted(
        ["First paragraph,\nstill the first.", "Second one.", "Third", "Fourth", "Fifth"])
    assert len(d.eval) == 1
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"sentence {i}\n" for i in range(10)))
    d = load_data(str(lines), "causal-lm")
    assert sorted(e["text"] for e in d.train + d.eval) == sorted(f"sentence {i}" for i in range(10))
    assert data.text_documents("a\nb\n\nc") == ["a\nb", "c"] and data.text_documents("a\nb") == ["a", "b"]
    with pytest.raises(DataError, match="plain text without labels.*masked-lm or causal-lm"):
        load_data(str(lines), "classification")
    (tmp_path / "blank.txt").write_text("\n \n\n")
    with pytest.raises(DataError, match="blank.txt' is empty; give a file with at least one paragraph"):
        load_data(str(tmp_path / "blank.txt"), "masked-lm")


def test_masked_lm_files_use_the_text_column_and_an_optional_label_for_the_split(tmp_path):
    df = pd.DataFrame({"body": [f"text number {i}" for i in range(40)], "topic": ["a", "b"] * 20,
                       "question": [f"q{i}" for i in range(40)]})
    df.to_csv(tmp_path / "t.csv", index=False)
    d = load_data(str(tmp_path / "t.csv"), "masked-lm", text_column="body")
    assert all(set(e) == {"text"} and e["text"].startswith("text number") for e in d.train + d.eval)
    cls = load_data(str(tmp_path / "t.csv"), "classification", text_column="body", label_column="topic", seed=4)
    pre = load_data(str(tmp_path / "t.csv"), "masked-lm", text_column="body", label_column="topic", seed=4)
    assert [e["text"] for e in pre.eval] == [e["text"] for e in cls.eval]
    with pytest.raises(DataError, match="no column 'nope'"):
        load_data(str(tmp_path / "t.csv"), "masked-lm", text_column="nope")
