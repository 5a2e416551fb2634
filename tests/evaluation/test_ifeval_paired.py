"""Base vs student on IFEval: known differences on exact texts, items a model failed on left out of both,
answers resumed on rerun, and the real engine end to end on a few prompts.
Run: .venv/bin/pytest -q tests/evaluation/test_ifeval_paired.py"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.evaluation.answers import ModelRef, model_ref
from selfinstruct.evaluation.ifeval_paired import METRICS, evaluate_ifeval
from selfinstruct.ifeval import read_inputs, score_responses

N = 24


@pytest.fixture(scope="module")
def gpt4(external) -> dict[str, str]:
    rows = [json.loads(line) for line in (external / "ifeval_responses_gpt4.jsonl").read_text().splitlines()]
    return {r["prompt"]: r["response"] for r in rows}


def _ref(name: str) -> ModelRef:
    return ModelRef(path=name, fingerprint=f"served:{name}", mode="chat")


def _prompt(request) -> str:
    return request.messages[0]["content"]


def test_known_difference_on_exact_texts(tmp_path, external, gpt4, scripted):
    # The student answers with GPT-4's replies, the base with nothing (an empty answer follows nothing): the
    # difference is GPT-4's own accuracy on these prompts, which the scorer computes independently.
    backends = {"base": scripted(lambda r: " "), "student": scripted(lambda r: gpt4[_prompt(r)])}
    report = evaluate_ifeval(
        _ref("student"),
        _ref("base"),
        start=lambda name: backends[name],
        out_dir=tmp_path,
        data=external / "ifeval_input_data.jsonl",
        limit=N,
        resamples=2000,
    )
    prompts = read_inputs(external / "ifeval_input_data.jsonl")[:N]
    truth = score_responses(prompts, {p.prompt: gpt4[p.prompt] for p in prompts}).accuracies()
    assert report.compared == N and report.left_out == 0
    for m in METRICS:
        assert report.base.accuracy[m].estimate == 0.0
        assert report.student.accuracy[m].estimate == pytest.approx(truth[m])
        d = report.difference[m]
        assert d.estimate == pytest.approx(truth[m]) and d.low <= d.estimate <= d.high and d.low > 0


def test_an_item_either_model_failed_is_left_out_of_both(tmp_path, external, gpt4, scripted):
    prompts = read_inputs(external / "ifeval_input_data.jsonl")[:N]
    fail_base, fail_student = prompts[0].prompt, prompts[5].prompt
    backends = {
        "base": scripted(lambda r: None if _prompt(r) == fail_base else gpt4[_prompt(r)]),
        "student": scripted(lambda r: None if _prompt(r) == fail_student else gpt4[_prompt(r)]),
    }
    report = evaluate_ifeval(
        _ref("student"),
        _ref("base"),
        start=lambda name: backends[name],
        out_dir=tmp_path,
        data=external / "ifeval_input_data.jsonl",
        limit=N,
        resamples=500,
    )
    assert report.compared == N - 2 and report.left_out == 2
    assert report.base.failed == 1 and report.student.failed == 1
    # Same answers on the same items: no difference at all, however the items are resampled.
    kept = [p for p in prompts if p.prompt not in (fail_base, fail_student)]
    truth = score_responses(kept, {p.prompt: gpt4[p.prompt] for p in kept}).accuracies()
    for m in METRICS:
        assert report.student.accuracy[m].estimate == pytest.approx(truth[m])
        assert report.difference[m].low == report.difference[m].high == 0.0
    # The failed answers are not kept: a rerun asks for exactly those two again.
    backends["base"].requests = backends["student"].requests = 0
    evaluate_ifeval(
        _ref("student"),
        _ref("base"),
        start=lambda name: backends[name],
        out_dir=tmp_path,
        data=external / "ifeval_input_data.jsonl",
        limit=N,
        resamples=500,
    )
    assert backends["base"].requests == 1 and backends["student"].requests == 1


@pytest.mark.vllm
def test_real_engine_answers_once_then_resumes(tmp_path, external, embedded_model, vllm_backend, counting):
    engine = counting(vllm_backend)
    student = model_ref(embedded_model)
    assert student.mode == "chat" and len(student.fingerprint) == 16
    # A copy of the model under another path is the same model: same fingerprint, so its answers are reused.
    kwargs = dict(
        start=lambda path: engine,
        out_dir=tmp_path,
        data=external / "ifeval_input_data.jsonl",
        limit=4,
        max_tokens=48,
        resamples=1000,
    )
    report = evaluate_ifeval(student, student, **kwargs)
    assert engine.requests == 4 and report.generated == 4  # the base answered; the "student" reused it all
    assert report.compared == 4
    for m in METRICS:
        assert report.difference[m].estimate == 0.0
    lines = (tmp_path / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(x)["fingerprint"] == student.fingerprint for x in lines)

    again = evaluate_ifeval(student, student, **kwargs)
    assert engine.requests == 4 and again.generated == 0  # nothing regenerated
    assert again.student.accuracy == report.student.accuracy
    # Other decoding settings are other answers.
    evaluate_ifeval(student, None, **{**kwargs, "max_tokens": 40})
    assert engine.requests == 8


def test_cli_needs_a_checkpoint(tmp_path):
    res = CliRunner().invoke(app, ["eval", "ifeval", "--model", str(tmp_path)])
    assert res.exit_code == 1 and "is not a Hugging Face checkpoint" in res.stderr
    res = CliRunner().invoke(app, ["eval", "judge", "--model", "served-name"])
    assert res.exit_code == 1 and "`--base` is needed" in res.stderr
    args = [
        "eval",
        "judge",
        "--model",
        "served-a",
        "--base",
        "served-b",
        "--judge-url",
        "http://127.0.0.1:9/v1",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "`--judge-model` is needed with --judge-url" in res.stderr
