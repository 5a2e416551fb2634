"""`score-ifeval` through typer's CliRunner, inside the package's error boundary.
Run: .venv/bin/pytest -q tests/ifeval"""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from selfinstruct.cli.app import _Group
from selfinstruct.cli.eval_ifeval import score_ifeval
from selfinstruct.ifeval.data import INPUTS_ENV

runner = CliRunner()

# Registered the way the `eval` group registers it; the callback keeps typer from collapsing a one-command app.
app = typer.Typer(cls=_Group)
app.callback()(lambda: None)
app.command("score-ifeval")(score_ifeval)

PROMPTS = [
    {
        "key": 1,
        "prompt": "Answer without commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Wrap it in quotes, no commas.",
        "instruction_id_list": ["startend:quotation", "punctuation:no_comma"],
        "kwargs": [{}, {}],
    },
]


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.delenv(INPUTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # so data/ifeval/input_data.jsonl, the last default, is not there
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    answers = tmp_path / "answers.jsonl"
    rows = [
        {"prompt": "Answer without commas.", "response": "No commas here"},
        {"prompt": "Wrap it in quotes, no commas.", "response": 'Sure:\n"quoted, sadly"\nBye'},
    ]
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inputs, answers


def test_json_prints_the_four_accuracies_as_fractions(files):
    inputs, answers = files
    res = runner.invoke(app, ["score-ifeval", str(answers), "--inputs", str(inputs), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {
        k: out[k] for k in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")
    } == {
        "prompt_strict": 0.5,
        "prompt_loose": 0.5,
        "instruction_strict": 1 / 3,
        "instruction_loose": 2 / 3,
    }
    assert out["per_type"]["startend:quotation"] == {"count": 1, "strict": 0.0, "loose": 1.0}


def test_table_and_inputs_from_the_environment(files, monkeypatch):
    inputs, answers = files
    monkeypatch.setenv(INPUTS_ENV, str(inputs))
    res = runner.invoke(app, ["score-ifeval", str(answers)])
    assert res.exit_code == 0, res.output
    assert "2 prompts, 3 instructions" in res.stdout
    assert "50.00%" in res.stdout and "66.67%" in res.stdout


def test_missing_inputs_is_one_clear_line(files):
    _, answers = files
    res = runner.invoke(app, ["score-ifeval", str(answers)])
    assert res.exit_code == 1
    assert "error: IFEval's prompts are needed and not shipped: pass --inputs FILE" in res.stderr
    assert "Traceback" not in res.output


def test_unknown_prompt_is_one_line_naming_file_and_line(files):
    inputs, answers = files
    with answers.open("a") as f:
        f.write(json.dumps({"prompt": "Not an IFEval prompt", "response": "x"}) + "\n")
    res = runner.invoke(app, ["score-ifeval", str(answers), "--inputs", str(inputs)])
    assert res.exit_code == 1
    assert f"error: {answers}:3: prompt: not one of the 2 IFEval prompts" in res.stderr
    assert "Traceback" not in res.output
