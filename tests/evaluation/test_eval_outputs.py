"""What `eval` writes, and what it must never write over: a user's file where answers are kept, a path through
a link, a command's own input. Nothing here starts an engine (an unreachable server, or a scripted backend).
Run: .venv/bin/pytest -q tests/evaluation/test_eval_outputs.py"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.errors import SelfInstructError
from selfinstruct.evaluation.answers import ModelRef
from selfinstruct.evaluation.judge import evaluate_judge

MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "smollm2-135m-instruct"
NOWHERE = "http://127.0.0.1:9/v1"  # nothing listens there: a backend that is asked anything fails


def _never(name: str):
    raise AssertionError(f"a backend was started for {name}")


def _ref(name: str) -> ModelRef:
    return ModelRef(path=name, fingerprint=f"served:{name}", mode="chat")


@pytest.fixture
def instructions(tmp_path) -> Path:
    path = tmp_path / "instructions.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": "Say hi."}) + "\n")
    return path


@pytest.mark.parametrize("command", ["ifeval", "judge"])
def test_eval_out_holding_a_users_answers_jsonl_is_refused_untouched(
    tmp_path, external, instructions, command
):
    out = tmp_path / "mine"
    out.mkdir()
    users = b"line one of my notes\nmy last line, no newline at end"
    (out / "answers.jsonl").write_bytes(users)
    data = external / "ifeval_input_data.jsonl" if command == "ifeval" else instructions
    args = ["eval", command, "--model", str(MODEL), "--out", str(out), "-n", "1", "--server", NOWHERE]
    args += ["--data", str(data)]
    if command == "judge":
        args += ["--base", "served-base", "--judge-url", NOWHERE, "--judge-model", "judge"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert (
        res.stderr
        == f"error: {out / 'answers.jsonl'}:2: neither an answer nor the start of one: this is not an answers file; choose another output directory\n"
    )
    assert (out / "answers.jsonl").read_bytes() == users


def test_eval_out_whose_answers_jsonl_is_a_link_is_refused_and_its_target_untouched(tmp_path, external):
    precious = tmp_path / "precious.jsonl"
    precious.write_bytes(b'{"a":1}\n{"b":2}')
    out = tmp_path / "mine2"
    out.mkdir()
    (out / "answers.jsonl").symlink_to(precious)
    data = external / "ifeval_input_data.jsonl"
    args = ["eval", "ifeval", "--model", str(MODEL), "--out", str(out), "-n", "1", "--server", NOWHERE]
    res = CliRunner().invoke(app, [*args, "--data", str(data)])
    assert res.exit_code == 1 and "is not a regular file" in res.stderr and "Traceback" not in res.output
    assert precious.read_bytes() == b'{"a":1}\n{"b":2}'


def test_judge_refuses_a_foreign_verdicts_file_before_any_model_answers(tmp_path, instructions):
    (tmp_path / "verdicts.jsonl").write_text("my verdicts, not yours")
    with pytest.raises(SelfInstructError, match="verdicts.jsonl"):
        evaluate_judge(
            _ref("student"),
            _ref("base"),
            _ref("judge"),
            start=_never,
            judge_start=_never,
            out_dir=tmp_path,
            data=instructions,
        )
    assert (tmp_path / "verdicts.jsonl").read_text() == "my verdicts, not yours"
    assert not (tmp_path / "answers.jsonl").exists()


# ---------------------------------------------------------------------------------------------------------
# eval rouge --answers FILE


@pytest.fixture
def rouge_setup(tmp_path, monkeypatch, scripted):
    """A student and its base (sft.json says how each is prompted, so no tokenizer loads), held-out data,
    and scripted backends in place of vLLM's, counting how many were started."""
    models = {}
    for name in ("base", "student"):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text('{"architectures": ["X"]}')
        summary = {"result": {"template": "chat", "base_model": str(tmp_path / "base")}}
        (d / "sft.json").write_text(json.dumps(summary))
        models[name] = d
    data = tmp_path / "held_out.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "hi"}) + "\n")
    started: list[str] = []

    def factory(*_, **__):
        def start(path: str):
            started.append(path)
            return scripted(lambda r: "hello")

        return start

    monkeypatch.setattr("selfinstruct.sft.eval.vllm_factory", factory)

    def run(answers: Path, *extra: str):
        args = ["eval", "rouge", "--model", str(models["student"]), "--data", str(data), "--json"]
        return CliRunner().invoke(app, [*args, "--answers", str(answers), *extra])

    return run, models, data, started


