"""Labelled fields: instances of a task (`read_instances`) and Alpaca examples (`read_examples`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from selfinstruct.parse.text import (
    NONE_INPUTS,
    Reading,
    Unparsed,
    close_emphasis,
    closes,
    cut,
    fence_of,
    split_lines,
)
from selfinstruct.schema import Instance

# A field label at a line start: "Input:", "**Input:**", "**Input**:", "__Output__:", "*Label:*", "Output 2:",
# "1. Input:", "- Input:", "### Output:". The name is looked up in the layout; unknown names are text.
_LABEL = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]*)?(?:(?:[-*•+]|\d{1,3}(?:\.\)|[.)]))[ \t]+)?(?P<open>\*\*|__|\*|_)?"
    r"(?P<name>[A-Za-z][A-Za-z ]{0,14}?)(?:[ \t]*#?\d{1,3})?(?P<mid>\*\*|__|\*|_)?[ \t]*:"
)
_HEADER = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]*)?(?:(?:\*\*|__)[ \t]*)?(?:example|instance)(?:[ \t]*#)?[ \t]*\d{1,3}"
    r"(?:[ \t]*(?:\*\*|__))?(?:[ \t]*[:.])?(?:[ \t]*(?:\*\*|__))?[ \t]*",
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
        pos, wrap = close_emphasis(line, pos, wrap)
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
    for s, e in split_lines(text):
        line = text[s:e]
        if in_value_fence:
            value[1] = e
            if closes(line, in_value_fence):
                in_value_fence = None
            continue
        if wrapper and closes(line, wrapper):
            wrapper, value = None, None
            continue
        if f := fence_of(line):
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
        if value[0] != s + pos:  # a second label of a field already read: its text goes nowhere (unparsed)
            value = [s + pos, e, wrap]
        in_value_fence = fence_of(line[pos:])  # "Output: ```python"
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
        if f := fence_of(line):
            fence = None if fence and closes(line, fence) else fence or f
            continue
        hdr = _HEADER.match(line)
        if m := _LABEL.match(line, hdr.end() if hdr else 0):
            (inside if fence else outside).append(m.group("name").strip().lower())
            fence = fence or fence_of(line[m.end() :].lstrip("*_"))  # "Output: ```python"
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
    out = {f: cut(text, s, e, w) for f, (s, e, w) in rec.fields.items()}
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
    the answer label is "Output", else "Answer", else "Response", as for instances; the instruction label is
    "Instruction", else "Instructions"."""
    present = set(_label_names(text))
    ans = _pick(present, ("output", "answer", "response"))
    ins = _pick(present, ("instruction", "instructions"))
    names = {ins: "instruction", "input": "input", ans: "output"}
    shown = {"instruction": ins.capitalize(), "input": "Input", "output": ans.capitalize()}
    recs = _records(text, names, "instruction")
    out: list[tuple[str, Instance]] = []
    unparsed: list[Unparsed] = []
    for i, rec in enumerate(recs):
        last = truncated and i == len(recs) - 1
        got = _fields(text, rec, ("instruction", "output"), shown)
        order = [f for f in ("instruction", "input", "output") if f in rec.fields]
        written = sorted(order, key=lambda f: rec.fields[f][0])
        if not isinstance(got, str) and written != order:
            got = f"fields out of order: {', '.join(shown[f] for f in written)}"
        if isinstance(got, str):
            _skip(text, rec, got, last, unparsed)
            continue
        meta = {"finish_reason": "length"} if last else {}
        inst = Instance(input=_input(got.get("input", "")), output=got["output"], meta=meta)
        out.append((got["instruction"], inst))
    found = "" if recs else ("empty text" if not text.strip() else "no Instruction: labels")
    return Reading(
        out,
        "Instruction:/Input:/Output: examples",
        unparsed,
        f"{shown['instruction']}/Input/{shown['output']}",
        found,
    )
