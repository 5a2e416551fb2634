"""Runs that keep their promises, on a scripted model (tests/scripted.py) served over the real HTTP backend:
kill -9 anywhere and resume ends exactly where an uninterrupted run ends, with no request sent twice; every
candidate on record exactly once; one writer; readmit against a live run; clean stops on SIGINT and SIGTERM.

Run: .venv/bin/pytest -q tests/test_journal.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted import ScriptedBackend, ScriptedServer

from selfinstruct.config import load_recipe
from selfinstruct.errors import SelfInstructError
from selfinstruct.generate import generate
from selfinstruct.llm.base import Completion
from selfinstruct.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def recipe_file(tmp: Path, url: str, concurrency: int = 4, **loop) -> Path:
    settings = {"target": 40, "round_size": 12, "max_rounds": 80, "patience": None, "seed": 3, **loop}
    path = tmp / "scripted.yaml"
    path.write_text(
        "name: scripted\n"
        f"seeds: {ROOT / 'seeds'}\n"
        f"backend: {{kind: openai, base_urls: ['{url}'], model: scripted, concurrency: {concurrency}, "
        "max_retries: 0}\n"
        f"loop: {json.dumps({'prompt_style': 'chat', **settings})}\n"
    )
    return path


def start(
    recipe: Path, out: Path, *, fault: str | None = None, ignore_sigint: bool = False
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SELFINSTRUCT_FAULT", None)
    if fault:
        env["SELFINSTRUCT_FAULT"] = fault

    def pre() -> None:
        if ignore_sigint:  # what a non-interactive background job inherits
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    cmd = [sys.executable, "-m", "selfinstruct", "generate", str(recipe), "--out", str(out)]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=pre,
    )


def records(path: Path) -> list[dict]:
    """Every complete line, timing fields aside; a torn last line is allowed (a kill left it)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            rec.pop("time", None)
            out.append(rec)
    return out


def journaled_seeds(out: Path) -> set:
    return {
        r["sampling"]["seed"]
        for r in records(out / "journal.jsonl")
        if r.get("ev") == "completion" and r.get("error") is None
    }


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.close()


def test_kill_nine_anywhere_then_resume_ends_like_an_uninterrupted_run(tmp_path, server):
    recipe = recipe_file(tmp_path, server.url, target=150, round_size=8)
    straight = tmp_path / "straight"
    proc = start(recipe, straight)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    want_tasks, want_rejects = records(straight / "tasks.jsonl"), records(straight / "rejects.jsonl")
    assert len(want_tasks) >= 150 and len(want_rejects) > 50  # a real run, not an empty one
    straight_calls = list(server.calls)
    assert len(straight_calls) == len(set(straight_calls))
    server.calls.clear()

    # Kill points spread over the run's life: inside writes (half a line), between the journal and the
    # records, between the records and the checkpoint, after the manifest, and by the clock mid-batch.
    faults = [
        "after:journal:1",
        "tear:journal.jsonl:5",
        "after:rejects:2",
        "tear:rejects.jsonl:3",
        "after:tasks:3",
        "tear:tasks.jsonl:4",
        "after:checkpoint:2",
        "after:manifest:3",
        "tear:journal.jsonl:40",
        "after:journal:4",
        "clock",
        "tear:tasks.jsonl:9",
        "clock",
    ]
    out = tmp_path / "killed"
    kills = 0
    for fault in faults:
        before = journaled_seeds(out)
        sent_before = len(server.calls)
        if fault == "clock":
            proc = start(recipe, out)
            server.on_call = lambda n, base=sent_before, p=proc: (
                os.killpg(p.pid, signal.SIGKILL) if n == base + 6 else None
            )
            proc.wait(timeout=120)
            server.on_call = None
        else:
            proc = start(recipe, out, fault=fault)
            proc.wait(timeout=120)
        if proc.returncode == 0:
            break  # the run finished before this point was reached
        assert proc.returncode == -signal.SIGKILL, (fault, proc.stdout.read().decode()[-2000:])
        kills += 1
        resent = {int(k.split(":")[0]) for k in server.calls[sent_before:]} & before
        assert not resent, f"answers already journaled were asked again after {fault}: {sorted(resent)[:5]}"
    assert kills >= 10
    proc = start(recipe, out)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]

    assert records(out / "tasks.jsonl") == want_tasks
    assert records(out / "rejects.jsonl") == want_rejects
    # Nothing asked that the uninterrupted run did not ask; what was asked twice was in flight at a kill.
    assert set(server.calls) == set(straight_calls)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stop_reason"] == "target_reached"
    assert manifest["counts"]["accepted"] == len(want_tasks)
    assert manifest["counts"]["rejected"] == len(want_rejects)
    straight_manifest = json.loads((straight / "manifest.json").read_text())
    for key in ("requests", "completion_tokens", "accepted", "rejected"):
        assert manifest["counts"][key] == straight_manifest["counts"][key], key


