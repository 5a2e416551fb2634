"""Parsing hand-made model text: every layout of docs/parsing.md and the bug cases of issue 11.
Run: pytest tests/test_parse.py (real completions: tests/parse/test_parse_fixtures.py; properties:
tests/parse/test_parse_property.py)."""

import pytest

from selfinstruct.parse import (
    parse_examples,
    parse_instances,
    parse_list,
    parse_yes_no,
    read_examples,
    read_instances,
    read_list,
    read_yes_no,
)


def pairs(text: str, output_first: bool = False, truncated: bool = False) -> list[tuple[str, str]]:
    return [
        (i.input, i.output)
        for i in read_instances(text, output_first=output_first, truncated=truncated).items
    ]


# ------------------------------------------------------------------------------------------------ lists
@pytest.mark.parametrize(
    "text, first, expected",
    [
        (
            "1. Sort the list.\n2) Name a fruit.\n3: Tell a joke.",
            None,
            ["Sort the list.", "Name a fruit.", "Tell a joke."],
        ),
        (" Count the vowels.\n10. Add two numbers.", 9, ["Count the vowels.", "Add two numbers."]),
        (" 9. Count the vowels.\n10. Add two numbers.", 9, ["Count the vowels.", "Add two numbers."]),
        ("**9.** Bold task here.\n**10. Another bold one**", None, ["Bold task here.", "Another bold one"]),
        (
            "Task 9: Summarise the text.\nTask 10: Translate it.",
            None,
            ["Summarise the text.", "Translate it."],
        ),
        (
            "- Bullet one is here\n* Bullet two is here\n• Bullet three",
            None,
            ["Bullet one is here", "Bullet two is here", "Bullet three"],
        ),
        (
            "9. A task that goes on\nover two lines.\n\nSome commentary after.",
            None,
            ["A task that goes on\nover two lines."],
        ),
        ('9. "Quoted task."\n10. Instruction: Labelled task.', None, ["Quoted task.", "Labelled task."]),
        ("```\n9. Fenced task.\n```", None, ["Fenced task."]),
        (
            "9.) Write a haiku about rain.\n10.) Name a river.",
            None,
            ["Write a haiku about rain.", "Name a river."],
        ),
        # sub-bullets and nested numbered steps stay with their instruction
        (
            "9. Plan a trip with these limits:\n   - budget under $500\n   - two days\n10. Name a river.",
            None,
            ["Plan a trip with these limits:\n   - budget under $500\n   - two days", "Name a river."],
        ),
        (
            "9. Follow the recipe:\n1. Preheat the oven\n2. Mix\n10. Name a river.",
            None,
            ["Follow the recipe:\n1. Preheat the oven\n2. Mix", "Name a river."],
        ),
        # markdown's lazy numbering ("1." on every line): a repeated number at the item's indentation is the
        # next item, in a tight or a loose list, and in raw style when the model repeats the prompt's number
        (
            "1. Name a river.\n1. Write a haiku.\n1. Sort these numbers.",
            None,
            ["Name a river.", "Write a haiku.", "Sort these numbers."],
        ),
        ("1. Name a river.\n\n1. Write a haiku.", None, ["Name a river.", "Write a haiku."]),
        (
            " Name a river.\n9. Write a haiku.\n9. Sort these numbers.",
            9,
            ["Name a river.", "Write a haiku.", "Sort these numbers."],
        ),
        ("\n9. Count the vowels.\n10. Add two numbers.", 9, ["Count the vowels.", "Add two numbers."]),
        # ... while indented steps, and steps counting up to the item's own number, stay nested
        (
            "1. Do X:\n   1. step\n   1. step\n1. Next",
            None,
            ["Do X:\n   1. step\n   1. step", "Next"],
        ),
        ("1. Do X:\n   1. step\n   2. step\n2. Next", None, ["Do X:\n   1. step\n   2. step", "Next"]),
        ("3. Plan:\n   1. step\n   2. step\n3. Next", None, ["Plan:\n   1. step\n   2. step", "Next"]),
        (
            "3. Follow the recipe:\n1. Preheat the oven\n2. Mix\n3. Bake\n4. Name a river.",
            None,
            ["Follow the recipe:\n1. Preheat the oven\n2. Mix\n3. Bake", "Name a river."],
        ),
        # a continuation line starting with a number is not an item
        (
            "9. Convert the width below to inches:\n3.5 cm wide\n10. Name a river.",
            None,
            ["Convert the width below to inches:\n3.5 cm wide", "Name a river."],
        ),
        # ** and __ and backticks inside an instruction stay
        (
            "9. Explain what `__init__` does.\n10. Compute 2**10 by hand.",
            None,
            ["Explain what `__init__` does.", "Compute 2**10 by hand."],
        ),
        # a fence opened inside an item belongs to it, blank lines and numbers included
        (
            "9. Fix this code:\n```\nx = 1\n\n10. y\n```\n10. Name a river.",
            None,
            ["Fix this code:\n```\nx = 1\n\n10. y\n```", "Name a river."],
        ),
        ("Sure! Here are more:\n\n9. Name a lake.\n10. Name a sea.", None, ["Name a lake.", "Name a sea."]),
        ("No list at all, just prose.", None, []),
        ("", None, []),
    ],
)
def test_list_layouts(text, first, expected):
    assert [it.text for it in parse_list(text, first_number=first)] == expected
    for it in read_list(text, first_number=first).items:
        assert it.text in text  # verbatim


