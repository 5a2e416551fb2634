"""`selfinstruct filter` through typer's CliRunner: files written, --json, malformed lines, bad flags."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app

RUNNER = CliRunner()

RECORDS = [
    {
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "output": "Eat well, sleep, move.",
        "source": "x",
    },
    {
        "instruction": "Give three tips for staying healthy!",
        "input": "",
        "output": "Drink water, walk, rest.",
    },
    {"instruction": "Draw a map of your town.", "input": "", "output": "..."},
    {"instruction": "Translate the word into Spanish.", "input": "<noinput>", "output": "hola"},
    {"instruction": "Name the largest planet in the solar system.", "input": "", "output": "Jupiter."},
]


def _jsonl(path, records, bad_line: str | None = None):
    lines = [json.dumps(r) for r in records]
    if bad_line is not None:
        lines.insert(2, bad_line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_filter_writes_kept_and_rejects_and_prints_json(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", RECORDS)
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["records"], summary["kept"], summary["rejected"]) == (5, 2, 3)
    assert (
        summary["reasons"]["rouge_too_similar"] == 1
        and summary["reasons"]["heuristics_blacklisted_word"] == 1
    )
    # kept.jsonl: the input records, in input order, fields unchanged (the extra "source" key too).
    assert _read(tmp_path / "out" / "kept.jsonl") == [RECORDS[0], RECORDS[4]]
    rejects = _read(tmp_path / "out" / "rejects.jsonl")
    rouge = next(r for r in rejects if r["reason"] == "rouge_too_similar")
    assert rouge["record"] == RECORDS[1] and rouge["stage"] == "rouge" and rouge["evidence"]["score"] > 0.7
    assert {r["reason"] for r in rejects} == {
        "rouge_too_similar",
        "heuristics_blacklisted_word",
        "heuristics_placeholder_input",
        "heuristics_no_instances",
    }


def test_table_output_and_filter_selection(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", RECORDS)
    res = RUNNER.invoke(
        app,
        ["filter", str(src), "--out", str(tmp_path / "o"), "--filters", "rouge", "--rouge-threshold", "0.9"],
    )
    assert res.exit_code == 0, res.output
    assert "rouge threshold=0.9 (set)" in res.output and "5 records: 4 kept, 1 rejected" in res.output
    assert "rouge_too_similar" in res.output


def test_alpaca_json_array_input(tmp_path):
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(RECORDS, indent=2), encoding="utf-8")
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["kept"] == 2


def test_malformed_line_stops_with_its_line_number(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", RECORDS, bad_line='{"instruction": "broken"')
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert f"{src}:3" in res.output and "malformed JSON" in res.output and "Traceback" not in res.output


def test_skip_bad_lines_records_a_malformed_reject(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", RECORDS, bad_line='{"instruction": "broken"')
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o"), "--skip-bad-lines", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["malformed"] == 1 and summary["kept"] == 2
    bad = [r for r in _read(tmp_path / "o" / "rejects.jsonl") if r["reason"] == "malformed"]
    assert len(bad) == 1 and bad[0]["evidence"]["line"] == 3 and bad[0]["stage"] == "input"
    assert bad[0]["raw"] == '{"instruction": "broken"'  # what was on the line, not only where (was "")


def test_skip_bad_lines_keeps_each_bad_records_text_or_object(tmp_path):
    """Every malformed reject carries what was read: a bad record's object, a non-object element's text; an
    array's bad elements are recorded and the rest filtered, as a JSONL file's bad lines are."""
    records = [RECORDS[0], {"instruction": None, "output": "x"}, 3, RECORDS[4]]
    src = tmp_path / "in.json"
    src.write_text(json.dumps(records), encoding="utf-8")  # one line: the elements share line 1
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o"), "--skip-bad-lines", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["malformed"] == 2
    bad = [r for r in _read(tmp_path / "o" / "rejects.jsonl") if r["reason"] == "malformed"]
    assert [(r["evidence"]["field"], r["raw"], r["record"]) for r in bad] == [
        ("[1].instruction", "", records[1]),
        ("[2]", "3", None),
    ]
    assert len({r["id"] for r in bad}) == 2
    assert [r["instruction"] for r in _read(tmp_path / "o" / "kept.jsonl")] == [
        RECORDS[0]["instruction"],
        RECORDS[4]["instruction"],
    ]


@pytest.mark.parametrize("name", ["kept.jsonl", "rejects.jsonl"])
def test_refuses_an_output_that_is_a_dangling_link(tmp_path, name):
    """Appending followed the link and created its target wherever it pointed."""
    src = _jsonl(tmp_path / "in.jsonl", RECORDS)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / name).symlink_to(tmp_path / "elsewhere.jsonl")
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "is not a regular file" in res.stderr, res.output
    assert not (tmp_path / "elsewhere.jsonl").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--filters", "rouge,bogus"], "`--filters` must be a comma-separated subset"),
        (
            ["--filters", "heuristics", "--rouge-threshold", "0.5"],
            "`--rouge-threshold` needs the rouge filter",
        ),
        (["--minhash-threshold", "1.5"], "`threshold` must be in (0, 1], got 1.5"),
        (["--ifd-threshold", "nan"], "ifd.threshold: Input should be a finite number"),  # NaN passed
        (["--rouge-threshold", "inf"], "rouge.threshold: Input should be a finite number"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, args, message):
    src = _jsonl(tmp_path / "in.jsonl", RECORDS)
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 1 and message in res.output


def test_refuses_to_append_to_existing_output(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", RECORDS)
    assert RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o")]).exit_code == 0
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "already exists" in res.output


def test_a_killed_filter_is_marked_partial_and_the_same_command_redoes_it(tmp_path):
    """Killed mid-write (a torn kept line), the output held a clean-looking prefix that `audit` counted as the
    whole and that the same command then refused to touch. filter.json now says it did not finish, `audit`
    warns, and the same command redoes it: the result equals a straight run's."""
    import os
    import random
    import subprocess
    import sys

    rng = random.Random(0)
    words = "river violin budget glacier recipe sonnet ledger orbit lantern meadow invoice canyon".split()
    rows = [
        {
            "instruction": f"Describe the {' '.join(rng.sample(words, 4))} number {i}.",
            "input": "",
            "output": "ok",
        }
        for i in range(6000)
    ]
    src = _jsonl(tmp_path / "in.jsonl", rows)
    cmd = [sys.executable, "-m", "selfinstruct", "filter", str(src), "--filters", "heuristics,minhash"]
    killed = {**os.environ, "SELFINSTRUCT_FAULT": "tear:kept.jsonl:5000"}  # in the second chunk
    res = subprocess.run([*cmd, "--out", str(tmp_path / "o")], env=killed, capture_output=True, timeout=300)
    assert res.returncode == -9, res.stderr[-2000:]
    assert json.loads((tmp_path / "o" / "filter.json").read_text()) == {"input": str(src), "complete": False}
    audit = subprocess.run([sys.executable, "-m", "selfinstruct", "audit", str(tmp_path / "o"), "--json"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert audit.returncode == 0 and "did not finish" in audit.stderr, audit.stderr[-2000:]

    for out in ("o", "straight"):
        res = subprocess.run(
            [*cmd, "--out", str(tmp_path / out)], capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, res.stderr[-2000:]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    for name in ("kept.jsonl", "rejects.jsonl"):
        assert strip(_read(tmp_path / "o" / name)) == strip(_read(tmp_path / "straight" / name)), name
    assert len(_read(tmp_path / "o" / "kept.jsonl")) > 5000
    assert json.loads((tmp_path / "o" / "filter.json").read_text())["complete"] is True
    again = subprocess.run([*cmd, "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "already exists" in again.stderr  # a finished output is never replaced


def test_a_filter_killed_before_its_first_record_is_redone(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", RECORDS)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "filter.json").write_text(json.dumps({"input": str(src), "complete": False}))
    res = RUNNER.invoke(app, ["filter", str(src), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["records"] == len(RECORDS)
