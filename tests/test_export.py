"""Exports load with datasets.load_dataset("json"). Run: pytest tests/test_export.py"""

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.schema import Instance, Task
from selfinstruct.store import RunStore


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    with RunStore.open(run) as s:
        s.append(
            [
                Task(
                    id="a",
                    instruction="Add the numbers.",
                    instances=[Instance(input="2 and 3", output="5"), Instance(input="1 and 1", output="2")],
                ),
                Task(
                    id="b",
                    instruction="Name a colour.",
                    instances=[Instance(output="Teal")],
                    is_classification=False,
                ),
            ]
        )
    return run


@pytest.mark.parametrize(
    "fmt, name, rows",
    [
        ("alpaca", "a.json", 3),
        ("alpaca", "a.jsonl", 3),
        ("messages", "m.jsonl", 3),
        ("self-instruct", "s.jsonl", 2),
    ],
)
def test_export_loads_with_datasets(run_dir, tmp_path, fmt, name, rows):
    import datasets

    out = tmp_path / name
    res = CliRunner().invoke(app, ["export", str(run_dir), "--format", fmt, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rows"] == rows
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert len(ds) == rows
    if fmt == "messages":
        assert ds[0]["messages"] == [
            {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
            {"role": "assistant", "content": "5"},
        ]
    if fmt == "alpaca":
        assert ds[2] == {"instruction": "Name a colour.", "input": "", "output": "Teal"}


def test_export_rejects_unknown_format(run_dir, tmp_path):
    res = CliRunner().invoke(app, ["export", str(run_dir), "--format", "csv", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "--format must be one of" in res.output and "Traceback" not in res.output


def test_export_of_missing_run_is_clear(tmp_path):
    res = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "no such file" in res.output


def test_an_unwritable_output_is_one_line_naming_the_path(run_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(blocker / "x.json")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == [f"error: {blocker}: file exists"]  # mkdir met a file


def test_a_task_file_of_ones_own_keeps_a_last_line_without_newline(tmp_path):
    """Leaving out an unfinished last line is for a run's own tasks.jsonl (a live run), not for any file."""
    tasks = [Task(id=f"t{i}", instruction=f"Task {i}.", instances=[Instance(output="x")]) for i in range(3)]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(t.model_dump_json() for t in tasks), encoding="utf-8")  # no final newline
    res = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "x.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "{run}", "--out", "{run}/tasks.jsonl"], "is this command's input"),
        (["export", "{run}", "--out", "{run}/manifest.json"], "is a file of the run"),
        (["export", "{run}/tasks.jsonl", "--out", "{run}/tasks.jsonl"], "is this command's input"),
        (["export", "{run}", "--out", "{run}/rejects.jsonl"], "is this command's input"),
        (["audit", "{run}", "--html", "{run}/tasks.jsonl"], "is this command's input"),
        (["audit", "{run}", "--html", "{run}/journal.jsonl", "--force"], "is this command's input"),
        (["export", "{run}", "--out", "{tmp}/link.jsonl"], "is a symbolic link"),
        (["export", "{run}", "--out", "{tmp}/mine.jsonl"], "already exists; pass --force"),
        (["audit", "{run}", "--html", "{tmp}/mine.jsonl"], "already exists; pass --force"),
        # --force replaced these with a regular file (as root: /dev/null itself) or with the report
        (["export", "{run}", "--out", "{tmp}/fifo", "--force"], "is not a regular file"),
        (
            ["audit", "{run}", "--html", "{tmp}/filtered/kept.jsonl", "--force"],
            "is a file of the filter output",
        ),
        (["export", "{run}", "--out", "{tmp}/pipe/pipeline.json", "--force"], "is a file of the pipeline"),
    ],
)
def test_no_command_writes_over_a_run_its_input_a_link_or_a_users_file(run_dir, tmp_path, args, message):
    (tmp_path / "mine.jsonl").write_text("my own notes\n")
    (tmp_path / "target.txt").write_text("keep me\n")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "target.txt")
    os.mkfifo(tmp_path / "fifo")
    for name, files in (("filtered", ("kept.jsonl", "rejects.jsonl")), ("pipe", ("pipeline.json",))):
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_text("{}\n")
    files = [p for p in [*run_dir.iterdir(), *tmp_path.rglob("*")] if p.is_file()]
    before = {p: p.read_bytes() for p in files}
    argv = [a.format(run=run_dir, tmp=tmp_path) for a in args]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 1, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in files} == before
    assert stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode)


