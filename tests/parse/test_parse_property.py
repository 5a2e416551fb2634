"""Any text placed as a value in any supported layout parses back exactly (issue 11).
Run: pytest tests/parse/test_parse_property.py

Values mix unicode, `**`, `__`, backticks, fenced code (holding label-like lines), lines that begin with
"Answer:", "Response:", "3.5 cm", "9.)". A value is only excluded when the layout itself says its line is
structure (a line starting with the layout's own label, an "Example N" header, a list marker in a list);
the checks below are written independently of the parser's regular expressions.
"""

from __future__ import annotations

import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from selfinstruct.parse import NONE_INPUTS, read_examples, read_instances, read_list
from selfinstruct.parse.lists import _marker

CHARS = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="`~")
STARTS = [
    "", "Answer: ", "Response: ", "3.5 cm ", "9.) ", "- ", "* ", "**", "__", "`", "x = 2**10 ", "__init__ ",
    "Note: ", "1. ", "Étape ", "日本語 ", "# ", '{"a": ', "a_1 * b_2 ", "> ",
]  # fmt: skip
LINE = st.builds(lambda p, t: p + t, st.sampled_from(STARTS), st.text(CHARS, max_size=25))
IN_FENCE = st.sampled_from(["Output: 5", "Input: 6", "Label: x", "Instruction: y", "", "Example 2", "10. z"])
FENCE = st.lists(st.one_of(LINE, IN_FENCE), max_size=3).map(lambda ls: "\n".join(["```", *ls, "```"]))
RAW = st.lists(st.one_of(LINE, LINE, FENCE), min_size=1, max_size=4).map(lambda ls: "\n".join(ls).strip())


def _outside_fences(value: str) -> list[str]:
    out, inside = [], False
    for line in value.split("\n"):
        if line.strip().startswith("```"):
            inside = not inside
        elif not inside:
            out.append(line)
    return out


def _structure(names: str) -> re.Pattern:
    """A line the layout reads as structure: one of its labels, or an example header."""
    return re.compile(
        rf"^[\s#*_\-•+\d.)]*(?:(?:{names})[\s\d#*_]*:|(?:example|instance)\s*#?\s*\d)", re.IGNORECASE
    )


def value(names: str, *, one_line: bool = False, is_input: bool = False, in_list: bool = False):
    structure = _structure(names)
    marker = re.compile(r"[\s#*_]*(?:(?:task|instruction|question|item)\s*#?\s*)?#?\d{1,3}(?:\.\)|[.):])")
    lead = re.compile(r"(?:\*\*|__)?(?:new task|task|instruction)(?:\*\*|__)?\s*:", re.IGNORECASE)

    def ok(v: str) -> bool:
        lines = _outside_fences(v)
        if not v or any(structure.match(ln) for ln in lines):
            return False
        if is_input and v.lower() in NONE_INPUTS:
            return False
        if in_list:
            quoted = v[0] in "\"'“" and v[-1] in "\"'”"
            return (
                not quoted
                and not lead.match(v)
                and all(ln.strip() for ln in lines)
                and not any(marker.match(ln) for ln in v.split("\n")[1:])
            )
        return True

    base = LINE.map(str.strip) if one_line else RAW
    return base.filter(ok)


OUT = value("output|input")
IN = value("output|input", is_input=True)
INSTANCE_LAYOUTS = [
    "Input: {i}\nOutput: {o}",
    "**Input:** {i}\n**Output:** {o}",
    "__Input__: {i}\n__Output__: {o}",
    "**Input**: {i}\n**Output**: {o}",
    "### Input:\n{i}\n### Output:\n{o}",
    "Input:\n{i}\n\nOutput:\n{o}",
]
SEPARATORS = ["\n\n", "\n\nExample {k}\n", "\n\n### Example {k}\n", "\n\n**Example {k}:**\n", "\n"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(IN, OUT), min_size=1, max_size=3),
    st.sampled_from(INSTANCE_LAYOUTS),
    st.sampled_from(SEPARATORS),
    st.booleans(),
)
def test_instances_parse_back_exactly(examples, layout, sep, numbered):
    blocks = []
    for k, (i, o) in enumerate(examples, start=1):
        block = layout.format(i=i, o=o)
        blocks.append(f"{k}. {block}" if numbered and layout.startswith("Input") else block)
    text = blocks[0] + "".join(sep.format(k=k) + b for k, b in enumerate(blocks[1:], start=2))
    got = read_instances(text, output_first=False)
    assert [(x.input, x.output) for x in got.items] == examples, got.unparsed


