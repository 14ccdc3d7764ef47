"""Classic baselines that run like any model: ``model: "baseline:bag-of-words"``.

A student should see where a transformer stands against the method it replaced. On 200 BBC News
articles a bag-of-words logistic regression reaches about 95% (issue 19), above a tiny transformer
from scratch (about 65%) and level with a pretrained MiniLM: the topic of a news article is in its
words, and pretraining is what lets a transformer compete on so few labels.

    baseline:bag-of-words   TF-IDF of words (sublinear term frequency, English lower case) and a
                            multinomial logistic regression (scikit-learn, C = 10, lbfgs);
                            classification only

A baseline run is trained by ``trainer.train`` like any run (same data split, ``n_train``,
``n_eval`` and seed), so it sits in a preset's group, on Compare, in a label-budget sweep and in
the checks. It has no steps: it is fitted once, in a second or two, and its eval metrics are
logged at ``max_steps``, where the other runs' final values are. It writes no checkpoint.
"""
from __future__ import annotations

import json
import time
from typing import Any

PREFIX = "baseline:"
KIND = "baseline"      # models.model_kind and model cards: neither an encoder nor a decoder
BASELINES = {
    "baseline:bag-of-words": "bag-of-words TF-IDF + logistic regression (scikit-learn): the classic text "
                             "classifier, fitted in seconds (classification)",
}
C_INVERSE_REG = 10.0   # weak regularisation: 200 articles of 5 topics are linearly separable in TF-IDF


def is_baseline(model: str) -> bool:
    return isinstance(model, str) and model.strip().startswith(PREFIX)


def check_config(cfg: Any) -> str:
    """What is wrong with a baseline run's config ("" when nothing): the config's validation calls it."""
    model = cfg.model.strip()
    if model not in BASELINES:
        return f"there is no baseline {model!r}; the baselines are {sorted(BASELINES)}"
    if cfg.task != "classification":
        return f"{model} classifies texts; task is {cfg.task!r}: use task classification"
    if len(cfg.mix):
        return (f"{model} is not a neural network, so the strategies {sorted(cfg.mix)} do not apply "
                "to it: give it an empty mix")
    if cfg.corpus_vocab:
        return f"{model} has its own vocabulary (every word of the training texts): set corpus_vocab to 0"
    return ""


def train(cfg: Any, sink: Any = None):
    """Fit the baseline on the run's training split and evaluate it on its eval split; a TrainResult."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, log_loss

    from hft_core import data as data_sources
    from hft_core.sinks import MemorySink
    from hft_core.trainer import TrainResult

    sink = sink or MemorySink()
    t0 = time.perf_counter()
    dataset = data_sources.load_data(cfg.data, cfg.task, text_column=cfg.text_column, label_column=cfg.label_column,
                                     n_train=cfg.n_train, n_eval=cfg.n_eval, eval_fraction=cfg.eval_fraction,
                                     seed=cfg.seed)
    texts, labels = [e["text"] for e in dataset.train], np.array([e["label"] for e in dataset.train])
    sink.event(f"data {cfg.data}: {len(dataset.train)} train / {len(dataset.eval)} eval examples; model "
               f"{cfg.model}: {BASELINES[cfg.model.strip()]}")
    vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=True)
    features = vectorizer.fit_transform(texts)
    classes = sorted(set(labels.tolist()))
    sink.log(0, {"params_total": float(features.shape[1] * len(classes)), "params_trainable":
                 float(features.shape[1] * len(classes))})
    if len(classes) < 2:
        raise ValueError(f"{cfg.model}: the {len(texts)} training examples all have one label; give more examples "
                         "(n_train) so that at least two classes are present")
    clf = LogisticRegression(C=C_INVERSE_REG, max_iter=2000, random_state=cfg.seed).fit(features, labels)
    eval_x = vectorizer.transform([e["text"] for e in dataset.eval])
    eval_y = np.array([e["label"] for e in dataset.eval])
    proba = np.zeros((len(eval_y), dataset.num_labels))
    proba[:, clf.classes_] = clf.predict_proba(eval_x)   # classes absent from a few-shot set: probability 0
    predicted = proba.argmax(1)
    metrics = {"eval/loss": float(log_loss(eval_y, np.clip(proba, 1e-12, 1), labels=list(range(dataset.num_labels)))),
               "eval/accuracy": float((predicted == eval_y).mean()),
               "eval/macro_f1": float(f1_score(eval_y, predicted, average="macro"))}
    step = cfg.max_steps
    sink.log(step, metrics)
    k = dataset.num_labels
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (eval_y, predicted), 1)
    sink.event("confusion matrix (rows = true, columns = predicted; labels "   # as the classification task logs it
               f"{json.dumps(list(dataset.label_names))}): {json.dumps(confusion.tolist())}")
    sink.event(f"fitted in {time.perf_counter() - t0:.1f} s on {features.shape[1]:,} words (no steps: its eval "
               f"metrics are logged at step {step}, where the other runs end)")
    sink.event(f"finished at step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return TrainResult("finished", step, metrics, None, model=(vectorizer, clf), tokenizer=None)
