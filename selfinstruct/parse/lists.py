"""Numbered and bulleted lists of new instructions (`read_list`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfinstruct.parse.text import (
    Item,
    Reading,
    Unparsed,
    close_emphasis,
    closes,
    cut,
    fence_of,
    split_lines,
)

# A list marker: "9.", "9)", "9.)", "9:", "Task 9:", "#9", "**9.**", "- ", "* ", "• ". The marker must be
# followed by a space or the end of the line, so "3.5 cm" or "2:30" at a line start is text, not an item.
_MARK = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]*)?(?:(?P<open>\*\*|__)[ \t]*)?(?:(?:task|instruction|question|item)(?:[ \t]*#)?[ \t]*)?"
    r"(?:#?(?P<num>\d{1,3})(?:\.\)|[.):])|(?P<bullet>[-*•+]))",
    re.IGNORECASE,
)
_LEAD = re.compile(r"(?P<open>\*\*|__)?(?:new task|task|instruction)(?P<mid>\*\*|__)?[ \t]*:", re.IGNORECASE)
_QUOTES = {'"': '"', "“": "”", "'": "'"}


@dataclass
class _Open:
    start: int  # offset where the value starts
    line: int
    indent: int
    wrap: str | None
    end: int = -1
    fence: str | None = None  # a fence opened inside this item, not yet closed
    step: int | None = None  # number of the last nested step written at the item's own indentation


def _marker(line: str) -> tuple[int | None, bool, int, str | None] | None:
    """(number, is_bullet, value offset in line, open emphasis) of a list marker line, or None."""
    m = _MARK.match(line)
    if not m:
        return None
    pos, wrap = close_emphasis(line, m.end(), m.group("open"))
    if pos < len(line) and not line[pos].isspace():
        return None
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    lead = _LEAD.match(line, pos)
    if lead and not (lead.group("open") and lead.group("mid") != lead.group("open")):
        pos = lead.end()
        if lead.group("open") and not wrap:
            pos, _ = close_emphasis(line, pos, None)
    num = m.group("num")
    return (int(num) if num else None), num is None, pos, wrap


def _item_text(text: str, it: _Open) -> str:
    v = cut(text, it.start, it.end, it.wrap)
    q = v[:1]
    if (
        len(v) >= 2
        and q in _QUOTES
        and v[-1] == _QUOTES[q]
        and q not in v[1:-1]
        and _QUOTES[q] not in v[1:-1]
    ):
        v = v[1:-1].strip()  # a whole instruction in quotes: the quotes are layout, not part of the task
    return v


def read_list(text: str, *, first_number: int | None = None, truncated: bool = False) -> Reading[Item]:
    """Items of a numbered or bulleted list.

    `first_number`: the prompt ended with "N." so the text starts inside item N without a marker.
    `truncated`: the generation hit max_tokens, so the last item may be cut short and is marked incomplete.
    An item runs over its continuation lines (sub-bullets, indented or nested numbered lines, numbers like
    "3.5 cm") until the next item marker in sequence or a blank line; lines after a blank line that start no
    new item are commentary. The item's own number again at its indentation is the next item (markdown's lazy
    "1. 1. 1."), unless nested steps at that indentation count up to it. In a numbered list, bullets are
    sub-bullets; a fence opened inside an item belongs to it (blank lines and markers inside do not end it); a
    fence around the list is layout.
    """
    expected = (
        f"a numbered list continuing at {first_number}" if first_number else "a numbered or bulleted list"
    )
    items: list[_Open] = []
    cur: _Open | None = _Open(0, 0, 0, None) if first_number is not None else None
    if cur:
        items.append(cur)
    number, kind = first_number, ("num" if first_number is not None else None)
    wrapper: str | None = None
    for k, (s, e) in enumerate(split_lines(text)):
        line = text[s:e]
        if cur and cur.fence:  # inside a code block of the item: it is content
            cur.end = e
            if closes(line, cur.fence):
                cur.fence = None
            continue
        if wrapper and closes(line, wrapper):  # the fence around the list closes: the item ends before it
            wrapper, cur = None, None
            continue
        if f := fence_of(line):
            if cur:
                cur.fence, cur.end = f, e
            else:
                wrapper = f
            continue
        if not line.strip():
            cur = None
            continue
        indent = len(line) - len(line.lstrip(" \t"))
        mk = _marker(line)
        new = False
        if mk:
            n, bullet, pos, wrap = mk
            if first_number is not None and cur is items[0] and cur.end < 0 and n == first_number:
                # the model wrote the number the prompt already ended with ("9. 9. Task"): one marker
                cur.start, cur.wrap, cur.end, cur.fence = s + pos, wrap, e, fence_of(line[pos:])
                continue
            if kind is None:
                kind, new = ("bullet" if bullet else "num"), True
            elif kind == "num" and not bullet:
                if cur is not None and indent > cur.indent:
                    new = False  # an indented numbered line: a list inside the item
                elif number is None or n == number + 1:
                    new = True
                elif n == number and not (cur and cur.step is not None and n == cur.step + 1):
                    # the same number at the item's indentation: lazy numbering ("1. 1. 1."), the next item,
                    # unless nested steps at this indentation count up to it ("3. Do:\n1. a\n2. b\n3. c")
                    new = indent <= (cur or items[-1]).indent
                else:  # out of sequence: a nested list when lower, a skipped number when higher
                    new = n > number
                if not new and cur is not None and indent <= cur.indent:
                    cur.step = n
            elif kind == "bullet" and bullet:
                new = cur is None or not items or indent <= items[0].indent
            if new:
                if not bullet:
                    number = n
                cur = _Open(s + pos, k, indent, wrap, e, fence_of(line[pos:]))
                items.append(cur)
                continue
        if cur:
            cur.end = e
    out: list[Item] = []
    unparsed: list[Unparsed] = []
    for i, it in enumerate(items):
        last = i == len(items) - 1
        raw = text[it.start : max(it.end, it.start)]
        value = _item_text(text, it) if it.end >= it.start else ""
        if it.fence and not (truncated and last):
            unparsed.append(Unparsed(raw, f"a code fence opened in item {i + 1} is never closed"))
        elif value:
            out.append(Item(value, not (truncated and last)))
    found = "" if text.strip() else "empty text"
    if not items and text.strip():
        found = f"no list marker; text starts {text.strip()[:60]!r}"
    return Reading(out, expected, unparsed, kind or "", found)
