"""Which language a memory (or a query) is written in, and the dictionary forms of its words
where Postgres has no stemmer for that language.

Detection and lemmas come from simplemma (dictionary lookup, no model download). Only the
languages of `MEMORY_LANGUAGES` are told apart: each costs its dictionary in memory (about
65 MB for en+uk+ru together) and a wider set confuses short texts more.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from django.conf import settings

from apps.memory.models import FTS_CONFIGS

_WORD = re.compile(r"\w+", re.UNICODE)
LANG_RE = re.compile(r"^[a-z]{2,3}$")
# Below this share of known words the text is called unknown (`""`): names, codes, "ok".
MIN_SHARE = 0.3
# Lemmas are looked up for at most this many words: a long document's rare words are what
# matter, and a 64 KiB content must not cost a second on the write path.
MAX_LEMMA_WORDS = 4000

_lock = threading.Lock()
_detector = None


def languages() -> tuple[str, ...]:
    return tuple(settings.MEMORY_LANGUAGES)


def _get_detector():
    global _detector
    if _detector is None:
        with _lock:
            if _detector is None:
                from simplemma.language_detector import LanguageDetector
                from simplemma.strategies import DictionaryLookupStrategy

                # Dictionary lookup only: the default strategy's affix rules make detection
                # ~200 times slower (12 ms a sentence) for no gain on the texts we see.
                detector = LanguageDetector(lang=languages(), lemmatization_strategy=DictionaryLookupStrategy())
                # Its dictionaries load on first use (2-3 s, tens of MB) into an lru_cache that
                # does not stop concurrent misses: load them here, once, under the lock, or a
                # burst of first calls from many threads loads them once per thread.
                detector.proportion_in_each_language("warm up")
                _detector = detector
    return _detector


def detect(text: str) -> str:
    """The ISO 639-1 code of the language most of `text`'s words belong to, or `""`."""
    if not text or not _WORD.search(text):
        return ""
    if len(languages()) == 1:
        return languages()[0]
    shares = _get_detector().proportion_in_each_language(text[:2000])
    best, share = max(
        ((lang, value) for lang, value in shares.items() if lang != "unk"), key=lambda item: item[1], default=("", 0.0)
    )
    return best if share >= MIN_SHARE else ""


def clean_lang(value: str | None) -> str | None:
    """A caller's `lang`: lower-cased, or None when it is not a language code."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if LANG_RE.match(value) else None


def needs_lemmas(lang: str) -> bool:
    """Languages without a Postgres stemmer get their words' dictionary forms indexed too."""
    return bool(lang) and lang not in FTS_CONFIGS and lang in _lemma_languages()


@lru_cache(maxsize=1)
def _lemma_languages() -> frozenset[str]:
    from simplemma.strategies.dictionaries.dictionary_factory import SUPPORTED_LANGUAGES

    return frozenset(SUPPORTED_LANGUAGES)


_lemma_ready: set[str] = set()


def lemma(word: str, lang: str) -> str:
    from simplemma import lemmatize

    if lang not in _lemma_ready:
        with _lock:  # the first use of a language loads its dictionary: once, as above
            if lang not in _lemma_ready:
                try:
                    lemmatize("warm", lang=lang)
                except ValueError:
                    pass
                _lemma_ready.add(lang)
    try:
        return lemmatize(word, lang=lang).lower()
    except ValueError:  # a language simplemma does not know
        return word


def lemmas(text: str, lang: str) -> str:
    """The dictionary forms of `text`'s words that differ from the words themselves, each once
    (the words themselves are indexed already), as a space-separated string."""
    if not needs_lemmas(lang):
        return ""
    seen: dict[str, None] = {}
    for i, match in enumerate(_WORD.finditer(text.lower())):
        if i >= MAX_LEMMA_WORDS:
            break
        word = match.group(0)
        if word.isdigit():
            continue
        base = lemma(word, lang)
        if base != word:
            seen.setdefault(base, None)
    return " ".join(seen)
