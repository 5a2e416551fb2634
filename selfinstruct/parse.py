"""Model text -> candidates. Tolerant of the numbering and layout variations models actually produce
(`9.`, `9)`, `Task 9:`, `**9.**`, bullets, bold field names, code fences), strict about what counts as content.

Pure functions: text in, strings or Instances out. Empty results mean "unparseable"; the loop turns that into a
reject carrying the raw text. Knows nothing of the model or of files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfinstruct.schema import Instance

# A list item marker at the start of a line: "9.", "9)", "9:", "Task 9:", "#9", "**9.**", "- ", "* ", "• ".
_ITEM = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*|__)?\s*(?:(?:task|instruction|example|question)\s*#?\s*)?"
    r"(?:(?P<num>\d{1,3})\s*(?:\*\*|__)?\s*[.):\-]|(?P<bullet>[-*•]))\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_LEAD_LABEL = re.compile(r"^(?:task|instruction|new task)\s*(?:\d+)?\s*[:.\-]\s*", re.IGNORECASE)
_FENCE = re.compile(r"^\s*```.*$", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*\*|__)")
NONE_INPUTS = frozenset(
    {"", "<none>", "none", "<noinput>", "no input", "n/a", "na", "-", "nothing", "(none)", "null"}
)


@dataclass(frozen=True)
class Item:
    text: str
    complete: bool  # False when the generation stopped inside this item (cut by max_tokens)


def _clean(text: str) -> str:
    text = _FENCE.sub("", text)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _strip_item(text: str) -> str:
    text = _EMPHASIS.sub("", text).strip()
    text = _LEAD_LABEL.sub("", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    return text.strip('"“” ').strip()


def parse_list(text: str, *, first_number: int | None = None, truncated: bool = False) -> list[Item]:
    """Items of a numbered or bulleted list.

    `first_number`: the prompt ended with "N." so the text starts inside item N without a marker.
    `truncated`: the generation hit max_tokens, so the last item may be cut short and is marked incomplete.
    A blank line ends an item; lines after it that start no new item are commentary and are ignored.
    """
    text = _clean(text)
    if first_number is not None:
        text = f"{first_number}. {text.lstrip()}"
    items: list[list[str]] = []
    open_item = False
    for line in text.split("\n"):
        m = _ITEM.match(line)
        if m and line[m.end() :].strip():
            items.append([line[m.end() :].strip()])
            open_item = True
        elif not line.strip():
            open_item = False
        elif open_item and items:
            items[-1].append(line.strip())
    out = [Item(_strip_item(" ".join(parts)), True) for parts in items]
    out = [it for it in out if it.text]
    if truncated and out:
        out[-1] = Item(out[-1].text, False)
    return out


def parse_yes_no(text: str) -> bool | None:
    """The first word decides: yes/true -> True, no/false -> False, anything else -> None."""
    m = re.match(r"\W*(\w+)", _EMPHASIS.sub("", text))
    word = m.group(1).lower() if m else ""
    return True if word in ("yes", "true") else False if word in ("no", "false") else None


_FIELD = re.compile(
    r"^\s*(?:[-*•]\s*)?(?:\*\*|__)?\s*(?P<name>instruction|input|output|label|class|answer|response)\s*(?:\*\*|__)?"
    r"\s*:\s*(?:\*\*|__)?\s*",
    re.IGNORECASE | re.MULTILINE,
)
_BLOCK = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?\s*example\s*\d+\s*(?:\*\*)?\s*[:.]?\s*(?:\*\*)?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_ALIASES = {"class": "label", "answer": "output", "response": "output"}


def _fields(block: str) -> dict[str, str]:
    """Field name -> value for one block; a value runs until the next field name. The first of a name wins."""
    out: dict[str, str] = {}
    matches = list(_FIELD.finditer(block))
    ends = [m.start() for m in matches[1:]] + [len(block)]
    for m, end in zip(matches, ends, strict=False):  # no matches: nothing to pair
        name = m.group("name").lower()
        name = _ALIASES.get(name, name)
        value = block[m.end() : end]
        if name not in out:
            out[name] = _EMPHASIS.sub("", value).strip()
    return out


def _blocks(text: str, split_on: str) -> list[str]:
    """Split at "Example N" headings, and also wherever a new `split_on` field starts a fresh record."""
    text = _clean(text)
    parts = [p for p in _BLOCK.split(text) if p.strip()]
    blocks = []
    for part in parts:
        starts = [
            m.start()
            for m in _FIELD.finditer(part)
            if _ALIASES.get(m.group("name").lower(), m.group("name").lower()) == split_on
        ]
        if len(starts) <= 1:
            blocks.append(part)
            continue
        cuts = [0, *starts[1:], len(part)]
        blocks += [part[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if part[a:b].strip()]
    return blocks


def _input(value: str) -> str:
    return "" if value.strip().lower() in NONE_INPUTS else value.strip()


def parse_instances(text: str, *, output_first: bool, truncated: bool = False) -> list[Instance]:
    """Instances from "Input:/Output:" blocks, or "Label:/Input:" blocks for output-first classification.

    An instance whose block the generation was still writing when it hit max_tokens is marked with
    meta finish_reason "length" so the heuristics reject it with evidence instead of it vanishing.
    """
    first, second = ("label", "input") if output_first else ("input", "output")
    out: list[Instance] = []
    blocks = _blocks(text, first)
    for i, block in enumerate(blocks):
        f = _fields(block)
        answer = f.get("label" if output_first else "output", f.get("output", "")).strip()
        if not answer or (second not in f and first not in f):
            continue
        meta = {"finish_reason": "length"} if truncated and i == len(blocks) - 1 else {}
        out.append(Instance(input=_input(f.get("input", "")), output=answer, meta=meta))
    return out


def parse_examples(text: str, *, truncated: bool = False) -> list[tuple[str, Instance]]:
    """(instruction, instance) pairs from Alpaca-style "Instruction/Input/Output" blocks."""
    out = []
    blocks = _blocks(text, "instruction")
    for i, block in enumerate(blocks):
        f = _fields(block)
        instruction, output = _strip_item(f.get("instruction", "")), f.get("output", "").strip()
        if not instruction or not output:
            continue
        meta = {"finish_reason": "length"} if truncated and i == len(blocks) - 1 else {}
        out.append((instruction, Instance(input=_input(f.get("input", "")), output=output, meta=meta)))
    return out
