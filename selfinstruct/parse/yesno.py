"""Yes/no answers to the classification question (`read_yes_no`)."""

from __future__ import annotations

import re

from selfinstruct.parse.text import YesNo

_YES, _NO = {"yes", "true", "y"}, {"no", "false", "n"}
_WORD = re.compile(r"[a-z]+")
_ANSWER_LABEL = re.compile(
    r"^[^\w\n]*(?:classification|answer|label|is (?:it|this) a classification task\??|response)[^\w\n]*:"
    r"[^\w\n]*(\w+)",
    re.IGNORECASE | re.MULTILINE,
)
_SAYS_NOT = re.compile(r"\b(?:not|isn't|isnt|is no)\b[^.\n]{0,20}\bclassification\b", re.IGNORECASE)
_SAYS_IS = re.compile(r"\b(?:is|it's|its)\s+(?:a\s+|an\s+)?classification\s+(?:task|problem)\b", re.I)


def _word_value(word: str) -> bool | None:
    w = word.lower()
    return True if w in _YES else False if w in _NO else None


def read_yes_no(text: str) -> YesNo:
    """Yes/no from a short answer wherever it sits: "Yes", "**No.**", "Classification: Yes", "Answer: No",
    "Yes, it is", "It is a classification task", "not a classification task"; labelled answers that disagree
    and anything else are unclear."""
    labelled = {v for m in _ANSWER_LABEL.finditer(text) if (v := _word_value(m.group(1))) is not None}
    if len(labelled) > 1:  # "Classification: Yes" and "Classification: No": no other rule may pick one
        return YesNo(None, text.strip()[:80])
    if labelled:
        return YesNo(labelled.pop(), _ANSWER_LABEL.search(text).group(0).strip()[:80])
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    words = _WORD.findall(first.lower())
    if words and words[0] not in ("y", "n") and (v := _word_value(words[0])) is not None:
        return YesNo(v, first[:80])
    if words in (["y"], ["n"]):
        return YesNo(words[0] == "y", first[:80])
    head = text[:300]
    if m := _SAYS_NOT.search(head):
        return YesNo(False, m.group(0))
    if m := _SAYS_IS.search(head):
        return YesNo(True, m.group(0))
    short = {v for w in words[:6] if (v := _word_value(w)) is not None and w not in ("y", "n")}
    if len(words) <= 6 and len(short) == 1:
        return YesNo(short.pop(), first[:80])
    return YesNo(None, text.strip()[:80])
