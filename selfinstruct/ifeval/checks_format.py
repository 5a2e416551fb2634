"""IFEval instructions about the answer's layout: markdown marks, sections, JSON, title, start and end, repeats.

Each check restates the definition of IFEval's reference scorer (arXiv 2311.07911); comments note the details
that decide borderline answers, since a scorer that drifts from them no longer reproduces published numbers.
"""

from __future__ import annotations

import json
import re

from pydantic import Field, field_validator

from selfinstruct.ifeval.base import Instruction


def _stripped(value: str) -> str:
    return value.strip()


class BulletCount(Instruction):
    id = "detectable_format:number_bullet_lists"
    num_bullets: int = Field(ge=0, description="Exactly this many markdown bullet lines.")

    def follows(self, response: str) -> bool:
        # A bullet is a line starting (after spaces) with "* " style or "-": "**bold**" lines are not bullets,
        # but any line starting with "-" is, "---" rules included.
        stars = re.findall(r"^\s*\*[^*].*$", response, flags=re.MULTILINE)
        dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
        return len(stars) + len(dashes) == self.num_bullets


# The three answers IFEval's constrained-response instruction offers.
CONSTRAINED_ANSWERS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


class ConstrainedResponse(Instruction):
    id = "detectable_format:constrained_response"

    def follows(self, response: str) -> bool:
        # Contained anywhere, exact case and final period: "my answer is yes" (no period) does not count.
        return any(option in response for option in CONSTRAINED_ANSWERS)


class HighlightCount(Instruction):
    id = "detectable_format:number_highlighted_sections"
    num_highlights: int = Field(ge=0, description="At least this many *highlighted* spans.")

    def follows(self, response: str) -> bool:
        # Spans within one line, between single stars; a **bold** span also counts once more as a double span
        # (IFEval counts both patterns), and spans with only spaces inside count for nothing.
        singles = [s for s in re.findall(r"\*[^\n*]*\*", response) if s.strip("*").strip()]
        doubles = [s for s in re.findall(r"\*\*[^\n*]*\*\*", response) if s[2:-2].strip()]
        return len(singles) + len(doubles) >= self.num_highlights


class SectionCount(Instruction):
    id = "detectable_format:multiple_sections"
    section_spliter: str = Field(
        description="The word that opens each section, e.g. 'SECTION' (then a number)."
    )
    num_sections: int = Field(ge=0, description="At least this many sections.")

    _strip = field_validator("section_spliter")(_stripped)

    def follows(self, response: str) -> bool:
        # Case-sensitive "SECTION 2"; the text before the first marker is not a section.
        marker = r"\s?" + re.escape(self.section_spliter) + r"\s?\d+\s?"
        return len(re.split(marker, response)) - 1 >= self.num_sections


class JsonFormat(Instruction):
    id = "detectable_format:json_format"

    def follows(self, response: str) -> bool:
        # One markdown fence around it is allowed; anything else outside the JSON value fails.
        text = response.strip()
        for fence in ("```json", "```Json", "```JSON", "```"):  # one after another, as IFEval strips them
            text = text.removeprefix(fence)
        text = text.removesuffix("```").strip()
        try:
            json.loads(text)
        except ValueError:
            return False
        return True


class Title(Instruction):
    id = "detectable_format:title"

    def follows(self, response: str) -> bool:
        # <<a title>> on one line, with something other than spaces inside.
        return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


class PlaceholderCount(Instruction):
    id = "detectable_content:number_placeholders"
    num_placeholders: int = Field(ge=0, description="At least this many [placeholders] in square brackets.")

    def follows(self, response: str) -> bool:
        return len(re.findall(r"\[.*?\]", response)) >= self.num_placeholders


class Postscript(Instruction):
    id = "detectable_content:postscript"
    postscript_marker: str = Field(description="What the postscript starts with, e.g. 'P.S.' or 'P.P.S'.")

    _strip = field_validator("postscript_marker")(_stripped)

    def follows(self, response: str) -> bool:
        # Anywhere, in any letter case; IFEval's two markers allow one space between their letters.
        if self.postscript_marker == "P.P.S":
            pattern = r"\s*p\.\s?p\.\s?s.*$"
        elif self.postscript_marker == "P.S.":
            pattern = r"\s*p\.\s?s\..*$"
        else:
            pattern = r"\s*" + re.escape(self.postscript_marker.lower()) + r".*$"
        return re.search(pattern, response.lower(), flags=re.MULTILINE) is not None


class QuotationWrap(Instruction):
    id = "startend:quotation"

    def follows(self, response: str) -> bool:
        text = response.strip()
        return len(text) > 1 and text[0] == '"' and text[-1] == '"'


class EndPhrase(Instruction):
    id = "startend:end_checker"
    end_phrase: str = Field(description="The exact phrase the answer must end with (letter case ignored).")

    _strip = field_validator("end_phrase")(_stripped)

    def follows(self, response: str) -> bool:
        # Double quotes around the whole answer are ignored, so a quoted answer can still end right.
        return response.strip().strip('"').lower().endswith(self.end_phrase.lower())


class TwoResponses(Instruction):
    id = "combination:two_responses"

    def follows(self, response: str) -> bool:
        # Split on six stars; empty pieces are allowed only at the very start or end; exactly two answers left,
        # and they must differ.
        parts = response.split("******")
        answers = []
        for i, part in enumerate(parts):
            if part.strip():
                answers.append(part)
            elif 0 < i < len(parts) - 1:
                return False
        return len(answers) == 2 and answers[0].strip() != answers[1].strip()


class RepeatPrompt(Instruction):
    id = "combination:repeat_prompt"
    prompt_to_repeat: str = Field(
        min_length=1, description="The request the answer must open with, verbatim."
    )

    def follows(self, response: str) -> bool:
        return response.strip().lower().startswith(self.prompt_to_repeat.strip().lower())


CHECKS: list[type[Instruction]] = [
    BulletCount,
    ConstrainedResponse,
    HighlightCount,
    SectionCount,
    JsonFormat,
    Title,
    PlaceholderCount,
    Postscript,
    QuotationWrap,
    EndPhrase,
    TwoResponses,
    RepeatPrompt,
]