def test_list_problem_says_what_was_expected_and_found():
    r = read_list("No list at all, just prose.", first_number=None)
    assert r.items == [] and r.problem.startswith(
        "expected a numbered or bulleted list; found no list marker"
    )
    assert (
        read_list("", first_number=9).problem == "expected a numbered list continuing at 9; found empty text"
    )
    assert read_list("9. Fine.").problem is None


def test_list_item_with_unclosed_fence_is_unparsed_not_kept():
    r = read_list("9. Fix:\n```\nx = 1\n10. more")
    assert r.items == [] and "never closed" in r.unparsed[0].problem
    cut = read_list("9. Fix:\n```\nx = 1", truncated=True)  # cut by max_tokens: kept, marked incomplete
    assert [(it.text, it.complete) for it in cut.items] == [("Fix:\n```\nx = 1", False)]


def test_truncated_last_item_is_marked_not_dropped():
    items = parse_list("9. Complete one.\n10. Cut in the mid", truncated=True)
    assert [(it.text, it.complete) for it in items] == [("Complete one.", True), ("Cut in the mid", False)]


# ------------------------------------------------------------------------------------------------ yes/no
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", True),
        (" No\n\nTask: more", False),
        ("**yes**.", True),
        ("false", False),
        ("Classification: Yes", True),
        ("Answer: No", False),
        ("Yes, it is", True),
        ("No.", False),
        ("It is a classification task.", True),
        ("This is not a classification task.", False),
        ("Task: Sort these words.\nClassification: No", False),
        ("Task: a\nClassification: Yes\n\nTask: b\nClassification: No", None),
        # labelled answer lines that disagree are unclear, however they are spelled or placed
        ("Classification: Yes\nClassification: No", None),
        ("Answer: No\nAnswer: Yes", None),
        ("Classification: No\nLabel: yes", None),
        ("Classification: Yes\nClassification: Yes", True),
        ("Maybe so", None),
        ("N/A", None),
        ("The answer depends on the labels.", None),
        ("", None),
    ],
)
def test_yes_no(text, expected):
    assert parse_yes_no(text) is expected
    assert read_yes_no(text).value is expected


# ------------------------------------------------------------------------------------------------ instances
def test_instances_input_first():
    text = "Input: 2 and 3\nOutput: 5\n\nExample 2\nInput: <none>\nOutput: Zero\n\nExample 3\nInput: 4\n"
    r = read_instances(text, output_first=False)
    assert pairs(text) == [("2 and 3", "5"), ("", "Zero")]
    assert [u.problem for u in r.unparsed] == ["no Output after Input"]
    assert r.unparsed[0].text == "Example 3\nInput: 4"


def test_instances_output_first():
    text = "Label: positive\nInput: I loved it.\n\nExample 2\n**Label:** negative\n**Input:** Awful."
    got = parse_instances(text, output_first=True)
    assert [(i.input, i.output) for i in got] == [("I loved it.", "positive"), ("Awful.", "negative")]


