"""Each heuristic rule rejects what it should and accepts what it should, with its exact reason code."""

from __future__ import annotations

import pytest

from selfinstruct.filters import HeuristicsConfig, HeuristicsFilter
from selfinstruct.schema import Instance, Task

H = HeuristicsFilter()


def task(instruction: str, *instances: tuple[str, str], **meta) -> Task:
    return Task(
        id="t1",
        instruction=instruction,
        instances=[Instance(input=i, output=o) for i, o in instances],
        meta=meta,
    )


def reason(instruction: str, **meta) -> str | None:
    r = H.check_instruction(task(instruction, **meta))
    return r and r.reason


@pytest.mark.parametrize(
    "bad, good, code",
    [
        ("Name three fruits.", "Name three red fruits.", "heuristics_too_short"),
        ("word " * 151, "word " * 150, "heuristics_too_long"),
        (
            "Describe the images in this article.",
            "Describe the imagery in this article.",
            "heuristics_blacklisted_word",
        ),
        (
            "Please go   to the market and buy milk.",
            "Please go toward the market and buy milk.",
            "heuristics_blacklisted_word",
        ),
        (
            "Draw a cat using only text characters.",
            "Withdraw money from the account politely.",
            "heuristics_blacklisted_word",
        ),
        (
            "Write a program that sorts a list.",
            "Write a function that sorts a list.",
            "heuristics_write_a_program",
        ),
        ("- List three uses of salt.", "List three uses of salt.", "heuristics_starts_with_punctuation"),
        ("¿Cuál es la capital de Francia?", "Cuál es la capital de Francia?", "heuristics_starts_non_ascii"),
    ],
)
def test_instruction_rules(bad, good, code):
    assert reason(bad) == code
    assert reason(good) is None


def test_evidence_has_the_measured_value_and_limit():
    r = H.check_instruction(task("Name three fruits."))
    assert r.stage == "heuristics" and r.evidence == {"words": 3, "min": 4}
    assert H.check_instruction(task("Show me the Maps of Europe please.")).evidence == {"word": "Maps"}


def test_truncated_instruction():
    assert reason("Tell me about the history of the Roman", finish_reason="length") == "heuristics_truncated"
    assert reason("Tell me about the history of Rome.", finish_reason="stop") is None


@pytest.mark.parametrize(
    "bad, good, code",
    [
        (("", "  "), ("", "Paris"), "heuristics_empty_output"),
        (
            ("The cat sat.", "the  cat sat."),
            ("The cat sat.", "Le chat était assis."),
            "heuristics_output_equals_input",
        ),
        (("<noinput>", "Paris"), ("", "Paris"), "heuristics_placeholder_input"),
        (("N/A", "Paris"), ("No inputs were harmed", "Paris"), "heuristics_placeholder_input"),
        (("None.", "Paris"), ("Nonetheless, answer.", "Paris"), "heuristics_placeholder_input"),
    ],
)
def test_instance_rules(bad, good, code):
    t = task("What is the capital of France?", bad, good)
    assert H.check_instance(t, 0).reason == code
    assert H.check_instance(t, 1) is None
    assert H.check_instance(t, 0).evidence["instance"] == 0
    assert H.check_instance(t, 0).record["instances"] == [{"input": bad[0], "output": bad[1], "meta": {}}]


def test_truncated_instance():
    t = Task(
        id="t",
        instruction="Summarize the article below.",
        instances=[
            Instance(input="x", output="The article", meta={"finish_reason": "length"}),
            Instance(output="ok"),
        ],
    )
    assert H.check_instance(t, 0).reason == "heuristics_truncated"
    assert H.check_instance(t, 1) is None


def test_none_turns_a_rule_off():
    off = HeuristicsFilter(
        HeuristicsConfig(
            min_instruction_words=None, blacklist=None, write_a_program=False, placeholder_inputs=[]
        )
    )
    assert off.check_instruction(task("Draw.")) is None
    assert off.check_instruction(task("Write a program to draw maps.")) is None
    assert off.check_instance(task("What is the capital of France?", ("N/A", "Paris")), 0) is None


def test_custom_blacklist_matches_whole_words_only():
    h = HeuristicsFilter(HeuristicsConfig(blacklist=["cat"]))
    assert h.check_instruction(task("Describe a cat in detail.")).reason == "heuristics_blacklisted_word"
    assert h.check_instruction(task("Describe a category in detail.")) is None