def test_force_replaces_a_users_export_but_never_a_run_file(run_dir, tmp_path):
    out = tmp_path / "mine.jsonl"
    out.write_text("old\n")
    res = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(out), "--force", "-f", "messages"])
    assert res.exit_code == 0, res.output
    assert out.read_text() != "old\n"
    res = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(run_dir / "tasks.jsonl"), "--force"])
    assert res.exit_code == 1


def test_a_filter_output_exports_as_it_was_kept(tmp_path):
    """`filter` keeps Alpaca records as they were; export read only task records and stopped on `id`."""
    records = [
        {"instruction": "Name a primary colour.", "input": "", "output": "Red."},
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    ]
    src = tmp_path / "in.json"
    src.write_text(json.dumps(records), encoding="utf-8")
    res = CliRunner().invoke(app, ["filter", str(src), "--out", str(tmp_path / "f"), "--filters", "minhash"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "train.jsonl"
    res = CliRunner().invoke(app, ["export", str(tmp_path / "f" / "kept.jsonl"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["instruction"], r["input"], r["output"]) for r in rows] == [tuple(r.values()) for r in records]


def test_tasks_without_instances_are_counted_not_silently_left_out(tmp_path):
    """A task with no instances makes no alpaca or messages row; export said nothing of it."""
    tasks = [
        Task(id=f"t{i}", instruction=f"Task {i}.", instances=[Instance(output="x")] * (i % 2))
        for i in range(4)
    ]
    path = tmp_path / "run"  # a run's own tasks may lack instances; a file of the user's is refused then
    path.mkdir()
    (path / "tasks.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    (path / "manifest.json").write_text("{}")
    res = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "x.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) | {"out": None} == {
        "rows": 2, "format": "alpaca", "out": None, "without_instances": 2
    }  # fmt: skip
    res = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "y.jsonl")])
    assert res.exit_code == 0 and "2 tasks without instances wrote no rows" in res.stdout, res.output
    res = CliRunner().invoke(
        app, ["export", str(path), "-f", "self-instruct", "--out", str(tmp_path / "z.jsonl")]
    )
    assert res.exit_code == 0 and "without instances" not in res.stdout, (
        res.output
    )  # every task is a row there


@pytest.mark.parametrize("how", ["pipe", "fifo"])
def test_a_pipe_is_read_like_a_file(run_dir, tmp_path, how):
    """A pipe's size is always 0: `cat run/tasks.jsonl | export /dev/stdin` wrote 0 rows, exit 0."""
    import subprocess
    import sys
    import threading

    data = (run_dir / "tasks.jsonl").read_bytes()
    cmd = [sys.executable, "-m", "selfinstruct", "export", "--out", str(tmp_path / "x.jsonl"), "--json"]
    if how == "pipe":
        res = subprocess.run([*cmd, "/dev/stdin"], input=data, capture_output=True, timeout=300)
    else:  # what `export <(cat run/tasks.jsonl)` hands over
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        writer = threading.Thread(target=lambda: fifo.write_bytes(data), daemon=True)
        writer.start()
        res = subprocess.run([*cmd, str(fifo)], capture_output=True, timeout=300)
        writer.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"] == 3
    assert len((tmp_path / "x.jsonl").read_text(encoding="utf-8").splitlines()) == 3
