"""Model text -> list items, yes/no, instances, examples. Structure is found line by line on a normalised view
(markers, labels and the emphasis around them); values are cut from the original text, so model text reaches a
record byte for byte except surrounding whitespace and the labels themselves (issue 11). What does not read
unambiguously is reported, never guessed into a record. Knows nothing of the model, the loop or files.

The API, one `read_*` function per stage, each returning what was read plus what could not be:

  read_list(text, *, first_number=None, truncated=False)  -> Reading[Item]
  read_yes_no(text)                                       -> YesNo (value True | False | None, evidence)
  read_instances(text, *, output_first, truncated=False)  -> Reading[Instance]
  read_examples(text, *, truncated=False)                 -> Reading[tuple[str, Instance]]

`Reading.items` are the records; `Reading.problem` is None when any were read, else one line saying what was
expected and what was found (the loop's `unparseable` reject carries it); `Reading.unparsed` holds each block
that was skipped, verbatim, with why; `Reading.layout` names the layout recognised. The older `parse_list`,
`parse_yes_no`, `parse_instances`, `parse_examples` return just the records, as before.
Layouts understood, with examples: docs/parsing.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from selfinstruct.schema import Instance

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
def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, end before "\\n" or "\\r\\n"."""
    out, pos = [], 0
    for line in text.split("\n"):
        end = pos + len(line)
        out.append((pos, end - 1 if line.endswith("\r") else end))
        pos = end + 1
    return out


_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})([^\r\n]*)")


def _fence(line: str) -> str | None:
    """The fence a line opens or closes (```, ~~~), None for other lines and for inline ```code```."""
    m = _FENCE.match(line)
    if not m or m.group(1)[0] in m.group(2):
        return None
    return m.group(1)


def _closes(line: str, opened: str) -> bool:
    m = _FENCE.match(line)
    return bool(
        m and m.group(1)[0] == opened[0] and len(m.group(1)) >= len(opened) and not m.group(2).strip()
    )


def _value(text: str, start: int, end: int, wrap: str | None) -> str:
    """The original text between start and end without surrounding whitespace; `wrap` is an emphasis marker
    opened before the label ("**Input: x**") and closed at the very end of the value, which is dropped."""
    v = text[start:end].strip()
    if wrap and v.endswith(wrap) and wrap not in v[: -len(wrap)]:
        v = v[: -len(wrap)].rstrip()
    return v


def _emphasis(line: str, pos: int, opened: str | None) -> tuple[int, str | None]:
    """After a marker or label ending at pos: consume the closing emphasis of `opened`, if present.
    Returns the new position and the marker still open (it may close at the end of the value)."""
    if opened and line.startswith(opened, pos):
        return pos + len(opened), None
    return pos, opened