def test_markdown_and_code_in_values_are_kept_verbatim():
    """Issue 11: `2**10`, `__init__`, `x**2` and fences lost their markers and accepted outputs were wrong."""
    out = (
        "self.x = 2**10\n__init__ runs first\n```python\nprint(sum(x**2 for x in range(4)))\n```\n"
        "__Note__: *done*"
    )
    text = f"Input: a class\nOutput: {out}\n\nExample 2\n**Input:** **bold** input\n__Output__: x_1 * y_2"
    assert pairs(text) == [("a class", out), ("**bold** input", "x_1 * y_2")]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("**Input:** a\n**Output:** b", [("a", "b")]),
        ("**Input**: a\n**Output**: b", [("a", "b")]),
        ("__Input__: a\n__Output__: b", [("a", "b")]),
        ("*Input:* a\n*Output:* b", [("a", "b")]),
        ("**Input: a**\n**Output: b**", [("a", "b")]),
        ("### Input:\na\n### Output:\nb", [("a", "b")]),
        ("- Input: a\n- Output: b", [("a", "b")]),
        ("Input 1: a\nOutput 1: b\nInput 2: c\nOutput 2: d", [("a", "b"), ("c", "d")]),
        ("INPUT: a\nOUTPUT: b", [("a", "b")]),
        ("Example 1:\nInput: a\nOutput: b\n\nExample 2:\nInput: c\nOutput: d", [("a", "b"), ("c", "d")]),
        ("**Example 1**\nInput: a\nOutput: b\n**Example 2**\nInput: c\nOutput: d", [("a", "b"), ("c", "d")]),
        ("### Example 2\nInput: a\nOutput: b", [("a", "b")]),
        ("Example 1: Input: a\nOutput: b\nExample 2: Input: c\nOutput: d", [("a", "b"), ("c", "d")]),
        # issue 11: numbered instances are separate instances, not one output swallowing the next
        ("1. Input: 2 and 3\nOutput: 5\n2. Input: 4 and 4\nOutput: 8", [("2 and 3", "5"), ("4 and 4", "8")]),
        # issue 11: Answer:/Response: lines inside an output do not cut it
        (
            "Input: q\nOutput: Think first.\nAnswer: 42\nResponse: ok",
            [("q", "Think first.\nAnswer: 42\nResponse: ok")],
        ),
        # ... unless they are the layout's own label
        ("Input: q\nAnswer: 42\n\nInput: r\nAnswer: 43", [("q", "42"), ("r", "43")]),
        ("Input: q\nResponse: 42", [("q", "42")]),
        # output-only instances for tasks without input
        ("Output: a haiku\n\nExample 2\nOutput: another", [("", "a haiku"), ("", "another")]),
        # a fence around everything is layout
        ("```\nInput: a\nOutput: b\n```", [("a", "b")]),
        # a label inside a code block of an output is code
        ("Input: a\nOutput: ```\nOutput: 5\nInput: 6\n```", [("a", "```\nOutput: 5\nInput: 6\n```")]),
        # JSON-looking answers stay as written
        (
            'Input: {"a": 1}\nOutput: {"sum": 1, "items": ["x", "y"]}',
            [('{"a": 1}', '{"sum": 1, "items": ["x", "y"]}')],
        ),
        # maths with * and _
        (
            "Input: a_1 = 3, a_2 = 4\nOutput: a_1 * a_2 = 12 and 2**3 = 8",
            [("a_1 = 3, a_2 = 4", "a_1 * a_2 = 12 and 2**3 = 8")],
        ),
        ("Input: width\nOutput: It measures\n3.5 cm", [("width", "It measures\n3.5 cm")]),
    ],
)
def test_instance_layouts(text, expected):
    assert pairs(text) == expected
    for inst in read_instances(text, output_first=False).items:
        assert inst.output in text and inst.input in text


@pytest.mark.parametrize(
    "text, expected, layout",
    [
        # issue 11: answered input-first under the output-first prompt
        (
            "Input: I loved it\nLabel: positive\n\nInput: Awful.\nLabel: negative",
            [("I loved it", "positive"), ("Awful.", "negative")],
            "Input/Label",
        ),
        ("Input: I loved it\nOutput: positive", [("I loved it", "positive")], "Input/Output"),
        # issue 11: Self-Instruct's own output-first layout
        (
            "Class label: Positive\nSentence: I loved it.\n\nClass label: Negative\nSentence: Awful.\nIt was long.",
            [("Sentence: I loved it.", "Positive"), ("Sentence: Awful.\nIt was long.", "Negative")],
            "Class label/Input",
        ),
        ("Class label: Positive\nInput: I loved it.", [("I loved it.", "Positive")], "Class label/Input"),
        ("**Label:** spam\n**Input:** WIN NOW", [("WIN NOW", "spam")], "Label/Input"),
    ],
)
def test_output_first_layouts(text, expected, layout):
    r = read_instances(text, output_first=True)
    assert [(i.input, i.output) for i in r.items] == expected and r.layout == layout


