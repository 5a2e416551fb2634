"""What every reader in `selfinstruct.parse` shares: the result types and the line, fence and emphasis helpers
that find structure in model text while values are cut from the original."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

NONE_INPUTS = frozenset(
    {"", "<none>", "none", "<noinput>", "no input", "n/a", "na", "-", "nothing", "(none)", "null"}
)


@dataclass(frozen=True)
class Item:
    text: str
    complete: bool  # False when the generation stopped inside this item (cut by max_tokens)


@dataclass(frozen=True)
class Unparsed:
    """A block that was skipped: its text, verbatim, and why (what was expected, what was found)."""

    text: str
    problem: str


@dataclass(frozen=True)
class Reading(Generic[T]):
    """What one completion gave: records, skipped blocks, the layout seen; `problem` when nothing was read."""

    items: list[T]
    expected: str
    unparsed: list[Unparsed] = field(default_factory=list)
    layout: str = ""
    found: str = ""

    @property
    def problem(self) -> str | None:
        if self.items:
            return None
        found = self.found or "; ".join(u.problem for u in self.unparsed[:3]) or "nothing in that layout"
        return f"expected {self.expected}; found {found}"


@dataclass(frozen=True)
class YesNo:
    value: bool | None  # None: unclear
    evidence: str  # the words the value was read from, or the start of the text when unclear


# ------------------------------------------------------------------------------------------------ lines
def split_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, end before "\\n" or "\\r\\n"."""
    out, pos = [], 0
    for line in text.split("\n"):
        end = pos + len(line)
        out.append((pos, end - 1 if line.endswith("\r") else end))
        pos = end + 1
    return out


_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})([^\r\n]*)")


def fence_of(line: str) -> str | None:
    """The fence a line opens or closes (```, ~~~), None for other lines and for inline ```code```."""
    m = _FENCE.match(line)
    if not m or m.group(1)[0] in m.group(2):
        return None
    return m.group(1)


def closes(line: str, opened: str) -> bool:
    m = _FENCE.match(line)
    return bool(
        m and m.group(1)[0] == opened[0] and len(m.group(1)) >= len(opened) and not m.group(2).strip()
    )


def cut(text: str, start: int, end: int, wrap: str | None) -> str:
    """The original text between start and end without surrounding whitespace; `wrap` is an emphasis marker
    opened before the label ("**Input: x**") and closed at the very end of the value, which is dropped."""
    v = text[start:end].strip()
    if wrap and v.endswith(wrap) and wrap not in v[: -len(wrap)]:
        v = v[: -len(wrap)].rstrip()
    return v


def close_emphasis(line: str, pos: int, opened: str | None) -> tuple[int, str | None]:
    """After a marker or label ending at pos: consume the closing emphasis of `opened`, if present.
    Returns the new position and the marker still open (it may close at the end of the value)."""
    if opened and line.startswith(opened, pos):
        return pos + len(opened), None
    return pos, opened