def test_rouge_answers_over_its_own_data_is_refused(rouge_setup):
    run, _, data, started = rouge_setup
    before = data.read_bytes()
    res = run(data)
    assert res.exit_code == 1 and "is this command's input" in res.stderr
    res = run(data, "--force")  # not even with --force
    assert res.exit_code == 1 and "is this command's input" in res.stderr
    assert data.read_bytes() == before and started == []


def test_rouge_answers_over_a_model_file_is_refused_even_with_force(rouge_setup):
    run, models, _, started = rouge_setup
    config = models["student"] / "config.json"
    res = run(config, "--force")
    assert res.exit_code == 1 and "is this command's input" in res.stderr
    assert config.read_text() == '{"architectures": ["X"]}' and started == []


def test_rouge_answers_over_a_users_file_needs_force(rouge_setup, tmp_path):
    run, _, _, started = rouge_setup
    notes = tmp_path / "notes.jsonl"
    notes.write_text("my notes\n")
    res = run(notes)
    assert res.exit_code == 1 and "already exists; pass --force" in res.stderr
    assert notes.read_text() == "my notes\n" and started == []
    res = run(notes, "--force")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["role"] for line in notes.read_text().splitlines()] == ["base", "student"]


def test_rouge_answers_replaces_its_own_previous_answers(rouge_setup, tmp_path):
    run, _, _, started = rouge_setup
    answers = tmp_path / "out" / "answers.jsonl"
    assert run(answers).exit_code == 0 and answers.is_file()
    first = answers.read_text()
    res = run(answers)  # a rerun writes its answers again, no --force needed
    assert res.exit_code == 0, res.output
    assert answers.read_text() == first and len(started) == 4


def test_evaluate_as_a_library_checks_where_it_writes_its_answers(rouge_setup, tmp_path, scripted):
    """The library call refuses what the command refuses, before any engine starts (it once wrote anywhere)."""
    from selfinstruct.sft.eval import evaluate

    _, models, data, _ = rouge_setup
    started: list[str] = []

    def start(path: str):
        started.append(path)
        return scripted(lambda r: "hello")

    notes = tmp_path / "notes.jsonl"
    notes.write_text("my notes\n")
    with pytest.raises(SelfInstructError, match="already exists"):
        evaluate(models["student"], backend_factory=start, data=data, answers=notes)
    with pytest.raises(SelfInstructError, match="is this command's input"):
        evaluate(models["student"], backend_factory=start, data=data, answers=data, force=True)
    assert notes.read_text() == "my notes\n" and started == []
    report = evaluate(models["student"], backend_factory=start, data=data, answers=notes, force=True)
    assert report.answers_path == str(notes) and len(started) == 2
    assert [json.loads(line)["role"] for line in notes.read_text().splitlines()] == ["base", "student"]


@pytest.mark.parametrize("kind", ["link", "dangling", "fifo"])
def test_rouge_answers_through_a_link_or_to_a_device_is_refused(rouge_setup, tmp_path, kind):
    import os

    run, _, _, started = rouge_setup
    target = tmp_path / "precious.jsonl"
    answers = tmp_path / "answers.jsonl"
    if kind == "link":
        target.write_text("mine\n")
        answers.symlink_to(target)
    elif kind == "dangling":
        answers.symlink_to(target)
    else:
        os.mkfifo(answers)
    res = run(answers, "--force")
    assert res.exit_code == 1 and ("symbolic link" in res.stderr or "not a regular file" in res.stderr)
    assert (target.read_text() if target.exists() else None) == ("mine\n" if kind == "link" else None)
    assert started == []