# ------------------------------------------------------------------------------------------------ lists
# A list marker: "9.", "9)", "9.)", "9:", "Task 9:", "#9", "**9.**", "- ", "* ", "• ". The marker must be
# followed by a space or the end of the line, so "3.5 cm" or "2:30" at a line start is text, not an item.
_MARK = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]*)?(?P<open>\*\*|__)?[ \t]*(?:(?:task|instruction|question|item)[ \t]*#?[ \t]*)?"
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


def _marker(line: str) -> tuple[int | None, bool, int, str | None] | None:
    """(number, is_bullet, value offset in line, open emphasis) of a list marker line, or None."""
    m = _MARK.match(line)
    if not m:
        return None
    pos, wrap = _emphasis(line, m.end(), m.group("open"))
    if pos < len(line) and not line[pos].isspace():
        return None
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    lead = _LEAD.match(line, pos)
    if lead and not (lead.group("open") and lead.group("mid") != lead.group("open")):
        pos = lead.end()
        if lead.group("open") and not wrap:
            pos, _ = _emphasis(line, pos, None)
    num = m.group("num")
    return (int(num) if num else None), num is None, pos, wrap


def _item_text(text: str, it: _Open) -> str:
    v = _value(text, it.start, it.end, it.wrap)
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
    new item are commentary. In a numbered list, bullets are sub-bullets; a fence opened inside an item
    belongs to it (blank lines and markers inside do not end it); a fence around the list is layout.
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
    for k, (s, e) in enumerate(_lines(text)):
        line = text[s:e]
        if cur and cur.fence:  # inside a code block of the item: it is content
            cur.end = e
            if _closes(line, cur.fence):
                cur.fence = None
            continue
        if wrapper and _closes(line, wrapper):  # the fence around the list closes: the item ends before it
            wrapper, cur = None, None
            continue
        if f := _fence(line):
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
            if kind is None:
                kind, new = ("bullet" if bullet else "num"), True
            elif kind == "num" and not bullet:
                if cur is not None and indent > cur.indent:
                    new = False  # an indented numbered line: a list inside the item
                elif number is None or n == number + 1:
                    new = True
                else:  # out of sequence: a nested list when lower, a skipped number when higher
                    new = n > number
            elif kind == "bullet" and bullet:
                new = cur is None or not items or indent <= items[0].indent
            if new:
                if not bullet:
                    number = n
                cur = _Open(s + pos, k, indent, wrap, e, _fence(line[pos:]))
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


# ------------------------------------------------------------------------------------------------ yes/no
_YES, _NO = {"yes", "true", "y"}, {"no", "false", "n"}
_WORD = re.compile(r"[a-z]+")
_ANSWER_LABEL = re.compile(
    r"^\W*(?:classification|answer|label|is (?:it|this) a classification task\??|response)\W*:\W*(\w+)",
    re.IGNORECASE | re.MULTILINE,
)
_SAYS_NOT = re.compile(r"\b(?:not|isn't|isnt|is no)\b[^.\n]{0,20}\bclassification\b", re.IGNORECASE)
_SAYS_IS = re.compile(r"\b(?:is|it's|its)\s+(?:a\s+|an\s+)?classification\s+(?:task|problem)\b", re.I)


def _word_value(word: str) -> bool | None:
    w = word.lower()
    return True if w in _YES else False if w in _NO else None


def read_yes_no(text: str) -> YesNo:
    """Yes/no from a short answer wherever it sits: "Yes", "**No.**", "Classification: Yes", "Answer: No",
    "Yes, it is", "It is a classification task", "not a classification task"; anything else is unclear."""
    labelled = {v for m in _ANSWER_LABEL.finditer(text) if (v := _word_value(m.group(1))) is not None}
    if len(labelled) == 1:
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


# ------------------------------------------------------------------------------------------------ fields
# A field label at a line start: "Input:", "**Input:**", "**Input**:", "__Output__:", "*Label:*", "Output 2:",
# "1. Input:", "- Input:", "### Output:". The name is looked up in the layout; unknown names are text.
_LABEL = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]*)?(?:(?:[-*•+]|\d{1,3}(?:\.\)|[.)]))[ \t]+)?(?P<open>\*\*|__|\*|_)?"
    r"(?P<name>[A-Za-z][A-Za-z ]{0,14}?)(?:[ \t]*#?\d{1,3})?(?P<mid>\*\*|__|\*|_)?[ \t]*:"
)
_HEADER = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:example|instance)[ \t]*#?[ \t]*\d{1,3}[ \t]*(?:\*\*|__)?"
    r"[ \t]*[:.]?[ \t]*(?:\*\*|__)?[ \t]*(?=\S|$)",
    re.IGNORECASE,
)


def _label(line: str, names: dict[str, str]) -> tuple[str, int, str | None] | None:
    """(field, value offset in line, open emphasis) when the line starts with a label of the layout."""
    m = _LABEL.match(line)
    if not m or (fld := names.get(m.group("name").lower())) is None:
        return None
    opened, mid = m.group("open"), m.group("mid")
    if mid and mid != opened:
        return None
    pos, wrap = m.end(), (None if mid else opened)
    if wrap:  # "**Input:** x": the emphasis closes after the colon
        pos, wrap = _emphasis(line, pos, wrap)
    return fld, pos, wrap


@dataclass
class _Record:
    start: int
    fields: dict[str, list] = field(default_factory=dict)  # field -> [value start, value end, wrap]
    dupes: list[str] = field(default_factory=list)
    fence: str | None = None  # a fence opened in a value and never closed
    end: int = 0
    lead: bool = False  # unlabelled text came right before the record's first label
    clash: str = ""  # a competing answer label ("Output:" in a Label/Input example)


