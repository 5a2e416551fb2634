"""IFEval instructions about length: words, sentences, paragraphs (and a paragraph's first word).

Each check restates the definition of IFEval's reference scorer (arXiv 2311.07911): words are `\\w+` runs,
sentences are NLTK English Punkt sentences, `***`-paragraphs and blank-line paragraphs are two different rules.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from selfinstruct.ifeval.base import Instruction, Relation, compare
from selfinstruct.ifeval.text import count_sentences, count_words


class WordCount(Instruction):
    id = "length_constraints:number_words"
    num_words: int = Field(ge=0, description="The threshold the word count is compared with.")
    relation: Relation = Field(description="'less than' or 'at least'.")

    def follows(self, response: str) -> bool:
        return compare(count_words(response), self.relation, self.num_words)


class SentenceCount(Instruction):
    id = "length_constraints:number_sentences"
    num_sentences: int = Field(ge=0, description="The threshold the sentence count is compared with.")
    relation: Relation = Field(description="'less than' or 'at least'.")

    def follows(self, response: str) -> bool:
        return compare(count_sentences(response), self.relation, self.num_sentences)


class DividedParagraphs(Instruction):
    id = "length_constraints:number_paragraphs"
    num_paragraphs: int = Field(ge=0, description="Exactly this many paragraphs, separated by '***' lines.")

    def follows(self, response: str) -> bool:
        parts = re.split(r"\s?\*\*\*\s?", response)
        count = len(parts)
        for i, part in enumerate(parts):
            if not part.strip():
                if 0 < i < len(parts) - 1:
                    return False  # two dividers with nothing between them
                count -= 1  # a divider at the very start or end opens or closes nothing
        return count == self.num_paragraphs


class NthParagraphFirstWord(Instruction):
    id = "length_constraints:nth_paragraph_first_word"
    num_paragraphs: int = Field(ge=1, description="Exactly this many paragraphs, separated by blank lines.")
    nth_paragraph: int = Field(ge=1, description="Which paragraph (from 1) must open with `first_word`.")
    first_word: str = Field(min_length=1, description="The word it must open with (letter case ignored).")

    @field_validator("first_word")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    def follows(self, response: str) -> bool:
        # Paragraphs are split on "\n\n" exactly; empty pieces are not counted, but the nth piece is taken by
        # position among all pieces, empty ones included (IFEval's rule), and must not be empty itself.
        parts = re.split(r"\n\n", response)
        count = sum(1 for p in parts if p.strip())
        if self.nth_paragraph > count:
            return False
        paragraph = parts[self.nth_paragraph - 1].strip()
        if not paragraph:
            return False
        # The first word: leading quotes dropped, then cut at the first . , ? ! ' or ".
        word = paragraph.split()[0].lstrip("'").lstrip('"')
        first = re.split(r"""[.,?!'"]""", word, maxsplit=1)[0].lower()
        return count == self.num_paragraphs and first == self.first_word


CHECKS: list[type[Instruction]] = [WordCount, SentenceCount, DividedParagraphs, NthParagraphFirstWord]
