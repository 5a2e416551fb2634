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
Layouts understood, with examples: docs/parsing.md. Modules: `text` (the result types, line/fence/emphasis
helpers), `lists`, `yesno`, `fields` (instances and Alpaca examples).
"""

from __future__ import annotations

from selfinstruct.parse.fields import read_examples, read_instances
from selfinstruct.parse.lists import read_list
from selfinstruct.parse.text import NONE_INPUTS, Item, Reading, Unparsed, YesNo
from selfinstruct.parse.yesno import read_yes_no
from selfinstruct.schema import Instance

__all__ = [
    "NONE_INPUTS", "Item", "Reading", "Unparsed", "YesNo", "parse_examples", "parse_instances", "parse_list",
    "parse_yes_no", "read_examples", "read_instances", "read_list", "read_yes_no",
]  # fmt: skip


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
