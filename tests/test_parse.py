"""Parsing real and hand-made model text. Run: pytest tests/test_parse.py

tests/data/embedded_outputs.json holds real completions of the embedded SmolLM2-135M model for every prompt
kind, in chat and raw style (recorded once; the model is deterministic per seed but the engine is slow to start).
"""

import json
from pathlib import Path

import pytest

from selfinstruct.parse import parse_examples, parse_instances, parse_list, parse_yes_no

OUTPUTS = json.loads((Path(__file__).parent / "data" / "embedded_outputs.json").read_text())


@pytest.mark.parametrize(
    "text, first, expected",
    [
        (
            "1. Sort the list.\n2) Name a fruit.\n3: Tell a joke.",
            None,
            ["Sort the list.", "Name a fruit.", "Tell a joke."],
        ),
        (" Count the vowels.\n10. Add two numbers.", 9, ["Count the vowels.", "Add two numbers."]),
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
            ["A task that goes on over two lines."],
        ),
        ('9. "Quoted task."\n10. Instruction: Labelled task.', None, ["Quoted task.", "Labelled task."]),
        ("```\n9. Fenced task.\n```", None, ["Fenced task."]),
        ("No list at all, just prose.", None, []),
        ("", None, []),
    ],
)
def test_parse_list_layouts(text, first, expected):
    assert [it.text for it in parse_list(text, first_number=first)] == expected


def test_truncated_last_item_is_marked_not_dropped():
    items = parse_list("9. Complete one.\n10. Cut in the mid", truncated=True)
    assert [(it.text, it.complete) for it in items] == [("Complete one.", True), ("Cut in the mid", False)]


def test_real_raw_instruction_lists_parse():
    for rec in OUTPUTS["raw/instr"]:
        items = parse_list(rec["text"], first_number=9, truncated=rec["finish"] == "length")
        assert len(items) >= 3
        assert all(it.text and not it.text[0].isdigit() for it in items)
        assert items[-1].complete == (rec["finish"] != "length")


def test_real_chat_instruction_lists_parse():
    parsed = [parse_list(r["text"]) for r in OUTPUTS["chat/instr"]]
    assert sum(bool(p) for p in parsed) >= 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", True),
        (" No\n\nTask: more", False),
        ("**yes**.", True),
        ("false", False),
        ("Maybe so", None),
        ("", None),
    ],
)
def test_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_real_classify_answers_parse():
    for key in ("raw/classify", "chat/classify"):
        assert all(parse_yes_no(r["text"]) is not None for r in OUTPUTS[key])


def test_instances_input_first():
    text = "Input: 2 and 3\nOutput: 5\n\nExample 2\nInput: <none>\nOutput: Zero\n\nExample 3\nInput: 4\n"
    got = parse_instances(text, output_first=False)
    assert [(i.input, i.output) for i in got] == [("2 and 3", "5"), ("", "Zero")]


def test_instances_output_first():
    text = "Label: positive\nInput: I loved it.\n\nExample 2\n**Label:** negative\n**Input:** Awful."
    got = parse_instances(text, output_first=True)
    assert [(i.input, i.output) for i in got] == [("I loved it.", "positive"), ("Awful.", "negative")]


def test_instances_truncated_last_block_is_marked():
    got = parse_instances("Input: a\nOutput: b\nInput: c\nOutput: d d d", output_first=False, truncated=True)
    assert [i.meta.get("finish_reason") for i in got] == [None, "length"]


def test_real_instance_outputs_do_not_crash_and_keep_fields():
    for key in ("raw/inst_in", "chat/inst_in", "raw/inst_out", "chat/inst_out"):
        for rec in OUTPUTS[key]:
            for inst in parse_instances(rec["text"], output_first=key.endswith("out")):
                assert inst.output.strip()
    # the raw input-first outputs are real Input/Output blocks
    assert any(parse_instances(r["text"], output_first=False) for r in OUTPUTS["raw/inst_in"])


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


def test_real_alpaca_outputs():
    got = [parse_examples("Instruction:" + r["text"]) for r in OUTPUTS["raw/alpaca"]]
    assert any(got)
    for pairs in got:
        for instr, inst in pairs:
            assert instr and inst.output
