"""Seed reading and validation on real files: `.venv/bin/pytest -q tests/test_seeds.py`.

The external files are the real Self-Instruct and Alpaca releases beside the checkout
(../shared/data/external); the malformed inputs are tiny literal files written to tmp_path, one per error
the reader must name.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from rouge_score import rouge_scorer
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.errors import InputError
from selfinstruct.seeds import iter_tasks, load_tasks, summarize

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
runner = CliRunner()


def _task(id_: str, instruction: str = "Say hi.", **extra) -> str:
    record = {"id": id_, "instruction": instruction, "instances": [{"input": "", "output": "hi"}], **extra}
    return json.dumps(record)


# ------------------------------------------------------------------------------------------------------------
# the real external files


def test_self_instruct_seed_file_counts(external):
    tasks = load_tasks(external / "self_instruct_seed_tasks.jsonl")
    assert summarize(tasks) == {"tasks": 175, "classification": 26, "empty_input": 50}
    first = tasks[0]
    assert first.id == "seed_task_0"
    assert first.meta == {"name": "breakfast_suggestion"}  # source-only field kept, not dropped
    assert first.instances[0].output.startswith("Yes, you can have")


def test_user_oriented_eval_file_has_no_classification_flag(external):
    tasks = load_tasks(external / "self_instruct_user_oriented_instructions.jsonl")
    assert len(tasks) == 252
    assert all(t.is_classification is None for t in tasks)
    assert tasks[0].meta == {"motivation_app": "Grammarly"}


def test_alpaca_5k_reads_as_5000_one_instance_tasks(external):
    path = external / "stanford_alpaca_pr152_alpaca_5000.json"
    tasks = load_tasks(path)
    assert summarize(tasks) == {"tasks": 5000, "classification": 0, "empty_input": 3057}
    assert all(len(t.instances) == 1 for t in tasks)
    first = tasks[0]
    assert first.instruction.startswith("Are the two sentences below grammatically correct?")
    assert first.instances[0].output == "No"
    # Content ids: the same example gets the same id on every read.
    assert [t.id for t in load_tasks(path)[:50]] == [t.id for t in tasks[:50]]
    assert len({t.id for t in tasks}) == 5000


def test_iter_tasks_yields_line_original_object_and_task(external):
    rows = list(itertools.islice(iter_tasks(external / "self_instruct_seed_tasks.jsonl"), 3))
    assert [line for line, _, _ in rows] == [1, 2, 3]
    line, obj, task = rows[1]
    assert obj["id"] == task.id == "seed_task_1" and "name" in obj  # the object comes back untouched


# ------------------------------------------------------------------------------------------------------------
# malformed inputs: each names its file, line and field

ok = _task("t1")
MALFORMED = [
    # (case, file name, content, expected message after "<path>:")
    ("malformed_json", "bad.jsonl", ok + '\n{"id": "t2", "instruction": "x"\n', r"2: malformed JSON \(.*\)"),
    (  # once silently dropped: the record became a task of its instances alone
        "output_beside_instances",
        "bad.jsonl",
        ok + '\n{"instruction": "x", "instances": [{"input": "", "output": "a"}], "output": "b"}\n',
        r"2: output: beside `instances`: .*",
    ),
    (  # once "starting at at column 17"
        "unterminated_string",
        "bad.jsonl",
        ok + '\n{"instruction": "x\n',
        r"2: malformed JSON \(Unterminated string starting at column 17\)$",
    ),
    (
        "missing_instruction",
        "bad.jsonl",
        ok + '\n{"id": "t2", "instances": [{"output": "y"}]}\n',
        r"2: instruction: missing \(every record needs a non-empty instruction\)",
    ),
    ("empty_instruction", "bad.jsonl", _task("t1", "   ") + "\n", r"1: instruction: is empty"),
    (
        "instruction_not_string",
        "bad.jsonl",
        ok + "\n" + _task("t2", 42) + "\n",
        r"2: instruction: must be a string, got integer 42",
    ),
    (
        "no_instances",
        "bad.jsonl",
        '{"id": "t1", "instruction": "x", "instances": []}\n',
        r"1: instances: no instances \(a task needs at least one \{input, output\} pair\)",
    ),
    (
        "instances_not_list",
        "bad.jsonl",
        '{"id": "t1", "instruction": "x", "instances": "y"}\n',
        r"1: instances: must be a list of \{input, output\} objects, got string \"y\"",
    ),
    (
        "neither_instances_nor_output",
        "bad.jsonl",
        ok + '\n\n{"id": "t2", "instruction": "x"}\n',
        r"3: instances: missing: a task needs `instances` \(or `output`, for an Alpaca-style example\)",
    ),
    (
        "instance_output_wrong_type",
        "bad.jsonl",
        '{"id": "t1", "instruction": "x", "instances": [{"output": 7}]}\n',
        r"1: instances\[0\]\.output: must be a string, got integer 7",
    ),
    (
        "instance_output_missing",
        "bad.jsonl",
        ok + '\n{"id": "t2", "instruction": "x", "instances": [{"output": "a"}, {"input": "b"}]}\n',
        r"2: instances\[1\]\.output: missing",
    ),
    (
        "instance_not_object",
        "bad.jsonl",
        '{"id": "t1", "instruction": "x", "instances": ["y"]}\n',
        r"1: instances\[0\]: must be an \{input, output\} object, got string \"y\"",
    ),
    (
        "classification_not_bool",
        "bad.jsonl",
        _task("t1", is_classification="yes") + "\n",
        r"1: is_classification: must be true or false, got string \"yes\"",
    ),
    (
        "misspelled_field",
        "bad.jsonl",
        _task("t1", is_clasification=True) + "\n",
        r"1: is_clasification: unknown field; did you mean 'is_classification'\?",
    ),
    (
        "misspelled_example_output",
        "bad.jsonl",
        '{"instruction": "a", "input": "", "ouptut": "b"}\n',
        r"1: ouptut: unknown field; did you mean 'output'\?",
    ),
    (
        "misspelled_instruction",
        "bad.jsonl",
        '{"id": "t1", "instrucion": "a", "instances": [{"output": "b"}]}\n',
        r"1: instrucion: unknown field; did you mean 'instruction'\?",
    ),
    ("id_not_string", "bad.jsonl", _task(5) + "\n", r"1: id: must be a string, got integer 5"),
    (
        "duplicate_id",
        "bad.jsonl",
        ok + "\n" + _task("t2") + "\n" + _task("t1", "Other.") + "\n",
        r"3: id: duplicate id 't1', first used at line 1",
    ),
    ("line_not_object", "bad.jsonl", ok + "\n[1, 2]\n", r"2: expected a JSON object, got list"),
    (
        "lone_surrogate",
        "bad.jsonl",
        ok + '\n{"id": "t2", "instruction": "half \\ud83d", "instances": [{"output": "b"}]}\n',
        r"2: holds half a surrogate pair \(a \\udXXX escape\): not valid Unicode",
    ),
    (
        "lone_surrogate_in_array",
        "bad.json",
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c \\uDC00", "output": "d"}\n]\n',
        r"3: \[1\]: holds half a surrogate pair \(a \\udXXX escape\): not valid Unicode",
    ),
    (
        "whole_surrogate_pair_is_fine",
        "ok.jsonl",
        ok + "\n" + _task("t2", "Smile \U0001f600.") + "\n",  # written as the \ud83d\ude00 escape pair
        None,
    ),
    ("empty_file", "bad.jsonl", "", r"1: file is empty"),
    ("blank_file", "bad.jsonl", "\n  \n", r"1: file is empty"),
    (
        "alpaca_output_wrong_type",
        "bad.json",
        '[\n  {"instruction": "a", "input": "", "output": "b"},\n  {"instruction": "c", "output": 5}\n]\n',
        r"3: \[1\]\.output: must be a string, got integer 5",
    ),
    (
        "alpaca_empty_instruction_one_line_array",
        "bad.json",
        json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "", "output": "d"}]),
        r"1: \[1\]\.instruction: is empty",
    ),
    (
        "alpaca_broken_array",
        "bad.json",
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]\n',
        r"3: malformed JSON \(.*\)",
    ),
    (
        "alpaca_duplicate_example",
        "bad.jsonl",
        '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n'
        '{"instruction": "a", "output": "b"}\n',
        r"3: id: duplicate id 'ex-[0-9a-f]{12}', first used at line 1"
        r" \(identical instruction, input and output\)",
    ),
]


@pytest.mark.parametrize("case,name,content,expected", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_gives_one_clear_line(tmp_path, case, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    if expected is None:
        assert len(load_tasks(path)) == 2
        return
    with pytest.raises(InputError) as info:
        load_tasks(path)
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(re.escape(str(path)) + ":" + expected, message), message


def test_not_utf8_missing_path_and_empty_directory(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"id": "t1", "instruction": "Caf\xe9?"}'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.jsonl:1: not UTF-8 text"):
        load_tasks(latin)
    with pytest.raises(InputError, match=r"nowhere\.jsonl: no such file or directory"):
        load_tasks(tmp_path / "nowhere.jsonl")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("not data\n")
    with pytest.raises(InputError, match=r"empty: directory holds no \.jsonl or \.json files"):
        load_tasks(empty)


def test_directory_reads_data_files_sorted_and_checks_ids_across_them(tmp_path):
    (tmp_path / "b.jsonl").write_text(_task("b1") + "\n")
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "Add 2 and 2.", "output": "4"}]))
    (tmp_path / "notes.md").write_text("ignored\n")
    tasks = load_tasks(tmp_path)
    assert [t.instruction for t in tasks] == ["Add 2 and 2.", "Say hi."]
    (tmp_path / "c.jsonl").write_text(_task("c1") + "\n" + _task("b1") + "\n")
    with pytest.raises(InputError) as info:
        load_tasks(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path / 'c.jsonl'}:2: id: duplicate id 'b1', first used at {tmp_path / 'b.jsonl'}:1"
    )


def test_bad_lines_are_collected_and_skipped(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [_task("t1"), "{not json", _task("t3", ""), _task("t4"), "also not json", _task("t6")]
    path.write_text("\n".join(lines) + "\n")
    bad: list[InputError] = []
    kept = [(line, task.id) for line, _, task in iter_tasks(path, bad_lines=bad)]
    assert kept == [(1, "t1"), (4, "t4"), (6, "t6")]
    assert [(e.line, e.field) for e in bad] == [(2, None), (3, "instruction"), (5, None)]
    assert all(str(e).startswith(f"{path}:{e.line}: ") for e in bad)
    with pytest.raises(InputError, match=r"mixed\.jsonl:2: malformed JSON"):
        list(iter_tasks(path))


def test_project_task_and_example_records_round_trip(tmp_path):
    task = {
        "id": "gen-1",
        "instruction": "Name a prime.",
        "instances": [{"input": "", "output": "7"}],
        "is_classification": False,
        "provenance": "generated",
        "round": 2,
        "meta": {"model": "smollm2"},
    }
    example = {
        "id": "ex-9",
        "instruction": "Double it.",
        "input": "4",
        "output": "8",
        "meta": {"task_id": "gen-1"},
    }
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(task) + "\n" + json.dumps(example) + "\n")
    (tmp_path / "alpaca.json").write_text(
        json.dumps([{"instruction": "Hi.", "output": "Hello.", "text": "raw"}])
    )
    assert load_tasks(tmp_path / "alpaca.json")[0].meta == {"text": "raw"}  # extra source fields go to meta
    first, second = load_tasks(path)
    assert first.model_dump(mode="json") == {**task, "instances": [{"input": "", "output": "7", "meta": {}}]}
    assert (second.id, second.instances[0].input, second.instances[0].output) == ("ex-9", "4", "8")
    assert second.meta == {"task_id": "gen-1"}


# ------------------------------------------------------------------------------------------------------------
# the CLI


def test_cli_table(external):
    result = runner.invoke(app, ["seeds", "validate", str(external / "self_instruct_seed_tasks.jsonl")])
    assert result.exit_code == 0, result.output
    rows = {
        line.strip("│ ").rsplit("│", 1)[0].strip(): line for line in result.stdout.splitlines() if "│" in line
    }
    assert re.search(r"│\s+175 │", rows["tasks"])
    assert re.search(r"│\s+26 │", rows["classification tasks"])
    assert re.search(r"│\s+50 │", rows["tasks with empty input"])


def test_cli_json(external):
    result = runner.invoke(
        app, ["seeds", "validate", str(external / "stanford_alpaca_pr152_alpaca_5000.json"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"tasks": 5000, "classification": 0, "empty_input": 3057}


def test_cli_bad_input_exits_1_with_one_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(_task("t1") + '\n{"id": "t2", "instruction": "x", "instances": []}\n')
    result = runner.invoke(app, ["seeds", "validate", str(path), "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {path}:2: instances: no instances (a task needs at least one {{input, output}} pair)"
    ]


@pytest.mark.parametrize("folder", ["runs[/x]", "runs [red]"])
def test_cli_errors_print_brackets_literally(tmp_path, folder):
    """Paths and data in an error are text, not rich markup: an unmatched closing tag once raised a
    MarkupError traceback instead of the error, and a valid tag silently vanished from it."""
    path = tmp_path / folder / "bad.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"instruction": "[bold]x", "instances": "[/bold] [red]"}\n', encoding="utf-8")
    result = runner.invoke(app, ["seeds", "validate", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f'error: {path}:1: instances: must be a list of {{input, output}} objects, got string "[/bold] [red]"'
    ]


# ------------------------------------------------------------------------------------------------------------
# this project's own seeds

# Self-Instruct's quality heuristics drop instructions mentioning things a text model can't handle.
BLACKLIST = [
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
]


@pytest.fixture(scope="module")
def own_seeds():
    return load_tasks(SEEDS)


def test_own_seeds_validate_with_enough_tasks_and_classification(own_seeds):
    counts = summarize(own_seeds)
    assert counts["tasks"] >= 150
    assert counts["classification"] >= 25
    assert 0 < counts["empty_input"] < counts["tasks"]  # a mix of tasks with and without input
    assert [t.id for t in own_seeds] == [f"seed_task_{i}" for i in range(len(own_seeds))]
    names = [t.meta["name"] for t in own_seeds]
    assert len(set(names)) == len(names) and all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)
    for task in own_seeds:
        assert task.is_classification is not None, task.id
        assert task.instances and all(inst.output.strip() for inst in task.instances), task.id
        words = task.instruction.lower()
        assert not [w for w in BLACKLIST if re.search(rf"\b{w}\b", words)], task.id
        assert not words.startswith("write a program"), task.id


def test_own_seeds_cli_json():
    result = runner.invoke(app, ["seeds", "validate", str(SEEDS), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["tasks"] >= 150 and counts["classification"] >= 25


def test_own_seeds_no_pair_above_rouge_l_07(own_seeds):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    worst = max(
        (scorer.score(a.instruction, b.instruction)["rougeL"].fmeasure, a.id, b.id)
        for a, b in itertools.combinations(own_seeds, 2)
    )
    assert worst[0] <= 0.7, worst
