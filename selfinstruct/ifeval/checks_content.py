"""IFEval instructions about what the words are: keywords, letters, language, letter case, commas.

Each check restates the definition of IFEval's reference scorer (arXiv 2311.07911, section 2 and its table of
25 instructions); comments note where a detail decides borderline answers.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field, field_validator

from selfinstruct.ifeval.base import Instruction, Relation, compare
from selfinstruct.ifeval.text import LanguageUnknown, detect_language, word_tokens


def _stripped(value: str) -> str:
    return value.strip()


class KeywordsExist(Instruction):
    id = "keywords:existence"
    keywords: list[str] = Field(description="Every one must appear, anywhere, in any letter case.")

    def follows(self, response: str) -> bool:
        # A substring match: "cat" is found inside "category", as in IFEval. Keywords are matched as literal
        # text (IFEval passes them to re unescaped; its 541 keywords hold no regex characters, so same result).
        return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in self.keywords)


class KeywordFrequency(Instruction):
    id = "keywords:frequency"
    keyword: str = Field(description="The word to count (substring matches, any letter case).")
    frequency: int = Field(ge=0, description="The threshold the count is compared with.")
    relation: Relation = Field(
        description="'less than' (count < frequency) or 'at least' (count >= frequency)."
    )

    _strip = field_validator("keyword")(_stripped)

    def follows(self, response: str) -> bool:
        count = len(re.findall(re.escape(self.keyword), response, flags=re.IGNORECASE))
        return compare(count, self.relation, self.frequency)


class ForbiddenWords(Instruction):
    id = "keywords:forbidden_words"
    forbidden_words: list[str] = Field(description="None may appear as a whole word, in any letter case.")

    def follows(self, response: str) -> bool:
        # Whole words only (\b on both sides): "catalog" does not break a ban on "cat".
        return not any(
            re.search(rf"\b{re.escape(w)}\b", response, flags=re.IGNORECASE) for w in self.forbidden_words
        )


class LetterFrequency(Instruction):
    id = "keywords:letter_frequency"
    letter: str = Field(min_length=1, max_length=1, description="One letter, counted in any case.")
    let_frequency: int = Field(ge=0, description="The threshold the count is compared with.")
    let_relation: Relation = Field(description="'less than' or 'at least'.")

    @field_validator("letter")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    def follows(self, response: str) -> bool:
        return compare(Counter(response.lower())[self.letter], self.let_relation, self.let_frequency)


class ResponseLanguage(Instruction):
    id = "language:response_language"
    language: str = Field(description="ISO 639-1 code the whole answer must be in, as langdetect names it.")

    def follows(self, response: str) -> bool:
        try:
            return detect_language(response) == self.language
        except LanguageUnknown:
            return True  # IFEval counts text with no detectable language as following


class AllCapitals(Instruction):
    id = "change_case:english_capital"

    def follows(self, response: str) -> bool:
        # str.isupper: at least one cased letter and no lowercase one; digits and punctuation don't matter.
        if not response.isupper():
            return False
        try:
            return detect_language(response) == "en"
        except LanguageUnknown:
            return True


class AllLowercase(Instruction):
    id = "change_case:english_lowercase"

    def follows(self, response: str) -> bool:
        if not response.islower():
            return False
        try:
            return detect_language(response) == "en"
        except LanguageUnknown:
            return True


class CapitalWordFrequency(Instruction):
    id = "change_case:capital_word_frequency"
    capital_frequency: int = Field(
        ge=0, description="The threshold the count of all-capital words is compared with."
    )
    capital_relation: Relation = Field(description="'less than' or 'at least'.")

    def follows(self, response: str) -> bool:
        # Tokens as NLTK's word_tokenize makes them: "DON'T" is two capital tokens, "U.S.A." one.
        count = sum(1 for token in word_tokens(response) if token.isupper())
        return compare(count, self.capital_relation, self.capital_frequency)


class NoComma(Instruction):
    id = "punctuation:no_comma"

    def follows(self, response: str) -> bool:
        return "," not in response  # the ASCII comma only; "，" (U+FF0C) passes, as in IFEval


CHECKS: list[type[Instruction]] = [
    KeywordsExist,
    KeywordFrequency,
    ForbiddenWords,
    LetterFrequency,
    ResponseLanguage,
    AllCapitals,
    AllLowercase,
    CapitalWordFrequency,
    NoComma,
]
