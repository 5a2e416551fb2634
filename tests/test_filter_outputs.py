"""What `filter --out DIR` may write into: never its own input, a run's folder, or a folder another filter is
writing. Run: pytest tests/test_filter_outputs.py"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app

RUNNER = CliRunner()
CMD = [sys.executable, "-m", "selfinstruct", "filter"]


def _records(n: int) -> list[dict]:
    """`n` records different enough that the filters keep most of them."""
    import random

    rng = random.Random(1)
    words = [f"w{i}" for i in range(5000)]
    return [
        {"instruction": " ".join(rng.sample(words, 10)), "input": "", "output": "x y z"} for _ in range(n)
    ]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def _refused(argv: list[str], message: str) -> None:
    res = RUNNER.invoke(app, ["filter", *argv])
    assert res.exit_code == 1, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize("state", ["interrupted", "finished", "no_state"])
@pytest.mark.parametrize("name", ["kept.jsonl", "rejects.jsonl", "link"])
def test_an_input_that_is_one_of_the_outputs_files_is_refused_before_anything_is_written(
    tmp_path, state, name
):
    """An interrupted output's kept.jsonl given back as the input was emptied by the redo before it was read."""
    out = tmp_path / "o"
    out.mkdir()
    _jsonl(out / "kept.jsonl", _records(20))
    _jsonl(out / "rejects.jsonl", [{"id": "r1", "reason": "x"}])
    if state != "no_state":
        (out / "filter.json").write_text(json.dumps({"input": "big.jsonl", "complete": state == "finished"}))
    src = out / name
    if name == "link":  # the same file under another name
        src = tmp_path / "elsewhere.jsonl"
        src.symlink_to(out / "kept.jsonl")
    before = _snapshot(tmp_path)
    _refused([str(src), "--out", str(out), "--skip-bad-lines"], "is one of this filter's own output files")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "name", ["manifest.json", "journal.jsonl", "run.lock", "tasks.jsonl", "readmissions.jsonl", "torn.log"]
)
def test_a_run_directory_is_refused_whatever_its_files_hold(tmp_path, name):
    """A run whose rejects.jsonl was still empty (a generate that failed at once, a live run early on) took a
    filter's kept.jsonl, filter.json and rejects, these into the run's own rejects.jsonl."""
    src = _jsonl(tmp_path / "m.jsonl", _records(5))
    run = tmp_path / "run"
    run.mkdir()
    (run / "rejects.jsonl").write_text("")
    (run / name).write_text("")
    before = _snapshot(run)
    _refused([str(src), "--out", str(run), "--skip-bad-lines"], f"holds {name}, a run's file")
    assert _snapshot(run) == before and sorted(p.name for p in run.iterdir()) == sorted(
        p.name for p in before
    )


@pytest.mark.parametrize("out", [".", "sub", "sub/deeper"])
def test_an_output_inside_the_input_folder_is_refused(tmp_path, out):
    """`filter DIR --out DIR` read its own filter.json back as input ("malformed JSON")."""
    folder = tmp_path / "d"
    folder.mkdir()
    _jsonl(folder / "in.jsonl", _records(5))
    before = _snapshot(tmp_path)
    _refused([str(folder), "--out", str(folder / out)], "inside the input folder")
    assert _snapshot(tmp_path) == before and sorted(p.name for p in folder.iterdir()) == ["in.jsonl"]


def test_a_folder_another_filter_holds_is_refused_naming_its_pid(tmp_path):
    """One writer per output folder: the lock is the OS's (flock), so a killed writer never leaves it held."""
    from selfinstruct.store import FILTER_LOCK

    src = _jsonl(tmp_path / "in.jsonl", _records(5))
    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen(  # a real other process holding the lock, as a running filter does
        [sys.executable, "-c", "import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, f'{os.getpid()}\\n'.encode(), 0); print(flush=True); "
         "sys.stdin.read()", str(out / FILTER_LOCK)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        holder.stdout.readline()  # it holds the lock now
        res = subprocess.run([*CMD, str(src), "--out", str(out)], capture_output=True, text=True, timeout=300)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: {out}: another filter (pid {holder.pid}) is writing this folder; wait for it to finish or stop it"
    ]
    assert sorted(p.name for p in out.iterdir()) == [FILTER_LOCK]
    fd = os.open(out / FILTER_LOCK, os.O_RDONLY)  # released with its holder: the next filter goes ahead
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    res = subprocess.run([*CMD, str(src), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_two_filters_into_one_folder_never_both_write(tmp_path):
    """Both succeeded and every record was in kept.jsonl twice, against a filter.json that counted it once."""
    src = _jsonl(tmp_path / "in.jsonl", _records(2000))
    out = tmp_path / "dual"
    cmd = [*CMD, str(src), "--out", str(out), "--filters", "heuristics,minhash"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    refusal = next(err for rc, err in results if rc == 1)
    assert str(out) in refusal and ("another filter (pid" in refusal or "already exists" in refusal)
    state = json.loads((out / "filter.json").read_text())
    kept = (out / "kept.jsonl").read_text(encoding="utf-8").splitlines()
    assert state["complete"] is True and len(kept) == state["kept"]