LABEL = value("label|input", one_line=True)
IN_CLS = value("label|input", is_input=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(IN_CLS, LABEL), min_size=1, max_size=3), st.sampled_from(["label", "input"]))
def test_output_first_parses_back_exactly_in_either_order(examples, first):
    fmt = "Label: {o}\nInput: {i}" if first == "label" else "Input: {i}\nLabel: {o}"
    text = "\n\nExample 2\n".join(fmt.format(i=i, o=o) for i, o in examples)
    got = read_instances(text, output_first=True)
    assert [(x.input, x.output) for x in got.items] == examples, got.unparsed


# "Sentence:" is text here, so a fence right after it would not start its line: that value is not a layout's.
SENTENCE = value("class label|input").filter(lambda v: not v.lower().startswith(("sentence", "```")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(SENTENCE, value("class label|input", one_line=True)), min_size=1, max_size=3))
def test_self_instruct_class_label_layout(examples):
    text = "\n\n".join(f"Class label: {o}\nSentence: {i}" for i, o in examples)
    got = read_instances(text, output_first=True)
    assert [(x.input, x.output) for x in got.items] == [(f"Sentence: {i}", o) for i, o in examples]


INSTR = value("instruction|input|output")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(INSTR, value("instruction|input|output", is_input=True), INSTR), min_size=1, max_size=3
    ),
    st.booleans(),
)
def test_alpaca_examples_parse_back_exactly(examples, bold):
    b = "**" if bold else ""
    fmt = f"{b}Instruction:{b} {{a}}\n{b}Input:{b} {{i}}\n{b}Output:{b} {{o}}"
    text = "\n\n".join(
        f"### Example {k}\n" + fmt.format(a=a, i=i, o=o) for k, (a, i, o) in enumerate(examples, 5)
    )
    got = read_examples(text)
    assert [(a, x.input, x.output) for a, x in got.items] == examples, got.unparsed


ITEM = value("zzz", in_list=True)  # a list has no field labels


@settings(max_examples=150, deadline=None)
@given(
    st.lists(ITEM, min_size=1, max_size=4),
    st.integers(1, 40),
    st.sampled_from(["{n}. ", "{n}) ", "**{n}.** ", "{n}.) ", "Task {n}: "]),
    st.booleans(),
)
def test_list_items_parse_back_exactly(items, start, marker, raw):
    lines = [marker.format(n=n) + v for n, v in enumerate(items, start)]
    if raw:  # the raw prompt ended with "N." so the model starts inside item N
        # An item that itself opens with the marker "N." reads as the model repeating the prompt's number
        # ("9. 9. Task", one marker by rule): that text cannot parse back as written, so it is not generated.
        assume(_marker(items[0]) is None or _marker(items[0])[0] != start)
        lines[0] = " " + items[0]
    got = read_list("\n".join(lines), first_number=start if raw else None)
    assert [it.text for it in got.items] == items, got.unparsed


STEP = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(ITEM, st.lists(STEP, max_size=4), st.sampled_from(["", "   ", "\t"])),
        min_size=1,
        max_size=4,
    ),
    st.integers(1, 12),
    st.sampled_from(["{n}. ", "{n}) ", "**{n}.** ", "Task {n}: "]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["\n", "\n\n"]),
)
def test_list_numbering_and_nested_steps(items, start, marker, lazy, raw, sep):
    """Markdown's lazy numbering (every item "N.") or counting numbers, tight or loose, with nested steps under
    an item: each instruction comes back whole with its own steps, none merged into another and none split off.
    Steps are indented, or (counting list) at the item's indentation and numbered 1.. up to the item's number."""
    texts, blocks = [], []
    for k, (v, steps, indent) in enumerate(items):
        n = start if lazy else start + k
        if not indent and (lazy or n == 1):
            steps = []  # "1. Do X:\n1. step": at the same indentation a repeated number is the next item
        steps = steps[:n] if not indent else steps
        step_lines = [f"{indent}{start if lazy else j}. {t}" for j, t in enumerate(steps, 1)]
        texts.append("\n".join([v, *step_lines]))
        blocks.append("\n".join([marker.format(n=n) + v, *step_lines]))
    if raw:  # the raw prompt ended with "N.": the model starts inside item N (see above)
        assume(_marker(items[0][0]) is None or _marker(items[0][0])[0] != start)
        blocks[0] = " " + blocks[0][len(marker.format(n=start)) :]
    got = read_list(sep.join(blocks), first_number=start if raw else None)
    assert [it.text for it in got.items] == texts, got.unparsed