def _records(text: str, names: dict[str, str], first: str, clash: frozenset = frozenset()) -> list[_Record]:
    """Split text into records: an "Example N" header or the label of `first` starts a new one; a value runs
    until the next label of the layout. Labels inside a code fence opened in a value are content; a label
    named in `clash` (another answer label) is content too, but marks the record ambiguous."""
    recs: list[_Record] = []
    cur: _Record | None = None
    value: list | None = None  # [start, end, wrap] of the value being read
    in_value_fence: str | None = None
    wrapper: str | None = None
    pending = False  # unlabelled text outside any value since the last label or header
    for s, e in _lines(text):
        line = text[s:e]
        if in_value_fence:
            value[1] = e
            if _closes(line, in_value_fence):
                in_value_fence = None
            continue
        if wrapper and _closes(line, wrapper):
            wrapper, value = None, None
            continue
        if f := _fence(line):
            if value is not None:
                in_value_fence, value[1] = f, e
            else:
                wrapper = f
            continue
        hdr = _HEADER.match(line)
        if hdr and not line[hdr.end() :].strip():
            cur, value, pending = _Record(s, end=e), None, False
            recs.append(cur)
            continue
        at = hdr.end() if hdr else 0  # "Example 2: Input: ..." is a header and a label on one line
        lab = _label(line[at:], names)
        if lab is None:
            if value is not None:
                value[1] = e
                if cur is not None and not cur.clash and (m := _LABEL.match(line)):
                    cur.clash = m.group("name").strip() if m.group("name").strip().lower() in clash else ""
            pending = pending or (value is None and bool(line.strip()))
            continue
        fld, pos, wrap = lab
        pos += at
        if cur is None or (fld == first and cur.fields) or at:
            cur = _Record(s)
            recs.append(cur)
        if not cur.fields:
            cur.lead, pending = pending, False
        if fld in cur.fields:
            cur.dupes.append(fld)
        value = cur.fields.setdefault(fld, [s + pos, e, wrap])
        if value[0] != s + pos:  # a second label of a field already read: the first value stands
            value = None
        else:
            in_value_fence = _fence(line[pos:])  # "Output: ```python"
        cur.end = e
    if in_value_fence and cur is not None:
        cur.fence = in_value_fence
    for i, r in enumerate(recs):
        r.end = recs[i + 1].start if i + 1 < len(recs) else len(text)
    return recs


_ANSWERS = frozenset({"output", "label", "class label", "class"})  # names that each mean "the answer"


def _label_names(text: str) -> list[str]:
    """Every name written as a label at a line start ("Input", "class label"), in order. Labels inside code
    fences count only when there are none outside (a fence around the whole answer is layout)."""
    outside, inside, fence = [], [], None
    for line in text.split("\n"):
        if f := _fence(line):
            fence = None if fence and _closes(line, fence) else fence or f
            continue
        hdr = _HEADER.match(line)
        if m := _LABEL.match(line, hdr.end() if hdr else 0):
            (inside if fence else outside).append(m.group("name").strip().lower())
            fence = fence or _fence(line[m.end() :].lstrip("*_"))  # "Output: ```python"
    return outside or inside


def _pick(present: set[str], choices: tuple[str, ...]) -> str:
    return next((c for c in choices if c in present), choices[0])


def _input(value: str) -> str:
    return "" if value.strip().lower() in NONE_INPUTS else value


def _fields(text: str, rec: _Record, need: tuple[str, ...], shown: dict[str, str]) -> dict[str, str] | str:
    """Values of a record, or a problem string when the record does not read unambiguously."""
    if rec.dupes:
        return f"{shown[rec.dupes[0]]} appears twice in one example"
    if rec.clash:
        return f"a second answer label, {rec.clash}:, beside {shown['output']}:"
    if rec.fence:
        return "a code fence opened in a value is never closed"
    missing = [shown[f] for f in need if f not in rec.fields]
    if missing:
        return f"no {' or '.join(missing)}" + (
            f" after {', '.join(shown[f] for f in rec.fields)}" if rec.fields else ""
        )
    out = {f: _value(text, s, e, w) for f, (s, e, w) in rec.fields.items()}
    empty = [shown[f] for f in need if not out[f]]
    return f"empty {empty[0]}" if empty else out


def _skip(text: str, rec: _Record, problem: str, last: bool, unparsed: list[Unparsed]) -> None:
    """Report a record that gave nothing; a bare "Example N" header (nothing under it) is not worth a line."""
    if rec.fields or text[rec.start : rec.end].strip().partition("\n")[2].strip():
        unparsed.append(
            Unparsed(text[rec.start : rec.end].strip(), problem + (" (cut by max_tokens)" if last else ""))
        )


