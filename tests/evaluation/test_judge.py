"""The judge: both orders cancel a position-biased judge; verdicts parse strictly; unparseable ones are kept
and left out. Run: .venv/bin/pytest -q tests/evaluation/test_judge.py"""

from __future__ import annotations

import pytest

from selfinstruct.evaluation.answers import Answer, AnswerBook, Item, ModelRef, model_ref
from selfinstruct.evaluation.judge import CHOICES, judge_pairs, judge_prompt, parse_verdict
from selfinstruct.llm.base import Completion

ITEMS = [Item(id=f"i{k}", instruction=f"Name a fruit number {k}.") for k in range(6)]


class ScriptedJudge:
    """A judge whose reply is a function of the prompt: the one thing a real model cannot be made to do on
    demand. Counts what it was asked."""

    name, model = "scripted", "scripted-judge"

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def generate(self, requests):
        out = []
        for r in requests:
            text = r.messages[0]["content"]
            self.prompts.append(text)
            out.append(Completion(request_id=r.id, texts=[self.reply(text)], finish_reasons=["stop"]))
        return out

    def close(self):
        pass


def _answers(prefix: str) -> dict[str, Answer]:
    return {
        it.id: Answer(
            key=f"{prefix}{it.id}",
            model=prefix,
            fingerprint=prefix,
            item=it.id,
            decoding="d",
            text=f"{prefix} answer to {it.id}",
            finish_reason="stop",
            tokens=3,
        )
        for it in ITEMS
    }


def _run(tmp_path, reply, student=None, base=None):
    judge = ScriptedJudge(reply)
    report = judge_pairs(
        ITEMS,
        student if student is not None else _answers("student"),
        base if base is not None else _answers("base"),
        judge=ModelRef(path="scripted-judge", fingerprint="served:scripted-judge", mode="chat"),
        book=AnswerBook(tmp_path / "verdicts.jsonl"),
        start=lambda _: judge,
        resamples=1000,
    )
    return report, judge


def test_a_judge_that_always_picks_position_a_gives_all_ties(tmp_path):
    report, judge = _run(tmp_path, lambda prompt: "A")
    assert len(judge.prompts) == 2 * len(ITEMS)  # both orders asked
    assert report.compared == 6 and report.ties == 6 and report.wins == report.losses == 0
    assert report.win_rate.estimate == 0.5 and report.win_rate.low == report.win_rate.high == 0.5
    assert report.position_a_share == 1.0


def test_a_judge_that_prefers_the_student_in_both_orders_gives_wins(tmp_path):
    def prefers_student(prompt: str) -> str:
        return "A" if prompt.index("student answer") < prompt.index("base answer") else "B"

    report, _ = _run(tmp_path, prefers_student)
    assert report.wins == 6 and report.win_rate.estimate == 1.0
    assert report.position_a_share == 0.5


def test_ties_kept_unparseable_recorded_and_left_out(tmp_path):
    def reply(prompt: str) -> str:
        if "number 0" in prompt:
            return "I cannot decide"  # unparseable in one order at least
        return "tie" if "number 1" in prompt else "B"

    report, _ = _run(tmp_path, reply)
    assert report.unparseable == 1 and report.compared == 5
    assert report.ties == 5  # "tie" both orders for i1; B then B (a position-B judge) for the rest
    raw = [v for v in report.verdicts if v.choice == "unparseable"]
    assert raw and raw[0].raw == "I cannot decide"


def test_an_item_a_model_failed_on_is_left_out_and_counted(tmp_path):
    student = _answers("student")
    student["i3"] = "prompt too long"
    report, judge = _run(tmp_path, lambda p: "A", student=student)
    assert report.failed == 1 and report.compared == 5 and len(judge.prompts) == 10


def test_verdicts_resume_from_disk(tmp_path):
    _run(tmp_path, lambda p: "A")
    report, judge = _run(tmp_path, lambda p: "B")  # a second call asks nothing: the verdicts are on disk
    assert judge.prompts == [] and report.position_a_share == 1.0


@pytest.mark.parametrize(
    "text, choice",
    [
        ("A", "A"),
        (" B.", "B"),
        ("Answer B is better", "B"),
        ("Verdict: tie", "tie"),
        ("TIE", "tie"),
        ("a", "A"),
        ("A better answer is B", "unparseable"),  # names both
        ("A is better, B is better,", "unparseable"),  # real replies of the embedded 135M judge
        ("A if answer A is better, B", "unparseable"),  # the instruction echoed back
        ("B\nA longer note about answer A.", "B"),  # only the first line counts
        ("Both are fine", "unparseable"),
        ("", "unparseable"),
        ("Apples", "unparseable"),
    ],
)
def test_parse_verdict(text, choice):
    assert parse_verdict(text) == choice


def test_prompt_shows_input_and_both_answers():
    text = judge_prompt(Item(id="x", instruction="Fix this.", input="teh cat"), "the cat", "teh cat")
    assert (
        "Fix this.\n\nteh cat" in text and "Answer A ===\nthe cat" in text and "Answer B ===\nteh cat" in text
    )


@pytest.mark.vllm
def test_the_embedded_judge_held_to_a_choice_gives_a_verdict_on_every_item(
    tmp_path, vllm_backend, embedded_model
):
    """Asked for one word, the 135M model echoes the instructions ("A if answer A is better, B ..."): no verdict
    could be read. Held to A, B or tie by constrained decoding, it gives one for every pair."""
    items = ITEMS[:3]
    report = judge_pairs(
        items,
        _answers("student"),
        _answers("base"),
        judge=model_ref(str(embedded_model)),
        book=AnswerBook(tmp_path / "verdicts.jsonl"),
        start=lambda _: vllm_backend,
        resamples=200,
        constrained=True,
    )
    assert report.compared == len(items) and report.unparseable == 0
    assert len(report.verdicts) == 2 * len(items) and all(v.raw in CHOICES for v in report.verdicts)