def test_a_full_disk_mid_run_is_one_line_and_the_resume_ends_like_an_uninterrupted_run(tmp_path, server):
    """The journal hits a real file size limit (EFBIG, as a full disk gives ENOSPC) mid-round: the run stops
    with one line naming the file; with room again, the resume ends where the uninterrupted run ends."""
    from filelimit import small_files

    recipe = recipe_file(tmp_path, server.url, target=150, round_size=8)
    straight = tmp_path / "straight"
    proc = start(recipe, straight)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    assert (straight / "journal.jsonl").stat().st_size > 300_000  # the limit below falls mid-run

    out = tmp_path / "full"
    cmd = [sys.executable, "-m", "selfinstruct", "generate", str(recipe), "--out", str(out)]
    res = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=small_files(100_000)
    )
    assert res.returncode == 1, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1] == f"error: {out / 'journal.jsonl'}: file too large"
    assert "Traceback" not in res.stderr
    assert 0 < len(records(out / "tasks.jsonl")) < 150

    proc = start(recipe, out)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    assert records(out / "tasks.jsonl") == records(straight / "tasks.jsonl")
    assert records(out / "rejects.jsonl") == records(straight / "rejects.jsonl")


def test_a_finished_run_resumed_asks_nothing(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, "http://127.0.0.1:9/v1", target=12))
    backend = ScriptedBackend()
    first = generate(recipe, tmp_path / "run", backend=backend)
    asked = backend.calls.total()
    journal_before = (tmp_path / "run" / "journal.jsonl").read_bytes()
    again = generate(recipe, tmp_path / "run", backend=backend)
    assert backend.calls.total() == asked and asked > 0
    assert again.counts == first.counts and again.stop_reason == "target_reached"
    assert (tmp_path / "run" / "journal.jsonl").read_bytes() == journal_before


class Repeating:
    """The same three identical instructions for every instruction request (a model copying itself)."""

    name = model = "repeating"

    def generate(self, requests):
        return [
            Completion(
                request_id=r.id,
                texts=[
                    "1. Name a bird that sings at dawn.\n2. Name a bird that sings at dawn.\n"
                    "3. Name a bird that sings at dawn."
                ],
                finish_reasons=["stop"],
            )
            for r in requests
        ]

    def close(self):
        pass


def test_repeated_identical_candidates_are_separate_rejects(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, "http://127.0.0.1:9/v1", target=5, round_size=2, max_rounds=1))
    m = generate(recipe, tmp_path / "run", backend=Repeating())
    rejects = records(tmp_path / "run" / "rejects.jsonl")
    # 2 requests x 3 candidates: the first is admitted (then unfinished at the stop), the other five are
    # ROUGE-L rejects of it, each its own record with its own raw text and position.
    similar = [r for r in rejects if r["reason"] == "rouge_too_similar"]
    assert len(similar) == 5 and len({r["id"] for r in similar}) == 5
    assert all(r["raw"].startswith("1. Name a bird") for r in similar)
    assert m.counts["rejected"] == len(rejects) == 6
    assert [r["reason"] for r in rejects].count("loop_unfinished") == 1


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    with RunStore.open(tmp_path / "run"):
        with pytest.raises(SelfInstructError, match=rf"another process \(pid {os.getpid()}\) is writing"):
            RunStore.open(tmp_path / "run")
    RunStore.open(tmp_path / "run").close()  # released on close