def read_instances(text: str, *, output_first: bool, truncated: bool = False) -> Reading[Instance]:
    """Instances from "Input:/Output:" records, or "Label:/Input:" records for output-first classification.

    The labels come from the text: the answer is "Output" if any line starts with it, else "Answer", else
    "Response" (under output-first: "Label", "Class label", "Class", then those); any other label-like line
    ("Answer:" inside an Output) is text. Whichever of input and answer comes first starts each record, so an
    input-first answer to an output-first prompt reads right. In Self-Instruct's output-first layout with no
    "Input:" label, the label is its line and the input is everything after it ("Sentence: ..." included).
    The record the generation was writing when it hit max_tokens gets meta finish_reason "length".
    """
    seen = _label_names(text)
    present = set(seen)
    answers = ("output", "answer", "response", "label", "class label", "class")
    if output_first:
        answers = ("label", "class label", "class", "output", "answer", "response")
    ans = _pick(present, answers)
    names = {"input": "input", ans: "output"}
    shown = {"input": "Input", "output": ans.capitalize()}
    first = next((names[n] for n in seen if n in names), "output" if output_first else "input")
    layout = f"{shown[first]}/{shown['input' if first == 'output' else 'output']}"
    expected = f"{'Label:/Input:' if output_first else 'Input:/Output:'} examples"
    recs = _records(text, names, first, _ANSWERS - {ans})
    out: list[Instance] = []
    unparsed: list[Unparsed] = []
    for i, rec in enumerate(recs):
        last = truncated and i == len(recs) - 1
        need = ("output",)
        self_instruct = output_first and first == "output" and ans in ("label", "class label", "class")
        if self_instruct and "input" not in rec.fields and "output" in rec.fields:
            rec = _self_instruct_split(text, rec)
        if output_first:
            need = ("output", "input")
        got = _fields(text, rec, need, shown)
        if isinstance(got, str):
            _skip(text, rec, got, last, unparsed)
            continue
        if "input" not in got and rec.lead:
            problem = f"text before {shown['output']} and no Input label"
            unparsed.append(Unparsed(text[rec.start : rec.end].strip(), problem))
            continue
        if output_first and first == "output" and "\n" in got["output"]:
            unparsed.append(
                Unparsed(text[rec.start : rec.end].strip(), f"text between {shown['output']} and Input")
            )
            continue
        meta = {"finish_reason": "length"} if last else {}
        out.append(Instance(input=_input(got.get("input", "")), output=got["output"], meta=meta))
    found = "" if recs else ("empty text" if not text.strip() else f"no {expected[:-9]} labels")
    return Reading(out, expected, unparsed, layout, found)


def _self_instruct_split(text: str, rec: _Record) -> _Record:
    """ "Class label: X\\nSentence: ..." (Self-Instruct): the label is the rest of its line, the input the rest."""
    s, e, wrap = rec.fields["output"]
    nl = text.find("\n", s, e)
    if nl < 0:
        return rec
    fields = {"output": [s, nl, wrap]}
    if text[nl:e].strip():
        fields["input"] = [nl + 1, e, None]
    return replace(rec, fields=fields)


def read_examples(text: str, *, truncated: bool = False) -> Reading[tuple[str, Instance]]:
    """(instruction, instance) pairs from Alpaca-style "Instruction/Input/Output" records; Input is optional,
    the answer label is "Output", else "Answer", else "Response", as for instances."""
    ans = _pick(set(_label_names(text)), ("output", "answer", "response"))
    names = {"instruction": "instruction", "input": "input", ans: "output"}
    shown = {"instruction": "Instruction", "input": "Input", "output": ans.capitalize()}
    recs = _records(text, names, "instruction")
    out: list[tuple[str, Instance]] = []
    unparsed: list[Unparsed] = []
    for i, rec in enumerate(recs):
        last = truncated and i == len(recs) - 1
        got = _fields(text, rec, ("instruction", "output"), shown)
        order = [f for f in ("instruction", "input", "output") if f in rec.fields]
        if not isinstance(got, str) and sorted(order, key=lambda f: rec.fields[f][0]) != order:
            got = f"fields out of order: {', '.join(shown[f] for f in sorted(order, key=lambda f: rec.fields[f][0]))}"
        if isinstance(got, str):
            _skip(text, rec, got, last, unparsed)
            continue
        meta = {"finish_reason": "length"} if last else {}
        inst = Instance(input=_input(got.get("input", "")), output=got["output"], meta=meta)
        out.append((got["instruction"], inst))
    found = "" if recs else ("empty text" if not text.strip() else "no Instruction: labels")
    return Reading(
        out, "Instruction:/Input:/Output: examples", unparsed, f"Instruction/Input/{shown['output']}", found
    )


# ------------------------------------------------------------------------------------------------ old API
def parse_list(text: str, *, first_number: int | None = None, truncated: bool = False) -> list[Item]:
    """The items of `read_list`."""
    return read_list(text, first_number=first_number, truncated=truncated).items


def parse_yes_no(text: str) -> bool | None:
    """The value of `read_yes_no`: True, False or None (unclear)."""
    return read_yes_no(text).value


def parse_instances(text: str, *, output_first: bool, truncated: bool = False) -> list[Instance]:
    """The instances of `read_instances`."""
    return read_instances(text, output_first=output_first, truncated=truncated).items


def parse_examples(text: str, *, truncated: bool = False) -> list[tuple[str, Instance]]:
    """The (instruction, instance) pairs of `read_examples`."""
    return read_examples(text, truncated=truncated).items
