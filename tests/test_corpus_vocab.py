"""The pretraining lesson's parts (issue 19 §1): a WordPiece vocabulary learnt from the run's own
training texts (hft_core/vocab.py, config ``corpus_vocab``), a chosen init std (``init_std``), and the
bag-of-words baseline that runs like any model (hft_core/baselines.py)."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file

from hft_core import data, home, models, vocab
from hft_core.config import ConfigError, RunConfig
from hft_core.sinks import MemorySink
from hft_core.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

TINY = dict(model="tiny:bert", data="bundled:bbc-news", device="cpu", precision="fp32", max_length=32,
            batch_size=4, max_steps=2, n_eval=16, eval_every=0, checkpoint_every=0, seed=0)


def train_texts(seed: int = 0) -> list[str]:
    d = data.load_data("bundled:bbc-news", "contrastive", seed=seed)
    return [e["text"] for e in d.pool or d.train]


def test_merges_follow_pair_counts_with_ties_broken_by_sort_order():
    # words: low x3, lower, lowest. Pairs: (l, ##o) and (##o, ##w) 5 each: the tie goes to the pair that
    # sorts first, ("##o", "##w") -> "##ow"; then (l, ##ow) 5 -> "low"; (##ow, ##e) has only 2.
    texts = ["low lower lowest", "low low"]
    alphabet = ["##e", "##o", "##r", "##s", "##t", "##w", "l"]
    assert vocab.learn_vocab(texts, 5 + 7 + 2) == [*vocab.SPECIALS, *alphabet, "##ow", "low"]
    # words are now [low], [low ##e ##r], [low ##e ##s ##t]: (low, ##e) = 2 beats the pairs of 1
    assert vocab.learn_vocab(texts, 5 + 7 + 3)[-1] == "lowe"
    tok = vocab.corpus_tokenizer(texts, 5 + 7 + 2)
    assert tok.tokenize("Lowest") == ["low", "##e", "##s", "##t"]   # greedy longest match, lower-cased
    assert tok("low")["input_ids"] == [tok.cls_token_id, tok.convert_tokens_to_ids("low"), tok.sep_token_id]


def test_the_vocabulary_is_deterministic_and_close_to_the_reference_trainer():
    texts = train_texts()[:300]
    ours = vocab.learn_vocab(texts, 1000)
    assert len(ours) == 1000 and ours[:5] == list(vocab.SPECIALS) and len(set(ours)) == 1000
    assert vocab.learn_vocab(list(reversed(texts)), 1000) == ours   # counts, not text order, decide
    # Hugging Face's WordPiece trainer does the same but breaks ties in hash order: nearly the same set
    from tokenizers import Tokenizer, models as tm, normalizers, pre_tokenizers, trainers

    ref = Tokenizer(tm.WordPiece(unk_token="[UNK]"))
    ref.normalizer = normalizers.BertNormalizer(lowercase=True)
    ref.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    ref.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=list(vocab.SPECIALS),
                                                            show_progress=False))
    assert len(set(ours) & set(ref.get_vocab())) / 1000 >= 0.95


def test_a_run_learns_its_vocabulary_from_its_training_texts_and_passes_it_on(hft_home):
    texts = train_texts(seed=0)
    pre = RunConfig(**{**TINY, "task": "contrastive", "corpus_vocab": 500, "init_std": 0.02})
    result = train(pre, MemorySink(), out_dir=home.run_dir("vocab-pretrain"))
    assert result.status == "finished"
    ckpt = home.checkpoint_dir("vocab-pretrain")
    saved = models.load_tokenizer("run:vocab-pretrain")
    assert len(saved) == 500
    assert saved.convert_ids_to_tokens(list(range(500))) == vocab.learn_vocab(texts, 500)  # the training split's
    assert load_file(str(ckpt / "model.safetensors"))["embeddings.word_embeddings.weight"].shape[0] == 500
    assert abs(float(result.model.embeddings.position_embeddings.weight.detach().std()) - 0.02) < 0.002   # init_std drawn

    # the same model from scratch, same seed: the same vocabulary (learnt from the same training texts)
    sink = MemorySink()
    scratch = train(RunConfig(**{**TINY, "corpus_vocab": 500, "n_train": 40}), sink)
    assert scratch.tokenizer.get_vocab() == saved.get_vocab()
    # fine-tuning the pretraining run reads its tokenizer from the checkpoint
    tuned = train(RunConfig(**{**TINY, "model": "run:vocab-pretrain", "n_train": 40}), MemorySink())
    assert tuned.status == "finished" and tuned.tokenizer.get_vocab() == saved.get_vocab()
    assert tuned.model.bert.embeddings.word_embeddings.weight.shape[0] == 500


@pytest.mark.parametrize("fields, message", [
    (dict(model="bundled:minilm-l6", corpus_vocab=4000), "needs a model built from scratch"),
    (dict(model="tiny:bert", corpus_vocab=5), "between 100 and 100000"),
    (dict(model="tiny:bert", init_std=-0.1), "std between 0 and 1"),
    (dict(model="baseline:svm"), "the baselines are"),
    (dict(model="baseline:bag-of-words", task="masked-lm"), "use task classification"),
    (dict(model="baseline:bag-of-words", mix={"l2sp": {}}), "not a neural network"),
    (dict(model="baseline:bag-of-words", corpus_vocab=4000), "set corpus_vocab to 0"),
])
def test_bad_vocabulary_init_and_baseline_settings_say_what_to_do(fields, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**fields)


def test_the_bag_of_words_baseline_matches_scikit_learn_by_hand_and_beats_chance_by_far():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    cfg = RunConfig(model="baseline:bag-of-words", data="bundled:bbc-news", n_train=200, n_eval=200, max_steps=100,
                    seed=1)
    sink = MemorySink()
    result = train(cfg, sink)
    assert result.status == "finished" and result.checkpoint is None
    assert [s for s, _ in sink.series("eval/accuracy")] == [100]   # logged where the other runs end
    d = data.load_data("bundled:bbc-news", "classification", n_train=200, n_eval=200, seed=1)
    vec = TfidfVectorizer(sublinear_tf=True)
    clf = LogisticRegression(C=10, max_iter=2000).fit(vec.fit_transform([e["text"] for e in d.train]),
                                                     [e["label"] for e in d.train])
    by_hand = float(np.mean(clf.predict(vec.transform([e["text"] for e in d.eval])) == [e["label"] for e in d.eval]))
    assert result.metrics["eval/accuracy"] == pytest.approx(by_hand)
    assert result.metrics["eval/accuracy"] >= 0.85   # 5 topics: chance is 0.2; measured 0.94-0.975 on seeds 0-5
    # its confusion matrix is logged as a classification run's is (the Runs page draws it)
    from ui.after_training import confusion

    names, matrix = confusion([(0.0, "info", m) for _, m in sink.events])
    assert names == d.label_names and sum(map(sum, matrix)) == 200
    assert sum(matrix[i][i] for i in range(len(names))) / 200 == pytest.approx(by_hand)