def test_a_second_generate_exits_at_once_naming_the_pid(tmp_path):
    slow = ScriptedServer(delay_s=0.3)
    try:
        recipe = recipe_file(tmp_path, slow.url, target=200)
        first = start(recipe, tmp_path / "run")
        _wait(lambda: len(slow.calls) > 0, first)
        second = start(recipe, tmp_path / "run")
        log = second.communicate(timeout=60)[0].decode()
        assert second.returncode == 1
        assert f"another process (pid {first.pid}) is writing this run" in log and "Traceback" not in log
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        slow.close()


def _wait(cond, proc, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_with_in_flight_work_on_record(tmp_path, sig):
    slow = ScriptedServer(delay_s=0.05)
    try:
        recipe = recipe_file(tmp_path, slow.url, target=400)
        out = tmp_path / "run"
        proc = start(recipe, out, ignore_sigint=True)  # SIGINT inherited ignored, as from `cmd &` in a script
        _wait(lambda: len(slow.calls) > 40, proc)
        os.kill(proc.pid, sig)
        log = proc.communicate(timeout=60)[0].decode()
        assert proc.returncode == 128 + sig, log[-3000:]
        assert "Traceback" not in log
        manifest = json.loads((out / "manifest.json").read_text())
        name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
        assert manifest["stop_reason"] == f"stopped: {name}"
        for f in ("tasks.jsonl", "rejects.jsonl", "journal.jsonl"):
            assert (out / f).read_bytes().endswith(b"\n")  # nothing torn
        rejects = records(out / "rejects.jsonl")
        unfinished = [r for r in rejects if r["reason"] == "loop_unfinished"]
        assert unfinished and all(r["evidence"]["stop"] == f"stopped: {name}" for r in unfinished)
        assert manifest["counts"]["rejected"] == len(rejects)
        # The stop is on record: a later resume starts from empty queues and finishes nothing twice.
        last = records(out / "journal.jsonl")[-1]
        assert last["ev"] == "round" and last["stop"] == f"stopped: {name}"
        assert not any(last["state"][q] for q in ("reserve", "pending_classify", "pending_instances"))
    finally:
        slow.close()


def test_readmit_against_a_live_run_does_no_damage_and_the_task_is_taken_in(tmp_path):
    slow = ScriptedServer(delay_s=0.02)
    try:
        recipe = recipe_file(tmp_path, slow.url, target=400, round_size=8)
        out = tmp_path / "run"
        proc = start(recipe, out)
        _wait(lambda: any(r["reason"] == "rouge_too_similar" for r in records(out / "rejects.jsonl")), proc)
        chosen = next(r for r in records(out / "rejects.jsonl") if r["reason"] == "rouge_too_similar")
        res = subprocess.run(
            [sys.executable, "-m", "selfinstruct", "readmit", str(out), "--ids", chosen["id"], "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["live_writer"] == proc.pid
        # The live run takes it in at its next round: queued for classification and instances.
        _wait(
            lambda: any(
                r.get("ev") == "readmit" and r["entries"][0]["reject_id"] == chosen["id"]
                for r in records(out / "journal.jsonl")
            ),
            proc,
        )
        _wait(
            lambda: (
                any(
                    t["meta"].get("completes") == chosen["record"]["id"] for t in records(out / "tasks.jsonl")
                )
                or any(
                    (r.get("record") or {}).get("meta", {}).get("completes") == chosen["record"]["id"]
                    for r in records(out / "rejects.jsonl")
                )
            ),
            proc,
            timeout=120,
        )
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        # The run still opens and every line parses: nothing was cut or interleaved.
        for f in ("tasks.jsonl", "rejects.jsonl", "journal.jsonl", "readmissions.jsonl"):
            for line in (out / f).read_text().splitlines():
                json.loads(line)
        manifest = json.loads((out / "manifest.json").read_text())
        assert [r["reject_id"] for r in manifest["readmitted"]] == [chosen["id"]]
    finally:
        slow.close()


@pytest.mark.parametrize("window", [1, 6])
def test_streaming_kill_nine_then_resume(tmp_path, server, window):
    """No barrier: answers are settled as they arrive and the order is journaled, so a resume replays it.
    With one request in flight the arrival order is fixed and the killed-and-resumed run must end exactly as a
    straight one; with several, arrival order is the server's, and what was decided before a kill must stand."""
    recipe = recipe_file(
        tmp_path, server.url, concurrency=1, target=40, round_size=window, schedule="stream", max_rounds=None
    )
    straight = tmp_path / "straight"
    proc = start(recipe, straight)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    want_tasks, want_rejects = records(straight / "tasks.jsonl"), records(straight / "rejects.jsonl")
    assert len(want_tasks) >= 40 and want_rejects
    straight_calls = list(server.calls)
    server.calls.clear()
    out = tmp_path / "killed"
    kills, seen_tasks, seen_rejects = 0, [], []
    for fault in ["after:journal:3", "tear:rejects.jsonl:4", "after:checkpoint:2", "tear:journal.jsonl:9",
                  "after:journal:20", "tear:tasks.jsonl:5"]:  # fmt: skip
        before = journaled_seeds(out)
        sent_before = len(server.calls)
        proc = start(recipe, out, fault=fault)
        proc.wait(timeout=120)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, (fault, proc.stdout.read().decode()[-2000:])
        kills += 1
        resent = {int(k.split(":")[0]) for k in server.calls[sent_before:]} & before
        assert not resent, f"answers already journaled were asked again after {fault}"
        tasks, rejects = records(out / "tasks.jsonl"), records(out / "rejects.jsonl")
        assert tasks[: len(seen_tasks)] == seen_tasks and rejects[: len(seen_rejects)] == seen_rejects
        seen_tasks, seen_rejects = tasks, rejects
    assert kills >= 4
    proc = start(recipe, out)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    tasks, rejects = records(out / "tasks.jsonl"), records(out / "rejects.jsonl")
    assert tasks[: len(seen_tasks)] == seen_tasks and rejects[: len(seen_rejects)] == seen_rejects
    candidates = [t["id"] for t in tasks] + [r["record"]["id"] for r in rejects if r.get("record")]
    whole = [r for r in rejects if r.get("record") and not {"instance", "block"} & set(r["evidence"])]
    assert len({t["id"] for t in tasks} | {r["record"]["id"] for r in whole}) == len(tasks) + len(whole)
    assert candidates  # every candidate once: accepted, or rejected as a whole, never both
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == len(tasks) and manifest["counts"]["rejected"] == len(rejects)
    if window == 1:
        assert tasks == want_tasks and rejects == want_rejects
        assert set(server.calls) <= set(straight_calls)


def test_streaming_keeps_per_request_seeds_and_is_deterministic(tmp_path):
    recipe = load_recipe(
        recipe_file(tmp_path, "http://127.0.0.1:9/v1", target=30, round_size=8, schedule="stream")
    )
    a, b = ScriptedBackend(), ScriptedBackend()
    generate(recipe, tmp_path / "a", backend=a)
    generate(recipe, tmp_path / "b", backend=b)
    assert records(tmp_path / "a" / "tasks.jsonl") == records(tmp_path / "b" / "tasks.jsonl")
    assert a.calls == b.calls and len(a.calls) == a.calls.total()  # every request its own seed, asked once
