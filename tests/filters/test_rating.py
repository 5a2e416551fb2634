"""The judge's rating: parsing replies, the threshold's rejects, and one real call on the embedded model.

Run: .venv/bin/pytest -q tests/filters/test_rating.py
Exact judge replies come from a stub backend (a real model cannot be made to write a given text); the last
test sends real requests through the in-process vLLM engine.
"""

from __future__ import annotations

import pytest

from selfinstruct.filters.config import FilterConfig, RatingConfig
from selfinstruct.filters.rating import judge_messages, parse_rating, rate, select, weak_judge
from selfinstruct.filters.scoring import score_and_select
from selfinstruct.llm import Completion
from selfinstruct.schema import Instance, Task
from selfinstruct.stats import Stats


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Score: 4\nReason: Correct and complete.", (4.0, "Correct and complete.")),
        ("**Score:** 4.5/5\n**Reason:** Clear answer.", (4.5, "Clear answer.")),
        ("score - 2\nreason: misses the second part\nextra line", (2.0, "misses the second part")),
        ("3\nThe answer is partly right.", (3.0, "")),
        ("Score: 0\nReason: Wrong.", (0.0, "Wrong.")),
        ("Score: 7\nReason: Great.", None),  # out of range
        ("I think this response is pretty good overall.", None),
        ("", None),
        ("Reason: fine. Score: five", None),
    ],
)
def test_parse_rating(reply, expected):
    assert parse_rating(reply) == expected


class StubJudge:
    """Returns fixed replies in order, as a backend would; records the requests it got."""

    name = "stub"
    model = "stub"

    def __init__(self, replies: list[str | None]):
        self.replies = replies
        self.requests = []

    def generate(self, requests):
        self.requests += list(requests)
        return [
            Completion(request_id=r.id, error="timeout")
            if text is None
            else Completion(request_id=r.id, texts=[text])
            for r, text in zip(requests, self.replies, strict=True)
        ]


def _task(tid: str, input: str = "") -> Task:
    return Task(id=tid, instruction=f"Say hello {tid}.", instances=[Instance(input=input, output="Hello.")])


def test_rate_and_select_record_scores_reasons_and_unparseable():
    tasks = [
        _task("a"),
        _task("b", input="in French"),
        _task("c"),
        _task("d"),
        Task(id="e", instruction="No instances."),
    ]
    judge = StubJudge(
        ["Score: 5\nReason: Exactly right.", "Score: 2\nReason: Not French.", "Looks fine!", None]
    )
    rated = rate(tasks, judge, RatingConfig())
    assert len(judge.requests) == 4  # one request per task with an instance, in one generate call
    assert "Input:\nin French" in judge.requests[1].messages[1]["content"]
    assert rated[0].meta["rating"] == {"score": 5.0, "reason": "Exactly right."}
    assert rated[2].meta["rating"] == {"score": None, "reply": "Looks fine!"}
    assert rated[3].meta["rating"] == {"score": None, "reply": "timeout"}
    assert "rating" not in rated[4].meta
    kept, rejects = select(rated, RatingConfig(threshold=4))
    assert [t.id for t in kept] == ["a", "e"]
    by_id = {r.record["id"]: r for r in rejects}
    assert by_id["b"].reason == "rating_too_low" and by_id["b"].stage == "rating"
    assert by_id["b"].evidence == {"score": 2.0, "reason": "Not French.", "threshold": 4}
    assert by_id["c"].reason == "rating_unparseable" and by_id["c"].evidence["reply"] == "Looks fine!"
    # Without a threshold the stage only records scores.
    assert select(rated, RatingConfig()) == (rated, [])


def test_score_and_select_counts_rating_rejects():
    judge = StubJudge(["Score: 1\nReason: Wrong.", "Score: 5\nReason: Right."])
    stats_config = FilterConfig(rating=RatingConfig(threshold=3))
    stats = Stats()
    kept, rejects = score_and_select([_task("a"), _task("b")], stats_config, judge=judge, stats=stats)
    assert [t.id for t in kept] == ["b"] and [r.reason for r in rejects] == ["rating_too_low"]
    assert stats.counts["rejected_rating_too_low"] == 1 and "rating" in stats.timings


def test_judge_prompt_is_our_own_and_names_the_scale():
    system, user = judge_messages("Add 2 and 2.", "", "4")
    assert system["role"] == "system" and "0" in user["content"] and "5" in user["content"]
    assert "Input:" not in user["content"] and "Response:\n4" in user["content"]


def test_weak_judge_is_the_embedded_model(embedded_model):
    assert weak_judge(str(embedded_model))
    assert not weak_judge("/models/Llama-3.1-70B-Instruct")


@pytest.mark.vllm
def test_rating_through_the_real_engine(vllm_backend):
    tasks = [_task("a"), _task("b")]
    rated = rate(tasks, vllm_backend, RatingConfig(max_tokens=24))
    for t in rated:
        r = t.meta["rating"]
        # A 135M judge may or may not follow the format; either way the outcome is on record.
        assert (r["score"] is not None and 0 <= r["score"] <= 5) or (r["score"] is None and "reply" in r)


def test_filter_command_judge_flags(tmp_path):
    from typer.testing import CliRunner

    from selfinstruct.cli import app

    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "Say hello to me.", "input": "", "output": "Hello."}\n')
    args = ["filter", str(src), "--out", str(tmp_path / "o"), "--judge-base-url", "http://127.0.0.1:9/v1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "--judge-model" in res.output


def test_filter_command_rates_with_the_judge_it_is_given(tmp_path):
    """`filter --rating-threshold` built the judge's section after validating the config, so the stage never ran
    while `--json` echoed it as applied: the judge now scores every record and the low one is a reject."""
    import json

    from scripted import ScriptedServer
    from typer.testing import CliRunner

    from selfinstruct.cli import app

    src = tmp_path / "in.jsonl"
    rows = [("Name a primary colour.", "Red."), ("Add 2 and 2.", "Five, which is wrong.")]
    src.write_text("".join(json.dumps({"instruction": i, "input": "", "output": o}) + "\n" for i, o in rows))
    judge = ScriptedServer()  # answers a judge prompt with 0 when the response says "wrong", else 5
    try:
        args = ["filter", str(src), "--out", str(tmp_path / "o"), "--filters", "heuristics", "--json"]
        args += ["--rating-threshold", "3", "--judge-model", "scripted", "--judge-base-url", judge.url]
        res = CliRunner().invoke(app, args)
    finally:
        judge.close()
    assert res.exit_code == 0, res.output
    assert len(judge.calls) == 2
    kept = [json.loads(line) for line in (tmp_path / "o" / "kept.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "o" / "rejects.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in kept] == [rows[0][0]]
    assert [(r["reason"], r["evidence"]["score"]) for r in rejects] == [("rating_too_low", 0.0)], rejects
