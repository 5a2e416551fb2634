"""Crash safety with real processes: `selfinstruct generate` is killed with SIGKILL at several points and resumed;
nothing accepted is lost or duplicated and every line parses. Run: pytest tests/test_crash.py (slow: each start
loads the vLLM engine)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "selfinstruct",
        "generate",
        str(ROOT / "pipelines" / "quickstart.yaml"),
        "--out",
        str(out),
        "--num-instructions",
        "6",
        "--round-size",
        "16",
        "--max-rounds",
        "8",
    ]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _complete(lines: list[str]) -> list[str]:
    return lines[:-1] if lines and not lines[-1].endswith("\n") else lines  # a kill may tear the last one


def _check(out: Path) -> tuple[list[str], list[str]]:
    tasks, rejects = _complete(_lines(out / "tasks.jsonl")), _complete(_lines(out / "rejects.jsonl"))
    for name, lines in (("tasks", tasks), ("rejects", rejects)):
        ids = [json.loads(line)["id"] for line in lines]  # every line parses
        assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
    answered = [
        (e["round"], e["request"])
        for e in map(json.loads, _complete(_lines(out / "journal.jsonl")))
        if e["ev"] == "completion"
    ]
    assert len(answered) == len(set(answered)), "a journaled request was asked again"
    return tasks, rejects


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        _cmd(out), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )


def _kill(proc: subprocess.Popen) -> None:
    # SIGKILL the whole process group: the CLI and vLLM's engine processes die together, as in a power cut.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(cond, proc, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.005)
    raise AssertionError("condition not reached in time")


def test_kill_nine_at_several_points_then_resume(tmp_path):
    out = tmp_path / "run"
    kept: list[str] = []

    rejected: list[str] = []

    def assert_nothing_lost() -> None:
        tasks, rejects = _check(out)
        assert tasks[: len(kept)] == kept, "an accepted line changed or vanished"
        assert rejects[: len(rejected)] == rejected, "a reject line changed or vanished"
        kept[:], rejected[:] = tasks, rejects

    # 1. early: before the engine is up
    proc = _start(out)
    time.sleep(3)
    _kill(proc)
    assert_nothing_lost()

    # 2. mid-round: after a round has been written, while the next one is generating
    proc = _start(out)
    _wait_for(
        lambda: (out / "rejects.jsonl").exists() and (out / "rejects.jsonl").stat().st_size > 0, proc, 600
    )
    time.sleep(2)
    _kill(proc)
    assert_nothing_lost()

    # 3. during writes: the moment a run file grows
    sizes = {
        n: (out / n).stat().st_size if (out / n).exists() else 0 for n in ("tasks.jsonl", "rejects.jsonl")
    }
    proc = _start(out)
    _wait_for(
        lambda: any((out / n).exists() and (out / n).stat().st_size > s for n, s in sizes.items()), proc, 600
    )
    _kill(proc)
    assert_nothing_lost()

    # 4. a torn last line, as a crash inside write() leaves it (injected: the kernel rarely tears on demand)
    with open(out / "tasks.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "t-torn", "instruction": "half writ')
    audit = subprocess.run(
        [sys.executable, "-m", "selfinstruct", "audit", str(out), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stderr  # a killed run can be audited before it is resumed
    assert json.loads(audit.stdout)["totals"]["accepted"] == len(kept)
    assert "tasks.jsonl" in audit.stderr and "last line has no newline yet" in audit.stderr
    proc = _start(out)
    log = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    assert "repaired a torn last line in tasks.jsonl" in log
    # kill 3 may have torn rejects.jsonl too (its repair is logged after this one), or tasks.jsonl (then the
    # injected half line continues that one)
    repairs = {r["file"]: r for r in map(json.loads, (out / "torn.log").read_text().splitlines())}
    assert repairs["tasks.jsonl"]["fragment"].endswith('{"id": "t-torn", "instruction": "half writ')
    assert_nothing_lost()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stop_reason"] in ("target_reached", "max_rounds", "no_progress")
    assert manifest["counts"]["accepted"] == len(kept) > 0
    assert manifest["counts"]["rejected"] == len(rejected)


def test_sigterm_on_the_real_engine_stops_cleanly_and_leaves_no_child(tmp_path):
    import psutil

    out = tmp_path / "run"
    proc = _start(out)
    _wait_for(
        lambda: (out / "journal.jsonl").exists() and (out / "journal.jsonl").stat().st_size > 0, proc, 600
    )
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "vLLM's engine runs in a process of its own"
    os.kill(proc.pid, signal.SIGTERM)
    log = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 143, log[-3000:]
    assert "Traceback" not in log
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stop_reason"] == "stopped: SIGTERM"
    _check(out)