@pytest.mark.parametrize(
    "text, output_first, problem",
    [
        ("Input: a\nOutput: b\nOutput: c", False, "Output appears twice in one example"),
        ("Input: a\nOutput:", False, "empty Output"),
        ("Input: a\nOutput: ```\nb", False, "a code fence opened in a value is never closed"),
        ("Label: positive", True, "no Input after Label"),
        ("Label: positive\nbecause it is nice\nInput: great", True, "text between Label and Input"),
        # unlabelled text before an output-only example may be its input: not guessed either way
        (
            '"A steel bottle, 750 ml"\n\nOutput: Meet your new bottle.',
            False,
            "text before Output and no Input label",
        ),
        # two answers in one example
        (
            "Label: moral\nInput: A car story.\nOutput: Invalid",
            True,
            "a second answer label, Output:, beside Label:",
        ),
        # the Self-Instruct split (label line, then the input) is for label layouts, not for "Output:"
        ("Output: present\nExplanation: the verb is in the present.", True, "no Input after Output"),
    ],
)
def test_ambiguous_blocks_are_unparsed_with_their_problem(text, output_first, problem):
    r = read_instances(text, output_first=output_first)
    assert r.items == []
    assert [u.problem for u in r.unparsed] == [problem]
    assert (
        r.problem
        == f"expected {'Label:/Input:' if output_first else 'Input:/Output:'} examples; found {problem}"
    )


def test_nothing_in_the_layout():
    r = read_instances("Sure, here you go. Have fun!", output_first=False)
    assert r.items == [] and r.problem == "expected Input:/Output: examples; found no Input:/Output: labels"


def test_instances_truncated_last_block_is_marked():
    got = parse_instances("Input: a\nOutput: b\nInput: c\nOutput: d d d", output_first=False, truncated=True)
    assert [i.meta.get("finish_reason") for i in got] == [None, "length"]
    r = read_instances("Input: a\nOutput: b\nInput: c", output_first=False, truncated=True)
    assert pairs("Input: a\nOutput: b\nInput: c", truncated=True) == [("a", "b")]
    assert [u.problem for u in r.unparsed] == ["no Output after Input (cut by max_tokens)"]


# ------------------------------------------------------------------------------------------------ examples
def test_alpaca_examples():
    text = (
        "Instruction: Add the numbers.\nInput: 1, 2\nOutput: 3\n\n### Example 5\nInstruction: Name a bird.\n"
        "Input: <none>\nOutput: Robin\n\n### Example 6\nInstruction: Half done\nInput:"
    )
    got = parse_examples(text)
    assert [(a, i.input, i.output) for a, i in got] == [
        ("Add the numbers.", "1, 2", "3"),
        ("Name a bird.", "", "Robin"),
    ]
    assert [u.problem for u in read_examples(text).unparsed] == ["no Output after Instruction, Input"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "**Instruction:** Write `__repr__`.\n**Input:** <none>\n**Output:** def __repr__(self): ...",
            [("Write `__repr__`.", "", "def __repr__(self): ...")],
        ),
        (
            "1. Instruction: A b c.\nOutput: d\n2. Instruction: E f g.\nInput: h\nOutput: i",
            [("A b c.", "", "d"), ("E f g.", "h", "i")],
        ),
        ("Instruction: Solve.\nInput: x\nAnswer: 4", [("Solve.", "x", "4")]),
        ("Instructions: Solve.\nInput: x\nOutput: 4", [("Solve.", "x", "4")]),
        ("Instruction: Solve.\nOutput: Step 1\nAnswer: 4", [("Solve.", "", "Step 1\nAnswer: 4")]),
    ],
)
def test_alpaca_layouts(text, expected):
    assert [(a, i.input, i.output) for a, i in parse_examples(text)] == expected


def test_alpaca_fields_out_of_order_are_unparsed():
    r = read_examples("Instruction: Add.\nOutput: 3\nInput: 1, 2")
    assert r.items == [] and r.unparsed[0].problem == "fields out of order: Instruction, Output, Input"


@pytest.mark.parametrize(
    "text",
    [
        "\n" * 20000,
        " " * 20000 + "x",
        "*\n" * 20000,
        "```\n" * 20000,
        "#" + " " * 20000,
        "Example" + " " * 20000,
    ],
)
def test_hostile_text_gives_a_problem_not_a_hang(text):
    """Runs of spaces, newlines, stars or fences once took seconds per reader (regex backtracking)."""
    assert read_list(text).problem and read_yes_no(text).value is None
    assert read_instances(text, output_first=True).problem and read_examples(text).problem
