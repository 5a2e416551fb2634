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


# Self-Instruct's instance rules (prepare_for_finetuning.py), issue 11.
@pytest.mark.parametrize(
    "bad, good, code, evidence",
    [
        (
            ("", "Here is the list:"),
            ("", "Here is the list: a, b"),
            "heuristics_output_ends_with_colon",
            {"text": "Here is the list:"},
        ),
        (
            ("Translate this:", "Bonjour"),
            ("Translate: hello", "Bonjour"),
            "heuristics_input_ends_with_colon",
            {"text": "Translate this:"},
        ),
        (
            ("x" * 4001, "short"),
            ("x" * 4000, "short"),
            "heuristics_input_too_long",
            {"chars": 4001, "max": 4000},
        ),
        (("", "y" * 4001), ("", "y" * 4000), "heuristics_output_too_long", {"chars": 4001, "max": 4000}),
    ],
)
def test_self_instruct_instance_rules(bad, good, code, evidence):
    t = task("Do what the input says, carefully.", bad, good)
    r = H.check_instance(t, 0)
    assert r.reason == code and r.evidence == {"instance": 0, **evidence}
    assert H.check_instance(t, 1) is None


def test_duplicate_instances_keep_the_first():
    t = task("Add the two numbers.", ("2 and 3", "5"), ("2  AND 3", "5 "), ("4 and 4", "8"), ("2 and 3", "5"))
    got = [(r and r.reason, r and r.evidence) for r in (H.check_instance(t, i) for i in range(4))]
    assert got == [
        (None, None),
        ("heuristics_duplicate_instance", {"instance": 1, "duplicate_of": 0}),
        (None, None),
        ("heuristics_duplicate_instance", {"instance": 3, "duplicate_of": 0}),
    ]


def test_conflicting_outputs_reject_the_task():
    t = task("Add the two numbers.", ("2 and 3", "5"), ("4 and 4", "8"), ("2 and 3", "6"))
    r = H.check_task_instances(t)
    assert r.reason == "heuristics_conflicting_outputs"
    assert r.evidence == {"instances": [0, 2], "input": "2 and 3", "outputs": ["5", "6"]}
    assert H.check_task_instances(t, [0, 1]) is None  # instance 2 already dropped: no conflict left
    # empty inputs never conflict (many outputs of a no-input task); the same output is a duplicate, not a conflict
    assert H.check_task_instances(task("Write a haiku.", ("", "one"), ("", "two"))) is None
    assert H.check_task_instances(task("Add them.", ("2 and 3", "5"), ("2 and 3", "5"))) is None


def test_the_chain_rejects_conflicting_tasks_and_drops_duplicates():
    from selfinstruct.filters import FilterChain, FilterConfig

    chain = FilterChain(FilterConfig(minhash=None, rouge=None))
    conflict = task("Add the two numbers.", ("2 and 3", "5"), ("2 and 3", "6"))
    dup = Task(
        id="t2",
        instruction="Name the capital city.",
        instances=[Instance(input="France", output="Paris")] * 2,
    )
    kept, rejects = chain.check_instances([conflict, dup])
    assert [t.id for t in kept] == ["t2"] and len(kept[0].instances) == 1
    assert [r.reason for r in rejects] == ["heuristics_conflicting_outputs", "heuristics_duplicate_instance"]


def test_self_instruct_rules_turn_off():
    off = HeuristicsFilter(
        HeuristicsConfig(
            output_ends_with_colon=False,
            input_ends_with_colon=False,
            max_input_chars=None,
            max_output_chars=None,
            duplicate_instances=False,
            conflicting_outputs=False,
        )
    )
    t = task("Do it now please.", ("a:", "b:"), ("a:", "b:"), ("a:", "c"), ("z" * 5000, "y" * 5000))
    assert [off.check_instance(t, i) for i in range(4)] == [None] * 4
    assert off.check_task_instances(t) is None
